"""CNI 1.1 lists on the plugin set under test: 1.9.x speaks 1.1.0 (nftables backends of
bridge and portmap, 1.1 result fields); 1.1.1 does not, and a 1.1.0-only list is refused at
`docker network create` while `cniVersions` falls back to a version the plugins speak."""

import json
import os
import random
import secrets
import subprocess
import sys

import pytest

import support
from dockerlib import (IMAGE, assert_nothing_left, docker, docker_fails, inspect_net,
                       random_subnet, serving)
from test_driver_basics import assert_inspect_matches, ping
from test_ports import tcp_hello

SERVER = "nc -ll -p 80 -e echo hello-tcp"


def nft_ruleset():
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True,
                          check=True).stdout


def conflist(name, subnet, bridge, data_dir, version="1.1.0", **extra):
    return {"cniVersion": version, "name": name, **extra,
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True,
                 "ipMasqBackend": "nftables",
                 "ipam": {"type": "host-local", "dataDir": data_dir,
                          "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "backend": "nftables",
                 "capabilities": {"portMappings": True}}]}


def test_a_1_1_list_with_nftables_backends(dk, pycni):
    subnet = random_subnet()
    prefix = subnet.rsplit(".", 1)[0] + "."
    name = "nft-" + secrets.token_hex(4)
    bridge = "pn" + secrets.token_hex(4)
    pycni.write_conf(f"20-{name}.conflist",
                     conflist(name, subnet, bridge, os.path.join(pycni.root, "hl")))
    if not support.cni_plugins_speak("1.1.0", pycni.cni_bin_dirs):
        err = docker_fails("network", "create", "-d", pycni.name, "-o", f"cni.network={name}",
                           "--subnet", subnet, dk.name("nft"))
        assert "1.1.0" in err and "bridge" in err, err
        return
    net = dk.network("nft", "-o", f"cni.network={name}", "--subnet", subnet)
    nid = dk.network_id(net)
    port = random.randint(20000, 40000)
    srv = dk.run("srv", net, "-p", f"{port}:80", cmd=("sh", "-c", SERVER))
    cli = dk.run("cli", net)
    info = assert_inspect_matches(dk, srv, net)
    ping(dk, cli, srv)
    # Published through portmap's nftables table, on the host's addresses and loopback,
    # and from a container of the network (hairpin through the host address).
    assert "cni_hostport" in nft_ruleset()
    assert tcp_hello("127.0.0.1", port) == "hello-tcp"
    assert tcp_hello(info["Gateway"], port) == "hello-tcp"
    assert "hello-tcp" in dk.exec(cli, "nc", "-w", "3", info["Gateway"], str(port))
    # The 1.1.0 result pycni keeps is the plugins' own version.
    cached = [json.load(open(f)) for f in support.files_under(
        os.path.join(pycni.state_dir, "cni", "results"))]
    assert cached and all(c["result"]["cniVersion"] == "1.1.0" for c in cached), cached
    dk.cleanup()
    ruleset = nft_ruleset()
    assert str(port) not in ruleset and prefix not in ruleset, ruleset
    support.run("ip", "link", "del", bridge, check=False)
    assert_nothing_left(pycni, [nid], [subnet])


def test_cni_versions_falls_back_to_what_the_plugins_speak(dk, pycni):
    """A conf file with `cniVersions` runs at the newest version both sides speak."""
    subnet = random_subnet()
    name = "cvs-" + secrets.token_hex(4)
    bridge = "pv" + secrets.token_hex(4)
    conf = conflist(name, subnet, bridge, os.path.join(pycni.root, "hl"),
                    cniVersions=["1.0.0", "1.1.0"])
    for plugin in conf["plugins"]:  # iptables backends: the 1.1.1 plugins know no other
        plugin.pop("ipMasqBackend", None)
        plugin.pop("backend", None)
    pycni.write_conf(f"20-{name}.conflist", conf)
    net = dk.network("cvs", "-o", f"cni.network={name}", "--subnet", subnet)
    a, b = dk.run("a", net), dk.run("b", net)
    ping(dk, a, b)
    expected = "1.1.0" if support.cni_plugins_speak("1.1.0", pycni.cni_bin_dirs) else "1.0.0"
    cached = [json.load(open(f)) for f in support.files_under(
        os.path.join(pycni.state_dir, "cni", "results"))]
    assert {c["result"]["cniVersion"] for c in cached} == {expected}, cached
    assert inspect_net(a, net)["IPAddress"].startswith(subnet.rsplit(".", 1)[0])
    dk.cleanup()
    support.run("ip", "link", "del", bridge, check=False)


NOT_READY = """#!/usr/bin/python3
# A CNI 1.1 plugin that passes ADD's prevResult on and says at STATUS it cannot add.
import json, os, sys
cmd = os.environ.get("CNI_COMMAND")
conf = json.load(sys.stdin)
if cmd == "VERSION":
    print(json.dumps({"cniVersion": "1.1.0", "supportedVersions": ["1.0.0", "1.1.0"]}))
elif cmd == "STATUS":
    print(json.dumps({"cniVersion": "1.1.0", "code": 50, "msg": "the uplink is down"}))
    sys.exit(1)
elif cmd == "ADD":
    print(json.dumps(conf["prevResult"]))
"""


@pytest.mark.cni_version("1.1.0")
def test_a_plugin_that_cannot_add_fails_docker_run_with_its_message(tmp_path):
    """CNI 1.1 STATUS: pycni asks before it adds; nothing is made for a container that
    cannot be added, and the user reads the plugin's own words."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(mode=0o700)
    kind = "notready" + secrets.token_hex(3)
    (bin_dir / kind).write_text(NOT_READY)
    (bin_dir / kind).chmod(0o700)
    with serving(["--bin-dir", str(bin_dir)]) as (server, dk):
        subnet = random_subnet()
        name = "nr-" + secrets.token_hex(4)
        bridge = "pr" + secrets.token_hex(4)
        conf = conflist(name, subnet, bridge, os.path.join(server.root, "hl"))
        conf["plugins"] = conf["plugins"][:1] + [{"type": kind}]
        server.write_conf(f"20-{name}.conflist", conf)
        net = dk.network("nr", "-o", f"cni.network={name}", "--subnet", subnet)
        nid = dk.network_id(net)
        err = docker_fails("run", "--rm", "--network", net, IMAGE, "true")
        assert "the uplink is down" in err and kind in err, err
        status = json.loads(support.run(
            sys.executable, "-m", "cnm_bridge.cli", "status", "--json",
            "--state-dir", server.state_dir, "--socket", server.socket).stdout)
        assert not [ep for n in status.get("networks", []) for ep in n.get("endpoints", [])], status
        assert support.files_under(os.path.join(server.state_dir, "cni", "results")) == []
        dk.cleanup()
        support.run("ip", "link", "del", bridge, check=False)
        assert_nothing_left(server, [nid], [subnet])
