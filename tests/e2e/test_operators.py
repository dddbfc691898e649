"""The operator's commands against a real dockerd: pycni status, inspect, check and doctor.
Every doctor check is broken on purpose here, and doctor must name it and its fix."""

import json
import os
import random
import secrets
import shutil
import subprocess
import sys

import pytest

import support
from dockerlib import PycniServer, docker, inspect_net, random_subnet, serving, settle
from test_ports import tcp_hello

SERVER = "nc -ll -p 80 -e echo hello-tcp"


def pycni_cmd(server, *args, bin_dirs=None):
    return subprocess.run(
        [sys.executable, "-m", "cnm_bridge.cli", *args, "--state-dir", server.state_dir,
         "--conf-dir", server.conf_dir, "--socket", server.socket,
         "--bin-dir", ":".join(bin_dirs or support.CNI_BIN_DIRS)],
        capture_output=True, text=True, timeout=300)


def test_status(dk, pycni):
    subnet = random_subnet()
    net = dk.network("st", "--subnet", subnet)
    port = random.randint(20000, 40000)
    c = dk.run("c", net, "-p", f"{port}:80", cmd=("sh", "-c", SERVER))
    out = pycni_cmd(pycni, "status", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["Server"]["Answering"] is True and data["PendingDeletes"] == 0
    [n] = [n for n in data["Networks"] if n["Network"] == net]
    assert n["Subnets"] == [subnet] and n["Mode"] == "generated" and n["Endpoints"] == 1
    assert n["Bridge"] == f"pc-{dk.network_id(net)[:12]}"
    [e] = [e for e in data["Endpoints"] if e["Container"] == c]
    info = inspect_net(c, net)
    assert e["Addresses"] == [f"{info['IPAddress']}/{info['IPPrefixLen']}"]
    assert e["Mac"] == info["MacAddress"] and e["State"] == "ready"
    assert e["Ports"] == f"0.0.0.0:{port}->80/tcp" and e["Network"] == net
    table = pycni_cmd(pycni, "status").stdout
    assert "CONTAINER" in table and "CNI NETWORK" in table and c in table
    fmt = pycni_cmd(pycni, "status", "--format", "{{.Container}}={{.State}}").stdout
    assert f"{c}=ready" in fmt.splitlines()


def test_status_of_a_server_that_does_not_answer(needs_docker):
    server = PycniServer()
    server.start()
    server.stop()
    try:
        out = pycni_cmd(server, "status")
        assert out.returncode == 1 and "NOT answering" in out.stdout
    finally:
        server.cleanup()


def test_inspect(dk, pycni):
    net = dk.network("ins", "--subnet", random_subnet())
    out = pycni_cmd(pycni, "inspect", net)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["Network"] == net and data["Mode"] == "generated"
    assert [p["type"] for p in data["Conflist"]["plugins"]] == ["bridge", "portmap"]
    assert [p["type"] for p in data["EndpointList"]["plugins"]] == ["bridge"]
    changes = " ".join(data["Changes"])
    for words in ("generated", "capabilities.ips", "portmap", "isolated", "masquerade"):
        assert words in changes, changes
    short = pycni_cmd(pycni, "inspect", dk.network_id(net)[:12], "--format",
                      "{{.CNINetwork}} {{json .Subnets}}").stdout.strip()
    assert short == f"pycni-{dk.network_id(net)[:12]} {json.dumps(data['Subnets'])}"
    missing = pycni_cmd(pycni, "inspect", "no-such-net-" + dk.tag)
    assert missing.returncode == 1 and "no pycni network" in missing.stderr


# -- pycni doctor ------------------------------------------------------------------------------

@pytest.fixture
def doctor_server(needs_docker, busybox_image):
    with serving() as both:
        yield both


def doctor(server, *extra, bin_dirs=None):
    out = pycni_cmd(server, "doctor", "--json", "--driver", server.name, *extra,
                    bin_dirs=bin_dirs)
    findings = json.loads(out.stdout)
    return out.returncode, {f["check"]: f for f in findings}


def problems(findings):
    return {k: f for k, f in findings.items() if not f["ok"]}


def test_doctor_on_a_healthy_host(doctor_server):
    server, dk = doctor_server
    settle(server)
    rc, found = doctor(server)
    assert rc == 0, problems(found)
    assert found["dockerd uses pycni"]["ok"] and found["pycni serving"]["ok"]
    assert "speaks" in found["CNI plugin bridge"]["detail"]


def test_doctor_names_what_is_broken(doctor_server, tmp_path):
    server, dk = doctor_server
    subnet = random_subnet()
    net = dk.network("doc", "--subnet", subnet, "-o", "com.docker.network.bridge.enable_icc=false")
    nid = dk.network_id(net)
    # 1. a conflist that does not parse, and one shadowed by another of the same name
    server.write_conf("10-broken.conflist", "{not json")
    server.write_conf("20-a.conflist", {"cniVersion": "1.0.0", "name": "twin",
                                        "plugins": [{"type": "bridge"}]})
    server.write_conf("30-b.conflist", {"cniVersion": "1.0.0", "name": "twin",
                                        "plugins": [{"type": "bridge"}]})
    # 2. a plugin dir without tuning
    partial = tmp_path / "bin"
    partial.mkdir()
    for name in ("bridge", "host-local", "portmap", "static"):
        shutil.copy(os.path.join(support.CNI_BIN_DIRS[0], name), partial / name)
    # 3. an endpoint Docker never heard of
    eid = support.hexid()
    support.post(server.socket, "/NetworkDriver.CreateEndpoint", {
        "NetworkID": nid, "EndpointID": eid,
        "Interface": {"Address": subnet.rsplit(".", 1)[0] + ".77/24"}})
    support.post(server.socket, "/NetworkDriver.Join", {
        "NetworkID": nid, "EndpointID": eid, "SandboxKey": "/var/run/docker/netns/none"})
    # 4. leftovers of pycni's that no record knows
    link = "pyc" + secrets.token_hex(6)
    ns = "pycni-" + secrets.token_hex(32)
    support.run("ip", "link", "add", link, "type", "veth", "peer", "name", link[:10] + "p")
    support.run("ip", "netns", "add", ns)
    # 5. a network's rule gone, and bridged traffic no longer through iptables
    tag = f"pycni-{nid[:12]}"
    support.delete_rules("mangle", lambda ln: f"{tag} enable_icc=false" in ln)
    nf = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    with open(nf) as f:
        nf_before = f.read().strip()
    # 6. a state dir others can write
    os.chmod(server.state_dir, 0o777)
    try:
        with open(nf, "w") as f:
            f.write("0")
        rc, found = doctor(server, bin_dirs=[str(partial)])
    finally:
        with open(nf, "w") as f:
            f.write(nf_before)
        os.chmod(server.state_dir, 0o700)
        support.run("ip", "link", "del", link, check=False)
        support.run("ip", "netns", "del", ns, check=False)
    assert rc == 1
    bad = problems(found)
    assert "not valid JSON" in bad["conflist 10-broken.conflist"]["detail"]
    assert "never used" in bad["conflist 30-b.conflist"]["detail"]
    assert "apt-get install containernetworking-plugins" in bad["CNI plugin tuning"]["fix"]
    assert eid[:12] in bad["endpoints Docker knows"]["detail"]
    assert bad["endpoints Docker knows"]["fix"] == "pycni gc --min-age 0"
    assert link in bad["leftover links"]["detail"] and f"ip link del {link}" in \
        bad["leftover links"]["fix"]
    assert ns in bad["leftover netns"]["fix"]
    assert "mangle/PYCNI-ISOLATION" in bad["pycni's iptables rules"]["detail"]
    assert "br_netfilter" in bad["br_netfilter"]["fix"]
    assert "chmod go-w" in bad["dir permissions"]["detail"]
    # The fixes it names work: gc clears the endpoint and puts the rules back.
    gc = pycni_cmd(server, "gc", "--min-age", "0")
    assert gc.returncode == 0, gc.stdout + gc.stderr
    for path in ("10-broken.conflist", "30-b.conflist"):
        os.unlink(os.path.join(server.conf_dir, path))
    settle(server)
    rc, found = doctor(server)
    assert rc == 0, problems(found)


def test_doctor_when_dockerd_does_not_know_the_driver(doctor_server):
    server, _ = doctor_server
    out = pycni_cmd(server, "doctor", "--json", "--driver", "nosuchdriver" + secrets.token_hex(3))
    found = {f["check"]: f for f in json.loads(out.stdout)}
    assert out.returncode == 1
    assert "/run/docker/plugins/nosuchdriver" in found["dockerd uses pycni"]["fix"]


def test_doctor_when_the_server_is_down(doctor_server):
    server, _ = doctor_server
    server.stop()
    rc, found = doctor(server)
    assert rc == 1 and "start it" in found["pycni serving"]["fix"]
    assert found["dockerd uses pycni"]["detail"] == "not asked: pycni does not answer"
    table = pycni_cmd(server, "doctor", "--driver", server.name).stdout
    assert "PROBLEM" in table and "CHECK" in table


def test_published_port_through_status_matches_the_host(dk, pycni):
    """`pycni ports` and status agree with what answers on the host."""
    net = dk.network("pp", "--subnet", random_subnet())
    c = dk.run("c", net, "-P", "--expose", "80", cmd=("sh", "-c", SERVER))
    data = json.loads(pycni_cmd(pycni, "status", "--json").stdout)
    [e] = [e for e in data["Endpoints"] if e["Container"] == c]
    port = int(e["Ports"].split(":")[1].split("-")[0])
    assert tcp_hello("127.0.0.1", port) == "hello-tcp"
    docker("rm", "-f", c)
