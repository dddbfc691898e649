"""Integration fixtures: a Driver wired to the real CNI plugins, private dirs, no Docker."""

import os
import secrets

import pytest

import support
from cnm_bridge.host import links, netns
from cnm_bridge.compose import build
from cnm_bridge.settings import Settings


class Host:
    """Netns this test made, removed afterwards whatever happens."""

    def __init__(self):
        self.netns = []
        self.links = []

    def add_netns(self, prefix="pyct"):
        name = f"{prefix}-{secrets.token_hex(4)}"
        netns.create(name)
        self.netns.append(name)
        return name

    def cleanup(self):
        for name in self.netns:
            netns.NetNS(name).delete()
        for link in self.links:
            links.delete_link(link)


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
    graph = build(settings, defer_delete=False)
    yield settings, graph.store, graph.driver, graph.ipam
    # Whatever a failed test left: endpoints and networks through the driver itself.
    from cnm_bridge.docker.protocol import NetworkRef
    for net in graph.store.networks():
        try:
            graph.driver.delete_network(NetworkRef(net.id))
        except Exception:
            pass
    for ep in graph.store.endpoints():
        netns.NetNS(ep.netns).delete()
        if ep.tmp_ifname:
            links.delete_link(ep.tmp_ifname)
