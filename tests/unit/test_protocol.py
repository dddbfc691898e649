"""protocol.py: Docker 20.10 request bodies -> typed requests, and what is refused."""

import base64
import ipaddress
import json

import pytest

from cnm_bridge.docker import protocol as p
from cnm_bridge.errors import BadRequest

NID = "3f" * 32
EID = "a1" * 32
ip = ipaddress.ip_interface
net = ipaddress.ip_network


def bad(fn, body, *words):
    """fn(body) must raise BadRequest whose message names every word."""
    with pytest.raises(BadRequest) as info:
        fn(body)
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    return msg


# -- load_body ---------------------------------------------------------------------


@pytest.mark.parametrize("data", [None, b"", b"   ", b"\n", "", " \t\r\n"])
def test_empty_body_is_empty_object(data):
    assert p.load_body(data) == {}


def test_body_bytes_and_str():
    assert p.load_body(b'{"NetworkID": "x"}') == {"NetworkID": "x"}
    assert p.load_body('{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}


@pytest.mark.parametrize("data", [b"{", b"not json", b"{'a': 1}", b'{"a": }', b"\xff\xfe{}",
                                  b'{"a": 1} trailing'])
def test_non_json_refused(data):
    bad(p.load_body, data, "JSON")


@pytest.mark.parametrize("data", [b"[]", b"[1, 2]", b'"str"', b"42", b"null", b"true"])
def test_non_object_refused(data):
    bad(p.load_body, data, "JSON object")


def test_nesting_beyond_limit_refused():
    ok = b'{"a":' + b"[" * (p.MAX_DEPTH - 1) + b"]" * (p.MAX_DEPTH - 1) + b"}"
    assert p.load_body(ok)
    deep = b'{"a":' + b"[" * (p.MAX_DEPTH + 5) + b"]" * (p.MAX_DEPTH + 5) + b"}"
    bad(p.load_body, deep, "nested")


def test_nesting_beyond_recursion_limit_refused():
    # Deep enough for json's own recursion guard: must still be a BadRequest.
    deep = b'{"a":' + b"[" * 200000 + b"]" * 200000 + b"}"
    bad(p.load_body, deep, "nested")


def test_huge_body_refused():
    data = b'{"a": "' + b"x" * p.MAX_BODY + b'"}'
    bad(p.load_body, data, "larger than", str(p.MAX_BODY))


def test_body_just_under_limit_accepted():
    data = b'{"a": "' + b"x" * (p.MAX_BODY - 20) + b'"}'
    assert len(p.load_body(data)["a"]) == p.MAX_BODY - 20


# -- CreateNetwork ----------------------------------------------------------------------

FULL_CREATE_NETWORK = {
    "NetworkID": NID,
    "Options": {
        "com.docker.network.enable_ipv6": True,
        "com.docker.network.generic": {"foo": "bar", "com.docker.network.driver.mtu": "1400"},
        "com.docker.network.internal": True,
    },
    "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "10.50.0.0/16",
                  "Gateway": "10.50.0.254/16",
                  "AuxAddresses": {"host1": "10.50.0.10/16", "a": "10.50.0.11/16"}}],
    "IPv6Data": [{"AddressSpace": "LocalDefault", "Pool": "fd50::/64", "Gateway": "fd50::1/64"}],
}


def test_create_network_full():
    body = p.load_body(json.dumps(FULL_CREATE_NETWORK).encode())
    req = p.parse_create_network(body)
    assert req.network_id == NID
    assert req.generic == {"foo": "bar", "com.docker.network.driver.mtu": "1400"}
    assert req.ipv6 is True and req.internal is True
    [v4] = req.ipv4_data
    assert v4.pool == net("10.50.0.0/16")
    assert v4.gateway == ip("10.50.0.254/16")
    assert v4.address_space == "LocalDefault"
    [v6] = req.ipv6_data
    assert v6.pool == net("fd50::/64") and v6.gateway == ip("fd50::1/64")


def test_create_network_minimal_default_pool():
    # No --subnet: Docker picks a pool itself; no generic options, no IPv6.
    req = p.parse_create_network({
        "NetworkID": NID, "Options": {"com.docker.network.enable_ipv6": False,
                                      "com.docker.network.generic": {}},
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "172.18.0.0/16",
                      "Gateway": "172.18.0.1/16"}],
        "IPv6Data": []})
    assert req.generic == {} and req.ipv6 is False and req.internal is False
    assert req.ipv4_data[0].pool == net("172.18.0.0/16") and req.ipv6_data == []


def test_create_network_no_options_and_null_ipam():
    req = p.parse_create_network({"NetworkID": NID,
                                  "IPv4Data": [{"AddressSpace": "null", "Pool": "0.0.0.0/0"}]})
    assert req.generic == {} and req.ipv4_data[0].gateway is None
    assert req.ipv4_data[0].address_space == "null"
    assert req.ipv4_data[0].pool.prefixlen == 0


def test_create_network_generic_non_strings_stringified():
    req = p.parse_create_network({"NetworkID": NID, "Options": {
        "com.docker.network.generic": {"mtu": 1400, "flag": True}}})
    assert req.generic == {"mtu": "1400", "flag": "true"}


def test_create_network_bool_strings():
    req = p.parse_create_network({"NetworkID": NID, "Options": {
        "com.docker.network.enable_ipv6": "true", "com.docker.network.internal": "0"}})
    assert req.ipv6 is True and req.internal is False


@pytest.mark.parametrize("nid", ["", None])
def test_missing_network_id(nid):
    body = {"NetworkID": nid} if nid is not None else {}
    bad(p.parse_create_network, body, "missing NetworkID")


@pytest.mark.parametrize("nid", [
    "3F" * 32,  # uppercase
    "3f" * 31,  # 62 chars
    "3f" * 33,  # 66 chars
    "g" * 64,
    "3f" * 32 + "\n",  # a trailing newline must not slip through "$"
    " " + "3f" * 32,
    "../" + "3f" * 31,
    123,
    ["3f" * 32],
    {"id": "x"},
    True,
])
def test_network_id_not_64_lowercase_hex(nid):
    bad(p.parse_create_network, {"NetworkID": nid}, "NetworkID", "64 lowercase hex")


@pytest.mark.parametrize("body,words", [
    ({"Options": "x"}, ["Options", "object"]),
    ({"Options": ["a"]}, ["Options", "object"]),
    ({"Options": {"com.docker.network.generic": "foo=bar"}}, ["com.docker.network.generic"]),
    ({"Options": {"com.docker.network.generic": {"foo": {"x": 1}}}}, ["'foo'", "string"]),
    ({"Options": {"com.docker.network.generic": {"foo": None}}}, ["'foo'", "string"]),
    ({"Options": {"com.docker.network.generic": {"foo": [1]}}}, ["'foo'", "string"]),
    ({"Options": {"com.docker.network.enable_ipv6": "maybe"}},
     ["com.docker.network.enable_ipv6", "boolean"]),
    ({"Options": {"com.docker.network.internal": 5}}, ["com.docker.network.internal", "boolean"]),
    ({"IPv4Data": {"Pool": "10.0.0.0/8"}}, ["IPv4Data", "list"]),
    ({"IPv4Data": ["10.0.0.0/8"]}, ["IPv4Data[0]", "object"]),
    ({"IPv4Data": [{"Pool": "10.0.0.0/33"}]}, ["IPv4Data[0].Pool", "10.0.0.0/33"]),
    ({"IPv4Data": [{"Pool": "banana"}]}, ["IPv4Data[0].Pool", "banana"]),
    ({"IPv4Data": [{"Pool": 10}]}, ["IPv4Data[0].Pool", "CIDR"]),
    ({"IPv4Data": [{"AddressSpace": "x"}]}, ["IPv4Data[0].Pool", "missing"]),
    ({"IPv4Data": [{"Pool": "10.0.0.0/8", "Gateway": "10.0.0.300/8"}]},
     ["IPv4Data[0].Gateway"]),
    ({"IPv4Data": [{"Pool": "10.0.0.0/8", "Gateway": 1}]}, ["IPv4Data[0].Gateway", "CIDR"]),
    ({"IPv4Data": [{"Pool": "10.0.0.0/8", "AuxAddresses": ["10.0.0.2"]}]},
     ["IPv4Data[0].AuxAddresses", "object"]),
    ({"IPv4Data": [{"Pool": "10.0.0.0/8", "AuxAddresses": {"h": "nope"}}]},
     ["IPv4Data[0].AuxAddresses.h"]),
    ({"IPv4Data": [{"Pool": "10.0.0.0/8", "AddressSpace": 7}]},
     ["IPv4Data[0].AddressSpace", "string"]),
    ({"IPv4Data": [{"Pool": "10.0.0.0/8"}, {"Pool": "x"}]}, ["IPv4Data[1].Pool"]),
    ({"IPv6Data": [{"Pool": "fd00::/129"}]}, ["IPv6Data[0].Pool"]),
    # Wrong family for the list it sits in.
    ({"IPv4Data": [{"Pool": "fd00::/64"}]}, ["IPv4Data[0].Pool", "IPv4"]),
    ({"IPv6Data": [{"Pool": "10.0.0.0/8"}]}, ["IPv6Data[0].Pool", "IPv6"]),
    ({"IPv4Data": [{"Pool": "10.0.0.0/8", "Gateway": "fd00::1/64"}]},
     ["IPv4Data[0].Gateway", "IPv4"]),
    ({"IPv4Data": [{"Pool": "10.0.0.0/8", "AuxAddresses": {"h": "fd00::2/64"}}]},
     ["IPv4Data[0].AuxAddresses.h", "IPv4"]),
])
def test_create_network_malformed(body, words):
    bad(p.parse_create_network, {"NetworkID": NID, **body}, *words)


def test_network_ref():
    assert p.parse_network_ref({"NetworkID": NID}).network_id == NID
    bad(p.parse_network_ref, {}, "NetworkID")
    bad(p.parse_network_ref, {"NetworkID": "abc"}, "NetworkID")


# -- CreateEndpoint ------------------------------------------------------------------

EXPOSED = [{"Proto": 6, "Port": 9999}, {"Proto": 6, "Port": 80}, {"Proto": 17, "Port": 53}]
PORTMAP = [
    {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080},
    {"Proto": 17, "IP": "", "Port": 53, "HostIP": "127.0.0.1", "HostPort": 5353,
     "HostPortEnd": 5353},
]


def endpoint_body(**over):
    body = {
        "NetworkID": NID, "EndpointID": EID,
        "Interface": {"Address": "10.70.0.50/24", "AddressIPv6": "",
                      "MacAddress": "02:42:0a:46:00:32"},
        "Options": {"com.docker.network.endpoint.exposedports": EXPOSED,
                    "com.docker.network.endpoint.macaddress": "AkIKRgAy",
                    "com.docker.network.portmap": PORTMAP},
    }
    body.update(over)
    return body


def test_create_endpoint_full():
    req = p.parse_create_endpoint(p.load_body(json.dumps(endpoint_body()).encode()))
    assert req.network_id == NID and req.endpoint_id == EID
    assert req.address == ip("10.70.0.50/24") and req.address6 is None
    assert req.mac == "02:42:0a:46:00:32"
    assert req.options == {} and req.ifname == ""
    tcp, udp = p.parse_portmap(endpoint_body()["Options"]["com.docker.network.portmap"])
    assert (tcp.proto, tcp.container_port, tcp.host_port, tcp.host_port_end, tcp.host_ip) == (
        "tcp", 80, 8080, 8080, "")
    assert (udp.proto, udp.container_port, udp.host_port, udp.host_ip) == (
        "udp", 53, 5353, "127.0.0.1")


def test_create_endpoint_mac_only_in_options_base64():
    body = endpoint_body(Interface={"Address": "10.70.0.50/24", "AddressIPv6": "",
                                    "MacAddress": ""})
    req = p.parse_create_endpoint(body)
    assert req.mac == "02:42:0a:46:00:32"
    assert base64.b64decode("AkIKRgAy") == bytes.fromhex("02420a460032")


def test_create_endpoint_mac_option_plain_string():
    body = endpoint_body(Interface={}, Options={
        "com.docker.network.endpoint.macaddress": "02:42:AC:11:00:02"})
    assert p.parse_create_endpoint(body).mac == "02:42:ac:11:00:02"


def test_create_endpoint_mac_uppercase_lowered():
    body = endpoint_body(Interface={"MacAddress": "02:42:AC:11:00:02"})
    assert p.parse_create_endpoint(body).mac == "02:42:ac:11:00:02"


def test_create_endpoint_internal_empty_options_no_address():
    # --internal: Options is {}; with --ipam-driver null: no address at all.
    req = p.parse_create_endpoint({"NetworkID": NID, "EndpointID": EID,
                                   "Interface": {"Address": "", "AddressIPv6": "",
                                                 "MacAddress": ""}, "Options": {}})
    assert req.address is None and req.address6 is None and req.mac == ""
    assert req.options == {}


def test_create_endpoint_no_interface():
    req = p.parse_create_endpoint({"NetworkID": NID, "EndpointID": EID})
    assert req.address is None and req.mac == ""


def test_create_endpoint_dual_stack():
    req = p.parse_create_endpoint(endpoint_body(Interface={
        "Address": "10.70.0.5/24", "AddressIPv6": "fd70::5/64", "MacAddress": ""}))
    assert req.address6 == ip("fd70::5/64")


def test_create_endpoint_driver_opts_kept_flat():
    body = endpoint_body()
    body["Options"] = dict(body["Options"], foo="bar",
                           **{"com.docker.network.endpoint.ifname": "x"})
    assert p.parse_create_endpoint(body).options == {"foo": "bar"}


@pytest.mark.parametrize("over,words", [
    ({"EndpointID": "nope"}, ["EndpointID", "64 lowercase hex"]),
    ({"EndpointID": EID.upper()}, ["EndpointID"]),
    ({"EndpointID": None}, ["missing EndpointID"]),
    ({"NetworkID": EID + "0"}, ["NetworkID"]),
    ({"Interface": "10.0.0.2/24"}, ["Interface", "object"]),
    ({"Interface": {"Address": "10.0.0.256/24"}}, ["Interface.Address"]),
    ({"Interface": {"Address": "fd00::5/64"}}, ["Interface.Address", "IPv4"]),
    ({"Interface": {"Address": ["10.0.0.2/24"]}}, ["Interface.Address", "CIDR"]),
    ({"Interface": {"AddressIPv6": "10.0.0.5/24"}}, ["Interface.AddressIPv6", "IPv6"]),
    ({"Interface": {"AddressIPv6": "fd00::zz/64"}}, ["Interface.AddressIPv6"]),
    ({"Interface": {"MacAddress": "02:42:0a:46:00"}}, ["Interface.MacAddress", "MAC"]),
    ({"Interface": {"MacAddress": "02:42:0a:46:00:32:11"}}, ["Interface.MacAddress"]),
    ({"Interface": {"MacAddress": "02-42-0a-46-00-32"}}, ["Interface.MacAddress"]),
    ({"Interface": {"MacAddress": "02:42:0a:46:00:32\n"}}, ["Interface.MacAddress"]),
    ({"Interface": {"MacAddress": "zz:42:0a:46:00:32"}}, ["Interface.MacAddress"]),
    ({"Interface": {"MacAddress": 12}}, ["Interface.MacAddress"]),
    ({"Options": []}, ["Options", "object"]),
    ({"Options": {"foo": 1}}, ["'foo'", "string"]),
    ({"Interface": {}, "Options": {"com.docker.network.endpoint.macaddress": "AkIKRg=="}},
     ["com.docker.network.endpoint.macaddress", "MAC"]),  # 4 bytes
    ({"Interface": {}, "Options": {"com.docker.network.endpoint.macaddress": "!!notb64"}},
     ["com.docker.network.endpoint.macaddress"]),
    ({"Interface": {}, "Options": {"com.docker.network.endpoint.macaddress": 5}},
     ["com.docker.network.endpoint.macaddress", "string"]),
])
def test_create_endpoint_malformed(over, words):
    bad(p.parse_create_endpoint, endpoint_body(**over), *words)


def pm(**over):
    item = {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080,
            "HostPortEnd": 8080}
    item.update(over)
    return item


@pytest.mark.parametrize("value,words", [
    ("80:8080", ["com.docker.network.portmap", "list"]),
    ({"Port": 80}, ["com.docker.network.portmap", "list"]),
    (["x"], ["com.docker.network.portmap[0]", "object"]),
    ([pm(Proto=1)], ["com.docker.network.portmap[0].Proto", "tcp, udp or sctp"]),
    ([pm(Proto="tcp")], ["com.docker.network.portmap[0].Proto"]),
    ([pm(Proto=[6])], ["com.docker.network.portmap[0].Proto"]),
    ([pm(Proto={"p": 6})], ["com.docker.network.portmap[0].Proto"]),
    ([pm(Proto=None)], ["com.docker.network.portmap[0].Proto"]),
    ([pm(), pm(Port=0)], ["com.docker.network.portmap[1].Port", "port number"]),
    ([pm(Port=65536)], ["com.docker.network.portmap[0].Port"]),
    ([pm(Port=-1)], ["com.docker.network.portmap[0].Port"]),
    ([pm(Port="80")], ["com.docker.network.portmap[0].Port"]),
    ([pm(Port=True)], ["com.docker.network.portmap[0].Port"]),
    ([pm(Port=80.0)], ["com.docker.network.portmap[0].Port"]),
    ([pm(HostPort=70000)], ["com.docker.network.portmap[0].HostPort"]),
    ([pm(HostPort=-5)], ["com.docker.network.portmap[0].HostPort"]),
    ([pm(HostPort="8080")], ["com.docker.network.portmap[0].HostPort"]),
    ([pm(HostPortEnd=65536)], ["com.docker.network.portmap[0].HostPortEnd"]),
    ([pm(HostPort=9000, HostPortEnd=8000)], ["com.docker.network.portmap[0]", "below"]),
    ([pm(HostIP="300.1.1.1")], ["com.docker.network.portmap[0].HostIP"]),
    ([pm(HostIP="localhost")], ["com.docker.network.portmap[0].HostIP"]),
    ([pm(HostIP=5)], ["com.docker.network.portmap[0].HostIP"]),
    ([pm(HostIP=["127.0.0.1"])], ["com.docker.network.portmap[0].HostIP"]),
])
def test_portmap_malformed(value, words):
    body = endpoint_body()
    body["Options"] = {"com.docker.network.portmap": value}
    bad(p.parse_create_endpoint, body, *words)


def test_portmap_sctp_ipv6_host_ip():
    [m] = p.parse_portmap([pm(Proto=132, HostIP="::1")])
    assert m.proto == "sctp" and m.host_ip == "::1"


def test_portmap_host_ip_normalised():
    [m] = p.parse_portmap([pm(HostIP="fd00:0:0::1")])
    assert m.host_ip == "fd00::1"


def test_portmap_without_host_port():
    # `-p 80` and `-P` send HostPort 0: any free port (ports.choose picks).
    [m] = p.parse_portmap([pm(HostPort=0, HostPortEnd=0)])
    assert m.host_port == 0 and m.host_port_end == 0
    [m] = p.parse_portmap([{"Proto": 6, "Port": 80}])
    assert m.host_port == 0


def test_portmap_range():
    # `-p 8000-8010:80`: Docker means one port of the range, not all eleven.
    [m] = p.parse_portmap([pm(HostPort=8000, HostPortEnd=8010)])
    assert (m.host_port, m.host_port_end) == (8000, 8010)


def test_portmap_none_and_empty():
    assert p.parse_portmap(None) == ()
    assert p.parse_portmap([]) == ()


def test_endpoint_ref():
    ref = p.parse_endpoint_ref({"NetworkID": NID, "EndpointID": EID})
    assert (ref.network_id, ref.endpoint_id) == (NID, EID)
    bad(p.parse_endpoint_ref, {"NetworkID": NID}, "EndpointID")
    bad(p.parse_endpoint_ref, {"EndpointID": EID}, "NetworkID")


# -- Join / connectivity ----------------------------------------------------------------


def test_join():
    req = p.parse_join({"NetworkID": NID, "EndpointID": EID,
                        "SandboxKey": "/var/run/docker/netns/0123456789ab",
                        "Options": {"com.docker.network.endpoint.exposedports": EXPOSED,
                                    "com.docker.network.portmap": PORTMAP}})
    assert req.sandbox_key == "/var/run/docker/netns/0123456789ab"
    assert (req.network_id, req.endpoint_id) == (NID, EID)


def test_join_without_options_or_key():
    req = p.parse_join({"NetworkID": NID, "EndpointID": EID})
    assert req.sandbox_key == ""


@pytest.mark.parametrize("over,words", [
    ({"SandboxKey": 5}, ["SandboxKey"]),
    ({"SandboxKey": ["/x"]}, ["SandboxKey"]),
    ({"SandboxKey": "/var/run/docker/netns/a\0b"}, ["SandboxKey"]),
    ({"SandboxKey": "/" + "a" * 5000}, ["SandboxKey"]),
    ({"SandboxKey": "relative/path"}, ["SandboxKey"]),
    ({"EndpointID": "x"}, ["EndpointID"]),
    ({"Options": "x"}, ["Options"]),
    ({"Options": {"com.docker.network.portmap": [pm(Port=0)]}},
     ["com.docker.network.portmap[0].Port"]),
])
def test_join_malformed(over, words):
    body = {"NetworkID": NID, "EndpointID": EID, "SandboxKey": "/var/run/docker/netns/x"}
    body.update(over)
    bad(p.parse_join, body, *words)


def test_connectivity():
    req = p.parse_connectivity({"NetworkID": NID, "EndpointID": EID,
                                "Options": {"com.docker.network.endpoint.exposedports": EXPOSED,
                                            "com.docker.network.portmap": PORTMAP}})
    assert len(req.port_mappings) == 2
    req = p.parse_connectivity({"NetworkID": NID, "EndpointID": EID})
    assert req.port_mappings == ()
    bad(p.parse_connectivity, {"NetworkID": NID, "EndpointID": EID,
                               "Options": {"com.docker.network.portmap": [pm(Proto=99)]}},
        "Proto")


# -- IPAM ---------------------------------------------------------------------------


def test_request_pool_v4():
    req = p.parse_request_pool({"AddressSpace": "PycniLocal", "Pool": "10.60.0.0/16",
                                "SubPool": "10.60.1.0/24", "Options": {"cni.network": "x"},
                                "V6": False})
    assert req.address_space == "PycniLocal"
    assert req.pool == net("10.60.0.0/16") and req.sub_pool == net("10.60.1.0/24")
    assert req.options == {"cni.network": "x"} and req.v6 is False


def test_request_pool_v6_and_defaults():
    req = p.parse_request_pool({"AddressSpace": "PycniLocal", "Pool": "fd60::/64",
                                "SubPool": "", "Options": None, "V6": True})
    assert req.pool == net("fd60::/64") and req.sub_pool is None and req.v6
    req = p.parse_request_pool({"AddressSpace": "PycniLocal", "Pool": "", "V6": False})
    assert req.pool is None and req.options == {}
    assert p.parse_request_pool({}).address_space == ""


@pytest.mark.parametrize("body,words", [
    ({"AddressSpace": 5}, ["AddressSpace"]),
    ({"AddressSpace": "x" * 65}, ["AddressSpace"]),
    ({"Pool": "10.0.0.0/40"}, ["Pool"]),
    ({"Pool": 10}, ["Pool", "CIDR"]),
    ({"Pool": "fd00::/64"}, ["Pool", "IPv4"]),
    ({"Pool": "10.0.0.0/8", "V6": True}, ["Pool", "IPv6"]),
    ({"Pool": "10.0.0.0/16", "SubPool": "10.1.0.0/24"}, ["SubPool", "not inside"]),
    ({"SubPool": "10.1.0.0/24"}, ["SubPool", "not inside"]),
    ({"Pool": "10.0.0.0/16", "SubPool": "fd00::/64"}, ["SubPool", "IPv4"]),
    ({"Pool": "10.0.0.0/16", "SubPool": "bogus"}, ["SubPool"]),
    ({"V6": "yes please"}, ["V6", "boolean"]),
    ({"Options": {"cni.network": 5}}, ["Options.cni.network", "string"]),
    ({"Options": "cni.network=x"}, ["Options", "object"]),
])
def test_request_pool_malformed(body, words):
    bad(p.parse_request_pool, body, *words)


POOL_ID = "pycni:0123456789abcdef01234567"


def test_request_address_gateway():
    req = p.parse_request_address({
        "PoolID": POOL_ID, "Address": "10.60.0.254",
        "Options": {"RequestAddressType": "com.docker.network.gateway"}})
    assert req.pool_id == POOL_ID and req.gateway is True
    assert req.address == ipaddress.ip_address("10.60.0.254")


def test_request_address_container():
    req = p.parse_request_address({
        "PoolID": POOL_ID, "Address": "",
        "Options": {"com.docker.network.endpoint.macaddress": "02:42:0A:3C:00:02"}})
    assert req.address is None and req.gateway is False


def test_request_address_with_prefix_and_no_options():
    req = p.parse_request_address({"PoolID": POOL_ID, "Address": "fd60::5/64"})
    assert req.address == ipaddress.ip_address("fd60::5") and not req.gateway


@pytest.mark.parametrize("body,words", [
    ({"Address": ""}, ["PoolID"]),
    ({"PoolID": "", "Address": ""}, ["PoolID"]),
    ({"PoolID": 5}, ["PoolID"]),
    ({"PoolID": "-leading-dash"}, ["PoolID"]),
    ({"PoolID": "a b"}, ["PoolID"]),
    ({"PoolID": POOL_ID + "\n"}, ["PoolID"]),
    ({"PoolID": "p" * 202}, ["PoolID"]),
    ({"PoolID": POOL_ID, "Address": "10.0.0.300"}, ["Address"]),
    ({"PoolID": POOL_ID, "Address": 5}, ["Address", "string"]),
    ({"PoolID": POOL_ID, "Options": {"RequestAddressType": 1}},
     ["Options.RequestAddressType", "string"]),
    ({"PoolID": POOL_ID, "Options": {"com.docker.network.endpoint.macaddress": "xx"}},
     ["com.docker.network.endpoint.macaddress"]),
])
def test_request_address_malformed(body, words):
    bad(p.parse_request_address, body, *words)


def test_release_address():
    req = p.parse_release_address({"PoolID": POOL_ID, "Address": "10.60.0.5"})
    assert req.pool_id == POOL_ID and req.address == ipaddress.ip_address("10.60.0.5")
    req = p.parse_release_address({"PoolID": POOL_ID, "Address": "10.60.0.5/16"})
    assert req.address == ipaddress.ip_address("10.60.0.5")


@pytest.mark.parametrize("body,words", [
    ({"PoolID": POOL_ID}, ["Address"]),
    ({"PoolID": POOL_ID, "Address": ""}, ["Address"]),
    ({"PoolID": POOL_ID, "Address": "nope"}, ["Address", "nope"]),
    ({"PoolID": POOL_ID, "Address": ["10.0.0.1"]}, ["Address"]),
    ({"Address": "10.60.0.5"}, ["PoolID"]),
])
def test_release_address_malformed(body, words):
    bad(p.parse_release_address, body, *words)


def test_release_pool():
    assert p.parse_release_pool({"PoolID": POOL_ID}).pool_id == POOL_ID
    bad(p.parse_release_pool, {}, "PoolID")
    bad(p.parse_release_pool, {"PoolID": None}, "PoolID")


def test_messages_truncate_long_values():
    msg = bad(p.parse_network_ref, {"NetworkID": "x" * 5000}, "NetworkID")
    assert len(msg) < 300


def test_create_network_ipv6_only_only_when_the_engine_says_so():
    body = {"NetworkID": NID, "Options": {"com.docker.network.enable_ipv4": False,
                                          "com.docker.network.enable_ipv6": True},
            "IPv6Data": [{"AddressSpace": "LocalDefault", "Pool": "fd50::/64"}]}
    assert p.parse_create_network(body).ipv6_only is True
    body["Options"]["com.docker.network.enable_ipv4"] = True
    assert p.parse_create_network(body).ipv6_only is False
    del body["Options"]["com.docker.network.enable_ipv4"]  # Docker before 28
    assert p.parse_create_network(body).ipv6_only is False


def test_create_endpoint_ifname_option():
    body = endpoint_body(Options={"com.docker.network.endpoint.ifname": "foo0"})
    req = p.parse_create_endpoint(body)
    assert req.ifname == "foo0" and req.options == {}
    body = endpoint_body(Options={"com.docker.network.endpoint.ifname": "a/b"})
    bad(p.parse_create_endpoint, body, "com.docker.network.endpoint.ifname")


def test_request_address_bad_mac_option_refused():
    bad(p.parse_request_address, {"PoolID": POOL_ID, "Options": {
        "com.docker.network.endpoint.macaddress": "nope"}}, "macaddress")


def test_allocate_network_options_are_flat():
    req = p.parse_allocate_network({"NetworkID": "q1w2e3r4t5y6u7i8o9p0asdfg",
                                    "Options": {"cni.type": "macvlan"},
                                    "IPv4Data": [{"AddressSpace": "GlobalDefault",
                                                  "Pool": "10.9.0.0/24"}]})
    assert req.options == {"cni.type": "macvlan"} and req.ipv4_data[0].pool == net("10.9.0.0/24")
    bad(p.parse_allocate_network, {"NetworkID": NID, "Options": {"k": 5}}, "'k'")


@pytest.mark.parametrize("value", ["q1w2e3r4t5y6u7i8o9p0asdf", "Q1W2E3R4T5Y6U7I8O9P0ASDFG",
                                   "q1w2e3r4t5y6u7i8o9p0asd-g"])
def test_swarm_network_ids_exactly(value):
    bad(p.parse_network_ref, {"NetworkID": value}, "NetworkID")
    bad(p.parse_endpoint_ref, {"NetworkID": NID, "EndpointID": "q1w2e3r4t5y6u7i8o9p0asdfg"},
        "EndpointID")


NID_ = "ab" * 32
EID_ = "cd" * 32


@pytest.mark.parametrize("parse, body", [
    (p.parse_create_endpoint, {"NetworkID": NID_, "EndpointID": EID_,
                               "Interface": {"AddressIPv6": "fe80::5%eth0/64"}}),
    (p.parse_create_network, {"NetworkID": NID_, "IPv6Data": [
        {"AddressSpace": "x", "Pool": "fd00::%eth0/64"}]}),
    (p.parse_create_network, {"NetworkID": NID_, "IPv6Data": [
        {"AddressSpace": "x", "Pool": "fd00::/64", "Gateway": "fd00::1%eth0/64"}]}),
    (p.parse_request_pool, {"Pool": "fd00::%1/64", "V6": True}),
    (p.parse_request_address, {"PoolID": "pycni:x", "Address": "fd00::5%eth0"}),
    (p.parse_release_address, {"PoolID": "pycni:x", "Address": "fd00::5%eth0"}),
])
def test_ipv6_scope_ids_are_refused(parse, body):
    """A zone (scope id) names an interface of the host: nothing Docker sends has one,
    and one passed on would reach CNI and iptables as an address they cannot parse."""
    with pytest.raises(BadRequest, match="scope"):
        parse(body)


def test_an_empty_body_says_docker_resent_a_call():
    """Docker re-sends a call without its body after the connection to pycni broke: the
    user reads what happened and what to do, not only the field that is missing."""
    with pytest.raises(p.BadRequest, match="missing NetworkID: the request came with an "
                       "empty body.*run the command again"):
        p.parse_create_network(p.load_body(b""))
