"""store.py: SQLite round trips in a temporary directory."""

import os
import stat
import threading
import time

import pytest

from cnm_bridge.network import netspec
from cnm_bridge.network.options import plan_network
from cnm_bridge.state.records import Endpoint, Pool
from cnm_bridge.state.store import Store, StoreUnusable

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


def network(nid=NID, internal=False, ipam="docker", owned_links=(), ipam_dir=""):
    conf = dict(CONF, name="pycni-" + nid[:12])
    return netspec.make_spec(nid, plan_network({}), conf, [], [], internal, False, ipam,
                             owned_links=owned_links, ipam_dir=ipam_dir)


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
    s.put_pool(Pool("p", "10.0.0.0/8"))
    assert s.get_pool("p") == Pool("p", "10.0.0.0/8")


def test_network_round_trip(store):
    n = network(internal=True, ipam="pycni", owned_links=["pc-3f3f3f3f3f3f"],
                ipam_dir="/var/lib/pycni/ipam")
    store.add_network(n)
    assert store.get_network(NID) == n
    assert store.get_network(NID2) is None


def test_network_defaults(store):
    store.add_network(network())
    got = store.get_network(NID)
    assert got.internal is False and got.ipam == "docker" and got.owned_links == ()
    assert got.conflist["plugins"][0]["bridge"] == "pc-3f3f3f3f3f3f"


OLD_NETWORKS = """CREATE TABLE networks (id TEXT PRIMARY KEY, cni_name TEXT NOT NULL,
    mode TEXT NOT NULL, conflist TEXT NOT NULL, internal INTEGER NOT NULL DEFAULT 0,
    ipam TEXT NOT NULL DEFAULT 'docker', owned_links TEXT NOT NULL DEFAULT '[]',
    ipam_dir TEXT NOT NULL DEFAULT '', isolated_bridge TEXT NOT NULL DEFAULT '',
    ipv6 INTEGER NOT NULL DEFAULT 0, masquerade TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL DEFAULT (julianday('now')));
CREATE TABLE endpoints (id TEXT PRIMARY KEY, network_id TEXT NOT NULL, state TEXT NOT NULL,
    netns TEXT NOT NULL, tmp_ifname TEXT NOT NULL, cni_args TEXT NOT NULL DEFAULT '[]',
    cap_args TEXT NOT NULL DEFAULT '{}', result TEXT, mac TEXT NOT NULL DEFAULT '',
    boot_id TEXT NOT NULL DEFAULT '', ports TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL DEFAULT (julianday('now')));
CREATE TABLE ipam_pools (id TEXT PRIMARY KEY, data TEXT NOT NULL);"""


def test_store_of_an_older_release_is_read(tmp_path):
    """The first release's rows: a network's fields in columns, a generated list with the
    firewall plugin and an enable_icc=false rule in CNI-ADMIN; endpoints without mode."""
    import json
    import sqlite3
    from cnm_bridge.host import hostrules
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.executescript(OLD_NETWORKS)
    old_conf = dict(CONF, plugins=CONF["plugins"] + [{"type": "firewall"}])
    db.execute("INSERT INTO networks (id, cni_name, mode, conflist, isolated_bridge, "
               "masquerade, owned_links) VALUES (?,?,?,?,?,?,?)",
               (NID, "pycni-" + NID[:12], "generated", json.dumps(old_conf), "pc-3f3f3f3f3f3f",
                json.dumps({"bridge": "pc-3f3f3f3f3f3f", "subnets": ["10.5.0.0/16"]}),
                '["pc-3f3f3f3f3f3f"]'))
    db.execute("INSERT INTO endpoints (id, network_id, state, netns, tmp_ifname, result) "
               "VALUES (?,?,?,?,?,?)", (EID, NID, "ready", "pycni-" + EID, "pyc" + EID[:12],
                                        json.dumps(RESULT)))
    db.execute("INSERT INTO ipam_pools VALUES (?,?)", ("p", json.dumps(
        {"subnet": "10.6.0.0/16", "range": {"subnet": "10.6.0.0/16"}, "base": {"dataDir": "/d"},
         "cni_network": "", "v6": False, "type": "host-local", "gateway": "10.6.0.1"})))
    db.commit()
    db.close()
    with pytest.raises(StoreUnusable, match="first release"):
        Store(path)  # the store derives nothing: it is given how
    s = Store(path, legacy=netspec.legacy)
    spec = s.get_network(NID)
    assert spec.cni_name == "pycni-" + NID[:12] and spec.masquerade is True
    assert spec.subnets == ("10.5.0.0/16",) and spec.owned_links == ("pc-3f3f3f3f3f3f",)
    assert [p["type"] for p in spec.endpoint_list["plugins"]] == ["bridge", "firewall"]
    assert spec.forward is False and spec.isolate is False  # its firewall plugin forwards
    rules = [" ".join(r.args) for r in hostrules.network_rules(spec)]
    assert any("MASQUERADE" in r for r in rules)
    assert any("pycni enable_icc=false 3f3f3f3f3f3f" in r for r in rules)
    ep = s.get_endpoint(EID)
    assert (ep.mode, ep.ifname, ep.result) == ("handoff", "eth0", RESULT)
    pool = s.get_pool("p")
    assert (pool.kind, pool.ipam, pool.gateway) == ("host-local", {"dataDir": "/d"}, "10.6.0.1")
    s.add_network(network(NID2))  # the new table takes new rows
    assert [n.id for n in s.networks()] == [NID, NID2]
    Store(path)  # opening again changes nothing, and needs no converter
    assert s.get_network(NID) == spec


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
    e.mode, e.ifname, e.sandbox_key = "direct", "eth1", "/var/run/docker/netns/x"
    store.update_endpoint(e)
    got = store.get_endpoint(EID)
    assert got == e
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


def test_endpoints_holding_an_address(store):
    """Join's question: who on these networks holds one of these IPs (any prefix)."""
    v4, v6, third = endpoint(EID, NID), endpoint(EID2, NID2), endpoint("c3" * 32, "0" * 64)
    v4.addresses = ["10.50.0.5/24", "fd50::5/64"]
    v6.addresses = ["fd50::5/64"]
    third.addresses = ["10.50.0.5/24"]
    for e in (v4, v6, third):
        store.add_endpoint(e)
    assert [e.id for e in store.endpoints_holding([NID, NID2], {"10.50.0.5"})] == [EID]
    assert [e.id for e in store.endpoints_holding([NID, NID2], {"fd50::5"})] == [EID, EID2]
    assert store.endpoints_holding([NID, NID2], {"10.50.0.50"}) == []
    assert store.endpoints_holding([], {"10.50.0.5"}) == []


def test_pool_round_trip(store):
    pool = Pool("pycni:abc", "10.60.0.0/16", range={"subnet": "10.60.0.0/16"})
    store.put_pool(pool)
    assert store.get_pool("pycni:abc") == pool
    assert store.get_pool("pycni:nope") is None
    pool.gateway = "10.60.0.1"
    store.put_pool(pool)  # replace
    assert store.get_pool("pycni:abc").gateway == "10.60.0.1"
    store.put_pool(Pool("pycni:def", "fd60::/64", v6=True, kind="static", cni_network="n",
                        ipam={"type": "static"}))
    assert {p.id for p in store.pools()} == {"pycni:abc", "pycni:def"}
    assert store.get_pool("pycni:def").ipam == {"type": "static"}


def test_addresses_round_trip(store):
    store.put_pool(Pool("p1", "10.60.0.0/16"))
    store.put_pool(Pool("p2", "10.61.0.0/16"))
    store.add_address("p1", "10.60.0.1", "gateway")
    store.add_address("p1", "10.60.0.2", "pycni-ipam-1")
    store.add_address("p2", "10.61.0.2", "pycni-ipam-2")
    assert store.get_address("p1", "10.60.0.2") == "pycni-ipam-1"
    assert store.get_address("p1", "10.61.0.2") is None
    assert store.addresses("p1") == {"10.60.0.1": "gateway", "10.60.0.2": "pycni-ipam-1"}
    assert store.handles() == {"gateway", "pycni-ipam-1", "pycni-ipam-2"}
    store.add_address("p1", "10.60.0.2", "pycni-ipam-3")  # replace
    assert store.get_address("p1", "10.60.0.2") == "pycni-ipam-3"
    store.delete_address("p1", "10.60.0.2")
    assert store.addresses("p1") == {"10.60.0.1": "gateway"}
    store.delete_address("p1", "10.60.0.2")


def test_delete_pool_drops_its_addresses(store):
    store.put_pool(Pool("p1", "10.60.0.0/16"))
    store.put_pool(Pool("p2", "10.61.0.0/16"))
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
    s.put_pool(Pool("p", "10.0.0.0/8"))
    s.add_address("p", "10.0.0.2", "h")
    s2 = Store(path)
    assert s2.get_network(NID) == network()
    assert s2.get_endpoint(EID).result == RESULT
    assert s2.get_pool("p").subnet == "10.0.0.0/8" and s2.get_address("p", "10.0.0.2") == "h"


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


def test_many_threads_and_a_failed_transaction(store, tmp_path):
    """gthread's 16 threads write at once; a refused write (rolled back) leaves the store
    usable from every thread; another process's connection still sees each commit."""
    store.add_network(network())
    errors = []

    def worker(i):
        try:
            for j in range(20):
                store.add_address("p", f"10.{i}.0.{j}", f"h{i}-{j}")
            with pytest.raises(Exception):
                store.add_network(network())  # the same id: refused, rolled back
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert errors == [] and not any(th.is_alive() for th in threads)
    assert len(store.addresses("p")) == 16 * 20
    other = Store(store.path)  # as `pycni gc` opens it
    assert len(other.addresses("p")) == 16 * 20 and other.get_network(NID) == network()


def test_update_of_a_removed_endpoint_is_an_error(store):
    """A teardown removed the row meanwhile: the writer must not think it recorded."""
    from cnm_bridge.errors import NotFound
    e = endpoint()
    store.add_endpoint(e)
    store.delete_endpoint(e.id)
    with pytest.raises(NotFound, match="removed meanwhile"):
        store.update_endpoint(e)


def test_an_endpoints_age_is_its_last_state_change(store):
    e = endpoint()
    store.add_endpoint(e)
    store._db.execute("UPDATE endpoints SET created=created-1, changed=changed-1")
    first = store.get_endpoint(e.id)
    assert abs(first.changed_unix - first.created_unix) < 1
    e.mac = "02:42:0a:05:00:09"
    store.update_endpoint(e)  # no state change: the age stands
    assert store.get_endpoint(e.id).changed_unix == first.changed_unix
    e.state = "ready"
    store.update_endpoint(e)
    assert time.time() - store.get_endpoint(e.id).changed_unix < 60


def test_an_older_store_gets_state_change_times(tmp_path):
    import sqlite3
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.executescript(OLD_NETWORKS)
    db.execute("INSERT INTO endpoints (id, network_id, state, netns, tmp_ifname, created) "
               "VALUES (?,?,?,?,?,julianday('now')-1)", (EID, NID, "ready", "n", "t"))
    db.commit()
    db.close()
    ep = Store(path, legacy=netspec.legacy).get_endpoint(EID)
    assert ep.changed_unix == ep.created_unix < time.time() - 3600


def test_networks_and_pools_are_on_disk_when_recorded(store):
    """A power cut must not lose what Docker never sends again (CreateNetwork) or keeps
    only by id (RequestPool): those commits sync the WAL (synchronous=FULL); the
    endpoints' many writes keep NORMAL, whose last commits a power cut may lose."""
    seen = []
    store._db.set_trace_callback(seen.append)

    def level_at(statement_start):
        level = "NORMAL"
        for s in seen:
            if s.upper().startswith("PRAGMA SYNCHRONOUS="):
                level = s.split("=", 1)[1].strip().upper()
            if s.startswith(statement_start):
                return level
        raise AssertionError(f"no {statement_start} among {seen}")
    store.add_network(network())
    store.put_pool(Pool(id="pycni:p", subnet="10.6.0.0/16"))
    store.add_endpoint(endpoint())
    assert level_at("INSERT INTO networks") == "FULL"
    assert level_at("INSERT OR REPLACE INTO ipam_pools") == "FULL"
    assert level_at("INSERT INTO endpoints") == "NORMAL"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL again


def garbage(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(bytes(range(256)) * 16)


def test_a_damaged_store_is_named_with_the_fix(tmp_path):
    from cnm_bridge.state.store import StoreUnusable
    path = str(tmp_path / "state" / "pycni.db")
    garbage(path)
    with pytest.raises(StoreUnusable) as e:
        Store(path)
    msg = str(e.value)
    assert path in msg and "damaged" in msg and f"mv {path} {path}.damaged" in msg
    assert "forgets" in msg and "\n" not in msg


def test_an_unwritable_store_is_named(tmp_path, monkeypatch):
    import errno
    from cnm_bridge.state.store import StoreUnusable
    path = str(tmp_path / "state" / "pycni.db")

    def read_only(*a, **kw):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(StoreUnusable, match=r"the store .*: it cannot be opened for writing \(Read-only file system\)"):
        Store(path)
