"""Links: moving a container interface between netns, and the host's links.

Side effects only; pycni's logic reaches them through host.Host. What runs on the
path of every `docker run` is a single rtnetlink request each (rtnl.py), and so is
putting a link (or a stand-in) back for DEL.
"""

import contextlib
import ipaddress
import os
import socket
import threading
import time

from . import rtnl
from .netns import NetnsError, host_netns_fd

SYS_NET = "/sys/class/net"
_moves = threading.local()


def move_seconds():
    """Seconds this thread spent moving links between netns since the last reset: a move
    is the kernel's time, not pycni's, so it is reported apart from pycni's own work."""
    return getattr(_moves, "seconds", 0.0)


def reset_move_seconds():
    _moves.seconds = 0.0


def _index(name):
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _hand_out(ifname, tmpname, host_fd, want_mac):
    index = _index(ifname)
    if index is None:
        raise NetnsError(f"CNI created no interface {ifname!r} in the scratch netns")
    mac = rtnl.link_mac(ifname) if want_mac else None
    # One message: the kernel renames while it moves (and a move takes the link down).
    started = time.perf_counter()
    try:
        rtnl.move_link(index, tmpname, host_fd)
    except rtnl.RtnlError as e:
        raise NetnsError(f"move {tmpname} to the host netns: {e.strerror}") from None
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


STAND_IN_PEER = "pycni-standin"


def _take_back(ifname, addresses):
    index = _index(ifname)
    if index is None:
        # The real link is gone (the container's netns died with it); a stand-in with
        # the same addresses still lets the bridge plugin's DEL find the addresses
        # whose masquerade rules it must remove. A veth pair, since not every kernel
        # has the dummy module; the netns is DEL's own, so one peer name serves.
        try:
            rtnl.add_veth(ifname, STAND_IN_PEER)
        except rtnl.RtnlError as e:
            raise NetnsError(f"stand-in link {ifname} for DEL: {e.strerror}") from None
        index = _index(ifname)
    for cidr in addresses:
        with contextlib.suppress(rtnl.RtnlError):  # there already (EEXIST)
            rtnl.add_address(index, ipaddress.ip_interface(cidr))


def take_back(ns, tmpname, ifname, addresses):
    """Before CNI DEL: put the link (or a stand-in) back into `ns` as `ifname`."""
    index = _index(tmpname) if tmpname else None
    if index is not None:
        fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            rtnl.move_link(index, ifname, fd)
        except rtnl.RtnlError:
            pass  # gone meanwhile: a stand-in is made below
        finally:
            os.close(fd)
    ns.run_on_thread(_take_back, ifname, addresses)


def delete_link(name):
    """Delete a link of this thread's netns if it exists; True if something was deleted."""
    index = _index(name)
    if index is None:
        return False
    with contextlib.suppress(rtnl.RtnlError):
        rtnl.delete_link(index)
    return True


def link_exists(name):
    return _index(name) is not None


def link_kind(name):
    """What a host link is: "bridge", the uevent's DEVTYPE ("vlan", "wlan", ...), "device"
    (hardware), or "virtual" (veth, dummy, ...); None if there is no such link."""
    path = os.path.join(SYS_NET, name)
    if not os.path.exists(path):
        return None
    if os.path.isdir(os.path.join(path, "bridge")):
        return "bridge"
    try:
        with open(os.path.join(path, "uevent")) as f:
            for line in f:
                if line.startswith("DEVTYPE="):
                    return line.strip().split("=", 1)[1]
    except OSError:
        pass
    return "device" if os.path.exists(os.path.join(path, "device")) else "virtual"


def bridge_has_ports(name):
    try:
        return bool(os.listdir(os.path.join(SYS_NET, name, "brif")))
    except OSError:
        return False


def free_ifname(ns, prefix="eth"):
    """The lowest `<prefix>N` no link in `ns` is called."""
    taken = set(ns.run(rtnl.link_names))
    n = 0
    while f"{prefix}{n}" in taken:
        n += 1
    return f"{prefix}{n}"


def _clear_default_routes(ifname):
    index = _index(ifname)
    return rtnl.delete_default_routes(index) if index is not None else []


def clear_default_routes(ns, ifname):
    """Remove the default routes through `ifname` in `ns` (CNI's), so that Docker, which
    sets the container's gateway itself and fails on an existing route, can."""
    return ns.run(_clear_default_routes, ifname)


def link_exists_in(ns, ifname):
    return ns.run(_index, ifname) is not None


def link_mac_in(ns, ifname):
    return ns.run(rtnl.link_mac, ifname)
