"""pycni as a managed (v2) Docker plugin: built with make, enabled, used, and still
enabled and working after dockerd restarts (see docs/managed-plugin.md).

The plugin's host mounts point at this test's own directories (`docker plugin set
NAME.source=...`), so the host's /var/lib/pycni and /etc/cni/net.d are left alone.
dockerd is restarted the way it was started: systemd, or the same command line.
"""

import os
import re
import shutil
import signal
import subprocess
import time
import types

from dockerlib import DOCKER, Docker, assert_nothing_left, docker, random_subnet
from test_driver_basics import assert_inspect_matches, ping

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = "pycni-base:local"
# debootstrap (about 30 s), then docker build with apt-get (a few minutes on a slow mirror).
MAKE_TIMEOUT = 1800
DOCKERD_LOG = "/var/log/dockerd.log"  # scripts/start-dockerd.sh's, if stderr is not a file


def _version():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        return re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)


PLUGIN = f"pycni/pycni:{_version()}"


def make(*args):
    proc = subprocess.run(["make", "-C", ROOT, f"DOCKER={DOCKER}", *args],
                          capture_output=True, text=True, timeout=MAKE_TIMEOUT)
    assert proc.returncode == 0, (f"make {' '.join(args)} failed ({proc.returncode}):\n"
                                  f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _dockerd_pid():
    try:
        with open("/var/run/docker.pid") as f:
            pid = int(f.read().strip())
        if _comm(pid) == "dockerd":
            return pid
    except (OSError, ValueError):
        pass
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _comm(p) == "dockerd"]
    assert len(pids) == 1, f"expected one dockerd process, found {pids}"
    return pids[0]


def docker_answers():
    return subprocess.run([DOCKER, "info"], capture_output=True, timeout=60).returncode == 0


def wait_docker(timeout=120):
    deadline = time.monotonic() + timeout
    while not docker_answers():
        assert time.monotonic() < deadline, f"dockerd does not answer after {timeout} s"
        time.sleep(0.5)


class Dockerd:
    """The running dockerd, and how it was started, to restart it the same way."""

    def __init__(self):
        self.pid = _dockerd_pid()
        with open(f"/proc/{self.pid}/cgroup") as f:
            self.systemd = "docker.service" in f.read() and shutil.which("systemctl") is not None
        with open(f"/proc/{self.pid}/cmdline", "rb") as f:
            self.argv = [a.decode() for a in f.read().split(b"\0") if a]
        with open(f"/proc/{self.pid}/environ", "rb") as f:
            self.env = dict(e.decode().split("=", 1) for e in f.read().split(b"\0") if b"=" in e)
        self.exe = os.readlink(f"/proc/{self.pid}/exe")
        self.cwd = os.readlink(f"/proc/{self.pid}/cwd")
        # Its log: the file its stderr goes to (a restart appends to it).
        stderr = os.readlink(f"/proc/{self.pid}/fd/2")
        self.log_path = stderr if os.path.isfile(stderr) else DOCKERD_LOG

    def restart(self):
        if self.systemd:
            subprocess.run(["systemctl", "restart", "docker"], check=True, timeout=300)
        else:
            self.stop()
            self.start()
        wait_docker()
        self.pid = _dockerd_pid()

    def stop(self, timeout=120):
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(self.pid):
            assert time.monotonic() < deadline, f"dockerd did not exit {timeout} s after SIGTERM"
            time.sleep(0.2)

    def start(self):
        if self.systemd:
            subprocess.run(["systemctl", "start", "docker"], check=True, timeout=300)
            return
        with open(self.log_path, "ab") as log:
            subprocess.Popen(self.argv, executable=self.exe, env=self.env, cwd=self.cwd,
                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)

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


def plugin_enabled():
    return docker("plugin", "inspect", "-f", "{{.Enabled}}", PLUGIN) == "true"


def plugin_lines(dockerd):
    """What dockerd logged from the plugin's stdout and stderr (as `plugin=<id>`)."""
    pid = docker("plugin", "inspect", "-f", "{{.Id}}", PLUGIN, check=False).stdout.strip()
    return [ln for ln in dockerd.log_text().splitlines() if pid and pid in ln]


def plugin_log(dockerd):
    return "\n".join(plugin_lines(dockerd)[-60:]) or "(nothing from the plugin in dockerd's log)"


def entrypoint_runs(dockerd):
    return sum("pycni-plugin-entrypoint: exec pycni serve" in ln for ln in plugin_lines(dockerd))


def distinct_subnets(n):
    subnets = set()
    while len(subnets) < n:
        subnets.add(random_subnet())
    return sorted(subnets)


def two_containers_ping(dk, net, subnet):
    a = dk.run("a", net)
    b = dk.run("b", net)
    ia = assert_inspect_matches(dk, a, net)
    ib = assert_inspect_matches(dk, b, net)
    assert ia["Gateway"] == subnet.rsplit(".", 1)[0] + ".1"
    ping(dk, a, b)  # by name: Docker's embedded DNS
    ping(dk, b, a)
    ping(dk, a, ib["IPAddress"])
    return a, b


def test_managed_plugin_build_enable_use_and_survive_dockerd_restart(
        needs_docker, busybox_image, tmp_path):
    mounts = {"cni-conf": tmp_path / "net.d", "cni-bin": tmp_path / "cni-bin",
              "state": tmp_path / "state", "cni-data": tmp_path / "cni-data"}
    for path in mounts.values():
        path.mkdir()
    state = types.SimpleNamespace(state_dir=str(mounts["state"]))
    dockerd = Dockerd()
    dk = Docker(PLUGIN)
    try:
        make("base-image")  # kept if pycni-base:local exists
        make("plugin", f"BASE={BASE}")
        assert docker("plugin", "inspect", "-f", "{{.Enabled}}", PLUGIN) == "false"
        docker("plugin", "set", PLUGIN, "PYCNI_LOG_LEVEL=debug",
               *(f"{name}.source={path}" for name, path in mounts.items()))
        enable = docker("plugin", "enable", PLUGIN, check=False, timeout=180)
        assert enable.returncode == 0, f"{enable.stderr}\n{plugin_log(dockerd)}"
        assert plugin_enabled()

        # Two containers on a zero-config network: addresses, names, teardown.
        s1, s_keep, s2 = distinct_subnets(3)
        net = dk.network("mp", "--subnet", s1)
        nid = dk.network_id(net)
        assert os.path.exists(mounts["state"] / "pycni.db"), "state mount not used"
        a, b = two_containers_ping(dk, net, s1)
        docker("rm", "-f", a, b)
        dk.rm_network(net)
        assert_nothing_left(state, [nid], [s1])

        # A network made before the restart: pycni must still know it afterwards.
        keep = dk.network("keep", "--subnet", s_keep)
        keep_id = dk.network_id(keep)

        runs = entrypoint_runs(dockerd)
        assert runs >= 1, f"the plugin's stderr is not in dockerd's log:\n{plugin_log(dockerd)}"
        dockerd.restart()
        assert plugin_enabled(), f"not enabled after the dockerd restart\n{plugin_log(dockerd)}"
        assert entrypoint_runs(dockerd) > runs, "the plugin was not started again by dockerd"

        c = dk.run("c", keep)
        info = assert_inspect_matches(dk, c, keep)
        ping(dk, c, info["Gateway"])
        net2 = dk.network("after", "--subnet", s2)
        nid2 = dk.network_id(net2)
        d, e = two_containers_ping(dk, net2, s2)
        docker("rm", "-f", c, d, e)
        dk.rm_network(keep)
        dk.rm_network(net2)
        assert_nothing_left(state, [keep_id, nid2], [s_keep, s2])
    finally:
        if not docker_answers():  # a restart that failed half-way: leave a dockerd running
            dockerd.start()
            wait_docker()
        dk.cleanup()
        docker("plugin", "disable", "-f", PLUGIN, check=False)
        docker("plugin", "rm", "-f", PLUGIN, check=False)
