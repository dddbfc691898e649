"""Where an endpoint's CNI runs: two strategies behind attachment.Attachments.

Handoff (the container's netns does not exist yet at Join): CNI ADD in a
scratch netns pycni makes; the interface is moved out to the host under a
temporary name and handed to Docker, which moves it into the container,
names it ethN and sets its address, MAC and routes. What CNI set inside the
scratch netns that does not travel with the interface (sysctls, rules) is lost.

Direct (the container's netns is mounted at the SandboxKey at Join): pycni pins
that netns under its own name, so that it outlives the container until DEL,
and CNI ADD runs in it as the lowest free ethN (or the name the user asked
for). No move; Docker is told only the gateway, and sets the default route
itself (the one CNI made is removed first: Docker fails on an existing one).
"""

import logging

from ..errors import UnsupportedOption
from ..state.records import AttachMode
from . import conflists
from .answers import container_mac

log = logging.getLogger(__name__)


class Handoff:
    mode = AttachMode.HANDOFF

    def __init__(self, host):
        self.host = host

    def prepare(self, ep, sandbox_key):
        """A fresh scratch netns; the interface is eth0 in it. -> (CNI_NETNS, CNI_IFNAME)."""
        self.host.delete_netns(ep.netns)
        if ep.ifname and ep.ifname != "eth0":
            # Docker names a handed-over interface itself (ethN): the remote driver API
            # has no way to ask for a name.
            log.warning("endpoint %s: interface name %s not applied: Docker names the "
                        "interface when pycni hands it over", ep.id[:12], ep.ifname)
        return self.host.create_netns(ep.netns), "eth0"

    def settle(self, ep, result, clear_gateway):
        """After ADD: the interface goes to the host, down, under its temporary name."""
        return self.host.hand_out(ep.netns, ep.ifname, ep.tmp_ifname,
                                  container_mac(result, ep.ifname))

    def srcname(self, ep):
        return ep.tmp_ifname

    def before_del(self, ep, conflist_raw, addresses):
        """Before DEL: a netns to run it in, and the link in it if a plugin needs it.

        By DeleteEndpoint Docker has moved the link back to the host under its
        temporary name. Only lists whose plugins look for the link at DEL get it back
        (bridge or ptp with ipMasq find the addresses whose masquerade to remove
        on it; a veth stand-in carries them if the link died with the container).
        Otherwise pycni deletes it now, outside cni_runner's host-wide lock: a
        link's deletion waits for the kernel's RCU sync, which the bridge plugin's
        DEL would otherwise spend holding that lock while the next ADD waits.
        """
        path = self._netns(ep)
        try:
            if conflists.del_needs_link(conflist_raw):
                self.host.take_back(ep.netns, ep.tmp_ifname, ep.ifname, addresses)
            else:
                self.host.delete_link(ep.tmp_ifname)
        except Exception as e:
            log.warning("attachment %s: could not prepare its link for DEL: %s", ep.id[:12], e)
        return path

    def _netns(self, ep):
        if self.host.netns_exists(ep.netns):
            return self.host.netns_path(ep.netns)
        # DEL must run in a netns: bridge removes masquerade rules only for addresses
        # it finds on the link there.
        return self.host.create_netns(ep.netns)

    def cleanup(self, ep):
        self.host.delete_netns(ep.netns)
        if ep.tmp_ifname:
            self.host.delete_link(ep.tmp_ifname)


class Direct(Handoff):
    mode = AttachMode.DIRECT

    def prepare(self, ep, sandbox_key):
        """Pin the container's netns; pick the interface's name in it (the one asked for,
        or the lowest free ethN). -> (CNI_NETNS, CNI_IFNAME)."""
        self.host.delete_netns(ep.netns)
        path = self.host.pin_netns(ep.netns, sandbox_key)
        if not ep.ifname:
            return path, self.host.free_ifname(ep.netns)
        if self.host.link_exists_in(ep.netns, ep.ifname):
            # Before any plugin runs: the ADD would fail on it, and the DEL that cleans
            # up after a failed ADD would delete the container's own interface.
            raise UnsupportedOption(
                f"interface {ep.ifname!r} already exists in the container (another "
                f"network's); ask for a name it does not have with --driver-opt "
                f"com.docker.network.endpoint.ifname=NAME, or leave the option out")
        return path, ep.ifname

    def settle(self, ep, result, clear_gateway):
        """After ADD: Docker sets the default route from Join's Gateway; CNI's goes."""
        if clear_gateway:
            self.host.clear_default_routes(ep.netns, ep.ifname)
        return container_mac(result, ep.ifname) or self.host.link_mac_in(ep.netns, ep.ifname)

    def srcname(self, ep):
        return None

    def before_del(self, ep, conflist_raw, addresses):
        """The pinned netns holds the interface until DEL; if it is gone (a reboot), DEL
        runs in an empty one, with a stand-in if a plugin needs the link."""
        if self.host.netns_exists(ep.netns):
            return self.host.netns_path(ep.netns)
        path = self.host.create_netns(ep.netns)
        if conflists.del_needs_link(conflist_raw):
            try:
                self.host.take_back(ep.netns, "", ep.ifname, addresses)
            except Exception as e:
                log.warning("attachment %s: no stand-in link for DEL: %s", ep.id[:12], e)
        return path
