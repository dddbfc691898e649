"""Helpers for the end-to-end tests: the docker CLI, a pycni server, cleanup checks."""

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import support

IMAGE = "pycni-test-busybox:2"
# Debian's docker.io client matches its daemon's API (1.41); a newer client on
# PATH refuses some flags (per-network --mac-address) against it.
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else (shutil.which("docker") or "docker")


def docker(*args, check=True, timeout=120):
    """Run the docker CLI; return stdout (check) or the CompletedProcess."""
    proc = support.run(DOCKER, *args, check=check, timeout=timeout)
    return proc.stdout.strip() if check else proc


def docker_fails(*args):
    """Run a docker command that must fail; return what the CLI printed on stderr."""
    proc = support.run(DOCKER, *args, check=False)
    assert proc.returncode != 0, f"docker {' '.join(args)} succeeded: {proc.stdout}"
    return proc.stderr.strip()


def engine_major():
    """The running engine's major version (20, 26, 28, ...)."""
    return int(docker("version", "-f", "{{.Server.Version}}").split(".")[0])


def netns_at_join():
    """Whether this engine has made the container's netns when Join arrives on `docker run`
    (moby 28 and later), so that pycni runs CNI in it directly."""
    return engine_major() >= 28


def make_busybox_image():
    """A busybox image made locally from Debian's busybox-static (no registry needed)."""
    if docker("images", "-q", IMAGE):
        return IMAGE
    busybox = shutil.which("busybox") or "/bin/busybox"
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(f"{root}/bin")
        shutil.copy(busybox, f"{root}/bin/busybox")
        applets = support.run(busybox, "--list").stdout.split()
        for applet in applets:
            if applet != "busybox":
                os.symlink("busybox", f"{root}/bin/{applet}")
        # busybox's nc has no UDP: a small static echo server answers UDP tests.
        src = os.path.join(os.path.dirname(__file__), "udpecho.c")
        support.run("gcc", "-static", "-O2", "-o", f"{root}/bin/udpecho", src)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([DOCKER, "import", "-c", 'CMD ["sh"]', "-", IMAGE],
                       stdin=tar.stdout, check=True, capture_output=True)
        tar.wait()
    return IMAGE


def write_conf(conf_dir, filename, content):
    """A conf file (a JSON-able value, or text as it is) into a driver's conf dir."""
    path = os.path.join(conf_dir, filename)
    with open(path, "w") as f:
        f.write(content if isinstance(content, str) else json.dumps(content))
    return path


class PycniServer:
    """`pycni serve` on /run/docker/plugins/<name>.sock with private dirs."""

    def __init__(self, extra_args=(), name=None, root=None, bin_dirs=None):
        """name and root: those of an earlier server, to serve its networks again.
        bin_dirs: the CNI plugin dirs it runs (default support.CNI_BIN_DIRS, which the
        environment fixed at import; the benchmark picks a plugin set per cell)."""
        self.bin_dirs = list(bin_dirs) if bin_dirs else None
        self.name = name or "pycnit" + secrets.token_hex(4)
        self.root = root or tempfile.mkdtemp(prefix="pycni-e2e-")
        self.conf_dir = os.path.join(self.root, "net.d")
        self.state_dir = os.path.join(self.root, "state")
        self.socket = f"/run/docker/plugins/{self.name}.sock"
        self.log_path = os.path.join(self.root, "pycni.log")
        os.makedirs(self.conf_dir, exist_ok=True)
        self.extra_args = list(extra_args)
        self.proc = None

    def start(self):
        cmd = [sys.executable, "-m", "cnm_bridge.cli", "serve", "--socket", self.socket,
               "--conf-dir", self.conf_dir, "--state-dir", self.state_dir,
               "--bin-dir", ":".join(self.bin_dirs or support.CNI_BIN_DIRS), *self.extra_args]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        # Ready means answering: the socket file appears at bind(), a moment before
        # listen(), the worker builds the app after both, and a file left by a
        # killed server is there before either.
        deadline = time.monotonic() + 30
        while True:
            try:
                status, answer = support.post(self.socket, "/Plugin.Activate", b"{}", timeout=30)
                break
            except OSError:  # no file yet, nobody listening yet, or the stale one
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"pycni did not answer:\n{self.logs()}") from None
                time.sleep(0.05)
        assert status == 200 and "NetworkDriver" in answer.get("Implements", []), answer

    def stop(self, sig=15):
        unsettled = None
        if sig == 15 and self.proc and self.proc.poll() is None:
            try:
                settle(self)  # let deferred DELs finish before the state dir goes
            except AssertionError as e:
                unsettled = e  # the server is stopped all the same, then this fails
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        if unsettled is not None:
            raise AssertionError(f"pycni stopped with deferred DELs pending: {unsettled}\n"
                                 f"{self.logs()}") from unsettled

    @property
    def master_pid(self):
        """gunicorn's master: `pycni serve` runs in the process we started."""
        return self.proc.pid

    @property
    def cni_bin_dirs(self):
        """The CNI plugin set this driver runs."""
        return self.bin_dirs or support.CNI_BIN_DIRS

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-8000:]

    def write_conf(self, filename, content):
        return write_conf(self.conf_dir, filename, content)

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def serving(extra_args=()):
    """A pycni server of a test's own, which it may kill and restart, with a Docker helper
    for it: (server, dk). Afterwards the server is up again to tear down what dk made."""
    server = PycniServer(extra_args=extra_args)
    server.start()
    dk = Docker(server.name)
    try:
        yield server, dk
    finally:
        if server.proc is None or server.proc.poll() is not None:
            server.start()
        dk.cleanup()
        for net in docker("network", "ls", "-q", "--filter", f"driver={server.name}").split():
            docker("network", "rm", net, check=False)
        server.stop()
        server.cleanup()


class Docker:
    """Creates containers and networks with unique names; removes them all afterwards."""

    def __init__(self, driver):
        self.driver = driver
        self.containers = []
        self.networks = []
        self.tag = secrets.token_hex(3)

    def name(self, base):
        return f"{base}-{self.tag}"

    def network(self, base, *args, driver=None):
        name = self.name(base)
        docker("network", "create", "-d", driver or self.driver, *args, name)
        self.networks.append(name)
        return name

    def network_id(self, name):
        return docker("network", "inspect", name, "-f", "{{.Id}}")

    def run(self, base, network, *args, image=IMAGE, cmd=("sleep", "3600")):
        name = self.name(base)
        self.containers.append(name)
        docker("run", "-d", "--name", name, "--network", network, *args, image, *cmd)
        return name

    def exec(self, container, *cmd, check=True):
        return docker("exec", container, *cmd, check=check)

    def rm_network(self, name):
        docker("network", "rm", name)
        self.networks.remove(name)

    def cleanup(self):
        for c in self.containers:
            docker("rm", "-f", c, check=False)
        for n in self.networks:
            docker("network", "rm", n, check=False)
        self.containers, self.networks = [], []


def random_subnet():
    """A /24 for one test's own containers, which only talk to each other on this host."""
    return f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"


def inspect_net(container, network):
    data = json.loads(docker("inspect", container, "-f", "{{json .NetworkSettings.Networks}}"))
    return data[network]


def settle(server, timeout=60):
    """Wait until the server has no deferred CNI DEL pending."""
    support.settle_db(os.path.join(server.state_dir, "pycni.db"), timeout)


def assert_nothing_left(server, network_ids, subnets):
    """No link, netns, CNI cache entry, IPAM file or iptables rule made for these networks."""
    settle(server)
    leftovers = []
    for nid in network_ids:
        if f"pc-{nid[:12]}" in support.links():
            leftovers.append(f"bridge pc-{nid[:12]}")
        leftovers += [f"iptables: {ln}" for ln in support.iptables_mentioning(f"pycni-{nid[:12]}")]
    leftovers += [f"link {n}" for n in sorted(support.new_links())]
    leftovers += [f"netns {n}" for n in sorted(support.new_netns())]
    cache = os.path.join(server.state_dir, "cni", "results")
    leftovers += [f"cache {f}" for f in support.files_under(cache)]
    leftovers += [f"ipam {f}" for f in support.ip_files(os.path.join(server.state_dir, "ipam"))]
    for subnet in subnets:
        prefix = subnet.rsplit(".", 1)[0] + "."
        leftovers += [f"iptables: {ln}" for ln in support.iptables_mentioning(prefix)]
    assert not leftovers, "left behind:\n" + "\n".join(leftovers)


DOCKERD_LOG = "/var/log/dockerd.log"  # scripts/start-dockerd.sh's, if stderr is not a file


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def child_pids(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def alive(pid):
    """Whether process pid runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _dockerd_pid():
    try:
        with open("/var/run/docker.pid") as f:
            pid = int(f.read().strip())
        if _comm(pid) == "dockerd" and alive(pid):
            return pid
    except (OSError, ValueError):
        pass
    pids = [int(p) for p in os.listdir("/proc")
            if p.isdigit() and _comm(p) == "dockerd" and alive(p)]
    assert len(pids) == 1, f"expected one dockerd process, found {pids}"
    return pids[0]


def _argv(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


def daemon_config_flags():
    """The running dockerd's --config-file, for daemons a test starts beside it (the engine's
    settings: Docker 29's runtime and firewall backend)."""
    argv = _argv(_dockerd_pid())
    for i, arg in enumerate(argv):
        if arg == "--config-file" and i + 1 < len(argv):
            return ["--config-file", argv[i + 1]]
        if arg.startswith("--config-file="):
            return [arg]
    return []


def docker_answers():
    return subprocess.run([DOCKER, "info"], capture_output=True, timeout=60).returncode == 0


def wait_docker(timeout=120):
    deadline = time.monotonic() + timeout
    while not docker_answers():
        assert time.monotonic() < deadline, f"dockerd does not answer after {timeout} s"
        time.sleep(0.5)


class Dockerd:
    """The running dockerd, and how it was started, to restart it the same way
    (systemd, or the same command line, environment and log file) or with other flags."""

    def __init__(self):
        self.pid = _dockerd_pid()
        with open(f"/proc/{self.pid}/cgroup") as f:
            self.systemd = "docker.service" in f.read() and shutil.which("systemctl") is not None
        self.argv = _argv(self.pid)
        with open(f"/proc/{self.pid}/environ", "rb") as f:
            self.env = dict(e.decode().split("=", 1) for e in f.read().split(b"\0") if b"=" in e)
        self.exe = os.readlink(f"/proc/{self.pid}/exe")
        self.cwd = os.readlink(f"/proc/{self.pid}/cwd")
        # Its log: the file its stderr goes to (a restart appends to it).
        stderr = os.readlink(f"/proc/{self.pid}/fd/2")
        self.log_path = stderr if os.path.isfile(stderr) else DOCKERD_LOG

    def running_argv(self):
        return _argv(_dockerd_pid())

    def restart(self, argv=None):
        """Restart as it was started, or with the command line argv."""
        if self.systemd and argv is None:
            subprocess.run(["systemctl", "restart", "docker"], check=True, timeout=300)
            wait_docker()
            self.pid = _dockerd_pid()
        else:
            self.stop()
            self.start(argv)

    def stop(self, timeout=120):
        pid = _dockerd_pid()
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(pid):
            assert time.monotonic() < deadline, f"dockerd did not exit {timeout} s after SIGTERM"
            time.sleep(0.2)

    def start(self, argv=None):
        if self.systemd and argv is None:
            subprocess.run(["systemctl", "start", "docker"], check=True, timeout=300)
        else:
            with open(self.log_path, "ab") as log:
                subprocess.Popen(argv or self.argv, executable=self.exe, env=self.env,
                                 cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        wait_docker()
        self.pid = _dockerd_pid()

    def log_text(self):
        if self.systemd:
            return subprocess.run(["journalctl", "-u", "docker", "-n", "3000", "--no-pager"],
                                  capture_output=True, text=True).stdout
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - 2_000_000))
                return f.read().decode(errors="replace")
        except OSError:
            return ""


def endpoint_ids(container):
    data = json.loads(docker("inspect", container, "-f", "{{json .NetworkSettings.Networks}}"))
    return {v["EndpointID"] for v in data.values()}


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# debootstrap (about 30 s), then docker build with apt-get (a few minutes on a slow mirror).
MAKE_TIMEOUT = 1800


def plugin_name():
    """The managed plugin's reference, as the Makefile makes it: pycni/pycni:<version>."""
    import re
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        version = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)
    return f"pycni/pycni:{version}"


def make(*args):
    """`make -C <checkout> ARGS` against the running dockerd's CLI."""
    proc = subprocess.run(["make", "-C", ROOT, f"DOCKER={DOCKER}", *args],
                          capture_output=True, text=True, timeout=MAKE_TIMEOUT)
    assert proc.returncode == 0, (f"make {' '.join(args)} failed ({proc.returncode}):\n"
                                  f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


BUNDLE_SOURCES = ("pyproject.toml", "Dockerfile", "Makefile", "cnm_bridge", "cni_runner", "plugin")


def bundle_is_fresh(root):
    """Whether plugin/build/pycni (the managed plugin's bundle) is newer than everything it
    is built from: then tests on another engine reuse it instead of building it again."""
    bundle = os.path.join(root, "plugin", "build", "pycni", "config.json")
    try:
        built = os.path.getmtime(bundle)
    except OSError:
        return False
    newest = 0.0
    for src in BUNDLE_SOURCES:
        path = os.path.join(root, src)
        for dirpath, dirs, files in os.walk(path) if os.path.isdir(path) else [("", [], [path])]:
            dirs[:] = [d for d in dirs if d not in ("build", "__pycache__")]
            for f in files:
                newest = max(newest, os.path.getmtime(os.path.join(dirpath, f)))
    return built > newest
