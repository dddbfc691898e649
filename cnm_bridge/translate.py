"""Pure translation between Docker's view and CNI's: options -> conflist, result -> answers.

Nothing here touches the host, so all of it is unit-tested without root.
The option mapping follows nerdctl's pkg/netutil: known Docker bridge options
become bridge plugin fields, anything unknown is refused by name.
"""

import ipaddress
import re
from dataclasses import dataclass

from cni_runner import validate_name

from .errors import UnsupportedOption

OPT_CNI_NETWORK = "cni.network"
OPT_CNI_TYPE = "cni.type"
OPT_ALLOW_LOSS = "cni.allow-lost-settings"
OPT_PARENT = "parent"
OPT_MODE = "mode"
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
OPT_ICC = "com.docker.network.bridge.enable_icc"

TYPE_OPTIONS = {
    "bridge": {OPT_BRIDGE_NAME, OPT_MTU, OPT_MASQ, OPT_ICC},
    "macvlan": {OPT_PARENT, OPT_MODE, OPT_MTU},
    "ipvlan": {OPT_PARENT, OPT_MODE, OPT_MTU},
    "ptp": {OPT_MTU, OPT_MASQ},
}
MODES = {"macvlan": {"bridge", "private", "vepa", "passthru"}, "ipvlan": {"l2", "l3", "l3s"}}
IFNAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]{0,14}")
CONTAINER_IFNAME = "eth0"
# IPAM plugins that take Docker's address through the `ips` capability.
IPS_IPAMS = ("host-local", "static")


def cni_network_name(network_id):
    return "pycni-" + network_id[:12]


def bridge_name(network_id):
    return "pc-" + network_id[:12]


def ports_network_name(cni_name):
    """The name of the portmap-only list run at ProgramExternalConnectivity."""
    return cni_name[:120] + "-ports"


def netns_name(endpoint_id):
    return "pycni-" + endpoint_id


def tmp_ifname(endpoint_id):
    # 15 bytes: the kernel's limit for an interface name.
    return "pyc" + endpoint_id[:12]


def _ifname_option(key, value):
    # fullmatch: "$" would also accept a trailing newline.
    if not isinstance(value, str) or not IFNAME_RE.fullmatch(value):
        raise UnsupportedOption(
            f"option {key}={value!r} is not a valid interface name "
            "(1-15 characters: letters, digits, '_', '.', '-')")
    return value


def _bool_option(key, value):
    v = str(value).strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off"):
        return False
    raise UnsupportedOption(f"option {key}={value!r} must be true or false")


def _mtu_option(value):
    try:
        mtu = int(value)
    except (TypeError, ValueError):
        mtu = -1
    if not 68 <= mtu <= 65535:
        raise UnsupportedOption(f"option {OPT_MTU}={value!r} must be an integer from 68 to 65535")
    return mtu


@dataclass(frozen=True)
class NetworkPlan:
    """How a Docker network maps to CNI: a named conflist or a generated one."""

    mode: str  # "named" or "generated"
    conflist_name: str = ""
    cni_type: str = "bridge"
    options: tuple = ()
    allow_loss: bool = False


def plan_network(generic):
    """Docker's generic options (-o k=v) -> NetworkPlan, refusing what pycni cannot honour."""
    opts = dict(generic)
    allow_loss = _bool_option(OPT_ALLOW_LOSS, opts.pop(OPT_ALLOW_LOSS, "false"))
    name = opts.pop(OPT_CNI_NETWORK, None)
    if name is not None:
        try:
            validate_name(name, f"{OPT_CNI_NETWORK} value")
        except Exception as e:
            raise UnsupportedOption(str(e)) from None
        if len(name) > 128:
            raise UnsupportedOption(f"{OPT_CNI_NETWORK} value is longer than 128 characters")
        if opts:
            raise UnsupportedOption(
                f"option(s) {', '.join(sorted(opts))} cannot be combined with "
                f"{OPT_CNI_NETWORK}: the conflist {name!r} decides them")
        return NetworkPlan("named", conflist_name=name, allow_loss=allow_loss)
    cni_type = opts.pop(OPT_CNI_TYPE, "bridge")
    if cni_type not in TYPE_OPTIONS:
        raise UnsupportedOption(
            f"option {OPT_CNI_TYPE}={cni_type!r} is not supported; use one of "
            f"{', '.join(sorted(TYPE_OPTIONS))}, or {OPT_CNI_NETWORK}=NAME for any conflist")
    unknown = sorted(set(opts) - TYPE_OPTIONS[cni_type])
    if unknown:
        raise UnsupportedOption(
            f"unsupported {cni_type!r} network option(s): {', '.join(unknown)}")
    if cni_type in ("macvlan", "ipvlan") and OPT_PARENT not in opts:
        raise UnsupportedOption(f"a {cni_type} network needs -o {OPT_PARENT}=IFACE")
    # Validate every value now, so a bad one fails `docker network create`.
    for key, value in opts.items():
        if key in (OPT_BRIDGE_NAME, OPT_PARENT):
            _ifname_option(key, value)
        elif key == OPT_MTU:
            _mtu_option(value)
        elif key == OPT_MASQ:
            _bool_option(key, value)
        elif key == OPT_ICC:
            _bool_option(key, value)
        elif key == OPT_MODE and value not in MODES[cni_type]:
            raise UnsupportedOption(
                f"option mode={value!r} is not a {cni_type} mode; use one of "
                f"{', '.join(sorted(MODES[cni_type]))}")
    return NetworkPlan("generated", cni_type=cni_type, options=tuple(sorted(opts.items())),
                       allow_loss=allow_loss)


def _ranges(ipam_data):
    ranges = []
    for d in ipam_data:
        r = {"subnet": str(d.pool)}
        if d.gateway is not None:
            r["gateway"] = str(d.gateway.ip)
        ranges.append([r])
    return ranges


def generate_conflist(network_id, plan, ipv4_data, ipv6_data, internal, ipam_dir):
    """The conflist of a network made from Docker options (no CNI files needed)."""
    opts = dict(plan.options)
    data = list(ipv4_data) + list(ipv6_data)
    routes = []
    if not internal:
        routes = [{"dst": "0.0.0.0/0"} for d in ipv4_data[:1] if d.gateway is not None]
        routes += [{"dst": "::/0"} for d in ipv6_data[:1] if d.gateway is not None]
    ipam = {"type": "host-local", "dataDir": ipam_dir, "ranges": _ranges(data)}
    if routes:
        ipam["routes"] = routes
    if plan.cni_type == "bridge":
        # Masquerade is pycni's, one rule per network (masquerade_for); the
        # plugin's own would cost iptables work on every ADD and DEL.
        main = {"type": "bridge", "bridge": opts.get(OPT_BRIDGE_NAME, bridge_name(network_id)),
                "isGateway": not internal and any(d.gateway is not None for d in data),
                "ipMasq": False, "hairpinMode": True}
    elif plan.cni_type == "ptp":
        main = {"type": "ptp", "ipMasq": _masquerade_on(plan, internal)}
    else:
        main = {"type": plan.cni_type, "master": opts[OPT_PARENT]}
        if OPT_MODE in opts:
            main["mode"] = opts[OPT_MODE]
    if OPT_MTU in opts:
        main["mtu"] = _mtu_option(opts[OPT_MTU])
    main["ipam"] = ipam
    plugins = [main]
    if not internal:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True},
                        "snat": True})
    if plan.cni_type in ("bridge", "ptp"):
        plugins.append({"type": "firewall"})
    return {"cniVersion": "1.0.0", "name": cni_network_name(network_id), "plugins": plugins}


def _masquerade_on(plan, internal):
    return _bool_option(OPT_MASQ, dict(plan.options).get(OPT_MASQ, "true")) and not internal


def masquerade_for(plan, conflist_raw, ipv4_data, ipv6_data, internal):
    """{"bridge": NAME, "subnets": [...]}: what pycni masquerades for a generated
    bridge network (like Docker: `-s SUBNET ! -o BRIDGE`), or {} for none."""
    if plan.mode != "generated" or plan.cni_type != "bridge" or \
            not _masquerade_on(plan, internal):
        return {}
    subnets = [str(d.pool) for d in list(ipv4_data) + list(ipv6_data) if d.pool is not None]
    if not subnets:
        return {}
    return {"bridge": conflist_raw["plugins"][0]["bridge"], "subnets": subnets}


def isolated_bridge(plan, conflist_raw):
    """The bridge whose ports may not talk to each other (enable_icc=false), or ""."""
    opts = dict(plan.options)
    if plan.mode != "generated" or _bool_option(OPT_ICC, opts.get(OPT_ICC, "true")):
        return ""
    return conflist_raw["plugins"][0].get("bridge", "")


def lost_in_handoff(conflist_raw):
    """What the list would configure inside the netns that the move to the container drops.

    The interface keeps its MAC, MTU and flags when it moves; per-interface
    sysctls, routing rules and VRF membership stay behind in the scratch netns.
    """
    lost = []
    for plugin in conflist_raw.get("plugins") or []:
        ptype = plugin.get("type")
        if ptype == "tuning" and plugin.get("sysctl"):
            lost.append(f"tuning sysctl {', '.join(sorted(plugin['sysctl']))}")
        elif ptype == "sbr":
            lost.append("sbr (source-based routing rules and tables)")
        elif ptype == "vrf":
            lost.append(f"vrf {plugin.get('vrfname', '')} membership".replace("  ", " "))
    return lost


def check_handoff(conflist_name, conflist_raw, allow_loss):
    lost = lost_in_handoff(conflist_raw)
    if lost and not allow_loss:
        raise UnsupportedOption(
            f"CNI network {conflist_name!r} configures inside the container's netns what "
            f"cannot survive pycni's handoff to Docker: {'; '.join(lost)}. Pass -o "
            f"{OPT_ALLOW_LOSS}=true to create the network without them")


def main_ipam(conflist_raw):
    """The IPAM section of the first plugin that has one, or None."""
    for plugin in conflist_raw.get("plugins") or []:
        if isinstance(plugin, dict) and isinstance(plugin.get("ipam"), dict):
            return plugin["ipam"]
    return None


def ipam_subnets(ipam):
    """host-local style subnets and gateways: [(network, gateway or None)]."""
    out = []
    for rset in ipam.get("ranges") or []:
        for r in rset if isinstance(rset, list) else []:
            if isinstance(r, dict) and r.get("subnet"):
                out.append((ipaddress.ip_network(r["subnet"], strict=False),
                            r.get("gateway")))
    if ipam.get("subnet"):
        out.append((ipaddress.ip_network(ipam["subnet"], strict=False), ipam.get("gateway")))
    return out


def check_conflist_matches(conflist_name, conflist_raw, ipv4_data, ipv6_data):
    """Refuse a conflist whose IPAM cannot take the addresses Docker's IPAM picks.

    With Docker's default IPAM, Docker decides the address and pycni hands it
    to CNI, so the conflist's IPAM must accept it: same subnet and gateway.
    """
    ipam = main_ipam(conflist_raw)
    if ipam is None:
        return
    itype = ipam.get("type")
    if itype not in IPS_IPAMS:
        raise UnsupportedOption(
            f"CNI network {conflist_name!r} uses IPAM {itype!r}, which cannot take the "
            "address Docker assigns; create the network with --ipam-driver pycni so that "
            f"{itype!r} decides the addresses")
    if itype != "host-local":
        return
    try:
        subnets = ipam_subnets(ipam)
    except (ValueError, TypeError) as e:
        raise UnsupportedOption(f"CNI network {conflist_name!r}: invalid IPAM subnet: {e}")
    for family, data in ((4, ipv4_data), (6, ipv6_data)):
        mine = [(n, gw) for n, gw in subnets if n.version == family]
        if not data:
            continue
        if not mine:
            # host-local would refuse every address Docker hands it for this family.
            raise UnsupportedOption(
                f"CNI network {conflist_name!r} has no IPv{family} range in its IPAM, but the "
                f"network has IPv{family} subnet {data[0].pool}"
                + ("; create the network without --ipv6" if family == 6 else ""))
        for d in data:
            match = [(n, gw) for n, gw in mine if n == d.pool]
            if not match:
                want = ", ".join(str(n) for n, _ in mine)
                raise UnsupportedOption(
                    f"subnet {d.pool} does not match CNI network {conflist_name!r}, whose "
                    f"IPAM uses {want}; create the network with --subnet {mine[0][0]}")
            net, gw = match[0]
            try:
                gw = str(ipaddress.ip_address(gw)) if gw else str(next(net.hosts()))
            except ValueError:
                raise UnsupportedOption(
                    f"CNI network {conflist_name!r}: invalid IPAM gateway {gw!r}") from None
            if d.gateway is not None and d.gateway.ip != ipaddress.ip_address(gw):
                raise UnsupportedOption(
                    f"gateway {d.gateway.ip} does not match CNI network {conflist_name!r}, "
                    f"whose gateway for {net} is {gw}; create the network with --gateway {gw}")


def endpoint_cni_args(mac):
    """CNI_ARGS for an endpoint: the MAC Docker was given (bridge, macvlan and tuning read it)."""
    return [("MAC", mac)] if mac else []


def endpoint_capability_args(ipam_type, address, address6):
    """The `ips` capability carrying Docker's addresses to host-local or static.

    Not CNI_ARGS IP=: the reference plugins parse IP= as one address (dual stack
    fails) and bridge itself rejects a list there, DEL included.
    """
    addrs = [str(a) for a in (address, address6) if a is not None]
    if addrs and ipam_type in IPS_IPAMS:
        return {"ips": addrs}
    return {}


def with_ips_capability(conflist_raw):
    """The list with `capabilities: {ips: true}` on the plugin that holds the IPAM section,
    so that runtimeConfig.ips reaches it (and, through it, its IPAM plugin)."""
    raw = {**conflist_raw, "plugins": [dict(p) for p in conflist_raw["plugins"]]}
    for plugin in raw["plugins"]:
        if isinstance(plugin.get("ipam"), dict):
            caps = dict(plugin.get("capabilities") or {})
            caps["ips"] = True
            plugin["capabilities"] = caps
            break
    return raw


def container_ips(result, ifname=CONTAINER_IFNAME):
    """The result's addresses on the container interface, as ip_interface objects."""
    ifaces = result.get("interfaces") or []
    wanted = {i for i, f in enumerate(ifaces) if f.get("name") == ifname and f.get("sandbox")}
    out = []
    for ipc in result.get("ips") or []:
        idx = ipc.get("interface")
        if idx is None or idx in wanted or not wanted:
            out.append(ipaddress.ip_interface(ipc["address"]))
    return out


def container_mac(result, ifname=CONTAINER_IFNAME):
    """The MAC the result reports for the container interface, or None."""
    for f in result.get("interfaces") or []:
        if f.get("name") == ifname and f.get("sandbox") and f.get("mac"):
            return f["mac"].lower()
    return None


def _gateways(result):
    gws = {}
    for ipc in result.get("ips") or []:
        if ipc.get("gateway"):
            ver = ipaddress.ip_interface(ipc["address"]).version
            gws.setdefault(ver, ipc["gateway"])
    return gws


def join_answer(result, tmpname, internal=False):
    """CNI result -> Join answer.

    {"InterfaceName":{"SrcName","DstPrefix"},"Gateway","GatewayIPv6","StaticRoutes":[...]}
    or "DisableGatewayService": true when CNI set no default route.
    """
    gws = _gateways(result)
    subnets = {a.network for a in container_ips(result)}
    answer = {"InterfaceName": {"SrcName": tmpname, "DstPrefix": "eth"}}
    static = []
    for route in result.get("routes") or []:
        dst = ipaddress.ip_network(route["dst"], strict=False)
        gw = route.get("gw")
        if dst.prefixlen == 0:
            gw = gw or gws.get(dst.version)
            if gw and not internal:
                answer["Gateway" if dst.version == 4 else "GatewayIPv6"] = gw
            continue
        if dst in subnets:
            continue  # the kernel adds the connected route with the address
        if gw:
            static.append({"Destination": str(dst), "RouteType": 0, "NextHop": gw})
        else:
            static.append({"Destination": str(dst), "RouteType": 1})
    if static:
        answer["StaticRoutes"] = static
    if "Gateway" not in answer:
        # Otherwise Docker adds docker_gwbridge as a second interface.
        answer["DisableGatewayService"] = True
    return answer


def endpoint_answer(address, address6, mac_given, result_ips, mac):
    """CreateEndpoint answer: only what Docker did not decide itself.

    Docker refuses an answer that changes an address or MAC it sent, so those
    are returned only when its request left them empty.
    """
    iface = {}
    v4 = [a for a in result_ips if a.version == 4]
    v6 = [a for a in result_ips if a.version == 6]
    if address is None and v4:
        iface["Address"] = str(v4[0])
    if address6 is None and v6 and address is None:
        iface["AddressIPv6"] = str(v6[0])
    if not mac_given and mac:
        iface["MacAddress"] = mac
    return {"Interface": iface}


def check_addresses(conflist_name, address, address6, result_ips):
    """Docker's address must be the one CNI configured; else its view would lie."""
    have = {str(a) for a in result_ips}
    for want in (address, address6):
        if want is not None and str(want) not in have:
            raise UnsupportedOption(
                f"CNI network {conflist_name!r} configured {sorted(have) or 'no address'} "
                f"but Docker assigned {want}; its IPAM must accept the requested address "
                "(host-local, static) or the network must use --ipam-driver pycni")


def is_port_plugin(plugin):
    return bool((plugin.get("capabilities") or {}).get("portMappings"))


def without_port_plugins(conflist_raw):
    """The list minus the plugins that take portMappings (portmap): with no mappings
    they do nothing but cost an exec (and iptables calls on DEL)."""
    plugins = [p for p in conflist_raw["plugins"] if not is_port_plugin(p)]
    return {**conflist_raw, "plugins": plugins or conflist_raw["plugins"]}


def static_conflist(conflist_raw, addresses):
    """The list with its IPAM replaced by `static` holding addresses decided elsewhere.

    Used when pycni's IPAM driver already allocated the address: the chain must
    configure it, not allocate a second one.
    """
    raw = {**conflist_raw, "plugins": [dict(p) for p in conflist_raw["plugins"]]}
    for plugin in raw["plugins"]:
        old = plugin.get("ipam")
        if not isinstance(old, dict):
            continue
        subnets = ipam_subnets(old)
        entries = []
        for a in addresses:
            entry = {"address": str(a)}
            for net, gw in subnets:
                if a.ip in net:
                    entry["gateway"] = gw or str(next(net.hosts()))
            entries.append(entry)
        new = {"type": "static", "addresses": entries}
        if old.get("routes"):
            new["routes"] = old["routes"]
        plugin["ipam"] = new
        break
    return raw


def _del_ignores_link(plugin):
    """Whether this plugin's DEL works with the container's link already gone.

    bridge and ptp DEL look for the link only to delete it and, with ipMasq, to
    learn which addresses' masquerade rules to remove; firewall and portmap work
    from prevResult and their own names. Everything else is assumed to need it.
    """
    kind = plugin.get("type")
    if kind in ("bridge", "ptp"):
        return not plugin.get("ipMasq")
    return kind in ("firewall", "portmap")


def del_needs_link(conflist_raw):
    """Whether DEL must first put the link (or a stand-in) back into the scratch netns.

    When no plugin needs it, pycni deletes the link itself and skips a netns move,
    which costs 15-40 ms of kernel RCU waiting here.
    """
    return not all(_del_ignores_link(p) for p in conflist_raw.get("plugins", []))
