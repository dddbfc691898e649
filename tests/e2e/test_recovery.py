"""State and recovery: plugin restarts and kill -9, dockerd restarts, a reboot."""

import json
import os
import random
import re
import subprocess
import sys
import time

import pytest

import support
from dockerlib import (DOCKER, IMAGE, Dockerd, assert_nothing_left, docker,
                       docker_answers, endpoint_ids, inspect_net, random_subnet, serving,
                       settle)
from test_driver_basics import assert_inspect_matches, ping


@pytest.fixture
def own_pycni(needs_docker, busybox_image):
    """A pycni server of the test's own, which it may kill and restart."""
    with serving() as both:
        yield both


def kill9(server):
    os.killpg(server.proc.pid, 9)
    server.proc.wait(10)


def gc(server, min_age=0):
    out = subprocess.run(
        [sys.executable, "-m", "cnm_bridge.cli", "gc", "--state-dir", server.state_dir,
         "--conf-dir", server.conf_dir, "--bin-dir", ":".join(support.CNI_BIN_DIRS),
         "--min-age", str(min_age)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr + out.stdout
    return dict(kv.split("=") for kv in out.stdout.split())


def held_ips(server, network):
    """The addresses pycni holds endpoints for on a network, as `pycni status` shows them
    (generated networks keep no host-local files: their addresses are Docker's)."""
    cni_name = "pycni-" + docker("network", "inspect", network, "-f", "{{.Id}}")[:12]
    out = subprocess.run(
        [sys.executable, "-m", "cnm_bridge.cli", "status", "--json", "--socket", server.socket,
         "--state-dir", server.state_dir, "--conf-dir", server.conf_dir],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return {a.split("/")[0] for e in json.loads(out.stdout)["Endpoints"]
            if e["Network"] in (network, cni_name) for a in e["Addresses"]}


def running_on(network):
    out = docker("network", "inspect", network, "-f", "{{json .Containers}}")
    return {v["Name"]: v for v in (json.loads(out) or {}).values()}


def assert_consistent(dk, server, networks):
    """Everything pycni holds is exactly what live containers use."""
    settle(server)
    live_eps = set()
    for net in networks:
        members = running_on(net)
        ips = {v["IPv4Address"].split("/")[0] for v in members.values()}
        live_eps |= {v["EndpointID"] for v in members.values()}
        assert held_ips(server, net) == ips, f"pycni holds other addresses on {net}"
        names = sorted(members)
        for a in names[:1]:
            for b in names[1:]:
                ping(dk, a, members[b]["IPv4Address"].split("/")[0])
    netns = {n[len("pycni-"):] for n in support.new_netns()}
    assert netns == live_eps
    cache = os.path.join(server.state_dir, "cni", "results")
    cached = {re.search(r"-([0-9a-f]{64})-eth0$", f).group(1) for f in os.listdir(cache)}
    assert cached == live_eps
    assert not [n for n in support.links() if re.fullmatch(r"pyc[0-9a-f]{12}", n)]
    names = {"pycni-" + docker("network", "inspect", n, "-f", "{{.Id}}")[:12] for n in networks}
    mine = [ln for ln in support.iptables_lines() if any(n in ln for n in names)]
    ids = set(re.findall(r'id: \\"([0-9a-f]{64})\\"', "\n".join(mine)))
    assert ids <= live_eps, f"iptables rules of dead endpoints: {ids - live_eps}"


def test_plugin_restart_loses_nothing(own_pycni):
    server, dk = own_pycni
    subnet = random_subnet()
    net = dk.network("rs", "--subnet", subnet)
    a = dk.run("a", net)
    server.stop()  # SIGTERM: a clean restart
    server.start()
    b = dk.run("b", net)
    ping(dk, a, b)
    kill9(server)  # and a brutal one
    server.start()
    n2 = dk.network("rs2", "--subnet", random_subnet())
    docker("network", "connect", n2, a)
    c = dk.run("c", net)
    ping(dk, c, a)
    docker("rm", "-f", a, b, c)
    ids = [dk.network_id(net), dk.network_id(n2)]
    dk.rm_network(net)
    dk.rm_network(n2)
    assert_nothing_left(server, ids, [subnet])


def test_chaos_kill9_during_container_churn(own_pycni):
    """50 start/stop cycles on two networks while the plugin is killed at random moments."""
    server, dk = own_pycni
    rnd = random.Random()
    nets = [dk.network("ch1", "--subnet", random_subnet()),
            dk.network("ch2", "--subnet", random_subnet())]
    alive, kills, failed_runs = [], 0, 0

    def maybe_kill(pause):
        """With a 30% chance, kill -9 the plugin at a random moment of a docker call."""
        if rnd.random() >= 0.3:
            return 0
        time.sleep(rnd.uniform(0, pause))
        kill9(server)
        server.start()
        return 1

    for i in range(50):
        name = dk.name(f"c{i}")
        dk.containers.append(name)
        run = subprocess.Popen([DOCKER, "run", "-d", "--name", name, "--network",
                                rnd.choice(nets), IMAGE, "sleep", "3600"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kills += maybe_kill(0.4)
        if run.wait(120) == 0:
            alive.append(name)
        else:
            failed_runs += 1
            docker("rm", "-f", name, check=False)
        if len(alive) > 4:
            victim = alive.pop(rnd.randrange(len(alive)))
            rm = subprocess.Popen([DOCKER, "rm", "-f", victim],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            kills += maybe_kill(0.3)
            rm.wait(120)
    report = gc(server)
    print(f"chaos: 50 cycles, {kills} kill -9, {failed_runs} docker run failed, "
          f"gc: {report}")
    with open(os.path.join(os.environ.get("PYCNI_REPORT_DIR", "/tmp"), "pycni-chaos.txt"),
              "w") as f:
        f.write(f"cycles=50 kills={kills} failed_runs={failed_runs} {report}\n")
    assert_consistent(dk, server, nets)
    dk.cleanup()
    assert_consistent_empty(server)


def assert_consistent_empty(server):
    settle(server)
    assert not support.new_netns()
    assert support.files_under(os.path.join(server.state_dir, "cni", "results")) == []
    assert support.ip_files(os.path.join(server.state_dir, "ipam")) == []


def test_dockerd_restart_and_live_restore(own_pycni):
    server, dk = own_pycni
    subnet = random_subnet()
    net = dk.network("dr", "--subnet", subnet)
    a = dk.run("a", net, "--restart", "always")
    dockerd = Dockerd()
    live_restore = [dockerd.argv[0], "--live-restore"] + dockerd.argv[1:]
    try:
        dockerd.restart()
        wait_running(a)
        info = assert_inspect_matches(dk, a, net)
        ping(dk, a, info["Gateway"])
        # --live-restore: the container keeps running, nothing is redone; on a network
        # with pycni's IPAM, Docker replays RequestPool/RequestAddress, which must pass.
        dockerd.restart(live_restore)
        ipam_net = dk.network("drl", "--ipam-driver", server.name, "--subnet", random_subnet())
        b = dk.run("b", net)
        c = dk.run("c", ipam_net)
        before = endpoint_ids(b) | endpoint_ids(c)
        dockerd.restart(live_restore)
        assert docker("inspect", "-f", "{{.State.Running}}", b) == "true"
        assert endpoint_ids(b) | endpoint_ids(c) == before
        ping(dk, b, a)
        # Docker's IPAM state came back from the replay: a new container gets a new address.
        d = dk.run("d", ipam_net)
        assert inspect_net(d, ipam_net)["IPAddress"] != inspect_net(c, ipam_net)["IPAddress"]
        ping(dk, d, c)
    finally:
        if dockerd.running_argv() != dockerd.argv:
            dockerd.restart()
    dk.cleanup()


def wait_running(container, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if docker("inspect", "-f", "{{.State.Running}}", container, check=False).stdout.strip() \
                == "true" and docker("exec", container, "true", check=False).returncode == 0:
            return
        time.sleep(0.3)
    raise AssertionError(f"{container} did not come back")


def test_reboot_emulation(own_pycni):
    """Everything stops, netns and links vanish, /var/lib stays: pycni starts clean."""
    server, dk = own_pycni
    subnet = random_subnet()
    net = dk.network("rb", "--subnet", subnet)
    nid = dk.network_id(net)
    a = dk.run("a", net, "--restart", "always")
    b = dk.run("b", net)
    old_ips = held_ips(server, net)
    assert len(old_ips) == 2
    dockerd = Dockerd()
    kill9(server)
    try:
        dockerd.stop(timeout=120)  # plugin down: endpoints dropped without DeleteEndpoint
        # What a reboot takes with it: namespaces, links, this network's rules, /run.
        for ns in support.new_netns():
            support.run("ip", "netns", "del", ns, check=False)
        bridge = f"pc-{nid[:12]}"
        ports = support.run("ip", "-o", "link", "show", "master", bridge, check=False).stdout
        veths = re.findall(r"^\d+: ([^:@]+)", ports, re.M)
        for link in [*veths, *support.new_links(), bridge]:
            support.run("ip", "link", "del", link, check=False)
        for table in ("nat", "filter"):
            support.delete_rules(table, lambda ln: f"pycni-{nid[:12]}" in ln
                                 or subnet.rsplit(".", 1)[0] + "." in ln)
        if os.path.exists(server.socket):
            os.unlink(server.socket)
        os.environ["PYCNI_BOOT_ID"] = "emulated-" + dk.tag
        server.start()  # a legacy plugin starts before dockerd
    finally:
        os.environ.pop("PYCNI_BOOT_ID", None)
        if not docker_answers():
            dockerd.start()
    wait_running(a)
    # The stale allocations were released: only the restarted container holds one.
    assert held_ips(server, net) == {inspect_net(a, net)["IPAddress"]}
    settle(server)
    docker("start", b)
    wait_running(b)
    ping(dk, a, b)
    assert_consistent(dk, server, [net])
    dk.cleanup()
    assert_nothing_left(server, [nid], [subnet])
