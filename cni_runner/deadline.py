"""A caller's deadline for the plugin runs of one thread (libcni takes a Go context).

A server answering a caller that gives up after N seconds (dockerd gives a plugin call 30 s)
sets one per call: every plugin exec the thread starts inside it is killed by then, and
anything else that waits can ask what is left, so the call ends with the runtime's own
error instead of the caller's timeout and work finished for nobody."""

import threading
import time

_local = threading.local()


def start(seconds):
    """From now on, this thread's plugin runs end within `seconds` (None or <= 0: no limit)."""
    _local.at = time.monotonic() + seconds if seconds and seconds > 0 else None


def clear():
    _local.at = None


def remaining(default):
    """`default` seconds, or less if this thread's deadline comes sooner (never below 0)."""
    at = getattr(_local, "at", None)
    if at is None:
        return default
    return max(0.0, min(default, at - time.monotonic()))
