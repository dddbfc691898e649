"""Reconciliation: finish or undo what was in flight, and tear down what Docker forgot.

`local()` needs nothing but the host: it runs at start-up, before the socket
accepts a call, and cleans what a crash (kill -9, reboot) left half-made.
`with_docker()` asks dockerd which networks and endpoints still exist and tears
down the rest. It runs in `pycni gc`, which the server starts as a child
process every PYCNI_RECONCILE_INTERVAL seconds: never inside a request handler
(dockerd may be waiting on this very plugin), and the Docker SDK never loaded
in the server's memory.
"""

import logging
import subprocess
import sys
import threading
import time

from cni_runner import CNIError, RuntimeConf, conflist_from_bytes

from . import names
from .bootid import current_boot_id
from .errors import DriverError, HostError

log = logging.getLogger(__name__)


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
                elif ep.state in ("creating", "deleting") and ep.changed_unix <= cutoff:
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

    def with_docker(self, docker, min_age=60):
        """Tear down networks and endpoints that dockerd no longer has.

        `docker` answers network(id) -> {"Containers": {...}} or None if it is gone.
        """
        report = {"networks": 0, "endpoints": 0, "errors": 0}
        cutoff = time.time() - min_age
        with self.lock:
            for spec in self.store.networks():
                info = docker.network(spec.id)
                if info is None:
                    # dockerd records a network only after CreateNetwork answered: a young
                    # one may just not be there yet.
                    if (self.store.network_created(spec.id) or 0) <= cutoff:
                        self._try(report, "networks", self.driver.delete_network, _Ref(spec.id))
                    continue
                live = {c.get("EndpointID") for c in (info.get("Containers") or {}).values()}
                for ep in self.store.endpoints(spec.id):
                    # Judged by the last state change: an endpoint that joined just now
                    # is starting, and dockerd lists it only once its container runs.
                    if ep.id in live or ep.state != "ready" or ep.changed_unix > cutoff:
                        continue
                    self._try(report, "endpoints", self.attachments.release, ep.id, cutoff)
        self._log("docker", report)
        return report

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


class _Ref:
    def __init__(self, network_id):
        self.network_id = network_id


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


def gc_argv(settings, min_age=60):
    """The command line of `pycni gc` for the same dirs as this server."""
    return [sys.executable, "-m", "cnm_bridge.cli", "gc", "--min-age", str(min_age),
            "--conf-dir", settings.conf_dir, "--state-dir", settings.state_dir,
            "--bin-dir", ":".join(settings.bin_dirs),
            "--plugin-timeout", str(settings.plugin_timeout)]


