"""Conflists as pycni makes and reads them: generation, copies for each use, checks.

Pure functions over conflist dicts (nerdctl's pkg/netutil is the model): a
generated list from Docker's options, the copies pycni runs (the endpoint's
list without port plugins, the ports list, `static` holding an address decided
elsewhere), and the checks that refuse at `docker network create` what would
only fail later.
"""

import ipaddress

from cni_runner import CNIError, validate_ifname

from ..errors import UnsupportedOption
from .options import OPT_ALLOW_LOSS, OPT_IP_RANGE

# IPAM plugins that take Docker's address through the `ips` capability: the ones an
# endpoint's runtimeConfig gives `ips` to, and the ones pycni's IPAM driver runs alone.
IPS_IPAMS = ("host-local", "static")
# Reference plugins that set the container interface's MAC from CNI_ARGS MAC or the
# `mac` capability (measured with Debian's 1.1.1: bridge, macvlan, tuning).
MAC_TAKERS = ("bridge", "macvlan", "tuning")
# Interfaces that cannot have a MAC of their own: an ipvlan slave has its master's.
NO_OWN_MAC = ("ipvlan",)


def plugins(conflist_raw):
    return [p for p in conflist_raw.get("plugins") or [] if isinstance(p, dict)]


def main_plugin(conflist_raw):
    """The plugin that makes the interface: the first one of the list."""
    found = plugins(conflist_raw)
    return found[0] if found else {}


def bridge_of(conflist_raw):
    """The Linux bridge a list's bridge plugin attaches to, or ""."""
    for p in plugins(conflist_raw):
        if p.get("type") == "bridge":
            name = p.get("bridge") or "cni0"  # the bridge plugin's own default
            try:
                return validate_ifname(name)
            except CNIError as e:
                raise UnsupportedOption(
                    f"CNI network {conflist_raw.get('name')!r}: the bridge plugin's "
                    f"\"bridge\" must be an interface name (a string of at most 15 bytes "
                    f"without '/', ':' or spaces), not {name!r}: {e}") from None
    return ""


def main_ipam(conflist_raw):
    """The IPAM section of the first plugin that has one, or None."""
    for p in plugins(conflist_raw):
        if isinstance(p.get("ipam"), dict):
            return p["ipam"]
    return None


def ipam_ranges(ipam):
    """host-local style ranges: [(network, gateway or None, first, last)], `subnet` included.

    first/last are the usable ends host-local hands out (rangeStart/rangeEnd, else the
    subnet's hosts), as ip_address objects.
    """
    out = []
    candidates = [r for rset in (ipam.get("ranges") or []) if isinstance(rset, list)
                  for r in rset if isinstance(r, dict) and r.get("subnet")]
    if ipam.get("subnet"):
        candidates.append(ipam)
    for r in candidates:
        net = ipaddress.ip_network(r["subnet"], strict=False)
        hosts = _usable(net)
        first = ipaddress.ip_address(r["rangeStart"]) if r.get("rangeStart") else hosts[0]
        last = ipaddress.ip_address(r["rangeEnd"]) if r.get("rangeEnd") else hosts[1]
        out.append((net, r.get("gateway"), first, last))
    return out


def _usable(net):
    """host-local's default ends of a subnet: .1 to the last before broadcast (IPv4)."""
    first = net.network_address + 1
    last = net.broadcast_address - (1 if net.version == 4 else 0)
    return first, last


def ipam_subnets(ipam):
    """[(network, gateway or None)] of an IPAM section (host-local's ranges and subnet)."""
    return [(net, gw) for net, gw, _, _ in ipam_ranges(ipam)]


def default_gateway(net, gateway=None):
    """The gateway host-local and static assume: the given one, else the subnet's first host."""
    return str(ipaddress.ip_address(gateway)) if gateway else str(net.network_address + 1)


def range_cidr(first, last):
    """The CIDR block that [first, last] is exactly, or None."""
    nets = list(ipaddress.summarize_address_range(first, last))
    return nets[0] if len(nets) == 1 else None


# -- generated lists ----------------------------------------------------------------

def generate(cni_name, bridge, plan, ipv4_data, ipv6_data, internal):
    """The conflist of a network made from Docker options (no CNI files needed).

    Docker's IPAM (or pycni's IPAM driver) decides the addresses, so the list's IPAM
    is `static`, given each endpoint's addresses and Docker's gateways when it runs
    (static_ipam): no allocation state to keep, none to scan (host-local's DEL reads
    every file of its data dir). Forwarding, isolation and masquerade of a generated
    bridge or ptp network are pycni's per-network rules (hostrules), not plugins run
    for every container.
    """
    data = list(ipv4_data) + list(ipv6_data)
    routes = []
    if not internal:
        routes = [{"dst": "0.0.0.0/0"} for d in ipv4_data[:1] if d.gateway is not None]
        routes += [{"dst": "::/0"} for d in ipv6_data[:1] if d.gateway is not None]
    ipam = {"type": "static"}
    if routes:
        ipam["routes"] = routes
    if plan.cni_type == "bridge":
        main = {"type": "bridge", "bridge": plan.bridge_name or bridge,
                "isGateway": not internal and any(d.gateway is not None for d in data),
                "ipMasq": False, "hairpinMode": True}
    elif plan.cni_type == "ptp":
        main = {"type": "ptp", "ipMasq": False}
    else:
        main = {"type": plan.cni_type, "master": plan.parent}
        if plan.parent_mode:
            main["mode"] = plan.parent_mode
    if plan.mtu:
        main["mtu"] = plan.mtu
    main["ipam"] = ipam
    chain = [main]
    if not internal:
        chain.append({"type": "portmap", "capabilities": {"portMappings": True}, "snat": True})
    return {"cniVersion": "1.0.0", "name": cni_name, "plugins": chain}


# -- the copies pycni runs ----------------------------------------------------------

def with_ips_capability(conflist_raw):
    """The list with `capabilities: {ips: true}` on the plugin that holds the IPAM section,
    so that runtimeConfig.ips reaches it (and, through it, its IPAM plugin)."""
    raw = {**conflist_raw, "plugins": [dict(p) for p in conflist_raw["plugins"]]}
    for p in raw["plugins"]:
        if isinstance(p.get("ipam"), dict):
            p["capabilities"] = {**(p.get("capabilities") or {}), "ips": True}
            break
    return raw


def takes_mac(conflist_raw):
    """Whether a plugin of the list sets the interface's MAC from CNI_ARGS or `mac`."""
    return any(p.get("type") in MAC_TAKERS or (p.get("capabilities") or {}).get("mac") is True
               for p in plugins(conflist_raw))


def has_own_mac(conflist_raw):
    return main_plugin(conflist_raw).get("type") not in NO_OWN_MAC


def with_mac_setter(conflist_raw):
    """The list with the reference `tuning` plugin appended (capability mac) when none of
    its plugins takes a MAC, so the MAC pycni decides is the interface's wherever CNI
    configures it."""
    if takes_mac(conflist_raw) or not has_own_mac(conflist_raw):
        return conflist_raw
    tuning = {"type": "tuning", "capabilities": {"mac": True}}
    return {**conflist_raw, "plugins": list(conflist_raw["plugins"]) + [tuning]}


def is_port_plugin(plugin):
    return bool((plugin.get("capabilities") or {}).get("portMappings"))


def without_port_plugins(conflist_raw):
    """The list minus the plugins that take portMappings (portmap): with no mappings
    they do nothing but cost an exec (and iptables calls on DEL)."""
    kept = [p for p in conflist_raw["plugins"] if not is_port_plugin(p)]
    return {**conflist_raw, "plugins": kept or conflist_raw["plugins"]}


def ports_list(conflist_raw, name):
    """The list's port plugins as a list of their own, run at ProgramExternalConnectivity
    with the endpoint's result as prevResult; None when it has none."""
    found = [p for p in conflist_raw["plugins"] if is_port_plugin(p)]
    if not found:
        return None
    raw = {k: v for k, v in conflist_raw.items() if k in ("cniVersion", "cniVersions")}
    raw.update(name=name, plugins=found)
    return raw


def static_ipam(conflist_raw, addresses, gateways=None):
    """The list with its IPAM replaced by `static` holding addresses decided elsewhere
    (pycni's IPAM driver): the chain must configure them, not allocate others.
    `gateways` ({subnet: address}, Docker's) wins over the list's own."""
    raw = {**conflist_raw, "plugins": [dict(p) for p in conflist_raw["plugins"]]}
    for p in raw["plugins"]:
        old = p.get("ipam")
        if not isinstance(old, dict):
            continue
        subnets = ipam_subnets(old) if old.get("type") == "host-local" else []
        entries = []
        for a in addresses:
            entry = {"address": str(a)}
            for net, gw in subnets:
                if a.ip in net:
                    entry["gateway"] = default_gateway(net, gw)
            if (gateways or {}).get(str(a.network)):
                entry["gateway"] = gateways[str(a.network)]
            entries.append(entry)
        new = {"type": "static", "addresses": entries}
        if old.get("routes"):
            new["routes"] = old["routes"]
        p["ipam"] = new
        break
    return raw


# -- checks at `docker network create` -------------------------------------------------

def lost_in_handoff(conflist_raw):
    """What the list would configure inside the netns that the handoff to Docker drops.

    The interface keeps its MAC, MTU and flags when it moves; per-interface
    sysctls, routing rules and VRF membership stay behind in the scratch netns.
    """
    lost = []
    for p in plugins(conflist_raw):
        kind = p.get("type")
        if kind == "tuning" and p.get("sysctl"):
            lost.append(f"tuning sysctl {', '.join(sorted(p['sysctl']))}")
        elif kind == "sbr":
            lost.append("sbr (source-based routing rules and tables)")
        elif kind == "vrf":
            lost.append(f"vrf {p.get('vrfname', '')} membership".replace("  ", " "))
    return lost


def handoff_refusal(conflist_name, lost):
    """The message for a list whose settings the scratch-netns handoff would drop."""
    return (f"CNI network {conflist_name!r} configures inside the container's netns what "
            f"cannot survive pycni's handoff to Docker: {'; '.join(lost)}. This engine "
            "does not create the container's netns before it attaches networks (Docker "
            "before 28 on `docker run`/`docker start`), so pycni must run CNI in a netns "
            "of its own and hand the interface over. Use Docker 28 or later, attach with "
            "`docker network connect` to a running container, or create the network with "
            f"-o {OPT_ALLOW_LOSS}=true to run it without them")


def check_docker_ipam(conflist_name, conflist_raw, ipv4_data, ipv6_data, ip_range=""):
    """Refuse a conflist whose IPAM cannot take the addresses Docker's IPAM picks.

    With Docker's default IPAM, Docker decides the address and pycni hands it
    to CNI, so the conflist's IPAM must accept any address Docker may pick: same
    subnet and gateway, and no narrower range than Docker's pool.
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
        ranges = ipam_ranges(ipam)
    except (ValueError, TypeError) as e:
        raise UnsupportedOption(f"CNI network {conflist_name!r}: invalid IPAM range: {e}")
    for family, data in ((4, ipv4_data), (6, ipv6_data)):
        mine = [r for r in ranges if r[0].version == family]
        if not data:
            continue
        if not mine:
            # host-local would refuse every address Docker hands it for this family.
            raise UnsupportedOption(
                f"CNI network {conflist_name!r} has no IPv{family} range in its IPAM, but the "
                f"network has IPv{family} subnet {data[0].pool}"
                + ("; create the network without --ipv6" if family == 6 else ""))
        for d in data:
            match = [r for r in mine if r[0] == d.pool]
            if not match:
                want = ", ".join(str(r[0]) for r in mine)
                raise UnsupportedOption(
                    f"subnet {d.pool} does not match CNI network {conflist_name!r}, whose "
                    f"IPAM uses {want}; create the network with --subnet {mine[0][0]}")
            net, gw, first, last = match[0]
            _check_range(conflist_name, net, default_gateway(net, gw), first, last, ip_range)
            _check_gateway(conflist_name, net, gw, d.gateway)


def _check_gateway(conflist_name, net, gw, docker_gw):
    try:
        gw = default_gateway(net, gw)
    except ValueError:
        raise UnsupportedOption(
            f"CNI network {conflist_name!r}: invalid IPAM gateway {gw!r}") from None
    if docker_gw is not None and docker_gw.ip != ipaddress.ip_address(gw):
        raise UnsupportedOption(
            f"gateway {docker_gw.ip} does not match CNI network {conflist_name!r}, "
            f"whose gateway for {net} is {gw}; create the network with --gateway {gw}")


def _check_range(conflist_name, net, gateway, first, last, ip_range):
    if (first, last) == _usable(net):
        return
    cidr = range_cidr(first, last)
    if ip_range and cidr is not None and str(cidr) == ip_range:
        return  # Docker picks inside --ip-range, which the user says is this range
    fixes = (f"create the network with --ipam-driver pycni --ipam-opt cni.network="
             f"{conflist_name} (the conflist's IPAM then picks the addresses)")
    if cidr is not None:
        fixes += (f", or with --subnet {net} --gateway {gateway} --ip-range {cidr} "
                  f"-o {OPT_IP_RANGE}={cidr} (Docker then picks inside the range; the driver "
                  f"never sees --ip-range, so {OPT_IP_RANGE} repeats it)")
    raise UnsupportedOption(
        f"CNI network {conflist_name!r} hands out only {first}-{last} of {net}, but Docker's "
        f"IPAM picks any address of --subnet {net}, which host-local would refuse; {fixes}")


def del_ignores_link(plugin):
    """Whether this plugin's DEL works with the container's link already gone.

    bridge and ptp DEL look for the link only to delete it and, with ipMasq, to
    learn which addresses' masquerade rules to remove; firewall and portmap work
    from prevResult and their own names. Anything else is assumed to need it
    (tuning's DEL restores the link's MAC and MTU, and fails without it).
    """
    kind = plugin.get("type")
    if kind in ("bridge", "ptp"):
        return not plugin.get("ipMasq")
    return kind in ("firewall", "portmap")


def del_needs_link(conflist_raw):
    """Whether DEL must first put the link (or a stand-in) back into the scratch netns.

    When no plugin needs it, pycni deletes the link itself and skips a netns move.
    """
    return not all(del_ignores_link(p) for p in plugins(conflist_raw))
