"""pycni against Docker's own bridge driver, cell by cell (an engine and a CNI plugin set),
in one run: prints one markdown table per cell, a summary with a column per cell, and
writes a plot of `docker run` latency against the number of live containers.

    python3 benchmarks/bench.py [--cells 20:1.1,26:1.1,28:1.1,29:1.1,29:1.9,29nft:1.9]
                                [--runs 21] [--scale 500] [--parallel 50]
                                [--scale-setups zero] [--repeat-scale 1] [--skip-scale]
                                [--quick] [--plot benchmarks/latency.png]

A cell is ENGINE:PLUGINS. ENGINE is one scripts/engines.sh knows (20, 26, 28, 29, 29nft:
29 with the nftables firewall backend); PLUGINS is 1.1 (Debian's /usr/lib/cni, 1.1.1) or
1.9 (`scripts/extras.sh path cni-1.9`, installed with `scripts/extras.sh cni-1.9` when
missing). `--engines 20,28` is short for `--cells 20:1.1,28:1.1`. A cell whose engine or
plugin set cannot be had here (no Docker 29 tarball in ../shared/engines) is skipped, with
a line saying why. `--quick` is a smoke run: --runs 7 --scale 100 --parallel 20.

Needs root; engines other than the running one are started with scripts/engines.sh, and
the engine that ran before is started again at the end. Each cell gets its own pycni server
(unique driver name, private dirs, --bin-dir the cell's plugin set), and the bench removes
every container, network, netns and dir it made. Latencies are medians (p10-p90 in
brackets) taken in rounds that interleave the setups, so drift on a noisy machine hits all
of them alike; ratios compare with the same engine's bridge in the same run.

What each cell measures:
- `docker run` on pycni's networks (handoff, i.e. zero config, and -o cni.attach=direct,
  which is a real direct attach only on engines that have the netns at Join: 28 and later)
  and on the bridge; beside them, in the same rounds, the kernel moving a bare veth between
  two netns once: the move a handoff makes on top of the bridge's.
- pycni's own time per CreateEndpoint + Join + DeleteEndpoint, a restart's reachability,
  a burst of parallel `docker run`, the CNI chain alone (through cni_runner and raw).
- Scale: pycni's network(s) and the bridge filled alternately to each point (10, 100,
  N/2, N live each), `docker run` timed there in shuffled rounds, so both drivers see the
  same machine; the phase starts and ends only once the kernel has finished tearing down
  the containers before it. --repeat-scale 2 runs it twice to show how well runs agree.
- pycni's memory, PSS (RSS) of master + worker, just started and after the scale phase's
  containers all went and the worker's idle trim ran.
"""

import argparse
import concurrent.futures
import dataclasses
import ipaddress
import json
import math
import os
import random
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, ROOT)  # this checkout's packages, installed or not
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import support  # noqa: E402
from dockerlib import DOCKER, IMAGE, PycniServer, make_busybox_image, settle  # noqa: E402

from cni_runner import CNIRuntime, RuntimeConf, conflist_from_dict  # noqa: E402
from cnm_bridge.network import conflists  # noqa: E402
from cnm_bridge.host import netns, rtnl  # noqa: E402
from cnm_bridge.network.options import plan_network  # noqa: E402
from cnm_bridge.docker.protocol import parse_create_network  # noqa: E402

BRIDGE = "docker bridge (user-defined)"
ZERO = "pycni, zero config"
DIRECT = "pycni, zero config, -o cni.attach=direct"
CONFLIST = "pycni, conflist (ipMasq + firewall)"
# --scale-setups names -> the pycni setups that join the bridge in the scale phase
SCALE_SETUPS = {"zero": ZERO, "direct": DIRECT, "conflist": CONFLIST}
SHORT = {ZERO: "pycni", DIRECT: "pycni direct", CONFLIST: "pycni conflist", BRIDGE: "bridge"}

DEFAULT_CELLS = "20:1.1,26:1.1,28:1.1,29:1.1,29:1.9,29nft:1.9"
ENGINES = ("20", "26", "28", "29", "29nft")
PLUGIN_SETS = ("1.1", "1.9")
DEBIAN_CNI = "/usr/lib/cni"
QUICK = {"runs": 7, "scale": 100, "parallel": 20}
FULL = {"runs": 21, "scale": 500, "parallel": 50}

DOCKER_NETNS = "/run/docker/netns"
IDLE_ENOUGH = 0.80  # the machine is quiet when two 1 s windows in a row are this idle
QUIET_TIMEOUT = 120


# -- cells ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Cell:
    engine: str   # as scripts/engines.sh names it
    plugins: str  # "1.1" or "1.9"

    @property
    def label(self):
        return f"{self.engine}:{self.plugins}"


def parse_cells(cells=None, engines=None):
    """--cells "20:1.1,29nft:1.9", or --engines "20,28" (each with Debian's 1.1)."""
    if engines:
        cells = ",".join(f"{e}:1.1" for e in engines.split(",") if e)
    out = []
    for item in (cells or DEFAULT_CELLS).split(","):
        engine, _, plugins = item.strip().partition(":")
        plugins = plugins or "1.1"
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r} in {item!r} ({', '.join(ENGINES)})")
        if plugins not in PLUGIN_SETS:
            raise ValueError(f"unknown plugin set {plugins!r} in {item!r} "
                             f"({', '.join(PLUGIN_SETS)})")
        out.append(Cell(engine, plugins))
    return out


def script(name, *args, **kw):
    return subprocess.run([os.path.join(ROOT, "scripts", name), *args], text=True, **kw)


def engine_problem(cell):
    """Why the cell's engine cannot run here, or None."""
    if script("engines.sh", "available", cell.engine, capture_output=True).returncode != 0:
        return (f"engine {cell.engine} cannot be installed here (Docker 29 comes from "
                f"../shared/engines/docker-29.*.tar.xz, which this clone lacks)")
    return None


def plugin_dir(plugins):
    """(the plugin set's dir, None), or (None, why it cannot be had)."""
    if plugins == "1.1":
        if os.path.exists(os.path.join(DEBIAN_CNI, "bridge")):
            return DEBIAN_CNI, None
        return None, f"no {DEBIAN_CNI}/bridge (./scripts/deps.sh installs Debian's plugins)"
    path = script("extras.sh", "path", "cni-1.9", capture_output=True).stdout.strip()
    if not os.path.exists(os.path.join(path, "bridge")):
        p = script("extras.sh", "cni-1.9", capture_output=True)
        if p.returncode != 0 or not os.path.exists(os.path.join(path, "bridge")):
            return None, f"scripts/extras.sh cni-1.9 failed: {p.stderr.strip()[-300:]}"
    return path, None


def plugin_version(path, plugins):
    """The plugin set's package version (1.1.1, 1.9.1): the binaries say "version unknown"."""
    text = ""
    if path == DEBIAN_CNI:
        text = subprocess.run(["dpkg-query", "-W", "-f", "${Version}",
                               "containernetworking-plugins"],
                              capture_output=True, text=True).stdout
    else:  # scripts/extras.sh notes the .debs it unpacked at its prefix's top
        try:
            with open(os.path.join(path, "..", "..", "..", ".debs")) as f:
                text = f.read().split("containernetworking-plugins", 1)[-1]
        except OSError:
            pass
    m = re.search(r"(\d+\.\d+\.\d+)", text)
    return m.group(1) if m else plugins


# -- measuring ----------------------------------------------------------------------------------

def docker(*args, check=True, timeout=300):
    p = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {p.stderr.strip()}")
    return p


def timed_run(network, extra=()):
    t = time.perf_counter()
    p = docker("run", "--rm", "--network", network, *extra, IMAGE, "true", check=False)
    return time.perf_counter() - t, p.returncode == 0


def summary(values):
    v = sorted(values)
    q = statistics.quantiles(v, n=10) if len(v) >= 2 else [v[0]] * 9
    return statistics.median(v), q[0], q[-1]


def fmt_ms(values):
    med, p10, p90 = summary(values)
    digits = 1 if med < 0.01 else 0  # the small per-call times need their decimal
    return f"{med * 1000:.{digits}f} ms ({p10 * 1000:.{digits}f}-{p90 * 1000:.{digits}f})"


def ratio(values, base):
    return statistics.median(values) / statistics.median(base)


def agreement(ratios):
    """"0.98x / 1.03x (differ by 0.05x)": each scale run's ratio and the spread."""
    text = " / ".join(f"{r:.2f}x" for r in ratios)
    if len(ratios) > 1:
        text += f" (differ by {max(ratios) - min(ratios):.2f}x)"
    return text


def memory_mb(pid):
    """(RSS, PSS) in MB of a process and its children (gunicorn master + worker).

    The worker is forked from the master, so some pages are shared: summed RSS counts
    them twice, PSS splits them.
    """
    rss = pss = 0
    pids = [pid] + [int(c) for c in subprocess.run(["pgrep", "-P", str(pid)],
                                                   capture_output=True, text=True).stdout.split()]
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    key, value = line.split(":", 1)
                    if key == "Rss":
                        rss += int(value.split()[0])
                    elif key == "Pss":
                        pss += int(value.split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return rss / 1024, pss / 1024


def fmt_mem(m):
    """PSS first (the target's measure), RSS in brackets."""
    return f"{m[1]:.0f} ({m[0]:.0f})" if m else "-"


def server_pid(server):
    """gunicorn's master: `pycni serve` execs into it (the process we started)."""
    return server.proc.pid


def cpu_times():
    """(busy, idle) jiffies of all CPUs so far, from /proc/stat. iowait counts as idle (no
    CPU work); steal counts as neither (the hypervisor's, not this machine's)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = (fields + [0] * 7)[:7]
    return user + nice + system + irq + softirq, idle + iowait


def idle_fraction(before, after):
    busy = after[0] - before[0]
    idle = after[1] - before[1]
    return idle / (busy + idle) if busy + idle > 0 else 1.0


def docker_netns():
    try:
        return set(os.listdir(DOCKER_NETNS))
    except FileNotFoundError:
        return set()


class LinkMover:
    """A bare veth end moved between two netns of the bench's own with one RTM_NEWLINK (as
    pycni's own move: rtnl.move_link): the kernel's cost of the extra move a handoff makes.
    A handoff moves the container's link out of pycni's scratch netns, then Docker moves it
    into the sandbox; Docker's bridge makes only the second move. Each sample moves the link
    the other way, so no link is made or deleted between samples."""

    LINK, PEER = "pbmv0", "pbmp0"

    def __init__(self, tag):
        self.names = (f"pycni-bench-{tag}-mva", f"pycni-bench-{tag}-mvb")
        self.ns = []
        self.at = 0  # which of the two holds the moving end

    def __enter__(self):
        try:
            for name in self.names:
                self.ns.append(netns.create(name))
            self.ns[0].run(rtnl.add_veth, self.LINK, self.PEER)
        except BaseException:
            self.close()
            raise
        return self

    def sample(self):
        """Seconds of one move."""
        src, dst = self.ns[self.at], self.ns[1 - self.at]
        fd = os.open(dst.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            seconds = src.run(_timed_move, self.LINK, fd)
        finally:
            os.close(fd)
        self.at = 1 - self.at
        return seconds

    def close(self):
        for ns in self.ns:  # the veth dies with its netns
            ns.delete()
        self.ns = []

    def __exit__(self, *exc):
        self.close()


def _timed_move(name, target_fd):
    index = socket.if_nametoindex(name)
    t = time.perf_counter()
    rtnl.move_link(index, name, target_fd)
    return time.perf_counter() - t


@dataclasses.dataclass
class ScaleRun:
    """One scale phase: {setup: {live containers: [seconds]}}, and how long the machine took
    to settle before and after it."""
    at: dict
    points: list
    waited_before: str = ""
    waited_after: str = ""

    def median(self, setup, n):
        return statistics.median(self.at[setup][n])

    def vs_bridge(self, setup, n=None):
        n = n or self.points[-1]
        return self.median(setup, n) / self.median(BRIDGE, n)

    def growth(self, setup):
        return self.median(setup, self.points[-1]) / self.median(setup, self.points[0])

    def curve(self, setup):
        return [(n, self.median(setup, n)) for n in self.points]


def scale_points(top):
    return sorted({10, 100, top // 2, top} - {0}) if top >= 10 else [top]


# -- one cell ---------------------------------------------------------------------------------

class CellBench:
    """Every measure on one cell; rows of its table, and the scale runs for the plot."""

    def __init__(self, opts, cell, bin_dirs, plugins_version):
        self.opts = opts
        self.cell = cell
        self.engine = cell.engine
        self.bin_dirs = list(bin_dirs)
        self.plugins_version = plugins_version
        self.tag = secrets.token_hex(3)
        self.networks, self.containers, self.rows = [], [], []
        self.live = {}  # network -> its containers the scale phase started
        self.started = 0  # containers the scale phase named so far: unique names
        self.server = None
        self.scale_runs = []
        self.version = ""
        self.backend = ""
        self.at_join = False  # whether the engine has the container's netns at Join
        self.key = {}  # the summary's rows: measure -> value
        self.fresh_memory = self.idle_memory = self.top_memory = self.after_memory = None

    @property
    def title(self):
        return (f"Docker {self.version.split('+')[0]}, {self.backend}, "
                f"CNI plugins {self.plugins_version}")

    def net(self, name, *args, driver=None):
        full = f"bench-{name}-{self.tag}"
        docker("network", "create", *(["-d", driver] if driver else []), *args, full)
        self.networks.append(full)
        return full

    def subnet(self, prefix=24):
        """A subnet no other network of this run (nor, likely, of the host) uses."""
        taken = getattr(self, "_subnets", set())
        while True:
            if prefix == 16:
                net = f"10.{random.randint(100, 159)}.0.0/16"
            else:
                net = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
            if net not in taken:
                taken.add(net)
                self._subnets = taken
                return net

    def setup(self):
        self.version = docker("version", "-f", "{{.Server.Version}}").stdout.strip()
        self.backend = firewall_backend(self.engine)
        # Docker 28 and later make the sandbox's netns before Join on `docker run`: there
        # -o cni.attach=direct runs CNI in it; older engines fall back to a handoff.
        self.at_join = int(self.version.split(".")[0]) >= 28
        self.netns_before = docker_netns()  # other users' sandboxes: never waited for
        make_busybox_image()
        self.server = PycniServer(bin_dirs=self.bin_dirs)
        self.server.start()
        self.fresh_memory = memory_mb(server_pid(self.server))
        Interrupted.record(self)
        d = self.server.name
        conf_subnet = self.subnet(16)  # the scale phase may fill it with 500
        self.conf_name = "bench-" + self.tag
        # A user's list with the reference chain: per-container masquerade and firewall.
        self.server.write_conf("10-bench.conflist", {
            "cniVersion": "1.0.0", "name": self.conf_name,
            "plugins": [{"type": "bridge", "bridge": "bnb" + self.tag, "isGateway": True,
                         "ipMasq": True,
                         "ipam": {"type": "host-local",
                                  "dataDir": os.path.join(self.server.root, "hl"),
                                  "ranges": [[{"subnet": conf_subnet}]],
                                  "routes": [{"dst": "0.0.0.0/0"}]}},
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                        {"type": "firewall"}]})
        self.setups = {
            ZERO: self.net("zc", "--subnet", self.subnet(16), driver=d),
            # CNI in the container's own netns where the engine has it at Join (28+).
            DIRECT: self.net("dr", "--subnet", self.subnet(16), "-o", "cni.attach=direct",
                             driver=d),
            CONFLIST: self.net(
                "cl", "-o", f"cni.network={self.conf_name}", "--subnet", conf_subnet, driver=d),
            "pycni, --ipam-driver pycni": self.net("ip", "--ipam-driver", d, "--subnet",
                                                   self.subnet(), driver=d),
            BRIDGE: self.net("br", "--subnet", self.subnet(16)),
            "--network none": "none",
        }

    def label(self, setup):
        if setup == DIRECT and not self.at_join:
            return f"{DIRECT} (a handoff here: no netns at Join)"
        return setup

    # -- latency ----------------------------------------------------------------------

    def latency(self):
        """`docker run` on every setup, and the kernel's link move, in shuffled rounds."""
        results = {k: [] for k in self.setups}
        moves = []
        for k, net in self.setups.items():  # warm-up: activation, first bridge, caches
            timed_run(net)
        with LinkMover(self.tag) as mover:
            mover.sample()  # warm-up
            for _ in range(self.opts.runs):
                order = list(self.setups.items())
                random.shuffle(order)
                for k, net in order:
                    dt, ok = timed_run(net)
                    if ok:
                        results[k].append(dt)
                moves.append(mover.sample())
        base = results[BRIDGE]
        self.rows.append(("**`docker run --rm ... true`**", "median (p10-p90)", "vs bridge"))
        for k, v in results.items():
            self.rows.append((self.label(k), fmt_ms(v), f"{ratio(v, base):.2f}x"))
        # Whether a handoff costs the bridge's time plus the one move it adds, no more.
        over = (statistics.median(results[ZERO]) - statistics.median(base)) * 1000
        move = statistics.median(moves) * 1000
        self.rows.append(("handoff's extra link move (kernel), ms", fmt_ms(moves),
                          "a bare veth between two netns, one RTM_NEWLINK"))
        self.rows.append(("handoff minus bridge, ms", f"{over:.0f} ms",
                          "within the move" if over <= move
                          else f"over the move by {over - move:.0f} ms"))
        self.latencies = results
        mode = "direct" if self.at_join else "handoff"
        mode_setup = DIRECT if self.at_join else ZERO
        self.key["`docker run` vs bridge, the engine's mode (direct on 28+, handoff on "
                 "20/26) (target <= 1.00x)"] = f"{ratio(results[mode_setup], base):.2f}x ({mode})"
        self.key["`docker run` vs bridge: handoff (zero config) / -o cni.attach=direct"] = (
            f"{ratio(results[ZERO], base):.2f}x / {ratio(results[DIRECT], base):.2f}x"
            + ("" if self.at_join else " (a handoff too)"))
        self.key["handoff minus bridge, ms"] = f"{over:.0f} ms"
        self.key["handoff's extra link move (kernel), ms"] = f"{move:.0f} ms"
        self.key["`docker run`, a user's conflist (ipMasq + firewall), vs bridge"] = \
            f"{ratio(results[CONFLIST], base):.2f}x"

    # -- pycni's own time, per strategy ---------------------------------------------------

    def own_time(self):
        """CreateEndpoint + Join + DeleteEndpoint posted straight to pycni: its own time
        (total minus plugin execs and the kernel's netns move), the move, the plugins;
        Join with a SandboxKey that does not exist yet (handoff, Docker < 28's `docker run`)
        and with a mounted netns (direct: Docker 28's `docker run`, `docker network connect`)."""
        self.rows.append(("**pycni's own time per container** (CreateEndpoint+Join+"
                          "DeleteEndpoint)", "own / netns move / CNI", ""))
        for mode in ("handoff", "direct"):
            own, moves, cni = self._call_times(mode)
            if mode == "handoff":
                self.key["netns move per container, handoff (pycni's report)"] = \
                    fmt_ms(moves).split(" (")[0]
            self.rows.append((f"{mode}: own time", fmt_ms(own), "target <= 5 ms"))
            self.rows.append((f"{mode}: kernel moving the link between netns", fmt_ms(moves),
                              "(in the kernel)"))
            self.rows.append((f"{mode}: CNI plugins (ADD)", fmt_ms(cni), ""))

    def _call_times(self, mode, first_host=200):
        sock = self.server.socket
        zc = self.setups[DIRECT if mode == "direct" else ZERO]
        nid = docker("network", "inspect", zc, "-f", "{{.Id}}").stdout.strip()
        subnet = docker("network", "inspect", zc, "-f",
                        "{{(index .IPAM.Config 0).Subnet}}").stdout.strip()
        base = subnet.split(".")[:2]
        own, moves, cni = [], [], []
        for i in range(self.opts.runs):
            eid = secrets.token_hex(32)
            sandbox = f"pycni-bench-sbx-{i}-{self.tag}"
            key = "/var/run/docker/netns/not-yet"
            if mode == "direct":
                key = netns.create(sandbox).path
            total = [0.0, 0.0, 0.0]
            address = f"{base[0]}.{base[1]}.250.{first_host + i % 50}/16"
            try:
                for call, body in (
                        ("CreateEndpoint", {"NetworkID": nid, "EndpointID": eid,
                                            "Interface": {"Address": address}, "Options": {}}),
                        ("Join", {"NetworkID": nid, "EndpointID": eid, "SandboxKey": key}),
                        ("DeleteEndpoint", {"NetworkID": nid, "EndpointID": eid})):
                    ms, cni_ms, move_ms = timed_post(sock, f"/NetworkDriver.{call}", body)
                    total[0] += (ms - cni_ms - move_ms) / 1000
                    total[1] += move_ms / 1000
                    total[2] += cni_ms / 1000
                # The CNI DEL runs after DeleteEndpoint answered: let it finish, so the
                # next CreateEndpoint does not count time spent waiting on its lock.
                settle(self.server)
            finally:
                if mode == "direct":
                    netns.NetNS(sandbox).delete()
            own.append(total[0])
            moves.append(total[1])
            cni.append(total[2])
        return own, moves, cni

    # -- restart -------------------------------------------------------------------------

    def restart(self):
        """Seconds from `docker restart` returning until a peer's ping and the published
        port answer the restarted container (its address kept)."""
        self.rows.append(("**restarted container reachable after**", "peer ping / port",
                          "vs bridge"))
        res = {}
        for k in (ZERO, BRIDGE):
            net = self.setups[k]
            port = random.randint(20000, 40000)
            srv = f"bench-srv-{self.tag}-{len(res)}"
            peer = f"bench-peer-{self.tag}-{len(res)}"
            docker("run", "-d", "--name", srv, "--network", net, "-p", f"{port}:80", IMAGE,
                   "sh", "-c", "nc -ll -p 80 -e echo hi")
            docker("run", "-d", "--name", peer, "--network", net, IMAGE, "sleep", "3600")
            self.containers += [srv, peer]
            ip = docker("inspect", srv, "-f",
                        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}").stdout.strip()
            pings, ports = [], []
            for _ in range(max(3, self.opts.runs // 4)):
                docker("exec", peer, "ping", "-c", "1", "-W", "2", ip, check=False)
                docker("restart", "-t", "0", srv)
                t0 = time.perf_counter()
                pings.append(until(lambda: docker("exec", peer, "ping", "-c", "1", "-W", "1", ip,
                                                  check=False).returncode == 0) - t0)
                t0 = time.perf_counter()
                ports.append(until(lambda: port_answers(port)) - t0)
            res[k] = (pings, ports)
        base = statistics.median(res[BRIDGE][0])
        self.key["restarted container reachable after: pycni / bridge"] = (
            f"{statistics.median(res[ZERO][0]):.2f} s / {base:.2f} s")
        for k, (pings, ports) in res.items():
            self.rows.append((k, f"{statistics.median(pings):.2f} s / "
                                 f"{statistics.median(ports):.2f} s",
                              f"{statistics.median(pings) / base:.2f}x"))
        self._remove_containers()

    # -- churn -------------------------------------------------------------------------------

    def parallel(self):
        n = self.opts.parallel
        self.rows.append((f"**{n} parallel `docker run --rm`**", "containers/s, failures",
                          "vs bridge"))
        rates = {}
        for k in (ZERO, BRIDGE):
            net = self.setups[k]
            t = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(n) as pool:
                oks = list(pool.map(lambda _: timed_run(net)[1], range(n)))
            rates[k] = (n / (time.perf_counter() - t), oks.count(False))
        for k, (rate, fails) in rates.items():
            self.rows.append((k, f"{rate:.1f}/s, {fails} failed",
                              f"{rate / rates[BRIDGE][0]:.2f}x"))
        self.key[f"{n} parallel `docker run`: failures, rate vs bridge"] = (
            f"{rates[ZERO][1]}, {rates[ZERO][0] / rates[BRIDGE][0]:.2f}x")

    # -- scale -------------------------------------------------------------------------------

    def scale_setups(self):
        """The pycni setups that join the bridge in the scale phase: direct only where the
        engine makes it one (elsewhere it would measure the handoff a second time)."""
        out = [k for k in self.opts.scale_setups if k != DIRECT or self.at_join]
        return out or [ZERO]

    def scale(self):
        """`docker run` at several numbers of live containers, the bridge and pycni's
        setup(s) filled alternately to each point and timed in shuffled rounds, so that the
        ratio at the top compares the two on the same machine state; --repeat-scale times."""
        pycni = self.scale_setups()
        skipped = [k for k in self.opts.scale_setups if k not in pycni]
        for run in range(1, self.opts.repeat_scale + 1):
            self.scale_runs.append(self._scale_once(run, [BRIDGE] + pycni))
        top = self.scale_runs[0].points[-1]
        for k in skipped:
            self.rows.append((f"scale: {k} left out", "a handoff on this engine", ""))
        for k in pycni:
            who = SHORT[k]
            ratios = [r.vs_bridge(k) for r in self.scale_runs]
            self.key[f"`docker run`, {who} at {top} live vs bridge at {top} live, same run "
                     f"(target <= 1.00x; runs agree within 0.10x)"] = agreement(ratios)
            self.key[f"`docker run` at {top} vs 10 live, {who} / bridge (info)"] = "; ".join(
                f"{r.growth(k):.2f}x / {r.growth(BRIDGE):.2f}x" for r in self.scale_runs)
            if len(ratios) > 1:
                self.rows.append((f"{who} vs bridge at {top} live, each run", agreement(ratios),
                                  "target: differ by <= 0.10x"))
        self.after_memory = self._memory_after()

    def _scale_once(self, run, setups):
        points = scale_points(self.opts.scale)
        nets = {k: self.setups[k] for k in setups}
        result = ScaleRun({k: {} for k in setups}, points)
        result.waited_before = self.wait_quiet()
        if self.idle_memory is None:
            self.idle_memory = memory_mb(server_pid(self.server))
        try:
            for n in points:
                self._fill_alternately(list(nets.values()), n)
                # The top point carries the key ratio: it gets the full number of rounds.
                rounds = self.opts.runs if n == points[-1] else max(5, self.opts.runs // 2)
                for k, samples in timed_rounds(nets, rounds).items():
                    result.at[k][n] = samples
            self._note_top_memory()
        finally:
            self._remove_containers()
        result.waited_after = self.wait_quiet()
        self._scale_rows(run, result, setups)
        return result

    def _scale_rows(self, run, result, setups):
        top = result.points[-1]
        self.rows.append((f"**scale, run {run}** (each network filled alternately to N live; "
                          f"`docker run` in shuffled rounds)", "docker run", "vs bridge"))
        self.rows.append(("waited for the machine to settle: before / after",
                          f"{result.waited_before} / {result.waited_after}", ""))
        for n in sorted({result.points[0], top}):
            for k in setups:
                self.rows.append((f"at {n} live, {k}", fmt_ms(result.at[k][n]),
                                  f"{result.vs_bridge(k, n):.2f}x"))
        for k in setups:
            self.rows.append((f"{k}: at {top} vs {result.points[0]} live", "",
                              f"{result.growth(k):.2f}x (info)"))

    def _fill_alternately(self, nets, n, step=10):
        """Each network up to n live containers, step at a time in turn, so no network
        runs ahead of the others on a machine that keeps getting busier."""
        while any(len(self.live.get(net, [])) < n for net in nets):
            random.shuffle(nets)
            for net in nets:
                self._fill(net, min(n, len(self.live.get(net, [])) + step))

    def _fill(self, net, n):
        live = self.live.setdefault(net, [])
        names = [f"bench-c{self.started + i}-{self.tag}" for i in range(n - len(live))]
        self.started += len(names)

        def start(name):
            docker("run", "-d", "--name", name, "--network", net, IMAGE, "sleep", "36000")
        try:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                list(pool.map(start, names))
        finally:  # also what failed: `docker rm -f` of a name that is not there is harmless
            live += names
            self.containers += names

    def _note_top_memory(self):
        m = memory_mb(server_pid(self.server))
        if self.top_memory is None or m[1] > self.top_memory[1]:
            self.top_memory = m

    def _memory_after(self):
        # The machine is quiet now (wait_quiet): the last call to pycni was a while ago,
        # but the worker trims its heap 2 s after the last call; leave it room.
        time.sleep(3)
        return memory_mb(server_pid(self.server))

    def _remove_containers(self):
        # Small batches: dockerd 20.10 miscounts a network's endpoints when many
        # are removed at once (moby#43286), and the network then cannot be removed.
        for i in range(0, len(self.containers), 10):
            docker("rm", "-f", *self.containers[i:i + 10], check=False)
        self.containers = []
        self.live = {}
        if self.server:
            settle(self.server, timeout=600)  # the deferred DELs

    def wait_quiet(self):
        """Wait until the kernel has torn down what the bench removed: Docker's sandbox
        netns of the bench gone from /run/docker/netns, then the CPUs idle (the netns
        cleanup runs in kernel workers after the unmount, for seconds per hundred). Returns
        how long it waited, for the table."""
        t0 = time.monotonic()
        deadline = t0 + 3 * QUIET_TIMEOUT
        while docker_netns() - self.netns_before and time.monotonic() < deadline:
            time.sleep(0.5)
        left = len(docker_netns() - self.netns_before)
        quiet = wait_idle()
        waited = f"{time.monotonic() - t0:.0f} s"
        if left:
            waited += f" ({left} sandbox netns still there)"
        if not quiet:
            waited += f" (CPUs still busy after {QUIET_TIMEOUT} s)"
        print(f"bench: {self.cell.label}: waited {waited} for the machine to settle",
              file=sys.stderr, flush=True)
        return waited

    # -- the CNI chain alone ----------------------------------------------------------------

    def floor(self):
        """A user's reference chain (bridge+ipMasq, portmap, firewall) and pycni's generated
        one (bridge): ADD+DEL through cni_runner and by the plugin binaries alone, from the
        cell's plugin set."""
        self.rows.append(("**CNI ADD+DEL**", "", "vs raw"))
        nid = "f" * 64
        req = parse_create_network({"NetworkID": nid, "IPv4Data": [
            {"Pool": "10.199.7.0/24", "Gateway": "10.199.7.1/24"}]})
        gen = conflists.generate("benchfloor" + self.tag, "bfl" + self.tag, plan_network({}),
                                 req.ipv4_data, [], False)
        user = json.loads(json.dumps(gen))
        user["name"] = "benchuser" + self.tag
        user["plugins"][0]["ipMasq"] = True
        user["plugins"][0]["ipam"] = {
            "type": "host-local", "dataDir": os.path.join(self.server.root, "floor-ipam"),
            "ranges": [[{"subnet": "10.199.7.0/24", "gateway": "10.199.7.1"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}
        user["plugins"].append({"type": "firewall"})
        address = [ipaddress.ip_interface("10.199.7.9/24")]
        gen = conflists.static_ipam(conflists.without_port_plugins(gen), address,
                                    {"10.199.7.0/24": "10.199.7.1"})
        cache = tempfile.mkdtemp(prefix="pycni-bench-cache-")
        rt = CNIRuntime(self.bin_dirs, cache)
        ns = netns.create("pycni-bench-" + self.tag)
        try:
            for label, raw in (("pycni's generated list (bridge, static IPAM)", gen),
                               ("a user's list (bridge ipMasq, portmap, firewall)", user)):
                conflist = conflist_from_dict(raw)
                runner, raw_exec = [], []
                for i in range(self.opts.runs):
                    cid = f"bench{i}"
                    t = time.perf_counter()
                    rt.add(conflist, RuntimeConf(cid, ns.path, "eth0"))
                    rt.delete(conflist, RuntimeConf(cid, ns.path, "eth0"))
                    runner.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    raw_chain(conflist, f"raw{i}", ns.path, self.bin_dirs)
                    raw_exec.append(time.perf_counter() - t)
                self.rows.append((f"{label}: binaries alone", fmt_ms(raw_exec), "1.00x"))
                self.rows.append((f"{label}: through cni_runner", fmt_ms(runner),
                                  f"{ratio(runner, raw_exec):.2f}x"))
        finally:
            ns.delete()
            support.run("ip", "link", "del", "bfl" + self.tag, check=False)
            shutil.rmtree(cache, ignore_errors=True)

    # -- memory ------------------------------------------------------------------------------

    def memory(self):
        """PSS (what the target counts: shared pages split between master and worker) and
        RSS, just started, idle before the scale phase, at its top, and after it."""
        top = self.opts.scale
        self.rows.append((f"pycni memory, PSS (RSS) master + worker: just started / idle "
                          f"before scale / {top} live / after all {top} went",
                          " / ".join(fmt_mem(m) for m in (self.fresh_memory, self.idle_memory,
                                                           self.top_memory, self.after_memory))
                          + " MB", "target PSS <= 40 MB"))
        after = fmt_mem(self.after_memory) if self.after_memory else "(no scale phase)"
        self.key[f"pycni PSS (RSS) master + worker: just started / after {top} came and went "
                 f"(target PSS <= 40 MB)"] = f"{fmt_mem(self.fresh_memory)} / {after} MB"

    def cleanup(self):
        self._remove_containers()
        for n in self.networks:
            if docker("network", "rm", n, check=False).returncode != 0 and self.server:
                settle(self.server, timeout=300)
                for _ in range(30):  # dockerd's endpoint count catches up (moby#43286)
                    p = docker("network", "rm", n, check=False)
                    if p.returncode == 0 or "active endpoints" not in p.stderr:
                        break
                    time.sleep(2)
                if "active endpoints" in p.stderr:
                    # dockerd 20.10 still counts endpoints no container has (moby#43286);
                    # a restart clears the count, and the plugin is still serving.
                    print(f"bench: restarting dockerd to remove {n} (moby#43286)",
                          file=sys.stderr)
                    restart_engine(self.engine)
                    docker("network", "rm", n, check=False)
        if self.server:
            self.server.stop()
            self.server.cleanup()
        Interrupted.forget()

    def table(self):
        cores = os.cpu_count()
        mem = int(open("/proc/meminfo").read().split()[1]) // 1024 // 1024
        out = [f"\n### {self.title} (cell {self.cell.label})\n",
               f"{cores} cores, {mem} GiB, {time.strftime('%Y-%m-%d')}, runs={self.opts.runs}, "
               f"Docker {self.version}, plugins from {self.bin_dirs[0]}\n",
               "| measure | value | ratio |", "|---|---|---|"]
        out += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(out)

    def run_phases(self):
        self.setup()
        self.latency()
        self.own_time()
        self.restart()
        self.parallel()
        self.floor()
        if not self.opts.skip_scale:
            self.scale()
        self.memory()


def timed_rounds(nets, rounds):
    """{setup: [seconds]}: one `docker run --rm` on each network per round, in a new order
    each round, so both drivers see the same machine state at the same point."""
    out = {k: [] for k in nets}
    for _ in range(rounds):
        order = list(nets.items())
        random.shuffle(order)
        for k, net in order:
            dt, ok = timed_run(net)
            if ok:
                out[k].append(dt)
    for k, v in out.items():
        if not v:
            raise RuntimeError(f"every `docker run` on {k} failed")
    return out


def wait_idle(timeout=QUIET_TIMEOUT, window=1.0, need=2):
    """True once `need` consecutive windows of the CPUs are IDLE_ENOUGH idle; False if the
    timeout came first."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < need:
        if time.monotonic() > deadline:
            return False
        before = cpu_times()
        time.sleep(window)
        quiet = quiet + 1 if idle_fraction(before, cpu_times()) >= IDLE_ENOUGH else 0
    return True


def firewall_backend(engine):
    """The engine's own word where it gives one (Docker 28.2+ `docker info`), else what the
    cell asked for."""
    p = docker("info", "--format", "{{json .}}", check=False)
    try:
        driver = (json.loads(p.stdout).get("FirewallBackend") or {}).get("Driver")
    except (ValueError, AttributeError):
        driver = None
    return driver or ("nftables" if engine.endswith("nft") else "iptables")


class Interrupted:
    """A run killed with its machine leaves hundreds of containers on a network whose
    driver is gone, which dockerd then waits for on every call. The next run serves that
    driver name again, from the same dirs, and removes what the killed run made."""

    PATH = "/var/lib/pycni-bench/running.json"

    @classmethod
    def record(cls, bench):
        os.makedirs(os.path.dirname(cls.PATH), exist_ok=True)
        with open(cls.PATH, "w") as f:
            json.dump({"engine": bench.engine, "tag": bench.tag, "name": bench.server.name,
                       "root": bench.server.root, "pid": bench.server.proc.pid,
                       "bin_dirs": bench.bin_dirs}, f)

    @classmethod
    def forget(cls):
        if os.path.exists(cls.PATH):
            os.unlink(cls.PATH)

    @classmethod
    def clean(cls):
        if not os.path.exists(cls.PATH):
            return
        with open(cls.PATH) as f:
            run = json.load(f)
        print(f"bench: removing what the interrupted run {run['tag']} left on Docker "
              f"{run['engine']}", file=sys.stderr)
        start_engine(run["engine"])
        try:  # its server outlives a killed bench (own session), not a reboot
            with open(f"/proc/{run['pid']}/cmdline", "rb") as f:
                if run["name"].encode() in f.read():
                    os.killpg(run["pid"], 15)
                    time.sleep(2)
        except (FileNotFoundError, ProcessLookupError):
            pass
        server = PycniServer(name=run["name"], root=run["root"], bin_dirs=run.get("bin_dirs"))
        server.start()
        try:
            nets = docker("network", "ls", "-q", "--filter",
                          f"name=-{run['tag']}").stdout.split()
            ids = set(docker("ps", "-aq", "--filter", f"name=-{run['tag']}").stdout.split())
            for net in nets:
                ids |= set(docker("ps", "-aq", "--filter", f"network={net}").stdout.split())
            ids = sorted(ids)
            for i in range(0, len(ids), 10):
                docker("rm", "-f", *ids[i:i + 10], check=False)
            for net in nets:
                docker("network", "rm", net, check=False)
        finally:
            server.stop()
            server.cleanup()
        for link in ("bnb", "bfl"):
            support.run("ip", "link", "del", link + run["tag"], check=False)
        # The floor's netns, the link move's two, own_time's sandboxes.
        for name in support.netns_names():
            if name.startswith("pycni-bench") and run["tag"] in name:
                netns.NetNS(name).delete()
        cls.forget()


def until(ok, timeout=120, step=0.02):
    """The time.perf_counter() at which ok() first held."""
    deadline = time.perf_counter() + timeout
    while not ok():
        if time.perf_counter() > deadline:
            raise RuntimeError("timed out")
        time.sleep(step)
    return time.perf_counter()


def port_answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(0.5)
            return bool(s.recv(10))
    except OSError:
        return False


def raw_chain(conflist, cid, netns_path, bin_dirs):
    """The chain run by hand, as a shell script calling the binaries would."""
    prev = None
    env = dict(os.environ, CNI_CONTAINERID=cid, CNI_NETNS=netns_path, CNI_IFNAME="eth0",
               CNI_ARGS="IgnoreUnknown=1", CNI_PATH=":".join(bin_dirs))
    for verb, plugins in (("ADD", conflist.plugins), ("DEL", list(reversed(conflist.plugins)))):
        for p in plugins:
            conf = dict(p.raw, name=conflist.name, cniVersion="1.0.0")
            conf.pop("capabilities", None)
            if prev is not None:
                conf["prevResult"] = prev
            path = next(os.path.join(d, p.type) for d in bin_dirs
                        if os.path.exists(os.path.join(d, p.type)))
            out = subprocess.run([path], input=json.dumps(conf).encode(), capture_output=True,
                                 env=dict(env, CNI_COMMAND=verb), check=True).stdout
            if verb == "ADD":
                prev = json.loads(out)


def timed_post(sock, path, body):
    """(total ms, ms in CNI executables, ms moving links between netns) of one call,
    from pycni's own headers."""
    _, headers, raw = support.post_raw(sock, path, body)
    data = json.loads(raw)
    if "Err" in data:
        raise RuntimeError(f"{path}: {data['Err']}")
    return (float(headers["X-Pycni-Ms"]), float(headers["X-Pycni-Cni-Ms"]),
            float(headers["X-Pycni-Move-Ms"]))


def start_engine(engine):
    script("engines.sh", "start", str(engine), check=True)


def restart_engine(engine):
    script("engines.sh", "stop", check=True)
    start_engine(engine)


def current_engine():
    out = script("engines.sh", "current", capture_output=True).stdout.strip()
    return out or "20"


# -- output -----------------------------------------------------------------------------------

def plot(benches, path):
    """Latency against live containers: one panel per cell, pycni's setup(s) and the bridge
    (a second scale run dashed)."""
    benches = [b for b in benches if b.scale_runs]
    if not benches:
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: no matplotlib (pip install matplotlib): no plot", file=sys.stderr)
        return
    cols = min(3, len(benches))
    rows = math.ceil(len(benches) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.5 * rows), squeeze=False)
    top = max(s for b in benches for r in b.scale_runs for v in r.at.values()
              for s in map(statistics.median, v.values())) * 1000 * 1.15
    colors = {BRIDGE: "tab:gray", ZERO: "tab:blue", DIRECT: "tab:green", CONFLIST: "tab:orange"}
    for ax, b in zip(axes.flat, benches):
        for i, run in enumerate(b.scale_runs):
            for k in run.at:
                pts = run.curve(k)
                label = {ZERO: "pycni", BRIDGE: "Docker's bridge"}.get(k, SHORT[k])
                ax.plot([n for n, _ in pts], [s * 1000 for _, s in pts], marker="o",
                        color=colors[k], linestyle="-" if i == 0 else "--",
                        label=label + (f" (run {i + 1})" if len(b.scale_runs) > 1 else ""))
        ax.set_title(b.title.replace("CNI plugins", "CNI"), fontsize=10)
        ax.set_xlabel("live containers on each network")
        ax.set_ylim(0, top)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    for ax in list(axes.flat)[len(benches):]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("docker run --rm, median ms")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"bench: plot in {path}", file=sys.stderr)


def summary_table(benches, skipped=()):
    """The key measures, a column per cell; then the cells that could not run."""
    keys = []
    for b in benches:
        keys += [k for k in b.key if k not in keys]
    out = ["\n| measure | " + " | ".join(b.title for b in benches) + " |",
           "|---|" + "---|" * len(benches)]
    out += [f"| {k} | " + " | ".join(b.key.get(k, "-") for b in benches) + " |" for k in keys]
    out += [f"\ncell {cell.label} skipped: {why}" for cell, why in skipped]
    return "\n".join(out)


# -- main -------------------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", help=f"ENGINE:PLUGINS,... (default {DEFAULT_CELLS}); ENGINE "
                    f"one of {', '.join(ENGINES)}, PLUGINS one of {', '.join(PLUGIN_SETS)}")
    ap.add_argument("--engines", help="short for --cells with plugin set 1.1 on each engine")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: --runs {runs} --scale {scale} --parallel {parallel} "
                         "unless given".format(**QUICK))
    ap.add_argument("--runs", type=int, help=f"default {FULL['runs']}")
    ap.add_argument("--scale", type=int, help=f"live containers per network at the top of "
                                              f"the scale phase (default {FULL['scale']})")
    ap.add_argument("--parallel", type=int, help=f"default {FULL['parallel']}")
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--repeat-scale", type=int, default=1,
                    help="run the scale phase this many times per cell (2: shows whether "
                         "runs agree)")
    ap.add_argument("--scale-setups", default="zero",
                    help="the pycni networks filled beside the bridge in the scale phase: "
                         + ", ".join(SCALE_SETUPS) + " (comma-separated; direct only on "
                         "engines with the netns at Join)")
    ap.add_argument("--plot", default=os.path.join(HERE, "latency.png"))
    opts = ap.parse_args(argv)
    if opts.cells and opts.engines:
        ap.error("--cells or --engines, not both")
    try:
        opts.cells = parse_cells(opts.cells, opts.engines)
    except ValueError as e:
        ap.error(str(e))
    for k, v in (QUICK if opts.quick else FULL).items():
        if getattr(opts, k) is None:
            setattr(opts, k, v)
    if opts.repeat_scale < 1:
        ap.error("--repeat-scale: at least 1")
    # "bridge" always takes part; accepted for the old spelling.
    names = [k for k in opts.scale_setups.split(",") if k and k != "bridge"]
    unknown = [k for k in names if k not in SCALE_SETUPS]
    if unknown:
        ap.error(f"--scale-setups: unknown {', '.join(unknown)}; known: "
                 f"{', '.join(SCALE_SETUPS)}")
    opts.scale_setups = [SCALE_SETUPS[k] for k in names] or [ZERO]
    return opts


def prepare(cell):
    """(the cell's plugin dir, its version, None) or (None, None, why the cell is skipped)."""
    why = engine_problem(cell)
    if why:
        return None, None, why
    path, why = plugin_dir(cell.plugins)
    if why:
        return None, None, why
    return path, plugin_version(path, cell.plugins), None


def main():
    opts = parse_args()
    before = current_engine()
    Interrupted.clean()
    benches, skipped = [], []
    try:
        for cell in opts.cells:
            path, version, why = prepare(cell)
            if not why:
                try:
                    start_engine(cell.engine)
                except subprocess.CalledProcessError as e:
                    why = f"scripts/engines.sh start {cell.engine} failed (exit {e.returncode})"
            if why:
                print(f"bench: cell {cell.label} skipped: {why}", file=sys.stderr, flush=True)
                skipped.append((cell, why))
                continue
            b = CellBench(opts, cell, [path], version)
            try:
                b.run_phases()
            finally:
                b.cleanup()
            benches.append(b)
            print(b.table(), flush=True)
    finally:
        start_engine(before)
    print(summary_table(benches, skipped), flush=True)
    plot(benches, opts.plot)


if __name__ == "__main__":
    main()
