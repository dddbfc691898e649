"""pycni against Docker's own bridge driver, engine by engine, in one run: prints one
markdown table per engine and writes a plot of `docker run` latency against the number
of live containers.

    python3 benchmarks/bench.py [--engines 20,28,26] [--runs 21] [--scale 500]
                                [--parallel 50] [--plot benchmarks/latency.png]

Needs root and the reference CNI plugins (./scripts/deps.sh); engines other than the
running one are started with scripts/engines.sh (installed from Debian's packages if
missing), and the engine that ran before is started again at the end. For each engine
it starts its own pycni server (unique driver name, private dirs), and removes every
container, network and dir it made. Latencies are medians (p10-p90 in brackets) of
--runs runs, taken in rounds that interleave the setups, so drift on a noisy machine
hits all of them alike; ratios compare with the same engine's bridge in the same run.
"""

import argparse
import concurrent.futures
import ipaddress
import json
import os
import random
import secrets
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
from cnm_bridge.host import netns  # noqa: E402
from cnm_bridge.network.options import plan_network  # noqa: E402
from cnm_bridge.docker.protocol import parse_create_network  # noqa: E402

BRIDGE = "docker bridge (user-defined)"
ZERO = "pycni, zero config"
DIRECT = "pycni, zero config, -o cni.attach=direct"
CONFLIST = "pycni, conflist (ipMasq + firewall)"
# --scale-setups names -> setups
SCALE_SETUPS = {"zero": ZERO, "bridge": BRIDGE, "conflist": CONFLIST, "direct": DIRECT}


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


def server_pid(server):
    """gunicorn's master: `pycni serve` execs into it (the process we started)."""
    return server.proc.pid


class EngineBench:
    """Every measure on one engine; rows of the table, and the scale points for the plot."""

    def __init__(self, opts, engine):
        self.opts = opts
        self.engine = engine
        self.tag = secrets.token_hex(3)
        self.networks, self.containers, self.rows = [], [], []
        self.server = None
        self.curve = {}  # setup -> [(live containers, median seconds)]
        self.version = ""
        self.key = {}  # the summary's rows: measure -> value

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
        make_busybox_image()
        self.server = PycniServer()
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

    # -- latency ----------------------------------------------------------------------

    def latency(self):
        results = {k: [] for k in self.setups}
        for k, net in self.setups.items():  # warm-up: activation, first bridge, caches
            timed_run(net)
        for _ in range(self.opts.runs):
            order = list(self.setups.items())
            random.shuffle(order)
            for k, net in order:
                dt, ok = timed_run(net)
                if ok:
                    results[k].append(dt)
        base = statistics.median(results[BRIDGE])
        self.rows.append(("**`docker run --rm ... true`**", "median (p10-p90)", "vs bridge"))
        for k, v in results.items():
            self.rows.append((k, fmt_ms(v), f"{statistics.median(v) / base:.2f}x"))
        self.latencies = results
        self.key["`docker run`, zero config, vs bridge (target <= 1.00x)"] = \
            f"{statistics.median(results[ZERO]) / base:.2f}x"
        self.key["`docker run`, -o cni.attach=direct, vs bridge"] = \
            f"{statistics.median(results[DIRECT]) / base:.2f}x"
        self.key["`docker run`, a user's conflist (ipMasq + firewall), vs bridge"] = \
            f"{statistics.median(results[CONFLIST]) / base:.2f}x"

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
            self.key[f"netns move per container, {mode}"] = fmt_ms(moves).split(" (")[0]
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

    def scale(self):
        """`docker run` latency at several numbers of live containers on one network, pycni
        and the engine's bridge; pycni's memory idle, at the top, and after all went."""
        points = sorted({10, 100, self.opts.scale // 2, self.opts.scale})
        idle = top = memory_mb(server_pid(self.server))
        self.rows.append(("**scale** (live containers on one network)", "docker run",
                          "vs 10 live"))
        for k in self.opts.scale_setups:
            net = self.setups[k]
            self.curve[k] = []
            at = {}
            for n in points:
                self._fill(net, n)
                at[n] = [timed_run(net)[0] for _ in range(max(5, self.opts.runs // 2))]
                self.curve[k].append((n, statistics.median(at[n])))
                if n == points[-1] and k != BRIDGE:  # pycni's memory with its 500 live
                    top = max(top, memory_mb(server_pid(self.server)))
            for n in (points[0], points[-1]):
                self.rows.append((f"at {n} live, {k}", fmt_ms(at[n]),
                                  f"{statistics.median(at[n]) / statistics.median(at[10]):.2f}x"))
            who = {ZERO: "pycni", BRIDGE: "bridge"}.get(k, k)
            self.key[f"`docker run` at {points[-1]} vs 10 live, {who} (target <= 1.10x)"] = \
                f"{statistics.median(at[points[-1]]) / statistics.median(at[10]):.2f}x"
            self._remove_containers()
        time.sleep(3)  # idle now: the worker trims its heap 2 s after the last call
        after = memory_mb(server_pid(self.server))
        fresh = self.fresh_memory
        self.rows.append((f"pycni memory, RSS master + worker (PSS): just started / idle "
                          f"before scale / {points[-1]} live / after",
                          f"{fresh[0]:.0f} ({fresh[1]:.0f}) / {idle[0]:.0f} ({idle[1]:.0f}) / "
                          f"{top[0]:.0f} ({top[1]:.0f}) / {after[0]:.0f} ({after[1]:.0f}) MB",
                          "target <= 50 MB"))
        self.key["pycni RSS master + worker: just started / idle / after (target <= 50 MB)"] = (
            f"{fresh[0]:.0f} / {idle[0]:.0f} / {after[0]:.0f} MB")

    def _fill(self, net, n):
        names_ = []
        while len(self.containers) + len(names_) < n:
            names_.append(f"bench-c{len(self.containers) + len(names_)}-{self.tag}")

        def start(name):
            docker("run", "-d", "--name", name, "--network", net, IMAGE, "sleep", "36000")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(start, names_))
        self.containers += names_

    def _remove_containers(self):
        # Small batches: dockerd 20.10 miscounts a network's endpoints when many
        # are removed at once (moby#43286), and the network then cannot be removed.
        for i in range(0, len(self.containers), 10):
            docker("rm", "-f", *self.containers[i:i + 10], check=False)
        self.containers = []
        if self.server:
            settle(self.server, timeout=600)  # the deferred DELs

    # -- the CNI chain alone ----------------------------------------------------------------

    def floor(self):
        """A user's reference chain (bridge+ipMasq, portmap, firewall) and pycni's generated
        one (bridge): ADD+DEL through cni_runner and by the plugin binaries alone."""
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
        rt = CNIRuntime(support.CNI_BIN_DIRS, cache)
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
                    raw_chain(conflist, f"raw{i}", ns.path)
                    raw_exec.append(time.perf_counter() - t)
                self.rows.append((f"{label}: binaries alone", fmt_ms(raw_exec), "1.00x"))
                self.rows.append((f"{label}: through cni_runner", fmt_ms(runner),
                                  f"{statistics.median(runner) / statistics.median(raw_exec):.2f}x"))
        finally:
            ns.delete()
            support.run("ip", "link", "del", "bfl" + self.tag, check=False)

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
        out = [f"\nDocker {self.version}: {cores} cores, {mem} GiB, "
               f"{time.strftime('%Y-%m-%d')}, runs={self.opts.runs}\n",
               "| measure | value | ratio |", "|---|---|---|"]
        out += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(out)


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
                       "root": bench.server.root, "pid": bench.server.proc.pid}, f)

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
        server = PycniServer(name=run["name"], root=run["root"])
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
        support.run("ip", "netns", "del", "pycni-bench-" + run["tag"], check=False)
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
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(0.5)
            return bool(s.recv(10))
    except OSError:
        return False


def raw_chain(conflist, cid, netns_path):
    """The chain run by hand, as a shell script calling the binaries would."""
    prev = None
    env = dict(os.environ, CNI_CONTAINERID=cid, CNI_NETNS=netns_path, CNI_IFNAME="eth0",
               CNI_ARGS="IgnoreUnknown=1", CNI_PATH=":".join(support.CNI_BIN_DIRS))
    for verb, plugins in (("ADD", conflist.plugins), ("DEL", list(reversed(conflist.plugins)))):
        for p in plugins:
            conf = dict(p.raw, name=conflist.name, cniVersion="1.0.0")
            conf.pop("capabilities", None)
            if prev is not None:
                conf["prevResult"] = prev
            path = next(os.path.join(d, p.type) for d in support.CNI_BIN_DIRS
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
    subprocess.run([os.path.join(ROOT, "scripts", "engines.sh"), "start", str(engine)],
                   check=True)


def restart_engine(engine):
    subprocess.run([os.path.join(ROOT, "scripts", "engines.sh"), "stop"], check=True)
    start_engine(engine)


def current_engine():
    out = subprocess.run([os.path.join(ROOT, "scripts", "engines.sh"), "current"],
                         capture_output=True, text=True).stdout.strip()
    return out or "20"


def plot(curves, path):
    """Latency against live containers: one panel per engine, pycni and bridge."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: no matplotlib (pip install matplotlib): no plot", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False)
    top = max(ms for c in curves.values() for pts in c.values() for _, ms in pts) * 1000 * 1.15
    for ax, (version, c) in zip(axes[0], curves.items()):
        for label, pts in c.items():
            ax.plot([n for n, _ in pts], [s * 1000 for _, s in pts], marker="o",
                    label={ZERO: "pycni", BRIDGE: "Docker's bridge"}.get(label, label))
        ax.set_title(f"Docker {version}")
        ax.set_xlabel("live containers on the network")
        ax.set_ylim(0, top)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("docker run --rm, median ms")
    axes[0][0].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"bench: plot in {path}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="20,28,26")
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--scale", type=int, default=500)
    ap.add_argument("--parallel", type=int, default=50)
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--scale-setups", default="zero,conflist,bridge",
                    help="which networks the scale phase fills: "
                         + ", ".join(SCALE_SETUPS) + " (comma-separated)")
    ap.add_argument("--plot", default=os.path.join(HERE, "latency.png"))
    opts = ap.parse_args()
    try:
        opts.scale_setups = [SCALE_SETUPS[k] for k in opts.scale_setups.split(",")]
    except KeyError as e:
        ap.error(f"--scale-setups: unknown {e}; known: {', '.join(SCALE_SETUPS)}")
    before = current_engine()
    Interrupted.clean()
    tables, curves, benches = [], {}, []
    try:
        for engine in opts.engines.split(","):
            start_engine(engine)
            b = EngineBench(opts, engine)
            try:
                b.setup()
                b.latency()
                b.own_time()
                b.restart()
                b.parallel()
                b.floor()
                if not opts.skip_scale:
                    b.scale()
            finally:
                b.cleanup()
            tables.append(b.table())
            benches.append(b)
            print(tables[-1], flush=True)
            if b.curve:
                curves[b.version.split("+")[0]] = b.curve
    finally:
        start_engine(before)
    print(summary_table(benches), flush=True)
    if curves:
        plot(curves, opts.plot)


def summary_table(benches):
    """The key measures, a column per engine."""
    keys = []
    for b in benches:
        keys += [k for k in b.key if k not in keys]
    out = ["\n| measure | " + " | ".join(f"Docker {b.version.split('+')[0]}" for b in benches)
           + " |", "|---|" + "---|" * len(benches)]
    out += [f"| {k} | " + " | ".join(b.key.get(k, "-") for b in benches) + " |" for k in keys]
    return "\n".join(out)


if __name__ == "__main__":
    main()
