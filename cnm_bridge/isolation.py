"""`com.docker.network.bridge.enable_icc=false`: containers on a bridge may not talk.

The reference plugins have no such switch (firewall's ingressPolicy isolates
bridges from each other, not ports of one bridge). Docker's own bridge drops
`-i br -o br` in FORWARD; pycni puts the same DROP in CNI-ADMIN, the chain the
firewall plugin reserves for administrators and consults before its per-address
ACCEPT rules, so the order holds whoever runs first. Side effects only; the
rule is identified by a comment naming the network.
"""

from . import iptables

CHAIN = "CNI-ADMIN"


def _rule(bridge, network_id):
    return ["-i", bridge, "-o", bridge, "-m", "comment", "--comment",
            f"pycni enable_icc=false {network_id[:12]}", "-j", "DROP"]


def _commands(ipv6):
    return ["iptables"] + (["ip6tables"] if ipv6 else [])


def isolate(bridge, network_id, ipv6=False):
    """Install the DROP (idempotent)."""
    for cmd in _commands(ipv6):
        # Exists already if the firewall plugin ran: fine.
        iptables.run(cmd, "filter", "-N", CHAIN)
        iptables.ensure(cmd, "filter", CHAIN, _rule(bridge, network_id),
                        f"cannot isolate bridge {bridge}", insert=True)


def release(bridge, network_id, ipv6=False):
    for cmd in _commands(ipv6):
        iptables.remove(cmd, "filter", CHAIN, _rule(bridge, network_id))
