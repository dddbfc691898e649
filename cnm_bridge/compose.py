"""The composition root: settings -> store, CNI runtimes, host, attachments, driver, IPAM,
reconciler. `pycni serve` (through app.make_app) and the operator commands build the
same graph here, and nowhere else."""

from dataclasses import dataclass

from cni_runner import CNIRuntime

from .host.host import Host
from .host.security import prepare_state_dir
from .network.attachment import Attachments
from .network.driver import Driver
from .network.ipam import Ipam
from .network.netspec import legacy
from .network.reconcile import Reconciler
from .state.store import Store


@dataclass
class Graph:
    store: Store
    runtime: CNIRuntime
    host: Host
    attachments: Attachments
    driver: Driver
    ipam: Ipam
    reconciler: Reconciler


def build(settings, host=None, defer_delete=None):
    prepare_state_dir(settings)
    # A call waits for SQLite's lock at most a part of its deadline.
    store = Store(settings.db_path, legacy=legacy,
                  busy_timeout=min(30.0, settings.call_deadline / 2 or 30.0))
    runtime = CNIRuntime(settings.bin_dirs, settings.cni_cache_dir,
                         timeout=settings.plugin_timeout)
    host = host or Host(sandbox_root=settings.sandbox_root)
    defer = settings.defer_delete if defer_delete is None else defer_delete
    attachments = Attachments(store, runtime, host, defer_delete=defer)
    driver = Driver(settings, store, runtime, host, attachments)
    # The IPAM driver runs IPAM plugins alone, which touch no shared host state
    # (host-local locks its own dir): no wait behind a container's DEL holding the
    # host-wide lock.
    ipam = Ipam(settings, store, CNIRuntime(settings.bin_dirs, settings.cni_cache_dir,
                                            timeout=settings.plugin_timeout, host_lock=False),
                host)
    reconciler = Reconciler(store, runtime, attachments, driver)
    return Graph(store, runtime, host, attachments, driver, ipam, reconciler)
