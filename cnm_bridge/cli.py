"""The `pycni` command: `serve` runs the driver; the rest are for operators, and follow the
docker CLI's habits (a table by default, --json or --format TEMPLATE, errors on stderr
with a non-zero exit).

    pycni serve                 the plugin API on the socket
    pycni status                networks, endpoints, pending DELs, whether the server answers
    pycni inspect NETWORK       the conflist pycni runs for a network, and what it changed
    pycni check CONTAINER       CNI CHECK of the container's pycni endpoints
    pycni doctor                what is wrong on this host, each with its fix
    pycni ports                 published ports (docker port shows none for plugin networks)
    pycni gc                    tear down what Docker has forgotten
"""

import argparse
import logging
import sys
import time

from .docker import notls


def _dir_options(parser):
    from . import settings as settings_mod
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
                        help="PYCNI_LOG_LEVEL; default info (warning for operator commands)")


def _output_options(parser):
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON")
    out.add_argument("--format", help="a template per row, e.g. '{{.Container}} {{.State}}' "
                     "(docker CLI style; {{json .}} prints the row as JSON)")


def _parser():
    parser = argparse.ArgumentParser(prog="pycni", description="Docker network plugin for CNI")
    sub = parser.add_subparsers(dest="command", required=True)
    _dir_options(sub.add_parser("serve", help="serve the plugin API on the socket"))
    gc = sub.add_parser("gc", help="tear down what Docker has forgotten, then exit")
    _dir_options(gc)
    gc.add_argument("--min-age", type=float, default=60,
                    help="leave alone what is younger than this many seconds (default 60)")
    gc.add_argument("--confirm-after", type=float, default=2,
                    help="seconds before the second look at dockerd that confirms what the "
                    "first found gone (default 2)")
    gc.add_argument("--adopt-dockerd", action="store_true",
                    help="trust the dockerd answering now although its ID is not the one "
                    "pycni's networks were made with (after reinstalling Docker)")
    _dir_options(sub.add_parser(
        "ports", help="list published ports (docker port shows none for plugin networks)"))
    status = sub.add_parser("status", help="networks, endpoints and the server's state")
    _dir_options(status)
    _output_options(status)
    inspect = sub.add_parser("inspect", help="the conflist pycni runs for a network")
    _dir_options(inspect)
    inspect.add_argument("network", help="Docker network name or id, or CNI network name")
    inspect.add_argument("--format", help="a template, e.g. '{{json .Conflist}}'")
    check = sub.add_parser("check", help="CNI CHECK of a container's pycni endpoints")
    _dir_options(check)
    _output_options(check)
    check.add_argument("container", help="container name or id")
    doctor = sub.add_parser("doctor", help="check this host for what pycni needs")
    _dir_options(doctor)
    _output_options(doctor)
    doctor.add_argument("--driver", default="pycni",
                        help="the driver name Docker knows pycni by (default pycni)")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        # First: the modules imported from here on (cni_runner's hashlib among them) and
        # gunicorn's ssl must find the server's stand-ins, not OpenSSL.
        notls.install()
    from . import settings as settings_mod
    opts = _parser().parse_args(argv)
    try:
        s = settings_mod.from_sources(opts.socket, opts.conf_dir, opts.bin_dir, opts.state_dir,
                                      opts.plugin_timeout, opts.log_level)
    except ValueError as e:
        print(f"pycni: {e}", file=sys.stderr)
        return 2
    quiet = opts.command not in ("serve", "gc") and not opts.log_level
    logging.basicConfig(level="WARNING" if quiet else s.log_level.upper(),
                        format="%(asctime)s pycni %(levelname)s %(name)s: %(message)s")
    if opts.command == "doctor":
        from .ops.doctor import run_doctor
        return run_doctor(s, opts)
    from .host import security
    try:
        security.prepare_state_dir(s) if opts.command == "serve" else security.check_dirs(s)
    except security.UnsafeSetup as e:
        print(e, file=sys.stderr)
        return 2
    except OSError as e:
        print(f"pycni: cannot prepare the state dir {s.state_dir}: {e.strerror or e}; pycni "
              f"needs it writable: remount its file system read-write, or give --state-dir "
              f"(PYCNI_STATE_DIR) on a writable one", file=sys.stderr)
        return 2
    if opts.command == "serve":
        return _serve(s)
    from .state.store import StoreUnusable
    try:
        return _operator_command(s, opts)
    except StoreUnusable as e:
        print(f"pycni {opts.command}: {e}", file=sys.stderr)
        return 1


def _operator_command(s, opts):
    if opts.command == "ports":
        from .ops.portlist import print_ports
        return print_ports(s)
    if opts.command == "status":
        from .ops.status import run_status
        return run_status(s, opts)
    if opts.command in ("inspect", "check"):
        return _inspection(s, opts)
    return gc(s, opts.min_age, opts.adopt_dockerd, opts.confirm_after)


def _serve(settings):
    from .docker.server import serve, store_problem
    from .state.serverlock import AlreadyServing
    problem = store_problem(settings)
    if problem:
        print(f"pycni refuses to start: {problem}", file=sys.stderr)
        return 2
    try:
        serve(settings, _app_factory(settings))
    except AlreadyServing as e:
        print(e, file=sys.stderr)
        return 2
    return 0


def _inspection(settings, opts):
    from .compose import build
    from .ops.dockerapi import reach
    from .ops.inspection import LookupFailed, check_container, describe_network, find_network
    from .ops.render import render
    graph = build(settings, defer_delete=False)
    docker = reach()
    try:
        if opts.command == "inspect":
            spec = find_network(graph.store, docker, opts.network)
            name = _docker_name(docker, spec.id)
            print(render([describe_network(spec, name)], as_json=not opts.format,
                         template=opts.format, single=True))
            return 0
        if docker is None:
            print("pycni check: cannot reach dockerd to find the container", file=sys.stderr)
            return 1
        rows = check_container(graph, docker, opts.container)
    except LookupFailed as e:
        print(f"pycni {opts.command}: {e}", file=sys.stderr)
        return 1
    print(render(rows, as_json=opts.json, template=opts.format,
                 columns=["Network", "Endpoint", "Mode", "Interface", "Result", "Detail"]))
    return 0 if all(r["Result"] != "failed" for r in rows) else 1


def _docker_name(docker, network_id):
    if docker is None:
        return ""
    try:
        info = docker.network(network_id)
    except Exception:
        return ""
    return (info or {}).get("Name", "")


def gc(settings, min_age, adopt_dockerd=False, confirm_after=2.0):
    """`pycni gc`: local clean-up, a pass against dockerd and CNI's GC, then exit.

    Things younger than `min_age` seconds are left alone: a running server may
    be creating them right now. What dockerd no longer has goes at the second pass in
    a row that finds it gone, and only if dockerd is the one pycni knows: a pass that
    finds something new looks again `confirm_after` seconds later, so one run is enough.
    """
    from .compose import build
    from .ops.dockerapi import DockerAPI
    graph = build(settings, defer_delete=False)
    local = graph.reconciler.local(min_age=min_age)
    try:
        docker = DockerAPI.connect()
        remote = graph.reconciler.with_docker(docker, min_age=min_age, adopt=adopt_dockerd)
        if remote["unconfirmed"]:
            time.sleep(confirm_after)
            again = graph.reconciler.with_docker(docker, min_age=min_age)
            remote = {k: again[k] if k in ("unconfirmed", "other_dockerd") else
                      remote[k] + again[k] for k in remote}
    except Exception as e:
        print(f"pycni gc: cannot reach dockerd: {e}", file=sys.stderr)
        return 1
    # CNI's GC judges by pycni's own records, not by dockerd's: it runs whichever answers.
    collected = graph.reconciler.collect(min_age=min_age)
    errors = local["errors"] + remote["errors"] + collected["errors"]
    print(" ".join(f"{k}={v}" for k, v in {**local, **remote, **collected,
                                           "errors": errors}.items()))
    return 0 if not (errors or remote["other_dockerd"]) else 1


def _app_factory(s):
    def factory():
        # Imported in gunicorn's worker only: the master, which just watches the
        # worker, then stays at a third of the memory.
        from .app import make_app
        return make_app(s)
    return factory


if __name__ == "__main__":
    sys.exit(main())
