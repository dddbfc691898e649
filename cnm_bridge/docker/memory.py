"""Keeping the worker's memory where it was once a burst of calls is over.

CPython hands objects above 512 bytes (request bodies, CNI results, plugin
output) to glibc's malloc. With gthread's threads, glibc gives each thread an
arena of its own, and memory freed in an arena mostly stays in the process.
Two arenas are enough for one worker's threads, and a trim once the server has
gone idle gives the rest back (measured in docs/performance.md).
"""

import ctypes
import logging
import threading
import time

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter


def _libc():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def cap_arenas(count=2, libc=None):
    """At most `count` malloc arenas from now on; False where the libc is not glibc."""
    libc = libc or _libc()
    return bool(libc) and libc.mallopt(M_ARENA_MAX, count) == 1


def trim(libc=None):
    """Give freed heap pages back to the kernel; False where the libc cannot."""
    libc = libc or _libc()
    return bool(libc) and libc.malloc_trim(0) == 1


class IdleTrimmer:
    """Trims once per burst: when calls came since the last trim and none for `idle` s.

    `touch()` is called after every request; `run()` is the loop of a daemon thread.
    `clock` and `trim_fn` are seams for tests.
    """

    def __init__(self, idle=2.0, trim_fn=trim, clock=time.monotonic):
        self.idle = idle
        self.trim_fn = trim_fn
        self.clock = clock
        self._last_call = None  # None: nothing since the last trim
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self.trims = 0

    def touch(self):
        with self._lock:
            first = self._last_call is None
            self._last_call = self.clock()
        if first:  # later calls of the burst only push the trim back: no wake-up each
            self._wake.set()

    def due_in(self):
        """Seconds until a trim is due: None when nothing happened since the last one."""
        with self._lock:
            return self._due_in()

    def _due_in(self):
        if self._last_call is None:
            return None
        return max(0.0, self._last_call + self.idle - self.clock())

    def step(self):
        """Trim if due. -> seconds to wait before the next look (None: until a call)."""
        with self._lock:  # look and clear at once: a call meanwhile is not lost
            wait = self._due_in()
            if wait is None or wait > 0:
                return wait
            self._last_call = None
        self.trims += 1
        log.debug("calls stopped %.1f s ago: heap trimmed (%s)", self.idle,
                  "memory given back" if self.trim_fn() else "nothing to give back")
        return None

    def run(self):
        while not self._stopped.is_set():
            self._wake.clear()  # before looking: a touch after this wakes the wait below
            wait = self.step()
            self._wake.wait(wait)

    def start(self):
        threading.Thread(target=self.run, name="pycni-trim", daemon=True).start()
        return self

    def stop(self):
        self._stopped.set()
        self._wake.set()
