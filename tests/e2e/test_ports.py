"""Published ports (-p, -P) through CNI's portmap, set up at ProgramExternalConnectivity."""

import random
import socket
import subprocess
import sys

import support
from dockerlib import IMAGE, assert_nothing_left, docker, docker_fails, inspect_net, random_subnet

SERVERS = "nc -ll -p 80 -e echo hello-tcp & nc -ll -p 9999 -e echo hello-9999 & udpecho 7"


def tcp_hello(host, port):
    with socket.create_connection((host, port), timeout=3) as s:
        return s.recv(100).decode().strip()


def udp_echo(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(b"ping-udp", (host, port))
        return s.recvfrom(100)[0].decode()


def test_published_tcp_udp_and_ephemeral_ports(dk, pycni):
    subnet = random_subnet()
    net = dk.network("ports", "--subnet", subnet)
    nid = dk.network_id(net)
    gw = subnet.rsplit(".", 1)[0] + ".1"
    p_tcp, p_local, p_udp = random.sample(range(20000, 40000), 3)
    c = dk.run("srv", net, "-p", f"{p_tcp}:80", "-p", f"127.0.0.1:{p_local}:80",
               "-p", f"{p_udp}:7/udp", "--expose", "9999", "-P", cmd=("sh", "-c", SERVERS))
    assert tcp_hello("127.0.0.1", p_tcp) == "hello-tcp"
    assert tcp_hello(gw, p_tcp) == "hello-tcp"
    assert tcp_hello("127.0.0.1", p_local) == "hello-tcp"
    try:
        tcp_hello(gw, p_local)
        raise AssertionError("a port published on 127.0.0.1 answered on the gateway address")
    except OSError:
        pass
    assert udp_echo("127.0.0.1", p_udp) == "ping-udp"
    assert udp_echo(gw, p_udp) == "ping-udp"
    # -P gave the exposed port 9999 an ephemeral host port; `pycni ports` tells which.
    listing = subprocess.run(
        [sys.executable, "-m", "cnm_bridge.cli", "ports", "--state-dir", pycni.state_dir],
        capture_output=True, text=True, check=True).stdout
    line = [ln for ln in listing.splitlines() if ln.startswith(c) and "9999/tcp" in ln]
    assert line, listing
    ephemeral = int(line[0].split()[1].rsplit(":", 1)[1])
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(x) for x in f.read().split())
    assert low <= ephemeral <= high  # the kernel's ephemeral range, as Docker draws from
    assert tcp_hello("127.0.0.1", ephemeral) == "hello-9999"
    # A host port already published fails `docker run` with a message naming it.
    err = docker_fails("run", "--rm", "--network", net, "-p", f"{p_tcp}:80", IMAGE, "true")
    assert f"host port {p_tcp}/tcp is already in use" in err
    docker("stop", "-t", "0", c)
    assert support.iptables_mentioning(f"--dport {p_tcp}") == []
    docker("start", c)
    assert tcp_hello("127.0.0.1", p_tcp) == "hello-tcp"
    docker("rm", "-f", c)
    assert support.iptables_mentioning(f"--dport {p_tcp}", f"--dport {p_udp}",
                                       f"--dport {ephemeral}") == []
    dk.rm_network(net)
    assert_nothing_left(pycni, [nid], [subnet])


def test_port_held_by_a_host_process(dk, pycni):
    net = dk.network("held", "--subnet", random_subnet())
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        err = docker_fails("run", "--rm", "--network", net, "-p", f"{port}:80", IMAGE, "true")
    assert f"host port {port}/tcp is already in use" in err


def test_ports_follow_the_gateway_endpoint_on_two_networks(dk, pycni):
    s1, s2 = random_subnet(), random_subnet()
    n1 = dk.network("pg1", "--subnet", s1)
    n2 = dk.network("pg2", "--subnet", s2)
    port = random.randint(20000, 40000)
    c = dk.run("two", n1, "-p", f"{port}:80", cmd=("sh", "-c", SERVERS))
    docker("network", "connect", n2, c)
    assert tcp_hello("127.0.0.1", port) == "hello-tcp"
    # Only one DNAT target: the gateway endpoint's address.
    ip1 = inspect_net(c, n1)["IPAddress"]
    ip2 = inspect_net(c, n2)["IPAddress"]
    dnat = support.iptables_mentioning(f"--dport {port}")
    assert any(ip1 in ln for ln in dnat) and not any(ip2 in ln for ln in dnat)
    docker("rm", "-f", c)
    ids = [dk.network_id(n1), dk.network_id(n2)]
    dk.rm_network(n1)
    dk.rm_network(n2)
    assert_nothing_left(pycni, ids, [s1, s2])


def test_internal_network_publishes_nothing(dk, pycni):
    net = dk.network("intp", "--internal", "--subnet", random_subnet())
    port = random.randint(20000, 40000)
    c = dk.run("ip", net, "-p", f"{port}:80", cmd=("sh", "-c", SERVERS))
    assert support.iptables_mentioning(f"--dport {port}") == []
    docker("rm", "-f", c)
