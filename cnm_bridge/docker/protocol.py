"""Docker plugin-protocol requests, parsed and validated into typed objects.

Docker posts JSON without a Content-Type; every parser here takes the raw body
bytes and raises BadRequest naming the field at fault. Shapes follow moby's
libnetwork/drivers/remote/api and ipams/remote/api.
"""

import base64
import binascii
import ipaddress
import json
import re
from dataclasses import dataclass, field

from ..errors import BadRequest
from ..network.options import IFNAME_RE, bool_word

ID_RE = re.compile(r"[0-9a-f]{64}")
# Swarm's network ids: 25 characters of [0-9a-z] (moby's stringid for cluster objects).
SWARM_ID_RE = re.compile(r"[0-9a-z]{25}")
MAX_BODY = 1 << 20
MAX_DEPTH = 20

OPT_GENERIC = "com.docker.network.generic"
OPT_IPV6 = "com.docker.network.enable_ipv6"
OPT_INTERNAL = "com.docker.network.internal"
OPT_IPV4 = "com.docker.network.enable_ipv4"  # Docker 28+: false for --ipv4=false
OPT_IFNAME = "com.docker.network.endpoint.ifname"  # Docker 28+: --driver-opt
OPT_PORTMAP = "com.docker.network.portmap"
OPT_EXPOSED = "com.docker.network.endpoint.exposedports"
OPT_MAC = "com.docker.network.endpoint.macaddress"
PROTO_NAMES = {6: "tcp", 17: "udp", 132: "sctp"}


def _depth(value, limit):
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if d > limit:
            return False
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return True


def load_body(data):
    """Raw body -> dict. An empty body is an empty object (Activate, GetCapabilities)."""
    if data is None or not data.strip():
        return {}
    if len(data) > MAX_BODY:
        raise BadRequest(f"request body larger than {MAX_BODY} bytes")
    try:
        body = json.loads(data)
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    if not _depth(body, MAX_DEPTH):
        raise BadRequest(f"request body is nested deeper than {MAX_DEPTH} levels")
    return body


def _id(body, key, required=True):
    value = body.get(key)
    if value is None or value == "":
        if required and not body:
            # Docker re-sends a call with the body it already sent gone when the
            # connection broke mid-call (pycni's worker restarted under it).
            raise BadRequest(f"missing {key}: the request came with an empty body, as Docker "
                             "re-sends a call after its connection to pycni broke (pycni "
                             "restarted during the call); run the command again")
        if required:
            raise BadRequest(f"missing {key}")
        return ""
    swarm_ok = key == "NetworkID"
    if not isinstance(value, str) or not (
            ID_RE.fullmatch(value) or (swarm_ok and SWARM_ID_RE.fullmatch(value))):
        raise BadRequest(f"{key} must be 64 lowercase hex characters"
                         + (" (or a swarm network's 25)" if swarm_ok else "")
                         + f", got {_show(value)}")
    return value


def _show(value, limit=80):
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _dict(body, key):
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{key} must be an object, got {_show(value)}")
    return value


def _bool(value, key):
    if value is None:
        return False
    word = bool_word(value) if isinstance(value, (bool, str)) else None
    if word is None:
        raise BadRequest(f"{key} must be a boolean, got {_show(value)}")
    return word


def _no_scope(value, key):
    """Python parses an IPv6 zone (`fe80::1%eth0`), which names a host interface: nothing
    Docker sends has one, and CNI plugins and iptables cannot parse it."""
    if "%" in value:
        raise BadRequest(f"{key}: {_show(value)} has an IPv6 scope id (the %... part); give "
                         f"the address without it")
    return value


def _ip_value(value, key, parse, what):
    """A CIDR string parsed by `parse` (ip_interface, ip_network); '' or None -> None."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a CIDR string, got {_show(value)}")
    _no_scope(value, key)
    try:
        return parse(value)
    except ValueError:
        raise BadRequest(f"{key}: invalid {what} {_show(value)}") from None


def _iface(value, key):
    """'10.0.0.2/24' -> ip_interface; '' or None -> None."""
    return _ip_value(value, key, ipaddress.ip_interface, "address")


def _network(value, key):
    return _ip_value(value, key, lambda v: ipaddress.ip_network(v, strict=False), "subnet")


MAC_RE = re.compile(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}")


def _mac(value, key):
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not MAC_RE.fullmatch(value):
        raise BadRequest(f"{key}: invalid MAC address {_show(value)}")
    return value.lower()


@dataclass(frozen=True)
class IPAMData:
    """One entry of IPv4Data/IPv6Data: {"AddressSpace","Pool","Gateway","AuxAddresses"}."""

    pool: object  # ipaddress network or None
    gateway: object = None  # ipaddress interface or None
    address_space: str = ""
    # AuxAddresses are validated, not kept: Docker's IPAM keeps them out of what it
    # hands out, and pycni's IPAM driver gets them as RequestAddress calls.


def _objects(value, name):
    """A list of JSON objects -> [(its name in messages, object)]; [] for null."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"{name} must be a list")
    out = []
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object")
        out.append((where, item))
    return out


def _ipam_data(body, key, family):
    out = []
    for where, item in _objects(body.get(key), key):
        aux = item.get("AuxAddresses") or {}
        if not isinstance(aux, dict):
            raise BadRequest(f"{where}.AuxAddresses must be an object")
        space = item.get("AddressSpace") or ""
        if not isinstance(space, str):
            raise BadRequest(f"{where}.AddressSpace must be a string")
        pool = _network(item.get("Pool"), f"{where}.Pool")
        if pool is None:
            raise BadRequest(f"missing {where}.Pool")
        gateway = _iface(item.get("Gateway"), f"{where}.Gateway")
        aux = tuple(sorted((str(k), _iface(v, f"{where}.AuxAddresses.{k}"))
                           for k, v in aux.items()))
        for what, addr in [("Pool", pool), ("Gateway", gateway)] + [
                (f"AuxAddresses.{k}", v) for k, v in aux]:
            if addr is not None and addr.version != family:
                raise BadRequest(f"{where}.{what} {addr} is not an IPv{family} address")
        out.append(IPAMData(pool=pool, gateway=gateway, address_space=space))
    return out


@dataclass(frozen=True)
class CreateNetworkRequest:
    network_id: str
    generic: dict
    ipv6: bool
    internal: bool
    ipv4_data: list
    ipv6_data: list
    ipv6_only: bool = False  # the engine asked for no IPv4 (Docker 28's --ipv4=false)


def _network_options(opts, kinds):
    """`-o k=v` as {str: str}: values of other accepted `kinds` (Docker's generic options
    may carry JSON scalars) are JSON-encoded."""
    clean = {}
    for k, v in opts.items():
        if not isinstance(v, kinds):
            raise BadRequest(f"network option {k!r} must be a string, got {_show(v)}")
        clean[str(k)] = v if isinstance(v, str) else json.dumps(v)
    return clean


def parse_create_network(body):
    """{"NetworkID","Options":{generic, enable_ipv6, enable_ipv4, internal},
    "IPv4Data":[..],"IPv6Data":[..]}"""
    opts = _dict(body, "Options")
    generic = opts.get(OPT_GENERIC) or {}
    if not isinstance(generic, dict):
        raise BadRequest(f"Options.{OPT_GENERIC} must be an object")
    return CreateNetworkRequest(
        network_id=_id(body, "NetworkID"),
        generic=_network_options(generic, (str, int, float, bool)),
        ipv6=_bool(opts.get(OPT_IPV6), OPT_IPV6),
        internal=_bool(opts.get(OPT_INTERNAL), OPT_INTERNAL),
        ipv4_data=_ipam_data(body, "IPv4Data", 4),
        ipv6_data=_ipam_data(body, "IPv6Data", 6),
        ipv6_only=OPT_IPV4 in opts and not _bool(opts.get(OPT_IPV4), OPT_IPV4),
    )


@dataclass(frozen=True)
class AllocateNetworkRequest:
    network_id: str
    options: dict  # the user's `-o k=v`, flat
    ipv4_data: list
    ipv6_data: list


def parse_allocate_network(body):
    """{"NetworkID","Options":{k: v} (flat),"IPv4Data","IPv6Data"}: the swarm manager's,
    for a global-scope driver."""
    return AllocateNetworkRequest(_id(body, "NetworkID"),
                                  _network_options(_dict(body, "Options"), (str,)),
                                  _ipam_data(body, "IPv4Data", 4), _ipam_data(body, "IPv6Data", 6))


@dataclass(frozen=True)
class NetworkRef:
    network_id: str


def parse_network_ref(body):
    """{"NetworkID"}: DeleteNetwork, FreeNetwork."""
    return NetworkRef(_id(body, "NetworkID"))


@dataclass(frozen=True)
class PortMapping:
    proto: str
    container_port: int
    host_port: int
    host_port_end: int
    host_ip: str
    # HostPort..HostPortEnd means "one free port of that range" (the CLI already
    # splits `-p 8000-8001:80-81` into one binding per port); HostPort 0 (`-p 80`,
    # `-P`) asks for any free port: ports.choose picks.


def _port(value, key, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, int) or not (
            (0 if allow_zero else 1) <= value <= 65535):
        raise BadRequest(f"{key} must be a port number, got {_show(value)}")
    return value


def parse_portmap(value):
    out = []
    for where, item in _objects(value, OPT_PORTMAP):
        proto = item.get("Proto")
        proto = PROTO_NAMES.get(proto) if type(proto) is int else None
        if proto is None:
            raise BadRequest(f"{where}.Proto {_show(item.get('Proto'))} is not tcp, udp or sctp")
        host_ip = item.get("HostIP") or ""
        if host_ip:
            if not isinstance(host_ip, str):
                raise BadRequest(f"{where}.HostIP must be a string, got {_show(host_ip)}")
            try:
                host_ip = str(ipaddress.ip_address(_no_scope(host_ip, f"{where}.HostIP")))
            except ValueError:
                raise BadRequest(f"{where}.HostIP: invalid address {_show(host_ip)}") from None
        host_port = _port(item.get("HostPort", 0), f"{where}.HostPort", allow_zero=True)
        end = _port(item.get("HostPortEnd", 0) or 0, f"{where}.HostPortEnd", allow_zero=True)
        if end and end < host_port:
            raise BadRequest(f"{where}: HostPortEnd {end} below HostPort {host_port}")
        out.append(PortMapping(proto, _port(item.get("Port"), f"{where}.Port"), host_port,
                               end, host_ip))
    return tuple(out)


@dataclass(frozen=True)
class CreateEndpointRequest:
    network_id: str
    endpoint_id: str
    address: object  # ip_interface or None
    address6: object
    mac: str
    ifname: str = ""  # the interface name asked for (com.docker.network.endpoint.ifname)
    options: dict = field(default_factory=dict)  # --driver-opt keys pycni does not know


ENDPOINT_DOCKER_KEYS = (OPT_PORTMAP, OPT_EXPOSED, OPT_MAC, OPT_IFNAME)


def _mac_option(value):
    # Docker sends the user's --mac-address base64-encoded (6 raw bytes).
    if not value:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{OPT_MAC} must be a string")
    if MAC_RE.fullmatch(value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{OPT_MAC}: invalid MAC {_show(value)}") from None
    if len(raw) != 6:
        raise BadRequest(f"{OPT_MAC}: invalid MAC {_show(value)}")
    return ":".join(f"{b:02x}" for b in raw)


def parse_create_endpoint(body):
    """{"NetworkID","EndpointID","Interface":{"Address","AddressIPv6","MacAddress"},
    "Options":{portmap, exposedports, macaddress, endpoint.ifname, --driver-opt keys}}

    Port bindings are not kept here: Docker sends them again with
    ProgramExternalConnectivity, for the one endpoint that publishes them.
    """
    iface = _dict(body, "Interface")
    opts = _dict(body, "Options")
    mac = _mac(iface.get("MacAddress"), "Interface.MacAddress") or _mac_option(opts.get(OPT_MAC))
    extra = {}
    for k, v in opts.items():
        if k in ENDPOINT_DOCKER_KEYS or k.startswith("com.docker."):
            continue
        if not isinstance(v, str):
            raise BadRequest(f"endpoint option {k!r} must be a string")
        extra[k] = v
    address = _iface(iface.get("Address"), "Interface.Address")
    if address is not None and address.version != 4:
        raise BadRequest("Interface.Address must be IPv4")
    address6 = _iface(iface.get("AddressIPv6"), "Interface.AddressIPv6")
    if address6 is not None and address6.version != 6:
        raise BadRequest("Interface.AddressIPv6 must be IPv6")
    parse_portmap(opts.get(OPT_PORTMAP))  # validated, used at ProgramExternalConnectivity
    ifname = opts.get(OPT_IFNAME) or ""
    if ifname and (not isinstance(ifname, str) or not IFNAME_RE.fullmatch(ifname)):
        raise BadRequest(f"{OPT_IFNAME} {_show(ifname)} is not a valid interface name")
    return CreateEndpointRequest(
        network_id=_id(body, "NetworkID"),
        endpoint_id=_id(body, "EndpointID"),
        address=address,
        address6=address6,
        mac=mac,
        ifname=ifname,
        options=extra,
    )


@dataclass(frozen=True)
class EndpointRef:
    network_id: str
    endpoint_id: str


def parse_endpoint_ref(body):
    """{"NetworkID","EndpointID"}: DeleteEndpoint, EndpointOperInfo, Leave."""
    return EndpointRef(_id(body, "NetworkID"), _id(body, "EndpointID"))


@dataclass(frozen=True)
class JoinRequest:
    network_id: str
    endpoint_id: str
    sandbox_key: str


def parse_join(body):
    """{"NetworkID","EndpointID","SandboxKey","Options"}: the options repeat
    CreateEndpoint's, which pycni has already read."""
    key = body.get("SandboxKey") or ""
    if not isinstance(key, str) or "\0" in key or len(key) > 4096 or (
            key and not key.startswith("/")):
        raise BadRequest("SandboxKey must be an absolute path")
    parse_portmap(_dict(body, "Options").get(OPT_PORTMAP))  # validated, read at Program...
    return JoinRequest(_id(body, "NetworkID"), _id(body, "EndpointID"), key)


@dataclass(frozen=True)
class ConnectivityRequest:
    network_id: str
    endpoint_id: str
    port_mappings: tuple


def parse_connectivity(body):
    """{"NetworkID","EndpointID","Options":{portmap, exposedports}}"""
    opts = _dict(body, "Options")
    return ConnectivityRequest(_id(body, "NetworkID"), _id(body, "EndpointID"),
                               parse_portmap(opts.get(OPT_PORTMAP)))


# -- IPAM (moby ipams/remote/api) ---------------------------------------------

OPT_REQUEST_TYPE = "RequestAddressType"
GATEWAY_TYPE = "com.docker.network.gateway"
POOL_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/\-]{0,200}")


def _str_map(body, key):
    value = _dict(body, key)
    for k, v in value.items():
        if not isinstance(v, str):
            raise BadRequest(f"{key}.{k} must be a string")
    return value


def _pool_id(body):
    value = body.get("PoolID")
    if not isinstance(value, str) or not POOL_ID_RE.fullmatch(value):
        raise BadRequest(f"invalid PoolID {_show(value)}")
    return value


@dataclass(frozen=True)
class RequestPoolRequest:
    address_space: str
    pool: object
    sub_pool: object
    options: dict
    v6: bool


def parse_request_pool(body):
    """{"AddressSpace","Pool","SubPool","Options","V6"}"""
    space = body.get("AddressSpace") or ""
    if not isinstance(space, str) or len(space) > 64:
        raise BadRequest("AddressSpace must be a short string")
    pool = _network(body.get("Pool"), "Pool")
    sub = _network(body.get("SubPool"), "SubPool")
    v6 = _bool(body.get("V6"), "V6")
    for n, key in ((pool, "Pool"), (sub, "SubPool")):
        if n is not None and n.version != (6 if v6 else 4):
            raise BadRequest(f"{key} {n} is not an IPv{6 if v6 else 4} subnet")
    if sub is not None and (pool is None or not sub.subnet_of(pool)):
        raise BadRequest(f"SubPool {sub} is not inside Pool {pool}")
    return RequestPoolRequest(space, pool, sub, _str_map(body, "Options"), v6)


@dataclass(frozen=True)
class ReleasePoolRequest:
    pool_id: str


def parse_release_pool(body):
    """{"PoolID"}"""
    return ReleasePoolRequest(_pool_id(body))


@dataclass(frozen=True)
class RequestAddressRequest:
    pool_id: str
    address: object  # ip_address or None
    gateway: bool


def parse_request_address(body):
    """{"PoolID","Address","Options":{"RequestAddressType","com.docker.network.endpoint.macaddress"}}"""
    addr = body.get("Address") or None
    if addr is not None:
        if not isinstance(addr, str):
            raise BadRequest(f"Address must be a string, got {_show(addr)}")
        try:
            addr = ipaddress.ip_address(_no_scope(addr, "Address").split("/")[0])
        except ValueError:
            raise BadRequest(f"invalid Address {_show(addr)}") from None
    opts = _str_map(body, "Options")
    _mac(opts.get(OPT_MAC), OPT_MAC)  # validated; the IPAM plugins take no MAC
    return RequestAddressRequest(_pool_id(body), addr, opts.get(OPT_REQUEST_TYPE) == GATEWAY_TYPE)


@dataclass(frozen=True)
class ReleaseAddressRequest:
    pool_id: str
    address: object


def parse_release_address(body):
    """{"PoolID","Address"}"""
    addr = body.get("Address")
    try:
        addr = ipaddress.ip_address(_no_scope(str(addr), "Address").split("/")[0])
    except ValueError:
        raise BadRequest(f"invalid Address {_show(addr)}") from None
    return ReleaseAddressRequest(_pool_id(body), addr)
