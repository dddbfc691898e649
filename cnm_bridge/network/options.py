"""Docker's network options (`docker network create -o k=v`) -> a NetworkPlan.

Pure. The mapping follows nerdctl's pkg/netutil: known Docker bridge options
become bridge plugin fields, anything pycni cannot honour is refused by name,
so a typo fails `docker network create` instead of being silently dropped.
"""

import ipaddress
import re
from dataclasses import dataclass

from cni_runner import validate_name

from ..errors import UnsupportedOption
from ..state.records import AttachMode, NetworkKind

OPT_CNI_NETWORK = "cni.network"
OPT_CNI_TYPE = "cni.type"
OPT_ALLOW_LOSS = "cni.allow-lost-settings"
OPT_IP_RANGE = "cni.ip-range"
OPT_ATTACH = "cni.attach"
OPT_PARENT = "parent"
OPT_MODE = "mode"
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_HOST_IP = "com.docker.network.bridge.host_binding_ipv4"

TYPE_OPTIONS = {
    "bridge": {OPT_BRIDGE_NAME, OPT_MTU, OPT_MASQ, OPT_ICC},
    "macvlan": {OPT_PARENT, OPT_MODE, OPT_MTU},
    "ipvlan": {OPT_PARENT, OPT_MODE, OPT_MTU},
    "ptp": {OPT_MTU, OPT_MASQ},
}
MODES = {"macvlan": {"bridge", "private", "vepa", "passthru"}, "ipvlan": {"l2", "l3", "l3s"}}
IFNAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]{0,14}")

# The one boolean parser of the Docker side: the words Docker's own drivers accept.
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def bool_word(value):
    """True for 'true'/'1'/'yes'/'on', False for 'false'/'0'/'no'/'off' (any case) and
    for a bool itself; None for anything else: each caller says what it refuses."""
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in TRUE_WORDS:
        return True
    if v in FALSE_WORDS:
        return False
    return None


def parse_bool(key, value):
    """A network option's boolean (bool_word), or UnsupportedOption naming it."""
    word = bool_word(value)
    if word is None:
        raise UnsupportedOption(f"option {key}={value!r} must be true or false")
    return word


def ifname_option(key, value):
    # fullmatch: "$" would also accept a trailing newline.
    if not isinstance(value, str) or not IFNAME_RE.fullmatch(value):
        raise UnsupportedOption(
            f"option {key}={value!r} is not a valid interface name "
            "(1-15 characters: letters, digits, '_', '.', '-')")
    return value


def mtu_option(value):
    try:
        mtu = int(value)
    except (TypeError, ValueError):
        mtu = -1
    if not 68 <= mtu <= 65535:
        raise UnsupportedOption(f"option {OPT_MTU}={value!r} must be an integer from 68 to 65535")
    return mtu


def _ipv4_option(key, value):
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        addr = None
    if addr is None or addr.version != 4:
        raise UnsupportedOption(f"option {key}={value!r} is not an IPv4 address")
    return str(addr)


def _cidr_option(key, value):
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise UnsupportedOption(f"option {key}={value!r} is not a subnet (CIDR)") from None


@dataclass(frozen=True)
class NetworkPlan:
    """How a Docker network maps to CNI: a named conflist or a generated one."""

    mode: str  # NetworkKind
    conflist_name: str = ""
    cni_type: str = "bridge"
    # A generated list's options, each typed once here:
    bridge_name: str = ""  # com.docker.network.bridge.name ("": pycni names it)
    parent: str = ""  # a macvlan or ipvlan network's host interface
    parent_mode: str = ""  # its macvlan or ipvlan mode (-o mode=...)
    mtu: int = 0  # 0: the plugin's default
    masquerade: bool = True
    icc: bool = True
    allow_loss: bool = False
    attach: str = AttachMode.AUTO
    host_ip: str = ""  # default host address of published ports
    ip_range: str = ""  # the user's statement of Docker's --ip-range (named lists)


def plan_network(generic):
    """Docker's generic options (-o k=v) -> NetworkPlan, refusing what pycni cannot honour."""
    opts = dict(generic)
    allow_loss = parse_bool(OPT_ALLOW_LOSS, opts.pop(OPT_ALLOW_LOSS, "false"))
    attach = opts.pop(OPT_ATTACH, AttachMode.AUTO)
    if attach not in AttachMode.CHOICES:
        raise UnsupportedOption(f"option {OPT_ATTACH}={attach!r} must be one of "
                                f"{', '.join(AttachMode.CHOICES)}")
    host_ip = opts.pop(OPT_HOST_IP, "")
    if host_ip:
        host_ip = _ipv4_option(OPT_HOST_IP, host_ip)
    common = dict(allow_loss=allow_loss, attach=attach, host_ip=host_ip)
    name = opts.pop(OPT_CNI_NETWORK, None)
    if name is not None:
        return _named_plan(name, opts, common)
    cni_type = opts.pop(OPT_CNI_TYPE, "bridge")
    if cni_type not in TYPE_OPTIONS:
        raise UnsupportedOption(
            f"option {OPT_CNI_TYPE}={cni_type!r} is not supported; use one of "
            f"{', '.join(sorted(TYPE_OPTIONS))}, or {OPT_CNI_NETWORK}=NAME for any conflist")
    if OPT_IP_RANGE in opts:
        raise UnsupportedOption(f"option {OPT_IP_RANGE} is for {OPT_CNI_NETWORK}=NAME networks; "
                                "a generated network takes Docker's --ip-range as it is")
    unknown = sorted(set(opts) - TYPE_OPTIONS[cni_type])
    if unknown:
        raise UnsupportedOption(
            f"unsupported {cni_type!r} network option(s): {', '.join(unknown)}")
    if cni_type in ("macvlan", "ipvlan") and OPT_PARENT not in opts:
        raise UnsupportedOption(f"a {cni_type} network needs -o {OPT_PARENT}=IFACE")
    # Every value typed now, so a bad one fails `docker network create`.
    typed = {}
    for key, value in opts.items():
        if key == OPT_BRIDGE_NAME:
            typed["bridge_name"] = ifname_option(key, value)
        elif key == OPT_PARENT:
            typed["parent"] = ifname_option(key, value)
        elif key == OPT_MTU:
            typed["mtu"] = mtu_option(value)
        elif key == OPT_MASQ:
            typed["masquerade"] = parse_bool(key, value)
        elif key == OPT_ICC:
            typed["icc"] = parse_bool(key, value)
        elif key == OPT_MODE:
            if value not in MODES[cni_type]:
                raise UnsupportedOption(
                    f"option mode={value!r} is not a {cni_type} mode; use one of "
                    f"{', '.join(sorted(MODES[cni_type]))}")
            typed["parent_mode"] = value
    return NetworkPlan(NetworkKind.GENERATED, cni_type=cni_type, **typed, **common)


def _named_plan(name, opts, common):
    try:
        validate_name(name, f"{OPT_CNI_NETWORK} value")
    except Exception as e:
        raise UnsupportedOption(str(e)) from None
    if len(name) > 128:
        raise UnsupportedOption(f"{OPT_CNI_NETWORK} value is longer than 128 characters")
    ip_range = opts.pop(OPT_IP_RANGE, "")
    if ip_range:
        ip_range = str(_cidr_option(OPT_IP_RANGE, ip_range))
    if opts:
        raise UnsupportedOption(
            f"option(s) {', '.join(sorted(opts))} cannot be combined with "
            f"{OPT_CNI_NETWORK}: the conflist {name!r} decides them")
    return NetworkPlan(NetworkKind.NAMED, conflist_name=name, ip_range=ip_range, **common)
