"""pycni networks that span Docker hosts in swarm mode, on a two-node swarm built on this
machine (swarmlib): the managed plugin on both nodes, macvlan over their shared L2."""

import ipaddress
import json
import os
import random
import subprocess
import sys
import time

import pytest

import support
from dockerlib import (IMAGE, bundle_is_fresh, engine_major, make, make_busybox_image,
                       plugin_name)
from swarmlib import ROOT, Cluster

PLUGIN = plugin_name()


@pytest.fixture(scope="module")
def cluster(needs_docker_session):
    make_busybox_image()
    if not bundle_is_fresh(ROOT):
        make("base-image")
        make("bundle", "BASE=pycni-base:local")
    engine = engine_major()
    path = None
    if engine != 20:  # the nodes run the engine the tests run on
        path = subprocess.run([os.path.join(ROOT, "scripts", "engines.sh"), "env",
                               str(engine)], capture_output=True, text=True,
                              check=True).stdout.strip()
    c = Cluster(engine_path=path)
    try:
        c.start(PLUGIN)
        yield c
    finally:
        c.cleanup()


def random_subnet():
    return ipaddress.ip_network(f"10.{random.randint(190, 199)}.{random.randint(0, 255)}.0/24")


def wait(what, check, timeout=90, detail=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{detail()}"
        time.sleep(0.5)


def tasks(cluster, service):
    """{container name: (host, address)} of a service's running tasks."""
    out = {}
    for host in cluster.hosts:
        if host.proc is None:
            continue
        ids = host.docker("ps", "-q", "--filter",
                          f"label=com.docker.swarm.service.name={service}").split()
        for cid in ids:
            info = json.loads(host.docker("inspect", cid))[0]
            nets = info["NetworkSettings"]["Networks"]
            addr = [n["IPAddress"] for n in nets.values() if n["IPAddress"]]
            out[info["Name"].lstrip("/")] = (host, addr[0] if addr else "")
    return out


def ping(host, container, target):
    out = host.docker("exec", container, "ping", "-c", "1", "-W", "3", target, check=False)
    assert out.returncode == 0, f"{container} on {host.name} cannot reach {target}: " \
                                f"{out.stdout}{out.stderr}"


def pycni_state(host):
    """pycni's records on a host: (networks, endpoints)."""
    out = subprocess.run([sys.executable, "-m", "cnm_bridge.cli", "status", "--json",
                          "--state-dir", host.state_dir, "--conf-dir", host.conf_dir,
                          "--socket", "/nonexistent"], capture_output=True, text=True)
    data = json.loads(out.stdout)
    return data["Networks"], data["Endpoints"]


def check_service_spans_hosts(cluster, net, service, subnet, slices):
    m = cluster.manager
    # --no-resolve-image: the image is local, no registry is asked. At most 2 per node:
    # right after a plugin re-enable, swarm may not count a node as having the plugin yet
    # and put all 4 tasks on the other one, where they would stay; capped, the rest wait
    # until the node counts.
    m.docker("service", "create", "--detach", "--no-resolve-image", "--name", service,
             "--network", net, "--endpoint-mode", "dnsrr", "--replicas", "4",
             "--replicas-max-per-node", "2", IMAGE, "sleep", "3600")
    # Minutes: after a plugin re-enable a node may first refuse tasks, which swarm then
    # retries with a back-off.
    running = wait("4 tasks on both hosts", lambda: (
        lambda t: t if len(t) == 4 and len({h.name for h, _ in t.values()}) == 2 else None)(
            tasks(cluster, service)), timeout=240, detail=lambda: m.docker(
                "service", "ps", "--no-trunc", "--format",
                "{{.Node}} {{.CurrentState}} {{.Error}}", service, check=False).stdout)
    addrs = [a for _, a in running.values()]
    assert len(set(addrs)) == 4, running  # never the same address twice
    for name, (host, addr) in running.items():
        assert ipaddress.ip_address(addr) in subnet
        if slices:
            assert ipaddress.ip_address(addr) in slices[host.index - 1], (name, addr)
    (n1, (h1, a1)) = next((k, v) for k, v in running.items() if v[0] is cluster.hosts[0])
    (n2, (h2, a2)) = next((k, v) for k, v in running.items() if v[0] is cluster.hosts[1])
    ping(h1, n1, a2)  # across hosts, by address
    ping(h2, n2, a1)
    found = wait("tasks.<service> in DNS", lambda: (lambda out: out if sum(
        a in out for a in addrs) == 4 else None)(
            h1.docker("exec", n1, "nslookup", f"tasks.{service}", check=False).stdout))
    assert all(a in found for a in addrs)
    ping(h1, n1, f"tasks.{service}")
    return running


def remove_config(cluster, name):
    """A --config-only network goes once no swarm network on that host uses it any more."""
    for host in cluster.hosts:
        wait(f"{name} free on {host.name}", lambda h=host: h.docker(
            "network", "rm", name, check=False).returncode == 0)


def assert_host_clean(host, network_prefix):
    """Nothing of the swarm network left on this host: pycni's records, its netns, links."""
    nets, eps = pycni_state(host)
    assert not [n for n in nets if n["Network"].startswith(network_prefix)] and eps == []
    links = host.netns_run("ip", "-o", "link").stdout
    assert "pyc" not in links
    assert not support.new_netns()


def test_network_from_config_only_networks(cluster):
    """--config-only per host (a conflist, each host's --ip-range slice), --scope swarm
    --config-from on the manager: a dnsrr service spans both hosts."""
    tag = cluster.tag
    subnet = random_subnet()
    slices = list(subnet.subnets(1))
    gw = str(subnet.network_address + 1)
    for host, part in zip(cluster.hosts, slices):
        host.write_conf("10-lan.conflist", {
            "cniVersion": "1.0.0", "name": f"lan{tag}",
            "plugins": [{"type": "macvlan", "master": "lan0", "mode": "bridge",
                         "ipam": {"type": "host-local",
                                  "ranges": [[{"subnet": str(subnet), "gateway": gw}]]}}]})
        host.docker("network", "create", "--config-only", "-o", f"cni.network=lan{tag}",
                    "--subnet", str(subnet), "--gateway", gw, "--ip-range", str(part),
                    f"lan-cfg-{tag}")
    m = cluster.manager
    net = f"lan-{tag}"
    m.docker("network", "create", "-d", PLUGIN, "--scope", "swarm", "--config-from",
             f"lan-cfg-{tag}", "--attachable", net)
    service = f"web{tag}"
    running = check_service_spans_hosts(cluster, net, service, subnet, slices)
    # Attachable: `docker run` on a host joins the same network.
    h2 = cluster.hosts[1]
    h2.docker("run", "-d", "--name", f"solo{tag}", "--network", net, IMAGE, "sleep", "3600")
    n1 = next(k for k, v in running.items() if v[0] is cluster.hosts[0])
    ping(h2, f"solo{tag}", running[n1][1])
    h2.docker("rm", "-f", f"solo{tag}")
    # Down to nothing: each host's network goes, and nothing of it is left.
    m.docker("service", "rm", service)
    for host in cluster.hosts:
        wait(f"the network gone from {host.name}", lambda h=host: not [
            n for n in pycni_state(h)[0] if n["CNINetwork"] == f"lan{tag}"])
    assert_host_clean(cluster.hosts[1], net)
    m.docker("network", "rm", net)
    remove_config(cluster, f"lan-cfg-{tag}")


def test_zero_config_macvlan_and_a_host_going_away(cluster):
    tag = cluster.tag
    subnet = random_subnet()
    slices = list(subnet.subnets(1))
    gw = str(subnet.network_address + 1)
    for host, part in zip(cluster.hosts, slices):
        host.docker("network", "create", "--config-only", "-o", "cni.type=macvlan",
                    "-o", "parent=lan0", "--subnet", str(subnet), "--gateway", gw,
                    "--ip-range", str(part), f"mv-cfg-{tag}")
    m, h2 = cluster.hosts
    net = f"mv-{tag}"
    m.docker("network", "create", "-d", PLUGIN, "--scope", "swarm", "--config-from",
             f"mv-cfg-{tag}", net)
    service = f"mv{tag}"
    check_service_spans_hosts(cluster, net, service, subnet, slices)
    # Host 2's dockerd stops: its tasks come back on host 1, reachable, no address twice
    # (the per-node cap lifted first: 0 is none).
    cluster.manager.docker("service", "update", "--detach", "--replicas-max-per-node", "0",
                           service)
    h2.stop_dockerd()
    moved = wait("4 tasks on host 1", lambda: (lambda t: t if len(t) == 4 and all(
        h is m for h, _ in t.values()) else None)(tasks(cluster, service)), timeout=180)
    addrs = [a for _, a in moved.values()]
    assert len(set(addrs)) == 4
    names = list(moved)
    ping(m, names[0], moved[names[1]][1])
    # Host 2 comes back: pycni there keeps nothing of the tasks it lost.
    h2.start_dockerd()
    wait("host 2 ready", lambda: "Ready" in m.docker("node", "ls", "--format",
                                                      "{{.Hostname}} {{.Status}}"), timeout=120)
    wait("host 2's pycni reconciled", lambda: pycni_state(h2)[1] == [] or not [
        e for e in pycni_state(h2)[1] if e["State"] == "ready" and not e["Container"]],
        timeout=120)
    m.docker("service", "rm", service)
    wait("host 2 clean", lambda: not [n for n in pycni_state(h2)[0]
                                      if n["Network"].startswith(net)], timeout=120)
    m.docker("network", "rm", net)
    remove_config(cluster, f"mv-cfg-{tag}")
    assert_host_clean(h2, net)


def test_global_scope_the_manager_allocates(cluster):
    """PYCNI_SCOPE=global: the swarm manager allocates addresses cluster-wide (Docker's IPAM
    here), the CNI plugins take them on each host."""
    tag = cluster.tag
    for host in cluster.hosts:
        host.docker("plugin", "disable", PLUGIN, timeout=120)
        host.docker("plugin", "set", PLUGIN, "PYCNI_SCOPE=global")
        host.docker("plugin", "enable", PLUGIN, timeout=300)
    try:
        m = cluster.manager
        subnet = random_subnet()
        net = f"gl-{tag}"
        m.docker("network", "create", "-d", PLUGIN, "-o", "cni.type=macvlan",
                 "-o", "parent=lan0", "--subnet", str(subnet), "--attachable", net)
        assert m.docker("network", "inspect", net, "-f", "{{.Scope}}") == "swarm"
        check_service_spans_hosts(cluster, net, f"gl{tag}", subnet, None)
        m.docker("service", "rm", f"gl{tag}")
        wait("tasks gone", lambda: not tasks(cluster, f"gl{tag}"))
        m.docker("network", "rm", net)
    finally:
        for host in cluster.hosts:
            host.docker("plugin", "disable", "-f", PLUGIN, check=False, timeout=120)
            host.docker("plugin", "set", PLUGIN, "PYCNI_SCOPE=local", check=False)
            host.docker("plugin", "enable", PLUGIN, check=False, timeout=300)


def test_legacy_plugin_on_a_swarm_node_says_use_the_managed_one(cluster):
    host = cluster.manager
    name = f"pycnileg{cluster.tag}"
    state = os.path.join(host.dir, "legacy-state")
    log_path = os.path.join(host.dir, "legacy-serve.log")
    log = open(log_path, "wb")
    serve = subprocess.Popen(
        ["nsenter", "-t", str(host.proc.pid), "-m", "-n", sys.executable, "-m",
         "cnm_bridge.cli", "serve", "--socket", f"/run/docker/plugins/{name}.sock",
         "--state-dir", state, "--conf-dir", host.conf_dir,
         "--bin-dir", ":".join(support.CNI_BIN_DIRS)],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    log.close()
    try:
        wait("the legacy socket", lambda: os.path.exists(
            f"/proc/{host.proc.pid}/root/run/docker/plugins/{name}.sock"),
            detail=lambda: open(log_path, errors="replace").read()[-3000:])
        # Docker refuses it itself, before pycni is asked anything but Plugin.Activate.
        out = host.docker("network", "create", "-d", name, "--scope", "swarm",
                          "--subnet", str(random_subnet()), f"leg-{cluster.tag}", check=False,
                          timeout=120)
        assert out.returncode != 0
        assert f"legacy plugin {name} of type NetworkDriver is not supported in swarm mode" \
            in out.stderr, out.stderr
        # pycni's own word on it: the doctor, on that node.
        doc = subprocess.run(
            ["nsenter", "-t", str(host.proc.pid), "-m", "-n", sys.executable, "-m",
             "cnm_bridge.cli", "doctor", "--json", "--driver", name, "--socket",
             f"/run/docker/plugins/{name}.sock", "--state-dir", state, "--conf-dir",
             host.conf_dir, "--bin-dir", ":".join(support.CNI_BIN_DIRS)],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True,
            timeout=300)
        found = {f["check"]: f for f in json.loads(doc.stdout)}
        assert "use the managed plugin on every node" in found["swarm"]["fix"], found
        assert "legacy plugin" in found["swarm"]["detail"]
    finally:
        os.killpg(serve.pid, 15)
        serve.wait(30)
