"""Reconciliation: finish or undo what was in flight, and tear down what Docker forgot.

`local()` needs nothing but the host: it runs at start-up, before the socket
accepts a call, and cleans what a crash (kill -9, reboot) left half-made.
`with_docker()` asks dockerd which networks and endpoints still exist and tears
down the rest; `collect()` then does libcni's GC of every list pycni runs. It runs in `pycni gc`, which the server starts as a child
process every PYCNI_RECONCILE_INTERVAL seconds: never inside a request handler
(dockerd may be waiting on this very plugin), and the Docker SDK never loaded
in the server's memory.
"""

import logging
import subprocess
import sys
import threading
import time

from cni_runner import CNIError, RuntimeConf, conflist_from_bytes, conflist_from_dict

from .. import names
from ..errors import DriverError, HostError
from ..state.bootid import current_boot_id
from ..state.records import EndpointState

log = logging.getLogger(__name__)
# What gc keeps in the store between its passes: the ID of the dockerd it trusts, and
# what the last pass found gone.
DOCKERD_KEY = "dockerd_id"
CANDIDATES_KEY = "gc_candidates"


class Reconciler:
    def __init__(self, store, runtime, attachments, driver):
        self.store = store
        self.runtime = runtime
        self.attachments = attachments
        self.driver = driver
        self.lock = threading.Lock()

    def local(self, min_age=0):
        """Undo half-made endpoints and orphan CNI attachments; returns counts.

        Scratch netns and temporary links are looked at only through the store:
        an endpoint's record is written before its netns exists and removed after
        its netns is gone, so a crash never orphans them, and another pycni on
        the same host (another state dir) keeps its own.
        """
        report = {"host_rules": 0, "half_made": 0, "lost": 0, "orphan_attachments": 0,
                  "errors": 0}
        cutoff = time.time() - min_age
        with self.lock:
            for spec in self.store.networks():
                # iptables rules do not survive a reboot; the record does.
                self._try(report, "host_rules", self.driver.reinstall_host_rules, spec.id)
            boot = current_boot_id()
            for ep in self.store.endpoints():
                if ep.boot_id and ep.boot_id != boot:
                    # Made before a reboot: the container's interface is gone and Docker
                    # will not send DeleteEndpoint. Release what CNI holds.
                    self._try(report, "lost", self.attachments.release, ep.id)
                elif (ep.state in (EndpointState.CREATING, EndpointState.DELETING)
                      and ep.changed_unix <= cutoff):
                    self._try(report, "half_made", self.attachments.release, ep.id, cutoff)
            self._orphans(report, min_age)
        self._log("local", report)
        return report

    def _orphans(self, report, min_age):
        endpoints = {ep.id for ep in self.store.endpoints()}
        handles = self.store.handles()
        for entry in self.runtime.cached_attachments():
            cid = entry.container_id
            if cid in endpoints or cid in handles:
                continue
            age = self.runtime.cache_age(entry.network_name, cid, entry.ifname)
            if age is None or age < min_age:
                continue  # may be an ADD in flight in a running server
            if cid.startswith(names.IPAM_HANDLE_PREFIX):
                self._try(report, "orphan_attachments", self._release_ipam, entry)
            else:
                self._try(report, "orphan_attachments", self.attachments.release_orphan, entry)

    def _release_ipam(self, entry):
        self.runtime.delete(conflist_from_bytes(entry.config, "cached config"),
                            RuntimeConf.from_cache(entry))

    def with_docker(self, docker, min_age=60, adopt=False):
        """Tear down networks and endpoints that dockerd no longer has.

        `docker` answers info() -> {"ID": ...} and network(id) -> {"Containers": {...}}
        or None if it is gone. Nothing is deleted on the word of another dockerd than
        the one pycni has known (its ID; `adopt` takes the one answering now, after a
        reinstall), nor on one pass: what two passes in a row find gone goes.
        """
        report = {"networks": 0, "endpoints": 0, "errors": 0, "unconfirmed": 0,
                  "other_dockerd": 0}
        cutoff = time.time() - min_age
        with self.lock:
            daemon = (docker.info() or {}).get("ID") or ""
            known = self.store.get_meta(DOCKERD_KEY)
            if adopt or known is None:
                self.store.put_meta(DOCKERD_KEY, daemon)
            elif known != daemon:
                log.warning("reconcile: dockerd %s answers, not %s, which made pycni's "
                            "networks: nothing deleted; if dockerd was reinstalled, run "
                            "`pycni gc --adopt-dockerd`", daemon or "(no ID)", known)
                report["other_dockerd"] = 1
                self._log("docker", report)
                return report
            networks, endpoints = self._forgotten(docker, cutoff)
            seen = self.store.get_meta(CANDIDATES_KEY) or {}
            if seen.get("dockerd") != daemon:
                seen = {}
            self.store.put_meta(CANDIDATES_KEY, {"dockerd": daemon, "networks": sorted(networks),
                                                 "endpoints": sorted(endpoints)})
            confirmed_nets = networks & set(seen.get("networks", []))
            confirmed_eps = endpoints & set(seen.get("endpoints", []))
            report["unconfirmed"] = (len(networks) + len(endpoints) - len(confirmed_nets)
                                     - len(confirmed_eps))
            for network_id in sorted(confirmed_nets):
                self._try(report, "networks", self.driver.remove_network, network_id)
            for endpoint_id in sorted(confirmed_eps):
                self._try(report, "endpoints", self.attachments.release, endpoint_id, cutoff)
        self._log("docker", report)
        return report

    def collect(self, min_age=60):
        """libcni's GC of every list pycni runs (an endpoint's, its ports'), once what
        Docker forgot is gone: the list's cached attachments that no record holds are
        DELeted (any CNI version), then a 1.1.0+ list's plugins get GC with the
        attachments pycni still holds, so they can free what a lost DEL left (IPAM
        leases, rules). The held set is read under the runtime's exclusive lock (no ADD
        runs then), and a cache entry younger than `min_age` counts as held: pycni's
        IPAM runs without that lock and records its handle just after its ADD."""
        report = {"gc_lists": 0, "gc_deleted": 0, "errors": 0}
        lists = {}
        for spec in self.store.networks():
            for raw in (spec.direct_list, spec.ports_list):
                if raw:
                    lists.setdefault(raw["name"], raw)
        with self.lock:
            for name, raw in sorted(lists.items()):
                try:
                    removed = self.runtime.gc(conflist_from_dict(raw),
                                              lambda name=name: self._held(name, min_age))
                except (CNIError, OSError) as e:
                    report["errors"] += 1
                    log.warning("reconcile: GC of %s failed: %s", name, e)
                    continue
                report["gc_lists"] += 1
                report["gc_deleted"] += len(removed)
        self._log("gc", report)
        return report

    def _held(self, name, min_age):
        """[(container id, ifname)] pycni holds on list `name`: its networks' joined
        endpoints (ADD runs as the endpoint id), and every cached attachment of the list
        that a record knows (an endpoint, or an IPAM handle of a pool on the list) or that
        is too young to judge."""
        held = set()
        for spec in self.store.networks():
            if name in (spec.direct_list["name"], (spec.ports_list or {}).get("name")):
                held |= {(ep.id, ep.ifname) for ep in self.store.endpoints(spec.id)
                         if ep.mode and ep.ifname}
        known = {ep.id for ep in self.store.endpoints()} | self.store.handles()
        for entry in self.runtime.cached_attachments(name):
            age = self.runtime.cache_age(name, entry.container_id, entry.ifname)
            if entry.container_id in known or age is None or age < min_age:
                held.add((entry.container_id, entry.ifname))
        return sorted(held)

    def _forgotten(self, docker, cutoff):
        networks, endpoints = forgotten(self.store, docker, cutoff)
        return set(networks), set(endpoints)

    def _try(self, report, key, fn, *args):
        try:
            if fn(*args) is not False:
                report[key] += 1
        except (CNIError, DriverError, HostError, OSError) as e:
            report["errors"] += 1
            log.warning("reconcile: %s failed: %s", key, e)

    def _log(self, what, report):
        if any(report.values()):
            log.info("reconcile (%s): %s", what,
                     ", ".join(f"{k}={v}" for k, v in report.items() if v))


def background(interval, argv, first_delay=5.0):
    """Run `pycni gc` (argv) as a child process now and then, from a daemon thread."""
    def loop():
        delay = first_delay
        while True:
            time.sleep(delay)
            delay = interval
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                      text=True, timeout=max(interval, 300))
                for line in (proc.stdout + proc.stderr).splitlines():
                    if line.strip():
                        log.info("gc: %s", line.strip())
            except (OSError, subprocess.SubprocessError) as e:
                log.info("reconcile with dockerd skipped: %s", e)

    t = threading.Thread(target=loop, name="pycni-reconcile", daemon=True)
    t.start()
    return t


def forgotten(store, docker, cutoff=float("inf")):
    """([network id], [endpoint id]) the store holds and this dockerd no longer has,
    recorded (networks) or last changed (endpoints) at `cutoff` or before."""
    networks, endpoints = [], []
    for spec in store.networks():
        info = docker.network(spec.id)
        if info is None:
            # dockerd records a network only after CreateNetwork answered: a young
            # one may just not be there yet.
            if (store.network_created(spec.id) or 0) <= cutoff:
                networks.append(spec.id)
            continue
        live = {c.get("EndpointID") for c in (info.get("Containers") or {}).values()}
        # Endpoints judged by the last state change: one that joined just now is
        # starting, and dockerd lists it only once its container runs.
        endpoints += [ep.id for ep in store.endpoints(spec.id)
                      if ep.id not in live and ep.state == EndpointState.READY
                      and ep.changed_unix <= cutoff]
    return networks, endpoints


def gc_argv(settings, min_age=60):
    """The command line of `pycni gc` for the same dirs as this server."""
    return [sys.executable, "-m", "cnm_bridge.cli", "gc", "--min-age", str(min_age),
            "--conf-dir", settings.conf_dir, "--state-dir", settings.state_dir,
            "--bin-dir", ":".join(settings.bin_dirs),
            "--plugin-timeout", str(settings.plugin_timeout)]


