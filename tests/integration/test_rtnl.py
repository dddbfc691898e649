"""pycni's own rtnetlink requests against the kernel, read back with iproute2."""

import ipaddress

import pytest

import support
from cnm_bridge.host import links, netns, rtnl


def _in(ns, *cmd):
    return support.run("ip", "netns", "exec", ns, *cmd).stdout


def test_veth_and_addresses(host):
    ns = host.add_netns()

    def make():
        rtnl.add_veth("standin0", "standin0-peer")
        index = links._index("standin0")
        for cidr in ("10.77.0.5/24", "fd00:77::5/64"):
            rtnl.add_address(index, ipaddress.ip_interface(cidr))
        with pytest.raises(rtnl.RtnlError) as again:  # EEXIST: callers skip it
            rtnl.add_address(index, ipaddress.ip_interface("10.77.0.5/24"))
        with pytest.raises(rtnl.RtnlError):
            rtnl.add_veth("standin0", "other-peer")  # the name is taken
        return again.value.errno
    import errno
    assert netns.NetNS(ns).run_on_thread(make) == errno.EEXIST
    link = _in(ns, "ip", "-d", "-o", "link", "show", "standin0")
    assert "standin0@standin0-peer" in link and " veth " in link
    addrs = _in(ns, "ip", "-o", "addr", "show", "dev", "standin0")
    assert "inet 10.77.0.5/24" in addrs and "inet6 fd00:77::5/64" in addrs


def test_take_back_makes_a_stand_in_with_the_addresses(host):
    """The container's link died with its netns: DEL still finds the addresses."""
    ns = host.add_netns()
    links.take_back(netns.NetNS(ns), "", "eth0", ["10.78.0.9/24"])
    assert "inet 10.78.0.9/24" in _in(ns, "ip", "-o", "addr", "show", "dev", "eth0")
    links.take_back(netns.NetNS(ns), "", "eth0", ["10.78.0.9/24"])  # again: no error
