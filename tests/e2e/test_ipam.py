"""--ipam-driver pycni: CNI's host-local decides every address Docker shows."""

import os
import shutil

import pytest

import support
from dockerlib import IMAGE, assert_nothing_left, docker, docker_fails, inspect_net, random_subnet
from test_driver_basics import assert_inspect_matches, ping


def hostlocal_ips(pycni):
    return {os.path.basename(f) for f in support.ip_files(os.path.join(pycni.state_dir, "ipam"))}


def test_ipam_driver_allocates_with_host_local(dk, pycni):
    subnet = random_subnet()
    base = subnet.rsplit(".", 1)[0]
    net = dk.network("ipam", "--ipam-driver", pycni.name, "--subnet", subnet,
                     "--ip-range", f"{base}.128/26", "--gateway", f"{base}.254",
                     "--aux-address", f"printer={base}.130")
    nid = dk.network_id(net)
    a = dk.run("a", net)
    b = dk.run("b", net, "--ip", f"{base}.150")
    ia = assert_inspect_matches(dk, a, net)
    ib = assert_inspect_matches(dk, b, net)
    assert ia["Gateway"] == f"{base}.254"
    assert ib["IPAddress"] == f"{base}.150"
    # From the --ip-range, never the aux address or the gateway.
    last = int(ia["IPAddress"].rsplit(".", 1)[1])
    assert 128 <= last < 192 and last != 130
    ping(dk, a, b)
    ping(dk, a, f"{base}.254")
    # host-local's files: the live containers plus the aux address Docker reserved.
    assert hostlocal_ips(pycni) == {ia["IPAddress"], ib["IPAddress"], f"{base}.130"}
    docker("rm", "-f", b)
    assert hostlocal_ips(pycni) == {ia["IPAddress"], f"{base}.130"}
    docker("rm", "-f", a)
    dk.rm_network(net)
    assert hostlocal_ips(pycni) == set()
    assert_nothing_left(pycni, [nid], [subnet])


@pytest.fixture
def named_ipam_conf(dk):
    """A conflist whose host-local keeps its default dataDir, as users' do: that dir is
    global (/var/lib/cni/networks/<name>), so it goes afterwards."""
    name = "ipamnet-" + dk.tag
    data = os.path.join("/var/lib/cni/networks", name)
    yield name, data
    shutil.rmtree(data, ignore_errors=True)


@pytest.mark.host_paths
def test_ipam_driver_with_named_conflist(dk, pycni, named_ipam_conf):
    subnet = random_subnet()
    name, data = named_ipam_conf
    pycni.write_conf(f"80-{name}.conflist", {
        "cniVersion": "1.0.0", "name": name,
        "plugins": [{"type": "bridge", "bridge": "cnb" + dk.tag, "isGateway": True,
                     "ipMasq": True,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                              "routes": [{"dst": "0.0.0.0/0"}]}},
                    {"type": "firewall"}]})
    # No --subnet: the pool comes from the conflist's host-local range.
    net = dk.network("ipamnamed", "--ipam-driver", pycni.name, "--ipam-opt",
                     f"cni.network={name}", "-o", f"cni.network={name}")
    nid = dk.network_id(net)
    assert docker("network", "inspect", net, "-f", "{{(index .IPAM.Config 0).Subnet}}") == subnet
    a, b = dk.run("a", net), dk.run("b", net)
    assert_inspect_matches(dk, a, net)
    ping(dk, a, b)
    assert len(support.ip_files(data)) == 2  # the conflist's host-local holds them
    docker("rm", "-f", a, b)
    dk.rm_network(net)
    assert support.ip_files(data) == []
    assert_nothing_left(pycni, [nid], [subnet])


def test_ipam_driver_errors(dk, pycni):
    name = dk.name("ipamerr")
    err = docker_fails("network", "create", "-d", pycni.name, "--ipam-driver", pycni.name, name)
    assert "the pycni IPAM driver needs a subnet" in err
    err = docker_fails("network", "create", "-d", pycni.name, "--ipam-driver", pycni.name,
                       "--subnet", random_subnet(), "--ipam-opt", "color=blue", name)
    assert "unsupported --ipam-opt option(s): color" in err
    subnet = random_subnet()
    net = dk.network("ipamip", "--ipam-driver", pycni.name, "--subnet", subnet)
    err = docker_fails("run", "--rm", "--network", net, "--ip", "10.1.2.3", IMAGE,
                       "true")
    assert "10.1.2.3" in err
    dk.rm_network(net)


def test_ipam_driver_refuses_a_taken_ip(dk, pycni):
    subnet = random_subnet()
    base = subnet.rsplit(".", 1)[0]
    net = dk.network("ipdup", "--ipam-driver", pycni.name, "--subnet", subnet)
    dk.run("a", net, "--ip", f"{base}.77")
    err = docker_fails("run", "--rm", "--network", net, "--ip", f"{base}.77", IMAGE, "true")
    assert f"address {base}.77 is already in use" in err
    dk.cleanup()


def test_ipam_driver_with_static_ipam(dk, pycni):
    subnet = random_subnet()
    base = subnet.rsplit(".", 1)[0]
    name = "static-" + dk.tag
    pycni.write_conf(f"81-{name}.conflist", {
        "cniVersion": "1.0.0", "name": name,
        "plugins": [{"type": "bridge", "bridge": "cns" + dk.tag, "isGateway": True,
                     "ipam": {"type": "static",
                              "addresses": [{"address": f"{base}.2/24", "gateway": f"{base}.1"}],
                              "routes": [{"dst": "0.0.0.0/0"}]}},
                    {"type": "firewall"}]})
    net = dk.network("st", "--ipam-driver", pycni.name, "--ipam-opt", f"cni.network={name}",
                     "-o", f"cni.network={name}", "--subnet", subnet)
    nid = dk.network_id(net)
    a = dk.run("a", net, "--ip", f"{base}.20")
    b = dk.run("b", net, "--ip", f"{base}.21")
    assert inspect_net(a, net)["IPAddress"] == f"{base}.20"
    ping(dk, a, b)
    err = docker_fails("run", "--rm", "--network", net, IMAGE, "true")
    assert "uses static IPAM, which gives only the address asked for: run the container " \
           "with --ip" in err
    dk.cleanup()
    support.run("ip", "link", "del", "cns" + dk.tag, check=False)
    assert_nothing_left(pycni, [nid], [subnet])
