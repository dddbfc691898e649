"""Hardening through the real docker CLI: misbehaving plugins, hostile options, permissions."""

import os
import stat
import tempfile
import time

import pytest

import support
from dockerlib import (IMAGE, assert_nothing_left, docker, docker_fails, serving,
                       inspect_net, netns_at_join, random_subnet)
from test_driver_basics import ping

FAKES = {
    "hang": "ADD) sleep 300;;",
    "crash": "ADD) kill -SEGV $$;;",
    "flood": "ADD) while :; do echo garbage-garbage-garbage-garbage; done;;",
    "garbage": "ADD) echo 'this is not JSON'; exit 0;;",
}
FAKE = """#!/bin/sh
case "$CNI_COMMAND" in
VERSION) echo '{{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}}';;
{body}
*) exit 0;;
esac
"""


@pytest.fixture
def strict_pycni(needs_docker, busybox_image):
    """A server with a 3 s plugin deadline and misbehaving plugins beside the real ones."""
    fakes = tempfile.mkdtemp(prefix="pycni-fakes-")
    for name, body in FAKES.items():
        path = os.path.join(fakes, name)
        with open(path, "w") as f:
            f.write(FAKE.format(body=body))
        os.chmod(path, stat.S_IRWXU)
    try:
        with serving(["--plugin-timeout", "3", "--bin-dir", fakes]) as both:
            yield both
    finally:
        support.run("rm", "-rf", fakes)


@pytest.mark.parametrize("fake, message", [
    ("hang", "CNI plugin hang failed on ADD: timed out after 3s and was killed"),
    ("crash", "CNI plugin crash failed on ADD"),
    ("flood", "CNI plugin flood failed on ADD: printed more than"),
    ("garbage", "CNI plugin garbage failed on ADD: invalid result"),
])
def test_misbehaving_plugin_fails_cleanly(strict_pycni, fake, message):
    server, dk = strict_pycni
    subnet = random_subnet()
    name = f"{fake}-{dk.tag}"
    server.write_conf(f"10-{name}.conflist", {
        "cniVersion": "1.0.0", "name": name,
        "plugins": [{"type": "bridge", "bridge": "pfb" + dk.tag, "isGateway": True,
                     "ipMasq": True,
                     "ipam": {"type": "host-local", "dataDir": os.path.join(server.root, "hl"),
                              "ranges": [[{"subnet": subnet}]]}},
                    {"type": fake}]})
    net = dk.network(fake, "-o", f"cni.network={name}", "--subnet", subnet)
    nid = dk.network_id(net)
    c = dk.name("victim")
    dk.containers.append(c)
    started = time.monotonic()
    err = docker_fails("run", "-d", "--name", c, "--network", net, IMAGE, "sleep", "60")
    assert time.monotonic() - started < 60
    assert message in err, err
    # The bridge's half of the ADD was undone, and pycni still answers.
    assert support.ip_files(os.path.join(server.root, "hl")) == []
    good = dk.network("good", "--subnet", random_subnet())
    a, b = dk.run("a", good), dk.run("b", good)
    ping(dk, a, b)
    dk.cleanup()
    support.run("ip", "link", "del", "pfb" + dk.tag, check=False)
    assert_nothing_left(server, [nid], [subnet])


def test_socket_and_state_are_root_only(dk, pycni):
    st = os.stat(pycni.socket)
    # umask 077 at bind: rwx for root only (x means nothing on a socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077 == 0 and st.st_uid == 0
    assert stat.S_IMODE(os.stat(pycni.state_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(pycni.state_dir, "pycni.db")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.join(pycni.state_dir, "cni", "results")).st_mode) \
        == 0o700


def test_no_connection_is_kept_alive(dk, pycni):
    """Docker's plugin client keeps idle connections for ever and retries a POST that met
    a connection the server had just closed with an empty body: under load a `docker
    run` failed with "missing NetworkID". Every answer closes its connection, so Docker
    never holds one the server may close."""
    import socket as _socket
    with _socket.socket(_socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(pycni.socket)
        s.sendall(b"POST /Plugin.Activate HTTP/1.1\r\nHost: plugin\r\n"
                  b"Connection: keep-alive\r\nContent-Length: 2\r\n\r\n{}")
        answer = b""
        while chunk := s.recv(4096):  # ends only when the server closes
            answer += chunk
    head = answer.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 200") and b"connection: close" in head
    # Docker works with such answers: a run, then one after gunicorn's old keep-alive
    # time, when a kept connection would have been closed under Docker's feet.
    net = dk.network("ka", "--subnet", random_subnet())
    docker("run", "--rm", "--network", net, IMAGE, "true")
    time.sleep(2.1)
    docker("run", "--rm", "--network", net, IMAGE, "true")


@pytest.mark.parametrize("option, message", [
    ("com.docker.network.bridge.name=a b", "is not a valid interface name"),
    ("com.docker.network.bridge.name=a/b", "is not a valid interface name"),
    ("com.docker.network.bridge.name=..", "is not a valid interface name"),
    ("com.docker.network.bridge.name=abcdefghijklmnop", "is not a valid interface name"),
    ("cni.network=has space", "invalid cni.network value"),
    ("cni.network=..", "invalid cni.network value"),
    ("cni.network=" + "n" * 200, "longer than 128 characters"),
])
def test_hostile_option_values(dk, pycni, option, message):
    name = dk.name("hostile")
    err = docker_fails("network", "create", "-d", pycni.name, "-o", option, name)
    assert message in err


@pytest.mark.parametrize("option", ["parent=../eth0", "parent=eth0 x", "parent=" + "p" * 16])
def test_hostile_parent(dk, pycni, option):
    err = docker_fails("network", "create", "-d", pycni.name, "-o", "cni.type=macvlan",
                       "-o", option, dk.name("hp"))
    assert "is not a valid interface name" in err


def test_plugin_type_outside_plugin_dirs(dk, pycni):
    name = "escape-" + dk.tag
    pycni.write_conf(f"90-{name}.conflist", {"cniVersion": "1.0.0", "name": name,
                                             "plugins": [{"type": "../../../bin/sh"}]})
    err = docker_fails("network", "create", "-d", pycni.name, "-o", f"cni.network={name}",
                       dk.name("esc"))
    assert "must be a plain file name" in err


def test_settings_inside_the_netns_where_the_engine_allows(dk, pycni):
    """tuning's sysctl lives in the netns CNI runs in. Where the engine has the container's
    netns at Join (28+, and `docker network connect` on any), CNI runs there and it is
    kept; where pycni must hand the interface over, `docker run` is refused, naming it."""
    subnet = random_subnet()
    name = "tun-" + dk.tag
    pycni.write_conf(f"95-{name}.conflist", {
        "cniVersion": "1.0.0", "name": name,
        "plugins": [{"type": "bridge", "bridge": "ptn" + dk.tag, "isGateway": True,
                     "ipam": {"type": "host-local",
                              "dataDir": os.path.join(pycni.root, "hl"),
                              "ranges": [[{"subnet": subnet}]],
                              "routes": [{"dst": "0.0.0.0/0"}]}},
                    {"type": "tuning", "sysctl": {"net.ipv4.conf.all.arp_notify": "1"}}]})
    net = dk.network("tun", "-o", f"cni.network={name}", "--subnet", subnet)
    nid = dk.network_id(net)
    if netns_at_join():
        a = dk.run("a", net)
    else:
        err = docker_fails("run", "--rm", "--network", net, IMAGE, "true")
        assert "cannot survive pycni's handoff to Docker: tuning sysctl " \
               "net.ipv4.conf.all.arp_notify" in err
        assert "docker network connect" in err and "cni.allow-lost-settings=true" in err
        a = dk.run("a", dk.network("plain", "--subnet", random_subnet()))
        docker("network", "connect", net, a)
    assert dk.exec(a, "cat", "/proc/sys/net/ipv4/conf/all/arp_notify") == "1"
    ping(dk, a, subnet.rsplit(".", 1)[0] + ".1")
    docker("rm", "-f", a)
    dk.rm_network(net)
    # Without them, on any engine.
    net2 = dk.network("tunok", "-o", f"cni.network={name}", "-o",
                      "cni.allow-lost-settings=true", "--subnet", subnet)
    b = dk.run("b", net2)
    ping(dk, b, inspect_net(b, net2)["Gateway"])
    dk.cleanup()
    support.run("ip", "link", "del", "ptn" + dk.tag, check=False)
    assert_nothing_left(pycni, [nid], [subnet])
