"""Reconciliation: finish or undo what was in flight, and tear down what Docker forgot.

`local()` needs nothing but the host: it runs at start-up, before the socket is
bound, and cleans what a crash (kill -9, reboot) left half-made. `with_docker()`
asks dockerd (docker SDK) which networks and endpoints still exist and tears
down the rest; it runs in a background thread and from `pycni gc`, never inside
a request handler, since dockerd may be waiting on this very plugin.
"""

import logging
import os
import threading
import time

from cni_runner import CNIError

from . import netlink, translate
from .bootid import current_boot_id
from .errors import DriverError

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, store, runtime, driver, ipam):
        self.store = store
        self.runtime = runtime
        self.driver = driver
        self.ipam = ipam
        self.lock = threading.Lock()

    def _old(self, path, min_age):
        try:
            return time.time() - os.stat(path).st_mtime >= min_age
        except FileNotFoundError:
            return False

    def local(self, min_age=0):
        """Undo half-made endpoints and orphan CNI attachments; returns counts.

        Scratch netns and temporary links are looked at only through the store:
        an endpoint's row is written before its netns exists and removed after
        its netns is gone, so a crash never orphans them, and another pycni on
        the same host (another state dir) keeps its own.
        """
        report = {"host_rules": 0, "half_made": 0, "lost": 0, "orphan_attachments": 0,
                  "errors": 0}
        with self.lock:
            for net in self.store.networks():
                if net.isolated_bridge or net.masquerade:
                    # iptables rules do not survive a reboot; the record does.
                    self._try(report, "host_rules", self.driver.install_host_rules, net)
            for ep in self.store.endpoints():
                if ep.state in ("creating", "deleting") and \
                        ep.created_unix <= time.time() - min_age:
                    self._try(report, "half_made", self.driver._teardown, ep,
                              self.store.get_network(ep.network_id))
                elif ep.state == "ready" and ep.boot_id and ep.boot_id != current_boot_id():
                    # Made before a reboot: the container's interface is gone and
                    # Docker will not send DeleteEndpoint. Release what CNI holds.
                    self._try(report, "lost", self.driver._teardown, ep,
                              self.store.get_network(ep.network_id))
            endpoints = {ep.id for ep in self.store.endpoints()}
            handles = {h for pool_id in self.store.pools()
                       for h in self.store.addresses(pool_id).values()}
            for entry in self.runtime.cache.entries():
                cid = entry.container_id
                if cid in endpoints or cid in handles:
                    continue
                path = self.runtime.cache.path(entry.network_name, cid, entry.ifname)
                if not self._old(path, min_age):
                    continue  # may be an ADD in flight in a running server
                if cid.startswith("pycni-ipam-"):
                    self._try(report, "orphan_attachments", self.runtime.delete,
                              _conflist(entry), _rt(entry))
                else:
                    self._try(report, "orphan_attachments", self.driver.release_attachment, entry)
        self._log("local", report)
        return report

    def with_docker(self, client, min_age=60):
        """Tear down networks and endpoints that dockerd no longer has."""
        import docker.errors
        report = {"networks": 0, "endpoints": 0, "errors": 0}
        with self.lock:
            for net in self.store.networks():
                try:
                    info = client.api.inspect_network(net.id)
                except docker.errors.NotFound:
                    self._try(report, "networks", self.driver.delete_network, _Ref(net.id))
                    continue
                live = {c.get("EndpointID") for c in (info.get("Containers") or {}).values()}
                cutoff = time.time() - min_age
                for ep in self.store.endpoints(net.id):
                    if ep.id in live or ep.state != "ready" or ep.created_unix > cutoff:
                        continue
                    self._try(report, "endpoints", self.driver._teardown, ep, net)
        self._log("docker", report)
        return report

    def _try(self, report, key, fn, *args):
        try:
            fn(*args)
            report[key] += 1
        except (CNIError, DriverError, netlink.NetlinkOpError, OSError) as e:
            report["errors"] += 1
            log.warning("reconcile: %s failed: %s", key, e)

    def _log(self, what, report):
        if any(report.values()):
            log.info("reconcile (%s): %s", what,
                     ", ".join(f"{k}={v}" for k, v in report.items() if v))


class _Ref:
    def __init__(self, network_id):
        self.network_id = network_id


def _conflist(entry):
    from cni_runner import conflist_from_bytes
    return conflist_from_bytes(entry.config, "cached config")


def _rt(entry):
    from cni_runner import RuntimeConf
    return RuntimeConf(entry.container_id, entry.netns, entry.ifname, entry.cni_args,
                       entry.capability_args)


def docker_client(timeout=10):
    import docker
    return docker.from_env(timeout=timeout)


def background(reconciler, interval, first_delay=5.0, client_factory=docker_client):
    """Run with_docker() now and then, in a daemon thread; failures are only logged."""
    def loop():
        delay = first_delay
        while True:
            time.sleep(delay)
            delay = interval
            try:
                reconciler.with_docker(client_factory())
            except Exception as e:  # dockerd down or restarting: try again later
                log.info("reconcile with dockerd skipped: %s", e)

    t = threading.Thread(target=loop, name="pycni-reconcile", daemon=True)
    t.start()
    return t


def run_once(settings, min_age=60):
    """`pycni gc`: local clean-up and a pass against dockerd, then exit.

    Things younger than `min_age` seconds are left alone: a running server may
    be creating them right now.
    """
    from .app import build
    driver, ipam = build(settings)
    rec = Reconciler(driver.store, driver.runtime, driver, ipam)
    local = rec.local(min_age=min_age)
    try:
        remote = rec.with_docker(docker_client(), min_age=min_age)
    except Exception as e:
        log.error("cannot reach dockerd: %s", e)
        return 1
    print(" ".join(f"{k}={v}" for k, v in {**local, **remote}.items()))
    return 0 if not (local["errors"] or remote["errors"]) else 1


__all__ = ["Reconciler", "background", "run_once", "translate"]
