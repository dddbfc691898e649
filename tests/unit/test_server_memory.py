"""What keeps the server's two processes small (docs/performance.md, Memory): the master
does not load the app, and the master freezes its
objects before the fork. Import checks run in a fresh interpreter: this one has
imported everything already."""

import gc
import json
import os
import subprocess
import sys

import pytest

from cnm_bridge.docker import server
from cnm_bridge.settings import Settings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What the master runs before it forks: the command line, the server module, gunicorn's
# config with pycni's options, and the worker class, which the arbiter loads.
MASTER = """
from cnm_bridge import cli
from cnm_bridge.docker import server
from cnm_bridge.settings import Settings
s = Settings(socket="/tmp/pycni-test-none.sock")
app = server._Server(cli._app_factory(s), server._options(s, 16), s.socket)
app.cfg.worker_class
"""
# ... and what the worker adds: the app's modules (make_app itself needs a state dir).
WORKER = MASTER + """
import cnm_bridge.app, cnm_bridge.docker.memory, cnm_bridge.network.reconcile
"""


def run_code(code):
    """`code` in a fresh interpreter (json imported); -> the JSON of its last line."""
    code = "import json\n" + code
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT), check=True, timeout=60)
    return json.loads(out.stdout.splitlines()[-1])


def modules_after(code):
    return set(run_code(code + "\nimport sys\nprint(json.dumps(sorted(sys.modules)))\n"))


def test_the_master_does_not_load_the_app():
    loaded = modules_after(MASTER)
    assert "gunicorn.arbiter" in loaded and "gunicorn.workers.gthread" in loaded
    assert not loaded & {"flask", "werkzeug", "jinja2", "click", "cnm_bridge.app"}


def test_the_worker_loads_the_app():
    loaded = modules_after(WORKER)
    assert "flask" in loaded and "cnm_bridge.docker.api" in loaded


def test_the_master_freezes_its_objects_before_the_fork():
    try:
        server._before_fork(None, None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


# The server as `pycni serve` starts it: the stand-ins first (cli.main does it), then
# both processes' imports; then what a request does with hashing and gunicorn's ssl names.
NO_OPENSSL = """
from cnm_bridge.docker import notls
notls.install()
""" + WORKER + """
import hashlib, ssl, sys
from gunicorn.workers import gthread
from gunicorn.http import parser
maps = open("/proc/self/maps").read()
print(json.dumps({
    "libs": sorted({ln.split("/")[-1] for ln in maps.splitlines()
                    if "libcrypto" in ln or "libssl" in ln}),
    "loaded": sorted(m for m in ("_ssl", "_hashlib") if sys.modules.get(m) is not None),
    "sha256": hashlib.sha256(b"pycni").hexdigest(),
    "ssl_error_is_oserror": issubclass(gthread.ssl.SSLError, OSError),
    "parser_sees_the_stand_in": parser.ssl is ssl,
}))
"""


def test_the_server_loads_no_openssl_and_hashes_the_same():
    got = run_code(NO_OPENSSL)
    assert got["libs"] == [] and got["loaded"] == []
    # Python's built-in SHA-256 gives OpenSSL's digest (this one is `sha256sum`'s).
    assert got["sha256"] == "f8b0ab8a298bedc3ac50a702c45cf12683763efe81506d1abedf052ee766f7f3"
    assert got["ssl_error_is_oserror"] and got["parser_sees_the_stand_in"]


def test_any_other_ssl_name_loads_the_real_module_into_the_stand_in():
    got = run_code("""
from cnm_bridge.docker import notls
notls.install()
import ssl, sys
stand_in = sys.modules["ssl"]
context = ssl.create_default_context  # not on the stand-in: OpenSSL loads
import _ssl
print(json.dumps({"same_object": sys.modules["ssl"] is stand_in,
                  "real_error": ssl.SSLError is _ssl.SSLError,
                  "real_context": ssl.SSLContext.__module__}))
""")
    assert got == {"same_object": True, "real_error": True, "real_context": "ssl"}


def test_pycni_serve_installs_the_stand_ins_before_anything_imports_hashlib():
    """cli.main's first step for `serve`: the import of settings (cni_runner, hashlib)
    comes after it."""
    got = run_code("""
import sys
from cnm_bridge.docker import notls
seen = {}
notls.install = lambda: seen.setdefault("hashlib_before", "hashlib" in sys.modules)
from cnm_bridge import cli
try:
    cli.main(["serve", "--socket", "/nonexistent/dir/s.sock", "--state-dir", "/proc/none"])
except BaseException:
    pass
print(json.dumps(seen))
""")
    assert got == {"hashlib_before": False}
