"""The host boundary: every side effect of the Docker side on this machine, in one object.

The driver, the attachments, the IPAM driver and the reconciler are given a
Host and call nothing else that touches the host (kuryr-libnetwork's
port_driver is the model); the unit tests give them a fake one. CNI plugins
are the other side effect, behind cni_runner.CNIRuntime.
"""

import errno
import logging
import os
import socket
import subprocess

from .. import names
from ..errors import HostError
from . import hostrules, iptables, links, netns, routes

log = logging.getLogger(__name__)
SOCK_TYPES = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}
PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
ROUTE_FILE = "/proc/net/route"
BRIDGE_SYSCTL_DIR = "/proc/sys/net/bridge"
DEFAULT_PORT_RANGE = (32768, 60999)  # the kernel's default


class Host:
    def __init__(self, sandbox_root=""):
        """sandbox_root: where this process sees the host's /run (the managed plugin's
        mount "docker-run" puts dockerd's /run/docker under /host): Docker's SandboxKey
        names a path in dockerd's mount namespace, not in the plugin's."""
        self.sandbox_root = sandbox_root

    # -- network namespaces ---------------------------------------------------------

    def create_netns(self, name):
        """A fresh netns `name`; returns its path."""
        try:
            return netns.create(name).path
        except (netns.NetnsError, OSError) as e:
            raise HostError(f"cannot create netns {name}: {e}") from None

    def pin_netns(self, name, source):
        """Pin the netns at `source` (a container's) under `name`; returns the pin's path."""
        try:
            return netns.pin(name, netns.seen_from(source, self.sandbox_root)).path
        except (netns.NetnsError, OSError) as e:
            raise HostError(f"cannot pin the container's netns {source}: {e}") from None

    def delete_netns(self, name):
        return netns.NetNS(name).delete()

    def netns_path(self, name):
        return netns.NetNS(name).path

    def netns_exists(self, name):
        return netns.NetNS(name).exists()

    def is_netns(self, path):
        """Whether Docker's SandboxKey `path` is a mounted netns, as this process sees it."""
        return netns.is_netns(netns.seen_from(path, self.sandbox_root))

    # -- links ------------------------------------------------------------------------

    def hand_out(self, ns_name, ifname, tmpname, mac=None):
        """Move the container's interface out of netns `ns_name` to the host as `tmpname`."""
        return links.hand_out(netns.NetNS(ns_name), ifname, tmpname, mac)

    def take_back(self, ns_name, tmpname, ifname, addresses):
        links.take_back(netns.NetNS(ns_name), tmpname, ifname, addresses)

    def delete_link(self, name):
        return links.delete_link(name)

    def link_exists(self, name):
        return links.link_exists(name)

    def link_kind(self, name):
        """"bridge", "device", "vlan", "virtual", ...; None if the host has no such link."""
        return links.link_kind(name)

    def bridge_has_ports(self, name):
        return links.bridge_has_ports(name)

    def free_ifname(self, ns_name, prefix="eth"):
        return links.free_ifname(netns.NetNS(ns_name), prefix)

    def clear_default_routes(self, ns_name, ifname):
        return links.clear_default_routes(netns.NetNS(ns_name), ifname)

    def link_exists_in(self, ns_name, ifname):
        return links.link_exists_in(netns.NetNS(ns_name), ifname)

    def link_mac_in(self, ns_name, ifname):
        return links.link_mac_in(netns.NetNS(ns_name), ifname)

    def move_seconds(self):
        return links.move_seconds()

    def reset_move_seconds(self):
        links.reset_move_seconds()

    def onlink_routes(self):
        """The host's on-link IPv4 routes ([routes.Route]), as Docker sees them when it
        checks a pool; none if they cannot be read (the check is a courtesy: Docker's
        own repeat request is caught as well)."""
        try:
            with open(ROUTE_FILE) as f:
                return routes.parse_proc_route(f.read())
        except OSError:
            return []

    # -- iptables -----------------------------------------------------------------------

    def install_rules(self, rules, what):
        """Add pycni's chains and jumps for the rules' families, then the rules."""
        try:
            for family in sorted({r.family for r in rules}):
                for chain in hostrules.base_chains(family):
                    iptables.ensure_chain(chain)
                for rule in hostrules.base_rules(family):
                    iptables.ensure(rule, "pycni's chains")
            for chain in hostrules.chains_of(rules):
                iptables.ensure_chain(chain)
            for rule in rules:
                iptables.ensure(rule, what)
        except iptables.IptablesError as e:
            raise HostError(str(e)) from None

    def remove_rules(self, rules):
        for rule in rules:
            iptables.remove(rule)

    def remove_tagged_rules(self, tag):
        """Every rule whose comment starts with `tag`; how many went."""
        return iptables.remove_tagged(tag)

    def rule_tags(self):
        """The network tags (`pycni-<12 of its id>`) that iptables rules carry."""
        return iptables.tags()

    def remove_base_rules(self, family):
        """pycni's jumps and chains, once no network needs them: the caller knows its own
        networks; another pycni server's on this host keep their rules in the same chains,
        which removing would flush."""
        cmd = "ip6tables" if family == 6 else "iptables"
        if iptables.has_tagged(cmd, ("filter", "mangle"), names.CNI_NETWORK_PREFIX):
            return
        for rule in hostrules.base_rules(family):
            iptables.remove(rule)
        for chain in hostrules.base_chains(family):
            iptables.delete_chain(chain)

    def enable_bridge_netfilter(self):
        """Make bridged traffic (container to container on one bridge) pass iptables, as
        Docker does for its enable_icc=false networks: Docker 28 no longer turns it on for
        every bridge network."""
        if not os.path.isdir(BRIDGE_SYSCTL_DIR):
            try:
                subprocess.run(["modprobe", "br_netfilter"], capture_output=True, timeout=30)
            except OSError:
                pass  # no modprobe: the error below names the module
        for name in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables"):
            try:
                with open(os.path.join(BRIDGE_SYSCTL_DIR, name), "w") as f:
                    f.write("1")
            except OSError as e:
                raise HostError(f"cannot turn on net.bridge.{name} (enable_icc=false needs "
                                f"it; is the br_netfilter module available?): {e}") from None

    # -- ports --------------------------------------------------------------------------

    def port_in_use(self, mapping):
        """True if a host socket holds the port, as docker-proxy's bind would find.

        TCP is probed with SO_REUSEADDR, as Go's listeners (docker-proxy's) set it: a
        port whose last connection sits in TIME-WAIT is free, a listener's is not.
        """
        kind = SOCK_TYPES.get(mapping["protocol"])
        if kind is None:
            return False
        host_ip = mapping.get("hostIP", "")
        family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
        with socket.socket(family, kind) as s:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"),
                        mapping["hostPort"]))
                if kind == socket.SOCK_STREAM:
                    # bind() with SO_REUSEADDR succeeds beside another bound-but-not-
                    # listening socket; listen() is where docker-proxy would fail.
                    s.listen(1)
            except OSError as e:
                if e.errno in (errno.EADDRINUSE, errno.EACCES):
                    return True
                if e.errno == errno.EADDRNOTAVAIL:
                    raise HostError(f"host address {host_ip} is not an address of this "
                                    "host; publish on one of its addresses") from None
                raise
        return False

    def ephemeral_ports(self):
        """The kernel's ephemeral range (net.ipv4.ip_local_port_range), as Docker uses."""
        try:
            with open(PORT_RANGE_FILE) as f:
                low, high = (int(x) for x in f.read().split())
            if 0 < low <= high <= 65535:
                return low, high
        except (OSError, ValueError):
            pass
        return DEFAULT_PORT_RANGE
