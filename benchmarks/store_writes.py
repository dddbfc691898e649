"""The cost of each kind of store write, synced (synchronous=FULL: networks, pools) and not
(NORMAL: endpoints, addresses), in a temporary store on the disk the state dir lives on.

    python3 benchmarks/store_writes.py [--dir /var/lib] [--runs 200]

Prints a markdown table of medians and p90s in milliseconds; touches nothing but the
temporary store. The figures go in docs/architecture.md (State).
"""

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cnm_bridge.network import netspec  # noqa: E402
from cnm_bridge.state import records, store as store_mod  # noqa: E402
from cnm_bridge.network.options import plan_network  # noqa: E402

CONF = {"cniVersion": "1.0.0", "name": "pycni-x",
        "plugins": [{"type": "bridge", "bridge": "pc-x",
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.5.0.0/16"}]]}}]}


def timed(fn, runs):
    out = []
    for i in range(runs):
        started = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - started) * 1000)
    out.sort()
    return statistics.median(out), out[int(len(out) * 0.9)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--runs", type=int, default=200)
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=opts.dir) as d:
        s = store_mod.Store(os.path.join(d, "pycni.db"))
        spec = lambda i, tag: netspec.make_spec(  # noqa: E731
            f"{tag}{i:060d}", plan_network({}), CONF, [], [], False, False, "docker")
        ep = lambda i: records.Endpoint(id=f"e{i:063d}", network_id="n", state="created")  # noqa: E731
        rows = [
            ("add_network (FULL)", lambda i: s.add_network(spec(i, "full"))),
            ("put_pool (FULL)", lambda i: s.put_pool(records.Pool(f"pycni:{i}", "10.6.0.0/16"))),
            ("add_endpoint (NORMAL)", lambda i: s.add_endpoint(ep(i))),
            ("update_endpoint (NORMAL)", lambda i: s.update_endpoint(
                records.Endpoint(id=f"e{i:063d}", network_id="n", state="ready"))),
            ("add_address (NORMAL)", lambda i: s.add_address("pycni:0", f"10.6.{i // 250}.{i % 250}",
                                                             f"h{i}")),
        ]
        raw = sqlite3.connect(os.path.join(d, "raw.db"), isolation_level=None)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        for level in ("NORMAL", "FULL"):
            rows.append((f"one bare commit, synchronous={level}",
                         lambda i, level=level: _commit(raw, level, i)))
        print(f"store writes in {opts.dir} ({opts.runs} each)\n")
        print("| write | median ms | p90 ms |\n|---|---|---|")
        for name, fn in rows:
            med, p90 = timed(fn, opts.runs)
            print(f"| {name} | {med:.3f} | {p90:.3f} |")


def _commit(db, level, i):
    db.execute(f"PRAGMA synchronous={level}")
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO t (v) VALUES (?)", ("x" * 2000,))
    db.execute("COMMIT")


if __name__ == "__main__":
    main()
