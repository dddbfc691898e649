"""Network namespaces and links, in process (pyroute2 plus setns).

Linux network namespaces are per thread, so no fork and no `ip` subprocess is
needed: a thread enters a netns, works, and leaves. Off the hot path that
thread is a short-lived private one (_in_thread: the change dies with it); on
the path of every `docker run` it is the calling thread itself, switched back
through an fd of the process's own netns (_on_this_thread). Everything here is
a side effect; the rest of cnm_bridge stays pure.
"""

import contextlib
import ctypes
import errno
import ipaddress
import os
import socket
import struct
import threading
import time

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_NEWLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_moves = threading.local()


def move_seconds():
    """Seconds this thread spent moving links between netns since the last reset.

    A move waits for an RCU grace period in the kernel (15-40 ms here, whatever
    the link), so pycni's timing headers report it apart from its own work.
    """
    return getattr(_moves, "seconds", 0.0)


def reset_move_seconds():
    _moves.seconds = 0.0


def _account_move(seconds):
    _moves.seconds = move_seconds() + seconds


class NetlinkOpError(Exception):
    """A namespace or link operation failed."""


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise NetlinkOpError(f"{what}: {os.strerror(err)}")


def _in_thread(fn, *args):
    """Run fn on a fresh OS thread, so namespace changes die with the thread."""
    box = {}

    def target():
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, name="pycni-netns")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _open_host_netns():
    # At import, before any thread of this process can have left it; O_CLOEXEC
    # keeps it from the plugins.
    try:
        return os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


_HOST_NETNS_FD = _open_host_netns()


def _host_netns_fd():
    if _HOST_NETNS_FD is None:
        raise NetlinkOpError("cannot open this process's netns (/proc/self/ns/net)")
    return _HOST_NETNS_FD


def _on_this_thread(enter, fn, *args):
    """Call fn(*args) with the calling thread switched into another netns by enter(),
    then switch it back.

    The hot path (create_netns and hand_out, once per `docker run`) does this
    instead of _in_thread: starting and joining a thread costs 0.3-0.5 ms in the
    server. Returning to a netns through an open fd cannot fail short of a
    kernel bug; if it ever does, the process exits rather than serve from the
    wrong netns (gunicorn starts a new worker, which reconciles).
    """
    host = _host_netns_fd()
    enter()
    try:
        return fn(*args)
    finally:
        if _libc.setns(host, CLONE_NEWNET) != 0:
            os.write(2, b"pycni: cannot return to the host netns; exiting\n")
            os._exit(70)


def netns_path(name):
    return os.path.join(NETNS_DIR, name)


def create_netns(name):
    """Create a named netns (like `ip netns add`) and return its path."""
    path = netns_path(name)
    os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.close(fd)

    def enter():
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")

    def pin():
        src = "/proc/thread-self/ns/net"
        _check(_libc.mount(src.encode(), path.encode(), b"none", MS_BIND, None),
               f"bind-mount netns to {path}")

    try:
        _on_this_thread(enter, pin)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path


def delete_netns(name):
    """Unmount and remove a named netns; links left inside are destroyed with it."""
    path = netns_path(name)
    if not os.path.exists(path):
        return False
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point any more
            raise NetlinkOpError(f"umount {path}: {os.strerror(err)}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True


def list_netns(prefix=""):
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def _enter(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns({path})")
    finally:
        os.close(fd)


def _in_netns_raw(name, fn, *args):
    """Call fn(*args) inside netns `name`, on this thread (see _on_this_thread)."""
    path = netns_path(name)
    return _on_this_thread(lambda: _enter(path), fn, *args)


def in_netns(name, fn, *args):
    """Call fn(ipr, *args) with an IPRoute socket inside netns `name`."""
    path = netns_path(name)

    def body():
        _enter(path)
        with IPRoute() as ipr:
            return fn(ipr, *args)

    return _in_thread(body)


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
    IPRoute's own machinery costs ~0.7 ms per call here, on the path of every
    `docker run`, for a message the kernel answers in microseconds (plus the move).
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
        raise NetlinkOpError(f"move {newname} to the host netns: {os.strerror(-error)}")


def _hand_out(ifname, tmpname, host_fd, want_mac):
    try:
        # An ioctl on a socket of this thread's netns: far cheaper than a netlink get.
        index = socket.if_nametoindex(ifname)
    except OSError:
        raise NetlinkOpError(f"CNI created no interface {ifname!r} in the scratch netns")
    mac = None
    if want_mac:
        with IPRoute() as ipr:
            link = _get_link(ipr, ifname)
        mac = link.get_attr("IFLA_ADDRESS") if link is not None else None
    # One message: the kernel renames while it moves (and a move takes the link
    # down). Each netns move costs milliseconds of RCU sync, so no extra steps.
    started = time.perf_counter()
    _move_link(index, tmpname, host_fd)
    return mac, time.perf_counter() - started


def hand_out(netns_name, ifname, tmpname, mac=None):
    """Move the container side of a CNI attachment to the host under `tmpname`, down.

    Docker then moves it into the sandbox at Join. Returns its MAC address: `mac`
    when the caller knows it already (CNI results usually report it), else read
    from the link.
    """
    # The target is named by fd, not pid: the calling thread may be the one whose
    # netns /proc/<pid> shows, and it is in the scratch netns right now.
    found, seconds = _in_netns_raw(netns_name, _hand_out, ifname, tmpname, _host_netns_fd(),
                                   not mac)
    _account_move(seconds)
    return mac or found


def _take_back(ipr, tmpname, ifname, addresses):
    idx = _lookup(ipr, ifname)
    if idx is None:
        # The real link is gone (the container's netns died with it); a
        # stand-in with the same addresses still lets the bridge plugin's DEL
        # find the addresses whose masquerade rules it must remove. A veth
        # pair, since not every kernel has the dummy module.
        ipr.link("add", ifname=ifname, kind="veth", peer=ifname + "-peer")
        idx = _lookup(ipr, ifname)
    for cidr in addresses:
        iface = ipaddress.ip_interface(cidr)
        with contextlib.suppress(NetlinkError):
            ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)


def take_back(netns_name, tmpname, ifname, addresses):
    """Before CNI DEL: put the link (or a stand-in) back in the scratch netns as `ifname`."""
    with IPRoute() as ipr:
        idx = _lookup(ipr, tmpname)
        if idx is not None:
            fd = os.open(netns_path(netns_name), os.O_RDONLY)
            try:
                ipr.link("set", index=idx, ifname=ifname, net_ns_fd=fd)
            finally:
                os.close(fd)
    in_netns(netns_name, _take_back, tmpname, ifname, addresses)


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


def bridge_has_ports(ifname):
    with IPRoute() as ipr:
        idx = _lookup(ipr, ifname)
        if idx is None:
            return False
        return any(link.get_attr("IFLA_MASTER") == idx for link in ipr.get_links())


def host_links(prefix=""):
    with IPRoute() as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return sorted(n for n in names if n and n.startswith(prefix))
