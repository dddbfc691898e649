"""What differs between engines: where CNI runs (direct or handed off), what Docker 28 sends,
and what Docker 29 will send, on whichever engine runs (scripts/engines.sh)."""

import os
import random
import socket
import sqlite3
import subprocess
import sys
import threading

import pytest

import support
from dockerlib import IMAGE, assert_nothing_left, docker, inspect_net, netns_at_join, random_subnet
from test_driver_basics import assert_inspect_matches, ping
from test_ports import tcp_hello

SERVER = "nc -ll -p 80 -e echo hello-tcp"
MODERN_DOCKER = "/opt/pycni-engines/28/usr/bin/docker"  # 28's CLI, for 28's flags


def endpoint_row(pycni, endpoint_id):
    db = sqlite3.connect(os.path.join(pycni.state_dir, "pycni.db"))
    try:
        db.row_factory = sqlite3.Row
        return dict(db.execute("SELECT * FROM endpoints WHERE id=?", (endpoint_id,)).fetchone())
    finally:
        db.close()


def links_of(dk, container):
    out = dk.exec(container, "ip", "-o", "link")
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


def pycli(pycni, *args):
    return subprocess.run([sys.executable, "-m", "cnm_bridge.cli", *args, "--state-dir",
                           pycni.state_dir, "--conf-dir", pycni.conf_dir, "--bin-dir",
                           ":".join(support.CNI_BIN_DIRS), "--socket", pycni.socket],
                          capture_output=True, text=True, timeout=120)


def test_cni_runs_where_the_engine_allows(dk, pycni):
    """By default pycni hands the interface to Docker, which names it (ethN in its order).
    A network made with -o cni.attach=direct runs CNI in the container's own netns where
    it is there at Join: on `docker run` from Docker 28 on, on `docker network connect` on
    every engine. Either way Docker's inspect shows the address and MAC on the interface,
    the gateway, and no docker_gwbridge."""
    n1 = dk.network("m1", "--subnet", random_subnet())
    n2 = dk.network("m2", "--subnet", random_subnet())
    n3 = dk.network("m3", "--subnet", random_subnet(), "-o", "cni.attach=direct")
    ids = [dk.network_id(n) for n in (n1, n2, n3)]
    a = dk.run("a", n1)
    b = dk.run("b", n1)
    assert endpoint_row(pycni, inspect_net(a, n1)["EndpointID"])["mode"] == "handoff"
    docker("network", "connect", n2, a)
    assert endpoint_row(pycni, inspect_net(a, n2)["EndpointID"])["mode"] == "handoff"
    docker("network", "connect", n3, a)
    ep3 = endpoint_row(pycni, inspect_net(a, n3)["EndpointID"])
    assert (ep3["mode"], ep3["ifname"]) == ("direct", "eth2")
    assert links_of(dk, a) == ["eth0", "eth1", "eth2", "lo"]  # no docker_gwbridge
    for net, ifname in ((n1, "eth0"), (n2, "eth1"), (n3, "eth2")):
        assert_inspect_matches(dk, a, net, ifname)
    c = dk.run("c", n3)
    ep_c = endpoint_row(pycni, inspect_net(c, n3)["EndpointID"])
    assert (ep_c["mode"], ep_c["ifname"]) == ("direct" if netns_at_join() else "handoff", "eth0")
    assert_inspect_matches(dk, c, n3, "eth0")
    ping(dk, a, b)  # by name: Docker's embedded DNS
    ping(dk, b, inspect_net(a, n1)["IPAddress"])
    ping(dk, c, inspect_net(a, n3)["IPAddress"])
    docker("network", "disconnect", n3, a)
    docker("network", "disconnect", n2, a)
    assert links_of(dk, a) == ["eth0", "lo"]
    dk.cleanup()
    assert_nothing_left(pycni, ids, [])


@pytest.mark.parametrize("driver", ["pycni", "bridge"])
def test_a_container_on_pycni_and_docker_networks(dk, pycni, driver):
    """A container on a pycni network and on Docker's own bridge networks, in either order,
    connected later, restarted: as with Docker's bridge alone (driver=bridge shows what is
    right). Docker names its drivers' interfaces without seeing one a remote driver made
    in the sandbox; handed-off interfaces it names itself."""
    d = pycni.name if driver == "pycni" else "bridge"
    mine = dk.network("mx", "--subnet", random_subnet(), driver=d)
    br1 = dk.network("mxb1", "--subnet", random_subnet(), driver="bridge")
    br2 = dk.network("mxb2", "--subnet", random_subnet(), driver="bridge")
    a = dk.run("a", mine)
    docker("network", "connect", br1, a)  # a Docker network after pycni's
    b = dk.run("b", br2)
    docker("network", "connect", mine, b)  # pycni's after a Docker network
    docker("network", "connect", br1, b)  # and Docker's again
    for c in (a, b):
        docker("restart", "-t", "1", c)
    assert len(links_of(dk, a)) == 3 and len(links_of(dk, b)) == 4
    ping(dk, a, inspect_net(b, mine)["IPAddress"])
    ping(dk, b, inspect_net(a, br1)["IPAddress"])
    ping(dk, a, b)  # by name
    nid = dk.network_id(mine)
    dk.cleanup()  # docker rm -f, then docker network rm at once
    if driver == "pycni":
        assert_nothing_left(pycni, [nid], [])


class TinyDNS:
    """A DNS server on a host address that answers every A query with 198.51.100.7, to
    see whether Docker's embedded DNS forwards a name it does not know."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 53))
        self.queries = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(512)
            except OSError:
                return
            self.queries.append(data)
            qend = data.index(b"\0", 12) + 5
            answer = (data[:2] + b"\x81\x80" + data[4:6] + b"\x00\x01\x00\x00\x00\x00"
                      + data[12:qend] + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04"
                      + socket.inet_aton("198.51.100.7"))
            self.sock.sendto(answer, peer)

    def close(self):
        self.sock.close()


def test_embedded_dns_forwards_external_names(dk, pycni):
    """Docker 26+ forwards a name it does not know only when an endpoint has a gateway:
    pycni's Join gives one, on every engine and in either mode."""
    subnet = random_subnet()
    net = dk.network("dns", "--subnet", subnet)
    gw = subnet.rsplit(".", 1)[0] + ".1"
    a = dk.run("a", net)  # the bridge and its gateway address exist now
    dns = TinyDNS(gw)
    try:
        b = dk.run("b", net, "--dns", gw)
        out = dk.exec(b, "nslookup", "some.name.test", check=False)
        assert "198.51.100.7" in out.stdout, out.stdout + out.stderr
        assert dns.queries
        ping(dk, b, a)  # and container names still resolve
    finally:
        dns.close()


def test_pycni_check_on_a_live_container(dk, pycni):
    net = dk.network("chk", "--subnet", random_subnet(), "-o", "cni.attach=direct")
    holder = dk.network("hold", "--subnet", random_subnet(), "-o", "cni.attach=direct")
    c = dk.run("c", holder)
    docker("network", "connect", net, c)  # direct on every engine
    out = pycli(pycni, "check", c, "--json")
    import json
    rows = {r["Network"]: r for r in json.loads(out.stdout)}
    assert rows[net]["Result"] == "ok", out.stdout + out.stderr
    assert rows[holder]["Result"] == ("ok" if netns_at_join() else "not checked")
    # Break what CNI made: its address goes; CHECK names it.
    pid = docker("inspect", c, "-f", "{{.State.Pid}}")
    addr = inspect_net(c, net)
    support.run("nsenter", "-t", pid, "-n", "ip", "addr", "del",
                f"{addr['IPAddress']}/{addr['IPPrefixLen']}", "dev", "eth1")
    out = pycli(pycni, "check", c)
    assert out.returncode == 1
    line = [ln for ln in out.stdout.splitlines() if ln.startswith(net)][0]
    assert "failed" in line and addr["IPAddress"] in line, out.stdout
    err = pycli(pycni, "check", "no-such-container-" + dk.tag)
    assert err.returncode == 1 and "no such container" in err.stderr


# -- what Docker 28 sends ----------------------------------------------------------------------

def modern(*args, check=True):
    proc = support.run(MODERN_DOCKER, *args, check=check)
    return proc.stdout.strip() if check else proc


only_28 = pytest.mark.min_engine(28)


@only_28
def test_ipv6_only_network(dk, pycni):
    s6 = f"fd00:{random.randint(0, 0xffff):x}:{random.randint(0, 0xffff):x}::/64"
    name = dk.name("v6only")
    modern("network", "create", "-d", pycni.name, "--ipv4=false", "--ipv6", "--subnet", s6, name)
    dk.networks.append(name)
    a, b = dk.run("a", name), dk.run("b", name)
    info = inspect_net(a, name)
    assert info["IPAddress"] == "" and info["GlobalIPv6Address"].startswith(s6.split("::")[0])
    assert info["MacAddress"].startswith("02:42:")  # follows the IPv6 address
    other = inspect_net(b, name)["GlobalIPv6Address"]
    out = dk.exec(a, "ping", "-6", "-c", "1", "-W", "3", other, check=False)
    assert out.returncode == 0, out.stdout


@only_28
def test_gateway_priority(dk, pycni):
    s1, s2 = random_subnet(), random_subnet()
    n1 = dk.network("gp1", "--subnet", s1)
    n2 = dk.network("gp2", "--subnet", s2)
    port = random.randint(20000, 40000)
    name = dk.name("gp")
    modern("run", "-d", "--name", name, "--network", f"name={n1}", "--network",
           f"name={n2},gw-priority=10", "-p", f"{port}:80", IMAGE, "sh", "-c", SERVER)
    dk.containers.append(name)
    route = dk.exec(name, "ip", "route", "show", "default")
    assert f"via {s2.rsplit('.', 1)[0]}.1" in route  # n2 wins the gateway
    # Ports are published on the gateway endpoint, n2's.
    ip2 = inspect_net(name, n2)["IPAddress"]
    assert any(ip2 in ln for ln in support.iptables_mentioning(f"--dport {port}"))
    assert tcp_hello("127.0.0.1", port) == "hello-tcp"


@only_28
def test_interface_name_asked_for(dk, pycni):
    net = dk.network("ifn", "--subnet", random_subnet())
    name = dk.name("ifn")
    modern("run", "-d", "--name", name, "--network",
           f"name={net},driver-opt=com.docker.network.endpoint.ifname=lan0", IMAGE, "sleep",
           "3600")
    dk.containers.append(name)
    assert "lan0" in links_of(dk, name)


# -- calls as an engine may send them, straight to the real server -------------------------------

def test_empty_body_retry_is_answered_cleanly(pycni):
    """Docker 28 retries a call with an empty body after an EOF: an error naming what is
    missing, and nothing half-made."""
    for path in ("/NetworkDriver.CreateNetwork", "/NetworkDriver.CreateEndpoint",
                 "/NetworkDriver.Join", "/NetworkDriver.DeleteEndpoint",
                 "/NetworkDriver.ProgramExternalConnectivity"):
        status, ans = support.post(pycni.socket, path, b"")
        assert status == 200 and ans["Err"].startswith("missing NetworkID"), (path, ans)
    assert support.post(pycni.socket, "/IpamDriver.RequestPool", b"")[1]["Error"]
    db = sqlite3.connect(os.path.join(pycni.state_dir, "pycni.db"))
    try:
        assert db.execute("SELECT count(*) FROM endpoints WHERE state != 'ready'").fetchone()[0] \
            == 0
    finally:
        db.close()


def test_ports_follow_gateway_changes_as_docker_29_sends_them(pycni):
    """Docker 29 sends Program/RevokeExternalConnectivity whenever a sandbox's gateway
    endpoint changes: publishing must be idempotent and move with the endpoint."""
    nid = support.hexid()
    subnet = random_subnet()
    base = subnet.rsplit(".", 1)[0]

    def call(path, body):
        status, ans = support.post(pycni.socket, path, body)
        assert status == 200 and not ans.get("Err"), (path, ans)
        return ans

    call("/NetworkDriver.CreateNetwork", {
        "NetworkID": nid, "Options": {"com.docker.network.generic": {}},
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": subnet,
                      "Gateway": f"{base}.1/24"}]})
    eps = []
    for i in (5, 6):
        eid = support.hexid()
        call("/NetworkDriver.CreateEndpoint", {"NetworkID": nid, "EndpointID": eid,
                                               "Interface": {"Address": f"{base}.{i}/24"}})
        call("/NetworkDriver.Join", {"NetworkID": nid, "EndpointID": eid,
                                     "SandboxKey": "/var/run/docker/netns/none-yet"})
        eps.append(eid)
    port = random.randint(20000, 40000)
    ports = {"com.docker.network.portmap": [{"Proto": 6, "Port": 80, "HostPort": port,
                                             "HostPortEnd": port}]}

    def program(eid):
        call("/NetworkDriver.ProgramExternalConnectivity",
             {"NetworkID": nid, "EndpointID": eid, "Options": ports})

    def revoke(eid):
        call("/NetworkDriver.RevokeExternalConnectivity", {"NetworkID": nid, "EndpointID": eid})

    def dnat_targets():
        return {ln.split("--to-destination ")[1].split(":")[0]
                for ln in support.iptables_mentioning(f"--dport {port}")
                if "--to-destination" in ln}

    try:
        program(eps[0])
        program(eps[0])  # again, unchanged: idempotent
        assert dnat_targets() == {f"{base}.5"}
        revoke(eps[0])  # the gateway endpoint moves to the second endpoint
        program(eps[1])
        assert dnat_targets() == {f"{base}.6"}
        revoke(eps[1])
        revoke(eps[1])
        program(eps[0])  # and back
        assert dnat_targets() == {f"{base}.5"}
        revoke(eps[0])
        assert dnat_targets() == set()
    finally:
        for eid in eps:
            support.post(pycni.socket, "/NetworkDriver.DeleteEndpoint",
                         {"NetworkID": nid, "EndpointID": eid})
        support.post(pycni.socket, "/NetworkDriver.DeleteNetwork", {"NetworkID": nid})
    assert_nothing_left(pycni, [nid], [subnet])


def test_docker_sdk_negotiates_the_api_version(pycni):
    """pycni gc asks dockerd through the SDK: 20.10 speaks at most 1.41, 29 refuses < 1.44."""
    from cnm_bridge.ops.dockerapi import DockerAPI
    api = DockerAPI.connect()
    assert api.client.api.api_version == docker("version", "-f", "{{.Server.APIVersion}}")
    out = pycli(pycni, "gc", "--min-age", "0")
    assert out.returncode == 0, out.stdout + out.stderr
