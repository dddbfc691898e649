"""Published ports: Docker's port bindings -> CNI portMappings, with host ports chosen.

portmap only writes DNAT rules: it neither picks a port for `-P`/`-p 80` nor
notices a port that something already uses. Docker's own bridge does both
(docker-proxy binds the port), so pycni does them here before portmap runs.
Pure: the host is asked through `in_use`.
"""

from ..errors import DriverError


def overlaps(a, b):
    """Two CNI mappings that would catch the same packets."""
    if a["hostPort"] != b["hostPort"] or a["protocol"] != b["protocol"]:
        return False
    ha, hb = a.get("hostIP", ""), b.get("hostIP", "")
    return not ha or not hb or ha == hb


def choose(bindings, taken, in_use, ephemeral, default_host_ip=""):
    """Docker PortBindings -> CNI portMappings; `taken` are other endpoints' mappings.

    HostPort 0 gets a free port of the `ephemeral` range (the kernel's, as Docker
    draws from); HostPort..HostPortEnd the first free port of the range. A fixed
    port already taken is an error naming it. A binding without a host address
    gets the network's default one (com.docker.network.bridge.host_binding_ipv4).
    """
    out = []
    for b in bindings:
        base = {"containerPort": b.container_port, "protocol": b.proto}
        host_ip = b.host_ip or default_host_ip
        if host_ip:
            base["hostIP"] = host_ip
        if b.host_port:
            candidates = range(b.host_port, (b.host_port_end or b.host_port) + 1)
        else:
            candidates = range(ephemeral[0], ephemeral[1] + 1)
        chosen = None
        for port in candidates:
            m = dict(base, hostPort=port)
            if any(overlaps(m, t) for t in list(taken) + out) or in_use(m):
                continue
            chosen = m
            break
        if chosen is None:
            where = f"{host_ip}:" if host_ip else ""
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
