"""Deferred teardown: DeleteEndpoint answers at once, CNI DEL runs in the background.

Docker waits on DeleteEndpoint inside `docker stop`/`rm`, yet needs nothing back
from it (it ignores failures too), while the DEL itself (bridge's masquerade
teardown, firewall rules, netns moves) costs time (docs/architecture.md). The endpoint's
row is marked "deleting" before the answer, so a crash only delays the DEL to the
next start. Whatever could collide with a pending DEL waits for it first: a new
endpoint asking for one of its addresses, published ports, the network's removal.
"""

import logging
import queue
import threading
from dataclasses import dataclass

from cni_runner import deadline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    endpoint_id: str
    network_id: str
    cni_name: str
    addresses: frozenset
    has_ports: bool


class Deleter:
    def __init__(self, teardown):
        self._teardown = teardown  # fn(endpoint_id) doing the real work
        self._queue = queue.Queue()
        self._pending = {}
        self._cond = threading.Condition()
        self._thread = None

    def submit(self, pending):
        with self._cond:
            self._pending[pending.endpoint_id] = pending
            if self._thread is None or not self._thread.is_alive():
                # Started lazily: threads do not survive gunicorn's fork.
                self._thread = threading.Thread(target=self._run, name="pycni-deleter",
                                                daemon=True)
                self._thread.start()
        self._queue.put(pending.endpoint_id)

    def _run(self):
        # Not niced: a DEL holds cni_runner's host-wide lock, so a slowed DEL
        # stalls the next ADD (docs/architecture.md, "Deferred DEL").
        while True:
            endpoint_id = self._queue.get()
            try:
                self._teardown(endpoint_id)
            except Exception as e:  # the row stays "deleting": reconciliation retries
                log.error("endpoint %s: deferred DEL failed: %s", endpoint_id[:12], e)
            finally:
                with self._cond:
                    self._pending.pop(endpoint_id, None)
                    self._cond.notify_all()

    def wait_for(self, predicate, timeout=120):
        """Block until no pending deletion matches predicate(Pending); False if one still
        does after `timeout` or the calling thread's deadline, whichever comes first."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not any(predicate(p) for p in self._pending.values()),
                deadline.remaining(timeout))

    def pending(self):
        with self._cond:
            return list(self._pending.values())
