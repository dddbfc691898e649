"""The host's IPv4 on-link routes, read as Docker reads them to pick a free pool. Pure.

When a network is created without --subnet, dockerd checks the pool an IPAM
driver returned against the host's on-link IPv4 routes (and its nameservers);
on an overlap it keeps that pool and asks the driver again, until a pool that
does not overlap comes back. A CNI network has one subnet, so pycni must say
so at the first request rather than let dockerd ask forever.
"""

import ipaddress
import socket
import struct
from dataclasses import dataclass

RTF_UP = 0x1
RTF_GATEWAY = 0x2
RTF_REJECT = 0x200


@dataclass(frozen=True)
class Route:
    network: object  # ip_network
    device: str


def parse_proc_route(text):
    """/proc/net/route (the main table) -> its on-link routes, as [Route].

    Docker 23+ counts only on-link (scope link) routes: here those without a gateway;
    the default route and unreachable ones are left out. The kernel prints each
    address in the host's byte order.
    """
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            dest, flags, mask = int(fields[1], 16), int(fields[3], 16), int(fields[7], 16)
        except ValueError:
            continue
        if not flags & RTF_UP or flags & (RTF_GATEWAY | RTF_REJECT) or not dest:
            continue
        addr = socket.inet_ntoa(struct.pack("=I", dest))
        prefix = bin(mask).count("1")
        try:
            out.append(Route(ipaddress.ip_network(f"{addr}/{prefix}", strict=False),
                             fields[0]))
        except ValueError:
            continue
    return out


def overlapping(subnet, routes):
    """The first route whose destination overlaps `subnet`, or None."""
    for route in routes:
        if route.network.version == subnet.version and route.network.overlaps(subnet):
            return route
    return None
