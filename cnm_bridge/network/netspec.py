"""A network's NetworkSpec (records.py), derived once at CreateNetwork.

Docker never replays CreateNetwork, so this value, stored whole, is what every
later call works from: the lists to run (for an endpoint, for its published
ports), the host rules to keep (masquerade, forwarding, isolation) and how
addresses and MACs are decided. Pure: `make_spec` reads nothing but its inputs;
`legacy` reads a network row of the first release (the store is given it).
"""

import dataclasses

from .. import names
from ..errors import UnsupportedOption
from ..state.records import NetworkKind, NetworkSpec
from . import conflists


def make_spec(network_id, plan, conflist_raw, ipv4_data, ipv6_data, internal, ipv6, ipam,
              owned_links=(), ipam_dir=""):
    """The spec of a network: `conflist_raw` is the named list or the generated one."""
    raw = conflists.with_ips_capability(conflist_raw)
    endpoint = conflists.without_port_plugins(raw)
    main_type = conflists.main_plugin(raw).get("type", "")
    generated = plan.mode == NetworkKind.GENERATED
    data = list(ipv4_data) + list(ipv6_data)
    subnets = tuple(str(d.pool) for d in data)
    gateways = {str(d.pool): str(d.gateway.ip) for d in data if d.gateway is not None}
    routed = main_type in ("bridge", "ptp")
    # Docker sets FORWARD's policy to DROP: a list that filters nothing itself (no
    # firewall plugin) gets the same per-network ACCEPTs as a generated one, so it
    # works as it would on a host without Docker.
    forward = routed and not any(p.get("type") == "firewall" for p in conflists.plugins(raw))
    isolate = generated and routed
    return NetworkSpec(
        id=network_id, cni_name=raw["name"], mode=plan.mode, conflist=raw,
        endpoint_list=endpoint, direct_list=conflists.with_mac_setter(endpoint),
        ports_list=conflists.ports_list(raw, names.ports_network_name(raw["name"])),
        cni_type=main_type, internal=internal, ipam=ipam, ipv6=ipv6, subnets=subnets,
        gateways=gateways, static_ipam=generated or ipam == "pycni",
        bridge=conflists.bridge_of(raw), owned_links=tuple(owned_links),
        ipam_dir=ipam_dir if generated else "",
        masquerade=isolate and plan.masquerade and not internal and bool(subnets),
        forward=forward, isolate=isolate, icc=plan.icc if generated else True,
        lost_settings=tuple(conflists.lost_in_handoff(raw)), allow_loss=plan.allow_loss,
        attach=plan.attach, host_ip=plan.host_ip, own_mac=conflists.has_own_mac(raw))


def without_direct_mac_setter(spec):
    """The spec with its direct list left as the endpoint list (no `tuning` plugin to set
    the MAC): for hosts whose plugin dirs lack tuning."""
    return dataclasses.replace(spec, direct_list=spec.endpoint_list)


def refuse_null_ipam(ipv4_data, ipv6_data):
    for d in list(ipv4_data) + list(ipv6_data):
        if d.address_space == "null" or (d.pool is not None and d.pool.prefixlen == 0):
            raise UnsupportedOption(
                "--ipam-driver null is not supported: use Docker's default IPAM or "
                "--ipam-driver pycni")


def ipam_mode(ipv4_data, ipv6_data):
    """"pycni" when pycni's IPAM driver allocated the pools (its address spaces)."""
    return "pycni" if any(d.address_space.startswith("Pycni")
                          for d in list(ipv4_data) + list(ipv6_data)) else "docker"


def legacy(row):
    """The spec of a network stored by an earlier release (one column per field)."""
    from .options import NetworkPlan
    raw = row["conflist"]
    masq = row.get("masquerade") or {}
    plan = NetworkPlan(row["mode"], conflist_name=raw.get("name", ""),
                       cni_type=conflists.main_plugin(raw).get("type", "bridge"),
                       masquerade=bool(masq), icc=not row.get("isolated_bridge"))
    # The firewall plugin of an old generated list stays in its chain: its endpoints'
    # cached DELs need it, and its rules are per container, not pycni's.
    spec = make_spec(row["id"], plan, raw, [], [], bool(row.get("internal")),
                     bool(row.get("ipv6")), row.get("ipam", "docker"),
                     owned_links=row.get("owned_links") or (), ipam_dir=row.get("ipam_dir", ""))
    has_firewall = any(p.get("type") == "firewall" for p in conflists.plugins(raw))
    # Its enable_icc=false rule sits where that release put it: the firewall plugin's
    # CNI-ADMIN chain, which the list's firewall plugin still consults.
    extra = {"legacy_icc": row["isolated_bridge"]} if row.get("isolated_bridge") else {}
    # Its host-local list stays as it was: DELs of endpoints made with it need it.
    return dataclasses.replace(spec, subnets=tuple(masq.get("subnets") or ()),
                               static_ipam=spec.ipam == "pycni",
                               masquerade=bool(masq), isolate=spec.isolate and not has_firewall,
                               icc=not row.get("isolated_bridge") or not has_firewall,
                               extra=extra)
