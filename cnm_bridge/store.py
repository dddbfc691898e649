"""pycni's own record of networks and endpoints (SQLite, WAL).

Docker never replays CreateNetwork after a restart, so this store is the only
place a network's conflist survives. Each thread gets its own connection.
"""

import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    cni_name TEXT NOT NULL,
    mode TEXT NOT NULL,
    conflist TEXT NOT NULL,
    internal INTEGER NOT NULL DEFAULT 0,
    ipam TEXT NOT NULL DEFAULT 'docker',
    owned_links TEXT NOT NULL DEFAULT '[]',
    ipam_dir TEXT NOT NULL DEFAULT '',
    isolated_bridge TEXT NOT NULL DEFAULT '',
    ipv6 INTEGER NOT NULL DEFAULT 0,
    masquerade TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL DEFAULT (julianday('now'))
);
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL,
    state TEXT NOT NULL,
    netns TEXT NOT NULL,
    tmp_ifname TEXT NOT NULL,
    cni_args TEXT NOT NULL DEFAULT '[]',
    cap_args TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    mac TEXT NOT NULL DEFAULT '',
    boot_id TEXT NOT NULL DEFAULT '',
    ports TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL DEFAULT (julianday('now'))
);
CREATE INDEX IF NOT EXISTS endpoints_network ON endpoints(network_id);
CREATE TABLE IF NOT EXISTS ipam_pools (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ipam_addresses (
    pool_id TEXT NOT NULL,
    address TEXT NOT NULL,
    handle TEXT NOT NULL,
    PRIMARY KEY (pool_id, address)
);
"""


@dataclass
class Network:
    id: str
    cni_name: str
    mode: str
    conflist: dict
    internal: bool = False
    ipam: str = "docker"
    owned_links: list = field(default_factory=list)
    ipam_dir: str = ""
    isolated_bridge: str = ""
    ipv6: bool = False
    masquerade: dict = field(default_factory=dict)  # {"bridge":..., "subnets": [...]} or {}


@dataclass
class Endpoint:
    id: str
    network_id: str
    state: str  # "creating", "ready" or "deleting"
    netns: str
    tmp_ifname: str
    cni_args: list = field(default_factory=list)
    cap_args: dict = field(default_factory=dict)
    result: dict = None
    mac: str = ""
    created_unix: float = field(default=0.0, compare=False)
    boot_id: str = field(default="", compare=False)
    ports: list = field(default_factory=list)


class Store:
    def __init__(self, path):
        self.path = path
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, mode=0o700, exist_ok=True)
        # Create the file 0600 before SQLite opens it: SQLite gives the -wal and
        # -shm files the database file's mode, and creates them at once (WAL).
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self._local = threading.local()
        self._conn().db.executescript(SCHEMA)
        self._migrate()
        for suffix in ("-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.chmod(path + suffix, 0o600)

    def _migrate(self):
        """Columns added after a release: old stores gain them with their defaults."""
        db = self._conn().db
        have = {r["name"] for r in db.execute("PRAGMA table_info(networks)")}
        if "masquerade" not in have:
            db.execute("ALTER TABLE networks ADD COLUMN masquerade TEXT NOT NULL DEFAULT '{}'")

    def _conn(self):
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # WAL with synchronous=NORMAL is crash-safe (no corruption); a power
            # cut may lose the last commit, which reconciliation then redoes.
            db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return _Tx(db)

    # -- networks -------------------------------------------------------------

    def add_network(self, n):
        with self._conn() as db:
            db.execute(
                "INSERT INTO networks (id, cni_name, mode, conflist, internal, ipam, owned_links,"
                " ipam_dir, isolated_bridge, ipv6, masquerade) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (n.id, n.cni_name, n.mode, json.dumps(n.conflist), int(n.internal), n.ipam,
                 json.dumps(n.owned_links), n.ipam_dir, n.isolated_bridge, int(n.ipv6),
                 json.dumps(n.masquerade)))

    def get_network(self, network_id):
        with self._conn() as db:
            row = db.execute("SELECT * FROM networks WHERE id=?", (network_id,)).fetchone()
        return _network(row) if row else None

    def networks(self):
        with self._conn() as db:
            rows = db.execute("SELECT * FROM networks ORDER BY created, rowid").fetchall()
        return [_network(r) for r in rows]

    def delete_network(self, network_id):
        with self._conn() as db:
            db.execute("DELETE FROM networks WHERE id=?", (network_id,))

    # -- endpoints ------------------------------------------------------------

    def add_endpoint(self, e):
        with self._conn() as db:
            db.execute(
                "INSERT INTO endpoints (id, network_id, state, netns, tmp_ifname, cni_args,"
                " cap_args, result, mac, boot_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (e.id, e.network_id, e.state, e.netns, e.tmp_ifname, json.dumps(e.cni_args),
                 json.dumps(e.cap_args), json.dumps(e.result) if e.result else None, e.mac,
                 e.boot_id))

    def update_endpoint(self, e):
        with self._conn() as db:
            db.execute(
                "UPDATE endpoints SET state=?, result=?, mac=?, cap_args=?, ports=? WHERE id=?",
                (e.state, json.dumps(e.result) if e.result else None, e.mac,
                 json.dumps(e.cap_args), json.dumps(e.ports), e.id))

    def get_endpoint(self, endpoint_id):
        with self._conn() as db:
            row = db.execute("SELECT * FROM endpoints WHERE id=?", (endpoint_id,)).fetchone()
        return _endpoint(row) if row else None

    def endpoints(self, network_id=None):
        with self._conn() as db:
            if network_id is None:
                rows = db.execute("SELECT * FROM endpoints ORDER BY created, rowid").fetchall()
            else:
                rows = db.execute("SELECT * FROM endpoints WHERE network_id=?"
                                  " ORDER BY created, rowid", (network_id,)).fetchall()
        return [_endpoint(r) for r in rows]

    def delete_endpoint(self, endpoint_id):
        with self._conn() as db:
            db.execute("DELETE FROM endpoints WHERE id=?", (endpoint_id,))

    # -- IPAM -----------------------------------------------------------------

    def add_pool(self, pool_id, data):
        with self._conn() as db:
            db.execute("INSERT OR REPLACE INTO ipam_pools (id, data) VALUES (?,?)",
                       (pool_id, json.dumps(data)))

    def get_pool(self, pool_id):
        with self._conn() as db:
            row = db.execute("SELECT data FROM ipam_pools WHERE id=?", (pool_id,)).fetchone()
        return json.loads(row["data"]) if row else None

    def pools(self):
        with self._conn() as db:
            rows = db.execute("SELECT id, data FROM ipam_pools").fetchall()
        return {r["id"]: json.loads(r["data"]) for r in rows}

    def delete_pool(self, pool_id):
        with self._conn() as db:
            db.execute("DELETE FROM ipam_addresses WHERE pool_id=?", (pool_id,))
            db.execute("DELETE FROM ipam_pools WHERE id=?", (pool_id,))

    def add_address(self, pool_id, address, handle):
        with self._conn() as db:
            db.execute("INSERT OR REPLACE INTO ipam_addresses (pool_id, address, handle)"
                       " VALUES (?,?,?)", (pool_id, address, handle))

    def get_address(self, pool_id, address):
        with self._conn() as db:
            row = db.execute("SELECT handle FROM ipam_addresses WHERE pool_id=? AND address=?",
                             (pool_id, address)).fetchone()
        return row["handle"] if row else None

    def addresses(self, pool_id):
        with self._conn() as db:
            rows = db.execute("SELECT address, handle FROM ipam_addresses WHERE pool_id=?",
                              (pool_id,)).fetchall()
        return {r["address"]: r["handle"] for r in rows}

    def delete_address(self, pool_id, address):
        with self._conn() as db:
            db.execute("DELETE FROM ipam_addresses WHERE pool_id=? AND address=?",
                       (pool_id, address))


class _Tx:
    """`with store._conn() as db`: one transaction, committed or rolled back."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def _network(row):
    return Network(id=row["id"], cni_name=row["cni_name"], mode=row["mode"],
                   conflist=json.loads(row["conflist"]), internal=bool(row["internal"]),
                   ipam=row["ipam"], owned_links=json.loads(row["owned_links"]),
                   ipam_dir=row["ipam_dir"], isolated_bridge=row["isolated_bridge"],
                   ipv6=bool(row["ipv6"]), masquerade=json.loads(row["masquerade"]))


def _endpoint(row):
    return Endpoint(id=row["id"], network_id=row["network_id"], state=row["state"],
                    netns=row["netns"], tmp_ifname=row["tmp_ifname"],
                    cni_args=[tuple(p) for p in json.loads(row["cni_args"])],
                    cap_args=json.loads(row["cap_args"]),
                    result=json.loads(row["result"]) if row["result"] else None, mac=row["mac"],
                    created_unix=(row["created"] - 2440587.5) * 86400.0,
                    boot_id=row["boot_id"], ports=json.loads(row["ports"]))
