"""Networks backed by a conflist from the conf dir (-o cni.network=NAME), and their errors."""

import os
import secrets

import pytest

import support
from dockerlib import assert_nothing_left, docker, docker_fails, inspect_net, random_subnet
from test_driver_basics import assert_inspect_matches, ping


def bridge_conflist(name, subnet, bridge, data_dir):
    return {
        "cniVersion": "1.0.0", "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "dataDir": data_dir,
                      "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "firewall"},
        ],
    }


def test_bridge_host_local_conflist(dk, pycni):
    subnet = random_subnet()
    cni_name = "br-" + secrets.token_hex(4)
    bridge = "cnibr" + secrets.token_hex(4)
    data_dir = os.path.join(pycni.root, "hostlocal")
    pycni.write_conf(f"20-{cni_name}.conflist", bridge_conflist(cni_name, subnet, bridge, data_dir))
    net = dk.network("named", "-o", f"cni.network={cni_name}", "--subnet", subnet)
    nid = dk.network_id(net)
    a, b = dk.run("a", net), dk.run("b", net)
    ia = assert_inspect_matches(dk, a, net)
    ib = assert_inspect_matches(dk, b, net)
    ping(dk, a, b)
    ping(dk, b, ia["IPAddress"])
    # host-local's files are exactly the live containers' addresses.
    files = {os.path.basename(f) for f in support.ip_files(os.path.join(data_dir, cni_name))}
    assert files == {ia["IPAddress"], ib["IPAddress"]}
    docker("rm", "-f", a, b)
    dk.rm_network(net)
    assert support.ip_files(os.path.join(data_dir, cni_name)) == []
    assert bridge not in support.links()
    assert_nothing_left(pycni, [nid], [subnet])


def test_macvlan_conflist_on_veth_parent(dk, pycni):
    subnet = random_subnet()
    # A veth end as the parent: this kernel has no dummy module.
    parent = "pve" + secrets.token_hex(4)
    support.run("ip", "link", "add", parent, "type", "veth", "peer", "name", parent + "p")
    try:
        support.run("ip", "link", "set", parent, "up")
        support.run("ip", "link", "set", parent + "p", "up")
        cni_name = "mv-" + secrets.token_hex(4)
        pycni.write_conf(f"30-{cni_name}.conflist", {
            "cniVersion": "1.0.0", "name": cni_name,
            "plugins": [{"type": "macvlan", "master": parent, "mode": "bridge",
                         "ipam": {"type": "host-local",
                                  "dataDir": os.path.join(pycni.root, "hostlocal"),
                                  "ranges": [[{"subnet": subnet}]]}}]})
        net = dk.network("mv", "-o", f"cni.network={cni_name}", "--subnet", subnet)
        nid = dk.network_id(net)
        a, b = dk.run("a", net), dk.run("b", net)
        ia = inspect_net(a, net)
        ib = inspect_net(b, net)
        assert ia["IPAddress"] in dk.exec(a, "ip", "-o", "-4", "addr", "show", "eth0")
        # No default route from this conflist: Docker must not add docker_gwbridge.
        assert dk.exec(a, "ip", "-o", "link").count(": eth") == 1
        ping(dk, a, ib["IPAddress"])
        ping(dk, b, a)
        docker("rm", "-f", a, b)
        dk.rm_network(net)
        assert_nothing_left(pycni, [nid], [subnet])
    finally:
        # Containers first: macvlan's DEL fails once its master is gone.
        dk.cleanup()
        support.run("ip", "link", "del", parent, check=False)


# -- errors at `docker network create`, not at the first `docker run` -----------

def _assert_no_network(name):
    assert name not in docker("network", "ls", "--format", "{{.Name}}").split()


def test_missing_conflist_name(dk, pycni):
    name = dk.name("missing")
    err = docker_fails("network", "create", "-d", pycni.name, "-o", "cni.network=nosuchnet",
                       name)
    assert "no CNI network named 'nosuchnet'" in err
    assert pycni.conf_dir in err
    _assert_no_network(name)


def test_unparsable_conflist(dk, pycni):
    cni_name = "bad-" + secrets.token_hex(4)
    path = pycni.write_conf(f"50-{cni_name}.conflist", '{"name": "' + cni_name + '", oops')
    name = dk.name("unparsable")
    err = docker_fails("network", "create", "-d", pycni.name, "-o", f"cni.network={cni_name}",
                       name)
    assert path in err and "not valid JSON" in err
    _assert_no_network(name)


def test_plugin_binary_missing(dk, pycni):
    cni_name = "nobin-" + secrets.token_hex(4)
    pycni.write_conf(f"60-{cni_name}.conflist", {
        "cniVersion": "1.0.0", "name": cni_name,
        "plugins": [{"type": "no-such-plugin", "ipam": {"type": "host-local",
                                                         "ranges": [[{"subnet": "10.9.0.0/24"}]]}}]})
    name = dk.name("nobin")
    err = docker_fails("network", "create", "-d", pycni.name, "-o", f"cni.network={cni_name}",
                       "--subnet", "10.9.0.0/24", name)
    assert "CNI plugin 'no-such-plugin' not found in" in err
    _assert_no_network(name)


def test_subnet_contradicts_conflist(dk, pycni):
    cni_name = "sub-" + secrets.token_hex(4)
    pycni.write_conf(f"70-{cni_name}.conflist",
                     bridge_conflist(cni_name, "10.201.7.0/24", "cnibrx", pycni.root))
    name = dk.name("contradict")
    err = docker_fails("network", "create", "-d", pycni.name, "-o", f"cni.network={cni_name}",
                       "--subnet", "10.202.8.0/24", name)
    assert "subnet 10.202.8.0/24 does not match CNI network" in err
    assert "--subnet 10.201.7.0/24" in err
    _assert_no_network(name)
    # Without --subnet Docker picks its own pool, which cannot match either.
    err = docker_fails("network", "create", "-d", pycni.name, "-o", f"cni.network={cni_name}",
                       name)
    assert "create the network with --subnet 10.201.7.0/24" in err
    _assert_no_network(name)


@pytest.mark.parametrize("option, message", [
    ("foo=bar", "unsupported 'bridge' network option(s): foo"),
    ("com.docker.network.bridge.name=../../x", "is not a valid interface name"),
    ("com.docker.network.bridge.name=averyveryverylongname", "is not a valid interface name"),
    ("cni.network=../etc", "invalid cni.network value"),
    ("cni.type=weave", "option cni.type='weave' is not supported"),
    ("com.docker.network.driver.mtu=12", "must be an integer from 68 to 65535"),
])
def test_bad_options_refused(dk, pycni, option, message):
    name = dk.name("badopt")
    err = docker_fails("network", "create", "-d", pycni.name, "-o", option, name)
    assert message in err
    _assert_no_network(name)


def _ptp_pair_reach_each_other(dk, net, attach=()):
    """Two containers of a ptp network reach each other by address and by name, and the
    gateway; with `attach`, the second joins by `docker network connect` (direct mode)."""
    a = dk.run("a", net)
    if attach:
        b = dk.run("b", "none")
        docker("network", "disconnect", "none", b)
        docker("network", "connect", net, b)
    else:
        b = dk.run("b", net)
    ia, ib = assert_inspect_matches(dk, a, net), inspect_net(b, net)
    ping(dk, a, ib["IPAddress"])
    ping(dk, b, ia["IPAddress"])
    ping(dk, a, b)
    ping(dk, a, ia["Gateway"])
    return a, b


def test_ptp_containers_reach_each_other(dk, pycni):
    """ptp routes everything through the host: a handed-off interface gets routes via the
    gateway for the subnet, or its peers would be ARPed for on a link nobody else is on."""
    subnet = random_subnet()
    net = dk.network("ptpgen", "-o", "cni.type=ptp", "--subnet", subnet)
    nid = dk.network_id(net)
    _ptp_pair_reach_each_other(dk, net)
    dk.cleanup()
    assert_nothing_left(pycni, [nid], [subnet])


def test_ptp_conflist_containers_reach_each_other_handoff_and_direct(dk, pycni):
    subnet = random_subnet()
    cni_name = "ptp2-" + secrets.token_hex(4)
    pycni.write_conf(f"40-{cni_name}.conflist", {
        "cniVersion": "1.0.0", "name": cni_name,
        "plugins": [{"type": "ptp", "ipMasq": True,
                     "ipam": {"type": "host-local",
                              "dataDir": os.path.join(pycni.root, "hostlocal"),
                              "ranges": [[{"subnet": subnet}]],
                              "routes": [{"dst": "0.0.0.0/0"}]}},
                    {"type": "firewall"}]})
    for attach in ((), ("-o", "cni.attach=direct")):
        net = dk.network("ptpl" + str(len(attach)), "-o", f"cni.network={cni_name}",
                         *attach, "--subnet", subnet)
        nid = dk.network_id(net)
        _ptp_pair_reach_each_other(dk, net, attach)
        dk.cleanup()
        assert_nothing_left(pycni, [nid], [subnet])
