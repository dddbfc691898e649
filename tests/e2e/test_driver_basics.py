"""The product end to end: docker network create -d pycni, docker run, teardown."""

import re

from dockerlib import assert_nothing_left, child_pids, docker, inspect_net, random_subnet


def iface_facts(dk, container, ifname="eth0"):
    addr = dk.exec(container, "ip", "-o", "-4", "addr", "show", ifname)
    mac = dk.exec(container, "cat", f"/sys/class/net/{ifname}/address")
    route = dk.exec(container, "ip", "route", "show", "default")
    gw = re.search(r"default via (\S+)", route)
    return re.search(r"inet (\S+)", addr).group(1), mac, gw.group(1) if gw else ""


def assert_inspect_matches(dk, container, network, ifname="eth0"):
    cidr, mac, gw = iface_facts(dk, container, ifname)
    info = inspect_net(container, network)
    assert f"{info['IPAddress']}/{info['IPPrefixLen']}" == cidr
    assert info["MacAddress"] == mac
    if ifname == "eth0":
        assert info["Gateway"] == gw
    else:
        # The default route stays with the sandbox's gateway endpoint (eth0).
        assert info["Gateway"] == info["IPAddress"].rsplit(".", 1)[0] + ".1"
    return info


def ping(dk, container, target):
    out = dk.exec(container, "ping", "-c", "1", "-W", "3", target, check=False)
    assert out.returncode == 0, f"{container} cannot reach {target}: {out.stdout}{out.stderr}"


def test_zero_config_network_two_containers(dk, pycni):
    subnet = random_subnet()
    net = dk.network("zc", "--subnet", subnet)
    nid = dk.network_id(net)
    a = dk.run("a", net)
    b = dk.run("b", net)
    ia = assert_inspect_matches(dk, a, net)
    ib = assert_inspect_matches(dk, b, net)
    assert ia["Gateway"] == subnet.rsplit(".", 1)[0] + ".1"
    ping(dk, a, ib["IPAddress"])
    ping(dk, a, b)  # Docker's embedded DNS resolves the container name
    ping(dk, b, a)
    ping(dk, a, ia["Gateway"])
    # The CNI bridge made for this network carries the gateway.
    assert f"pc-{nid[:12]}" in docker_links()
    docker("rm", "-f", a, b)
    dk.rm_network(net)
    assert_nothing_left(pycni, [nid], [subnet])


def test_the_server_never_loads_openssl(dk, pycni):
    """pycni speaks HTTP on a unix socket only: after a container's whole life (ADD, the
    answers, DEL), neither of its processes maps OpenSSL, the largest single part of its
    memory (docs/performance.md, "Memory")."""
    net = dk.network("tls", "--subnet", random_subnet())
    docker("rm", "-f", dk.run("tls", net))
    processes = [pycni.master_pid, *child_pids(pycni.master_pid)]
    assert len(processes) == 2, processes
    for pid in processes:
        with open(f"/proc/{pid}/maps") as f:
            libs = {ln.strip().split("/")[-1] for ln in f if "libcrypto" in ln or "libssl" in ln}
        assert not libs, f"pycni process {pid} maps {sorted(libs)}"


def docker_links():
    import support
    return support.links()


def test_zero_config_network_docker_picks_subnet(dk, pycni):
    net = dk.network("auto")
    nid = dk.network_id(net)
    subnet = docker("network", "inspect", net, "-f", "{{(index .IPAM.Config 0).Subnet}}")
    c = dk.run("c", net)
    info = assert_inspect_matches(dk, c, net)
    ping(dk, c, info["Gateway"])
    docker("rm", "-f", c)
    dk.rm_network(net)
    assert_nothing_left(pycni, [nid], [subnet])


def test_stop_start_connect_disconnect(dk, pycni):
    s1, s2 = random_subnet(), random_subnet()
    n1 = dk.network("lc1", "--subnet", s1)
    n2 = dk.network("lc2", "--subnet", s2)
    a = dk.run("a", n1)
    b = dk.run("b", n1)
    docker("stop", "-t", "0", a)
    docker("start", a)
    assert_inspect_matches(dk, a, n1)
    ping(dk, a, b)
    # connect: a second interface from a second CNI ADD
    docker("network", "connect", n2, b)
    info2 = assert_inspect_matches(dk, b, n2, ifname="eth1")
    assert info2["IPAddress"].startswith(s2.rsplit(".", 1)[0])
    ping(dk, b, info2["Gateway"])
    docker("network", "disconnect", n2, b)
    assert "eth1" not in dk.exec(b, "ip", "-o", "link")
    ping(dk, b, a)
    docker("rm", "-f", a, b)
    ids = [dk.network_id(n1), dk.network_id(n2)]
    dk.rm_network(n1)
    dk.rm_network(n2)
    assert_nothing_left(pycni, ids, [s1, s2])


def test_unknown_endpoint_driver_opt_refused(dk, pycni):
    from dockerlib import docker_fails
    net = dk.network("dopt", "--subnet", random_subnet())
    other = dk.network("dopt2", "--subnet", random_subnet())
    c = dk.run("c", other)
    err = docker_fails("network", "connect", "--driver-opt", "color=blue", net, c)
    assert "unsupported endpoint option(s): color" in err
