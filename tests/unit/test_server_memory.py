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


def modules_after(code):
    code += "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT), check=True, timeout=60)
    return set(json.loads(out.stdout.splitlines()[-1]))


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
