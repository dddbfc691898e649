"""Serving the Flask app with gunicorn on the plugin unix socket.

One worker process with threads: state lives in SQLite and CNI's file locks,
so threads are safe, and one process keeps memory small. The app is loaded in
the worker only (no preload): the master stays small, and the worker accepts
its first connection after reconciliation, so a call Docker makes early waits
in the socket's backlog rather than meeting half-made state. umask 077 makes
the socket root-only.

Memory (docs/performance.md): the master freezes its objects before the fork, so that
the worker's garbage collections leave the pages they share alone.
"""

import gc
import logging
import os
import subprocess
import sys

from gunicorn import sock
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from ..state import serverlock

log = logging.getLogger(__name__)


class _Arbiter(Arbiter):
    """gunicorn's master, except that at stop it unlinks the socket only if the file is
    still the one it bound: gunicorn unlinks by path, which would remove the socket of
    another server that bound the path after ours was removed."""

    bound_inode = None

    def start(self):
        super().start()
        self.bound_inode = serverlock.socket_inode(self.app.socket)

    def stop(self, graceful=True):
        listeners, self.LISTENERS = self.LISTENERS, []
        sock.close_sockets(listeners, unlink=False)
        super().stop(graceful)
        serverlock.unlink_if_ours(self.app.socket, self.bound_inode)


class _Server(BaseApplication):
    def __init__(self, factory, options, socket_path=""):
        self.factory = factory
        self.options = options
        self.socket = socket_path
        super().__init__()

    def run(self):
        try:
            _Arbiter(self).run()
        except RuntimeError as e:  # as gunicorn's own run(): its start-up errors
            raise SystemExit(f"pycni: {e}") from None

    def load_config(self):
        for key, value in self.options.items():
            if key in self.cfg.settings:  # newer gunicorns add settings (control_socket_*)
                self.cfg.set(key, value)

    def load(self):
        return self.factory()


def _worker_started(settings):
    def hook(worker):
        # Threads do not survive gunicorn's fork: they start in the worker, before the
        # worker's own threads, so that the arena cap holds for all of them.
        from . import memory
        from ..network.reconcile import background, gc_argv
        memory.cap_arenas()
        worker.pycni_trimmer = memory.IdleTrimmer().start()
        if settings.reconcile_interval > 0:
            background(settings.reconcile_interval, gc_argv(settings))
    return hook


def _before_fork(server, worker):
    # A collection in the worker writes into the header of every object it looks at,
    # copying the master's pages one by one: frozen objects are never looked at.
    # (Python's gc docs: freeze right before fork.)
    gc.freeze()


def _request_done(worker, req, environ, resp):
    trimmer = getattr(worker, "pycni_trimmer", None)
    if trimmer is not None:
        trimmer.touch()


def _drain_deleter(worker):
    """At a graceful stop, let pending CNI DELs finish (what is left is redone at start)."""
    graph = getattr(getattr(worker, "wsgi", None), "config", {}).get("graph")
    if graph is not None:
        graph.attachments.drain(timeout=20)


def store_problem(settings):
    """Why the store cannot be used ("" if it can), in one line: checked before gunicorn
    starts, so that a damaged or unwritable store stops `pycni serve` with the file and
    the fix, not a worker failing to boot again and again. Checked in a child process:
    the master never loads SQLite or the app's modules, and stays small."""
    code = ("import sys\n"
            "from cnm_bridge.network.netspec import legacy\n"
            "from cnm_bridge.state.store import Store, StoreUnusable\n"
            "try:\n"
            "    Store(sys.argv[1], legacy=legacy).verify()\n"
            "except StoreUnusable as e:\n"
            "    print(e)\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code, settings.db_path],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        return f"cannot check the store {settings.db_path}: {e}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"cannot check the store {settings.db_path}: {last}"
    return proc.stdout.strip()


def serve(settings, factory, threads=16):
    """Raises serverlock.AlreadyServing if another server has the state dir or socket."""
    # Held by this process (gunicorn's master) and the worker it forks, for their life.
    lock = serverlock.hold_state_dir(settings.state_dir)
    try:
        os.makedirs(os.path.dirname(settings.socket), mode=0o755, exist_ok=True)
        serverlock.claim_socket(settings.socket)
        _Server(factory, _options(settings, threads), settings.socket).run()
    finally:
        lock.release()


def _options(settings, threads):
    return {
        "bind": [f"unix:{settings.socket}"],
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        "umask": 0o077,
        # No kept-alive connections. Docker's plugin client keeps idle ones without
        # limit and cannot tell one the server has just closed: its POST then fails
        # ("connection reset by peer"), and its retry sends an empty body, so a
        # `docker run` under load failed with "missing NetworkID". Answers say
        # "Connection: close"; a unix-socket connect per call costs next to nothing.
        "keepalive": 0,
        "preload_app": False,
        # A CNI call may legitimately take up to the plugin timeout, per plugin.
        "timeout": int(settings.plugin_timeout * 4 + 30),
        "graceful_timeout": 30,
        "loglevel": settings.log_level,
        "errorlog": "-",
        "accesslog": None,
        "proc_name": "pycni",
        "pre_fork": _before_fork,
        "post_worker_init": _worker_started(settings),
        "post_request": _request_done,
        "worker_exit": lambda server, worker: _drain_deleter(worker),
        # gunicorn 25+ would open a root control socket in $HOME/.gunicorn.
        "control_socket_disable": True,
    }
