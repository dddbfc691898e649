"""A cnitool-compatible command line: `python -m cni_runner add|check|del|gc|status NET [NETNS]`.

Environment, as cnitool: NETCONFPATH (conf dir, default /etc/cni/net.d),
CNI_PATH (plugin dirs, colon-separated), CNI_IFNAME (default eth0), CNI_ARGS
("K=V;K=V"), CAP_ARGS (JSON object of capability args); plus CNI_CACHEDIR, the
cache root (default /var/lib/cni, where cnitool and libcni keep theirs).
"""

import argparse
import hashlib
import json
import logging
import os
import sys

from .config import load_by_name
from .errors import CNIError
from .runtime import CNIRuntime, RuntimeConf

DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_CACHE_DIR = "/var/lib/cni"
DEFAULT_CNI_PATH = "/opt/cni/bin:/usr/lib/cni:/usr/libexec/cni"


def container_id_for(netns):
    # cnitool derives the container id from the netns path, so add and del agree.
    return "cnitool-" + hashlib.sha512(netns.encode()).hexdigest()[:20]


def parse_cni_args(text):
    pairs = []
    for part in (text or "").split(";"):
        if not part:
            continue
        if "=" not in part:
            raise CNIError(f"CNI_ARGS: {part!r} is not KEY=VALUE")
        k, v = part.split("=", 1)
        pairs.append((k, v))
    return pairs


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="cni-runner", description="Run CNI network lists (cnitool-compatible).")
    parser.add_argument("command", choices=["add", "check", "del", "gc", "status"])
    parser.add_argument("network", help="network name (conflist 'name')")
    parser.add_argument("netns", nargs="?", default="", help="network namespace path")
    opts = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="cni-runner: %(message)s")

    env = os.environ
    try:
        net = load_by_name(env.get("NETCONFPATH", DEFAULT_CONF_DIR), opts.network)
        runtime = CNIRuntime([d for d in env.get("CNI_PATH", DEFAULT_CNI_PATH).split(":") if d],
                             env.get("CNI_CACHEDIR", DEFAULT_CACHE_DIR))
        if opts.command == "gc":
            removed = runtime.gc(net, [])
            for cid, ifname in removed:
                print(f"deleted {cid} {ifname}", file=sys.stderr)
            return 0
        if opts.command == "status":
            runtime.status(net)
            return 0
        if not opts.netns:
            parser.error(f"{opts.command} needs a NETNS path")
        cap_args = json.loads(env.get("CAP_ARGS") or "{}")
        if not isinstance(cap_args, dict):
            raise CNIError("CAP_ARGS must be a JSON object")
        rt = RuntimeConf(container_id_for(opts.netns), opts.netns,
                         env.get("CNI_IFNAME") or "eth0", parse_cni_args(env.get("CNI_ARGS")),
                         cap_args)
        if opts.command == "add":
            print(json.dumps(runtime.add(net, rt), indent=2))
        elif opts.command == "check":
            runtime.check(net, rt)
        else:
            runtime.delete(net, rt)
        return 0
    except (CNIError, ValueError) as e:
        print(f"cni-runner: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
