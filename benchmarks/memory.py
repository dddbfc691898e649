"""The pycni server's memory as the host pays it: RSS and PSS of gunicorn's master and
worker, just started and after a load of calls, median of several fresh starts.

    python3 benchmarks/memory.py [--starts 5] [--requests 2000] [--parallel 50]

Needs no Docker and changes nothing on the host: each start is a server of this
checkout on private temp dirs (`pycni serve --socket/--state-dir/--conf-dir/--bin-dir`,
reconciliation off), sent only calls that read (Plugin.Activate, the capabilities,
the default address spaces, DiscoverNew, EndpointOperInfo of an endpoint nobody has),
one after another and 50 at a time. The server is stopped by its pid and its dir
removed. Run as root (the state dir's safety checks expect root's ownership).

PSS splits a page shared by the two processes between them, so master + worker PSS is
what the host pays; summed RSS counts shared pages twice. "after" is read once the
server has been idle past the worker's heap trim (memory.IdleTrimmer, 2 s).
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CALLS = [
    ("/Plugin.Activate", {}),
    ("/NetworkDriver.GetCapabilities", {}),
    ("/IpamDriver.GetCapabilities", {}),
    ("/IpamDriver.GetDefaultAddressSpaces", {}),
    ("/NetworkDriver.DiscoverNew", {"DiscoveryType": 1, "DiscoveryData": {}}),
    # An endpoint nobody has: a store read and the error path (404-style answer).
    ("/NetworkDriver.EndpointOperInfo", {"NetworkID": "a" * 64, "EndpointID": "b" * 64}),
]


def post(path, sock_path, body, timeout=10):
    """-> HTTP status of one call over the unix socket (as dockerd sends it: HTTP/1.1)."""
    data = json.dumps(body).encode()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: pycni\r\nContent-Length: {len(data)}\r\n"
                  f"Connection: close\r\n\r\n".encode() + data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def memory_kb(pid):
    """{"Rss": kB, "Pss": kB} of one process."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key] = int(value.split()[0])
    return out


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(c) for c in out.split()]


def snapshot(master):
    """{"master": {...}, "worker": {...}, "total": {...}} in MB."""
    workers = children(master)
    if len(workers) != 1:
        raise RuntimeError(f"expected one worker under {master}, found {workers}")
    rows = {"master": memory_kb(master), "worker": memory_kb(workers[0])}
    rows["total"] = {k: rows["master"][k] + rows["worker"][k] for k in ("Rss", "Pss")}
    return {name: {k: v / 1024 for k, v in row.items()} for name, row in rows.items()}


def wait_serving(sock_path, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if post("/Plugin.Activate", sock_path, {}, timeout=2) == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not answer")


def load(sock_path, requests, parallel):
    """`requests` calls one after another, then as many again `parallel` at a time."""
    def call(i):
        path, body = CALLS[i % len(CALLS)]
        return post(path, sock_path, body)

    statuses = [call(i) for i in range(requests)]
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        statuses += pool.map(call, range(requests))
    failed = [s for s in statuses if s >= 500]
    if failed:
        raise RuntimeError(f"{len(failed)} calls failed: {sorted(set(failed))}")


def one_start(args):
    tmp = tempfile.mkdtemp(prefix="pycni-mem-")
    sock_path = os.path.join(tmp, "pycni.sock")
    for d in ("conf", "bin"):
        os.makedirs(os.path.join(tmp, d))
    env = dict(os.environ, PYCNI_RECONCILE_INTERVAL="0",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [args.python, *args.python_flag, "-m", "cnm_bridge.cli", "serve",
           "--socket", sock_path, "--state-dir", os.path.join(tmp, "state"),
           "--conf-dir", os.path.join(tmp, "conf"), "--bin-dir", os.path.join(tmp, "bin"),
           "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "log"), "w"))
    try:
        wait_serving(sock_path, proc)
        time.sleep(args.settle)
        fresh = snapshot(proc.pid)
        load(sock_path, args.requests, args.parallel)
        time.sleep(args.settle + 2.5)  # past the idle trim
        after = snapshot(proc.pid)
        return fresh, after
    except Exception:
        with open(os.path.join(tmp, "log")) as f:
            sys.stderr.write(f.read()[-2000:])
        raise
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--starts", type=int, default=5, help="fresh servers; medians over them")
    ap.add_argument("--requests", type=int, default=2000,
                    help="calls one at a time, then as many again in parallel")
    ap.add_argument("--parallel", type=int, default=50)
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds to wait before reading memory")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--python-flag", action="append", default=[],
                    help="an interpreter flag for the server, e.g. --python-flag=-X --python-flag=importtime")
    ap.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = ap.parse_args()
    runs = [one_start(args) for _ in range(args.starts)]

    def median(phase, proc, key):
        return statistics.median(r[phase][proc][key] for r in runs)

    table = {f"{phase} {proc}": {k: round(median(i, proc, k), 1) for k in ("Rss", "Pss")}
             for i, phase in enumerate(("fresh", "after")) for proc in ("master", "worker", "total")}
    if args.json:
        print(json.dumps(table))
        return
    print(f"pycni memory, MB, median of {args.starts} starts; after = {args.requests} calls "
          f"one at a time + {args.requests} {args.parallel} at a time, then idle")
    print()
    print("| | master RSS | master PSS | worker RSS | worker PSS | total RSS | total PSS |")
    print("|---|---|---|---|---|---|---|")
    for phase in ("fresh", "after"):
        cells = " | ".join(f"{table[f'{phase} {p}'][k]:.1f}"
                           for p in ("master", "worker", "total") for k in ("Rss", "Pss"))
        print(f"| {phase} | {cells} |")


if __name__ == "__main__":
    main()
