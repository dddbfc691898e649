"""The iptables rules pycni keeps per network, as Docker's bridge driver keeps its own.

Pure: a network's spec -> the rules it needs. Installed at CreateNetwork,
removed at DeleteNetwork, installed again at start (rules do not survive a
reboot, the store does); never per container, so no rule list grows with the
number of containers.

- nat POSTROUTING: `-s SUBNET ! -o BRIDGE -j MASQUERADE` per subnet (ptp: `! -d SUBNET`).
- filter, chain PYCNI-FORWARD (jumped to from FORWARD): what a generated
  network may forward, instead of the firewall plugin's two rules per container:
  replies and published ports in, anything out (not --internal), and
  container to container on the same bridge.
- mangle, chains PYCNI-ISOLATION(-1,-2,-3) (jumped to from mangle FORWARD): a
  generated network's isolation from every other bridge network, pycni's and
  Docker's, in both directions, and enable_icc=false. mangle FORWARD sees every
  forwarded packet before any filter rule, so neither Docker's ACCEPTs (which it
  inserts at the head of filter FORWARD whenever it makes a network) nor the CNI
  firewall plugin's can let traffic past it. Packets to published ports
  (conntrack state DNAT) are let through, as docker-proxy lets them.
"""

import ipaddress
from dataclasses import dataclass

from .. import names

FORWARD_CHAIN = "PYCNI-FORWARD"
ISOLATION = "PYCNI-ISOLATION"
ISOLATION_OUT = "PYCNI-ISOLATION-2"  # leaving an isolated network for another one?
ISOLATION_IN = "PYCNI-ISOLATION-3"  # entering an isolated network from another one?
# Docker's own bridges: docker0, docker_gwbridge and br-<12 hex> of its networks.
DOCKER_BRIDGES = ("docker+", "br-+")


@dataclass(frozen=True)
class Rule:
    family: int  # 4 or 6
    table: str
    chain: str
    args: tuple
    head: bool = False  # insert at the chain's head, else append

    @property
    def command(self):
        return "ip6tables" if self.family == 6 else "iptables"


@dataclass(frozen=True)
class Chain:
    family: int
    table: str
    name: str


def _families(spec):
    fams = {ipaddress.ip_network(s).version for s in spec.subnets}
    if spec.ipv6:
        fams.add(6)
    return sorted(fams or {4})


def _comment(spec, what):
    return ("-m", "comment", "--comment", f"{names.rule_tag(spec.id)} {what}")


def masquerade_rules(spec):
    if not spec.masquerade:
        return []
    out = []
    for subnet in spec.subnets:
        family = ipaddress.ip_network(subnet).version
        leaving = ("!", "-o", spec.bridge) if spec.bridge else ("!", "-d", subnet)
        out.append(Rule(family, "nat", "POSTROUTING",
                        ("-s", subnet) + leaving + _comment(spec, "masquerade")
                        + ("-j", "MASQUERADE")))
    return out


def _matches(spec, family):
    """(traffic from the network, traffic to it) as iptables matches."""
    if spec.bridge:
        return [(("-i", spec.bridge), ("-o", spec.bridge))]
    return [(("-s", s), ("-d", s)) for s in spec.subnets
            if ipaddress.ip_network(s).version == family]


def forward_rules(spec):
    """PYCNI-FORWARD rules of a bridge or ptp network that has no firewall plugin."""
    if not spec.forward:
        return []
    out = []
    for family in _families(spec):
        for src, dst in _matches(spec, family):
            rules = [dst + ("-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED")
                     + _comment(spec, "replies") + ("-j", "ACCEPT")]
            if not spec.internal:
                rules.append(dst + ("-m", "conntrack", "--ctstate", "DNAT")
                             + _comment(spec, "published ports") + ("-j", "ACCEPT"))
                rules.append(src + _comment(spec, "outbound") + ("-j", "ACCEPT"))
            elif spec.bridge:
                rules.append(src + dst + _comment(spec, "internal") + ("-j", "ACCEPT"))
            out += [Rule(family, "filter", FORWARD_CHAIN, r) for r in rules]
    return out


def isolation_rules(spec):
    """mangle rules: isolation of a generated network, membership of any bridge network
    in the isolation stages (so generated networks are isolated from it), icc."""
    out = []
    for family in _families(spec):
        for src, dst in _matches(spec, family):
            not_src, not_dst = ("!",) + src, ("!",) + dst
            if spec.isolate and spec.internal:
                out.append(Rule(family, "mangle", ISOLATION,
                                src + not_dst + _comment(spec, "internal") + ("-j", "DROP")))
                out.append(Rule(family, "mangle", ISOLATION,
                                dst + not_src + _comment(spec, "internal") + ("-j", "DROP")))
            elif spec.isolate:
                out.append(Rule(family, "mangle", ISOLATION, src + not_dst
                                + _comment(spec, "isolation") + ("-j", ISOLATION_OUT)))
                out.append(Rule(family, "mangle", ISOLATION, dst + not_src
                                + _comment(spec, "isolation") + ("-j", ISOLATION_IN)))
            if spec.isolate and not spec.icc and spec.bridge:
                out.append(Rule(family, "mangle", ISOLATION, src + dst
                                + _comment(spec, "enable_icc=false") + ("-j", "DROP")))
        if spec.bridge and (spec.generated or spec.bridge in spec.owned_links):
            # Any bridge network of pycni's, generated or named, is one that generated
            # networks are isolated from; not a bridge the host had before (it may be
            # the host's own uplink).
            out.append(Rule(family, "mangle", ISOLATION_OUT, ("-o", spec.bridge)
                            + _comment(spec, "member") + ("-j", "DROP")))
            out.append(Rule(family, "mangle", ISOLATION_IN, ("-i", spec.bridge)
                            + _comment(spec, "member") + ("-j", "DROP")))
    return out


def needs_bridge_netfilter(spec):
    """Whether the network's rules must see bridged traffic (enable_icc=false)."""
    return spec.isolate and not spec.icc and bool(spec.bridge)


def legacy_rules(spec):
    """Rules an earlier release installed for this network, kept until it is deleted."""
    bridge = spec.extra.get("legacy_icc")
    if not bridge:
        return []
    rule = ("-i", bridge, "-o", bridge, "-m", "comment", "--comment",
            f"pycni enable_icc=false {spec.id[:12]}", "-j", "DROP")
    return [Rule(f, "filter", "CNI-ADMIN", rule, head=True) for f in _families(spec)]


def network_rules(spec):
    return (masquerade_rules(spec) + forward_rules(spec) + isolation_rules(spec)
            + legacy_rules(spec))


BUILTIN_CHAINS = ("INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING")


def chains_of(rules):
    """The non-builtin chains the rules go into."""
    return sorted({Chain(r.family, r.table, r.chain) for r in rules
                   if r.chain not in BUILTIN_CHAINS}, key=lambda c: (c.family, c.table, c.name))


def base_chains(family):
    return [Chain(family, "filter", FORWARD_CHAIN), Chain(family, "mangle", ISOLATION),
            Chain(family, "mangle", ISOLATION_OUT), Chain(family, "mangle", ISOLATION_IN)]


def base_rules(family):
    """The jumps into pycni's chains and the rules shared by every network."""
    tag = ("-m", "comment", "--comment", "pycni")
    rules = [
        Rule(family, "filter", "FORWARD", tag + ("-j", FORWARD_CHAIN), head=True),
        Rule(family, "mangle", "FORWARD", tag + ("-j", ISOLATION), head=True),
        # Published ports (DNAT'ed by portmap) are reachable from anywhere, as through
        # docker-proxy.
        Rule(family, "mangle", ISOLATION, ("-m", "conntrack", "--ctstate", "DNAT") + tag
             + ("-j", "RETURN"), head=True),
    ]
    for pattern in DOCKER_BRIDGES:
        rules.append(Rule(family, "mangle", ISOLATION_OUT, ("-o", pattern) + tag + ("-j", "DROP")))
        rules.append(Rule(family, "mangle", ISOLATION_IN, ("-i", pattern) + tag + ("-j", "DROP")))
    return rules


def families_in_use(specs):
    """The IP families whose base chains some network's rules need."""
    return sorted({f for s in specs if network_rules(s) for f in _families(s)})
