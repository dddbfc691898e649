"""What keeps the server's two processes small (docs/performance.md, Memory): the master
loads neither the app nor ssl, the worker no ssl either, and the master freezes its
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


def modules_after(code):
    code += "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT), check=True, timeout=60)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_master_loads_neither_the_app_nor_ssl():
    loaded = modules_after(MASTER)
    assert "gunicorn.arbiter" in loaded and "gunicorn.workers.gthread" in loaded
    assert not loaded & {"_ssl", "flask", "werkzeug", "jinja2", "click", "cnm_bridge.app"}


def test_the_worker_loads_the_app_without_ssl():
    loaded = modules_after(WORKER)
    assert "flask" in loaded and "cnm_bridge.docker.api" in loaded
    assert "_ssl" not in loaded


def run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)


def test_the_ssl_stand_in_becomes_the_real_module_at_first_real_use():
    proc = run("""
import sys
from cnm_bridge.docker import sslstub
assert sslstub.install()
import ssl
stub = ssl
assert ssl.PROTOCOL_TLS == 2 and ssl.CERT_NONE == 0 and not sslstub.real_loaded()
try:
    raise OSError("not TLS")
except ssl.SSLError:
    raise SystemExit("a stand-in matched an error nobody raised as SSLError")
except OSError:
    pass
ctx = ssl.create_default_context()  # a real use
real = sys.modules["ssl"]
assert sslstub.real_loaded() and real is not stub
assert stub.SSLError is real.SSLError and stub.PROTOCOL_TLS is real.PROTOCOL_TLS
assert isinstance(ctx, real.SSLContext)
print("ok")
""")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_the_stand_in_is_not_installed_over_a_loaded_ssl():
    proc = run("""
import ssl, sys
from cnm_bridge.docker import sslstub
assert not sslstub.install() and sys.modules["ssl"] is ssl
print("ok")
""")
    assert proc.returncode == 0, proc.stderr


def test_tls_settings_are_refused():
    s = Settings(socket="/tmp/pycni-test-none.sock")
    options = dict(server._options(s, 16), certfile="/nonexistent.pem", keyfile="/x.key")
    with pytest.raises(SystemExit, match="not TLS"):
        server._Server(lambda: None, options, s.socket)


def test_the_master_freezes_its_objects_before_the_fork():
    try:
        server._before_fork(None, None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
