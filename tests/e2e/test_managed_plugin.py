"""pycni as a managed (v2) Docker plugin: built with make, enabled on a plain host (no
/etc/cni, /opt/cni, /var/lib/pycni or /var/lib/cni: refused, naming the dir, until the
docs' mkdir), used, and still enabled and working after dockerd restarts (see
docs/managed-plugin.md). tests/e2e/test_plugin_lifecycle.py has the registry, upgrades
and the mounts.

After the plain-host part, the plugin's host mounts point at this test's own
directories (`docker plugin set NAME.source=...`). dockerd is restarted the way it
was started: systemd, or the same command line.
"""

import os
import subprocess
import types

from dockerlib import (ROOT, Docker, Dockerd, assert_nothing_left, bundle_is_fresh, docker,
                       docker_answers, make, plugin_name, random_subnet, wait_docker)
from test_driver_basics import assert_inspect_matches, ping

BASE = "pycni-base:local"
PLUGIN = plugin_name()


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


# What a plain Debian host with only containernetworking-plugins lacks.
PLAIN_HOST_ABSENT = ("/etc/cni", "/opt/cni", "/var/lib/pycni", "/var/lib/cni")


# The docs' one step before install or enable: the host dirs the plugin mounts.
MKDIR = ("/etc/cni/net.d", "/opt/cni/bin", "/var/lib/pycni", "/var/lib/cni")


def plain_host_part(dockerd, dk, tmp_path):
    """On a host without the CNI dirs, enable names the missing one; after the docs'
    mkdir it works with the default mount sources."""
    aside = {}
    for path in PLAIN_HOST_ABSENT:
        if os.path.lexists(path):
            aside[path] = str(tmp_path / ("aside" + path.replace("/", "-")))
            os.rename(path, aside[path])
    try:
        enable = docker("plugin", "enable", PLUGIN, check=False, timeout=180)
        assert enable.returncode != 0, "enabled without its mount sources"
        assert "/etc/cni/net.d" in enable.stderr or "/opt/cni/bin" in enable.stderr \
            or "/var/lib/" in enable.stderr, enable.stderr
        for path in MKDIR:
            os.makedirs(path, exist_ok=True)
        enable = docker("plugin", "enable", PLUGIN, check=False, timeout=180)
        assert enable.returncode == 0, f"{enable.stderr}\n{plugin_log(dockerd)}"
        subnet = random_subnet()
        net = dk.network("plain", "--subnet", subnet)
        two_containers_ping(dk, net, subnet)
        assert os.path.exists("/var/lib/pycni/pycni.db")
        dk.cleanup()
        disable = docker("plugin", "disable", PLUGIN, check=False, timeout=180)
        assert disable.returncode == 0, disable.stderr
    finally:
        dk.cleanup()
        docker("plugin", "disable", "-f", PLUGIN, check=False)
        for path in PLAIN_HOST_ABSENT:
            if path not in aside and os.path.lexists(path):
                subprocess.run(["rm", "-rf", path])  # made here
        for path, moved in aside.items():
            if os.path.lexists(path):
                subprocess.run(["rm", "-rf", path])
            os.rename(moved, path)


def test_managed_plugin_build_enable_use_and_survive_dockerd_restart(
        needs_docker, busybox_image, tmp_path):
    mounts = {name: tmp_path / name for name in ("cni-conf", "cni-bin", "state", "cni-data")}
    for path in mounts.values():
        path.mkdir()
    state = types.SimpleNamespace(state_dir=str(mounts["state"]))
    dockerd = Dockerd()
    dk = Docker(PLUGIN)
    try:
        if bundle_is_fresh(ROOT):  # built by this run on another engine
            make("plugin-create")
        else:
            make("base-image")  # kept if pycni-base:local exists
            make("plugin", f"BASE={BASE}")
        assert docker("plugin", "inspect", "-f", "{{.Enabled}}", PLUGIN) == "false"
        plain_host_part(dockerd, dk, tmp_path)
        docker("plugin", "set", PLUGIN, "PYCNI_LOG_LEVEL=debug",
               *(f"{name}.source={path}" for name, path in mounts.items()))
        enable = docker("plugin", "enable", PLUGIN, check=False, timeout=180)
        assert enable.returncode == 0, f"{enable.stderr}\n{plugin_log(dockerd)}"
        assert plugin_enabled()

        # Two containers on a zero-config network: addresses, names, teardown.
        s1, s_keep, s2 = distinct_subnets(3)
        net = dk.network("mp", "--subnet", s1)
        nid = dk.network_id(net)
        assert os.path.exists(mounts["state"] / "pycni.db"), \
            "state mount not used"
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
