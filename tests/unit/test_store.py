"""store.py: SQLite round trips in a temporary directory."""

import os
import stat
import threading

import pytest

from cnm_bridge.store import Endpoint, Network, Store

NID = "3f" * 32
NID2 = "4e" * 32
EID = "a1" * 32
EID2 = "b2" * 32
CONF = {"cniVersion": "1.0.0", "name": "pycni-3f3f3f3f3f3f",
        "plugins": [{"type": "bridge", "bridge": "pc-3f3f3f3f3f3f",
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.5.0.0/16"}]]}}]}
RESULT = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
          "ips": [{"interface": 0, "address": "10.5.0.2/16", "gateway": "10.5.0.1"}],
          "routes": [{"dst": "0.0.0.0/0"}]}


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "state" / "pycni.db"))


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def network(nid=NID, **kw):
    return Network(id=nid, cni_name="pycni-" + nid[:12], mode="generated", conflist=CONF, **kw)


def endpoint(eid=EID, nid=NID, **kw):
    return Endpoint(id=eid, network_id=nid, state="creating", netns="pycni-" + eid,
                    tmp_ifname="pyc" + eid[:12], **kw)


def test_files_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "state" / "pycni.db"
        s = Store(str(path))
        s.add_network(network())
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    # WAL mode: the -wal and -shm files hold the same data and must be as private.
    # The connection is open, so both exist.
    for suffix in ("-wal", "-shm"):
        assert mode(str(path) + suffix) == 0o600, suffix


def test_existing_loose_file_made_private(tmp_path):
    path = tmp_path / "pycni.db"
    path.write_bytes(b"")
    os.chmod(path, 0o644)
    Store(str(path))
    assert mode(path) == 0o600


def test_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Store("pycni.db")
    s.add_pool("p", {"a": 1})
    assert s.get_pool("p") == {"a": 1}


def test_network_round_trip(store):
    n = network(internal=True, ipam="pycni", owned_links=["pc-3f3f3f3f3f3f"],
                ipam_dir="/var/lib/pycni/ipam",
                masquerade={"bridge": "pc-3f3f3f3f3f3f", "subnets": ["10.5.0.0/16"]})
    store.add_network(n)
    assert store.get_network(NID) == n
    assert store.get_network(NID2) is None


def test_network_defaults(store):
    store.add_network(network())
    got = store.get_network(NID)
    assert got.internal is False and got.ipam == "docker" and got.owned_links == []
    assert got.ipam_dir == "" and got.conflist == CONF and got.masquerade == {}


def test_store_of_an_older_release_gains_new_columns(tmp_path):
    import sqlite3
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    # The networks table as the first release made it: no masquerade column.
    db.executescript("""CREATE TABLE networks (id TEXT PRIMARY KEY, cni_name TEXT NOT NULL,
        mode TEXT NOT NULL, conflist TEXT NOT NULL, internal INTEGER NOT NULL DEFAULT 0,
        ipam TEXT NOT NULL DEFAULT 'docker', owned_links TEXT NOT NULL DEFAULT '[]',
        ipam_dir TEXT NOT NULL DEFAULT '', isolated_bridge TEXT NOT NULL DEFAULT '',
        ipv6 INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL DEFAULT (julianday('now')));""")
    db.execute("INSERT INTO networks (id, cni_name, mode, conflist) VALUES (?,?,?,?)",
               (NID, "pycni-" + NID[:12], "generated", '{"plugins": []}'))
    db.commit()
    db.close()
    s = Store(path)
    assert s.get_network(NID).masquerade == {}
    s.add_network(network(NID2, masquerade={"bridge": "b", "subnets": ["10.6.0.0/16"]}))
    assert s.get_network(NID2).masquerade["subnets"] == ["10.6.0.0/16"]


def test_networks_list_in_insertion_order_and_delete(store):
    assert store.networks() == []
    ids = [f"{i:02x}" * 32 for i in range(10)]
    for nid in reversed(ids):
        store.add_network(network(nid))
    assert [n.id for n in store.networks()] == list(reversed(ids))
    store.delete_network(ids[3])
    assert store.get_network(ids[3]) is None and len(store.networks()) == 9
    store.delete_network(ids[3])  # idempotent


def test_duplicate_network_refused_and_rolled_back(store):
    store.add_network(network())
    with pytest.raises(Exception):
        store.add_network(network())
    assert len(store.networks()) == 1
    store.add_network(network(NID2))  # the connection is usable after the failure
    assert len(store.networks()) == 2


def test_endpoint_round_trip(store):
    e = endpoint(cni_args=[("IP", "10.5.0.2"), ("MAC", "02:42:0a:05:00:02")],
                 cap_args={"portMappings": [{"hostPort": 8080, "containerPort": 80,
                                             "protocol": "tcp"}]})
    store.add_endpoint(e)
    got = store.get_endpoint(EID)
    assert got == e
    assert got.cni_args == [("IP", "10.5.0.2"), ("MAC", "02:42:0a:05:00:02")]
    assert got.result is None and got.mac == ""
    assert store.get_endpoint(EID2) is None


def test_endpoint_update(store):
    e = endpoint()
    store.add_endpoint(e)
    e.state, e.result, e.mac = "ready", RESULT, "02:42:0a:05:00:02"
    e.cap_args = {"portMappings": []}
    store.update_endpoint(e)
    got = store.get_endpoint(EID)
    assert got.state == "ready" and got.result == RESULT and got.mac == "02:42:0a:05:00:02"
    assert got.cap_args == {"portMappings": []}
    e.state, e.result = "deleting", None
    store.update_endpoint(e)
    got = store.get_endpoint(EID)
    assert got.state == "deleting" and got.result is None


def test_endpoints_by_network_and_delete(store):
    store.add_endpoint(endpoint(EID, NID))
    store.add_endpoint(endpoint(EID2, NID2))
    third = "c3" * 32
    store.add_endpoint(endpoint(third, NID))
    assert [e.id for e in store.endpoints()] == [EID, EID2, third]
    assert [e.id for e in store.endpoints(NID)] == [EID, third]
    assert [e.id for e in store.endpoints(NID2)] == [EID2]
    assert store.endpoints("0" * 64) == []
    store.delete_endpoint(EID)
    assert [e.id for e in store.endpoints(NID)] == [third]
    store.delete_endpoint(EID)


def test_pool_round_trip(store):
    data = {"subnet": "10.60.0.0/16", "range": {"subnet": "10.60.0.0/16"}, "base": {},
            "cni_network": "", "v6": False}
    store.add_pool("pycni:abc", data)
    assert store.get_pool("pycni:abc") == data
    assert store.get_pool("pycni:nope") is None
    data["gateway"] = "10.60.0.1"
    store.add_pool("pycni:abc", data)  # replace
    assert store.get_pool("pycni:abc")["gateway"] == "10.60.0.1"
    store.add_pool("pycni:def", {"subnet": "fd60::/64"})
    assert set(store.pools()) == {"pycni:abc", "pycni:def"}


def test_addresses_round_trip(store):
    store.add_pool("p1", {"subnet": "10.60.0.0/16"})
    store.add_pool("p2", {"subnet": "10.61.0.0/16"})
    store.add_address("p1", "10.60.0.1", "gateway")
    store.add_address("p1", "10.60.0.2", "pycni-ipam-1")
    store.add_address("p2", "10.61.0.2", "pycni-ipam-2")
    assert store.get_address("p1", "10.60.0.2") == "pycni-ipam-1"
    assert store.get_address("p1", "10.61.0.2") is None
    assert store.addresses("p1") == {"10.60.0.1": "gateway", "10.60.0.2": "pycni-ipam-1"}
    store.add_address("p1", "10.60.0.2", "pycni-ipam-3")  # replace
    assert store.get_address("p1", "10.60.0.2") == "pycni-ipam-3"
    store.delete_address("p1", "10.60.0.2")
    assert store.addresses("p1") == {"10.60.0.1": "gateway"}
    store.delete_address("p1", "10.60.0.2")


def test_delete_pool_drops_its_addresses(store):
    store.add_pool("p1", {"subnet": "10.60.0.0/16"})
    store.add_pool("p2", {"subnet": "10.61.0.0/16"})
    store.add_address("p1", "10.60.0.2", "h1")
    store.add_address("p2", "10.61.0.2", "h2")
    store.delete_pool("p1")
    assert store.get_pool("p1") is None and store.addresses("p1") == {}
    assert store.addresses("p2") == {"10.61.0.2": "h2"}
    assert store.addresses("unknown") == {}


def test_persists_across_instances(tmp_path):
    path = str(tmp_path / "pycni.db")
    s = Store(path)
    s.add_network(network())
    s.add_endpoint(endpoint(result=RESULT))
    s.add_pool("p", {"x": 1})
    s.add_address("p", "10.0.0.2", "h")
    s2 = Store(path)
    assert s2.get_network(NID).conflist == CONF
    assert s2.get_endpoint(EID).result == RESULT
    assert s2.get_pool("p") == {"x": 1} and s2.get_address("p", "10.0.0.2") == "h"


def test_threads_share_the_database(store):
    errors = []

    def worker(i):
        try:
            store.add_address("p", f"10.0.0.{i}", f"h{i}")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(1, 9)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(store.addresses("p")) == 8
