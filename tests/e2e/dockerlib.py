"""Helpers for the end-to-end tests: the docker CLI, a pycni server, cleanup checks."""

import json
import os
import random
import secrets
import shutil
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


class PycniServer:
    """`pycni serve` on /run/docker/plugins/<name>.sock with private dirs."""

    def __init__(self, extra_args=()):
        self.name = "pycnit" + secrets.token_hex(4)
        self.root = tempfile.mkdtemp(prefix="pycni-e2e-")
        self.conf_dir = os.path.join(self.root, "net.d")
        self.state_dir = os.path.join(self.root, "state")
        self.socket = f"/run/docker/plugins/{self.name}.sock"
        self.log_path = os.path.join(self.root, "pycni.log")
        os.makedirs(self.conf_dir)
        self.extra_args = list(extra_args)
        self.proc = None

    def start(self):
        cmd = [sys.executable, "-m", "cnm_bridge.cli", "serve", "--socket", self.socket,
               "--conf-dir", self.conf_dir, "--state-dir", self.state_dir,
               "--bin-dir", ":".join(support.CNI_BIN_DIRS), *self.extra_args]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"pycni did not start:\n{self.logs()}")
            time.sleep(0.05)

    def stop(self, sig=15):
        if sig == 15 and self.proc and self.proc.poll() is None:
            try:
                settle(self)  # let deferred DELs finish before the state dir goes
            except AssertionError:
                pass
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        if os.path.exists(self.socket):
            os.unlink(self.socket)

    def logs(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-8000:]

    def write_conf(self, filename, content):
        path = os.path.join(self.conf_dir, filename)
        with open(path, "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
        return path

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


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
    leftovers += [f"link {n}" for n in support.links() if n.startswith("pyc")]
    leftovers += [f"netns {n}" for n in support.netns_names() if n.startswith("pycni-")]
    cache = os.path.join(server.state_dir, "cni", "results")
    leftovers += [f"cache {f}" for f in support.files_under(cache)]
    leftovers += [f"ipam {f}" for f in support.ip_files(os.path.join(server.state_dir, "ipam"))]
    for subnet in subnets:
        prefix = subnet.rsplit(".", 1)[0] + "."
        leftovers += [f"iptables: {ln}" for ln in support.iptables_mentioning(prefix)]
    assert not leftovers, "left behind:\n" + "\n".join(leftovers)


def dockerd_pid():
    out = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def dockerd_cmdline():
    pid = dockerd_pid()
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


def stop_dockerd(timeout=90):
    pid = dockerd_pid()
    if pid is None:
        return
    os.kill(pid, 15)
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split()[2] == "Z":
                break
        time.sleep(0.2)


def start_dockerd(cmdline, timeout=90):
    """Start dockerd as scripts/start-dockerd.sh does (in the background, its own session)."""
    log = open("/var/log/dockerd.log", "ab")
    subprocess.Popen(cmdline, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                     start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run([DOCKER, "info"], capture_output=True).returncode == 0:
            return
        time.sleep(0.3)
    raise AssertionError("dockerd did not come back")


def restart_dockerd(cmdline=None):
    """Restart dockerd, with another command line if given; returns the one it had."""
    if subprocess.run(["systemctl", "is-system-running"], capture_output=True).returncode == 0 \
            and cmdline is None:
        support.run("systemctl", "restart", "docker")
        return None
    old = dockerd_cmdline()
    stop_dockerd()
    start_dockerd(cmdline or old)
    return old


def endpoint_ids(container):
    data = json.loads(docker("inspect", container, "-f", "{{json .NetworkSettings.Networks}}"))
    return {v["EndpointID"] for v in data.values()}
