"""The server process without OpenSSL.

`pycni serve` answers HTTP on a unix socket and never speaks TLS, yet loading OpenSSL is
the largest single cost of its memory (docs/performance.md, "Memory"): gunicorn imports
`ssl` for TLS options pycni never sets, and Flask's helpers import `hashlib`, whose
OpenSSL backend initialises libcrypto. `install()`, called by `pycni serve` before
gunicorn is imported, keeps both out of the server's two processes:

- `hashlib` finds its OpenSSL backend missing (`sys.modules["_hashlib"] = None` is how
  the import system marks a module as absent) and uses Python's built-in SHA-2, SHA-1,
  MD5, BLAKE2 and SHA-3, as on a Python built without OpenSSL. pycni's own hashing
  (sha256 of names) gives the same digests either way.
- `ssl` is `_NoTLS`: the constants gunicorn reads at import (its TLS settings'
  defaults) and the exception classes its workers name in `except` clauses. Those
  clauses cannot match anything in this process: no TLS socket exists to raise them.
  Any other name loads the real `ssl` into the same module object (logged), so a
  gunicorn that needs more than this list still works, at OpenSSL's cost.

Only the server does this; `pycni gc` and the other commands (the docker SDK, which may
speak TLS to a remote dockerd) load the real modules.
"""

import importlib
import logging
import sys
import threading
import types

log = logging.getLogger(__name__)


class _NoTLS(types.ModuleType):
    """What gunicorn reads from `ssl` when TLS is off; the real module on any other name."""

    _loading = threading.Lock()

    def __init__(self):
        super().__init__("ssl", __doc__)
        # The values are the real module's, so gunicorn's settings print the same defaults.
        self.PROTOCOL_TLS = self.PROTOCOL_SSLv23 = 2
        self.PROTOCOL_TLS_SERVER = 17
        self.CERT_NONE, self.CERT_OPTIONAL, self.CERT_REQUIRED = 0, 1, 2
        self.SSL_ERROR_EOF = 8

        class SSLError(OSError):
            pass

        class SSLWantReadError(SSLError):
            pass

        class SSLEOFError(SSLError):
            pass

        class SSLSocket:  # isinstance() checks: nothing in this process is one
            pass

        for cls in (SSLError, SSLWantReadError, SSLEOFError, SSLSocket):
            cls.__module__ = "ssl"
            setattr(self, cls.__name__, cls)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        with self._loading:  # two threads asking at once load it once
            if "_real" not in self.__dict__:
                log.info("ssl.%s asked for: loading OpenSSL into the server", name)
                del sys.modules["ssl"]
                try:
                    real = importlib.import_module("ssl")
                finally:
                    sys.modules["ssl"] = self
                # Modules that imported the stand-in hold this object: from now on it is
                # the real module in all but identity.
                self.__dict__.update(vars(real), _real=real)
        return getattr(self.__dict__["_real"], name)


def install():
    """Before gunicorn (or anything importing `ssl`/`hashlib`) is imported; idempotent."""
    if sys.modules.get("_hashlib") or "ssl" in sys.modules and not isinstance(
            sys.modules["ssl"], _NoTLS):
        # Something imported them first: what is loaded stays loaded.
        log.warning("OpenSSL was loaded before the server started; it stays in memory")
    sys.modules.setdefault("_hashlib", None)
    sys.modules["ssl"] = sys.modules.get("ssl") or _NoTLS()
