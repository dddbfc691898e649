"""Both ways of attaching, without Docker: what Docker would do is done by hand here.

Handoff: the SandboxKey does not exist at Join, CNI runs in a scratch netns and
the link is handed over. Direct: the SandboxKey is a mounted netns at Join, CNI
runs in it.
"""

import json
import os
import random

import pytest

import support
from cni_runner import PluginError
from pyroute2 import IPRoute

from cnm_bridge.host import links, netns
from cnm_bridge import names
from cnm_bridge.docker import protocol
from support import body, hexid

NOT_YET = "/var/run/docker/netns/not-there-yet"  # a SandboxKey at Join on Docker < 28


def make_network(driver, subnet, **opts):
    nid = hexid()
    gw = subnet.rsplit(".", 1)[0] + ".1"
    req = protocol.parse_create_network(protocol.load_body(body({
        "NetworkID": nid,
        "Options": {"com.docker.network.generic": opts},
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": subnet, "Gateway": f"{gw}/24"}],
        "IPv6Data": []})))
    driver.create_network(req)
    return nid, gw


def make_endpoint(driver, nid, address, sandbox_key=NOT_YET):
    """CreateEndpoint then Join, as Docker sends them. -> (id, CreateEndpoint's answer, Join's)"""
    eid = hexid()
    req = protocol.parse_create_endpoint(protocol.load_body(body({
        "NetworkID": nid, "EndpointID": eid,
        "Interface": {"Address": address, "AddressIPv6": "", "MacAddress": ""},
        "Options": {}})))
    answer = driver.create_endpoint(req)
    join = driver.join(protocol.parse_join({"NetworkID": nid, "EndpointID": eid,
                                            "SandboxKey": sandbox_key}))
    return eid, answer, join


def delete_endpoint(driver, nid, eid):
    driver.delete_endpoint(protocol.parse_endpoint_ref({"NetworkID": nid, "EndpointID": eid}))

def docker_moves_in(tmpname, sandbox, address, gw):
    """What Docker does after Join: move the link in, name it eth0, configure it."""
    fd = os.open(netns.NetNS(sandbox).path, os.O_RDONLY)
    try:
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=tmpname)[0]
            ipr.link("set", index=idx, net_ns_fd=fd)
    finally:
        os.close(fd)
    ns = ["ip", "netns", "exec", sandbox]
    support.run(*ns, "ip", "link", "set", tmpname, "name", "eth0")
    support.run(*ns, "ip", "addr", "add", address, "dev", "eth0")
    support.run(*ns, "ip", "link", "set", "eth0", "up")
    support.run(*ns, "ip", "link", "set", "lo", "up")
    support.run(*ns, "ip", "route", "add", "default", "via", gw)


def docker_moves_out(sandbox, tmpname):
    """What Docker does before DeleteEndpoint: the link goes back to the host, down."""
    ns = ["ip", "netns", "exec", sandbox]
    support.run(*ns, "ip", "link", "set", "eth0", "down")
    support.run(*ns, "ip", "link", "set", "eth0", "name", tmpname)
    support.run(*ns, "ip", "link", "set", tmpname, "netns", "1")


def subnet():
    return f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"


def assert_clean(settings, nid, net_subnet):
    prefix = net_subnet.rsplit(".", 1)[0] + "."
    assert not support.new_links() and f"pc-{nid[:12]}" not in support.links()
    assert not support.new_netns()
    assert support.files_under(os.path.join(settings.cni_cache_dir, "results")) == []
    assert support.ip_files(settings.ipam_dir) == []
    assert support.iptables_mentioning(prefix, f"pycni-{nid[:12]}") == []


def test_endpoint_handoff_and_teardown(stack, host):
    settings, store, driver, _ = stack
    sn = subnet()
    nid, gw = make_network(driver, sn)
    addr = sn.rsplit(".", 1)[0] + ".5/24"
    eid, answer, join = make_endpoint(driver, nid, addr)
    tmp = names.tmp_ifname(eid)
    # Join leaves the container side on the host, down, under a temporary name, with the
    # MAC that follows the address (CreateEndpoint answered it).
    assert tmp in support.links()
    link = support.run("ip", "-o", "link", "show", tmp).stdout
    assert "state DOWN" in link
    assert answer["Interface"] == {"MacAddress": "02:42:" + ":".join(
        f"{int(x):02x}" for x in addr.split("/")[0].split("."))}
    assert answer["Interface"]["MacAddress"] in link
    assert join == {"InterfaceName": {"SrcName": tmp, "DstPrefix": "eth"}, "Gateway": gw}
    sandbox = host.add_netns("pyct-sbx")
    docker_moves_in(tmp, sandbox, addr, gw)
    # The host side CNI made (bridge, gateway address, firewall) carries the traffic.
    support.run("ip", "netns", "exec", sandbox, *support.ping_cmd(gw))
    docker_moves_out(sandbox, tmp)
    delete_endpoint(driver, nid, eid)
    driver.delete_network(protocol.parse_network_ref({"NetworkID": nid}))
    assert_clean(settings, nid, sn)


def test_teardown_when_the_link_died_with_the_sandbox(stack, host):
    """A crashed container's netns took the link with it: DEL must still remove masquerade.

    Only a list whose bridge masquerades per container needs the link at DEL (the
    generated list does not), so this one is named and has ipMasq: a veth stand-in
    carries the addresses back into the scratch netns.
    """
    settings, store, driver, _ = stack
    sn = subnet()
    name = "pyct-" + hexid()[:8]
    with open(os.path.join(settings.conf_dir, f"10-{name}.conflist"), "w") as f:
        json.dump({"cniVersion": "1.0.0", "name": name, "plugins": [
            {"type": "bridge", "bridge": "pyct" + hexid()[:8], "isGateway": True,
             "ipMasq": True, "ipam": {"type": "host-local", "dataDir": settings.ipam_dir,
                                      "ranges": [[{"subnet": sn}]],
                                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "firewall"}]}, f)
    nid, gw = make_network(driver, sn, **{"cni.network": name})
    addr = sn.rsplit(".", 1)[0] + ".6/24"
    eid, _, _ = make_endpoint(driver, nid, addr)
    ip = addr.split("/")[0]
    nat = support.run("iptables-save", "-t", "nat").stdout
    assert f"-A POSTROUTING -s {ip}/32" in nat  # the bridge plugin's masquerade
    sandbox = host.add_netns("pyct-sbx")
    docker_moves_in(names.tmp_ifname(eid), sandbox, addr, gw)
    netns.NetNS(sandbox).delete()  # the link is destroyed with it
    delete_endpoint(driver, nid, eid)
    driver.delete_network(protocol.parse_network_ref({"NetworkID": nid}))
    assert_clean(settings, nid, sn)


def test_failed_add_leaves_nothing(stack, host):
    settings, store, driver, _ = stack
    sn = subnet()
    nid, gw = make_network(driver, sn)
    # A link that is not a bridge already has the bridge's name: the bridge plugin fails.
    squatter = names.bridge_name(nid)
    host.links.append(squatter)
    support.run("ip", "link", "add", squatter, "type", "veth", "peer", "name",
                "pyctsq" + hexid()[:6])
    with pytest.raises(PluginError) as err:
        make_endpoint(driver, nid, sn.rsplit(".", 1)[0] + ".5/24")
    assert "bridge" in str(err.value)
    # The record stays, CNI-free, until Docker's DeleteEndpoint after the failed Join.
    [ep] = store.endpoints()
    assert ep.state == "created" and ep.result is None
    delete_endpoint(driver, nid, ep.id)
    assert store.endpoints() == []
    support.run("ip", "link", "del", squatter)
    driver.delete_network(protocol.parse_network_ref({"NetworkID": nid}))
    assert_clean(settings, nid, sn)


def test_delete_endpoint_twice_and_unknown(stack):
    settings, store, driver, _ = stack
    sn = subnet()
    nid, gw = make_network(driver, sn)
    eid, _, _ = make_endpoint(driver, nid, sn.rsplit(".", 1)[0] + ".7/24")
    ref = protocol.parse_endpoint_ref({"NetworkID": nid, "EndpointID": eid})
    driver.delete_endpoint(ref)
    driver.delete_endpoint(ref)  # Docker may retry: idempotent
    driver.delete_network(protocol.parse_network_ref({"NetworkID": nid}))
    driver.delete_network(protocol.parse_network_ref({"NetworkID": nid}))
    assert_clean(settings, nid, sn)


def test_create_endpoint_replay_returns_same_answer(stack):
    settings, store, driver, _ = stack
    sn = subnet()
    nid, gw = make_network(driver, sn)
    addr = sn.rsplit(".", 1)[0] + ".8/24"
    eid = hexid()
    raw = {"NetworkID": nid, "EndpointID": eid, "Interface": {"Address": addr}, "Options": {}}
    first = driver.create_endpoint(protocol.parse_create_endpoint(raw))
    again = driver.create_endpoint(protocol.parse_create_endpoint(raw))
    assert first == again
    assert len(store.endpoints()) == 1
    driver.delete_network(protocol.parse_network_ref({"NetworkID": nid}))
    assert_clean(settings, nid, sn)


def test_hand_out_reads_the_mac_or_refuses_clearly(host):
    """The bare-netlink move: a name taken on the host and a missing link are errors that
    say so; without a MAC from CNI the link's own is read."""
    import secrets
    ns = netns.NetNS(host.add_netns("pyct-ho"))

    def add_veth():
        with IPRoute() as ipr:
            ipr.link("add", ifname="eth0", kind="veth", peer="peer0")
    ns.run_on_thread(add_veth)
    taken, free = ("pyct" + secrets.token_hex(4) for _ in range(2))
    host.links += [taken, free]
    support.run("ip", "link", "add", taken, "type", "veth", "peer", "name", taken + "p")
    with pytest.raises(netns.NetnsError, match="File exists"):
        links.hand_out(ns, "eth0", taken)
    mac = links.hand_out(ns, "eth0", free)
    shown = support.run("ip", "-o", "link", "show", free).stdout
    assert mac and f"link/ether {mac} " in shown and "state DOWN" in shown
    with pytest.raises(netns.NetnsError, match="no interface 'eth0'"):
        links.hand_out(ns, "eth0", "pyctgone")


def test_direct_attach_in_a_mounted_sandbox(stack, host):
    """Docker 28 (and `docker network connect`): the SandboxKey is a mounted netns at
    Join, so CNI runs in it. Docker is told only the gateway, and must be able to set
    the default route itself; the interface outlives the container until DEL."""
    settings, store, driver, _ = stack
    sn = subnet()
    nid, gw = make_network(driver, sn, **{"cni.attach": "direct"})
    sandbox = host.add_netns("pyct-sbx")
    addr = sn.rsplit(".", 1)[0] + ".9/24"
    eid, answer, join = make_endpoint(driver, nid, addr, netns.NetNS(sandbox).path)
    assert join == {"Gateway": gw}
    assert names.tmp_ifname(eid) not in support.links()  # nothing handed over
    shown = support.run("ip", "-n", sandbox, "-o", "addr", "show", "eth0").stdout
    assert addr in shown
    link = support.run("ip", "-n", sandbox, "-o", "link", "show", "eth0").stdout
    assert f"link/ether {answer['Interface']['MacAddress']} " in link
    assert "default" not in support.run("ip", "-n", sandbox, "route").stdout
    support.run("ip", "-n", sandbox, "route", "add", "default", "via", gw)  # Docker's part
    support.run("ip", "netns", "exec", sandbox, *support.ping_cmd(gw))
    [ep] = store.endpoints()
    assert (ep.mode, ep.ifname) == ("direct", "eth0")
    # The container dies first: pycni's pin keeps its netns for the DEL.
    netns.NetNS(sandbox).delete()
    host.netns.remove(sandbox)
    assert netns.NetNS(ep.netns).exists()
    delete_endpoint(driver, nid, eid)
    driver.delete_network(protocol.parse_network_ref({"NetworkID": nid}))
    assert_clean(settings, nid, sn)


def test_direct_attach_takes_the_next_free_ethN(stack, host):
    settings, store, driver, _ = stack
    sn = subnet()
    nid, gw = make_network(driver, sn, **{"cni.attach": "direct"})
    sandbox = host.add_netns("pyct-sbx")
    support.run("ip", "-n", sandbox, "link", "add", "eth0", "type", "veth", "peer", "name",
                "other")  # the interface of the container's first network
    eid, _, _ = make_endpoint(driver, nid, sn.rsplit(".", 1)[0] + ".10/24",
                              netns.NetNS(sandbox).path)
    assert "eth1" in support.run("ip", "-n", sandbox, "-o", "link").stdout
    assert store.get_endpoint(eid).ifname == "eth1"
    delete_endpoint(driver, nid, eid)
    assert "eth1" not in support.run("ip", "-n", sandbox, "-o", "link").stdout
    driver.delete_network(protocol.parse_network_ref({"NetworkID": nid}))
    assert_clean(settings, nid, sn)


def test_settings_inside_the_netns_need_the_container_netns(stack, host):
    """tuning's sysctl is set in the netns CNI runs in: kept in direct mode, refused
    (naming it) where pycni would have to hand the interface over."""
    settings, store, driver, _ = stack
    sn = subnet()
    name = "pyct-" + hexid()[:8]
    with open(os.path.join(settings.conf_dir, f"10-{name}.conflist"), "w") as f:
        json.dump({"cniVersion": "1.0.0", "name": name, "plugins": [
            {"type": "bridge", "bridge": "pyct" + hexid()[:8], "isGateway": True,
             "ipam": {"type": "host-local", "dataDir": settings.ipam_dir,
                      "ranges": [[{"subnet": sn}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}}]}, f)
    nid, gw = make_network(driver, sn, **{"cni.network": name})
    with pytest.raises(Exception, match="cannot survive pycni's handoff to Docker: tuning "
                                        "sysctl net.ipv4.conf.eth0.arp_notify"):
        make_endpoint(driver, nid, sn.rsplit(".", 1)[0] + ".11/24")
    for ep in store.endpoints():
        delete_endpoint(driver, nid, ep.id)
    sandbox = host.add_netns("pyct-sbx")
    eid, _, _ = make_endpoint(driver, nid, sn.rsplit(".", 1)[0] + ".12/24",
                              netns.NetNS(sandbox).path)
    value = support.run("ip", "netns", "exec", sandbox, "cat",
                        "/proc/sys/net/ipv4/conf/eth0/arp_notify").stdout.strip()
    assert value == "1"
    delete_endpoint(driver, nid, eid)
    bridge = [p for p in store.get_network(nid).conflist["plugins"]
              if p["type"] == "bridge"][0]["bridge"]
    driver.delete_network(protocol.parse_network_ref({"NetworkID": nid}))
    support.run("ip", "link", "del", bridge, check=False)
    assert_clean(settings, nid, sn)


def test_delete_network_whose_record_was_lost(stack, host, tmp_path):
    """A server with an empty state dir (lost, or a reinstall) gets DeleteNetwork for a
    network an earlier one made: its bridge and iptables rules go, found by name."""
    from cnm_bridge.compose import build
    from cnm_bridge.settings import Settings
    settings, store, driver, _ = stack
    sn = subnet()
    nid, gw = make_network(driver, sn)
    eid, _, _ = make_endpoint(driver, nid, sn.rsplit(".", 1)[0] + ".5/24")
    delete_endpoint(driver, nid, eid)
    assert f"pc-{nid[:12]}" in support.links()  # the bridge plugin made it at ADD
    assert support.iptables_mentioning(f"pycni-{nid[:12]} ") != []
    fresh = Settings(socket=str(tmp_path / "sock2"), conf_dir=settings.conf_dir,
                     bin_dirs=settings.bin_dirs, state_dir=str(tmp_path / "state2"))
    build(fresh, defer_delete=False).driver.delete_network(
        protocol.parse_network_ref({"NetworkID": nid}))
    assert f"pc-{nid[:12]}" not in support.links()
    assert support.iptables_mentioning(f"pycni-{nid[:12]} ") == []
    store.delete_network(nid)  # the first server's record, for the fixture's cleanup
    assert_clean(settings, nid, sn)
