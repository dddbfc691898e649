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
import subprocess

CHAIN = "POSTROUTING"


class MasqueradeError(Exception):
    pass


def _command(subnet):
    return "ip6tables" if ipaddress.ip_network(subnet).version == 6 else "iptables"


def _rule(bridge, subnet, cni_name):
    return ["-s", subnet, "!", "-o", bridge, "-m", "comment", "--comment",
            f"{cni_name} masquerade", "-j", "MASQUERADE"]


def _run(cmd, *args):
    return subprocess.run([cmd, "-w", "-t", "nat", *args], capture_output=True, text=True,
                          timeout=60)


def install(bridge, subnets, cni_name):
    """Add the rules that are missing (idempotent: also re-adds them after a reboot)."""
    for subnet in subnets:
        cmd, rule = _command(subnet), _rule(bridge, subnet, cni_name)
        if _run(cmd, "-C", CHAIN, *rule).returncode == 0:
            continue
        p = _run(cmd, "-A", CHAIN, *rule)
        if p.returncode != 0:
            raise MasqueradeError(
                f"{cmd}: cannot add masquerade for {subnet} on {bridge}: {p.stderr.strip()}")


def remove(bridge, subnets, cni_name):
    for subnet in subnets:
        cmd, rule = _command(subnet), _rule(bridge, subnet, cni_name)
        while _run(cmd, "-D", CHAIN, *rule).returncode == 0:
            pass
