"""One server per state dir and per socket.

Two servers on one state dir would each reconcile the other's endpoints in flight
as half made, and the second's start would unlink the socket the first answers on
(Docker then talks to whichever bound last). So the server holds an flock on a
file in the state dir for its life, taken in gunicorn's master before it binds,
and the socket is claimed only if nothing answers on it.
"""

import errno
import fcntl
import os
import socket

LOCK_NAME = "server.lock"


class AlreadyServing(Exception):
    """Another server has the state dir or the socket; the message names it and the fix."""


class StateDirLock:
    def __init__(self, fd):
        self.fd = fd

    def release(self):
        if self.fd is not None:
            os.close(self.fd)  # the flock goes with the last descriptor (the worker's too)
            self.fd = None


def hold_state_dir(state_dir):
    """The state dir's server lock, held until release() or this process (and the worker
    it forks) exits: the kernel drops an flock with its holder, so a crash leaves none."""
    path = os.path.join(state_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise AlreadyServing(
            f"pycni refuses to start: another pycni server (pid {holder}) serves state dir "
            f"{state_dir}; stop it first (systemctl stop pycni), or give this one "
            f"--state-dir and --socket of its own") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return StateDirLock(fd)


def claim_socket(path):
    """Remove a stale socket file (its server died); refuse one a live server answers on."""
    if not os.path.lexists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(path)
    except OSError as e:
        if e.errno not in (errno.ECONNREFUSED, errno.ENOTSOCK, errno.ENOENT):
            raise AlreadyServing(f"pycni refuses to start: cannot tell whether a server "
                                 f"answers on {path} ({e.strerror}); remove it once no "
                                 f"server uses it") from None
    else:
        raise AlreadyServing(
            f"pycni refuses to start: a server answers on {path} (another pycni, with "
            f"another state dir?); stop it, or give this one --socket of its own")
    finally:
        probe.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def socket_inode(path):
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def unlink_if_ours(path, inode):
    """At stop: the socket file goes only if it is still the one this server bound."""
    if inode is not None and socket_inode(path) == inode:
        os.unlink(path)
