"""The names pycni gives what it makes: CNI networks, bridges, netns, links.

Each carries the network's or endpoint's id, so that leftover checks (and
operators) can tell pycni's things, and whose they are, by name alone.
"""

CNI_NETWORK_PREFIX = "pycni-"
BRIDGE_PREFIX = "pc-"
NETNS_PREFIX = "pycni-"
LINK_PREFIX = "pyc"
# The CNI network name of pycni's IPAM driver's lists: one per pool.
IPAM_NETWORK_PREFIX = "pycni-ipam-"
IPAM_HANDLE_PREFIX = "pycni-ipam-"


def cni_network_name(network_id):
    return CNI_NETWORK_PREFIX + network_id[:12]


def bridge_name(network_id):
    return BRIDGE_PREFIX + network_id[:12]


def ipam_network_name(pool_id):
    """The CNI network name (host-local's data dir) of a pool of pycni's IPAM driver.
    `pycni:<hash>` is a subnet's first pool (and every pool of a store older than
    per-request pools, whose files keep their name); `pycni:<hash>-<n>` the n-th more."""
    digest, _, n = pool_id.split(":", 1)[1].partition("-")
    return IPAM_NETWORK_PREFIX + digest[:16] + (f"-{n}" if n else "")


def ports_network_name(cni_name):
    """The name of the portmap-only list run at ProgramExternalConnectivity."""
    return cni_name[:120] + "-ports"


def netns_name(endpoint_id):
    return NETNS_PREFIX + endpoint_id


def tmp_ifname(endpoint_id):
    # 15 bytes: the kernel's limit for an interface name.
    return LINK_PREFIX + endpoint_id[:12]


def rule_tag(network_id):
    """The comment prefix of a network's iptables rules."""
    return CNI_NETWORK_PREFIX + network_id[:12]
