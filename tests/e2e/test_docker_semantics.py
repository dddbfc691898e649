"""Docker's network and run flags on pycni networks mean what they mean with Docker's drivers."""

import secrets

import support
from dockerlib import assert_nothing_left, docker, docker_fails, inspect_net, random_subnet
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
    assert [r for r in masquerade_rules("ip6tables") if f"-s {subnet6} " in r]
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


def masquerade_rules(cmd="iptables"):
    return [ln for ln in support.run(cmd + "-save", "-t", "nat").stdout.splitlines()
            if "MASQUERADE" in ln and "pycni-" in ln]


def test_zero_config_network_masquerades_per_network(dk, pycni):
    """Outbound traffic leaves with the host's address: one rule per network, none per container.

    The "outside" is a netns this test makes, reachable from the host over a veth
    and with no route back to the container subnet, so only a masqueraded ping
    gets its answer.
    """
    subnet = random_subnet()
    net = dk.network("masq", "--subnet", subnet)
    nid = dk.network_id(net)
    outside, veth = f"pyct-out-{dk.tag}", f"pvo{dk.tag}"
    o = f"10.{199}.{secrets.randbelow(256)}"
    support.run("ip", "netns", "add", outside)
    try:
        support.run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                    "netns", outside)
        support.run("ip", "addr", "add", f"{o}.1/30", "dev", veth)
        support.run("ip", "link", "set", veth, "up")
        support.run("ip", "-n", outside, "addr", "add", f"{o}.2/30", "dev", "eth0")
        support.run("ip", "-n", outside, "link", "set", "eth0", "up")
        a, b = dk.run("a", net), dk.run("b", net)
        ping(dk, a, f"{o}.2")
        ping(dk, b, f"{o}.2")
        rules = [r for r in masquerade_rules() if f"pycni-{nid[:12]}" in r]
        assert rules == [f"-A POSTROUTING -s {subnet} ! -o pc-{nid[:12]} -m comment --comment "
                         f"\"pycni-{nid[:12]} masquerade\" -j MASQUERADE"]
        ips = [inspect_net(c, net)["IPAddress"] for c in (a, b)]
        nat = support.run("iptables-save", "-t", "nat").stdout.splitlines()
        assert not [ln for ln in nat if any(ip in ln for ip in ips)]  # nothing per container
        docker("rm", "-f", a, b)
        dk.rm_network(net)
        assert_nothing_left(pycni, [nid], [subnet])
    finally:
        support.run("ip", "link", "del", veth, check=False)
        support.run("ip", "netns", "del", outside, check=False)


def test_internal_network(dk, pycni):
    subnet = random_subnet()
    net = dk.network("int", "--internal", "--subnet", subnet)
    nid = dk.network_id(net)
    a, b = dk.run("a", net), dk.run("b", net)
    ping(dk, a, b)
    assert "default" not in dk.exec(a, "ip", "route")
    # no masquerade for an internal network (its forwarding and isolation rules carry
    # the same tag)
    assert [r for r in support.iptables_mentioning(f"pycni-{nid[:12]}")
            if "MASQUERADE" in r] == []
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
    assert [r for r in support.iptables_mentioning(f"pycni-{nid[:12]}")
            if "MASQUERADE" in r] == []  # no masquerade
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
    assert support.iptables_mentioning(f"pycni-{nid[:12]} enable_icc=false")
    docker("rm", "-f", a, b)
    dk.rm_network(net)
    assert support.iptables_mentioning(f"pycni-{nid[:12]} enable_icc=false") == []
    assert_nothing_left(pycni, [nid], [subnet])
