"""Docker's network and run flags on pycni networks mean what they mean with Docker's drivers."""

import secrets

import support
from dockerlib import assert_nothing_left, docker, docker_fails, random_subnet
from test_driver_basics import assert_inspect_matches, ping


def random_subnet6():
    import ipaddress
    return str(ipaddress.ip_network(f"fd00:{secrets.token_hex(2)}:{secrets.token_hex(2)}::/64"))


def ping6(dk, container, target):
    out = dk.exec(container, "ping", "-6", "-c", "1", "-W", "3", target, check=False)
    assert out.returncode == 0, f"{container} cannot reach {target} over IPv6: {out.stdout}"


def check_dual_stack(dk, net, subnet6):
    a, b = dk.run("a6", net), dk.run("b6", net)
    info = assert_inspect_matches(dk, a, net)
    inside = dk.exec(a, "ip", "-o", "-6", "addr", "show", "eth0", "scope", "global")
    assert f"{info['GlobalIPv6Address']}/{info['GlobalIPv6PrefixLen']}" in inside
    assert info["GlobalIPv6Address"].startswith(subnet6.split("::")[0])
    assert f"default via {info['IPv6Gateway']}" in dk.exec(a, "ip", "-6", "route")
    ping6(dk, a, b)
    ping6(dk, b, info["GlobalIPv6Address"])
    ping6(dk, a, info["IPv6Gateway"])
    ping(dk, a, b)
    docker("rm", "-f", a, b)


def test_ipv6_dual_stack_default_ipam(dk, pycni):
    s4, s6 = random_subnet(), random_subnet6()
    net = dk.network("v6", "--ipv6", "--subnet", s4, "--subnet", s6)
    nid = dk.network_id(net)
    check_dual_stack(dk, net, s6)
    dk.rm_network(net)
    assert_nothing_left(pycni, [nid], [s4, s6.split("::")[0] + "::"])


def test_ipv6_dual_stack_pycni_ipam(dk, pycni):
    s4, s6 = random_subnet(), random_subnet6()
    net = dk.network("v6i", "--ipam-driver", pycni.name, "--ipv6", "--subnet", s4, "--subnet", s6)
    nid = dk.network_id(net)
    check_dual_stack(dk, net, s6)
    dk.rm_network(net)
    assert_nothing_left(pycni, [nid], [s4, s6.split("::")[0] + "::"])


def test_ip_and_mac_address_with_default_ipam(dk, pycni):
    subnet = random_subnet()
    base = subnet.rsplit(".", 1)[0]
    net = dk.network("ipmac", "--subnet", subnet, "--gateway", f"{base}.254",
                     "--ip-range", f"{base}.64/27", "--aux-address", f"dns={base}.64")
    nid = dk.network_id(net)
    a = dk.run("a", net, "--ip", f"{base}.10", "--mac-address", "02:42:ac:11:00:99")
    b = dk.run("b", net)
    ia = assert_inspect_matches(dk, a, net)
    ib = assert_inspect_matches(dk, b, net)
    assert ia["IPAddress"] == f"{base}.10"
    assert ia["MacAddress"] == "02:42:ac:11:00:99"
    assert ia["Gateway"] == f"{base}.254"
    assert 65 <= int(ib["IPAddress"].rsplit(".", 1)[1]) < 96  # --ip-range, not the aux address
    ping(dk, b, a)
    ping(dk, a, f"{base}.254")
    docker("rm", "-f", a, b)
    dk.rm_network(net)
    assert_nothing_left(pycni, [nid], [subnet])


def test_internal_network(dk, pycni):
    subnet = random_subnet()
    net = dk.network("int", "--internal", "--subnet", subnet)
    nid = dk.network_id(net)
    a, b = dk.run("a", net), dk.run("b", net)
    ping(dk, a, b)
    assert "default" not in dk.exec(a, "ip", "route")
    # no masquerade for an internal network
    assert support.iptables_mentioning(f"pycni-{nid[:12]}") == []
    docker("rm", "-f", a, b)
    dk.rm_network(net)
    assert_nothing_left(pycni, [nid], [subnet])


def test_bridge_options(dk, pycni):
    subnet = random_subnet()
    bridge = "pbr" + dk.tag
    net = dk.network("bro", "--subnet", subnet, "-o", f"com.docker.network.bridge.name={bridge}",
                     "-o", "com.docker.network.driver.mtu=1400",
                     "-o", "com.docker.network.bridge.enable_ip_masquerade=false")
    nid = dk.network_id(net)
    a = dk.run("a", net)
    assert bridge in support.links()
    assert "mtu 1400" in dk.exec(a, "ip", "link", "show", "eth0")
    ping(dk, a, subnet.rsplit(".", 1)[0] + ".1")
    assert support.iptables_mentioning(f"pycni-{nid[:12]}") == []  # no masquerade
    docker("rm", "-f", a)
    dk.rm_network(net)
    assert bridge not in support.links()
    assert_nothing_left(pycni, [nid], [subnet])


def test_macvlan_and_ptp_from_flags(dk, pycni):
    parent = "pvf" + dk.tag
    support.run("ip", "link", "add", parent, "type", "veth", "peer", "name", parent + "p")
    try:
        support.run("ip", "link", "set", parent, "up")
        support.run("ip", "link", "set", parent + "p", "up")
        s1, s2 = random_subnet(), random_subnet()
        mv = dk.network("mvf", "--subnet", s1, "-o", "cni.type=macvlan", "-o", f"parent={parent}",
                        "-o", "mode=bridge")
        pp = dk.network("ppf", "--subnet", s2, "-o", "cni.type=ptp")
        ids = [dk.network_id(mv), dk.network_id(pp)]
        a, b = dk.run("a", mv), dk.run("b", mv)
        pid = docker("inspect", "-f", "{{.State.Pid}}", a)
        details = support.run("nsenter", "-t", pid, "-n", "ip", "-d", "link", "show", "eth0")
        assert "macvlan mode bridge" in details.stdout
        ping(dk, a, b)
        c = dk.run("c", pp)
        info = assert_inspect_matches(dk, c, pp)
        ping(dk, c, info["Gateway"])
        dk.cleanup()
        assert_nothing_left(pycni, ids, [s1, s2])
    finally:
        dk.cleanup()
        support.run("ip", "link", "del", parent, check=False)
    err = docker_fails("network", "create", "-d", pycni.name, "-o", "cni.type=macvlan",
                       "-o", "parent=nosuchif0", dk.name("mvbad"))
    assert "parent interface 'nosuchif0' does not exist" in err


def test_enable_icc_false_isolates_containers(dk, pycni):
    subnet = random_subnet()
    net = dk.network("icc", "--subnet", subnet, "-o", "com.docker.network.bridge.enable_icc=false")
    nid = dk.network_id(net)
    a, b = dk.run("a", net), dk.run("b", net)
    out = dk.exec(a, "ping", "-c", "1", "-W", "2", b, check=False)
    assert out.returncode != 0, "containers on an enable_icc=false network reached each other"
    ping(dk, a, subnet.rsplit(".", 1)[0] + ".1")  # the gateway still answers
    assert support.iptables_mentioning(f"pycni enable_icc=false {nid[:12]}")
    docker("rm", "-f", a, b)
    dk.rm_network(net)
    assert support.iptables_mentioning(f"pycni enable_icc=false {nid[:12]}") == []
    assert_nothing_left(pycni, [nid], [subnet])
