"""Published ports: Docker's port bindings -> CNI portMappings, with host ports chosen.

portmap only writes DNAT rules: it neither picks a port for `-P`/`-p 80` nor
notices a port that something already uses. Docker's own bridge does both
(docker-proxy binds the port), so pycni does them here before portmap runs.
"""

import errno
import socket

from .errors import DriverError

EPHEMERAL = (49153, 65535)
SOCK_TYPES = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}


def overlaps(a, b):
    """Two CNI mappings that would catch the same packets."""
    if a["hostPort"] != b["hostPort"] or a["protocol"] != b["protocol"]:
        return False
    ha, hb = a.get("hostIP", ""), b.get("hostIP", "")
    return not ha or not hb or ha == hb


def in_use_on_host(mapping):
    """True if a host process holds the port (what docker-proxy's bind would hit)."""
    kind = SOCK_TYPES.get(mapping["protocol"])
    if kind is None:
        return False
    host_ip = mapping.get("hostIP", "")
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    with socket.socket(family, kind) as s:
        try:
            s.bind((host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"),
                    mapping["hostPort"]))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def choose(bindings, taken, probe=in_use_on_host):
    """Docker PortBindings -> CNI portMappings; `taken` are other endpoints' mappings.

    HostPort 0 gets a free ephemeral port; HostPort..HostPortEnd the first free
    port of the range. A fixed port already taken is an error naming it.
    """
    out = []
    for b in bindings:
        base = {"containerPort": b.container_port, "protocol": b.proto}
        if b.host_ip:
            base["hostIP"] = b.host_ip
        if b.host_port:
            candidates = range(b.host_port, (b.host_port_end or b.host_port) + 1)
        else:
            candidates = range(EPHEMERAL[0], EPHEMERAL[1] + 1)
        chosen = None
        for port in candidates:
            m = dict(base, hostPort=port)
            if any(overlaps(m, t) for t in taken + out) or probe(m):
                continue
            chosen = m
            break
        if chosen is None:
            where = f"{b.host_ip}:" if b.host_ip else ""
            fixed = b.host_port and (not b.host_port_end or b.host_port_end == b.host_port)
            if fixed:
                raise DriverError(
                    f"host port {where}{b.host_port}/{b.proto} is already in use; "
                    "publish another port")
            raise DriverError(f"no free host port for {where}{b.host_port or ''}/{b.proto} "
                              f"-> container port {b.container_port}")
        out.append(chosen)
    return out


def describe(mappings):
    return ", ".join(f"{m.get('hostIP') or '0.0.0.0'}:{m['hostPort']}->{m['containerPort']}"
                     f"/{m['protocol']}" for m in mappings)
