"""The server's app: the graph built, what a crash left half-made undone, then the routes."""

import logging

from .compose import build
from .docker.api import create_app


def make_app(settings, host=None):
    graph = build(settings, host)
    # Before the worker accepts a call: finish or undo whatever a crash left half-made.
    graph.reconciler.local()
    app = create_app(graph.driver, graph.ipam, graph.host, [graph.runtime, graph.ipam.runtime],
                     call_deadline=settings.call_deadline)
    app.config["graph"] = graph
    # Bounded before it is read: werkzeug answers 413 past this.
    app.config["MAX_CONTENT_LENGTH"] = 2 << 20
    logging.getLogger("pycni").info(
        "pycni ready: conf dir %s, plugin dirs %s, state dir %s", settings.conf_dir,
        ":".join(settings.bin_dirs), settings.state_dir)
    return app
