"""pycni's own record of networks, endpoints and IPAM pools (SQLite, WAL).

Docker never replays CreateNetwork after a restart, so this store is the only
place a network's spec survives.

One connection per process, one transaction at a time through a lock. A
connection per thread (gthread's 16 and pycni's own) kept a page cache each:
the worker grew by megabytes as the store grew, and threads contending for
SQLite's write lock slept in its busy handler instead of waking when it was free.
"""

import json
import os
import sqlite3
import threading

from ..errors import NotFound
from .records import Endpoint, NetworkSpec, Pool, julianday_unix

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    spec TEXT,
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
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ipam_addresses (
    pool_id TEXT NOT NULL,
    address TEXT NOT NULL,
    handle TEXT NOT NULL,
    PRIMARY KEY (pool_id, address)
);
"""
# Columns added after the first release: (table, column, definition). Older stores
# gain them, with these defaults, when opened.
ADDED_COLUMNS = [
    ("endpoints", "ifname", "TEXT NOT NULL DEFAULT 'eth0'"),
    ("endpoints", "mode", "TEXT NOT NULL DEFAULT 'handoff'"),
    ("endpoints", "addresses", "TEXT NOT NULL DEFAULT '[]'"),
    ("endpoints", "mac_given", "INTEGER NOT NULL DEFAULT 0"),
    ("endpoints", "sandbox_key", "TEXT NOT NULL DEFAULT ''"),
    # When the state last changed (julianday): gc judges an endpoint's age by it, not
    # by CreateEndpoint's time; older rows take their creation time.
    ("endpoints", "changed", "REAL NOT NULL DEFAULT 0"),
]


class StoreUnusable(Exception):
    """The store cannot be opened or written: `reason` says why, `fix` what to do."""

    def __init__(self, path, reason, fix):
        super().__init__(f"the store {path}: {reason}; {fix}")
        self.path, self.reason, self.fix = path, reason, fix


DAMAGED = ("not a database", "malformed", "corrupt")


def unusable(path, error):
    """StoreUnusable for an error met opening or writing the store."""
    text = getattr(error, "strerror", None) or str(error)
    if any(word in str(error) for word in DAMAGED):
        return StoreUnusable(
            path, f"it is damaged ({text})",
            f"move it aside (mv {path} {path}.damaged, and its -wal and -shm files) and "
            f"start pycni again: its new store is empty, so pycni forgets the networks it "
            f"made (docker network rm and create them again) and their endpoints (restart "
            f"their containers)")
    return StoreUnusable(
        path, f"it cannot be opened for writing ({text})",
        "pycni needs its state dir writable: remount its file system read-write, free "
        "space on it, or give --state-dir (PYCNI_STATE_DIR) on a writable one")


class Store:
    def __init__(self, path, legacy=None, busy_timeout=30.0):
        """Raises StoreUnusable, naming the file and the fix, if it cannot be used.

        `legacy` turns a network row of the first release (a column per field) into a
        NetworkSpec (`netspec.legacy`): the store keeps records, the network logic
        derives them. A first-release store opened without it is refused."""
        self.path = path
        self._legacy = legacy
        self._busy_timeout = busy_timeout
        try:
            self._open()
        except (sqlite3.DatabaseError, OSError) as e:
            raise unusable(path, e) from None

    def verify(self):
        """SQLite's quick_check of every page: a damage the open did not meet."""
        try:
            with self._conn() as db:
                found = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
        except (sqlite3.DatabaseError, OSError) as e:
            raise unusable(self.path, e) from None
        if found != ["ok"]:
            raise unusable(self.path, sqlite3.DatabaseError(
                "database disk image is malformed: " + "; ".join(found[:3])))

    def _open(self):
        path = self.path
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, mode=0o700, exist_ok=True)
        # Create the file 0600 before SQLite opens it: SQLite gives the -wal and
        # -shm files the database file's mode, and creates them at once (WAL).
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self._lock = threading.Lock()
        self._db = self._connect()
        self._db.executescript(SCHEMA)
        self._migrate()
        for suffix in ("-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.chmod(path + suffix, 0o600)

    def _migrate(self):
        db = self._db
        have = {r["name"] for r in db.execute("PRAGMA table_info(networks)")}
        if "conflist" in have:
            self._rewrite_legacy_networks()
        for table, column, definition in ADDED_COLUMNS:
            have = {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        db.execute("UPDATE endpoints SET changed=created WHERE changed=0")

    def _rewrite_legacy_networks(self):
        """The first release's networks table (a column per field) -> one spec per row."""
        legacy = self._legacy
        if legacy is None:
            raise StoreUnusable(self.path, "it was written by pycni's first release",
                                "start `pycni serve` once: it upgrades the store")
        with self._conn() as db:
            rows = db.execute("SELECT * FROM networks").fetchall()
            specs = []
            for row in rows:
                old = {k: row[k] for k in row.keys()}
                for key, empty in (("conflist", "{}"), ("owned_links", "[]"),
                                   ("masquerade", "{}")):
                    old[key] = json.loads(old.get(key) or empty)
                specs.append((legacy(old), row["created"]))
            db.execute("ALTER TABLE networks RENAME TO networks_legacy")
            db.execute("CREATE TABLE networks (id TEXT PRIMARY KEY, spec TEXT, "
                       "created REAL NOT NULL DEFAULT (julianday('now')))")
            for spec, created in specs:
                db.execute("INSERT INTO networks (id, spec, created) VALUES (?,?,?)",
                           (spec.id, json.dumps(spec.to_json()), created))
            db.execute("DROP TABLE networks_legacy")

    def _conn(self, durable=False):
        return _Tx(self._db, self._lock, durable)

    def _connect(self):
        # Other processes (`pycni gc`, a second server on the same dir) still share the
        # file: the busy timeout covers them.
        db = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                             check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # WAL with synchronous=NORMAL is crash-safe (no corruption); a power cut may
        # lose the last commits, which reconciliation then redoes for endpoints.
        # Networks and pools cannot be redone (Docker never sends CreateNetwork again):
        # their commits are durable (_Tx durable, synchronous=FULL).
        db.execute("PRAGMA synchronous=NORMAL")
        db.row_factory = sqlite3.Row
        return db

    # -- networks -------------------------------------------------------------

    def add_network(self, spec):
        with self._conn(durable=True) as db:
            db.execute("INSERT INTO networks (id, spec) VALUES (?,?)",
                       (spec.id, json.dumps(spec.to_json())))

    def get_network(self, network_id):
        with self._conn() as db:
            row = db.execute("SELECT * FROM networks WHERE id=?", (network_id,)).fetchone()
        return _network(row) if row else None

    def networks(self):
        with self._conn() as db:
            rows = db.execute("SELECT * FROM networks ORDER BY created, rowid").fetchall()
        return [_network(r) for r in rows]

    def network_created(self, network_id):
        """When the network was recorded (seconds since the epoch), or None."""
        with self._conn() as db:
            row = db.execute("SELECT created FROM networks WHERE id=?", (network_id,)).fetchone()
        return julianday_unix(row["created"]) if row else None

    def delete_network(self, network_id):
        with self._conn() as db:
            db.execute("DELETE FROM networks WHERE id=?", (network_id,))

    # -- endpoints ------------------------------------------------------------

    def add_endpoint(self, e):
        row = e.to_row()
        with self._conn() as db:
            db.execute(f"INSERT INTO endpoints ({', '.join(row)}, changed)"
                       f" VALUES ({', '.join(':' + c for c in row)}, julianday('now'))", row)

    def update_endpoint(self, e):
        """Raises NotFound if the row is gone: a teardown removed it meanwhile, and a
        writer that went on would answer Docker for an endpoint nothing holds."""
        with self._conn() as db:
            # SET's expressions read the row as it was: `state=:state` is the old state.
            row = e.to_row()
            sets = ", ".join(f"{c}=:{c}" for c in row if c != "id")
            cur = db.execute(
                f"UPDATE endpoints SET {sets},"
                f" changed=CASE WHEN state=:state THEN changed ELSE julianday('now') END"
                f" WHERE id=:id", row)
            if cur.rowcount == 0:
                raise NotFound(f"endpoint {e.id[:12]} was removed meanwhile (a teardown: "
                               f"`docker network rm`, or `pycni gc`); start the container "
                               f"again")

    def get_endpoint(self, endpoint_id):
        with self._conn() as db:
            row = db.execute("SELECT * FROM endpoints WHERE id=?", (endpoint_id,)).fetchone()
        return Endpoint.from_row(row) if row else None

    def endpoints(self, network_id=None):
        with self._conn() as db:
            if network_id is None:
                rows = db.execute("SELECT * FROM endpoints ORDER BY created, rowid").fetchall()
            else:
                rows = db.execute("SELECT * FROM endpoints WHERE network_id=?"
                                  " ORDER BY created, rowid", (network_id,)).fetchall()
        return [Endpoint.from_row(r) for r in rows]

    def endpoints_holding(self, network_ids, ips):
        """The endpoints of these networks that hold one of these addresses (bare IPs; a
        row's are compared without their prefix length). Only the deciding columns are
        read for the rest: Join asks this of networks with many containers."""
        network_ids, ips = list(network_ids), set(ips)
        with self._conn() as db:
            rows = db.execute(f"SELECT id, addresses FROM endpoints WHERE network_id IN"
                              f" ({','.join('?' * len(network_ids))}) ORDER BY created, rowid",
                              network_ids).fetchall()
        held = [r["id"] for r in rows
                if ips & {a.split("/")[0] for a in json.loads(r["addresses"])}]
        return [e for e in map(self.get_endpoint, held) if e is not None]

    def delete_endpoint(self, endpoint_id):
        with self._conn() as db:
            db.execute("DELETE FROM endpoints WHERE id=?", (endpoint_id,))

    # -- what gc remembers between its passes -------------------------------------

    def get_meta(self, key):
        """A JSON value kept under `key`, or None."""
        with self._conn() as db:
            row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row["value"]) if row else None

    def put_meta(self, key, value):
        with self._conn() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)",
                       (key, json.dumps(value)))

    # -- IPAM -----------------------------------------------------------------

    def put_pool(self, pool):
        with self._conn(durable=True) as db:
            db.execute("INSERT OR REPLACE INTO ipam_pools (id, data) VALUES (?,?)",
                       (pool.id, json.dumps(pool.to_json())))

    def get_pool(self, pool_id):
        with self._conn() as db:
            row = db.execute("SELECT data FROM ipam_pools WHERE id=?", (pool_id,)).fetchone()
        return Pool.from_json(pool_id, json.loads(row["data"])) if row else None

    def pools(self):
        with self._conn() as db:
            rows = db.execute("SELECT id, data FROM ipam_pools").fetchall()
        return [Pool.from_json(r["id"], json.loads(r["data"])) for r in rows]

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

    def handles(self):
        """Every IPAM handle held (CNI container ids of the IPAM driver's attachments)."""
        with self._conn() as db:
            rows = db.execute("SELECT handle FROM ipam_addresses").fetchall()
        return {r["handle"] for r in rows}

    def delete_address(self, pool_id, address):
        with self._conn() as db:
            db.execute("DELETE FROM ipam_addresses WHERE pool_id=? AND address=?",
                       (pool_id, address))


class _Tx:
    """`with store._conn() as db`: one transaction, committed or rolled back, while this
    process's other threads wait on the lock."""

    def __init__(self, db, lock, durable=False):
        self.db = db
        self.lock = lock
        self.durable = durable

    def __enter__(self):
        self.lock.acquire()
        try:
            if self.durable:
                # Set outside a transaction (SQLite refuses it inside one): this commit
                # fsyncs the WAL before it returns.
                self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._normal()
            self.lock.release()
            raise
        return self.db

    def __exit__(self, exc_type, exc, tb):
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._normal()
            self.lock.release()
        return False

    def _normal(self):
        if self.durable:
            self.db.execute("PRAGMA synchronous=NORMAL")


def _network(row):
    return NetworkSpec.from_json(json.loads(row["spec"]))
