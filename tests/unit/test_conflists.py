"""conflists.py: generated lists, the copies pycni runs, the checks at create."""

import copy
import ipaddress

import pytest

from cnm_bridge.network import conflists as c
from cnm_bridge import names
from cnm_bridge.network import options as o
from checks import refused
from cnm_bridge.docker.protocol import IPAMData

NID = "3f" * 32
ip = ipaddress.ip_interface
net = ipaddress.ip_network

V4 = [IPAMData(pool=net("10.50.0.0/16"), gateway=ip("10.50.0.254/16"),
               address_space="LocalDefault")]
V6 = [IPAMData(pool=net("fd50::/64"), gateway=ip("fd50::1/64"), address_space="LocalDefault")]


def plugins_by_type(conf):
    return {p["type"]: p for p in conf["plugins"]}


# -- generate_conflist -------------------------------------------------------------


def gen(options=None, v4=V4, v6=(), internal=False):
    return c.generate(names.cni_network_name(NID), names.bridge_name(NID),
                      o.plan_network(options or {}), list(v4), list(v6), internal)


def test_generate_bridge_default():
    conf = gen()
    assert conf["cniVersion"] == "1.0.0" and conf["name"] == "pycni-" + NID[:12]
    # No firewall plugin: forwarding and isolation are pycni's rules per network.
    assert [p["type"] for p in conf["plugins"]] == ["bridge", "portmap"]
    br, portmap = conf["plugins"]
    assert br["bridge"] == "pc-" + NID[:12] and len(br["bridge"]) <= 15
    # Masquerade is on, as one pycni rule per network rather than the plugin's per container.
    assert br["isGateway"] is True and br["ipMasq"] is False and br["hairpinMode"] is True
    assert "mtu" not in br
    # Docker's IPAM decides: static, given each endpoint's addresses when it runs.
    assert br["ipam"] == {"type": "static", "routes": [{"dst": "0.0.0.0/0"}]}
    assert portmap["capabilities"] == {"portMappings": True}


def test_generate_internal():
    conf = gen(internal=True, v6=V6)
    types = plugins_by_type(conf)
    assert "portmap" not in types
    br = types["bridge"]
    assert br["isGateway"] is False and br["ipMasq"] is False
    assert "routes" not in br["ipam"]
    assert "firewall" not in types


def test_generate_dual_stack():
    conf = gen(v6=V6)
    ipam = conf["plugins"][0]["ipam"]
    assert ipam == {"type": "static", "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}


def test_generate_no_gateway_no_route():
    conf = gen(v4=[IPAMData(pool=net("10.9.0.0/24"))])
    br = conf["plugins"][0]
    assert br["isGateway"] is False
    assert br["ipam"] == {"type": "static"}


def test_generate_mtu_and_masquerade_false():
    conf = gen({"com.docker.network.driver.mtu": "1400",
                "com.docker.network.bridge.enable_ip_masquerade": "false",
                "com.docker.network.bridge.name": "br-test"})
    br = conf["plugins"][0]
    assert br["mtu"] == 1400 and br["ipMasq"] is False and br["bridge"] == "br-test"
    assert br["isGateway"] is True


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
    assert c.del_needs_link({"plugins": plugins}) is needed


def test_generated_bridge_list_needs_no_link_at_del():
    assert c.del_needs_link(gen(v6=V6)) is False


@pytest.mark.parametrize("kind", ["macvlan", "ipvlan"])
def test_generate_macvlan_ipvlan(kind):
    conf = gen({"cni.type": kind, "parent": "eth1", "mode": "l2" if kind == "ipvlan" else
                "bridge", "com.docker.network.driver.mtu": "1450"})
    assert [p["type"] for p in conf["plugins"]] == [kind, "portmap"]
    main = conf["plugins"][0]
    assert main["master"] == "eth1" and main["mtu"] == 1450
    assert main["mode"] in ("l2", "bridge")
    assert "bridge" not in main and "ipMasq" not in main and "isGateway" not in main
    assert main["ipam"]["type"] == "static"


def test_generate_macvlan_without_mode():
    main = gen({"cni.type": "macvlan", "parent": "eth1"})["plugins"][0]
    assert "mode" not in main


def test_generate_ptp():
    conf = gen({"cni.type": "ptp"})
    assert [p["type"] for p in conf["plugins"]] == ["ptp", "portmap"]
    assert conf["plugins"][0]["ipMasq"] is False  # pycni's rule per network masquerades
    conf = gen({"cni.type": "ptp"}, internal=True)
    assert [p["type"] for p in conf["plugins"]] == ["ptp"]


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
    c.check_docker_ipam("mynet", conf, docker_v4("10.88.0.0/16", "10.88.0.1/16"), [])


def test_check_default_gateway_is_first_host():
    conf = hl_conf({"subnet": "10.88.0.0/16"})
    c.check_docker_ipam("mynet", conf, docker_v4("10.88.0.0/16", "10.88.0.1/16"), [])
    refused(c.check_docker_ipam, "mynet", conf, docker_v4("10.88.0.0/16", "10.88.0.5/16"),
            [], words=["--gateway 10.88.0.1"])


def test_check_different_subnet_suggests_subnet():
    conf = hl_conf({"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"})
    msg = refused(c.check_docker_ipam, "mynet", conf,
                  docker_v4("172.18.0.0/16", "172.18.0.1/16"), [],
                  words=["172.18.0.0/16", "mynet", "--subnet 10.88.0.0/16"])
    assert "does not match" in msg


def test_check_gateway_mismatch_suggests_gateway():
    conf = hl_conf({"subnet": "10.88.0.0/16", "gateway": "10.88.0.254"})
    refused(c.check_docker_ipam, "mynet", conf, docker_v4("10.88.0.0/16", "10.88.0.1/16"),
            [], words=["gateway 10.88.0.1", "--gateway 10.88.0.254"])


def test_check_gateway_compared_as_address():
    conf = hl_conf({"subnet": "fd88::/64", "gateway": "fd88:0:0::1"},
                   {"subnet": "10.88.0.0/16"})
    c.check_docker_ipam("mynet", conf, docker_v4("10.88.0.0/16", "10.88.0.1/16"),
                             [IPAMData(pool=net("fd88::/64"), gateway=ip("fd88::1/64"))])


def test_check_ipv6_too():
    conf = hl_conf({"subnet": "10.88.0.0/16"}, {"subnet": "fd88::/64"})
    v4 = docker_v4("10.88.0.0/16", "10.88.0.1/16")
    c.check_docker_ipam("mynet", conf, v4, [IPAMData(pool=net("fd88::/64"),
                                                          gateway=ip("fd88::1/64"))])
    refused(c.check_docker_ipam, "mynet", conf, v4,
            [IPAMData(pool=net("fd99::/64"), gateway=ip("fd99::1/64"))],
            words=["--subnet fd88::/64"])


def test_check_docker_ipv6_without_conflist_ipv6_refused():
    conf = hl_conf({"subnet": "10.88.0.0/16"})
    refused(c.check_docker_ipam, "mynet", conf, docker_v4("10.88.0.0/16", "10.88.0.1/16"),
            [IPAMData(pool=net("fd88::/64"), gateway=ip("fd88::1/64"))],
            words=["IPv6", "fd88::/64", "--ipv6"])


def test_check_legacy_subnet_field():
    conf = hl_conf(subnet="10.88.0.0/16")
    c.check_docker_ipam("mynet", conf, docker_v4("10.88.0.0/16", "10.88.0.1/16"), [])


@pytest.mark.parametrize("itype", ["dhcp", "whereabouts", None])
def test_check_other_ipam_refused_suggesting_pycni(itype):
    conf = hl_conf(ipam_type=itype)
    refused(c.check_docker_ipam, "mynet", conf, docker_v4("10.88.0.0/16"), [],
            words=["mynet", "--ipam-driver pycni", repr(itype)])


def test_check_static_ipam_ok():
    conf = hl_conf(ipam_type="static", addresses=[{"address": "10.1.0.5/24"}])
    c.check_docker_ipam("mynet", conf, docker_v4("10.88.0.0/16"), [])


def test_check_no_ipam_ok():
    conf = {"cniVersion": "1.0.0", "name": "mynet", "plugins": [{"type": "macvlan"}]}
    c.check_docker_ipam("mynet", conf, docker_v4("10.88.0.0/16"), [])
    c.check_docker_ipam("mynet", {"plugins": []}, docker_v4("10.88.0.0/16"), [])


@pytest.mark.parametrize("subnet", ["bogus", 5, ["10.0.0.0/8"]])
def test_check_invalid_conflist_subnet(subnet):
    conf = hl_conf({"subnet": subnet})
    refused(c.check_docker_ipam, "mynet", conf, docker_v4("10.88.0.0/16"), [],
            words=["mynet"])


def test_main_ipam():
    conf = hl_conf({"subnet": "10.88.0.0/16"})
    assert c.main_ipam(conf)["type"] == "host-local"
    assert c.main_ipam({"plugins": [{"type": "x"}, "junk", {"ipam": "str"}]}) is None
    assert c.main_ipam({}) is None


# -- static_conflist -----------------------------------------------------------------------


def test_static_conflist():
    conf = hl_conf({"subnet": "10.88.0.0/16", "gateway": "10.88.0.254"}, {"subnet": "fd88::/64"},
                   routes=[{"dst": "0.0.0.0/0"}], dataDir="/x")
    before = copy.deepcopy(conf)
    out = c.static_ipam(conf, [ip("10.88.0.5/16"), ip("fd88::5/64")])
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
    out = c.static_ipam(conf, [ip("10.50.0.9/16")], {"10.50.0.0/16": "10.50.0.254"})
    ipam = out["plugins"][0]["ipam"]
    assert ipam["addresses"] == [{"address": "10.50.0.9/16", "gateway": "10.50.0.254"}]
    assert ipam["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    out = c.static_ipam(conf, [ip("192.168.1.9/24")], {"10.50.0.0/16": "10.50.0.254"})
    assert out["plugins"][0]["ipam"]["addresses"] == [{"address": "192.168.1.9/24"}]


def test_static_conflist_only_first_ipam_and_none():
    conf = {"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "macvlan"}, {"type": "a", "ipam": {"type": "dhcp"}},
        {"type": "b", "ipam": {"type": "dhcp"}}]}
    out = c.static_ipam(conf, [ip("10.0.0.2/24")])
    assert out["plugins"][0] == {"type": "macvlan"}
    assert out["plugins"][1]["ipam"] == {"type": "static",
                                         "addresses": [{"address": "10.0.0.2/24"}]}
    assert out["plugins"][2]["ipam"] == {"type": "dhcp"}
    out = c.static_ipam({"name": "n", "plugins": [{"type": "x"}]}, [ip("10.0.0.2/24")])
    assert out["plugins"] == [{"type": "x"}]


# -- settings that cannot survive the handoff -------------------------------------------

def test_lost_in_handoff_names_sysctls_sbr_and_vrf():
    raw = {"plugins": [{"type": "bridge"},
                       {"type": "tuning", "mac": "02:00:00:00:00:01",
                        "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}},
                       {"type": "sbr"}, {"type": "vrf", "vrfname": "blue"}]}
    lost = c.lost_in_handoff(raw)
    assert lost == ["tuning sysctl net.ipv4.conf.eth0.arp_notify",
                    "sbr (source-based routing rules and tables)", "vrf blue membership"]


def test_tuning_without_sysctl_survives():
    assert c.lost_in_handoff({"plugins": [{"type": "tuning", "mtu": 1400}]}) == []


def test_handoff_refusal_names_what_is_lost_and_the_ways_out():
    msg = c.handoff_refusal("n", ["tuning sysctl net.core.somaxconn"])
    for words in ("'n'", "tuning sysctl net.core.somaxconn", "Docker 28",
                  "docker network connect", "cni.allow-lost-settings=true"):
        assert words in msg


def test_with_ips_capability():
    conf = hl_conf({"subnet": "10.88.0.0/16"})
    conf["plugins"][0]["capabilities"] = {"mac": True}
    before = copy.deepcopy(conf)
    out = c.with_ips_capability(conf)
    assert conf == before  # the input is not touched
    assert out["plugins"][0]["capabilities"] == {"mac": True, "ips": True}
    assert out["plugins"][1] == conf["plugins"][1]
    gen_out = c.with_ips_capability(gen())
    assert gen_out["plugins"][0]["capabilities"] == {"ips": True}
    assert "ips" not in gen_out["plugins"][1]["capabilities"]
    plain = {"name": "n", "plugins": [{"type": "macvlan"}]}
    assert c.with_ips_capability(plain) == plain




# -- MAC, ports list, bridge ---------------------------------------------------------------

@pytest.mark.parametrize("plugins, takes", [
    ([{"type": "bridge"}], True), ([{"type": "macvlan"}], True),
    ([{"type": "ptp"}, {"type": "tuning"}], True),
    ([{"type": "ptp"}], False), ([{"type": "ipvlan"}], False),
    ([{"type": "thirdparty", "capabilities": {"mac": True}}], True),
    ([{"type": "thirdparty", "capabilities": {"mac": "yes"}}], False),
])
def test_takes_mac(plugins, takes):
    assert c.takes_mac({"plugins": plugins}) is takes


def test_with_mac_setter_appends_tuning_only_where_needed():
    ptp = {"name": "n", "plugins": [{"type": "ptp"}, {"type": "portmap"}]}
    out = c.with_mac_setter(ptp)
    assert out["plugins"][-1] == {"type": "tuning", "capabilities": {"mac": True}}
    assert ptp["plugins"] == [{"type": "ptp"}, {"type": "portmap"}]  # not touched
    bridge = {"name": "n", "plugins": [{"type": "bridge"}]}
    assert c.with_mac_setter(bridge) is bridge
    ipvlan = {"name": "n", "plugins": [{"type": "ipvlan"}]}
    assert c.with_mac_setter(ipvlan) is ipvlan  # its MAC is its master's
    assert c.has_own_mac(ipvlan) is False and c.has_own_mac(ptp) is True


def test_ports_list_and_without_port_plugins():
    conf = gen()
    assert [p["type"] for p in c.without_port_plugins(conf)["plugins"]] == ["bridge"]
    plist = c.ports_list(conf, "x-ports")
    assert plist == {"cniVersion": "1.0.0", "name": "x-ports",
                     "plugins": [{"type": "portmap", "capabilities": {"portMappings": True},
                                  "snat": True}]}
    assert c.ports_list(gen(internal=True), "x") is None
    only = {"name": "n", "plugins": [{"type": "portmap", "capabilities": {"portMappings": True}}]}
    assert c.without_port_plugins(only)["plugins"] == only["plugins"]  # never empty


def test_bridge_of():
    assert c.bridge_of(gen()) == "pc-" + NID[:12]
    assert c.bridge_of({"plugins": [{"type": "bridge"}]}) == "cni0"  # the plugin's default
    assert c.bridge_of({"plugins": [{"type": "ptp"}]}) == ""
    assert c.main_plugin({"plugins": []}) == {}


def test_static_ipam_prefers_dockers_gateway():
    conf = hl_conf({"subnet": "10.88.0.0/16"})
    out = c.static_ipam(conf, [ip("10.88.0.5/16")], {"10.88.0.0/16": "10.88.0.254"})
    assert out["plugins"][0]["ipam"]["addresses"] == [
        {"address": "10.88.0.5/16", "gateway": "10.88.0.254"}]


# -- ranges narrower than Docker's pool ----------------------------------------------------

def test_ipam_ranges_and_defaults():
    ipam = {"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.100",
                         "rangeEnd": "10.1.0.199", "gateway": "10.1.0.1"}],
                       [{"subnet": "fd01::/64"}]], "subnet": "10.2.0.0/24"}
    assert c.ipam_ranges(ipam) == [
        (net("10.1.0.0/24"), "10.1.0.1", ipaddress.ip_address("10.1.0.100"),
         ipaddress.ip_address("10.1.0.199")),
        (net("fd01::/64"), None, ipaddress.ip_address("fd01::1"),
         ipaddress.ip_address("fd01::ffff:ffff:ffff:ffff")),
        (net("10.2.0.0/24"), None, ipaddress.ip_address("10.2.0.1"),
         ipaddress.ip_address("10.2.0.254"))]


def test_range_cidr():
    a = ipaddress.ip_address
    assert c.range_cidr(a("10.0.0.96"), a("10.0.0.127")) == net("10.0.0.96/27")
    assert c.range_cidr(a("10.0.0.100"), a("10.0.0.199")) is None


def test_docker_ipam_refuses_a_narrower_range_naming_both_fixes():
    conf = hl_conf({"subnet": "10.213.0.0/24", "rangeStart": "10.213.0.100",
                    "rangeEnd": "10.213.0.199"})
    msg = refused(c.check_docker_ipam, "mynet", conf, docker_v4("10.213.0.0/24"), [],
                  words=["10.213.0.100-10.213.0.199", "10.213.0.0/24",
                         "--ipam-driver pycni --ipam-opt cni.network=mynet"])
    assert "--ip-range" not in msg  # not a CIDR: that fix does not apply


def test_docker_ipam_range_that_is_a_cidr():
    conf = hl_conf({"subnet": "10.213.0.0/24", "rangeStart": "10.213.0.96",
                    "rangeEnd": "10.213.0.127"})
    refused(c.check_docker_ipam, "mynet", conf, docker_v4("10.213.0.0/24"), [],
            words=["--gateway 10.213.0.1 --ip-range 10.213.0.96/27",
                   "cni.ip-range=10.213.0.96/27",
                   "--ipam-driver pycni"])
    c.check_docker_ipam("mynet", conf, docker_v4("10.213.0.0/24"), [], "10.213.0.96/27")
    refused(c.check_docker_ipam, "mynet", conf, docker_v4("10.213.0.0/24"), [],
            "10.213.0.64/27")


def test_docker_ipam_whole_subnet_range_is_fine():
    conf = hl_conf({"subnet": "10.213.0.0/24", "rangeStart": "10.213.0.1",
                    "rangeEnd": "10.213.0.254"})
    c.check_docker_ipam("mynet", conf, docker_v4("10.213.0.0/24"), [])
