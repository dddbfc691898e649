"""Behaviour users compare with Docker's bridge driver: each scenario runs on a pycni network
and on a user-defined network of the engine's own bridge driver, in the same test."""

import errno
import ipaddress
import json
import os
import random
import secrets
import socket
import subprocess
import time

import pytest

import support
from dockerlib import (IMAGE, assert_nothing_left, docker, docker_fails, inspect_net,
                       random_subnet)
from test_driver_basics import ping
from test_ports import tcp_hello

SERVER = "nc -ll -p 80 -e echo hello-tcp"


def random_subnet6():
    return str(ipaddress.ip_network(f"fd00:{secrets.token_hex(2)}:{secrets.token_hex(2)}::/64"))


def unreachable(dk, container, target, six=False):
    """True when `container` gets no answer from `target` within 2 s (a reachable one
    answers in milliseconds)."""
    cmd = ["ping", "-6"] if six else ["ping"]
    out = dk.exec(container, *cmd, "-c", "1", "-W", "2", target, check=False)
    return out.returncode != 0


def all_unreachable(dk, pairs, six=False):
    """[(src, dst address)] -> the pairs that got an answer (checked in parallel)."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(len(pairs)) as pool:
        got = list(pool.map(lambda p: unreachable(dk, p[0], p[1], six), pairs))
    return [p for p, gone in zip(pairs, got) if not gone]


def both_networks(dk, base, *args):
    """(pycni network, Docker bridge network) with the same options."""
    return (dk.network(base, "--subnet", random_subnet(), *args),
            dk.network(base + "-br", "--subnet", random_subnet(), *args, driver="bridge"))


def neighbour_mac(dk, container, ip):
    out = dk.exec(container, "ip", "neigh", "show", ip, check=False).stdout
    parts = out.split()
    return parts[parts.index("lladdr") + 1] if "lladdr" in parts else ""


def wait_restarted(container, count, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads(docker("inspect", container, "-f", "{{json .State}}"))
        if state["Running"] and docker("inspect", container, "-f",
                                       "{{.RestartCount}}") == str(count):
            return
        assert time.monotonic() < deadline, f"{container} did not restart: {state}"
        time.sleep(0.1)


# -- 1. a restarted container is reachable at once ------------------------------------------

def check_restart(dk, net, how, same_mac):
    """A peer and the host reach a restarted container right away. On pycni its MAC follows
    its address, so the neighbour entries they hold stay right (Docker's bridge did the
    same before 28; since, it gives a random MAC and announces it)."""
    port = random.randint(20000, 40000)
    base = inspect_net_subnet(net)
    args = ["-p", f"{port}:80"]
    if how == "stop-start-ip":
        args += ["--ip", f"{base}.77"]
    if how == "policy-kill":
        args += ["--restart", "always"]
    srv = dk.run("srv-" + how, net, *args, cmd=("sh", "-c", SERVER))
    peer = dk.run("peer-" + how, net)
    before = inspect_net(srv, net)
    ping(dk, peer, before["IPAddress"])  # the peer now holds srv's MAC
    assert neighbour_mac(dk, peer, before["IPAddress"]) == before["MacAddress"]
    assert tcp_hello("127.0.0.1", port) == "hello-tcp"  # so does the host
    if how == "restart":
        docker("restart", "-t", "0", srv)
    elif how == "stop-start-ip":
        docker("stop", "-t", "0", srv)
        docker("start", srv)
    else:
        pid = int(docker("inspect", srv, "-f", "{{.State.Pid}}"))
        os.kill(pid, 9)
        wait_restarted(srv, 1)
    after = inspect_net(srv, net)
    assert after["IPAddress"] == before["IPAddress"]
    assert dk.exec(srv, "cat", "/sys/class/net/eth0/address") == after["MacAddress"]
    if same_mac:
        assert after["MacAddress"] == before["MacAddress"]
    # No waiting for neighbour entries to expire (30-50 s when the MAC changed).
    ping(dk, peer, before["IPAddress"])
    assert tcp_hello("127.0.0.1", port) == "hello-tcp"
    docker("rm", "-f", srv, peer)


def inspect_net_subnet(net):
    subnet = json.loads(docker("network", "inspect", net, "-f", "{{json .IPAM.Config}}"))
    return subnet[0]["Subnet"].rsplit(".", 1)[0]


@pytest.mark.parametrize("how", ["restart", "stop-start-ip", "policy-kill"])
def test_restarted_container_is_reachable_at_once(dk, pycni, how):
    pnet, bnet = both_networks(dk, "rs")
    nid = dk.network_id(pnet)
    check_restart(dk, bnet, how, same_mac=False)  # what Docker's bridge does
    check_restart(dk, pnet, how, same_mac=True)
    subnet = json.loads(docker("network", "inspect", pnet, "-f", "{{json .IPAM.Config}}"))
    dk.cleanup()
    assert_nothing_left(pycni, [nid], [subnet[0]["Subnet"]])


def test_mac_follows_the_address_unless_given(dk, pycni):
    subnet = random_subnet()
    net = dk.network("mac", "--subnet", subnet)
    a = dk.run("a", net)
    b = dk.run("b", net, "--mac-address", "02:42:ac:11:00:99")
    ip = inspect_net(a, net)["IPAddress"]
    expected = "02:42:" + ":".join(f"{int(x):02x}" for x in ip.split("."))
    assert inspect_net(a, net)["MacAddress"] == expected
    assert dk.exec(a, "cat", "/sys/class/net/eth0/address") == expected
    assert dk.exec(b, "cat", "/sys/class/net/eth0/address") == "02:42:ac:11:00:99"


# -- 2. networks are isolated from each other ------------------------------------------------

def test_networks_are_isolated_from_each_other(dk, pycni):
    s4a, s4b, s4d = random_subnet(), random_subnet(), random_subnet()
    s6a, s6b, s6d = random_subnet6(), random_subnet6(), random_subnet6()
    a = dk.network("isa", "--ipv6", "--subnet", s4a, "--subnet", s6a)
    b = dk.network("isb", "--ipv6", "--subnet", s4b, "--subnet", s6b)
    d = dk.network("isd", "--ipv6", "--subnet", s4d, "--subnet", s6d, driver="bridge")
    d2 = dk.network("isd2", "--subnet", random_subnet(), driver="bridge")
    ids = [dk.network_id(a), dk.network_id(b)]
    ca, cb, cd, cd2 = dk.run("ca", a), dk.run("cb", b), dk.run("cd", d), dk.run("cd2", d2)
    ip = {c: inspect_net(c, n) for c, n in ((ca, a), (cb, b), (cd, d), (cd2, d2))}
    # Docker's own: one bridge network cannot reach another.
    assert unreachable(dk, cd, ip[cd2]["IPAddress"])
    # pycni's, both ways, IPv4 and IPv6, between pycni networks and with Docker's.
    pairs = ((ca, cb), (cb, ca), (ca, cd), (cd, ca), (cb, cd2))
    assert all_unreachable(dk, [(s, ip[d]["IPAddress"]) for s, d in pairs]) == []
    pairs6 = ((ca, cb), (cb, ca), (ca, cd), (cd, ca))
    assert all_unreachable(dk, [(s, ip[d]["GlobalIPv6Address"]) for s, d in pairs6],
                           six=True) == []
    # Within a network, and to its gateway, as before.
    ca2 = dk.run("ca2", a)
    ping(dk, ca, ca2)
    ping(dk, ca, ip[ca]["Gateway"])
    # A container on both networks reaches both, as on Docker's.
    docker("network", "connect", b, ca2)
    ping(dk, ca2, ip[cb]["IPAddress"])
    dk.cleanup()
    assert_nothing_left(pycni, ids, [s4a, s4b])


def test_published_ports_reach_an_isolated_network(dk, pycni):
    """Isolation stops traffic between networks, not a published port (through the host)."""
    a = dk.network("ppa", "--subnet", random_subnet())
    b = dk.network("ppb", "--subnet", random_subnet())
    port = random.randint(20000, 40000)
    dk.run("srv", a, "-p", f"{port}:80", cmd=("sh", "-c", SERVER))
    cb = dk.run("cli", b)
    gw_b = inspect_net(cb, b)["Gateway"]
    assert tcp_hello("127.0.0.1", port) == "hello-tcp"
    out = dk.exec(cb, "sh", "-c", f"nc {gw_b} {port} </dev/null", check=False)
    assert "hello-tcp" in out.stdout


# -- 3. a host port in TIME-WAIT is free ------------------------------------------------------

def leave_time_wait():
    """A host server (SO_REUSEADDR, as servers set it) served one connection and stopped,
    on a port nothing else holds (one in use elsewhere is tried again); -> the port."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(50):
            port = random.randint(20000, 40000)
            try:
                listener.bind(("0.0.0.0", port))
                break
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
        else:
            raise AssertionError("no free port in 20000-40000 after 50 tries")
        listener.listen()
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()
        client.recv(1)
        client.close()
    state = support.run("ss", "-tan", f"sport = :{port}").stdout
    assert "TIME-WAIT" in state, state
    return port


def test_a_host_port_in_time_wait_is_published(dk, pycni):
    pnet, bnet = both_networks(dk, "tw")
    for i, net in enumerate((bnet, pnet)):
        port = leave_time_wait()
        dk.run(f"tw{i}", net, "-p", f"{port}:80", cmd=("sh", "-c", SERVER))
        assert tcp_hello("127.0.0.1", port) == "hello-tcp"
    # A listener still refuses it, naming the port.
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        held = s.getsockname()[1]
        err = docker_fails("run", "--rm", "--network", pnet, "-p", f"{held}:80", IMAGE, "true")
    assert f"host port {held}/tcp is already in use" in err


# -- 4. every CNI version's results, the seed example byte for byte -------------------------

SEED = ('{"cniVersion": "0.2.0", "name": "mynet", "type": "bridge", "bridge": "cni0", '
        '"isGateway": true, "ipMasq": true, "ipam": {"type": "host-local", "subnet": '
        '"10.22.0.0/16", "routes": [{"dst": "0.0.0.0/0"}]}}')


@pytest.fixture
def seed_network(pycni):
    """The canonical example of every CNI tutorial, in pycni's conf dir; cni0 and
    host-local's default dir for `mynet` are global, so they are removed afterwards."""
    path = pycni.write_conf("10-mynet.conf", SEED)
    data = "/var/lib/cni/networks/mynet"
    existed = os.path.exists(data)
    yield
    os.unlink(path)
    support.run("ip", "link", "del", "cni0", check=False)
    if not existed:
        subprocess.run(["rm", "-rf", data])


@pytest.mark.parametrize("ipam", ["docker", "pycni"])
def test_the_seed_example_network(dk, pycni, seed_network, ipam):
    if ipam == "docker":
        net = dk.network("seed", "-o", "cni.network=mynet", "--subnet", "10.22.0.0/16")
    else:
        net = dk.network("seed", "--ipam-driver", pycni.name, "--ipam-opt", "cni.network=mynet")
    nid = dk.network_id(net)
    a, b = dk.run("a", net), dk.run("b", net)
    ia = inspect_net(a, net)
    assert ia["IPAddress"].startswith("10.22.") and ia["Gateway"] == "10.22.0.1"
    ping(dk, a, b)
    ping(dk, a, "10.22.0.1")
    dk.cleanup()
    assert_nothing_left(pycni, [nid], ["10.22.0.0/16"])
    assert support.ip_files("/var/lib/cni/networks/mynet") == []


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0"])
def test_lists_of_older_versions(dk, pycni, version):
    subnet = random_subnet()
    name = f"v{version.replace('.', '')}-{dk.tag}"
    bridge = "pv" + secrets.token_hex(4)
    pycni.write_conf(f"20-{name}.conflist", {
        "cniVersion": version, "name": name,
        "plugins": [{"type": "bridge", "bridge": bridge, "isGateway": True,
                     "ipam": {"type": "host-local", "dataDir": os.path.join(pycni.root, "hl"),
                              "ranges": [[{"subnet": subnet}]],
                              "routes": [{"dst": "0.0.0.0/0"}]}},
                    {"type": "portmap", "capabilities": {"portMappings": True}}]})
    for i, ipam in enumerate((["--subnet", subnet],
                              ["--ipam-driver", pycni.name, "--ipam-opt", f"cni.network={name}"])):
        net = dk.network(f"old{i}", "-o", f"cni.network={name}", *ipam)
        port = random.randint(20000, 40000)
        a = dk.run("a", net, "-p", f"{port}:80", cmd=("sh", "-c", SERVER))
        b = dk.run("b", net)
        ping(dk, b, a)
        assert tcp_hello("127.0.0.1", port) == "hello-tcp"
        dk.cleanup()
    support.run("ip", "link", "del", bridge, check=False)


# -- 5. a conflist's own IPAM ------------------------------------------------------------------

def ranged_conflist(pycni, name, subnet, bridge, start, end):
    data_dir = os.path.join(pycni.root, "ipam-" + name)
    pycni.write_conf(f"30-{name}.conflist", {
        "cniVersion": "1.0.0", "name": name,
        "plugins": [{"type": "bridge", "bridge": bridge, "isGateway": True,
                     "ipam": {"type": "host-local", "dataDir": data_dir,
                              "ranges": [[{"subnet": subnet, "rangeStart": start,
                                           "rangeEnd": end}]],
                              "routes": [{"dst": "0.0.0.0/0"}]}}]})
    return data_dir


@pytest.mark.host_paths
def test_pycni_ipam_uses_the_conflists_ipam(dk, pycni):
    subnet = random_subnet()
    base = subnet.rsplit(".", 1)[0]
    name = "rng-" + dk.tag
    bridge = "pr" + secrets.token_hex(4)
    data_dir = ranged_conflist(pycni, name, subnet, bridge, f"{base}.100", f"{base}.199")
    net = dk.network("rng", "--ipam-driver", pycni.name, "--ipam-opt", f"cni.network={name}")
    a, b = dk.run("a", net), dk.run("b", net)
    got = sorted(inspect_net(c, net)["IPAddress"] for c in (a, b))
    assert got == [f"{base}.100", f"{base}.101"]
    # In the conflist's own dataDir, under its name: other users of it see them.
    files = {os.path.basename(f) for f in support.ip_files(os.path.join(data_dir, name))}
    assert files == set(got)
    ping(dk, a, b)
    dk.cleanup()
    assert support.ip_files(os.path.join(data_dir, name)) == []
    support.run("ip", "link", "del", bridge, check=False)


def test_dockers_ipam_refuses_a_narrower_range_at_create(dk, pycni):
    subnet = random_subnet()
    base = subnet.rsplit(".", 1)[0]
    name = "nar-" + dk.tag
    bridge = "pn" + secrets.token_hex(4)
    ranged_conflist(pycni, name, subnet, bridge, f"{base}.100", f"{base}.199")
    err = docker_fails("network", "create", "-d", pycni.name, "-o", f"cni.network={name}",
                       "--subnet", subnet, dk.name("nar"))
    assert f"hands out only {base}.100-{base}.199 of {subnet}" in err
    assert f"--ipam-driver pycni --ipam-opt cni.network={name}" in err
    # A range that is a CIDR: Docker can be told to pick inside it.
    name2 = "cidr-" + dk.tag
    ranged_conflist(pycni, name2, subnet, bridge, f"{base}.96", f"{base}.127")
    err = docker_fails("network", "create", "-d", pycni.name, "-o", f"cni.network={name2}",
                       "--subnet", subnet, dk.name("cidr"))
    assert f"--gateway {base}.1 --ip-range {base}.96/27 -o cni.ip-range={base}.96/27" in err
    net = dk.network("cidr", "-o", f"cni.network={name2}", "-o", f"cni.ip-range={base}.96/27",
                     "--subnet", subnet, "--gateway", f"{base}.1", "--ip-range", f"{base}.96/27")
    a = dk.run("a", net)
    assert 96 <= int(inspect_net(a, net)["IPAddress"].rsplit(".", 1)[1]) <= 127
    dk.cleanup()
    support.run("ip", "link", "del", bridge, check=False)


# -- 6. smaller differences ---------------------------------------------------------------------

def test_host_binding_ipv4(dk, pycni):
    pnet, bnet = both_networks(dk, "hb", "-o", "com.docker.network.bridge.host_binding_ipv4="
                               "127.0.0.1")
    for i, net in enumerate((bnet, pnet)):
        port = random.randint(20000, 40000)
        c = dk.run(f"hb{i}", net, "-p", f"{port}:80", cmd=("sh", "-c", SERVER))
        assert tcp_hello("127.0.0.1", port) == "hello-tcp"
        gw = inspect_net(c, net)["Gateway"]
        with pytest.raises(OSError):
            tcp_hello(gw, port)  # published on 127.0.0.1 only


def test_publish_all_draws_from_the_kernels_range(dk, pycni):
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(x) for x in f.read().split())
    pnet, bnet = both_networks(dk, "pa")
    c = dk.run("pab", bnet, "--expose", "80", "-P", cmd=("sh", "-c", SERVER))
    docker_port = int(docker("port", c, "80/tcp").splitlines()[0].rsplit(":", 1)[1])
    assert low <= docker_port <= high  # Docker's bridge
    c = dk.run("pap", pnet, "--expose", "80", "-P", cmd=("sh", "-c", SERVER))
    listing = subprocess.run(["python3", "-m", "cnm_bridge.cli", "ports", "--state-dir",
                              pycni.state_dir], capture_output=True, text=True,
                             check=True).stdout
    [line] = [ln for ln in listing.splitlines() if ln.startswith(c)]
    port = int(line.split()[1].rsplit(":", 1)[1])
    assert low <= port <= high
    if low < 49153:
        # From the range's start, as Docker's allocator, not from 49153 (IANA's start).
        assert port < 49153
    assert tcp_hello("127.0.0.1", port) == "hello-tcp"


@pytest.mark.host_paths
def test_create_network_without_ipv4_pool_is_refused(pycni):
    """Docker sends no IPv4 pool only for an IPv6-only network (28's --ipv4=false): any
    other such CreateNetwork is refused, naming the fix."""
    nid = support.hexid()
    status, ans = support.post(pycni.socket, "/NetworkDriver.CreateNetwork", {
        "NetworkID": nid, "Options": {"com.docker.network.enable_ipv6": True},
        "IPv4Data": [], "IPv6Data": [{"AddressSpace": "LocalDefault", "Pool": "fd77::/64",
                                      "Gateway": "fd77::1/64"}]})
    assert "no IPv4 subnet" in ans.get("Err", ""), ans
    status, ans = support.post(pycni.socket, "/NetworkDriver.CreateNetwork", {
        "NetworkID": nid, "Options": {"com.docker.network.enable_ipv6": True,
                                      "com.docker.network.enable_ipv4": False},
        "IPv4Data": [], "IPv6Data": [{"AddressSpace": "LocalDefault", "Pool": "fd77::/64",
                                      "Gateway": "fd77::1/64"}]})
    assert ans == {}, ans
    assert support.post(pycni.socket, "/NetworkDriver.DeleteNetwork", {"NetworkID": nid})[1] == {}
