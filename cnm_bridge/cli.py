"""`pycni serve` runs the driver; `pycni gc` reconciles with Docker once."""

import argparse
import logging
import sys

from . import settings as settings_mod


def _dir_options(parser):
    parser.add_argument("--socket", help="plugin socket (PYCNI_SOCKET; default "
                        f"{settings_mod.DEFAULT_SOCKET})")
    parser.add_argument("--conf-dir", help="CNI conf dir (PYCNI_CONF_DIR; default "
                        f"{settings_mod.DEFAULT_CONF_DIR})")
    parser.add_argument("--bin-dir", action="append", help="CNI plugin dir, repeatable or "
                        "colon-separated (PYCNI_BIN_DIR; default "
                        f"{':'.join(settings_mod.DEFAULT_BIN_DIRS)})")
    parser.add_argument("--state-dir", help="pycni state (PYCNI_STATE_DIR; default "
                        f"{settings_mod.DEFAULT_STATE_DIR})")
    parser.add_argument("--plugin-timeout", type=float,
                        help="seconds one CNI plugin exec may take (PYCNI_PLUGIN_TIMEOUT; "
                        "default 60)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help="PYCNI_LOG_LEVEL; default info")


def _settings(opts):
    return settings_mod.from_sources(opts.socket, opts.conf_dir, opts.bin_dir, opts.state_dir,
                                     opts.plugin_timeout, opts.log_level)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pycni", description="Docker network plugin for CNI")
    sub = parser.add_subparsers(dest="command", required=True)
    _dir_options(sub.add_parser("serve", help="serve the plugin API on the socket"))
    gc_parser = sub.add_parser("gc", help="tear down what Docker has forgotten, then exit")
    _dir_options(gc_parser)
    gc_parser.add_argument("--min-age", type=float, default=60,
                    help="leave alone what is younger than this many seconds (default 60)")
    _dir_options(sub.add_parser(
        "ports", help="list published ports (docker port shows none for plugin networks)"))
    opts = parser.parse_args(argv)
    s = _settings(opts)
    logging.basicConfig(level=s.log_level.upper(),
                        format="%(asctime)s pycni %(levelname)s %(name)s: %(message)s")
    from .security import UnsafeSetup, check_dirs, prepare_state_dir
    try:
        prepare_state_dir(s) if opts.command == "serve" else check_dirs(s)
    except UnsafeSetup as e:
        print(e, file=sys.stderr)
        return 2
    if opts.command == "serve":
        from .server import serve
        serve(s, _app_factory(s))
        return 0
    if opts.command == "ports":
        from .portlist import print_ports
        return print_ports(s)
    return gc(s, opts.min_age)


def gc(settings, min_age):
    """`pycni gc`: local clean-up and a pass against dockerd, then exit.

    Things younger than `min_age` seconds are left alone: a running server may
    be creating them right now.
    """
    from .compose import build
    from .dockerapi import DockerAPI
    graph = build(settings, defer_delete=False)
    local = graph.reconciler.local(min_age=min_age)
    try:
        remote = graph.reconciler.with_docker(DockerAPI.connect(), min_age=min_age)
    except Exception as e:
        print(f"pycni gc: cannot reach dockerd: {e}", file=sys.stderr)
        return 1
    print(" ".join(f"{k}={v}" for k, v in {**local, **remote}.items()))
    return 0 if not (local["errors"] or remote["errors"]) else 1


def _app_factory(s):
    def factory():
        # Imported in gunicorn's worker only: the master, which just watches the
        # worker, then stays at a third of the memory.
        from .app import make_app
        return make_app(s)
    return factory


if __name__ == "__main__":
    sys.exit(main())
