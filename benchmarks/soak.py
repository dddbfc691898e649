"""Soak test (issue 22): many cycles of mixed Docker work on pycni networks while the
plugin's worker, its master or dockerd is killed at random moments; then checks that what
Docker shows is what the host has, and that nothing was left or lost.

    sudo python3 benchmarks/soak.py [--cycles 1000] [--kills 50] [--seed N]
                                    [--check-every 100] [--out docs/soak.md]

Not part of CI: it runs tens of minutes, as root, against the running dockerd, which it
restarts (about 1 kill in 6). It starts its own pycni server (unique driver name, private
dirs; this checkout's code), makes three networks on it (zero config; a named conflist with
bridge + host-local + portmap + firewall; pycni's IPAM driver with host-local), and removes
every container, network, dir and process it made on exit, also on Ctrl-C; a run killed
with its machine is cleaned up by the next one (/var/lib/pycni-soak/running.json).
All traffic stays between its containers and 127.0.0.1. Exit status 1 if anything that
must not happen happened (failures after recovery, a recovery over --recovery-timeout,
failed checks, leftovers, lost networks, addresses held twice).
"""

import argparse
import collections
import dataclasses
import ipaddress
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # this checkout's packages, installed or not
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, HERE)

import support  # noqa: E402
from dockerlib import (IMAGE, Dockerd, PycniServer, alive, docker,  # noqa: E402
                       docker_answers, make_busybox_image, settle)

LABEL = "pycni-soak"
STATE_FILE = "/var/lib/pycni-soak/running.json"
KINDS = ("worker", "master", "dockerd")
OP_TIMEOUT = 120  # one docker CLI call
# Containers exit at once on SIGTERM (a trap), so stop/restart/dockerd's shutdown are quick.
SLEEPER = "trap 'exit 0' TERM; sleep 36000 & wait"
SERVER = "trap 'exit 0' TERM; nc -ll -p 80 -e echo hi & wait"


class SoakError(Exception):
    pass


# -- the plan (pure) ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Kill:
    kind: str     # worker, master or dockerd
    delay: float  # seconds after the cycle's operation started


def kill_kinds(n, rng, dockerd_share=1 / 6):
    """n kinds in random order: at most dockerd_share of them dockerd restarts (each takes
    seconds), the rest half worker, half master kills."""
    n_dockerd = int(n * dockerd_share)
    n_master = (n - n_dockerd) // 2
    kinds = ["dockerd"] * n_dockerd + ["master"] * n_master
    kinds += ["worker"] * (n - len(kinds))
    rng.shuffle(kinds)
    return kinds


def make_plan(cycles, kills, seed, extra_rate=0.02, dockerd_share=1 / 6):
    """[Kill or None] per cycle. One kill at a random cycle of each of `kills` equal
    stretches of the run (so at least `kills`, spread over it), plus a few at random."""
    if not 0 <= kills <= cycles:
        raise ValueError(f"--kills {kills} must be between 0 and --cycles {cycles}")
    rng = random.Random(f"plan-{seed}")
    at = {rng.randrange(i * cycles // kills, (i + 1) * cycles // kills) for i in range(kills)}
    at |= {c for c in range(cycles) if c not in at and rng.random() < extra_rate}
    plan = [None] * cycles
    for c, kind in zip(sorted(at), kill_kinds(len(at), rng, dockerd_share)):
        plan[c] = Kill(kind, round(rng.uniform(0, 0.5), 3))
    return plan


# -- what Docker shows (parsing is pure) -------------------------------------------------------

Box = collections.namedtuple("Box", "name running networks port")  # networks: {net: Addr}
Addr = collections.namedtuple("Addr", "ip gateway endpoint")


def parse_container(data):
    """A Box from one `docker inspect` object."""
    state = data.get("State") or {}
    nets = (data.get("NetworkSettings") or {}).get("Networks") or {}
    bindings = ((data.get("HostConfig") or {}).get("PortBindings") or {}).get("80/tcp") or []
    port = next((int(b["HostPort"]) for b in bindings if b.get("HostPort")), None)
    return Box(data["Name"].lstrip("/"),
               bool(state.get("Running")) and not state.get("Restarting"),
               {n: Addr(v.get("IPAddress") or "", v.get("Gateway") or "", v.get("EndpointID") or "")
                for n, v in nets.items()}, port)


def choose_op(rng, boxes, networks, extra, extra_age, max_live):
    """(operation, target) for one cycle, among what can be done with what exists now.
    networks: every network of the run (the extra one too); extra: its name or None."""
    running = [b for b in boxes if b.running]
    stopped = [b for b in boxes if not b.running]
    options = []  # (weight, op, target)
    if len(boxes) < max_live:
        # On a lasting network: a container's first network is its network mode, and one
        # started on the extra network cannot start or connect once it is gone (Docker's
        # way with any driver).
        lasting = [n for n in networks if n != extra] or networks
        options.append((5, "run", {"network": rng.choice(lasting)}))
    joinable = [(b.name, n) for b in running for n in networks if n not in b.networks]
    if joinable:
        options.append((2, "connect", dict(zip(("container", "network"), rng.choice(joinable)))))
    # Only a second network goes: every container keeps one.
    leavable = [(b.name, n) for b in running if len(b.networks) >= 2 for n in b.networks
                if n in networks]
    if leavable:
        options.append((2, "disconnect", dict(zip(("container", "network"), rng.choice(leavable)))))
    if running:
        options.append((2, "restart", {"container": rng.choice(running).name}))
        options.append((1, "stop", {"container": rng.choice(running).name}))
    if stopped:
        options.append((2, "start", {"container": rng.choice(stopped).name}))
    if boxes:
        options.append((3 if len(boxes) >= max_live else 1, "rm",
                        {"container": rng.choice(boxes).name}))
    if extra is None:
        options.append((0.3, "netcreate", {"ipam": rng.random() < 0.5}))
    elif extra_age >= 10:
        options.append((0.5, "netrm", {"network": extra}))
    x = rng.uniform(0, sum(w for w, _, _ in options))
    for weight, op, target in options:
        x -= weight
        if x <= 0:
            return op, target
    return options[-1][1], options[-1][2]


def held_twice(docker_addrs, endpoints):
    """Addresses with more than one holder: docker_addrs [(container, network, ip)] from
    Docker's view, endpoints from `pycni status --json` (an endpoint Docker does not know
    has no Container: it counts as a holder of its own). Sorted descriptions."""
    holders = collections.defaultdict(set)
    for container, _network, ip in docker_addrs:
        if ip:
            holders[ip].add(container)
    for e in endpoints:
        who = e.get("Container") or f"pycni endpoint {e.get('Endpoint', '?')}"
        for a in e.get("Addresses") or []:
            holders[a.split("/")[0]].add(who)
    return sorted(f"{ip} held by {', '.join(sorted(h))}" for ip, h in holders.items()
                  if len(h) > 1)


def pick_subnet(rng, taken):
    """A /24 in 10.200-250.x.0 that overlaps none of taken: words of `ip route` and Docker's
    subnets (those that are not addresses or networks are ignored)."""
    used = []
    for word in taken:
        try:
            used.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            pass
    for _ in range(10000):
        net = ipaddress.ip_network(f"10.{rng.randint(200, 250)}.{rng.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used if u.version == 4):
            return str(net)
    raise SoakError("no free /24 in 10.200.0.0-10.250.255.0")


def subnet_needle(subnet):
    """What iptables lines about a /24 contain: '10.201.7.' (the dot ends the third octet)."""
    return subnet.rsplit(".", 1)[0] + "."


# -- the results (pure) --------------------------------------------------------------------------

@dataclasses.dataclass
class Results:
    engine: str = "?"
    seed: int = 0
    recovery_bound: float = 120
    cycles_planned: int = 0
    cycles_done: int = 0
    kills: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    ops: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    window_failures: list = dataclasses.field(default_factory=list)  # during/just after a kill
    failures: list = dataclasses.field(default_factory=list)  # after recovery
    recoveries: list = dataclasses.field(default_factory=list)  # seconds
    recovery_timeouts: list = dataclasses.field(default_factory=list)
    check_failures: list = dataclasses.field(default_factory=list)  # address, gateway, port
    checks: int = 0
    doubles: set = dataclasses.field(default_factory=set)
    leftovers: list = dataclasses.field(default_factory=list)
    lost: set = dataclasses.field(default_factory=set)
    notes: list = dataclasses.field(default_factory=list)

    def bad(self):
        return bool(self.failures or self.recovery_timeouts or self.check_failures
                    or self.doubles or self.leftovers or self.lost)

    def rows(self):
        rec = sorted(self.recoveries)
        med = f"{statistics.median(rec):.2f} s" if rec else "-"
        worst = f"{rec[-1]:.2f} s" if rec else "-"
        return [
            ("engine version", self.engine),
            ("cycles (done / planned), seed", f"{self.cycles_done} / {self.cycles_planned}, "
                                              f"{self.seed}"),
            ("kills: worker / master / dockerd restart",
             " / ".join(str(self.kills[k]) for k in KINDS)),
            ("operations", f"{sum(self.ops.values())} ("
                           + ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items())) + ")"),
            ("failures during recovery windows (expected)", str(len(self.window_failures))),
            ("failures after recovery", str(len(self.failures))),
            (f"recoveries over {self.recovery_bound:g} s (failures)",
             str(len(self.recovery_timeouts))),
            ("recovery time: median / worst", f"{med} / {worst}"),
            (f"failed checks (address, gateway, port) in {self.checks} checks",
             str(len(self.check_failures))),
            ("addresses held twice", str(len(self.doubles))),
            ("leftovers after removing everything", str(len(self.leftovers))),
            ("lost networks", str(len(self.lost))),
        ]


def render_table(results, title=None):
    """The results as a markdown table, then the first of each kind of problem."""
    out = [title or f"Soak, {time.strftime('%Y-%m-%d')}", "", "| measure | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in results.rows()]
    for label, items in (("failures after recovery", results.failures),
                         ("recoveries over the bound", results.recovery_timeouts),
                         ("failed checks", results.check_failures),
                         ("addresses held twice", sorted(results.doubles)),
                         ("leftovers", results.leftovers),
                         ("lost networks", sorted(results.lost)),
                         ("notes", results.notes),
                         ("failures during recovery windows", results.window_failures)):
        if items:
            out += ["", f"{label} (first 20 of {len(items)}):", ""]
            out += [f"- {one_line(i)}" for i in list(items)[:20]]
    return "\n".join(out)


def one_line(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


# -- processes (reads /proc) ------------------------------------------------------------------

def ppid_of(stat):
    """The parent pid from a /proc/PID/stat line (the command may hold spaces and ')')."""
    return int(stat.rsplit(")", 1)[1].split()[1])


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    if ppid_of(f.read()) == pid:
                        out.append(int(p))
            except (OSError, IndexError, ValueError):
                pass
    return sorted(out)


def wait_until(ok, timeout, step=0.2):
    """Whether ok() held within timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if ok():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)


# -- docker ----------------------------------------------------------------------------------

def dk(*args, timeout=OP_TIMEOUT):
    """(ok, stdout or the error) of one docker CLI call; never raises."""
    try:
        p = docker(*args, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"docker {' '.join(args)}: no answer in {timeout} s"
    if p.returncode != 0:
        return False, f"docker {' '.join(args)}: {p.stderr.strip() or p.stdout.strip()}"
    return True, p.stdout.strip()


def port_answers(port):
    """The busybox nc server behind a published port says hi on 127.0.0.1."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(2)
            return s.recv(10).startswith(b"hi")
    except OSError:
        return False


def port_free(port):
    """No one on the host listens on it (portmap's DNAT ports are not sockets: the run's
    own ports are tracked apart)."""
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


# -- the soak ---------------------------------------------------------------------------------

class Soak:
    def __init__(self, opts):
        self.opts = opts
        self.tag = secrets.token_hex(3)
        self.rng = random.Random(f"ops-{opts.seed}")
        self.res = Results(seed=opts.seed, cycles_planned=opts.cycles,
                           recovery_bound=opts.recovery_timeout)
        self.finished = False
        self.server = None
        self.dockerd = None
        self.nets = {}  # name -> (id, subnet), every network this run made and has not removed
        self.gone = {}  # the same, of those it removed
        self.main = []  # the three networks kept all run
        self.extra, self.extra_born, self.serial = None, 0, 0
        self.cni_name = "soak-" + self.tag
        self.bridge = "pycs" + self.tag  # the conflist's bridge: "pyc", a leak check's prefix
        self.endpoints_seen = set()

    def name(self, base):
        self.serial += 1
        return f"soak-{base}{self.serial}-{self.tag}"

    # -- setup ----------------------------------------------------------------------------

    def setup(self):
        self.res.engine = docker("version", "-f", "{{.Server.Version}}")
        self.dockerd = Dockerd()
        make_busybox_image()
        support.record_baseline()
        self.server = PycniServer()
        self.server.start()
        self.record()
        conf_subnet = self.subnet()
        self.server.write_conf(f"10-{self.cni_name}.conflist", {
            "cniVersion": "1.0.0", "name": self.cni_name,
            "plugins": [{"type": "bridge", "bridge": self.bridge, "isGateway": True,
                         "ipMasq": True,
                         "ipam": {"type": "host-local", "dataDir": self.hostlocal(),
                                  "ranges": [[{"subnet": conf_subnet}]],
                                  "routes": [{"dst": "0.0.0.0/0"}]}},
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                        {"type": "firewall"}]})
        self.zc = self.create_network("zc", self.subnet())
        self.create_network("cl", conf_subnet, "-o", f"cni.network={self.cni_name}")
        self.create_network("ip", self.subnet(), "--ipam-driver", self.server.name)
        self.main = list(self.nets)

    def hostlocal(self):
        """The named conflist's host-local data dir."""
        return os.path.join(self.server.root, "hostlocal")

    def subnet(self):
        taken = {s for _, s in list(self.nets.values()) + list(self.gone.values())}
        taken |= set(support.run("ip", "-o", "route", "show", "table", "all",
                                 check=False).stdout.split())
        ok, ids = dk("network", "ls", "-q")
        if ok and ids:
            ok, subnets = dk("network", "inspect", *ids.split(), "-f",
                             "{{range .IPAM.Config}}{{.Subnet}} {{end}}")
            taken |= set(subnets.split()) if ok else set()
        return pick_subnet(self.rng, taken)

    def create_network(self, base, subnet, *args):
        name = f"soak-{base}-{self.tag}"
        docker("network", "create", "-d", self.server.name, "--label", f"{LABEL}={self.tag}",
               "--subnet", subnet, *args, name)
        self.nets[name] = (docker("network", "inspect", name, "-f", "{{.Id}}"), subnet)
        self.record()
        return name

    def record(self):
        """What the next run needs to clean up after this one if it is killed."""
        os.makedirs(os.path.dirname(STATE_FILE), exist_ok=True)
        with open(STATE_FILE, "w") as f:
            json.dump({"tag": self.tag, "name": self.server.name, "root": self.server.root,
                       "pid": self.server.proc.pid, "cni_name": self.cni_name,
                       "bridge": self.bridge,
                       "networks": {**self.nets, **self.gone}}, f)

    # -- the cycles -------------------------------------------------------------------------

    def run(self):
        plan = make_plan(self.opts.cycles, self.opts.kills, self.opts.seed)
        stuck = 0  # kills in a row whose recovery timed out
        for i, kill in enumerate(plan):
            recovered = self.cycle(i, kill)
            self.res.cycles_done = i + 1
            if recovered is not None:
                stuck = 0 if recovered else stuck + 1
            if stuck >= 3:
                self.res.notes.append(f"stopped at cycle {i}: 3 recoveries in a row timed out")
                break
            if self.opts.check_every and (i + 1) % self.opts.check_every == 0:
                self.check(f"cycle {i + 1}")
            if (i + 1) % 50 == 0:
                self.progress(i + 1)

    def progress(self, done):
        r = self.res
        print(f"soak: {done}/{r.cycles_planned} cycles, kills {dict(r.kills)}, "
              f"failures {len(r.window_failures)} in windows / {len(r.failures)} after",
              file=sys.stderr, flush=True)

    def cycle(self, i, kill):
        """One operation, with a kill during it if the plan says so; whether the kill's
        recovery came within the bound (None: no kill)."""
        self.ensure_server(i)
        boxes = self.view()
        networks = list(self.nets)
        op, target = choose_op(self.rng, boxes, networks, self.extra, i - self.extra_born,
                               self.opts.max_containers)
        commands = self.commands(op, target, boxes)
        self.res.ops[op] += 1
        recovered = None
        if kill is None:
            ok, err = self.execute(commands)
            if not ok:
                self.res.failures.append(f"cycle {i} {op}: {err}")
        else:
            ok, err, recovered = self.with_kill(i, kill, commands)
            if not ok:
                self.res.window_failures.append(f"cycle {i} {op} ({kill.kind} kill): {err}")
        self.after(op, target, ok)
        if op in ("netcreate", "netrm"):
            self.sync_networks(i)
        return recovered

    def commands(self, op, target, boxes):
        """The docker CLI calls of an operation."""
        c, n = target.get("container"), target.get("network")
        if op == "run":
            target["container"] = self.name("c")
            port = self.free_port(boxes) if self.rng.random() < 0.3 else None
            restart = ["--restart", "unless-stopped"] if self.rng.random() < 0.3 else []
            return [["run", "-d", "--name", target["container"], "--label",
                     f"{LABEL}={self.tag}", "--network", n, *restart,
                     *(["-p", f"{port}:80"] if port else []), IMAGE, "sh", "-c",
                     SERVER if port else SLEEPER]]
        if op in ("connect", "disconnect"):
            return [["network", op, n, c]]
        if op in ("restart", "stop"):
            return [[op, "-t", "3", c]]
        if op == "start":
            return [["start", c]]
        if op == "rm":
            return [["rm", "-f", c]]
        if op == "netcreate":
            name = self.name("x")
            ipam = ["--ipam-driver", self.server.name] if target["ipam"] else []
            return [["network", "create", "-d", self.server.name, "--label",
                     f"{LABEL}={self.tag}", "--subnet", self.subnet(), *ipam, name]]
        # netrm: off every container first (a stopped one keeps the network in its config)
        return [["network", "disconnect", "-f", n, b.name] for b in boxes if n in b.networks] \
            + [["network", "rm", n]]

    def free_port(self, boxes):
        used = {b.port for b in boxes}
        for _ in range(1000):
            port = self.rng.randint(20000, 40000)
            if port not in used and port_free(port):
                return port
        return None

    def execute(self, commands):
        for args in commands:
            ok, err = dk(*args)
            if not ok:
                return False, err
        return True, ""

    def after(self, op, target, ok):
        if op == "run" and not ok:  # a container that did not start is not kept
            dk("rm", "-f", target["container"])

    def view(self):
        """Docker's view of this run's containers."""
        ok, ids = dk("ps", "-aq", "--filter", f"label={LABEL}={self.tag}")
        if not ok or not ids:
            return []
        try:  # one removed meanwhile: the others are still printed
            p = docker("inspect", *ids.split(), check=False, timeout=OP_TIMEOUT)
            boxes = [parse_container(d) for d in json.loads(p.stdout or "[]")]
        except (ValueError, subprocess.TimeoutExpired):
            return []
        # the probes' containers (recovery, joins) are no part of the work
        boxes = [b for b in boxes if not b.name.startswith(("soak-probe", "soak-join"))]
        self.endpoints_seen |= {a.endpoint for b in boxes for a in b.networks.values()
                                if a.endpoint}
        return boxes

    def sync_networks(self, cycle):
        """The extra network as Docker has it after a create or rm (that may have failed)."""
        ok, out = dk("network", "ls", "--filter", f"label={LABEL}={self.tag}",
                     "--format", "{{.Name}}")
        if not ok:
            return
        now = set(out.split())
        for name in list(self.nets):
            if name not in now and name not in self.main:
                self.gone[name] = self.nets.pop(name)
        for name in now - set(self.nets):
            ok, info = dk("network", "inspect", name, "-f",
                          "{{.Id}} {{(index .IPAM.Config 0).Subnet}}")
            if ok and len(info.split()) == 2:
                self.nets[name] = tuple(info.split())
        extras = [n for n in self.nets if n not in self.main]
        if extras and extras[0] != self.extra:
            self.extra_born = cycle
        self.extra = extras[0] if extras else None
        self.record()

    # -- kills and recovery -----------------------------------------------------------------

    def with_kill(self, i, kill, commands):
        """The operation in a thread, the kill `kill.delay` s into it, then the recovery."""
        result = {}
        t = threading.Thread(target=lambda: result.update(r=self.execute(commands)),
                             daemon=True)
        t.start()
        time.sleep(kill.delay)
        t0 = time.monotonic()
        self.res.kills[kill.kind] += 1
        try:
            {"worker": self.kill_worker, "master": self.kill_master,
             "dockerd": self.restart_dockerd}[kill.kind]()
        except (SoakError, AssertionError, OSError, subprocess.SubprocessError) as e:
            self.res.failures.append(f"cycle {i}: {kill.kind} kill: {e}")
        t.join(OP_TIMEOUT * len(commands) + 30)
        ok, err = result.get("r", (False, "the operation did not end"))
        took = self.recover(t0)
        if took is None:
            self.res.recovery_timeouts.append(
                f"cycle {i}: no `docker run` on {self.zc} {self.opts.recovery_timeout} s "
                f"after a {kill.kind} kill")
            return ok, err, False
        self.res.recoveries.append(took)
        return ok, err, True

    def kill_worker(self):
        master = self.server.proc.pid
        if not wait_until(lambda: children(master), 10):
            raise SoakError(f"the master {master} has no worker to kill")
        for pid in children(master):
            os.kill(pid, signal.SIGKILL)

    def kill_master(self):
        """kill -9 of gunicorn's master alone; its orphaned worker exits by itself (it holds
        the state dir's lock meanwhile); then the server is started again as it was."""
        master = self.server.proc.pid
        workers = children(master)
        os.kill(master, signal.SIGKILL)
        self.server.proc.wait(10)
        if not wait_until(lambda: not any(alive(w) for w in workers), 60):
            self.res.failures.append(f"the orphaned worker {workers} still ran 60 s after "
                                     f"its master's kill -9: killed")
            for w in workers:
                if alive(w):
                    os.kill(w, signal.SIGKILL)
        self.restart_server()

    def restart_server(self):
        last = None
        for _ in range(3):
            if self.server.proc and self.server.proc.poll() is None:
                os.killpg(self.server.proc.pid, signal.SIGKILL)  # ours, not answering
                self.server.proc.wait(10)
            if getattr(self.server, "log", None):
                self.server.log.close()
            try:
                self.server.start()
                self.record()
                return
            except AssertionError as e:
                last = e
                time.sleep(2)
        raise SoakError(f"the server did not start again: {one_line(last, 2000)}")

    def ensure_server(self, i):
        if self.server.proc.poll() is not None:
            self.res.failures.append(f"cycle {i}: the server had exited by itself "
                                     f"({self.server.proc.returncode}): started again")
            self.restart_server()

    def restart_dockerd(self):
        try:
            self.dockerd.restart()
        finally:
            ensure_dockerd(self.dockerd)

    def recover(self, t0):
        """Seconds from t0 until a container starts on the zero-config network, or None."""
        deadline = t0 + self.opts.recovery_timeout
        while time.monotonic() < deadline:
            left = max(5, min(60, deadline - time.monotonic()))
            ok, _ = dk("run", "--rm", "--name", self.name("probe"), "--label",
                       f"{LABEL}={self.tag}", "--network", self.zc, IMAGE, "true",
                       timeout=left)
            if ok:
                return time.monotonic() - t0
            if self.server.proc.poll() is not None:  # it exited, or did not start again
                self.res.failures.append(f"the server was not running {time.monotonic() - t0:.0f}"
                                         f" s into a recovery ({self.server.proc.returncode}): "
                                         f"started again")
                try:
                    self.restart_server()
                except SoakError as e:
                    self.res.failures.append(str(e))
            time.sleep(0.5)
        return None

    # -- checks against Docker's view --------------------------------------------------------------

    def check(self, when):
        """Every running container has the address Docker shows and reaches its gateway,
        its published port answers, no address is held twice, no network is lost."""
        self.res.checks += 1
        try:
            settle(self.server, 120)
        except AssertionError as e:
            self.res.check_failures.append(f"{when}: {e}")
        boxes = self.view()
        for b in boxes:
            if b.running:
                self.check_box(when, b)
        status = self.status()
        addrs = [(b.name, n, a.ip) for b in boxes for n, a in b.networks.items()]
        endpoints = status["Endpoints"] if status else []
        self.res.doubles |= {f"{when}: {d}" for d in held_twice(addrs, endpoints)}
        self.check_networks(when, status)

    def check_box(self, when, box):
        ok, out = dk("exec", box.name, "ip", "-o", "addr", timeout=30)
        if not ok:
            if self.running(box.name):  # not one that stopped meanwhile (--restart)
                self.res.check_failures.append(f"{when}: {out}")
            return
        for net, a in box.networks.items():
            if f"inet {a.ip}/" not in out:
                self.res.check_failures.append(
                    f"{when}: {box.name} has no {a.ip} (Docker's address on {net}): {out}")
            if a.gateway:
                ok, err = dk("exec", box.name, "ping", "-c", "1", "-W", "2", a.gateway,
                             timeout=30)
                if not ok:
                    self.res.check_failures.append(
                        f"{when}: {box.name} does not reach {a.gateway} on {net}: {err}")
        # A container the run left on no network (its last one removed) publishes nothing,
        # on any driver.
        if box.port and box.networks and not wait_until(lambda: port_answers(box.port), 10, 0.5):
            self.res.check_failures.append(
                f"{when}: 127.0.0.1:{box.port} (published by {box.name}, on "
                f"{', '.join(sorted(box.networks))}) does not answer")

    def running(self, container):
        ok, out = dk("inspect", "-f", "{{.State.Running}}", container)
        return ok and out == "true"

    def check_networks(self, when, status):
        """Each network made and not removed: pycni lists it, a new container joins it."""
        known = {n["Id"] for n in status["Networks"]} if status else None
        for name, (nid, _) in self.nets.items():
            if known is not None and nid[:12] not in known:
                self.res.lost.add(f"{name} ({nid[:12]}): not in pycni status ({when})")
                continue
            if not wait_until(lambda: dk("run", "--rm", "--name", self.name("join"),
                                         "--label", f"{LABEL}={self.tag}", "--network",
                                         name, IMAGE, "true")[0], 60, 2):
                self.res.lost.add(f"{name} ({nid[:12]}): no container joins it ({when})")

    def pycni(self, *args, timeout=300):
        return subprocess.run(
            [sys.executable, "-m", "cnm_bridge.cli", *args, "--socket", self.server.socket,
             "--state-dir", self.server.state_dir, "--conf-dir", self.server.conf_dir,
             "--bin-dir", ":".join(support.CNI_BIN_DIRS)],
            capture_output=True, text=True, timeout=timeout)

    def status(self):
        """`pycni status --json` (its exit status says whether the server answers), or
        None if it printed none."""
        p = None
        try:
            p = self.pycni("status", "--json", timeout=120)
            data = json.loads(p.stdout)
        except (ValueError, subprocess.SubprocessError) as e:
            self.res.notes.append(f"pycni status failed: {e} {getattr(p, 'stderr', '')}")
            return None
        self.endpoints_seen |= {e["Endpoint"] for e in data["Endpoints"]}
        return data

    # -- the end ---------------------------------------------------------------------------

    def finish(self):
        """The last check, then everything removed, then what is left."""
        self.check("end")
        self.remove_everything()
        self.res.leftovers = self.leftovers()
        self.finished = True

    def remove_everything(self):
        ok, ids = dk("ps", "-aq", "--filter", f"label={LABEL}={self.tag}")
        ids = ids.split() if ok else []
        for i in range(0, len(ids), 10):  # small batches: moby#43286 on 20.10
            dk("rm", "-f", *ids[i:i + 10])
        try:
            settle(self.server, 300)
        except AssertionError as e:
            self.res.notes.append(str(e))
        for name in list(self.nets):
            if self.remove_network(name):
                self.gone[name] = self.nets.pop(name)
        self.record()

    def remove_network(self, name):
        """docker network rm, waiting out dockerd 20.10's endpoint count (moby#43286), and
        restarting dockerd if that count never drops, as bench.py does."""
        err = ""
        for _ in range(30):
            ok, err = dk("network", "rm", name)
            if ok or "active endpoints" not in err:
                break
            time.sleep(2)
        if not ok and "active endpoints" in err:
            self.res.notes.append(f"{name}: dockerd restarted to remove it (moby#43286)")
            self.restart_dockerd()
            ok, err = dk("network", "rm", name)
        if not ok and "not found" not in err:
            self.res.failures.append(f"cannot remove {name}: {err}")
        return ok or "not found" in err

    def needles(self):
        """What iptables lines about this run's networks contain."""
        everything = {**self.nets, **self.gone}
        return ([f"pycni-{nid[:12]}" for nid, _ in everything.values()]
                + [subnet_needle(s) for _, s in everything.values()] + [self.cni_name])

    def leftovers(self):
        """What is still there of this run after everything was removed."""
        out = []
        try:
            settle(self.server, 120)
        except AssertionError as e:
            out.append(str(e))
        links = support.links()
        everything = {**self.nets, **self.gone}
        out += [f"bridge pc-{nid[:12]} ({name})" for name, (nid, _) in everything.items()
                if f"pc-{nid[:12]}" in links]
        out += [f"link {n}" for n in sorted(support.new_links("pyc"))]
        out += [f"netns {n}" for n in sorted(support.new_netns())]
        out += [f"iptables: {ln}" for ln in support.iptables_mentioning(*self.needles())]
        out += [f"cache {f}" for f in
                support.files_under(os.path.join(self.server.state_dir, "cni", "results"))]
        for d in (os.path.join(self.server.state_dir, "ipam"), self.hostlocal()):
            out += [f"ipam {f}" for f in support.ip_files(d)]
        status = self.status() or {"Endpoints": [], "Networks": []}
        out += [f"pycni endpoint {e['Endpoint']} {e['Addresses']}" for e in status["Endpoints"]]
        out += [f"pycni network {n['Id']} {n['Network']}" for n in status["Networks"]]
        ok, ids = dk("ps", "-aq", "--filter", f"label={LABEL}={self.tag}")
        out += [f"container {c}" for c in ids.split()] if ok else []
        ok, names = dk("network", "ls", "-q", "--filter", f"label={LABEL}={self.tag}")
        out += [f"docker network {n}" for n in names.split()] if ok else []
        return out

    def cleanup(self):
        """Whatever this run made goes, however it ends (called from finally). If this
        fails, the server's dirs and STATE_FILE stay for the next run to finish it."""
        if self.dockerd is not None:
            ensure_dockerd(self.dockerd)
        if self.server is None or self.server.proc is None:
            return
        try:
            if self.server.proc.poll() is not None:
                self.restart_server()  # dockerd needs the driver to remove endpoints
            self.remove_everything()
            found = self.leftovers()
            if not self.finished:  # ended early: what removing everything left
                self.res.leftovers = found
            if found:
                self.pycni("gc", "--min-age", "0")
                remove_host_leftovers([nid for nid, _ in {**self.nets, **self.gone}.values()],
                                      self.bridge, self.needles(), self.endpoints_seen)
        except BaseException:
            self.server.stop()
            print(f"soak: cleanup failed: {STATE_FILE} and {self.server.root} stay; the next "
                  f"run removes what is left", file=sys.stderr)
            raise
        self.server.stop()
        self.server.cleanup()
        forget()


def remove_host_leftovers(network_ids, bridge, needles, endpoints):
    """Bridges, iptables rules and netns that are this run's by name, whatever is left."""
    for link in [f"pc-{nid[:12]}" for nid in network_ids] + [bridge]:
        support.run("ip", "link", "del", link, check=False)
    for table in ("nat", "filter", "mangle"):
        support.delete_rules(table, lambda ln: any(n in ln for n in needles))
    for ns in support.new_netns():
        if any(ns[len("pycni-"):].startswith(e[:12]) for e in endpoints if e):
            support.run("ip", "netns", "del", ns, check=False)


def dockerd_running():
    """A dockerd process exists (maybe not answering yet)."""
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/comm") as f:
                    if f.read().strip() == "dockerd" and alive(int(p)):
                        return True
            except OSError:
                pass
    return False


def ensure_dockerd(dockerd, timeout=120):
    """dockerd answers again: started as it was if none runs (a restart that failed
    half-way), else waited for (never a second one)."""
    if docker_answers():
        return
    if not dockerd_running():
        dockerd.start()
    elif not wait_until(docker_answers, timeout, 1):
        raise SoakError(f"dockerd runs but does not answer after {timeout} s")


def forget():
    if os.path.exists(STATE_FILE):
        os.unlink(STATE_FILE)


def clean_interrupted():
    """A run killed with its machine (or by SIGKILL) left containers on networks whose
    driver is gone: serve that driver again from its dirs, and remove what it made."""
    if not os.path.exists(STATE_FILE):
        return
    with open(STATE_FILE) as f:
        run = json.load(f)
    print(f"soak: removing what the interrupted run {run['tag']} left", file=sys.stderr)
    try:  # its server outlives a killed soak (own session), not a reboot
        with open(f"/proc/{run['pid']}/cmdline", "rb") as f:
            if run["name"].encode() in f.read():
                os.killpg(run["pid"], signal.SIGKILL)
                time.sleep(2)
    except (OSError, ProcessLookupError):
        pass
    server = PycniServer(name=run["name"], root=run["root"])
    server.start()
    try:
        label = f"label={LABEL}={run['tag']}"
        ids = docker("ps", "-aq", "--filter", label).split()
        for i in range(0, len(ids), 10):
            dk("rm", "-f", *ids[i:i + 10])
        for net in docker("network", "ls", "-q", "--filter", label).split():
            dk("network", "rm", net)
    finally:
        server.stop()
        server.cleanup()
    nets = run["networks"].values()
    remove_host_leftovers([nid for nid, _ in nets], run["bridge"],
                          [f"pycni-{nid[:12]}" for nid, _ in nets]
                          + [subnet_needle(s) for _, s in nets] + [run["cni_name"]], [])
    forget()


def parse_args(argv=None):
    first, _, rest = __doc__.partition("\n\n")
    ap = argparse.ArgumentParser(description=" ".join(first.split()), epilog=rest,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--kills", type=int, default=50,
                    help="at least this many kills, spread over the run (default 50)")
    ap.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    ap.add_argument("--check-every", type=int, default=100, metavar="K",
                    help="check against Docker's view every K cycles (0: at the end only)")
    ap.add_argument("--max-containers", type=int, default=12)
    ap.add_argument("--recovery-timeout", type=float, default=120,
                    help="seconds a kill's recovery may take (default 120)")
    ap.add_argument("--out", help="also write the table (markdown) to this file")
    opts = ap.parse_args(argv)
    if not 0 <= opts.kills <= opts.cycles:
        ap.error("--kills must be between 0 and --cycles")
    if opts.seed is None:
        opts.seed = random.randrange(1 << 31)
    return opts


def main(argv=None):
    opts = parse_args(argv)
    problem = support.requirement_problem(need_docker=True)
    if problem:
        sys.exit(f"soak: {problem}")
    # The server and `pycni status` run as child processes: this checkout's code too.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # finally: cleanup
    clean_interrupted()
    soak = Soak(opts)
    print(f"soak: tag {soak.tag}, seed {opts.seed}", file=sys.stderr, flush=True)
    try:
        soak.setup()
        soak.run()
        soak.finish()
    except BaseException as e:
        soak.res.notes.append(f"ended early: {type(e).__name__}: {e}")
        raise
    finally:
        try:
            soak.cleanup()
        finally:
            table = render_table(soak.res)
            print(table, flush=True)
            if opts.out:
                with open(opts.out, "w") as f:
                    f.write(table + "\n")
    return 1 if soak.res.bad() else 0


if __name__ == "__main__":
    sys.exit(main())
