"""The managed plugin as users get and keep it (docs/managed-plugin.md): pushed to a
registry and installed from it under an alias, upgraded and reconfigured while
containers run, with only the host dirs it uses mounted, and CNI in the container's own
netns where the engine has it at Join.

Each test installs its own plugin under a unique alias with mount sources of its own,
from a registry it runs on a free loopback port, and removes all of it.
"""

import json
import os
import re
import secrets
import threading
import time
import urllib.request

import pytest

import support
from dockerlib import (Docker, assert_nothing_left, docker, docker_fails,
                       netns_at_join, random_subnet)
from pluginlib import (HostDirs, Registry, build_bundle, free_port, install, plugin_mounts,
                       plugin_pid, push_build, remove_plugin, unique_alias)
from test_driver_basics import assert_inspect_matches, ping


@pytest.fixture(scope="module")
def registry(needs_docker_session, busybox_image):
    build_bundle()
    reg = Registry().start()
    try:
        reg.builds = {"t1": push_build(reg, "t1", "build-1"), "t2": push_build(reg, "t2", "build-2")}
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def plugin(registry):
    """Installed from the registry's t1 under a unique alias; removed with all it made."""
    dirs = HostDirs()
    alias = unique_alias()
    name = None
    dk = Docker("")
    try:
        name = install(registry.builds["t1"], alias, dirs)
        dk.driver = name
        yield name, dirs, dk
    finally:
        if name:
            serving_again(name, dirs)  # a test that failed half-way may have left it off
        try:
            dk.cleanup()
            if name:
                support.settle_db(os.path.join(dirs.state_dir, "pycni.db"), timeout=60)
        finally:
            if name:
                remove_plugin(name)
            dirs.cleanup()


def serving_again(name, dirs):
    """The plugin enabled on this test's dirs, so that pycni tears down what the test made."""
    if docker("plugin", "inspect", "-f", "{{.Enabled}}", name, check=False).stdout.strip() == "true":
        return
    docker("plugin", "set", name, *dirs.settings(), check=False)
    docker("plugin", "enable", name, check=False, timeout=120)


def endpoint_modes(dirs):
    return sorted(m for (m,) in dirs.db("SELECT mode FROM endpoints"))


def test_install_from_registry_and_use_under_the_alias(plugin):
    name, dirs, dk = plugin
    alias = name.split(":")[0]
    # Docker registers a managed plugin's drivers under its full name, tag included, and
    # looks a network driver up by the name as typed: the bare alias is not found.
    err = docker_fails("network", "create", "-d", alias, "--subnet", random_subnet(),
                       dk.name("bare"))
    assert f"could not resolve driver {alias} in registry" in err, err
    subnet = random_subnet()
    net = dk.network("reg", "--subnet", subnet, "--ipam-driver", name)
    a, b = dk.run("a", net), dk.run("b", net)
    ia = assert_inspect_matches(dk, a, net)
    ping(dk, a, b)  # by name: Docker's DNS
    ping(dk, b, ia["IPAddress"])
    assert docker("network", "inspect", "-f", "{{.Driver}} {{.IPAM.Driver}}", net) == \
        f"{name} {name}"
    assert os.path.exists(os.path.join(dirs.state_dir, "pycni.db")), "state mount not used"


def test_direct_mode_inside_the_plugin(plugin):
    """CNI runs in the container's netns at Join where the engine has mounted it (28+),
    as with the legacy plugin; on older engines the same network hands over."""
    name, dirs, dk = plugin
    subnet = random_subnet()
    net = dk.network("direct", "--subnet", subnet, "-o", "cni.attach=direct")
    a, b = dk.run("a", net), dk.run("b", net)
    assert_inspect_matches(dk, a, net)
    ping(dk, a, b)
    want = "direct" if netns_at_join() else "handoff"
    assert endpoint_modes(dirs) == [want, want], dirs.db("SELECT id, mode FROM endpoints")


def test_only_the_dirs_pycni_uses_are_mounted(plugin):
    name, dirs, dk = plugin
    pid = plugin_pid(name)
    points = dict(plugin_mounts(pid))
    # The host's dirs at the paths pycni reads: no /etc, /var/lib or / of the host.
    for dest in ("/etc/cni/net.d", "/opt/cni/bin", "/var/lib/pycni", "/var/lib/cni"):
        assert dest in points, f"{dest} not mounted: {sorted(points)}"
    assert not any(p in points for p in ("/host/etc", "/host/var/lib", "/host/opt")), points
    assert not os.path.exists(f"/proc/{pid}/root/var/lib/docker"), \
        "Docker's data root is visible in the plugin"
    with open("/etc/shadow", "rb") as host, open(f"/proc/{pid}/root/etc/shadow", "rb") as mine:
        assert host.read() != mine.read(), "the host's /etc/shadow is visible in the plugin"
    # The conf dir is read-only inside the plugin.
    conf_opts = [ln.split()[5] for ln in open(f"/proc/{pid}/mountinfo")
                 if ln.split()[4] == "/etc/cni/net.d"]
    assert conf_opts and conf_opts[-1].startswith("ro"), conf_opts


SLOWDEL = """#!/usr/bin/python3
# A CNI plugin whose DEL waits while its holdFile exists: a DEL pending across an upgrade.
import json, os, sys, time
conf = json.load(sys.stdin)
cmd = os.environ.get("CNI_COMMAND")
if cmd == "VERSION":
    print(json.dumps({"cniVersion": conf.get("cniVersion", "1.0.0"),
                      "supportedVersions": ["0.3.1", "0.4.0", "1.0.0"]}))
elif cmd == "ADD":
    print(json.dumps(conf["prevResult"]))
elif cmd == "DEL":
    while os.path.exists(conf["holdFile"]):
        time.sleep(0.2)
"""


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f)


class Watch:
    """A peer's ping of a container every 0.1 s, and the host's HTTP request to its
    published port every 0.1 s: what each missed, and when."""

    def __init__(self, dk, peer, target_ip, port):
        self.dk, self.peer, self.target_ip, self.port = dk, peer, target_ip, port
        self.http = []  # (time, answered)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._http_loop, daemon=True)

    def start(self):
        docker("exec", "-d", self.peer, "sh", "-c", f"ping -i 0.1 {self.target_ip} >/ping.log 2>&1")
        self._thread.start()
        return self

    def _http_loop(self):
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1).read()
                ok = True
            except urllib.error.HTTPError:
                ok = True  # an answer
            except OSError:
                ok = False
            self.http.append((t, ok))
            self._stop.wait(0.1)

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.dk.exec(self.peer, "killall", "ping", check=False)
        time.sleep(0.3)
        log = self.dk.exec(self.peer, "cat", "/ping.log")
        seqs = [int(s) for s in re.findall(r"seq=(\d+)", log)]
        assert seqs, f"no ping answered: {log[-500:]}"
        self.pings, self.ping_lost = len(seqs), (max(seqs) + 1) - len(set(seqs))
        self.http_failed = sum(1 for _, ok in self.http if not ok)
        return self


def restart_cycle(name, *between):
    """disable -f, then each command, then enable: what users do to reconfigure or upgrade.
    -> seconds (disable, the commands, enable)."""
    t0 = time.monotonic()
    docker("plugin", "disable", "-f", name, timeout=120)
    t1 = time.monotonic()
    for cmd in between:
        out = docker(*cmd, check=False, timeout=300)
        assert out.returncode == 0, f"docker {' '.join(cmd)}: {out.stderr}"
    t2 = time.monotonic()
    out = docker("plugin", "enable", name, check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    return t1 - t0, t2 - t1, time.monotonic() - t2


def mount_source(name, mount):
    return docker("plugin", "inspect", "-f",
                  f'{{{{range .Config.Mounts}}}}{{{{if eq .Name "{mount}"}}}}{{{{.Source}}}}'
                  f'{{{{end}}}}{{{{end}}}}', name)


def test_upgrade_set_and_restart_with_containers_running(plugin, registry, capsys):
    name, dirs, dk = plugin
    subnet = random_subnet()
    net = dk.network("live", "--subnet", subnet)
    port = free_port()
    web = dk.run("web", net, "-p", f"127.0.0.1:{port}:80", cmd=("httpd", "-f", "-p", "80", "-h", "/"))
    peer = dk.run("peer", net)
    web_ip = assert_inspect_matches(dk, web, net)["IPAddress"]

    # A DEL pending across the upgrade: a list whose last plugin holds DEL while a file exists.
    tag = secrets.token_hex(3)
    slowdel = os.path.join(dirs.sources["cni-bin"], "pycni-test-slowdel")
    with open(slowdel, "w") as f:
        f.write(SLOWDEL)
    os.chmod(slowdel, 0o755)
    hold = f"hold-{tag}"
    cni_name = f"slow-{tag}"
    slow_subnet = random_subnet()
    write_json(os.path.join(dirs.sources["cni-conf"], f"30-{cni_name}.conflist"), {
        "cniVersion": "1.0.0", "name": cni_name,
        "plugins": [{"type": "bridge", "bridge": "psl" + tag, "isGateway": True,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": slow_subnet}]],
                              "routes": [{"dst": "0.0.0.0/0"}]}},
                    {"type": "pycni-test-slowdel", "holdFile": f"/etc/cni/net.d/{hold}"}]})
    slow_net = dk.network("slow", "-o", f"cni.network={cni_name}", "--subnet", slow_subnet)
    slow_nid = dk.network_id(slow_net)
    doomed = dk.run("doomed", slow_net)
    doomed_ip = assert_inspect_matches(dk, doomed, slow_net)["IPAddress"]
    host_local = os.path.join(dirs.sources["cni-data"], "networks", cni_name)
    assert doomed_ip in os.listdir(host_local)

    watch = Watch(dk, peer, web_ip, port).start()
    try:
        time.sleep(1)
        open(os.path.join(dirs.sources["cni-conf"], hold), "w").close()
        docker("rm", "-f", doomed)
        dk.containers.remove(doomed)
        assert dirs.db("SELECT count(*) FROM endpoints WHERE state='deleting'") == [(1,)]
        # The upgrade first, with the DEL still held when the old plugin stops: the new
        # build finds it pending and redoes it at start (the hold is gone by then).
        # `docker plugin upgrade` keeps env settings but takes mount sources from the new
        # build's config (moby keeps them in the config it replaces): set them again.
        t0 = time.monotonic()
        docker("plugin", "disable", "-f", name, timeout=120)
        t1 = time.monotonic()
        assert dirs.db("SELECT count(*) FROM endpoints WHERE state='deleting'") == [(1,)]
        os.unlink(os.path.join(dirs.sources["cni-conf"], hold))
        docker("plugin", "upgrade", "--skip-remote-check", "--grant-all-permissions", name,
               registry.builds["t2"], timeout=300)
        sources_after_upgrade = mount_source(name, "state")
        docker("plugin", "set", name, *dirs.settings())
        t2 = time.monotonic()
        docker("plugin", "enable", name, timeout=120)
        times = {"disable -f, upgrade + set mounts, enable": (t1 - t0, t2 - t1,
                                                              time.monotonic() - t2)}
        support.settle_db(os.path.join(dirs.state_dir, "pycni.db"), timeout=60)
        times["disable -f, set, enable"] = restart_cycle(
            name, ("plugin", "set", name, "PYCNI_LOG_LEVEL=info"))
        times["disable -f, enable"] = restart_cycle(name)
        time.sleep(1)
    finally:
        watch.stop()
    with capsys.disabled():
        print(f"\nmanaged plugin lifecycle ({docker('version', '-f', '{{.Server.Version}}')}): "
              + "; ".join(f"{k}: " + " + ".join(f"{x:.1f}" for x in v) + " s"
                          for k, v in times.items())
              + f"; state mount after upgrade: {sources_after_upgrade}"
              + f"; peer's pings: {watch.pings} answered, {watch.ping_lost} lost; "
              f"HTTP to the published port: {len(watch.http)} asked, {watch.http_failed} failed")
    # The containers never noticed: the datapath is the kernel's, not the plugin's.
    assert watch.ping_lost == 0 and watch.http_failed == 0, (watch.ping_lost, watch.http_failed)
    assert docker("plugin", "inspect", "-f", "{{.PluginReference}}", name) == registry.builds["t2"]
    assert docker("plugin", "inspect", "-f", "{{.Settings.Env}}", name).count("PYCNI_LOG_LEVEL=info") == 1

    # State carried over: addresses kept, the pending DEL done, old networks take new containers.
    assert assert_inspect_matches(dk, web, net)["IPAddress"] == web_ip
    support.settle_db(os.path.join(dirs.state_dir, "pycni.db"), timeout=60)
    assert doomed_ip not in os.listdir(host_local)
    late = dk.run("late", net)
    ping(dk, late, web)
    ping(dk, late, web_ip)
    late_slow = dk.run("lateslow", slow_net)
    assert_inspect_matches(dk, late_slow, slow_net)
    nid = dk.network_id(net)
    dk.cleanup()
    assert_nothing_left(dirs, [nid, slow_nid], [subnet, slow_subnet])
