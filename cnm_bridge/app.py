"""Wiring: settings -> store, CNI runtime, driver, IPAM -> Flask app."""

import logging

from cni_runner import CNIRuntime

from .api import create_app
from .driver import Driver
from .ipam import Ipam
from .reconcile import Reconciler
from .security import prepare_state_dir
from .store import Store


def build(settings):
    prepare_state_dir(settings)
    store = Store(settings.db_path)
    runtime = CNIRuntime(settings.bin_dirs, settings.cni_cache_dir,
                         timeout=settings.plugin_timeout)
    driver = Driver(settings, store, runtime, defer_delete=settings.defer_delete)
    # The IPAM driver runs IPAM plugins alone: no shared host state, so no wait
    # behind a container's DEL holding the host-wide lock (which made each
    # ReleaseAddress of `docker rm` wait ~35 ms here).
    ipam = Ipam(settings, store, CNIRuntime(settings.bin_dirs, settings.cni_cache_dir,
                                            timeout=settings.plugin_timeout, host_lock=False))
    return driver, ipam


def make_app(settings):
    driver, ipam = build(settings)
    # Before the socket exists: finish or undo whatever a crash left half-made.
    reconciler = Reconciler(driver.store, driver.runtime, driver, ipam)
    reconciler.local()
    app = create_app(driver, ipam)
    app.config["reconciler"] = reconciler
    app.config["driver"] = driver
    # Bounded before it is read: werkzeug answers 413 past this.
    app.config["MAX_CONTENT_LENGTH"] = 2 << 20
    logging.getLogger("pycni").info(
        "pycni ready: conf dir %s, plugin dirs %s, state dir %s", settings.conf_dir,
        ":".join(settings.bin_dirs), settings.state_dir)
    return app
