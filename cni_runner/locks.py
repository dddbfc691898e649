"""File locks that separate processes honour (flock on a lock dir).

One lock per attachment keeps two operations on the same container apart; a
host-wide lock is taken shared by ADD/DEL/CHECK and exclusive by GC. The
reference plugins race on shared iptables chains and bridge addresses, so by
default ADD/DEL take the host lock exclusively too, as Podman and nerdctl do.
"""

import contextlib
import fcntl
import hashlib
import os


class LockDir:
    def __init__(self, path):
        self.path = path

    def _file(self, name):
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        return os.open(os.path.join(self.path, name), os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def _flock(self, name, mode):
        fd = self._file(name)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def attachment(self, network, container_id, ifname):
        return self.bucket("att", f"{network}\0{container_id}\0{ifname}")

    def attachments(self, keys):
        """The locks of many attachments ((network, container_id, ifname) each), for GC:
        each lock file once (keys share them), in one order every caller uses, so two
        such holders cannot wait on each other."""
        files = sorted({self._bucket_file("att", f"{n}\0{c}\0{i}") for n, c, i in keys})
        stack = contextlib.ExitStack()
        for name in files:
            stack.enter_context(self._flock(name, fcntl.LOCK_EX))
        return stack

    def bucket(self, prefix, key, buckets=256):
        """An exclusive lock shared by the keys that hash alike: a bounded number of lock
        files, however many containers come and go. Never nest two of one prefix."""
        return self._flock(self._bucket_file(prefix, key, buckets), fcntl.LOCK_EX)

    @staticmethod
    def _bucket_file(prefix, key, buckets=256):
        n = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % buckets
        return f"{prefix}-{n:03d}.lock"

    def host(self, exclusive):
        return self._flock("host.lock", fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
