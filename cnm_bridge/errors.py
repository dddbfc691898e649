"""Errors the plugin API turns into {"Err": ...} / {"Error": ...} answers.

Their text is shown to the user by the docker CLI, so it says what is wrong
and, where there is one, what to do about it.
"""

import errno
import sqlite3
import subprocess


class DriverError(Exception):
    """Base class: anything the user can act on."""


class BadRequest(DriverError):
    """A request body that does not match the protocol."""


class UnsupportedOption(DriverError):
    """A network option pycni does not know or cannot honour."""


class NotFound(DriverError):
    """An id pycni has no record of."""


class HostError(Exception):
    """Something on the host (netns, links, iptables, sockets) could not be done."""


def explain_host_trouble(e):
    """The answer for an exception the host, not pycni, caused (a command that hangs, a
    locked or failing store, a full disk), naming the problem and the fix; None for any
    other exception. Pure: it reads the exception only."""
    if isinstance(e, subprocess.TimeoutExpired):
        cmd = e.cmd if isinstance(e.cmd, str) else " ".join(str(c) for c in e.cmd)
        what = cmd.split()[0] if cmd else "a command"
        hint = (" (another program holds the xtables lock, /run/xtables.lock, or the "
                "firewall is reloading?)" if what.endswith("tables") else "")
        return (f"pycni: {what} did not finish within {e.timeout:g} s{hint}; see what "
                f"holds it and retry: `{cmd}`")
    if isinstance(e, sqlite3.OperationalError):
        text = str(e)
        if "locked" in text or "busy" in text:
            return ("pycni: pycni's store is locked by another process for longer than its "
                    "timeout (a `pycni gc` running long, or a second pycni on the same "
                    "state dir?); check `pycni status` and retry")
        if "disk I/O error" in text:
            return ("pycni: pycni's store could not be written (disk I/O error): check the "
                    "state dir's disk (dmesg) and retry; `pycni doctor` checks the store")
        if "full" in text:
            return ("pycni: pycni's store cannot grow (database or disk is full): free "
                    "space on the state dir's file system and retry")
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"pycni: {e.strerror} ({e.filename or 'writing pycni state or a CNI file'}): "
                f"free space on that file system and retry")
    if isinstance(e, OSError) and e.errno == errno.EROFS:
        return (f"pycni: {e.strerror} ({e.filename or 'writing pycni state'}): remount it "
                f"read-write, or run pycni with --state-dir on a writable file system")
    return None
