"""`python -m cni_runner`, the cnitool-compatible command line, against fake plugins."""

import json
import os
import subprocess
import sys

import pytest

from cni_runner.cli import container_id_for, main, parse_cni_args
from cni_runner.errors import CNIError

NETNS = "/var/run/netns/does-not-exist"


@pytest.fixture
def env(cni):
    cni.plugin("p1")
    cni.plugin("p2")
    cni.write_conf("10-mynet.conflist", cni.netlist_dict(
        ["p1", {"type": "p2", "capabilities": {"portMappings": True}}], name="mynet"))
    e = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    e.update(NETCONFPATH=cni.conf_dir, CNI_PATH=cni.bin_dir, CNI_CACHEDIR=cni.cache_dir)
    return e


def run(env, *args, **extra):
    return subprocess.run([sys.executable, "-m", "cni_runner", *args], env=dict(env, **extra),
                          capture_output=True, text=True, timeout=30)


def test_add_prints_result_and_passes_env(cni, env):
    ports = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    p = run(env, "add", "mynet", NETNS, CNI_IFNAME="net1",
            CNI_ARGS="IP=10.22.0.9;K8S_POD_NAME=web", CAP_ARGS=json.dumps({"portMappings": ports}))
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["cniVersion"] == "1.0.0"
    assert res["interfaces"][0] == {"name": "net1", "mac": "0a:58:0a:16:00:05", "sandbox": NETNS}
    assert res["ips"][0]["address"] == "10.22.0.5/16"
    rec1, rec2 = cni.calls("ADD")
    assert rec1["env"]["CNI_CONTAINERID"] == container_id_for(NETNS)
    assert rec1["env"]["CNI_NETNS"] == NETNS and rec1["env"]["CNI_IFNAME"] == "net1"
    assert rec1["env"]["CNI_ARGS"] == "IgnoreUnknown=1;IP=10.22.0.9;K8S_POD_NAME=web"
    assert rec1["env"]["CNI_PATH"] == cni.bin_dir
    assert rec2["stdin"]["runtimeConfig"] == {"portMappings": ports}
    assert "runtimeConfig" not in rec1["stdin"]
    cache = os.path.join(cni.cache_dir, "results", f"mynet-{container_id_for(NETNS)}-net1")
    assert os.path.exists(cache)


def test_add_check_del_round_trip(cni, env):
    assert run(env, "add", "mynet", NETNS).returncode == 0
    p = run(env, "check", "mynet", NETNS)
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""
    p = run(env, "del", "mynet", NETNS)
    assert p.returncode == 0, p.stderr
    assert cni.verbs() == [("ADD", "p1"), ("ADD", "p2"), ("CHECK", "p1"), ("CHECK", "p2"),
                           ("DEL", "p2"), ("DEL", "p1")]
    assert os.listdir(os.path.join(cni.cache_dir, "results")) == []


def test_plugin_error_goes_to_stderr(cni, env):
    cni.behave("p2", ADD={"error": {"code": 7, "msg": "bad bridge", "details": "cni0"}})
    p = run(env, "add", "mynet", NETNS)
    assert p.returncode != 0
    assert p.stdout == ""
    assert "p2" in p.stderr and "bad bridge" in p.stderr and "code 7" in p.stderr


def test_second_add_fails(cni, env):
    assert run(env, "add", "mynet", NETNS).returncode == 0
    p = run(env, "add", "mynet", NETNS)
    assert p.returncode == 1 and "already" in p.stderr and p.stdout == ""


def test_unknown_network(env):
    p = run(env, "add", "nosuchnet", NETNS)
    assert p.returncode == 1
    assert "nosuchnet" in p.stderr


def test_bad_cap_args(env):
    p = run(env, "add", "mynet", NETNS, CAP_ARGS="{not json")
    assert p.returncode == 1 and p.stderr.startswith("cni-runner:")
    p = run(env, "add", "mynet", NETNS, CAP_ARGS="[1]")
    assert p.returncode == 1 and "CAP_ARGS" in p.stderr


def test_bad_cni_args(env):
    p = run(env, "add", "mynet", NETNS, CNI_ARGS="novalue")
    assert p.returncode == 1 and "KEY=VALUE" in p.stderr


def test_bad_ifname(env):
    p = run(env, "add", "mynet", NETNS, CNI_IFNAME="way-too-long-ifname")
    assert p.returncode == 1 and "15 bytes" in p.stderr


def test_missing_netns_is_a_usage_error(env):
    p = run(env, "add", "mynet")
    assert p.returncode == 2 and "NETNS" in p.stderr


def test_bad_command(env):
    assert run(env, "frobnicate", "mynet", NETNS).returncode == 2


def test_gc_and_status_in_process(cni, env, monkeypatch, capsys):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["add", "mynet", NETNS]) == 0
    capsys.readouterr()
    assert main(["gc", "mynet"]) == 0
    assert f"deleted {container_id_for(NETNS)} eth0" in capsys.readouterr().err
    assert main(["status", "mynet"]) == 0
    assert cni.calls("STATUS") == []  # 1.0.0 list: no STATUS verb
    assert cni.verbs()[-2:] == [("DEL", "p2"), ("DEL", "p1")]


def test_container_id_matches_cnitool():
    cid = container_id_for("/var/run/netns/x")
    assert cid.startswith("cnitool-") and len(cid) == len("cnitool-") + 20
    assert cid == container_id_for("/var/run/netns/x") != container_id_for("/var/run/netns/y")


def test_parse_cni_args():
    assert parse_cni_args("") == []
    assert parse_cni_args(None) == []
    assert parse_cni_args("A=1;;B=x=y;") == [("A", "1"), ("B", "x=y")]
    with pytest.raises(CNIError):
        parse_cni_args("A")
