"""pycni against Docker's own bridge driver, measured in one run: prints a markdown table.

    python3 benchmarks/bench.py [--runs 21] [--scale 200] [--skip-scale]

Needs root, a running dockerd and the reference CNI plugins (./scripts/deps.sh).
It starts its own pycni server (unique driver name, private dirs), builds the test
busybox image if missing, and removes every container, network and dir it made.
Latencies are medians (p10-p90 in brackets) of --runs runs, taken in rounds that
interleave the setups, so drift on a noisy machine hits all of them alike.
"""

import argparse
import concurrent.futures
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
sys.path.insert(0, os.path.join(HERE, ".."))  # this checkout's packages, installed or not
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))

import support  # noqa: E402
from dockerlib import DOCKER, IMAGE, PycniServer, make_busybox_image, settle  # noqa: E402

from cni_runner import CNIRuntime, RuntimeConf, conflist_from_dict  # noqa: E402
from cnm_bridge import netlink, translate  # noqa: E402
from cnm_bridge.protocol import parse_create_network  # noqa: E402


def docker(*args, check=True):
    p = subprocess.run([DOCKER, *args], capture_output=True, text=True)
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

    The worker is forked from the master after the app is loaded, so most pages
    are shared: summed RSS counts them twice, PSS splits them (the real cost).
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
        except FileNotFoundError:
            pass
    return rss / 1024, pss / 1024


class Bench:
    def __init__(self, opts):
        self.opts = opts
        self.tag = secrets.token_hex(3)
        self.networks = []
        self.containers = []
        self.server = None
        self.rows = []

    def net(self, name, *args, driver=None):
        full = f"bench-{name}-{self.tag}"
        docker("network", "create", *(["-d", driver] if driver else []), *args, full)
        self.networks.append(full)
        return full

    def subnet(self):
        return f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"

    def setup(self):
        make_busybox_image() if not docker("images", "-q", IMAGE).stdout.strip() else None
        self.server = PycniServer()
        self.server.start()
        d = self.server.name
        conf_subnet = self.subnet()
        self.conf_name = "bench-" + self.tag
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
            "pycni, zero config": self.net("zc", "--subnet", self.subnet(), driver=d),
            "pycni, conflist": self.net("cl", "-o", f"cni.network={self.conf_name}",
                                        "--subnet", conf_subnet, driver=d),
            "pycni, --ipam-driver pycni": self.net("ip", "--ipam-driver", d, "--subnet",
                                                   self.subnet(), driver=d),
            "docker bridge (user-defined)": self.net("br", "--subnet", self.subnet()),
            "--network none": "none",
        }

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
        base = statistics.median(results["docker bridge (user-defined)"])
        self.rows.append(("**`docker run --rm ... true`**", "median (p10-p90)", "vs bridge"))
        for k, v in results.items():
            self.rows.append((k, fmt_ms(v), f"{statistics.median(v) / base:.2f}x"))
        self.latencies = results

    def floor(self):
        """The same chain's ADD+DEL: through cni_runner, and the plugin binaries alone."""
        raw = translate.generate_conflist(
            "f" * 64, translate.plan_network({}),
            parse_create_network({"NetworkID": "f" * 64, "IPv4Data": [
                {"Pool": "10.199.7.0/24", "Gateway": "10.199.7.1/24"}]}).ipv4_data,
            [], False, os.path.join(self.server.root, "floor-ipam"))
        raw["name"] = "benchfloor" + self.tag
        raw["plugins"][0]["bridge"] = "bfl" + self.tag
        conflist = conflist_from_dict(raw)
        cache = tempfile.mkdtemp(prefix="pycni-bench-cache-")
        rt = CNIRuntime(support.CNI_BIN_DIRS, cache)
        runner, raw_exec = [], []
        ns = "pycni-bench-" + self.tag
        netlink.create_netns(ns)
        try:
            for i in range(self.opts.runs * 2):
                cid = f"bench{i}"
                t = time.perf_counter()
                rt.add(conflist, RuntimeConf(cid, netlink.netns_path(ns), "eth0"))
                rt.delete(conflist, RuntimeConf(cid, netlink.netns_path(ns), "eth0"))
                runner.append(time.perf_counter() - t)
                t = time.perf_counter()
                raw_chain(conflist, f"raw{i}", netlink.netns_path(ns))
                raw_exec.append(time.perf_counter() - t)
        finally:
            netlink.delete_netns(ns)
            netlink.delete_link("bfl" + self.tag)
        self.rows.append(("**CNI chain ADD+DEL** (bridge+portmap+firewall)", "", "vs raw"))
        self.rows.append(("plugin binaries alone", fmt_ms(raw_exec), "1.00x"))
        self.rows.append(("through cni_runner", fmt_ms(runner),
                          f"{statistics.median(runner) / statistics.median(raw_exec):.2f}x"))

    def own_time(self):
        """pycni's time per protocol call minus the time its CNI plugins ran."""
        per_call, total_own, moves, cni = self._call_times(first_host=200)
        self.rows.append(("**pycni's own time per call** (total minus CNI exec and the "
                          "kernel's netns move)", "", ""))
        for call, v in per_call.items():
            self.rows.append((call, fmt_ms(v), ""))
        self.rows.append(("per container (sum; DEL itself is deferred)", fmt_ms(total_own),
                          "target <= 5 ms"))
        self.rows.append(("kernel: moving the link out of the scratch netns", fmt_ms(moves),
                          "(RCU wait)"))
        self.rows.append(("CNI plugins (ADD)", fmt_ms(cni), ""))

    def _call_times(self, first_host):
        """CreateEndpoint, Join, DeleteEndpoint posted straight to pycni, --runs times:
        ({call: own seconds}, own per container, netns move, CNI exec)."""
        sock = self.server.socket
        zc = self.setups["pycni, zero config"]
        nid = docker("network", "inspect", zc, "-f", "{{.Id}}").stdout.strip()
        subnet = docker("network", "inspect", zc, "-f",
                        "{{(index .IPAM.Config 0).Subnet}}").stdout.strip()
        base = subnet.rsplit(".", 1)[0]
        per_call = {"CreateEndpoint": [], "Join": [], "DeleteEndpoint": []}
        total_own, moves, cni = [], [], []
        for i in range(self.opts.runs):
            eid = secrets.token_hex(32)
            own = move = exec_s = 0.0
            host = first_host + i % (254 - first_host)
            for call, body in (
                    ("CreateEndpoint", {"NetworkID": nid, "EndpointID": eid,
                                        "Interface": {"Address": f"{base}.{host}/24"},
                                        "Options": {}}),
                    ("Join", {"NetworkID": nid, "EndpointID": eid, "SandboxKey": "/x"}),
                    ("DeleteEndpoint", {"NetworkID": nid, "EndpointID": eid})):
                ms, cni_ms, move_ms = timed_post(sock, f"/NetworkDriver.{call}", body)
                per_call[call].append((ms - cni_ms - move_ms) / 1000)
                own += (ms - cni_ms - move_ms) / 1000
                move += move_ms / 1000
                exec_s += cni_ms / 1000
            total_own.append(own)
            moves.append(move)
            cni.append(exec_s)
            # The CNI DEL runs after DeleteEndpoint answered: let it finish, so the
            # next CreateEndpoint does not count time spent waiting on its lock.
            settle(self.server)
        return per_call, total_own, moves, cni

    def parallel(self):
        self.rows.append(("**parallel `docker run --rm`**", "containers/s, failures", "vs bridge"))
        for n in (10, 20):
            rates = {}
            for k in ("pycni, zero config", "docker bridge (user-defined)"):
                net = self.setups[k]
                t = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(n) as pool:
                    oks = list(pool.map(lambda _: timed_run(net)[1], range(n)))
                dt = time.perf_counter() - t
                rates[k] = (n / dt, oks.count(False))
            b = rates["docker bridge (user-defined)"][0]
            for k, (rate, fails) in rates.items():
                self.rows.append((f"{n} parallel, {k}", f"{rate:.1f}/s, {fails} failed",
                                  f"{rate / b:.2f}x"))

    def scale(self):
        """`docker run` with 10 and with --scale containers alive on one network, pycni
        and then Docker's bridge (Docker itself slows down with many containers)."""
        if self.opts.scale > 240:
            raise SystemExit("--scale above 240 does not fit a /24 (with room for the probes)")
        self.rows.append(("**scale** (live containers on one network)", "", "vs 10 live"))
        for k in ("pycni, zero config", "docker bridge (user-defined)"):
            net = self.setups[k]
            at = {}
            for n in (10, self.opts.scale):
                self._fill(net, n)
                at[n] = [timed_run(net)[0] for _ in range(self.opts.runs)]
                if k.startswith("pycni"):
                    at[n, "mem"] = memory_mb(self.server.proc.pid)
                    at[n, "calls"] = self._call_times(first_host=245)
            for n in (10, self.opts.scale):
                self.rows.append((f"`docker run` at {n} live, {k}", fmt_ms(at[n]),
                                  f"{statistics.median(at[n]) / statistics.median(at[10]):.2f}x"))
            if k.startswith("pycni"):
                for n in (10, self.opts.scale):
                    _, own, moves, cni = at[n, "calls"]
                    self.rows.append((f"CreateEndpoint at {n} live: own / netns move / CNI",
                                      f"{statistics.median(own) * 1000:.1f} / "
                                      f"{statistics.median(moves) * 1000:.0f} / "
                                      f"{statistics.median(cni) * 1000:.0f} ms", ""))
                (rss10, pss10), (rssn, pssn) = at[10, "mem"], at[self.opts.scale, "mem"]
                self.rows.append((f"driver memory at 10 / at {self.opts.scale}: RSS summed (PSS)",
                                  f"{rss10:.0f} MB ({pss10:.0f}) / {rssn:.0f} MB ({pssn:.0f})",
                                  "target <= 80 MB"))
            self._remove_containers()

    def _fill(self, net, n):
        while len(self.containers) < n:
            name = f"bench-c{len(self.containers)}-{self.tag}"
            docker("run", "-d", "--name", name, "--network", net, IMAGE, "sleep", "3600")
            self.containers.append(name)

    def _remove_containers(self):
        # Small batches: dockerd 20.10 miscounts a network's endpoints when many
        # are removed at once (moby#43286), and the network then cannot be removed.
        for i in range(0, len(self.containers), 10):
            docker("rm", "-f", *self.containers[i:i + 10], check=False)
        self.containers = []
        if self.server:
            settle(self.server, timeout=300)  # the deferred DELs of the scale run

    def cleanup(self):
        self._remove_containers()
        for n in self.networks:
            if docker("network", "rm", n, check=False).returncode != 0 and self.server:
                settle(self.server, timeout=300)
                p = docker("network", "rm", n, check=False)
                if "active endpoints" in p.stderr:
                    print(f"bench: dockerd still counts endpoints on {n} though no container "
                          "is attached (moby#43286, Docker 20.10); restarting dockerd clears "
                          "it, then remove the network while the plugin runs", file=sys.stderr)
        if self.server:
            self.server.stop()
            self.server.cleanup()

    def table(self):
        cores = os.cpu_count()
        mem = int(open("/proc/meminfo").read().split()[1]) // 1024 // 1024
        ver = docker("version", "-f", "{{.Server.Version}}").stdout.strip()
        print(f"\nMachine: {cores} cores, {mem} GiB, Docker {ver}, "
              f"{time.strftime('%Y-%m-%d')}, runs={self.opts.runs}\n")
        print("| measure | value | ratio |")
        print("|---|---|---|")
        for row in self.rows:
            print("| " + " | ".join(row) + " |")


def raw_chain(conflist, cid, netns):
    """The chain run by hand, as a shell script calling the binaries would."""
    prev = None
    env = dict(os.environ, CNI_CONTAINERID=cid, CNI_NETNS=netns, CNI_IFNAME="eth0",
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--scale", type=int, default=200)
    ap.add_argument("--skip-scale", action="store_true")
    opts = ap.parse_args()
    b = Bench(opts)
    try:
        b.setup()
        b.latency()
        b.floor()
        b.own_time()
        b.parallel()
        if not opts.skip_scale:
            b.scale()
    finally:
        b.cleanup()
    b.table()


if __name__ == "__main__":
    main()
