"""translate.py: Docker options -> CNI conflist, CNI results -> Docker answers."""

import copy
import ipaddress

import pytest

from cnm_bridge import translate as t
from cnm_bridge import translate
from cnm_bridge.errors import UnsupportedOption
from cnm_bridge.protocol import IPAMData

NID = "3f" * 32
EID = "a1b2c3d4e5f6" + "0" * 52
IPAM_DIR = "/var/lib/pycni/ipam"
ip = ipaddress.ip_interface
net = ipaddress.ip_network

V4 = [IPAMData(pool=net("10.50.0.0/16"), gateway=ip("10.50.0.254/16"),
               address_space="LocalDefault")]
V6 = [IPAMData(pool=net("fd50::/64"), gateway=ip("fd50::1/64"), address_space="LocalDefault")]


def refused(fn, *args, words=()):
    with pytest.raises(UnsupportedOption) as info:
        fn(*args)
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    return msg


def plugins_by_type(conf):
    return {p["type"]: p for p in conf["plugins"]}


# -- names -----------------------------------------------------------------------------


def test_name_helpers():
    assert t.cni_network_name(NID) == "pycni-" + NID[:12]
    assert t.bridge_name(NID) == "pc-" + NID[:12]
    assert t.netns_name(EID) == "pycni-" + EID
    assert t.tmp_ifname(EID) == "pyc" + EID[:12]


@pytest.mark.parametrize("fn", [t.bridge_name, t.tmp_ifname])
def test_interface_names_fit_the_kernel_limit(fn):
    for ident in (NID, EID, "f" * 64, "0" * 64):
        name = fn(ident)
        assert 1 <= len(name.encode()) <= 15
        assert t.IFNAME_RE.fullmatch(name)


def test_netns_name_is_a_plain_file_name():
    assert "/" not in t.netns_name(EID) and t.netns_name(EID) not in (".", "..")


# -- plan_network ------------------------------------------------------------------------


def test_plan_defaults():
    plan = t.plan_network({})
    assert plan == t.NetworkPlan("generated", cni_type="bridge", options=())


def test_plan_named_alone():
    plan = t.plan_network({"cni.network": "mynet"})
    assert plan.mode == "named" and plan.conflist_name == "mynet"


def test_plan_named_combined_refused_naming_them():
    msg = refused(t.plan_network, {"cni.network": "mynet", "cni.type": "ptp",
                                   "com.docker.network.driver.mtu": "1400"},
                  words=["cni.type", "com.docker.network.driver.mtu", "cni.network", "mynet"])
    assert "cannot be combined" in msg


@pytest.mark.parametrize("name", ["", "../etc", "a b", "-x", "net\n", "a/b", "x" * 129])
def test_plan_named_bad_names(name):
    refused(t.plan_network, {"cni.network": name})


def test_plan_unknown_option_named():
    refused(t.plan_network, {"foo": "bar"}, words=["foo", "bridge"])
    refused(t.plan_network, {"cni.type": "macvlan", "parent": "eth0",
                             "com.docker.network.bridge.name": "br0"},
            words=["com.docker.network.bridge.name", "macvlan"])


def test_plan_unknown_type():
    refused(t.plan_network, {"cni.type": "weave"}, words=["weave", "cni.type", "cni.network"])


@pytest.mark.parametrize("kind", ["macvlan", "ipvlan"])
def test_plan_parent_required(kind):
    refused(t.plan_network, {"cni.type": kind}, words=["parent", kind])
    plan = t.plan_network({"cni.type": kind, "parent": "eth0"})
    assert plan.cni_type == kind and dict(plan.options) == {"parent": "eth0"}


@pytest.mark.parametrize("value", [
    "/", "..", ".", "a/b", "eth 0", " eth0", "eth0 ", "eth\0", "eth0\n", "",
    "abcdefghijklmnop",  # 16 bytes
    "é" * 8,  # 8 characters, 16 bytes
    "-eth0", "eth:0", "$(reboot)", "eth0;ls",
])
@pytest.mark.parametrize("key,base", [
    ("com.docker.network.bridge.name", {}),
    ("parent", {"cni.type": "macvlan"}),
    ("parent", {"cni.type": "ipvlan"}),
])
def test_plan_hostile_interface_names(key, base, value):
    refused(t.plan_network, {**base, key: value}, words=[key])


@pytest.mark.parametrize("value", ["br0", "a", "abcdefghijklmno", "eth0.100", "br_x-1"])
def test_plan_interface_names_ok(value):
    plan = t.plan_network({"com.docker.network.bridge.name": value})
    assert dict(plan.options)["com.docker.network.bridge.name"] == value


@pytest.mark.parametrize("mtu,ok", [("68", True), ("1500", True), ("9000", True),
                                    ("65535", True), ("67", False), ("65536", False),
                                    ("0", False), ("-1", False), ("abc", False), ("", False),
                                    ("1500.5", False)])
def test_plan_mtu_bounds(mtu, ok):
    opts = {"com.docker.network.driver.mtu": mtu}
    if ok:
        assert t.plan_network(opts).options == (("com.docker.network.driver.mtu", mtu),)
    else:
        refused(t.plan_network, opts, words=["com.docker.network.driver.mtu", "68", "65535"])


@pytest.mark.parametrize("value", ["false", "False", "0", "no", "off"])
def test_plan_icc_false_isolates_the_generated_bridge(value):
    nid = "ab" * 32
    plan = t.plan_network({"com.docker.network.bridge.enable_icc": value})
    raw = t.generate_conflist(nid, plan, [], [], False, "/ipam")
    assert t.isolated_bridge(plan, raw) == t.bridge_name(nid)


def test_plan_icc_default_and_named_lists_are_not_isolated():
    nid = "ab" * 32
    plan = t.plan_network({})
    assert t.isolated_bridge(plan, t.generate_conflist(nid, plan, [], [], False, "/i")) == ""
    assert t.isolated_bridge(t.plan_network({"cni.network": "n"}), {"plugins": []}) == ""


def test_plan_icc_true_and_masq_values():
    t.plan_network({"com.docker.network.bridge.enable_icc": "true"})
    t.plan_network({"com.docker.network.bridge.enable_ip_masquerade": "false"})
    refused(t.plan_network, {"com.docker.network.bridge.enable_ip_masquerade": "maybe"},
            words=["enable_ip_masquerade", "true or false"])
    refused(t.plan_network, {"com.docker.network.bridge.enable_icc": "sometimes"},
            words=["enable_icc"])


@pytest.mark.parametrize("kind,mode,ok", [
    ("macvlan", "bridge", True), ("macvlan", "private", True), ("macvlan", "vepa", True),
    ("macvlan", "passthru", True), ("macvlan", "l2", False), ("ipvlan", "l2", True),
    ("ipvlan", "l3", True), ("ipvlan", "l3s", True), ("ipvlan", "bridge", False),
    ("ipvlan", "", False), ("macvlan", "BRIDGE", False),
])
def test_plan_modes(kind, mode, ok):
    opts = {"cni.type": kind, "parent": "eth0", "mode": mode}
    if ok:
        assert dict(t.plan_network(opts).options)["mode"] == mode
    else:
        refused(t.plan_network, opts, words=["mode", kind])


def test_plan_mode_not_a_bridge_option():
    refused(t.plan_network, {"mode": "l2"}, words=["mode"])


def test_plan_ptp_options():
    plan = t.plan_network({"cni.type": "ptp", "com.docker.network.driver.mtu": "1400",
                           "com.docker.network.bridge.enable_ip_masquerade": "false"})
    assert plan.cni_type == "ptp"


def test_plan_does_not_mutate_input():
    opts = {"cni.type": "ptp"}
    t.plan_network(opts)
    assert opts == {"cni.type": "ptp"}


# -- generate_conflist -------------------------------------------------------------


def gen(options=None, v4=V4, v6=(), internal=False):
    return t.generate_conflist(NID, t.plan_network(options or {}), list(v4), list(v6),
                               internal, IPAM_DIR)


def test_generate_bridge_default():
    conf = gen()
    assert conf["cniVersion"] == "1.0.0" and conf["name"] == "pycni-" + NID[:12]
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap", "firewall"]
    br, portmap, fw = conf["plugins"]
    assert br["bridge"] == "pc-" + NID[:12] and len(br["bridge"]) <= 15
    # Masquerade is on, as one pycni rule per network rather than the plugin's per container.
    assert br["isGateway"] is True and br["ipMasq"] is False and br["hairpinMode"] is True
    assert t.masquerade_for(t.plan_network({}), conf, V4, [], False) == {
        "bridge": "pc-" + NID[:12], "subnets": ["10.50.0.0/16"]}
    assert "mtu" not in br
    assert br["ipam"] == {"type": "host-local", "dataDir": IPAM_DIR,
                          "ranges": [[{"subnet": "10.50.0.0/16", "gateway": "10.50.0.254"}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}
    assert portmap["capabilities"] == {"portMappings": True}
    assert fw == {"type": "firewall"}


def test_generate_internal():
    conf = gen(internal=True, v6=V6)
    types = plugins_by_type(conf)
    assert "portmap" not in types
    br = types["bridge"]
    assert br["isGateway"] is False and br["ipMasq"] is False
    assert t.masquerade_for(t.plan_network({}), conf, V4, V6, True) == {}
    assert "routes" not in br["ipam"]
    assert "firewall" in types


def test_generate_dual_stack():
    conf = gen(v6=V6)
    ipam = conf["plugins"][0]["ipam"]
    assert ipam["ranges"] == [[{"subnet": "10.50.0.0/16", "gateway": "10.50.0.254"}],
                              [{"subnet": "fd50::/64", "gateway": "fd50::1"}]]
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]


def test_generate_no_gateway_no_route():
    conf = gen(v4=[IPAMData(pool=net("10.9.0.0/24"))])
    br = conf["plugins"][0]
    assert br["isGateway"] is False
    assert br["ipam"]["ranges"] == [[{"subnet": "10.9.0.0/24"}]]
    assert "routes" not in br["ipam"]


def test_generate_mtu_and_masquerade_false():
    conf = gen({"com.docker.network.driver.mtu": "1400",
                "com.docker.network.bridge.enable_ip_masquerade": "false",
                "com.docker.network.bridge.name": "br-test"})
    br = conf["plugins"][0]
    assert br["mtu"] == 1400 and br["ipMasq"] is False and br["bridge"] == "br-test"
    assert br["isGateway"] is True
    plan = t.plan_network({"com.docker.network.bridge.enable_ip_masquerade": "false"})
    assert t.masquerade_for(plan, conf, V4, [], False) == {}


def test_masquerade_for_dual_stack_and_custom_bridge_name():
    plan = t.plan_network({"com.docker.network.bridge.name": "br-x"})
    conf = gen({"com.docker.network.bridge.name": "br-x"}, v6=V6)
    assert t.masquerade_for(plan, conf, V4, V6, False) == {
        "bridge": "br-x", "subnets": ["10.50.0.0/16", "fd50::/64"]}


def test_masquerade_for_is_only_for_generated_bridges():
    # A named conflist masquerades (or not) as its plugins say; ptp keeps the plugin's own.
    assert t.masquerade_for(t.plan_network({"cni.network": "n"}),
                            {"plugins": [{"type": "bridge", "bridge": "b"}]}, V4, [], False) == {}
    plan = t.plan_network({"cni.type": "ptp"})
    assert t.masquerade_for(plan, gen({"cni.type": "ptp"}), V4, [], False) == {}


@pytest.mark.parametrize("plugins, needed", [
    ([{"type": "bridge", "ipMasq": False}, {"type": "portmap"}, {"type": "firewall"}], False),
    ([{"type": "bridge"}, {"type": "firewall"}], False),
    ([{"type": "bridge", "ipMasq": True}, {"type": "firewall"}], True),  # finds its addresses
    ([{"type": "ptp", "ipMasq": True}], True),
    ([{"type": "ptp"}], False),
    ([{"type": "macvlan"}], True),  # unknown to pycni: assumed to need it
    ([{"type": "bridge"}, {"type": "tuning"}], True),
])
def test_del_needs_link(plugins, needed):
    assert t.del_needs_link({"plugins": plugins}) is needed


def test_generated_bridge_list_needs_no_link_at_del():
    assert t.del_needs_link(gen(v6=V6)) is False


@pytest.mark.parametrize("kind", ["macvlan", "ipvlan"])
def test_generate_macvlan_ipvlan(kind):
    conf = gen({"cni.type": kind, "parent": "eth1", "mode": "l2" if kind == "ipvlan" else
                "bridge", "com.docker.network.driver.mtu": "1450"})
    assert [p["type"] for p in conf["plugins"]] == [kind, "portmap"]
    main = conf["plugins"][0]
    assert main["master"] == "eth1" and main["mtu"] == 1450
    assert main["mode"] in ("l2", "bridge")
    assert "bridge" not in main and "ipMasq" not in main and "isGateway" not in main
    assert main["ipam"]["type"] == "host-local"


def test_generate_macvlan_without_mode():
    main = gen({"cni.type": "macvlan", "parent": "eth1"})["plugins"][0]
    assert "mode" not in main


def test_generate_ptp():
    conf = gen({"cni.type": "ptp"})
    assert [p["type"] for p in conf["plugins"]] == ["ptp", "portmap", "firewall"]
    assert conf["plugins"][0]["ipMasq"] is True
    conf = gen({"cni.type": "ptp"}, internal=True)
    assert [p["type"] for p in conf["plugins"]] == ["ptp", "firewall"]
    assert conf["plugins"][0]["ipMasq"] is False


# -- check_conflist_matches ---------------------------------------------------------


def hl_conf(*ranges, ipam_type="host-local", **ipam_extra):
    ipam = {"type": ipam_type, **ipam_extra}
    if ranges:
        ipam["ranges"] = [[r] for r in ranges]
    return {"cniVersion": "1.0.0", "name": "mynet",
            "plugins": [{"type": "bridge", "bridge": "cni0", "ipam": ipam},
                        {"type": "portmap", "capabilities": {"portMappings": True}}]}


def docker_v4(pool, gw=None):
    return [IPAMData(pool=net(pool), gateway=ip(gw) if gw else None)]


def test_check_matching_subnet_ok():
    conf = hl_conf({"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"})
    t.check_conflist_matches("mynet", conf, docker_v4("10.88.0.0/16", "10.88.0.1/16"), [])


def test_check_default_gateway_is_first_host():
    conf = hl_conf({"subnet": "10.88.0.0/16"})
    t.check_conflist_matches("mynet", conf, docker_v4("10.88.0.0/16", "10.88.0.1/16"), [])
    refused(t.check_conflist_matches, "mynet", conf, docker_v4("10.88.0.0/16", "10.88.0.5/16"),
            [], words=["--gateway 10.88.0.1"])


def test_check_different_subnet_suggests_subnet():
    conf = hl_conf({"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"})
    msg = refused(t.check_conflist_matches, "mynet", conf,
                  docker_v4("172.18.0.0/16", "172.18.0.1/16"), [],
                  words=["172.18.0.0/16", "mynet", "--subnet 10.88.0.0/16"])
    assert "does not match" in msg


def test_check_gateway_mismatch_suggests_gateway():
    conf = hl_conf({"subnet": "10.88.0.0/16", "gateway": "10.88.0.254"})
    refused(t.check_conflist_matches, "mynet", conf, docker_v4("10.88.0.0/16", "10.88.0.1/16"),
            [], words=["gateway 10.88.0.1", "--gateway 10.88.0.254"])


def test_check_gateway_compared_as_address():
    conf = hl_conf({"subnet": "fd88::/64", "gateway": "fd88:0:0::1"},
                   {"subnet": "10.88.0.0/16"})
    t.check_conflist_matches("mynet", conf, docker_v4("10.88.0.0/16", "10.88.0.1/16"),
                             [IPAMData(pool=net("fd88::/64"), gateway=ip("fd88::1/64"))])


def test_check_ipv6_too():
    conf = hl_conf({"subnet": "10.88.0.0/16"}, {"subnet": "fd88::/64"})
    v4 = docker_v4("10.88.0.0/16", "10.88.0.1/16")
    t.check_conflist_matches("mynet", conf, v4, [IPAMData(pool=net("fd88::/64"),
                                                          gateway=ip("fd88::1/64"))])
    refused(t.check_conflist_matches, "mynet", conf, v4,
            [IPAMData(pool=net("fd99::/64"), gateway=ip("fd99::1/64"))],
            words=["--subnet fd88::/64"])


def test_check_docker_ipv6_without_conflist_ipv6_refused():
    conf = hl_conf({"subnet": "10.88.0.0/16"})
    refused(t.check_conflist_matches, "mynet", conf, docker_v4("10.88.0.0/16", "10.88.0.1/16"),
            [IPAMData(pool=net("fd88::/64"), gateway=ip("fd88::1/64"))],
            words=["IPv6", "fd88::/64", "--ipv6"])


def test_check_legacy_subnet_field():
    conf = hl_conf(subnet="10.88.0.0/16")
    t.check_conflist_matches("mynet", conf, docker_v4("10.88.0.0/16", "10.88.0.1/16"), [])


@pytest.mark.parametrize("itype", ["dhcp", "whereabouts", None])
def test_check_other_ipam_refused_suggesting_pycni(itype):
    conf = hl_conf(ipam_type=itype)
    refused(t.check_conflist_matches, "mynet", conf, docker_v4("10.88.0.0/16"), [],
            words=["mynet", "--ipam-driver pycni", repr(itype)])


def test_check_static_ipam_ok():
    conf = hl_conf(ipam_type="static", addresses=[{"address": "10.1.0.5/24"}])
    t.check_conflist_matches("mynet", conf, docker_v4("10.88.0.0/16"), [])


def test_check_no_ipam_ok():
    conf = {"cniVersion": "1.0.0", "name": "mynet", "plugins": [{"type": "macvlan"}]}
    t.check_conflist_matches("mynet", conf, docker_v4("10.88.0.0/16"), [])
    t.check_conflist_matches("mynet", {"plugins": []}, docker_v4("10.88.0.0/16"), [])


@pytest.mark.parametrize("subnet", ["bogus", 5, ["10.0.0.0/8"]])
def test_check_invalid_conflist_subnet(subnet):
    conf = hl_conf({"subnet": subnet})
    refused(t.check_conflist_matches, "mynet", conf, docker_v4("10.88.0.0/16"), [],
            words=["mynet"])


def test_main_ipam():
    conf = hl_conf({"subnet": "10.88.0.0/16"})
    assert t.main_ipam(conf)["type"] == "host-local"
    assert t.main_ipam({"plugins": [{"type": "x"}, "junk", {"ipam": "str"}]}) is None
    assert t.main_ipam({}) is None


# -- endpoint CNI_ARGS and capability args ------------------------------------------


def test_cni_args_mac_only():
    assert t.endpoint_cni_args("02:42:0a:00:00:05") == [("MAC", "02:42:0a:00:00:05")]
    assert t.endpoint_cni_args("") == []


@pytest.mark.parametrize("ipam_type", ["host-local", "static"])
def test_capability_ips_for_host_local_and_static(ipam_type):
    # CIDRs, both families in one list (CNI_ARGS IP= cannot carry dual stack).
    assert t.endpoint_capability_args(ipam_type, ip("10.0.0.5/24"), None) == {
        "ips": ["10.0.0.5/24"]}
    assert t.endpoint_capability_args(ipam_type, ip("10.0.0.5/24"), ip("fd00::5/64")) == {
        "ips": ["10.0.0.5/24", "fd00::5/64"]}
    assert t.endpoint_capability_args(ipam_type, None, None) == {}


@pytest.mark.parametrize("ipam_type", ["dhcp", None, "whereabouts"])
def test_capability_ips_not_for_other_ipam(ipam_type):
    assert t.endpoint_capability_args(ipam_type, ip("10.0.0.5/24"), None) == {}


def test_with_ips_capability():
    conf = hl_conf({"subnet": "10.88.0.0/16"})
    conf["plugins"][0]["capabilities"] = {"mac": True}
    before = copy.deepcopy(conf)
    out = t.with_ips_capability(conf)
    assert conf == before  # the input is not touched
    assert out["plugins"][0]["capabilities"] == {"mac": True, "ips": True}
    assert out["plugins"][1] == conf["plugins"][1]
    gen_out = t.with_ips_capability(gen())
    assert gen_out["plugins"][0]["capabilities"] == {"ips": True}
    assert "ips" not in gen_out["plugins"][1]["capabilities"]
    plain = {"name": "n", "plugins": [{"type": "macvlan"}]}
    assert t.with_ips_capability(plain) == plain


# -- results -------------------------------------------------------------------------


def bridge_result(ips=None, routes=None):
    return {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "cni0", "mac": "aa:aa:aa:aa:aa:01"},
                       {"name": "veth1234", "mac": "aa:aa:aa:aa:aa:02"},
                       {"name": "eth0", "mac": "02:42:0a:32:00:05", "sandbox": "/run/netns/x"}],
        "ips": ips if ips is not None else [
            {"interface": 2, "address": "10.50.0.5/16", "gateway": "10.50.0.254"}],
        "routes": routes if routes is not None else [{"dst": "0.0.0.0/0"}],
    }


def test_container_ips():
    res = bridge_result(ips=[
        {"interface": 2, "address": "10.50.0.5/16", "gateway": "10.50.0.254"},
        {"interface": 0, "address": "10.50.0.254/16"},
        {"interface": 2, "address": "fd50::5/64", "gateway": "fd50::1"}])
    assert t.container_ips(res) == [ip("10.50.0.5/16"), ip("fd50::5/64")]


def test_container_ips_without_interfaces_or_index():
    assert t.container_ips({"ips": [{"address": "10.0.0.2/24"}]}) == [ip("10.0.0.2/24")]
    assert t.container_ips({}) == []
    # No sandbox interface named eth0: every address counts.
    res = {"interfaces": [{"name": "eth0"}], "ips": [{"interface": 0, "address": "10.0.0.2/8"}]}
    assert t.container_ips(res) == [ip("10.0.0.2/8")]


def test_join_gateway_from_ips_gateway():
    ans = t.join_answer(bridge_result(), "pyca1b2c3d4e5f6")
    assert ans == {"InterfaceName": {"SrcName": "pyca1b2c3d4e5f6", "DstPrefix": "eth"},
                   "Gateway": "10.50.0.254"}


def test_join_gateway_from_default_route():
    res = bridge_result(ips=[{"interface": 2, "address": "10.50.0.5/16"}],
                        routes=[{"dst": "0.0.0.0/0", "gw": "10.50.0.9"}])
    ans = t.join_answer(res, "tmp")
    assert ans["Gateway"] == "10.50.0.9" and "DisableGatewayService" not in ans


def test_join_route_gw_wins_over_ips_gateway():
    res = bridge_result(routes=[{"dst": "0.0.0.0/0", "gw": "10.50.0.7"}])
    assert t.join_answer(res, "tmp")["Gateway"] == "10.50.0.7"


def test_join_static_routes():
    res = bridge_result(routes=[
        {"dst": "0.0.0.0/0"},
        {"dst": "10.50.0.0/16"},  # connected: the kernel adds it with the address
        {"dst": "192.168.7.0/24", "gw": "10.50.0.1"},
        {"dst": "172.31.0.0/16"},
        {"dst": "fd77::/48", "gw": "fd50::1"},
    ])
    ans = t.join_answer(res, "tmp")
    assert ans["StaticRoutes"] == [
        {"Destination": "192.168.7.0/24", "RouteType": 0, "NextHop": "10.50.0.1"},
        {"Destination": "172.31.0.0/16", "RouteType": 1},
        {"Destination": "fd77::/48", "RouteType": 0, "NextHop": "fd50::1"},
    ]
    assert ans["Gateway"] == "10.50.0.254"


def test_join_route_dst_normalised():
    res = bridge_result(routes=[{"dst": "192.168.7.9/24", "gw": "10.50.0.1"}])
    assert t.join_answer(res, "tmp")["StaticRoutes"][0]["Destination"] == "192.168.7.0/24"


def test_join_no_default_route_disables_gateway_service():
    res = bridge_result(routes=[])
    ans = t.join_answer(res, "tmp")
    assert ans["DisableGatewayService"] is True
    assert "Gateway" not in ans and "StaticRoutes" not in ans
    res = bridge_result(ips=[{"interface": 2, "address": "10.50.0.5/16"}],
                        routes=[{"dst": "0.0.0.0/0"}])
    ans = t.join_answer(res, "tmp")  # default route but no gateway known
    assert "Gateway" not in ans and ans["DisableGatewayService"] is True
    res.pop("routes")
    assert t.join_answer(res, "tmp")["DisableGatewayService"] is True


def test_join_ipv6_gateway():
    res = bridge_result(ips=[
        {"interface": 2, "address": "10.50.0.5/16", "gateway": "10.50.0.254"},
        {"interface": 2, "address": "fd50::5/64", "gateway": "fd50::1"}],
        routes=[{"dst": "0.0.0.0/0"}, {"dst": "::/0"}])
    ans = t.join_answer(res, "tmp")
    assert ans["Gateway"] == "10.50.0.254" and ans["GatewayIPv6"] == "fd50::1"
    assert "DisableGatewayService" not in ans


def test_join_ipv6_only_default_route():
    res = bridge_result(ips=[
        {"interface": 2, "address": "10.50.0.5/16", "gateway": "10.50.0.254"},
        {"interface": 2, "address": "fd50::5/64", "gateway": "fd50::1"}],
        routes=[{"dst": "::/0"}])
    ans = t.join_answer(res, "tmp")
    assert ans["GatewayIPv6"] == "fd50::1" and "Gateway" not in ans
    assert ans["DisableGatewayService"] is True


def test_join_internal():
    res = bridge_result(routes=[{"dst": "0.0.0.0/0", "gw": "10.50.0.254"}, {"dst": "::/0"},
                                {"dst": "192.168.7.0/24", "gw": "10.50.0.1"}])
    ans = t.join_answer(res, "tmp", internal=True)
    assert "Gateway" not in ans and "GatewayIPv6" not in ans
    assert ans["DisableGatewayService"] is True
    assert ans["StaticRoutes"] == [
        {"Destination": "192.168.7.0/24", "RouteType": 0, "NextHop": "10.50.0.1"}]


# -- endpoint_answer / check_addresses ------------------------------------------------

RESULT_IPS = [ip("10.50.0.5/16"), ip("fd50::5/64")]


def test_endpoint_answer_never_overrides_docker():
    ans = t.endpoint_answer(ip("10.50.0.5/16"), ip("fd50::5/64"), True, RESULT_IPS,
                            "02:42:0a:32:00:05")
    assert ans == {"Interface": {}}
    ans = t.endpoint_answer(ip("10.50.0.5/16"), None, True, RESULT_IPS, "aa:bb:cc:dd:ee:ff")
    assert "Address" not in ans["Interface"] and "MacAddress" not in ans["Interface"]


def test_endpoint_answer_fills_what_docker_left_empty():
    ans = t.endpoint_answer(None, None, False, RESULT_IPS, "02:42:0a:32:00:05")
    assert ans == {"Interface": {"Address": "10.50.0.5/16", "AddressIPv6": "fd50::5/64",
                                 "MacAddress": "02:42:0a:32:00:05"}}


def test_endpoint_answer_mac_only():
    ans = t.endpoint_answer(ip("10.50.0.5/16"), None, False, RESULT_IPS[:1], "02:42:0a:32:00:05")
    assert ans == {"Interface": {"MacAddress": "02:42:0a:32:00:05"}}
    ans = t.endpoint_answer(ip("10.50.0.5/16"), None, False, RESULT_IPS[:1], "")
    assert ans == {"Interface": {}}


@pytest.mark.parametrize("address,address6", [
    (ip("10.50.0.5/16"), None), (None, ip("fd50::5/64")), (ip("10.50.0.5/16"), ip("fd50::5/64")),
    (None, None)])
def test_endpoint_answer_never_echoes_a_sent_address(address, address6):
    ans = t.endpoint_answer(address, address6, True, RESULT_IPS, "02:42:0a:32:00:05")["Interface"]
    if address is not None:
        assert "Address" not in ans
    if address6 is not None:
        assert "AddressIPv6" not in ans
    assert "MacAddress" not in ans


def test_check_addresses():
    t.check_addresses("n", ip("10.50.0.5/16"), None, RESULT_IPS)
    t.check_addresses("n", ip("10.50.0.5/16"), ip("fd50::5/64"), RESULT_IPS)
    t.check_addresses("n", None, None, [])
    refused(t.check_addresses, "n", ip("10.50.0.6/16"), None, RESULT_IPS,
            words=["10.50.0.6/16", "'n'", "--ipam-driver pycni"])
    refused(t.check_addresses, "n", ip("10.50.0.5/24"), None, RESULT_IPS, words=["10.50.0.5/24"])
    refused(t.check_addresses, "n", ip("10.50.0.5/16"), None, [], words=["no address"])


# -- static_conflist -----------------------------------------------------------------------


def test_static_conflist():
    conf = hl_conf({"subnet": "10.88.0.0/16", "gateway": "10.88.0.254"}, {"subnet": "fd88::/64"},
                   routes=[{"dst": "0.0.0.0/0"}], dataDir="/x")
    before = copy.deepcopy(conf)
    out = t.static_conflist(conf, [ip("10.88.0.5/16"), ip("fd88::5/64")])
    assert conf == before  # the stored list is not touched
    assert out["plugins"][0]["ipam"] == {
        "type": "static",
        "addresses": [{"address": "10.88.0.5/16", "gateway": "10.88.0.254"},
                      {"address": "fd88::5/64", "gateway": "fd88::1"}],
        "routes": [{"dst": "0.0.0.0/0"}]}
    assert out["plugins"][0]["bridge"] == "cni0"
    assert out["plugins"][1] == conf["plugins"][1]
    assert out["name"] == "mynet" and out["cniVersion"] == "1.0.0"


def test_static_conflist_generated_and_no_match():
    conf = gen(v6=V6)
    out = t.static_conflist(conf, [ip("10.50.0.9/16")])
    ipam = out["plugins"][0]["ipam"]
    assert ipam["addresses"] == [{"address": "10.50.0.9/16", "gateway": "10.50.0.254"}]
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    out = t.static_conflist(conf, [ip("192.168.1.9/24")])
    assert out["plugins"][0]["ipam"]["addresses"] == [{"address": "192.168.1.9/24"}]


def test_static_conflist_only_first_ipam_and_none():
    conf = {"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "macvlan"}, {"type": "a", "ipam": {"type": "dhcp"}},
        {"type": "b", "ipam": {"type": "dhcp"}}]}
    out = t.static_conflist(conf, [ip("10.0.0.2/24")])
    assert out["plugins"][0] == {"type": "macvlan"}
    assert out["plugins"][1]["ipam"] == {"type": "static",
                                         "addresses": [{"address": "10.0.0.2/24"}]}
    assert out["plugins"][2]["ipam"] == {"type": "dhcp"}
    out = t.static_conflist({"name": "n", "plugins": [{"type": "x"}]}, [ip("10.0.0.2/24")])
    assert out["plugins"] == [{"type": "x"}]


# -- settings that cannot survive the handoff -------------------------------------------

def test_lost_in_handoff_names_sysctls_sbr_and_vrf():
    raw = {"plugins": [{"type": "bridge"},
                       {"type": "tuning", "mac": "02:00:00:00:00:01",
                        "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}},
                       {"type": "sbr"}, {"type": "vrf", "vrfname": "blue"}]}
    lost = translate.lost_in_handoff(raw)
    assert lost == ["tuning sysctl net.ipv4.conf.eth0.arp_notify",
                    "sbr (source-based routing rules and tables)", "vrf blue membership"]


def test_tuning_without_sysctl_survives():
    assert translate.lost_in_handoff({"plugins": [{"type": "tuning", "mtu": 1400}]}) == []


def test_check_handoff_refuses_unless_allowed():
    raw = {"plugins": [{"type": "tuning", "sysctl": {"net.core.somaxconn": "500"}}]}
    with pytest.raises(UnsupportedOption, match="cni.allow-lost-settings=true"):
        translate.check_handoff("n", raw, False)
    translate.check_handoff("n", raw, True)


def test_allow_lost_settings_combines_with_cni_network():
    plan = translate.plan_network({"cni.network": "n", "cni.allow-lost-settings": "true"})
    assert plan.mode == "named" and plan.allow_loss
    with pytest.raises(UnsupportedOption, match="must be true or false"):
        translate.plan_network({"cni.network": "n", "cni.allow-lost-settings": "maybe"})


def test_container_mac_from_the_result():
    res = {"interfaces": [{"name": "pc-x", "mac": "AA:00:00:00:00:01"},
                          {"name": "eth0", "mac": "0A:58:0A:00:00:02", "sandbox": "/run/netns/x"}]}
    assert t.container_mac(res) == "0a:58:0a:00:00:02"
    assert t.container_mac({"interfaces": [{"name": "eth0", "sandbox": "/x"}]}) is None
    assert t.container_mac({"interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff"}]}) is None
    assert t.container_mac({}) is None
