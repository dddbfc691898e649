"""`pycni doctor`: every setup mistake pycni can see on this host, each with a one-line fix.

Each check is a function returning Finding(s); `run_doctor` prints them (a table,
--json or --format) and exits 1 when any is not ok. Nothing here changes the
host, except the one probe that asks dockerd to create (and remove) a network
with pycni's IPAM driver, the only way to learn whether dockerd knows it.
"""

import os
import re
import secrets
import shutil
import subprocess
from dataclasses import asdict, dataclass

from cni_runner import CNIRuntime, conflist_from_dict
from cni_runner.config import config_files, load_file
from cni_runner.errors import CNIError, PluginError
from cni_runner.invoke import find_plugin

from .. import names
from ..host import hostrules
from ..host.security import UnsafeSetup, check_dirs
from ..network import reconcile
from .render import render
from .status import server_answers

REFERENCE_PLUGINS = ("bridge", "host-local", "portmap", "static", "tuning")


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""


def _run(*cmd, timeout=60):
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as e:
        return subprocess.CompletedProcess(cmd, 127, "", str(e))


# -- the server and dockerd -----------------------------------------------------------------

def check_server(settings):
    up, why = server_answers(settings.socket)
    if up:
        return [Finding("pycni serving", True, f"{settings.socket} answers")]
    return [Finding("pycni serving", False, f"{settings.socket} does not answer: {why}",
                    "start it: systemctl start pycni (or scripts/install.sh)")]


def check_dockerd(docker, driver):
    if docker is None:
        return [Finding("dockerd running", False, "cannot reach dockerd",
                        "start dockerd: systemctl start docker")]
    out = [Finding("dockerd running", True, f"Docker {docker.version().get('Version', '?')}")]
    probe = f"pycni-doctor-{secrets.token_hex(3)}"
    subnet = f"198.18.{secrets.randbelow(250)}.{secrets.randbelow(60) * 4}/30"
    try:
        net = docker.client.api.create_network(probe, driver=driver, ipam={
            "Driver": driver, "Config": [{"Subnet": subnet}]})
        docker.client.api.remove_network(net["Id"])
        out.append(Finding("dockerd uses pycni", True,
                           f"created and removed a network with -d {driver} --ipam-driver "
                           f"{driver}"))
    except Exception as e:
        msg = str(e)
        if "not found" in msg:
            fix = (f"dockerd finds no plugin {driver!r}: check /run/docker/plugins/"
                   f"{driver}.sock exists (or `docker plugin ls` for the managed plugin)")
        elif "ipam" in msg.lower():
            fix = ("restart dockerd: it learns a plugin's IPAM driver when it starts "
                   "(systemctl restart docker)")
        else:
            fix = "see dockerd's log and pycni's log"
        out.append(Finding("dockerd uses pycni", False, msg.splitlines()[0][:300], fix))
    return out


def check_swarm(docker, settings):
    """A swarm node: Docker serves swarm-scoped networks only from managed plugins."""
    if docker is None:
        return []
    try:
        state = (docker.info().get("Swarm") or {}).get("LocalNodeState", "")
    except Exception:
        return []
    if state != "active":
        return []
    legacy = os.path.dirname(settings.socket) == "/run/docker/plugins"
    if not legacy:
        return [Finding("swarm", True, "this host is a swarm node; pycni runs as a managed "
                                       "plugin, which swarm-scoped networks need")]
    return [Finding("swarm", True,
                    f"this host is a swarm node and pycni runs as a legacy plugin "
                    f"({settings.socket}): it serves local networks; Docker refuses legacy "
                    "plugins for swarm-scoped networks (\"legacy plugin ... is not supported "
                    "in swarm mode\")",
                    "for swarm networks use the managed plugin on every node: docker plugin "
                    "install (see docs/managed-plugin.md, \"Multi-host\")")]


# -- CNI plugins and conflists ----------------------------------------------------------------

def check_plugins(settings, prober):
    out = []
    dirs = [d for d in settings.bin_dirs if os.path.isdir(d)]
    if not dirs:
        return [Finding("CNI plugins", False,
                        f"no plugin dir exists: {':'.join(settings.bin_dirs)}",
                        "apt-get install containernetworking-plugins (or put them in "
                        "/opt/cni/bin)")]
    for plugin in REFERENCE_PLUGINS:
        try:
            path = find_plugin(plugin, settings.bin_dirs)
        except CNIError:
            out.append(Finding(f"CNI plugin {plugin}", False,
                               f"not in {':'.join(settings.bin_dirs)}",
                               "apt-get install containernetworking-plugins"))
            continue
        try:
            versions = prober.supported(path)
            out.append(Finding(f"CNI plugin {plugin}", True,
                               f"{path}, speaks {', '.join(versions)}"))
        except CNIError as e:
            out.append(Finding(f"CNI plugin {plugin}", False, f"{path}: {e}",
                               f"reinstall it, or remove {path}"))
    return out


def check_conflists(settings, prober):
    out = []
    files = config_files(settings.conf_dir)
    if not os.path.isdir(settings.conf_dir):
        return [Finding("conf dir", False, f"{settings.conf_dir} does not exist",
                        f"mkdir -p {settings.conf_dir}")]
    seen = {}
    for path in files:
        try:
            conf = load_file(path, settings.conf_dir)
        except CNIError as e:
            out.append(Finding(f"conflist {os.path.basename(path)}", False, str(e),
                               f"fix or remove {path}"))
            continue
        if conf.name in seen:
            out.append(Finding(f"conflist {os.path.basename(path)}", False,
                               f"network name {conf.name!r} is taken by {seen[conf.name]}, "
                               "which is read first: this file is never used",
                               f"rename the network in {path}, or remove it"))
            continue
        seen[conf.name] = path
        missing = []
        for p in conf.plugins:
            try:
                prober.supported(find_plugin(p.type, settings.bin_dirs))
            except CNIError as e:
                missing.append(str(e))
        if missing:
            out.append(Finding(f"conflist {os.path.basename(path)}", False,
                               "; ".join(missing), "install the plugin, or fix the list"))
        else:
            out.append(Finding(f"conflist {os.path.basename(path)}", True,
                               f"network {conf.name!r}, plugins "
                               f"{', '.join(p.type for p in conf.plugins)}"))
    if not files:
        out.append(Finding("conf dir", True, f"{settings.conf_dir}: no conflists (zero-config "
                                             "networks need none)"))
    return out


def check_cni_status(specs, runtime):
    """CNI 1.1's STATUS of every network pycni holds: one finding for those ready or too
    old to be asked (below 1.1.0: n/a), one per network whose plugin says it cannot add,
    in the plugin's words (its containers fail at `docker run` until it can)."""
    ready, older, out = [], [], []
    for spec in specs:
        label = f"{spec.cni_name} ({spec.id[:12]})"
        try:
            asked = runtime.status(conflist_from_dict(spec.conflist))
        except PluginError as e:
            out.append(Finding(f"CNI STATUS {label}", False,
                               f"plugin {e.plugin} cannot add: {e.msg}"
                               + (f" ({e.details})" if e.details else "") + f" [code {e.code}]",
                               "fix what the plugin names; until then `docker run` on this "
                               "network fails"))
            continue
        except CNIError as e:
            out.append(Finding(f"CNI STATUS {label}", False, str(e),
                               "install the plugin, or fix the list"))
            continue
        (ready if asked else older).append(label)
    if ready or older:
        parts = ([f"ready: {', '.join(ready)}"] if ready else []) + \
            ([f"n/a (below CNI 1.1.0): {', '.join(older)}"] if older else [])
        out.insert(0, Finding("CNI STATUS", True, "; ".join(parts)))
    return out


# -- the kernel and iptables -------------------------------------------------------------------

def check_netfilter(specs):
    out = []
    needs = [s for s in specs if hostrules.needs_bridge_netfilter(s)]
    path = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    value = _read(path)
    if needs and value != "1":
        out.append(Finding("br_netfilter", False,
                           f"{len(needs)} network(s) have enable_icc=false but bridged traffic "
                           f"skips iptables ({path} = {value or 'absent'})",
                           "modprobe br_netfilter && sysctl -w "
                           "net.bridge.bridge-nf-call-iptables=1"))
    else:
        out.append(Finding("br_netfilter", True, f"{path} = {value or 'absent'}"))
    policy = re.search(r"^:FORWARD (\w+)", _run("iptables-save", "-t", "filter").stdout, re.M)
    policy = policy.group(1) if policy else "?"
    missing = []
    for spec in specs:
        for rule in hostrules.network_rules(spec):
            p = _run(rule.command, "-w", "-t", rule.table, "-C", rule.chain, *rule.args)
            if p.returncode != 0:
                missing.append(f"{spec.id[:12]} {rule.table}/{rule.chain}")
    if missing:
        out.append(Finding("pycni's iptables rules", False,
                           f"FORWARD policy {policy}; missing: {', '.join(missing[:5])}"
                           + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""),
                           "restart pycni, or run pycni gc: both install them again"))
    else:
        out.append(Finding("pycni's iptables rules", True,
                           f"FORWARD policy {policy}; every network's rules in place"))
    return out


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _rule_count(cmd):
    if not shutil.which(cmd):
        return None
    p = _run(cmd)
    return sum(1 for ln in p.stdout.splitlines() if ln.startswith("-A ")) \
        if p.returncode == 0 else None


def check_iptables_backend():
    version = _run("iptables", "-V").stdout.strip()
    used = "nf_tables" if "nf_tables" in version else "legacy" if "legacy" in version else "?"
    counts = {"legacy": _rule_count("iptables-legacy-save"),
              "nf_tables": _rule_count("iptables-nft-save")}
    other = "legacy" if used == "nf_tables" else "nf_tables"
    if used != "?" and (counts[other] or 0) > (counts[used] or 0):
        tool = "iptables-legacy" if other == "legacy" else "iptables-nft"
        return [Finding("iptables backend", False,
                        f"`iptables` is {used}, but the host's rules ({counts[other]}) are in "
                        f"{other} (dockerd uses that one)",
                        f"update-alternatives --set iptables /usr/sbin/{tool} (and ip6tables)")]
    return [Finding("iptables backend", True, f"{version or 'iptables'}; rules: "
                    + ", ".join(f"{k} {v}" for k, v in counts.items() if v is not None))]


# -- pycni's own state ---------------------------------------------------------------------------

def check_state_dirs(settings):
    try:
        check_dirs(settings)
    except UnsafeSetup as e:
        return [Finding("dir permissions", False, str(e).split(": ", 1)[-1],
                        "run the chmod/chown it names")]
    return [Finding("dir permissions", True, "state, conf and plugin dirs are root's only")]


def check_store(settings):
    """The store opens and SQLite's quick_check passes."""
    from ..network.netspec import legacy
    from ..state.store import Store, StoreUnusable
    if not os.path.exists(settings.db_path):
        return [Finding("store", True, f"no store yet at {settings.db_path} (made at start)")]
    try:
        Store(settings.db_path, legacy=legacy).verify()
    except StoreUnusable as e:
        return [Finding("store", False, f"{e.path}: {e.reason}", e.fix)]
    return [Finding("store", True, f"{settings.db_path} opens and checks ok")]


def check_forgotten(store, docker):
    if docker is None:
        return []
    try:
        networks, endpoints = reconcile.forgotten(store, docker)
    except Exception:
        return []
    forgotten = ([f"network {n[:12]}" for n in networks]
                 + [f"endpoint {e[:12]}" for e in endpoints])
    if forgotten:
        return [Finding("endpoints Docker knows", False,
                        f"pycni holds what dockerd no longer has: {', '.join(forgotten[:5])}"
                        + (f" and {len(forgotten) - 5} more" if len(forgotten) > 5 else ""),
                        "pycni gc --min-age 0")]
    return [Finding("endpoints Docker knows", True, "every endpoint pycni holds is Docker's")]


def check_leftovers(store, host_links, host_netns):
    eps = store.endpoints()
    known_links = {e.tmp_ifname for e in eps if e.tmp_ifname}
    known_links |= {link for s in store.networks() for link in s.owned_links}
    known_ns = {e.netns for e in eps}
    links = sorted(n for n in host_links if (n.startswith(names.LINK_PREFIX) and
                                             n[3:].isalnum() and len(n) == 15
                                             or n.startswith(names.BRIDGE_PREFIX))
                   and n not in known_links)
    ns = sorted(n for n in host_netns if n.startswith(names.NETNS_PREFIX) and n not in known_ns)
    out = []
    if links:
        out.append(Finding("leftover links", False, f"pycni's links no record knows: "
                           f"{', '.join(links)}",
                           "ip link del " + " ; ip link del ".join(links)))
    if ns:
        out.append(Finding("leftover netns", False, f"pycni's netns no record knows: "
                           f"{', '.join(ns)}", "ip netns del " + " ; ip netns del ".join(ns)))
    if not out:
        out.append(Finding("leftovers", True, "no link or netns of pycni's without a record"))
    return out


def check_orphan_rules(store, rule_tags):
    """iptables rules tagged for a network no record knows: made before a kill that lost
    the record, or a state dir lost (another pycni server's networks look alike)."""
    known = {names.rule_tag(s.id) for s in store.networks()}
    orphans = sorted(t for t in rule_tags if t not in known)
    if not orphans:
        return [Finding("orphan iptables rules", True, "every pycni rule has its network")]
    return [Finding("orphan iptables rules", False,
                    f"rules tagged {', '.join(orphans)}, for networks this state dir has no "
                    f"record of",
                    "unless another pycni server (another state dir) made them: "
                    "`docker network rm` of that network if Docker has it, else `iptables-save "
                    "| grep -- 'pycni-<id> '` and `iptables -t TABLE -D` each line")]


def _host_links():
    try:
        return os.listdir("/sys/class/net")
    except OSError:
        return []


def _host_netns():
    try:
        return os.listdir("/run/netns")
    except OSError:
        return []


def diagnose(settings, docker, driver, prober=None):
    from cni_runner.invoke import VersionProber
    from ..host.host import Host
    from ..network.netspec import legacy
    from ..state.store import Store
    prober = prober or VersionProber(timeout=10)
    findings = check_server(settings)
    if findings[0].ok or docker is None:
        findings += check_dockerd(docker, driver)
    else:
        # dockerd would wait ~15 s for a plugin that does not answer, then fail.
        findings.append(Finding("dockerd uses pycni", False, "not asked: pycni does not answer",
                                findings[0].fix))
    findings += check_swarm(docker, settings)
    findings += check_plugins(settings, prober) + check_conflists(settings, prober)
    findings += check_state_dirs(settings) + check_iptables_backend()
    store_findings = check_store(settings)
    findings += store_findings
    if all(f.ok for f in store_findings) and os.path.exists(settings.db_path):
        store = Store(settings.db_path, legacy=legacy)
        findings += check_netfilter(store.networks()) + check_forgotten(store, docker)
        findings += check_cni_status(store.networks(),
                                     CNIRuntime(settings.bin_dirs, settings.cni_cache_dir,
                                                timeout=settings.plugin_timeout))
        findings += check_leftovers(store, _host_links(), _host_netns())
        findings += check_orphan_rules(store, Host().rule_tags())
    return findings


def run_doctor(settings, opts, docker=None):
    if docker is None:
        from .dockerapi import reach
        docker = reach()
    findings = diagnose(settings, docker, opts.driver)
    rows = [dict(asdict(f), ok="ok" if f.ok else "PROBLEM") for f in findings]
    if opts.json:
        print(render([asdict(f) for f in findings], as_json=True))
    else:
        print(render(rows, template=opts.format, columns=["check", "ok", "detail", "fix"]))
    return 0 if all(f.ok for f in findings) else 1
