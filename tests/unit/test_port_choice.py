"""ports.py: host ports chosen as Docker chooses them."""

import pytest

from cnm_bridge.errors import DriverError
from cnm_bridge.network.ports import choose, describe, overlaps
from cnm_bridge.docker.protocol import PortMapping


def b(container_port, host_port=0, proto="tcp", host_ip="", end=0):
    return PortMapping(proto, container_port, host_port, end, host_ip)


def free(m):
    return False


def test_fixed_range_and_ephemeral():
    got = choose([b(80, 8080), b(81, 9000, end=9002), b(82)], [], free, (40000, 40005))
    assert [m["hostPort"] for m in got] == [8080, 9000, 40000]


def test_skips_what_is_taken_or_held():
    taken = [{"hostPort": 9000, "protocol": "tcp"}]
    held = {40000}
    got = choose([b(81, 9000, end=9002), b(82), b(83)], taken,
                 lambda m: m["hostPort"] in held, (40000, 40005))
    assert [m["hostPort"] for m in got] == [9001, 40001, 40002]


def test_fixed_port_taken_names_it():
    with pytest.raises(DriverError, match="host port 127.0.0.1:8080/tcp is already in use"):
        choose([b(80, 8080, host_ip="127.0.0.1")], [{"hostPort": 8080, "protocol": "tcp"}],
               free, (1, 2))
    with pytest.raises(DriverError, match="no free host port for /udp"):
        choose([b(53, proto="udp")], [], lambda m: True, (1, 2))


def test_default_host_address():
    got = choose([b(80, 8080), b(81, 8081, host_ip="10.0.0.1")], [], free, (1, 2), "127.0.0.1")
    assert [m.get("hostIP") for m in got] == ["127.0.0.1", "10.0.0.1"]


def test_overlaps_and_describe():
    a = {"hostPort": 80, "protocol": "tcp"}
    assert overlaps(a, dict(a, hostIP="10.0.0.1"))
    assert not overlaps(dict(a, hostIP="10.0.0.2"), dict(a, hostIP="10.0.0.1"))
    assert not overlaps(a, dict(a, protocol="udp"))
    assert describe([dict(a, containerPort=8)]) == "0.0.0.0:80->8/tcp"
