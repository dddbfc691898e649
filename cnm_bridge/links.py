"""Links: moving a container interface between netns, and the host's links.

Side effects only (pyroute2 and a bare rtnetlink socket); pycni's logic reaches
them through host.Host.
"""

import contextlib
import errno
import ipaddress
import os
import re
import socket
import struct
import threading
import time

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_NEWLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from .netns import NetnsError, host_netns_fd

_moves = threading.local()


def move_seconds():
    """Seconds this thread spent moving links between netns since the last reset: a move
    waits for an RCU grace period in the kernel, reported apart from pycni's own work."""
    return getattr(_moves, "seconds", 0.0)


def reset_move_seconds():
    _moves.seconds = 0.0


def _lookup(ipr, ifname):
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def _get_link(ipr, ifname):
    """The link called ifname, or None: one RTM_GETLINK, no dump of every link."""
    try:
        return ipr.link("get", ifname=ifname)[0]
    except NetlinkError as e:
        if e.code == errno.ENODEV:
            return None
        raise


def _move_link(index, newname, netns_fd):
    """Rename link `index` of this thread's netns and move it to the netns of `netns_fd`.

    One RTM_NEWLINK on a bare rtnetlink socket, encoded by pyroute2's ifinfmsg:
    IPRoute's own machinery (socket set-up, its event loop) costs more than the
    message itself, on the path of every `docker run`.
    """
    msg = ifinfmsg()
    msg["header"]["type"] = RTM_NEWLINK
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
    msg["header"]["sequence_number"] = 1
    msg["index"] = index
    msg["attrs"] = [("IFLA_IFNAME", newname), ("IFLA_NET_NS_FD", netns_fd)]
    msg.encode()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.send(msg.data)
        while True:
            reply = sock.recv(65536)
            _, kind, _, seq, _, error = struct.unpack_from("=IHHIIi", reply)
            if kind == NLMSG_ERROR and seq == 1:
                break
    if error:
        raise NetnsError(f"move {newname} to the host netns: {os.strerror(-error)}")


def _hand_out(ifname, tmpname, host_fd, want_mac):
    try:
        # An ioctl on a socket of this thread's netns: far cheaper than a netlink get.
        index = socket.if_nametoindex(ifname)
    except OSError:
        raise NetnsError(f"CNI created no interface {ifname!r} in the scratch netns")
    mac = None
    if want_mac:
        with IPRoute() as ipr:
            link = _get_link(ipr, ifname)
        mac = link.get_attr("IFLA_ADDRESS") if link is not None else None
    # One message: the kernel renames while it moves (and a move takes the link down).
    started = time.perf_counter()
    _move_link(index, tmpname, host_fd)
    return mac, time.perf_counter() - started


def hand_out(ns, ifname, tmpname, mac=None):
    """Move the container side of an attachment out of `ns` to the host as `tmpname`, down.

    Docker then moves it into the sandbox at Join. Returns its MAC: `mac` when the
    caller knows it already, else read from the link.
    """
    # The target is named by fd, not pid: the calling thread may be the one whose
    # netns /proc/<pid> shows, and it is in the scratch netns right now.
    found, seconds = ns.run(_hand_out, ifname, tmpname, host_netns_fd(), not mac)
    _moves.seconds = move_seconds() + seconds
    return mac or found


def _take_back(tmpname, ifname, addresses):
    with IPRoute() as ipr:
        idx = _lookup(ipr, ifname)
        if idx is None:
            # The real link is gone (the container's netns died with it); a stand-in
            # with the same addresses still lets the bridge plugin's DEL find the
            # addresses whose masquerade rules it must remove. A veth pair, since not
            # every kernel has the dummy module.
            ipr.link("add", ifname=ifname, kind="veth", peer=ifname + "-peer")
            idx = _lookup(ipr, ifname)
        for cidr in addresses:
            iface = ipaddress.ip_interface(cidr)
            with contextlib.suppress(NetlinkError):
                ipr.addr("add", index=idx, address=str(iface.ip),
                         prefixlen=iface.network.prefixlen)


def take_back(ns, tmpname, ifname, addresses):
    """Before CNI DEL: put the link (or a stand-in) back into `ns` as `ifname`."""
    with IPRoute() as ipr:
        idx = _lookup(ipr, tmpname)
        if idx is not None:
            fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                ipr.link("set", index=idx, ifname=ifname, net_ns_fd=fd)
            finally:
                os.close(fd)
    ns.run_on_thread(_take_back, tmpname, ifname, addresses)


def delete_link(ifname):
    """Delete a host link if it exists; True if something was deleted."""
    with IPRoute() as ipr:
        idx = _lookup(ipr, ifname)
        if idx is None:
            return False
        with contextlib.suppress(NetlinkError):
            ipr.link("del", index=idx)
        return True


def link_exists(ifname):
    with IPRoute() as ipr:
        return _lookup(ipr, ifname) is not None


def link_mac(ifname):
    """A host link's MAC, or ""."""
    with IPRoute() as ipr:
        link = _get_link(ipr, ifname)
    return (link.get_attr("IFLA_ADDRESS") or "") if link is not None else ""


def bridge_has_ports(ifname):
    with IPRoute() as ipr:
        idx = _lookup(ipr, ifname)
        if idx is None:
            return False
        return any(link.get_attr("IFLA_MASTER") == idx for link in ipr.get_links())


def _names():
    with IPRoute() as ipr:
        return [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]


def free_ifname(ns, prefix="eth"):
    """The lowest `<prefix>N` no link in `ns` is called."""
    taken = {int(m.group(1)) for n in ns.run_on_thread(_names) if n
             for m in [re.fullmatch(re.escape(prefix) + r"(\d+)", n)] if m}
    n = 0
    while n in taken:
        n += 1
    return f"{prefix}{n}"


def _clear_default_routes(ifname):
    removed = []
    with IPRoute() as ipr:
        idx = _lookup(ipr, ifname)
        if idx is None:
            return removed
        for family in (socket.AF_INET, socket.AF_INET6):
            for route in ipr.get_routes(family=family, oif=idx):
                if route["dst_len"] == 0 and route.get_attr("RTA_TABLE") in (None, 254):
                    with contextlib.suppress(NetlinkError):
                        ipr.route("del", family=family, dst_len=0, oif=idx,
                                  gateway=route.get_attr("RTA_GATEWAY"))
                        removed.append(family)
    return removed


def clear_default_routes(ns, ifname):
    """Remove the default routes through `ifname` in `ns` (CNI's), so that Docker, which
    sets the container's gateway itself and fails on an existing route, can."""
    return ns.run_on_thread(_clear_default_routes, ifname)


def _link_mac_here(ifname):
    with IPRoute() as ipr:
        link = _get_link(ipr, ifname)
    return (link.get_attr("IFLA_ADDRESS") or "") if link is not None else ""


def link_mac_in(ns, ifname):
    return ns.run_on_thread(_link_mac_here, ifname)
