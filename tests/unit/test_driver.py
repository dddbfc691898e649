"""driver.py and attachment.py with fake CNI plugins and a fake host: a network's and an
endpoint's whole life, without root."""

import json
import logging

import pytest

from cni_runner import PluginError
from cnm_bridge import names
from cnm_bridge.errors import DriverError, HostError, NotFound, UnsupportedOption
from dockercalls import (V11, connectivity, create_endpoint, create_network, join,
                         named_network, ref, run)

SANDBOX = "/var/run/docker/netns/0123456789ab"


def plugin_calls(cni, command, plugin):
    return [c for c in cni.calls(command, plugin)]


# -- networks ----------------------------------------------------------------------------

def test_create_network_records_a_spec_and_installs_its_rules(side):
    req = create_network()
    assert side.driver.create_network(req) == {}
    spec = side.store.get_network(req.network_id)
    assert spec.cni_name == names.cni_network_name(req.network_id)
    assert [p["type"] for p in spec.endpoint_list["plugins"]] == ["bridge"]
    assert [p["type"] for p in spec.ports_list["plugins"]] == ["portmap"]
    assert spec.owned_links == (names.bridge_name(req.network_id),)
    assert spec.masquerade and spec.forward and spec.gateways == {"10.50.0.0/24": "10.50.0.1"}
    tag = names.rule_tag(req.network_id)
    assert side.host.rules_mentioning(tag + " masquerade")
    assert side.host.rules_mentioning(tag + " outbound")
    assert side.host.rules_mentioning(tag + " isolation")
    assert side.driver.create_network(req) == {}  # a replay changes nothing
    assert len(side.store.networks()) == 1


def test_create_network_records_before_it_installs_rules(side, monkeypatch):
    """A kill between the two leaves a record, which start-up finishes (its rules again)
    and gc undoes if dockerd never got the network; rules first would leave rules no
    record knows, for good."""
    req = create_network()
    recorded_at_install = []
    real = side.host.install_rules

    def install(rules, what):
        recorded_at_install.append(side.store.get_network(req.network_id) is not None)
        return real(rules, what)
    monkeypatch.setattr(side.host, "install_rules", install)
    side.driver.create_network(req)
    assert recorded_at_install == [True]
    side.host.rules.clear()  # as if killed right after the record
    assert side.graph.reconciler.local()["host_rules"] == 1
    assert side.host.rules_mentioning(names.rule_tag(req.network_id))


def test_doctor_lists_rules_of_no_network(side):
    from cnm_bridge.ops import doctor
    kept, lost = create_network(), create_network(subnet="10.51.0.0/24", gateway="10.51.0.1")
    side.driver.create_network(kept)
    side.driver.create_network(lost)
    assert [f.ok for f in doctor.check_orphan_rules(side.store, side.host.rule_tags())] == [True]
    side.store.delete_network(lost.network_id)  # its record lost, its rules not
    [f] = doctor.check_orphan_rules(side.store, side.host.rule_tags())
    assert not f.ok and names.rule_tag(lost.network_id) in f.detail
    assert names.rule_tag(kept.network_id) not in f.detail


def test_create_network_checks_plugins_and_versions(side):
    side.cni.behave("portmap", versions=["0.1.0"])
    with pytest.raises(DriverError, match="portmap"):
        side.driver.create_network(create_network())
    assert side.store.networks() == [] and side.host.rules == []


def test_create_network_rules_failing_leaves_nothing(side):
    side.host.fail["install_rules"] = HostError("iptables: no chain")
    with pytest.raises(DriverError, match="no chain"):
        side.driver.create_network(create_network())
    assert side.store.networks() == []


@pytest.mark.parametrize("kw, words", [
    ({"space": "null", "subnet": "0.0.0.0/0", "gateway": ""}, "--ipam-driver null"),
    ({"ipv4": False}, "IPv6-only network (--ipv4=false) needs --ipv6"),
])
def test_create_network_refusals(side, kw, words):
    with pytest.raises(UnsupportedOption, match=words.replace("(", r"\(").replace(")", r"\)")):
        side.driver.create_network(create_network(**kw))


def test_create_network_without_ipv4_pool_refused_unless_ipv6_only(side):
    from cnm_bridge.docker import protocol as p
    req = p.parse_create_network({"NetworkID": "ab" * 32, "Options": {},
                                  "IPv6Data": [{"AddressSpace": "x", "Pool": "fd50::/64"}]})
    with pytest.raises(UnsupportedOption, match="no IPv4 subnet"):
        side.driver.create_network(req)
    ok = create_network(ipv4=False, v6=("fd50::/64", "fd50::1"))
    side.driver.create_network(ok)
    assert side.store.get_network(ok.network_id).subnets == ("fd50::/64",)


def test_create_named_network(side):
    side.cni.write_conf("10-mynet.conflist", {
        "cniVersion": "0.4.0", "name": "mynet",
        "plugins": [{"type": "ptp", "ipam": {"type": "host-local",
                                               "ranges": [[{"subnet": "10.50.0.0/24"}]]}},
                    {"type": "portmap", "capabilities": {"portMappings": True}}]})
    req = create_network(options={"cni.network": "mynet"})
    side.driver.create_network(req)
    spec = side.store.get_network(req.network_id)
    assert spec.cni_name == "mynet" and spec.mode == "named" and spec.isolate is False
    assert spec.conflist["plugins"][0]["capabilities"] == {"ips": True}
    # In the container's own netns the MAC is set by CNI: tuning appended (ptp takes none).
    assert [p["type"] for p in spec.direct_list["plugins"]] == ["ptp", "tuning"]
    # No firewall plugin in it: pycni's forwarding ACCEPTs (Docker's FORWARD policy is
    # DROP); no isolation, no masquerade: the list keeps what its author wrote.
    got = [" ".join(r.args) for r in side.host.rules]
    assert [r for r in got if "outbound" in r] and not [r for r in got if "isolation" in r]
    assert not [r for r in got if "MASQUERADE" in r]


def test_create_named_network_errors(side):
    with pytest.raises(DriverError, match="no CNI network named 'nope'"):
        side.driver.create_network(create_network(options={"cni.network": "nope"}))
    side.cni.write_conf("10-other.conflist", {
        "cniVersion": "1.0.0", "name": "other",
        "plugins": [{"type": "bridge", "ipam": {"type": "host-local",
                                                  "ranges": [[{"subnet": "10.9.0.0/24"}]]}}]})
    with pytest.raises(UnsupportedOption, match="--subnet 10.9.0.0/24"):
        side.driver.create_network(create_network(options={"cni.network": "other"}))
    # With pycni's IPAM the conflist's IPAM decides: no subnet check against Docker's.
    side.driver.create_network(create_network(options={"cni.network": "other"},
                                              space="PycniLocal"))


@pytest.mark.parametrize("value", [5, ["br0"], "a" * 16, "br 0"])
def test_a_conflist_with_a_bad_bridge_name_is_a_config_error(side, value):
    side.cni.write_conf("10-badbr.conflist", {
        "cniVersion": "1.0.0", "name": "badbr",
        "plugins": [{"type": "bridge", "bridge": value,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.50.0.0/24"}]]}}]})
    with pytest.raises(UnsupportedOption, match="CNI network 'badbr': the bridge plugin's "
                                                "\"bridge\" must be an interface name"):
        side.driver.create_network(create_network(options={"cni.network": "badbr"}))
    assert side.store.networks() == [] and side.host.rules == []


def test_create_macvlan_needs_its_parent(side):
    with pytest.raises(UnsupportedOption, match="parent interface 'eth9' does not exist"):
        side.driver.create_network(create_network(options={"cni.type": "macvlan",
                                                           "parent": "eth9"}))
    side.host.links["eth9"] = "02:00:00:00:00:09"
    req = create_network(options={"cni.type": "macvlan", "parent": "eth9"})
    side.driver.create_network(req)
    assert side.store.get_network(req.network_id).bridge == ""


def test_ptp_containers_reach_each_other_through_the_host(side):
    # Generated ptp, handed off: Docker sets 10.50.0.x/24 on eth0, so the subnet must be
    # routed via the gateway (the host veth) or a container ARPs for its peers in vain.
    req = create_network(options={"cni.type": "ptp"})
    side.driver.create_network(req)
    _, _, joined = run(side.driver, req.network_id)
    assert "InterfaceName" in joined and joined["Gateway"] == "10.50.0.1"
    assert joined["StaticRoutes"] == [
        {"Destination": "10.50.0.1/32", "RouteType": 1},
        {"Destination": "10.50.0.0/25", "RouteType": 0, "NextHop": "10.50.0.1"},
        {"Destination": "10.50.0.128/25", "RouteType": 0, "NextHop": "10.50.0.1"}]
    # Direct (the container's own netns, Docker 28): ptp's own routes stay; only the gateway.
    key = "/var/run/docker/netns/c0ffee"
    side.host.add_sandbox(key)
    _, _, joined = run(side.driver, req.network_id, "10.50.0.6/24", sandbox_key=key,
                       options={"com.docker.network.endpoint.ifname": "eth3"})
    assert "InterfaceName" not in joined and "StaticRoutes" not in joined
    assert joined["Gateway"] == "10.50.0.1"


@pytest.mark.parametrize("link, kind", [("eth0", "device"), ("br0", "bridge")])
def test_create_network_refuses_a_host_link_pycni_did_not_make(side, link, kind):
    """Isolation and DROP rules would land on the host's own link."""
    side.host.links[link] = "02:00:00:00:00:01"
    side.host.kinds[link] = kind
    with pytest.raises(UnsupportedOption, match=f"host link '{link}' \\({kind}\\) exists"):
        side.driver.create_network(create_network(
            options={"com.docker.network.bridge.name": link}))
    assert side.store.networks() == [] and side.host.rules == []


def test_create_network_takes_a_bridge_pycni_made(side):
    """Its own pc-<id> left from a lost state dir, or a custom-named one another recorded
    network uses."""
    req = create_network()
    own = names.bridge_name(req.network_id)
    side.host.links[own] = side.host.links["shr0"] = "aa"
    side.driver.create_network(req)
    first = create_network(subnet="10.51.0.0/24", gateway="10.51.0.1",
                           options={"com.docker.network.bridge.name": "shr0"})
    side.host.links.pop("shr0")
    side.driver.create_network(first)
    side.host.links["shr0"] = "aa"  # the bridge plugin made it at the first ADD
    second = create_network(subnet="10.52.0.0/24", gateway="10.52.0.1",
                            options={"com.docker.network.bridge.name": "shr0"})
    side.driver.create_network(second)
    assert len(side.store.networks()) == 3


def test_no_tuning_plugin_no_mac_setter(side):
    import os
    os.unlink(os.path.join(side.cni.bin_dir, "tuning"))
    req = create_network(options={"cni.type": "ptp"})
    side.driver.create_network(req)
    spec = side.store.get_network(req.network_id)
    assert spec.direct_list == spec.endpoint_list


def test_delete_network_undoes_everything(side):
    req = create_network()
    side.driver.create_network(req)
    bridge = names.bridge_name(req.network_id)
    side.host.links[bridge] = "aa"  # the bridge plugin made it
    eid, _, _ = run(side.driver, req.network_id)
    assert side.driver.delete_network(ref(req.network_id)) == {}
    assert side.store.get_network(req.network_id) is None
    assert side.store.get_endpoint(eid) is None
    assert bridge not in side.host.links and side.host.rules == [] and side.host.base == set()
    assert side.driver.delete_network(ref(req.network_id)) == {}  # idempotent


def test_delete_network_waits_for_ports_going_with_their_netns(side, monkeypatch):
    """A container's veth goes with its netns, which the kernel tears down after Docker
    sent DeleteNetwork: the bridge goes once its last port has."""
    req = create_network()
    side.driver.create_network(req)
    bridge = names.bridge_name(req.network_id)
    side.host.links[bridge] = "aa"
    side.host.bridge_ports[bridge] = 1
    checks = []

    def has_ports(name):
        checks.append(name)
        if len(checks) == 3:
            side.host.bridge_ports[name] = 0
        return side.host.bridge_ports.get(name, 0) > 0
    monkeypatch.setattr(side.host, "bridge_has_ports", has_ports)
    side.driver.delete_network(ref(req.network_id))
    assert bridge not in side.host.links and len(checks) == 3


def test_delete_network_keeps_a_bridge_with_ports_or_shared(side, monkeypatch):
    monkeypatch.setattr(side.driver, "PORTS_DRAIN_SECONDS", 0.1)
    a, b = create_network(), create_network(subnet="10.51.0.0/24", gateway="10.51.0.1",
                                             options={"com.docker.network.bridge.name": "shr0"})
    side.driver.create_network(a)
    side.driver.create_network(b)
    bridge = names.bridge_name(a.network_id)
    side.host.links[bridge] = "aa"
    side.host.bridge_ports[bridge] = 1
    side.driver.delete_network(ref(a.network_id))
    assert bridge in side.host.links
    assert side.host.base == {4}  # network b still needs pycni's chains


def test_delete_network_without_a_record_removes_what_its_name_finds(side, monkeypatch):
    """The state dir was lost (or another server's): its bridge and rules carry the
    network's id, so DeleteNetwork still leaves nothing of it; another network's stay."""
    monkeypatch.setattr(side.driver, "PORTS_DRAIN_SECONDS", 0.1)
    lost, kept = create_network(), create_network(subnet="10.51.0.0/24", gateway="10.51.0.1")
    side.driver.create_network(lost)
    side.driver.create_network(kept)
    side.host.links[names.bridge_name(lost.network_id)] = "aa"
    side.host.links[names.bridge_name(kept.network_id)] = "bb"
    side.store.delete_network(lost.network_id)  # as if its record were gone
    assert side.driver.delete_network(ref(lost.network_id)) == {}
    assert names.bridge_name(lost.network_id) not in side.host.links
    assert side.host.rules_mentioning(names.rule_tag(lost.network_id)) == []
    assert side.host.rules_mentioning(names.rule_tag(kept.network_id)) != []
    assert names.bridge_name(kept.network_id) in side.host.links and side.host.base == {4}
    side.driver.delete_network(ref(kept.network_id))
    assert side.host.rules == [] and side.host.base == set()


def test_delete_network_without_a_record_keeps_a_bridge_with_ports(side, monkeypatch):
    monkeypatch.setattr(side.driver, "PORTS_DRAIN_SECONDS", 0.1)
    nid = create_network().network_id
    bridge = names.bridge_name(nid)
    side.host.links[bridge] = "aa"
    side.host.bridge_ports[bridge] = 1  # something still uses it
    assert side.driver.delete_network(ref(nid)) == {}
    assert bridge in side.host.links


# -- endpoints: CreateEndpoint and Join ----------------------------------------------------

@pytest.fixture
def net(side):
    req = create_network()
    side.driver.create_network(req)
    return req.network_id


def test_create_endpoint_answers_the_mac_that_follows_the_address(side, net):
    req = create_endpoint(net, "10.50.0.5/24")
    assert side.driver.create_endpoint(req) == {"Interface": {"MacAddress": "02:42:0a:32:00:05"}}
    assert side.driver.create_endpoint(req) == {"Interface": {"MacAddress": "02:42:0a:32:00:05"}}
    ep = side.store.get_endpoint(req.endpoint_id)
    assert ep.state == "created" and ep.mode == "" and ep.result is None
    assert side.cni.calls("ADD") == []  # CNI runs at Join, where pycni knows the netns


def test_create_endpoint_users_mac_is_kept_not_answered(side, net):
    req = create_endpoint(net, mac="02:42:ac:11:00:99")
    assert side.driver.create_endpoint(req) == {"Interface": {}}
    assert side.store.get_endpoint(req.endpoint_id).mac == "02:42:ac:11:00:99"


def test_create_endpoint_refuses_unknown_driver_options(side, net):
    with pytest.raises(UnsupportedOption, match="color"):
        side.driver.create_endpoint(create_endpoint(net, options={"color": "blue"}))


def test_unknown_network_and_endpoint(side, net):
    with pytest.raises(NotFound):
        side.driver.create_endpoint(create_endpoint("ee" * 32))
    with pytest.raises(NotFound):
        side.driver.join(join(net, "ee" * 32))
    with pytest.raises(NotFound):
        side.driver.oper_info(ref(net, "ee" * 32))


def test_join_hands_off_where_the_netns_is_not_there_yet(side, net):
    eid, created, joined = run(side.driver, net)
    tmp = names.tmp_ifname(eid)
    assert joined == {"InterfaceName": {"SrcName": tmp, "DstPrefix": "eth"},
                      "Gateway": "10.50.0.1"}
    [add] = side.cni.calls("ADD", "bridge")
    assert add["env"]["CNI_NETNS"] == side.host.netns_path(names.netns_name(eid))
    assert add["env"]["CNI_IFNAME"] == "eth0"
    assert "MAC=02:42:0a:32:00:05" in add["env"]["CNI_ARGS"]
    # Docker's address and gateway, in `static` (no allocation state in a generated list)
    assert add["stdin"]["ipam"] == {"type": "static", "addresses": [
        {"address": "10.50.0.5/24", "gateway": "10.50.0.1"}], "routes": [{"dst": "0.0.0.0/0"}]}
    assert "runtimeConfig" not in add["stdin"]
    assert side.host.links[tmp] == "02:42:0a:32:00:05"
    ep = side.store.get_endpoint(eid)
    assert (ep.state, ep.mode, ep.ifname, ep.tmp_ifname) == ("ready", "handoff", "eth0", tmp)
    assert side.driver.join(join(net, eid)) == joined  # a replay
    assert len(side.cni.calls("ADD", "bridge")) == 1


@pytest.fixture
def direct_net(side):
    req = create_network(options={"cni.attach": "direct"})
    side.driver.create_network(req)
    return req.network_id


def test_join_hands_off_by_default_where_the_netns_exists(side, net):
    """Docker names the interfaces of its own drivers without seeing one pycni made in the
    sandbox: by default pycni hands over, so that Docker names it too."""
    side.host.add_sandbox(SANDBOX, ifnames=["eth0"])
    eid, _, joined = run(side.driver, net, sandbox_key=SANDBOX)
    assert joined["InterfaceName"] == {"SrcName": names.tmp_ifname(eid), "DstPrefix": "eth"}
    assert side.store.get_endpoint(eid).mode == "handoff"


def test_join_direct_where_asked_and_the_netns_exists(side, direct_net):
    net = direct_net
    side.host.add_sandbox(SANDBOX, ifnames=["eth0"])  # another network's interface
    eid, _, joined = run(side.driver, net, sandbox_key=SANDBOX)
    assert joined == {"Gateway": "10.50.0.1"}
    ep = side.store.get_endpoint(eid)
    assert (ep.mode, ep.ifname, ep.tmp_ifname, ep.sandbox_key) == ("direct", "eth1", "",
                                                                    SANDBOX)
    [add] = side.cni.calls("ADD", "bridge")
    assert add["env"]["CNI_NETNS"] == side.host.netns_path(ep.netns)
    assert add["env"]["CNI_IFNAME"] == "eth1"
    # Docker sets the default route from Join's Gateway; CNI's is removed first.
    assert side.host.cleared_routes == [(ep.netns, "eth1")]
    assert not [c for c in side.host.calls if c[0] == "hand_out"]


def test_join_direct_with_the_interface_name_asked_for(side, net):
    side.host.add_sandbox(SANDBOX)
    eid, _, _ = run(side.driver, net, sandbox_key=SANDBOX,
                    options={"com.docker.network.endpoint.ifname": "lan0"})
    assert side.store.get_endpoint(eid).ifname == "lan0"


def test_join_direct_refuses_an_interface_name_the_container_has(side, net):
    """Docker's eth0 is there: the ADD would fail, and its cleanup DEL (CNI_IFNAME=eth0)
    would delete the container's own interface. Nothing runs."""
    side.host.add_sandbox(SANDBOX, ifnames=["eth0"])
    req = create_endpoint(net, options={"com.docker.network.endpoint.ifname": "eth0"})
    side.driver.create_endpoint(req)
    with pytest.raises(UnsupportedOption, match="'eth0' already exists in the container"):
        side.driver.join(join(net, req.endpoint_id, SANDBOX))
    assert side.cni.verbs() == []
    assert "eth0" in side.host.sandbox_links[SANDBOX]
    assert side.store.get_endpoint(req.endpoint_id).state == "created"


def test_join_handoff_ignores_an_interface_name(side, net):
    eid, _, _ = run(side.driver, net, options={"com.docker.network.endpoint.ifname": "lan0"})
    assert side.store.get_endpoint(eid).ifname == "eth0"


def test_attach_handoff_forced_by_the_network(side):
    req = create_network(options={"cni.attach": "handoff"})
    side.driver.create_network(req)
    side.host.add_sandbox(SANDBOX)
    eid, _, joined = run(side.driver, req.network_id, sandbox_key=SANDBOX)
    assert "InterfaceName" in joined and side.store.get_endpoint(eid).mode == "handoff"


def write_tuning_list(side, name="tun", **extra):
    side.cni.write_conf(f"10-{name}.conflist", {
        "cniVersion": "1.0.0", "name": name,
        "plugins": [{"type": "bridge", "ipam": {"type": "host-local",
                                                  "ranges": [[{"subnet": "10.50.0.0/24"}]]}},
                    {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}}]})
    req = create_network(options={"cni.network": name, **extra})
    side.driver.create_network(req)
    return req.network_id


def test_settings_lost_in_a_handoff_are_refused_at_join(side):
    nid = write_tuning_list(side)
    with pytest.raises(UnsupportedOption, match="tuning sysctl net.ipv4.conf.eth0.arp_notify"):
        run(side.driver, nid)
    assert side.cni.calls("ADD") == []
    side.host.add_sandbox(SANDBOX)
    eid, _, _ = run(side.driver, nid, address="10.50.0.6/24", sandbox_key=SANDBOX)
    assert side.store.get_endpoint(eid).mode == "direct"


def test_settings_lost_in_a_handoff_allowed(side):
    nid = write_tuning_list(side, "tun2", **{"cni.allow-lost-settings": "true"})
    eid, _, joined = run(side.driver, nid)
    assert "InterfaceName" in joined


def test_failed_add_is_undone_and_the_record_waits_for_delete_endpoint(side, net):
    side.cni.behave("bridge", ADD={"error": {"code": 11, "msg": "no IP addresses available"}})
    req = create_endpoint(net)
    side.driver.create_endpoint(req)
    with pytest.raises(PluginError, match="no IP addresses"):
        side.driver.join(join(net, req.endpoint_id))
    ep = side.store.get_endpoint(req.endpoint_id)
    assert (ep.state, ep.mode, ep.result) == ("created", "", None)
    assert side.host.netns == {}
    assert side.runtime.cached_attachments() == []
    side.driver.delete_endpoint(ref(net, req.endpoint_id))
    assert side.store.get_endpoint(req.endpoint_id) is None


def test_cni_must_configure_dockers_address(side, net):
    side.cni.behave("bridge", ADD={"result": {
        "cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
        "ips": [{"interface": 0, "address": "10.50.0.99/24"}]}})
    with pytest.raises(UnsupportedOption, match="configured .*10.50.0.99/24.* but Docker "
                                                "assigned 10.50.0.5/24"):
        run(side.driver, net)
    assert side.cni.calls("DEL", "bridge")


def test_results_of_old_versions_are_understood(side):
    side.cni.write_conf("10-mynet.conf", {
        "cniVersion": "0.2.0", "name": "mynet", "type": "bridge", "bridge": "cni0",
        "isGateway": True, "ipMasq": True,
        "ipam": {"type": "host-local", "subnet": "10.22.0.0/16",
                 "routes": [{"dst": "0.0.0.0/0"}]}})
    req = create_network(subnet="10.22.0.0/16", gateway="10.22.0.1",
                         options={"cni.network": "mynet"})
    side.driver.create_network(req)
    eid, _, joined = run(side.driver, req.network_id, address="10.22.0.7/16")
    assert joined["InterfaceName"]["SrcName"] == names.tmp_ifname(eid)
    assert side.store.get_endpoint(eid).result["cniVersion"] == "0.2.0"


def test_pycni_ipam_hands_the_address_through_static(side):
    req = create_network(space="PycniLocal")
    side.driver.create_network(req)
    eid, _, _ = run(side.driver, req.network_id, address="10.50.0.7/24")
    [add] = side.cni.calls("ADD", "bridge")
    assert add["stdin"]["ipam"] == {"type": "static", "addresses": [
        {"address": "10.50.0.7/24", "gateway": "10.50.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}]}
    assert "ips" not in add["stdin"].get("runtimeConfig", {})


def test_oper_info(side, net):
    eid, _, _ = run(side.driver, net)
    value = side.driver.oper_info(ref(net, eid))["Value"]
    assert value["ips"] == ["10.50.0.5/24"] and value["mode"] == "handoff"
    assert value["cni.network"] == names.cni_network_name(net)
    assert value["mac"] == "02:42:0a:32:00:05"


# -- published ports --------------------------------------------------------------------

def test_publish_and_revoke(side, net):
    eid, _, _ = run(side.driver, net)
    side.host.ports_in_use.add(("tcp", 40000))
    side.driver.program_external_connectivity(
        connectivity(net, eid, (6, 80, 8080), (17, 53, 5353, "127.0.0.1"), (6, 9999, 0)))
    ep = side.store.get_endpoint(eid)
    assert ep.ports == [
        {"containerPort": 80, "protocol": "tcp", "hostPort": 8080},
        {"containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1", "hostPort": 5353},
        {"containerPort": 9999, "protocol": "tcp", "hostPort": 40001}]  # 40000 was held
    [add] = side.cni.calls("ADD", "portmap")
    assert add["stdin"]["runtimeConfig"] == {"portMappings": ep.ports}
    assert add["stdin"]["prevResult"]["ips"][0]["address"] == "10.50.0.5/24"
    assert add["stdin"]["name"] == names.cni_network_name(net) + "-ports"
    side.driver.program_external_connectivity(connectivity(net, eid, (6, 80, 8080)))
    assert len(side.cni.calls("ADD", "portmap")) == 1  # a repeat publishes nothing new
    side.driver.revoke_external_connectivity(connectivity(net, eid))
    assert side.store.get_endpoint(eid).ports == []
    assert side.cni.calls("DEL", "portmap")
    side.driver.revoke_external_connectivity(connectivity(net, eid))  # repeatable
    side.driver.revoke_external_connectivity(connectivity(net, "ee" * 32))


def test_a_port_another_endpoint_holds_is_refused(side, net):
    a, _, _ = run(side.driver, net)
    b, _, _ = run(side.driver, net, address="10.50.0.6/24")
    side.driver.program_external_connectivity(connectivity(net, a, (6, 80, 8080)))
    with pytest.raises(DriverError, match="host port 8080/tcp is already in use"):
        side.driver.program_external_connectivity(connectivity(net, b, (6, 80, 8080)))
    side.host.ports_in_use.update(("tcp", p) for p in range(40000, 40010))
    with pytest.raises(DriverError, match="no free host port"):
        side.driver.program_external_connectivity(connectivity(net, b, (6, 80, 0)))


def test_default_host_address_of_the_network(side):
    req = create_network(options={"com.docker.network.bridge.host_binding_ipv4": "127.0.0.1"})
    side.driver.create_network(req)
    eid, _, _ = run(side.driver, req.network_id)
    side.driver.program_external_connectivity(
        connectivity(req.network_id, eid, (6, 80, 8080), (6, 81, 8081, "0.0.0.0")))
    ports = side.store.get_endpoint(eid).ports
    assert [m.get("hostIP") for m in ports] == ["127.0.0.1", "0.0.0.0"]


def test_internal_network_and_no_portmap(side):
    req = create_network(internal=True)
    side.driver.create_network(req)
    eid, _, joined = run(side.driver, req.network_id)
    assert "Gateway" not in joined and joined["DisableGatewayService"] is True
    side.driver.program_external_connectivity(connectivity(req.network_id, eid, (6, 80, 8080)))
    assert side.cni.calls("ADD", "portmap") == []
    side.cni.write_conf("10-np.conflist", {
        "cniVersion": "1.0.0", "name": "np",
        "plugins": [{"type": "bridge", "ipam": {"type": "host-local",
                                                  "ranges": [[{"subnet": "10.52.0.0/24"}]]}}]})
    req = create_network(subnet="10.52.0.0/24", gateway="10.52.0.1", options={"cni.network": "np"})
    side.driver.create_network(req)
    eid, _, _ = run(side.driver, req.network_id, address="10.52.0.5/24")
    with pytest.raises(UnsupportedOption, match="no portmap plugin"):
        side.driver.program_external_connectivity(
            connectivity(req.network_id, eid, (6, 80, 8080)))


def test_publish_needs_an_attached_endpoint(side, net):
    req = create_endpoint(net)
    side.driver.create_endpoint(req)
    with pytest.raises(NotFound, match="not attached"):
        side.driver.program_external_connectivity(
            connectivity(net, req.endpoint_id, (6, 80, 8080)))


# -- teardown ---------------------------------------------------------------------------

def test_delete_endpoint_handoff(side, net):
    eid, _, _ = run(side.driver, net)
    side.driver.program_external_connectivity(connectivity(net, eid, (6, 80, 8080)))
    assert side.driver.leave(ref(net, eid)) == {}
    side.driver.delete_endpoint(ref(net, eid))
    assert side.store.get_endpoint(eid) is None
    assert [c["plugin"] for c in side.cni.calls("DEL")] == ["portmap", "bridge"]
    # The generated list needs no link at DEL: pycni deletes it, no move back.
    assert ("delete_link", names.tmp_ifname(eid)) in side.host.calls
    assert not [c for c in side.host.calls if c[0] == "take_back"]
    assert side.host.netns == {} and side.runtime.cached_attachments() == []
    side.driver.delete_endpoint(ref(net, eid))  # Docker may repeat it


def test_delete_endpoint_that_never_joined(side, net):
    req = create_endpoint(net)
    side.driver.create_endpoint(req)
    side.driver.delete_endpoint(ref(net, req.endpoint_id))
    assert side.store.get_endpoint(req.endpoint_id) is None and side.cni.calls("DEL") == []


def masquerading_network(side, **options):
    """A named list whose bridge masquerades per container: its DEL needs the link."""
    side.cni.write_conf("10-masq.conflist", {
        "cniVersion": "1.0.0", "name": "masq",
        "plugins": [{"type": "bridge", "ipMasq": True, "ipam": {
            "type": "host-local", "ranges": [[{"subnet": "10.50.0.0/24"}]]}}]})
    req = create_network(options={"cni.network": "masq", **options})
    side.driver.create_network(req)
    return req


def test_teardown_of_a_list_that_needs_its_link(side):
    req = masquerading_network(side)
    eid, _, _ = run(side.driver, req.network_id)
    side.driver.delete_endpoint(ref(req.network_id, eid))
    tmp = names.tmp_ifname(eid)
    assert ("take_back", names.netns_name(eid), tmp, "eth0", ("10.50.0.5/24",)) \
        in side.host.calls


def test_delete_endpoint_direct_runs_del_in_the_pinned_netns(side, direct_net):
    net = direct_net
    side.host.add_sandbox(SANDBOX)
    eid, _, _ = run(side.driver, net, sandbox_key=SANDBOX)
    pin = names.netns_name(eid)
    assert ("pin_netns", pin, SANDBOX) in side.host.calls
    side.driver.delete_endpoint(ref(net, eid))
    [dele] = side.cni.calls("DEL", "bridge")
    assert dele["env"]["CNI_NETNS"] == side.host.netns_path(pin)
    assert dele["env"]["CNI_IFNAME"] == "eth0"
    assert pin not in side.host.netns


def test_direct_teardown_after_the_netns_is_gone(side):
    req = masquerading_network(side, **{"cni.attach": "direct"})
    side.host.add_sandbox(SANDBOX)
    eid, _, _ = run(side.driver, req.network_id, sandbox_key=SANDBOX)
    side.host.netns.clear()  # a reboot: the pin is gone
    side.driver.delete_endpoint(ref(req.network_id, eid))
    assert ("create_netns", names.netns_name(eid)) in side.host.calls
    assert [c for c in side.host.calls if c[0] == "take_back"]  # a stand-in for ipMasq
    assert side.store.get_endpoint(eid) is None


def test_deferred_delete_endpoint(deferred_side):
    side = deferred_side
    req = create_network()
    side.driver.create_network(req)
    nid = req.network_id
    eid, _, _ = run(side.driver, nid)
    side.driver.program_external_connectivity(connectivity(nid, eid, (6, 80, 8080)))
    side.driver.delete_endpoint(ref(nid, eid))
    # Ports go before the answer; the rest after it.
    assert side.cni.calls("DEL", "portmap")
    # The next endpoint with that address waits for the pending DEL.
    eid2, _, _ = run(side.driver, nid)
    assert side.store.get_endpoint(eid) is None
    dels = [i for i, c in enumerate(side.cni.calls()) if c["command"] == "DEL"
            and c["plugin"] == "bridge"]
    adds = [i for i, c in enumerate(side.cni.calls()) if c["command"] == "ADD"
            and c["plugin"] == "bridge"]
    assert dels[0] < adds[1]
    assert side.attachments.pending() == []


def test_deferred_delete_failure_keeps_the_record_for_reconciliation(deferred_side):
    side = deferred_side
    req = create_network()
    side.driver.create_network(req)
    eid, _, _ = run(side.driver, req.network_id)
    side.cni.behave("bridge", DEL={"error": {"code": 999, "msg": "stuck"}})
    side.driver.delete_endpoint(ref(req.network_id, eid))
    side.attachments.drain(timeout=30)
    assert side.store.get_endpoint(eid).state == "deleting"
    side.cni.behave("bridge")
    side.graph.reconciler.local()
    assert side.store.get_endpoint(eid) is None


# -- one address, one interface -----------------------------------------------------------
# A DeleteEndpoint that never came (pycni down past Docker's retries, or Docker forgot the
# endpoint) leaves a row, its netns and its interface; Docker's IPAM then gives the address
# out again. Join releases the old holder before its own ADD.

def bridge_calls(side, command):
    return [c for c in side.cni.calls(command, "bridge")]


def test_join_releases_an_endpoint_still_holding_its_address(side, net, caplog):
    old, _, _ = run(side.driver, net)  # its DeleteEndpoint never comes
    with caplog.at_level(logging.WARNING, logger="cnm_bridge.network.attachment"):
        new, _, joined = run(side.driver, net)  # the same address, 10.50.0.5
    [dele] = bridge_calls(side, "DEL")
    assert dele["env"]["CNI_CONTAINERID"] == old
    assert dele["env"]["CNI_NETNS"] == side.host.netns_path(names.netns_name(old))
    calls = side.cni.calls()
    assert calls.index(dele) < calls.index(bridge_calls(side, "ADD")[1])
    assert side.store.get_endpoint(old) is None
    assert names.netns_name(old) not in side.host.netns
    assert names.tmp_ifname(old) not in side.host.links
    assert side.store.get_endpoint(new).state == "ready"
    assert joined["InterfaceName"]["SrcName"] == names.tmp_ifname(new)
    assert [c.container_id for c in side.runtime.cached_attachments()] == [new]
    assert old[:12] in caplog.text and new[:12] in caplog.text and "10.50.0.5" in caplog.text


def test_join_releases_a_direct_endpoint_still_holding_its_address(side, direct_net):
    """Direct: the old interface sits in the old container's netns, kept by pycni's pin."""
    side.host.add_sandbox(SANDBOX)
    old, _, _ = run(side.driver, direct_net, sandbox_key=SANDBOX)
    other = "/var/run/docker/netns/fedcba987654"
    side.host.add_sandbox(other)
    new, _, _ = run(side.driver, direct_net, sandbox_key=other)
    [dele] = bridge_calls(side, "DEL")
    assert dele["env"]["CNI_CONTAINERID"] == old
    assert dele["env"]["CNI_NETNS"] == side.host.netns_path(names.netns_name(old))
    assert names.netns_name(old) not in side.host.netns  # the pin is gone
    assert side.store.get_endpoint(old) is None
    ep = side.store.get_endpoint(new)
    assert (ep.state, ep.mode, ep.sandbox_key) == ("ready", "direct", other)


def test_join_refused_when_the_old_holder_cannot_be_released(side, net):
    old, _, _ = run(side.driver, net)
    side.cni.behave("bridge", DEL={"error": {"code": 999, "msg": "stuck"}})
    req = create_endpoint(net)
    side.driver.create_endpoint(req)
    with pytest.raises(DriverError) as e:
        side.driver.join(join(net, req.endpoint_id))
    assert str(e.value).startswith("address 10.50.0.5 on CNI network")
    assert f"still held by endpoint {old[:12]}," in str(e.value)
    assert "stuck" in str(e.value) and "`pycni gc --min-age 0`" in str(e.value)
    # Nothing of the new endpoint's made: no ADD, no netns, the row as CreateEndpoint left it.
    assert len(bridge_calls(side, "ADD")) == 1
    assert names.netns_name(req.endpoint_id) not in side.host.netns
    ep = side.store.get_endpoint(req.endpoint_id)
    assert (ep.state, ep.mode, ep.result) == ("created", "", None)
    # The old one waits for gc; a Join before then is refused again, not let past it.
    assert side.store.get_endpoint(old).state == "deleting"
    with pytest.raises(DriverError, match=old[:12]):
        side.driver.join(join(net, req.endpoint_id))
    side.cni.behave("bridge")
    side.graph.reconciler.local()  # what `pycni gc --min-age 0` runs first
    assert side.store.get_endpoint(old) is None
    side.driver.join(join(net, req.endpoint_id))
    assert side.store.get_endpoint(req.endpoint_id).state == "ready"


def test_join_releases_the_holder_on_another_network_of_the_same_list(side):
    """Two Docker networks on one named conflist: one list, one pool, one address."""
    first = named_network(side, "shared", version="1.0.0")
    second = create_network(options={"cni.network": "shared"})
    side.driver.create_network(second)
    old, _, _ = run(side.driver, first.network_id)
    new, _, _ = run(side.driver, second.network_id)
    [dele] = bridge_calls(side, "DEL")
    assert dele["env"]["CNI_CONTAINERID"] == old
    assert side.store.get_endpoint(old) is None
    assert side.store.get_endpoint(new).state == "ready"


def test_join_leaves_the_same_address_on_another_list_alone(side, net):
    old, _, _ = run(side.driver, net)
    other = named_network(side, "elsewhere", version="1.0.0")
    new, _, _ = run(side.driver, other.network_id)
    assert bridge_calls(side, "DEL") == []
    assert side.store.get_endpoint(old).state == "ready"
    assert side.store.get_endpoint(new).state == "ready"


def test_cached_attachment_without_network_record(side, net):
    eid, _, _ = run(side.driver, net)
    ep = side.store.get_endpoint(eid)
    ep.network_id = "dd" * 32  # its network's record is gone
    side.store.delete_endpoint(eid)
    side.store.add_endpoint(ep)
    side.attachments.release(eid)
    assert side.cni.calls("DEL", "bridge") and side.runtime.cached_attachments() == []


def test_stored_spec_is_what_later_calls_use(side, net):
    spec = side.store.get_network(net)
    doc = json.loads(json.dumps(spec.to_json()))
    assert type(spec).from_json(dict(doc, unknown_field=1)) == spec


def test_icc_false_switches_bridge_netfilter_on(side):
    side.driver.create_network(create_network(options={
        "com.docker.network.bridge.enable_icc": "false"}))
    assert ("enable_bridge_netfilter",) in side.host.calls


def test_scope_and_allocate_network(side):
    assert side.driver.capabilities() == {"Scope": "local", "ConnectivityScope": "global"}
    side.settings.scope = "global"
    assert side.driver.capabilities()["Scope"] == "global"
    from cnm_bridge.docker import protocol as p
    body = {"NetworkID": "ab" * 32, "Options": {"cni.type": "macvlan", "parent": "lan0"},
            "IPv4Data": [{"AddressSpace": "GlobalDefault", "Pool": "10.9.0.0/24"}]}
    assert side.driver.allocate_network(p.parse_allocate_network(body)) == {
        "Options": {"cni.type": "macvlan", "parent": "lan0"}}
    with pytest.raises(UnsupportedOption, match="nosuch"):
        side.driver.allocate_network(p.parse_allocate_network(dict(body,
                                                                   Options={"nosuch": "1"})))
    assert side.store.networks() == []  # nothing made on the manager


def test_swarm_network_ids(side):
    req = create_network(nid="q1w2e3r4t5y6u7i8o9p0asdfg")  # swarm's 25 characters
    side.driver.create_network(req)
    eid, _, _ = run(side.driver, req.network_id)
    assert side.store.get_network(req.network_id).cni_name == "pycni-q1w2e3r4t5y6"


@pytest.mark.parametrize("code", [50, 51])
def test_a_network_whose_plugin_cannot_add_fails_create_endpoint_before_anything(side, code):
    for plugin in ("bridge", "portmap"):
        side.cni.behave(plugin, versions=V11)
    req = named_network(side)
    side.cni.behave("bridge", versions=V11, STATUS={"error": {
        "code": code, "msg": "bridge br-lan11 is down", "details": "link state"}})
    side.cni.clear_calls()
    side.host.calls.clear()
    ep = create_endpoint(req.network_id)
    with pytest.raises(DriverError, match=rf"'lan11' cannot add.*bridge br-lan11 is down.*"
                                          rf"link state.*STATUS code {code}"):
        side.driver.create_endpoint(ep)
    # No row, no netns, no ADD: Docker has nothing to undo and nothing lingers.
    assert side.store.get_endpoint(ep.endpoint_id) is None
    assert side.cni.verbs() == [("STATUS", "bridge")]
    assert not [c for c in side.host.calls if c[0] == "create_netns"]
    # Ready again: the container starts.
    side.cni.behave("bridge", versions=V11)
    side.cni.clear_calls()
    eid, _, joined = run(side.driver, req.network_id)
    assert side.cni.verbs()[:2] == [("STATUS", "bridge"), ("STATUS", "portmap")]
    assert ("ADD", "bridge") in side.cni.verbs() and side.store.get_endpoint(eid).state == "ready"


def test_lists_below_1_1_are_not_asked_for_status(side):
    for plugin in ("bridge", "portmap"):
        side.cni.behave(plugin, versions=V11, STATUS={"error": {"code": 50, "msg": "x"}})
    req = named_network(side, "lan10", version="1.0.0")
    side.cni.clear_calls()
    run(side.driver, req.network_id)
    assert side.cni.calls("STATUS") == [] and side.cni.calls("VERSION") == []
    gen = create_network(subnet="10.51.0.0/24", gateway="10.51.0.1")  # generated: 1.0.0
    side.driver.create_network(gen)
    run(side.driver, gen.network_id, "10.51.0.5/24")
    assert side.cni.calls("STATUS") == []


def test_a_1_1_result_through_join_and_the_store(side):
    for plugin in ("bridge", "portmap"):
        side.cni.behave(plugin, versions=V11)
    req = named_network(side)
    res = {"cniVersion": "1.1.0",
           "interfaces": [{"name": "br-lan11", "mac": "aa:00:00:00:00:01", "mtu": 9000},
                          {"name": "veth1", "mac": "aa:00:00:00:00:02", "mtu": 9000},
                          {"name": "eth0", "mac": "02:42:0a:32:00:05", "mtu": 9000,
                           "sandbox": "/x", "socketPath": "/run/s.sock", "pciID": "0000:01:00.0"}],
           "ips": [{"interface": 2, "address": "10.50.0.5/24", "gateway": "10.50.0.1"}],
           "routes": [{"dst": "0.0.0.0/0", "gw": "10.50.0.1", "priority": 50, "mtu": 8950,
                       "advmss": 8910, "scope": 0, "table": 254},
                      {"dst": "10.99.0.0/16", "gw": "10.50.0.3", "table": 7}]}
    side.cni.behave("bridge", versions=V11, ADD={"result": res})
    eid, _, joined = run(side.driver, req.network_id)
    assert joined["Gateway"] == "10.50.0.1" and "StaticRoutes" not in joined
    assert side.store.get_endpoint(eid).result == res  # every 1.1 field kept
