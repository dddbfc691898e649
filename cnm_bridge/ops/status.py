"""`pycni status`: the networks pycni serves, their endpoints, pending deferred DELs, and
whether the server is up and answering.

Read from pycni's store (it is the record; Docker keeps its own), with Docker's
names for networks and containers where dockerd can be asked.
"""

import json
import socket
import sys

from ..network import answers, ports
from ..network.netspec import legacy
from ..state.records import EndpointState
from ..state.store import Store, StoreUnusable
from .render import render

NETWORK_COLUMNS = ["Network", "Id", "CNINetwork", "Mode", "Subnets", "Bridge", "Endpoints"]
ENDPOINT_COLUMNS = ["Container", "Network", "Endpoint", "Addresses", "Mac", "Ports", "State",
                    "Attach"]


def server_answers(path, timeout=5):
    """(True, "") if the plugin socket answers Plugin.Activate, else (False, why)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(b"POST /Plugin.Activate HTTP/1.0\r\nHost: pycni\r\nContent-Length: 0\r\n\r\n")
        head = s.recv(4096).split(b"\r\n")[0]
        if b" 200 " in head + b" ":
            return True, ""
        return False, f"answered {head.decode(errors='replace')!r}"
    except OSError as e:
        return False, f"{path}: {e.strerror or e}"
    finally:
        s.close()


def collect(settings, docker=None):
    store = Store(settings.db_path, legacy=legacy)
    up, why = server_answers(settings.socket)
    net_names, ep_names = {}, {}
    if docker is not None:
        try:
            net_names = {n["Id"]: n["Name"] for n in docker.networks()}
            ep_names = docker.endpoint_names()
        except Exception:
            pass
    specs = {s.id: s for s in store.networks()}
    endpoints = store.endpoints()
    networks = [{"Network": net_names.get(s.id, ""), "Id": s.id[:12], "CNINetwork": s.cni_name,
                 "Mode": s.mode, "Subnets": list(s.subnets), "Bridge": s.bridge,
                 "Endpoints": sum(1 for e in endpoints if e.network_id == s.id)}
                for s in specs.values()]
    eps = []
    for e in endpoints:
        spec = specs.get(e.network_id)
        addrs = [str(a) for a in answers.container_ips(e.result, e.ifname)] if e.result \
            else list(e.addresses)
        eps.append({"Container": ep_names.get(e.id, ""),
                    "Network": net_names.get(e.network_id, "") or (spec.cni_name if spec else ""),
                    "Endpoint": e.id[:12], "Addresses": addrs, "Mac": e.mac,
                    "Ports": ports.describe(e.ports) if e.ports else "", "State": e.state,
                    "Attach": f"{e.mode} {e.ifname}" if e.mode else ""})
    return {"Server": {"Socket": settings.socket, "Answering": up, "Error": why},
            "Networks": networks, "Endpoints": eps,
            "PendingDeletes": sum(1 for e in endpoints if e.state == EndpointState.DELETING)}


def run_status(settings, opts, docker=None):
    if docker is None:
        from .dockerapi import reach
        docker = reach()
    try:
        data = collect(settings, docker)
    except StoreUnusable as e:
        up, why = server_answers(settings.socket)
        print(f"Server: {settings.socket}: " + ("answering" if up else f"NOT answering ({why})"))
        print(f"pycni status: cannot read the store {e.path}: {e.reason}; {e.fix}",
              file=sys.stderr)
        return 1
    if opts.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    elif opts.format:
        print(render(data["Endpoints"], template=opts.format))
    else:
        server = data["Server"]
        print(f"Server: {server['Socket']}: "
              + ("answering" if server["Answering"] else f"NOT answering ({server['Error']})"))
        print()
        print(render(data["Networks"], columns=NETWORK_COLUMNS))
        print()
        print(render(data["Endpoints"], columns=ENDPOINT_COLUMNS))
        print()
        print(f"Pending deferred DELs: {data['PendingDeletes']}")
    return 0 if data["Server"]["Answering"] else 1
