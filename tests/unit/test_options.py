"""options.py: Docker's network options -> NetworkPlan, refusing what pycni cannot honour."""

import pytest

from cnm_bridge.network import netspec
from cnm_bridge.network import options as o
from checks import refused
from cnm_bridge.errors import UnsupportedOption

NID = "ab" * 32


# -- plan_network ------------------------------------------------------------------------


def test_plan_defaults():
    plan = o.plan_network({})
    assert plan == o.NetworkPlan("generated", cni_type="bridge")


def test_plan_named_alone():
    plan = o.plan_network({"cni.network": "mynet"})
    assert plan.mode == "named" and plan.conflist_name == "mynet"


def test_plan_named_combined_refused_naming_them():
    msg = refused(o.plan_network, {"cni.network": "mynet", "cni.type": "ptp",
                                   "com.docker.network.driver.mtu": "1400"},
                  words=["cni.type", "com.docker.network.driver.mtu", "cni.network", "mynet"])
    assert "cannot be combined" in msg


@pytest.mark.parametrize("name", ["", "../etc", "a b", "-x", "net\n", "a/b", "x" * 129])
def test_plan_named_bad_names(name):
    refused(o.plan_network, {"cni.network": name})


def test_plan_unknown_option_named():
    refused(o.plan_network, {"foo": "bar"}, words=["foo", "bridge"])
    refused(o.plan_network, {"cni.type": "macvlan", "parent": "eth0",
                             "com.docker.network.bridge.name": "br0"},
            words=["com.docker.network.bridge.name", "macvlan"])


def test_plan_unknown_type():
    refused(o.plan_network, {"cni.type": "weave"}, words=["weave", "cni.type", "cni.network"])


@pytest.mark.parametrize("kind", ["macvlan", "ipvlan"])
def test_plan_parent_required(kind):
    refused(o.plan_network, {"cni.type": kind}, words=["parent", kind])
    plan = o.plan_network({"cni.type": kind, "parent": "eth0"})
    assert plan.cni_type == kind and plan.parent == "eth0" and plan.parent_mode == ""


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
    refused(o.plan_network, {**base, key: value}, words=[key])


@pytest.mark.parametrize("value", ["br0", "a", "abcdefghijklmno", "eth0.100", "br_x-1"])
def test_plan_interface_names_ok(value):
    plan = o.plan_network({"com.docker.network.bridge.name": value})
    assert plan.bridge_name == value


@pytest.mark.parametrize("mtu,ok", [("68", True), ("1500", True), ("9000", True),
                                    ("65535", True), ("67", False), ("65536", False),
                                    ("0", False), ("-1", False), ("abc", False), ("", False),
                                    ("1500.5", False)])
def test_plan_mtu_bounds(mtu, ok):
    opts = {"com.docker.network.driver.mtu": mtu}
    if ok:
        assert o.plan_network(opts).mtu == int(mtu)
    else:
        refused(o.plan_network, opts, words=["com.docker.network.driver.mtu", "68", "65535"])


@pytest.mark.parametrize("value", ["false", "False", "0", "no", "off"])
def test_plan_icc_false(value):
    assert o.plan_network({"com.docker.network.bridge.enable_icc": value}).icc is False


def test_plan_icc_default_and_named_lists_keep_icc():
    assert o.plan_network({}).icc is True
    raw = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge"}]}
    plan = o.plan_network({"cni.network": "n", "com.docker.network.bridge.host_binding_ipv4":
                           "127.0.0.1"})
    spec = netspec.make_spec(NID, plan, raw, [], [], False, False, "docker")
    assert spec.icc is True and spec.isolate is False and spec.forward is True


def test_plan_icc_true_and_masq_values():
    o.plan_network({"com.docker.network.bridge.enable_icc": "true"})
    o.plan_network({"com.docker.network.bridge.enable_ip_masquerade": "false"})
    refused(o.plan_network, {"com.docker.network.bridge.enable_ip_masquerade": "maybe"},
            words=["enable_ip_masquerade", "true or false"])
    refused(o.plan_network, {"com.docker.network.bridge.enable_icc": "sometimes"},
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
        assert o.plan_network(opts).parent_mode == mode
    else:
        refused(o.plan_network, opts, words=["mode", kind])


def test_plan_mode_not_a_bridge_option():
    refused(o.plan_network, {"mode": "l2"}, words=["mode"])


def test_plan_ptp_options():
    plan = o.plan_network({"cni.type": "ptp", "com.docker.network.driver.mtu": "1400",
                           "com.docker.network.bridge.enable_ip_masquerade": "false"})
    assert plan.cni_type == "ptp"


def test_plan_does_not_mutate_input():
    opts = {"cni.type": "ptp"}
    o.plan_network(opts)
    assert opts == {"cni.type": "ptp"}




def test_allow_lost_settings_combines_with_cni_network():
    plan = o.plan_network({"cni.network": "n", "cni.allow-lost-settings": "true"})
    assert plan.mode == "named" and plan.allow_loss
    with pytest.raises(UnsupportedOption, match="must be true or false"):
        o.plan_network({"cni.network": "n", "cni.allow-lost-settings": "maybe"})


@pytest.mark.parametrize("word", o.TRUE_WORDS + tuple(w.upper() for w in o.TRUE_WORDS))
def test_parse_bool_true_words(word):
    assert o.parse_bool("k", word) is True


@pytest.mark.parametrize("word", o.FALSE_WORDS + (" off ", False))
def test_parse_bool_false_words(word):
    assert o.parse_bool("k", word) is False


def test_parse_bool_names_the_option():
    refused(o.parse_bool, "my.key", "perhaps", words=["my.key", "'perhaps'"])


@pytest.mark.parametrize("opts", [{}, {"cni.network": "n"}, {"cni.type": "ptp"}])
def test_host_binding_ipv4_on_any_network(opts):
    plan = o.plan_network({**opts, "com.docker.network.bridge.host_binding_ipv4": "127.0.0.1"})
    assert plan.host_ip == "127.0.0.1"


@pytest.mark.parametrize("value", ["::1", "localhost", "10.0.0", ""])
def test_host_binding_ipv4_must_be_ipv4(value):
    if value == "":
        assert o.plan_network({"com.docker.network.bridge.host_binding_ipv4": ""}).host_ip == ""
        return
    refused(o.plan_network, {"com.docker.network.bridge.host_binding_ipv4": value},
            words=["host_binding_ipv4", "IPv4"])


def test_attach_option():
    assert o.plan_network({}).attach == "auto"
    assert o.plan_network({"cni.attach": "handoff"}).attach == "handoff"
    assert o.plan_network({"cni.network": "n", "cni.attach": "handoff"}).attach == "handoff"
    refused(o.plan_network, {"cni.attach": "sideways"}, words=["cni.attach", "auto, handoff"])


def test_ip_range_option_is_for_named_lists():
    plan = o.plan_network({"cni.network": "n", "cni.ip-range": "10.0.0.96/27"})
    assert plan.ip_range == "10.0.0.96/27"
    refused(o.plan_network, {"cni.ip-range": "10.0.0.96/27"}, words=["cni.ip-range"])
    refused(o.plan_network, {"cni.network": "n", "cni.ip-range": "10.0.0.97/27"},
            words=["cni.ip-range", "CIDR"])


def test_plan_masquerade_property():
    assert o.plan_network({}).masquerade is True
    assert o.plan_network(
        {"com.docker.network.bridge.enable_ip_masquerade": "off"}).masquerade is False


def test_plan_values_are_typed_at_parse_time():
    plan = o.plan_network({"com.docker.network.driver.mtu": "1400"})
    assert plan.mtu == 1400 and plan.masquerade is True and plan.icc is True


def test_scope_setting():
    from cnm_bridge.settings import from_sources, scope_setting
    assert from_sources(env={}).scope == "local"
    assert from_sources(env={"PYCNI_SCOPE": "Global"}).scope == "global"
    with pytest.raises(ValueError, match="PYCNI_SCOPE"):
        scope_setting("cluster")
