"""Masquerade for pycni's generated bridge networks: one rule per subnet, as Docker does.

The bridge plugin's `ipMasq` makes a chain with two rules plus a POSTROUTING jump
for every container: measured here, 15 ms of iptables execs on the ADD path and
50 ms at DEL, and a nat table that grows with each container (every later
iptables exec reads it whole). The generated conflist turns `ipMasq` off and
pycni installs, once per network at CreateNetwork, what Docker's bridge driver
installs for its own networks:

    -t nat -A POSTROUTING -s SUBNET ! -o BRIDGE -j MASQUERADE

Named conflists keep whatever masquerade their plugins do. Side effects only;
each rule carries a comment naming the CNI network, so the leftover checks and
`iptables-save | grep pycni-` find it.
"""

import ipaddress

from . import iptables

CHAIN = "POSTROUTING"


def _command(subnet):
    return "ip6tables" if ipaddress.ip_network(subnet).version == 6 else "iptables"


def _rule(bridge, subnet, cni_name):
    return ["-s", subnet, "!", "-o", bridge, "-m", "comment", "--comment",
            f"{cni_name} masquerade", "-j", "MASQUERADE"]


def install(bridge, subnets, cni_name):
    """Add the rules that are missing (idempotent: also re-adds them after a reboot)."""
    for subnet in subnets:
        iptables.ensure(_command(subnet), "nat", CHAIN, _rule(bridge, subnet, cni_name),
                        f"cannot add masquerade for {subnet} on {bridge}")


def remove(bridge, subnets, cni_name):
    for subnet in subnets:
        iptables.remove(_command(subnet), "nat", CHAIN, _rule(bridge, subnet, cni_name))
