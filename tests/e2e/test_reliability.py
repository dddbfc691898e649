"""What must hold whatever a user does (issue: reliability), on a real dockerd: a network
never takes a host link pycni did not make, two networks on one subnet are two pools, a
second server on the same socket and state dir is refused, and direct mode never replaces
an interface the container has."""

import os
import secrets
import subprocess
import sys

import pytest

import support
from dockerlib import (IMAGE, PycniServer, assert_nothing_left, docker, docker_fails,
                       inspect_net, random_subnet)
from test_driver_basics import ping


def test_a_host_link_pycni_did_not_make_is_refused(dk, pycni):
    """Isolation and DROP rules on the host's uplink would cut every container off."""
    uplink = "pup" + secrets.token_hex(4)
    support.run("ip", "link", "add", uplink, "type", "veth", "peer", "name", uplink + "p")
    hostbr = "pbr" + secrets.token_hex(4)
    support.run("ip", "link", "add", hostbr, "type", "bridge")
    try:
        for link in (uplink, hostbr):
            before = support.iptables_mentioning(link)
            err = docker_fails("network", "create", "-d", pycni.name, "-o",
                               f"com.docker.network.bridge.name={link}", dk.name("up"))
            assert f"host link '{link}'" in err and "pycni did not make it" in err, err
            assert support.iptables_mentioning(link) == before
            assert docker("network", "ls", "-q", "--filter", f"name={dk.name('up')}") == ""
        # A name no link has is pycni's own bridge, made and removed with the network.
        own = "pbo" + secrets.token_hex(4)
        net = dk.network("own", "-o", f"com.docker.network.bridge.name={own}",
                         "--subnet", random_subnet())
        a, b = dk.run("a", net), dk.run("b", net)
        ping(dk, a, b)
        assert own in support.links()
        dk.cleanup()
        assert own not in support.links()
    finally:
        support.run("ip", "link", "del", uplink, check=False)
        support.run("ip", "link", "del", hostbr, check=False)


def test_two_networks_on_one_subnet_are_two_pools(dk, pycni):
    """Two VLANs with one subnet (macvlan on two parents): removing one network leaves the
    other's containers, their addresses and new containers alone."""
    subnet = random_subnet()
    parents = ["pvl" + secrets.token_hex(4) for _ in range(2)]
    try:
        for parent in parents:  # veth ends as parents: this kernel has no dummy module
            support.run("ip", "link", "add", parent, "type", "veth", "peer", "name", parent + "p")
            support.run("ip", "link", "set", parent, "up")
            support.run("ip", "link", "set", parent + "p", "up")
        one, two = (dk.network(f"vl{i}", "-o", "cni.type=macvlan", "-o", f"parent={parent}",
                               "--ipam-driver", pycni.name, "--subnet", subnet)
                    for i, parent in enumerate(parents))
        a1, a2 = dk.run("a1", one), dk.run("a2", two)
        addr2 = inspect_net(a2, two)["IPAddress"]
        docker("rm", "-f", a1)
        dk.rm_network(one)
        # The survivor's container keeps its address; a new one gets another; they talk.
        b2 = dk.run("b2", two)
        assert inspect_net(b2, two)["IPAddress"] != addr2
        assert addr2 in dk.exec(a2, "ip", "-o", "-4", "addr", "show", "eth0")
        ping(dk, b2, addr2)
        nid = dk.network_id(two)
        dk.cleanup()
        assert_nothing_left(pycni, [nid], [])
    finally:
        dk.cleanup()  # containers first: macvlan's DEL fails once its parent is gone
        for parent in parents:
            support.run("ip", "link", "del", parent, check=False)


@pytest.mark.min_engine(28)
def test_direct_mode_never_replaces_an_interface_the_container_has(dk, pycni):
    net = dk.network("dir", "--subnet", random_subnet())
    c = dk.run("c", "bridge")
    mac = dk.exec(c, "cat", "/sys/class/net/eth0/address")
    err = docker_fails("network", "connect", "--driver-opt",
                       "com.docker.network.endpoint.ifname=eth0", net, c)
    assert "eth0" in err and "already" in err, err
    # The container's own eth0 (Docker's bridge) is untouched and still works.
    assert dk.exec(c, "cat", "/sys/class/net/eth0/address") == mac
    assert "eth1" not in dk.exec(c, "ip", "-o", "link")
    dk.cleanup()


def test_a_second_server_on_the_same_socket_and_state_dir_is_refused(dk, pycni):
    first = PycniServer()
    first.start()
    try:
        net = dk.network("one", driver=first.name)
        second = subprocess.run(
            [sys.executable, "-m", "cnm_bridge.cli", "serve", "--socket", first.socket,
             "--conf-dir", first.conf_dir, "--state-dir", first.state_dir,
             "--bin-dir", ":".join(support.CNI_BIN_DIRS)],
            capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert f"pid {first.proc.pid}" in second.stderr + second.stdout, second.stderr
        # The first still serves: its socket is there and Docker reaches it.
        assert os.path.exists(first.socket)
        c = dk.run("c", net)
        assert inspect_net(c, net)["IPAddress"]
        dk.cleanup()
    finally:
        first.stop()
        first.cleanup()


def test_a_damaged_store_is_named_in_one_line(tmp_path):
    """No traceback and no restart loop: serve exits, naming the file and the fix."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "pycni.db").write_bytes(b"this is not a database" * 100)
    sock = f"/run/docker/plugins/pycnid{secrets.token_hex(3)}.sock"
    proc = subprocess.run(
        [sys.executable, "-m", "cnm_bridge.cli", "serve", "--socket", sock,
         "--conf-dir", str(tmp_path), "--state-dir", str(state),
         "--bin-dir", ":".join(support.CNI_BIN_DIRS)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert str(state / "pycni.db") in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(sock)
    status = subprocess.run([sys.executable, "-m", "cnm_bridge.cli", "status", "--state-dir",
                             str(state), "--socket", sock], capture_output=True, text=True)
    assert "Traceback" not in status.stderr and "pycni.db" in status.stdout + status.stderr
