"""`ssl` as the server sees it: a stand-in until something really uses TLS.

pycni serves plain HTTP on a unix socket, yet gunicorn (config, sock, workers) and
Flask (werkzeug.serving, flask.cli) import `ssl` when they are imported. The real
module loads libssl and converts hundreds of constants to enums: ~1.5 MB in each of
gunicorn's two processes (measured in docs/performance.md), for nothing.

What those imports read without TLS is provided here: the defaults of gunicorn's
TLS settings, and the exception classes named in `except` clauses and isinstance
checks. Those classes are never raised, as no TLS socket exists, so they match
nothing, as the real ones would not. Any other attribute (ssl.SSLContext, ...)
loads the real module and makes the stand-in an alias of it: from then on
`ssl.SSLError` is the real class for whoever reads it through the module.
Only names bound before that with `from ssl import X` keep the stand-in, and those
are gunicorn's and werkzeug's checks for TLS errors on their own sockets.
`server.serve` refuses TLS settings, so this holds.
"""

import importlib
import importlib.machinery
import sys
import threading
import types

# Values of CPython's ssl module (_ssl / OpenSSL constants), read by gunicorn's
# config as the defaults of its TLS settings.
CONSTANTS = {"PROTOCOL_TLS": 2, "PROTOCOL_SSLv23": 2, "CERT_NONE": 0, "SSL_ERROR_EOF": 8}


class SSLError(OSError):
    """Stand-in: never raised, so `except ssl.SSLError` matches nothing."""


class SSLZeroReturnError(SSLError):
    pass


class SSLWantReadError(SSLError):
    pass


class SSLWantWriteError(SSLError):
    pass


class SSLSyscallError(SSLError):
    pass


class SSLEOFError(SSLError):
    pass


class SSLCertVerificationError(SSLError, ValueError):
    pass


CLASSES = {c.__name__: c for c in (SSLError, SSLZeroReturnError, SSLWantReadError,
                                   SSLWantWriteError, SSLSyscallError, SSLEOFError,
                                   SSLCertVerificationError)}


class _Stub(types.ModuleType):
    _lock = threading.Lock()

    def __getattr__(self, name):  # only for names not set on the stub
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return getattr(self._load_real(), name)

    def _load_real(self):
        with self._lock:
            real = sys.modules.get("ssl")
            if real is None or real is self:
                sys.modules.pop("ssl", None)
                try:
                    real = importlib.import_module("ssl")
                except BaseException:
                    sys.modules["ssl"] = self
                    raise
            # Readers that hold this module see the real names from now on.
            self.__dict__.update({k: v for k, v in vars(real).items()
                                  if not (k.startswith("__") and k.endswith("__"))})
            return real


def install():
    """Put the stand-in in place of `ssl`, unless the real one is loaded already.
    -> True if the stand-in is (now) what `import ssl` gives."""
    current = sys.modules.get("ssl")
    if isinstance(current, _Stub):
        return True
    if current is not None:
        return False
    spec = importlib.machinery.PathFinder.find_spec("ssl")
    if spec is None:  # a Python without ssl: gunicorn and Flask cope as they do
        return False
    stub = _Stub("ssl", __doc__.split("\n", 1)[0])
    # The real module's spec and file, for whoever asks where ssl comes from.
    stub.__spec__, stub.__file__ = spec, spec.origin
    stub.__dict__.update(CONSTANTS)
    stub.__dict__.update(CLASSES)
    sys.modules["ssl"] = stub
    return True


def real_loaded():
    """Whether the real ssl module has been loaded in this process."""
    return "_ssl" in sys.modules
