"""Hardening: unsafe dirs, hostile bodies against the real app, 50 parallel requests."""

import concurrent.futures
import json
import os
import random
import secrets
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

import support
from cnm_bridge.app import make_app
from cnm_bridge.settings import Settings


def test_refuses_dirs_others_can_write(needs_root, tmp_path):
    conf = tmp_path / "net.d"
    conf.mkdir()
    os.chmod(conf, 0o777)
    sock = tmp_path / "p.sock"
    proc = subprocess.run(
        [sys.executable, "-m", "cnm_bridge.cli", "serve", "--socket", str(sock),
         "--conf-dir", str(conf), "--state-dir", str(tmp_path / "state"),
         "--bin-dir", ":".join(support.CNI_BIN_DIRS)], capture_output=True, text=True,
        timeout=60)
    assert proc.returncode == 2
    assert f"conf dir {conf} is writable by group or others (mode 777)" in proc.stderr
    assert not sock.exists()
    os.chmod(conf, 0o755)
    state = tmp_path / "state2"
    state.mkdir()
    os.chmod(state, 0o775)
    proc = subprocess.run(
        [sys.executable, "-m", "cnm_bridge.cli", "gc", "--conf-dir", str(conf),
         "--state-dir", str(state)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"state dir {state}" in proc.stderr


# -- hostile bodies against the real app -----------------------------------------

PATHS = ["/Plugin.Activate", "/NetworkDriver.GetCapabilities", "/NetworkDriver.CreateNetwork",
         "/NetworkDriver.DeleteNetwork", "/NetworkDriver.CreateEndpoint",
         "/NetworkDriver.DeleteEndpoint", "/NetworkDriver.EndpointOperInfo",
         "/NetworkDriver.Join", "/NetworkDriver.Leave",
         "/NetworkDriver.ProgramExternalConnectivity",
         "/NetworkDriver.RevokeExternalConnectivity", "/NetworkDriver.DiscoverNew",
         "/NetworkDriver.DiscoverDelete", "/NetworkDriver.AllocateNetwork",
         "/NetworkDriver.FreeNetwork", "/IpamDriver.GetCapabilities",
         "/IpamDriver.GetDefaultAddressSpaces", "/IpamDriver.RequestPool",
         "/IpamDriver.ReleasePool", "/IpamDriver.RequestAddress",
         "/IpamDriver.ReleaseAddress", "/NetworkDriver.Nope", "/../../etc/passwd"]

HOSTILE_STRINGS = st.sampled_from([
    "", "../../etc/passwd", "a" * 5000, "x\0y", "eth0; rm -rf /", "$(reboot)", "\n",
    "0" * 64, "g" * 64, "10.0.0.1/33", "::/129", "fe80::1%eth0/64", "256.1.1.1/24",
    "AAAAAAAA", "02:42:ac:11:00:02", "-1", "1e309", "cni.network", "/", " ",
]) | st.text(max_size=40)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) |
    st.floats(allow_nan=False) | HOSTILE_STRINGS,
    lambda children: st.lists(children, max_size=4) |
    st.dictionaries(HOSTILE_STRINGS | st.sampled_from(
        ["NetworkID", "EndpointID", "Options", "Interface", "Address", "PoolID", "Pool",
         "IPv4Data", "SandboxKey", "com.docker.network.generic",
         "com.docker.network.portmap", "V6", "SubPool"]), children, max_size=5),
    max_leaves=20)

BODIES = (st.binary(max_size=200) |
          JSON_VALUES.map(lambda v: json.dumps(v).encode()) |
          st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n + b"]" * n) |
          st.just(b"{" + b'"a":' * 3000 + b"1" + b"}" * 3000))


@pytest.fixture(scope="module")
def real_app(needs_root_session, tmp_path_factory):
    # needs_root_session: skipped without root, a failure under PYCNI_REQUIRE_ALL=1.
    root = tmp_path_factory.mktemp("fuzz")
    os.makedirs(root / "net.d")
    s = Settings(socket=str(root / "sock"), conf_dir=str(root / "net.d"),
                 bin_dirs=support.CNI_BIN_DIRS, state_dir=str(root / "state"))
    app = make_app(s)
    return app.test_client()


@hsettings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(PATHS), body=BODIES)
def test_hostile_bodies_get_clean_errors(needs_root, real_app, path, body):
    resp = real_app.post(path, data=body)
    assert resp.status_code in (200, 404, 405, 413), resp.status_code
    data = json.loads(resp.data)
    assert isinstance(data, dict)
    text = resp.data.decode()
    assert "Traceback" not in text and "internal error" not in text, text
    key = "Error" if path.startswith("/IpamDriver.") else "Err"
    if key in data:
        assert isinstance(data[key], str) and data[key]
    # and it still answers
    assert real_app.post("/Plugin.Activate").get_json()["Implements"]


def test_huge_body_refused(needs_root, real_app):
    resp = real_app.post("/NetworkDriver.CreateNetwork", data=b" " * (3 << 20))
    assert resp.status_code == 413
    assert "request body larger than" in resp.get_json()["Err"]


# -- 50 parallel requests over the real socket --------------------------------------

@pytest.fixture
def server(needs_root, tmp_path):
    root = tmp_path
    os.makedirs(root / "net.d")
    sock = f"/run/pycni-test-{secrets.token_hex(4)}.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnm_bridge.cli", "serve", "--socket", sock,
         "--conf-dir", str(root / "net.d"), "--state-dir", str(root / "state"),
         "--bin-dir", ":".join(support.CNI_BIN_DIRS), "--log-level", "warning"],
        stdout=open(root / "log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        assert proc.poll() is None and time.monotonic() < deadline, (root / "log").read_text()
        time.sleep(0.05)
    yield sock, root
    try:
        support.settle_db(str(root / "state" / "pycni.db"))
    except Exception:
        pass
    os.killpg(proc.pid, 15)
    proc.wait(30)


def test_fifty_parallel_requests_leave_a_consistent_store(server):
    sock, root = server
    call = lambda path, body: support.post(sock, path, body)  # noqa: E731
    nets = []
    for _ in range(3):
        nid = support.hexid()
        subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
        status, ans = call("/IpamDriver.RequestPool", {"AddressSpace": "PycniLocal",
                                                        "Pool": subnet})
        assert "Error" not in ans, ans
        pool = ans["PoolID"]
        _, gw = call("/IpamDriver.RequestAddress", {
            "PoolID": pool, "Options": {"RequestAddressType": "com.docker.network.gateway"}})
        _, ans = call("/NetworkDriver.CreateNetwork", {
            "NetworkID": nid, "Options": {},
            "IPv4Data": [{"AddressSpace": "PycniLocal", "Pool": subnet, "Gateway": gw["Address"]}]})
        assert ans == {}, ans
        nets.append((nid, pool, subnet))

    def new_endpoint(i):
        nid, pool, _ = nets[i % 3]
        _, addr = call("/IpamDriver.RequestAddress", {"PoolID": pool, "Options": {}})
        assert "Error" not in addr, addr
        eid = support.hexid()
        _, ans = call("/NetworkDriver.CreateEndpoint", {
            "NetworkID": nid, "EndpointID": eid, "Interface": {"Address": addr["Address"]},
            "Options": {}})
        assert "Err" not in ans, ans
        _, join = call("/NetworkDriver.Join", {"NetworkID": nid, "EndpointID": eid,
                                               "SandboxKey": "/var/run/docker/netns/x"})
        assert "Err" not in join, join
        _, info = call("/NetworkDriver.EndpointOperInfo", {"NetworkID": nid, "EndpointID": eid})
        assert info["Value"]["ips"] == [addr["Address"]]
        return nid, pool, eid, addr["Address"]

    with concurrent.futures.ThreadPoolExecutor(25) as pool:
        made = list(pool.map(new_endpoint, range(30)))

    def delete(item):
        nid, pool_id, eid, addr = item
        call("/NetworkDriver.Leave", {"NetworkID": nid, "EndpointID": eid})
        _, ans = call("/NetworkDriver.DeleteEndpoint", {"NetworkID": nid, "EndpointID": eid})
        assert ans == {}, ans
        _, ans = call("/IpamDriver.ReleaseAddress", {"PoolID": pool_id,
                                                     "Address": addr.split("/")[0]})
        assert ans == {}, ans

    # 20 requests more, mixed: deletions of a third, capability and OperInfo calls.
    with concurrent.futures.ThreadPoolExecutor(25) as pool:
        futures = [pool.submit(delete, m) for m in made[:10]]
        futures += [pool.submit(call, "/NetworkDriver.GetCapabilities", b"") for _ in range(5)]
        futures += [pool.submit(call, "/NetworkDriver.EndpointOperInfo",
                                {"NetworkID": m[0], "EndpointID": m[2]}) for m in made[10:15]]
        for f in futures:
            f.result()

    support.settle_db(str(root / "state" / "pycni.db"))
    kept = made[10:]
    addrs = [m[3] for m in kept]
    assert len(set(addrs)) == len(addrs) == 20
    import sqlite3
    db = sqlite3.connect(root / "state" / "pycni.db")
    rows = db.execute("SELECT id, state FROM endpoints").fetchall()
    assert {r[0] for r in rows} == {m[2] for m in kept}
    assert {r[1] for r in rows} == {"ready"}
    files = {os.path.basename(f) for f in support.ip_files(root / "state" / "ipam")}
    assert files == {a.split("/")[0] for a in addrs}
    for m in kept:
        delete(m)
    support.settle_db(str(root / "state" / "pycni.db"))
    for nid, pool_id, _ in nets:
        assert call("/NetworkDriver.DeleteNetwork", {"NetworkID": nid})[1] == {}
        assert call("/IpamDriver.ReleasePool", {"PoolID": pool_id})[1] == {}
    assert support.ip_files(root / "state" / "ipam") == []
    assert not support.new_netns()
