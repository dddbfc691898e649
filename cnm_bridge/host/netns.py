"""Network namespaces: the NetNS value, and making, pinning and removing them.

Linux network namespaces are per thread, so no fork and no `ip` subprocess is
needed: a thread enters a netns, works, and leaves. On the path of every
`docker run` that thread is the calling thread itself, switched back through
an fd of the process's own netns (NetNS.run); elsewhere it is a short-lived
private thread whose namespace dies with it (NetNS.run_on_thread).
Side effects only; pycni's logic reaches them through host.Host.
"""

import contextlib
import ctypes
import errno
import os
import threading
from dataclasses import dataclass

from ..errors import HostError

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
NSFS_MAGIC = 0x6E736673

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(HostError):
    """A namespace or link operation failed; the message says which and why."""


def _check(ret, what):
    if ret != 0:
        raise NetnsError(f"{what}: {os.strerror(ctypes.get_errno())}")


def _open_host_netns():
    # At import, before any thread of this process can have left it; O_CLOEXEC
    # keeps it from the plugins.
    try:
        return os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


_HOST_NETNS_FD = _open_host_netns()


def host_netns_fd():
    if _HOST_NETNS_FD is None:
        raise NetnsError("cannot open this process's netns (/proc/self/ns/net)")
    return _HOST_NETNS_FD


def _switch_back():
    if _libc.setns(host_netns_fd(), CLONE_NEWNET) != 0:
        # Serving from the wrong netns would be worse than dying: gunicorn starts a
        # new worker, which reconciles.
        os.write(2, b"pycni: cannot return to the host netns; exiting\n")
        os._exit(70)


def _enter_path(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns({path})")
    finally:
        os.close(fd)


def _on_this_thread(enter, fn, *args):
    """fn(*args) with the calling thread switched into another netns by enter(), then back.

    A thread per step would cost more than the step, on the path of every `docker
    run` (docs/architecture.md); returning through an open fd cannot fail short of
    a kernel bug (see _switch_back).
    """
    host_netns_fd()
    enter()
    try:
        return fn(*args)
    finally:
        _switch_back()


def _on_fresh_thread(fn, *args):
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


@dataclass(frozen=True)
class NetNS:
    """A named netns of pycni's, pinned at /run/netns/<name> (as `ip netns add` does)."""

    name: str

    @property
    def path(self):
        return os.path.join(NETNS_DIR, self.name)

    def exists(self):
        return is_netns(self.path)

    def run(self, fn, *args):
        """fn(*args) inside this netns, on the calling thread."""
        return _on_this_thread(lambda: _enter_path(self.path), fn, *args)

    def run_on_thread(self, fn, *args):
        """fn(*args) inside this netns, on a fresh thread (for work that may block)."""
        def body():
            _enter_path(self.path)
            return fn(*args)
        return _on_fresh_thread(body)

    def delete(self):
        """Unmount and remove; the links left inside die with the netns. False if absent."""
        path = self.path
        if not os.path.lexists(path):
            return False
        if _libc.umount2(path.encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point any more
                raise NetnsError(f"umount {path}: {os.strerror(err)}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return True


def _make_mount_point(path):
    os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))


def create(name):
    """A new, empty netns pinned under `name`."""
    ns = NetNS(name)
    _make_mount_point(ns.path)

    def enter():
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")

    def pin():
        _check(_libc.mount(b"/proc/thread-self/ns/net", ns.path.encode(), b"none", MS_BIND,
                           None), f"bind-mount netns to {ns.path}")

    try:
        _on_this_thread(enter, pin)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(ns.path)
        raise
    return ns


def pin(name, source):
    """Pin an existing netns (a container's, at its SandboxKey) under `name` too, so
    it outlives Docker's own mount until pycni has run DEL in it."""
    ns = NetNS(name)
    _make_mount_point(ns.path)
    try:
        _check(_libc.mount(source.encode(), ns.path.encode(), b"none", MS_BIND, None),
               f"bind-mount {source} to {ns.path}")
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(ns.path)
        raise
    return ns


class _Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_long * 15)]


def seen_from(path, root):
    """Docker's host path (a SandboxKey: /var/run/docker/netns/X) as a process that sees the
    host's /run under `root` finds it ("" or "/": the same path). /var/run is /run's
    symlink on the host, which the mount under `root` does not carry."""
    if not root or root == "/":
        return path
    if path.startswith("/var/run/"):
        path = path[len("/var"):]
    return root.rstrip("/") + path


def is_netns(path):
    """True if path is a mounted netns (nsfs): a SandboxKey Docker has already bound."""
    buf = _Statfs()
    try:
        if not os.path.exists(path):
            return False
    except (OSError, ValueError):
        return False
    if _libc.statfs(path.encode(), ctypes.byref(buf)) != 0:
        return False
    return buf.f_type & 0xFFFFFFFF == NSFS_MAGIC
