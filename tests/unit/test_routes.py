"""routes.py: the host's on-link IPv4 routes from /proc/net/route, and the overlap check."""

import ipaddress
import socket
import struct

from cnm_bridge.host import routes


def hexaddr(a):
    return f"{struct.unpack('=I', socket.inet_aton(a))[0]:08X}"


def line(dev, dest, gw, flags, mask):
    return "\t".join([dev, hexaddr(dest), hexaddr(gw), f"{flags:04X}", "0", "0", "0",
                      hexaddr(mask), "0", "0", "0"])


def test_parse_proc_route_keeps_on_link_routes():
    text = "\n".join([
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT",
        line("eth0", "0.0.0.0", "192.0.2.1", 0x3, "0.0.0.0"),  # default: not on-link
        line("cni-podman0", "10.88.0.0", "0.0.0.0", 0x1, "255.255.0.0"),
        line("eth0", "10.9.0.0", "192.0.2.1", 0x3, "255.255.255.0"),  # via a gateway
        line("eth0", "10.10.0.0", "0.0.0.0", 0x201, "255.255.255.0"),  # unreachable
        line("docker0", "172.17.0.0", "0.0.0.0", 0x0, "255.255.0.0"),  # not up
        "garbage",
    ])
    assert routes.parse_proc_route(text) == [
        routes.Route(ipaddress.ip_network("10.88.0.0/16"), "cni-podman0")]


def test_overlapping():
    rs = [routes.Route(ipaddress.ip_network("10.88.0.0/16"), "cni-podman0")]
    assert routes.overlapping(ipaddress.ip_network("10.88.3.0/24"), rs) == rs[0]
    assert routes.overlapping(ipaddress.ip_network("10.0.0.0/8"), rs) == rs[0]
    assert routes.overlapping(ipaddress.ip_network("10.89.0.0/16"), rs) is None
    assert routes.overlapping(ipaddress.ip_network("fd88::/64"), rs) is None


def test_the_real_host_reads_its_routes_without_root(tmp_path, monkeypatch):
    from cnm_bridge.host import host
    rs = host.Host().onlink_routes()  # reads /proc/net/route: no side effect
    assert all(isinstance(r, routes.Route) and r.network.version == 4 for r in rs)
    monkeypatch.setattr(host, "ROUTE_FILE", str(tmp_path / "absent"))
    assert host.Host().onlink_routes() == []
