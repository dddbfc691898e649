"""Integration fixtures: a Driver wired to the real CNI plugins, private dirs, no Docker."""

import os
import secrets

import pytest

import support
from cni_runner import CNIRuntime
from cnm_bridge import netlink
from cnm_bridge.driver import Driver
from cnm_bridge.ipam import Ipam
from cnm_bridge.settings import Settings
from cnm_bridge.store import Store


class Host:
    """Netns this test made, removed afterwards whatever happens."""

    def __init__(self):
        self.netns = []
        self.links = []

    def add_netns(self, prefix="pyct"):
        name = f"{prefix}-{secrets.token_hex(4)}"
        netlink.create_netns(name)
        self.netns.append(name)
        return name

    def cleanup(self):
        for name in self.netns:
            netlink.delete_netns(name)
        for link in self.links:
            netlink.delete_link(link)


@pytest.fixture
def host(needs_root):
    h = Host()
    yield h
    h.cleanup()


@pytest.fixture
def stack(needs_root, tmp_path):
    settings = Settings(socket=str(tmp_path / "sock"), conf_dir=str(tmp_path / "net.d"),
                        bin_dirs=support.CNI_BIN_DIRS, state_dir=str(tmp_path / "state"),
                        plugin_timeout=30)
    os.makedirs(settings.conf_dir)
    store = Store(settings.db_path)
    runtime = CNIRuntime(settings.bin_dirs, settings.cni_cache_dir, timeout=30)
    driver = Driver(settings, store, runtime)
    ipam = Ipam(settings, store, runtime)
    yield settings, store, driver, ipam
    # Whatever a failed test left: endpoints and networks through the driver itself.
    from cnm_bridge.protocol import NetworkRef
    for net in store.networks():
        try:
            driver.delete_network(NetworkRef(net.id))
        except Exception:
            pass
    for ep in store.endpoints():
        netlink.delete_netns(ep.netns)
        netlink.delete_link(ep.tmp_ifname)
