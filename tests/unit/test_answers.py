"""answers.py: CNI results -> Docker's answers; what an endpoint hands CNI."""

import ipaddress

import pytest

from cnm_bridge.network import answers as a
from checks import refused

ip = ipaddress.ip_interface
RESULT_IPS = [ip("10.50.0.5/16"), ip("fd50::5/64")]


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
    assert a.container_ips(res) == [ip("10.50.0.5/16"), ip("fd50::5/64")]


def test_container_ips_without_interfaces_or_index():
    assert a.container_ips({"ips": [{"address": "10.0.0.2/24"}]}) == [ip("10.0.0.2/24")]
    assert a.container_ips({}) == []
    # No sandbox interface named eth0: every address counts.
    res = {"interfaces": [{"name": "eth0"}], "ips": [{"interface": 0, "address": "10.0.0.2/8"}]}
    assert a.container_ips(res) == [ip("10.0.0.2/8")]


def test_join_gateway_from_ips_gateway():
    ans = a.join_answer(bridge_result(), "pyca1b2c3d4e5f6")
    assert ans == {"InterfaceName": {"SrcName": "pyca1b2c3d4e5f6", "DstPrefix": "eth"},
                   "Gateway": "10.50.0.254"}


def test_join_gateway_from_default_route():
    res = bridge_result(ips=[{"interface": 2, "address": "10.50.0.5/16"}],
                        routes=[{"dst": "0.0.0.0/0", "gw": "10.50.0.9"}])
    ans = a.join_answer(res, "tmp")
    assert ans["Gateway"] == "10.50.0.9" and "DisableGatewayService" not in ans


def test_join_route_gw_wins_over_ips_gateway():
    res = bridge_result(routes=[{"dst": "0.0.0.0/0", "gw": "10.50.0.7"}])
    assert a.join_answer(res, "tmp")["Gateway"] == "10.50.0.7"


def test_join_static_routes():
    res = bridge_result(routes=[
        {"dst": "0.0.0.0/0"},
        {"dst": "10.50.0.0/16"},  # connected: the kernel adds it with the address
        {"dst": "192.168.7.0/24", "gw": "10.50.0.1"},
        {"dst": "172.31.0.0/16"},
        {"dst": "fd77::/48", "gw": "fd50::1"},
    ])
    ans = a.join_answer(res, "tmp")
    assert ans["StaticRoutes"] == [
        {"Destination": "192.168.7.0/24", "RouteType": 0, "NextHop": "10.50.0.1"},
        {"Destination": "172.31.0.0/16", "RouteType": 1},
        {"Destination": "fd77::/48", "RouteType": 0, "NextHop": "fd50::1"},
    ]
    assert ans["Gateway"] == "10.50.0.254"


def test_join_route_dst_normalised():
    res = bridge_result(routes=[{"dst": "192.168.7.9/24", "gw": "10.50.0.1"}])
    assert a.join_answer(res, "tmp")["StaticRoutes"][0]["Destination"] == "192.168.7.0/24"


def test_join_no_default_route_disables_gateway_service():
    res = bridge_result(routes=[])
    ans = a.join_answer(res, "tmp")
    assert ans["DisableGatewayService"] is True
    assert "Gateway" not in ans and "StaticRoutes" not in ans
    res = bridge_result(ips=[{"interface": 2, "address": "10.50.0.5/16"}],
                        routes=[{"dst": "0.0.0.0/0"}])
    ans = a.join_answer(res, "tmp")  # default route but no gateway known
    assert "Gateway" not in ans and ans["DisableGatewayService"] is True
    res.pop("routes")
    assert a.join_answer(res, "tmp")["DisableGatewayService"] is True


def test_join_ipv6_gateway():
    res = bridge_result(ips=[
        {"interface": 2, "address": "10.50.0.5/16", "gateway": "10.50.0.254"},
        {"interface": 2, "address": "fd50::5/64", "gateway": "fd50::1"}],
        routes=[{"dst": "0.0.0.0/0"}, {"dst": "::/0"}])
    ans = a.join_answer(res, "tmp")
    assert ans["Gateway"] == "10.50.0.254" and ans["GatewayIPv6"] == "fd50::1"
    assert "DisableGatewayService" not in ans


def test_join_ipv6_only_default_route():
    res = bridge_result(ips=[
        {"interface": 2, "address": "10.50.0.5/16", "gateway": "10.50.0.254"},
        {"interface": 2, "address": "fd50::5/64", "gateway": "fd50::1"}],
        routes=[{"dst": "::/0"}])
    ans = a.join_answer(res, "tmp")
    assert ans["GatewayIPv6"] == "fd50::1" and "Gateway" not in ans
    assert ans["DisableGatewayService"] is True


def test_join_internal():
    res = bridge_result(routes=[{"dst": "0.0.0.0/0", "gw": "10.50.0.254"}, {"dst": "::/0"},
                                {"dst": "192.168.7.0/24", "gw": "10.50.0.1"}])
    ans = a.join_answer(res, "tmp", internal=True)
    assert "Gateway" not in ans and "GatewayIPv6" not in ans
    assert ans["DisableGatewayService"] is True
    assert ans["StaticRoutes"] == [
        {"Destination": "192.168.7.0/24", "RouteType": 0, "NextHop": "10.50.0.1"}]


def test_check_addresses():
    a.check_addresses("n", [ip("10.50.0.5/16")], RESULT_IPS)
    a.check_addresses("n", [ip("10.50.0.5/16"), ip("fd50::5/64")], RESULT_IPS)
    a.check_addresses("n", [], [])
    refused(a.check_addresses, "n", [ip("10.50.0.6/16")], RESULT_IPS,
            words=["10.50.0.6/16", "'n'", "--ipam-driver pycni"])
    refused(a.check_addresses, "n", [ip("10.50.0.5/24")], RESULT_IPS, words=["10.50.0.5/24"])
    refused(a.check_addresses, "n", [ip("10.50.0.5/16")], [], words=["no address"])


def test_container_mac_from_the_result():
    res = {"interfaces": [{"name": "pc-x", "mac": "AA:00:00:00:00:01"},
                          {"name": "eth0", "mac": "0A:58:0A:00:00:02", "sandbox": "/run/netns/x"}]}
    assert a.container_mac(res, "eth0") == "0a:58:0a:00:00:02"
    assert a.container_mac({"interfaces": [{"name": "eth0", "sandbox": "/x"}]}, "eth0") is None
    assert a.container_mac({"interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff"}]}, "eth0") is None
    assert a.container_mac({}, "eth0") is None


# -- what CreateEndpoint answers, and what CNI is handed -----------------------------

def test_endpoint_answer_only_a_mac_docker_left_empty():
    assert a.endpoint_answer(False, "02:42:0a:32:00:05") == {
        "Interface": {"MacAddress": "02:42:0a:32:00:05"}}
    assert a.endpoint_answer(True, "02:42:0a:32:00:05") == {"Interface": {}}  # the user's
    assert a.endpoint_answer(False, "") == {"Interface": {}}


def test_mac_follows_the_ipv4_address_as_on_dockers_bridge():
    assert a.mac_for(ip("172.18.0.2/16"), None) == "02:42:ac:12:00:02"
    assert a.mac_for(ip("10.50.0.5/16"), ip("fd50::5/64")) == "02:42:0a:32:00:05"
    assert a.mac_for(None, None) == ""


def test_mac_without_ipv4_is_stable_and_differs_per_address():
    m1 = a.mac_for(None, ip("fd50::5/64"))
    assert m1 == a.mac_for(None, ip("fd50::5/64"))
    assert m1.startswith("02:42:") and len(m1) == 17
    assert m1 != a.mac_for(None, ip("fd50::1:0:0:5/64"))  # same low bytes, other address


def test_cni_args_mac_only():
    assert a.cni_args("02:42:0a:00:00:05") == [("MAC", "02:42:0a:00:00:05")]
    assert a.cni_args("") == []


@pytest.mark.parametrize("ipam_type", ["host-local", "static"])
def test_capability_ips_for_host_local_and_static(ipam_type):
    # CIDRs, both families in one list (CNI_ARGS IP= cannot carry dual stack).
    assert a.capability_args(ipam_type, ["10.0.0.5/24"], "") == {"ips": ["10.0.0.5/24"]}
    assert a.capability_args(ipam_type, ["10.0.0.5/24", "fd00::5/64"], "") == {
        "ips": ["10.0.0.5/24", "fd00::5/64"]}
    assert a.capability_args(ipam_type, [], "") == {}


@pytest.mark.parametrize("ipam_type", ["dhcp", None, "whereabouts"])
def test_capability_ips_not_for_other_ipam(ipam_type):
    assert a.capability_args(ipam_type, ["10.0.0.5/24"], "") == {}


def test_capability_mac():
    assert a.capability_args(None, [], "02:42:0a:00:00:05") == {"mac": "02:42:0a:00:00:05"}


# -- results of every version read alike ------------------------------------------------

RESULT_020 = {"cniVersion": "0.2.0",
              "ip4": {"ip": "10.22.0.5/16", "gateway": "10.22.0.1",
                      "routes": [{"dst": "0.0.0.0/0"}]}}


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_results_of_0x_versions_are_read_like_any(version):
    res = dict(RESULT_020, cniVersion=version)
    assert a.container_ips(res, "eth0") == [ip("10.22.0.5/16")]
    assert a.join_answer(res, "tmp") == {
        "InterfaceName": {"SrcName": "tmp", "DstPrefix": "eth"}, "Gateway": "10.22.0.1"}
    assert a.container_mac(res, "eth0") is None  # 0.x results carry no interfaces


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_results_with_ip_versions_are_read_like_any(version):
    res = {"cniVersion": version,
           "interfaces": [{"name": "eth0", "mac": "02:42:0a:16:00:05", "sandbox": "/x"}],
           "ips": [{"version": "4", "interface": 0, "address": "10.22.0.5/16",
                    "gateway": "10.22.0.1"}],
           "routes": [{"dst": "0.0.0.0/0"}]}
    assert a.container_ips(res, "eth0") == [ip("10.22.0.5/16")]
    assert a.join_answer(res, "tmp")["Gateway"] == "10.22.0.1"
    assert a.container_mac(res, "eth0") == "02:42:0a:16:00:05"


def test_join_in_the_containers_own_netns_names_no_interface():
    res = bridge_result(routes=[{"dst": "0.0.0.0/0"},
                                {"dst": "192.168.7.0/24", "gw": "10.50.0.1"}])
    # CNI has installed the routes there already; Docker sets only the default route.
    assert a.join_answer(res, None) == {"Gateway": "10.50.0.254"}


def test_join_ipv6_only_network_keeps_its_gateway_service():
    res = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
           "ips": [{"interface": 0, "address": "fd50::5/64", "gateway": "fd50::1"}],
           "routes": [{"dst": "::/0"}]}
    assert a.join_answer(res, None) == {"GatewayIPv6": "fd50::1", "DisableGatewayService": True}


# -- ptp: the container's subnet is reached through the host ----------------------------


def ptp_result(version="1.0.0"):
    """What /usr/lib/cni/ptp prints (plugins/main/ptp): the host veth, then the container's
    interface, every address on the container's (index 1) with IPAM's gateway, and IPAM's
    routes; the /24 via the gateway that ptp installs in the netns is not reported."""
    return {
        "cniVersion": version,
        "interfaces": [{"name": "veth5c3a1e2f", "mac": "6e:1d:a2:07:95:14"},
                       {"name": "eth0", "mac": "02:42:0a:33:00:05", "sandbox": "/run/netns/x"}],
        "ips": [{"interface": 1, "address": "10.51.0.5/24", "gateway": "10.51.0.1"},
                {"interface": 1, "address": "fd51::5/64", "gateway": "fd51::1"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
    }


def test_join_ptp_handoff_routes_the_subnet_via_the_gateway():
    ans = a.join_answer(ptp_result(), "pyc0123456789ab")
    assert ans["Gateway"] == "10.51.0.1" and ans["GatewayIPv6"] == "fd51::1"
    # Docker sets 10.51.0.5/24 on the interface, so the kernel routes 10.51.0.0/24 on the
    # link; its two halves via the gateway are more specific and do not collide with it.
    # The gateway stays on the link (Docker sets the default route only through a gateway
    # with a direct route).
    assert ans["StaticRoutes"] == [
        {"Destination": "10.51.0.1/32", "RouteType": 1},
        {"Destination": "10.51.0.0/25", "RouteType": 0, "NextHop": "10.51.0.1"},
        {"Destination": "10.51.0.128/25", "RouteType": 0, "NextHop": "10.51.0.1"},
        {"Destination": "fd51::1/128", "RouteType": 1},
        {"Destination": "fd51::/65", "RouteType": 0, "NextHop": "fd51::1"},
        {"Destination": "fd51::8000:0:0:0/65", "RouteType": 0, "NextHop": "fd51::1"},
    ]


def test_join_ptp_keeps_its_other_routes_and_holds_when_internal():
    res = ptp_result()
    res["routes"].append({"dst": "192.168.9.0/24", "gw": "10.51.0.1"})
    ans = a.join_answer(res, "tmp", internal=True)
    assert "Gateway" not in ans and ans["DisableGatewayService"] is True
    assert [r["Destination"] for r in ans["StaticRoutes"]] == [
        "192.168.9.0/24", "10.51.0.1/32", "10.51.0.0/25", "10.51.0.128/25",
        "fd51::1/128", "fd51::/65", "fd51::8000:0:0:0/65"]


def test_join_ptp_direct_answers_only_the_gateway():
    # In the container's own netns ptp's /24-via-gateway routes stay: nothing to add.
    ans = a.join_answer(ptp_result(), None)
    assert ans == {"Gateway": "10.51.0.1", "GatewayIPv6": "fd51::1"}


def test_join_ptp_with_bandwidth_and_old_versions():
    res = ptp_result("0.4.0")
    for ipc in res["ips"]:
        ipc["version"] = "6" if ":" in ipc["address"] else "4"
    res["interfaces"].append({"name": "bwp1234", "mac": "aa:00:00:00:00:09"})  # bandwidth's ifb
    routes = a.join_answer(res, "tmp")["StaticRoutes"]
    assert routes[:2] == [{"Destination": "10.51.0.1/32", "RouteType": 1},
                          {"Destination": "10.51.0.0/25", "RouteType": 0, "NextHop": "10.51.0.1"}]
    assert len(routes) == 6


def test_join_on_link_results_get_no_subnet_routes():
    # bridge (a bridge before the host veth), macvlan/ipvlan (the container's alone).
    assert "StaticRoutes" not in a.join_answer(bridge_result(), "tmp")
    macvlan = {"cniVersion": "1.0.0",
               "interfaces": [{"name": "eth0", "mac": "02:42:0a:33:00:05", "sandbox": "/x"}],
               "ips": [{"interface": 0, "address": "10.51.0.5/24", "gateway": "10.51.0.1"}],
               "routes": [{"dst": "0.0.0.0/0"}]}
    assert "StaticRoutes" not in a.join_answer(macvlan, "tmp")


def test_join_ptp_edge_cases():
    res = ptp_result()
    res["ips"] = [{"interface": 1, "address": "10.51.0.5/32", "gateway": "10.51.0.1"},
                  {"interface": 1, "address": "10.52.0.5/24"},  # no gateway: nothing to route via
                  {"interface": 0, "address": "10.53.0.1/24", "gateway": "10.53.0.1"}]  # host side
    assert "StaticRoutes" not in a.join_answer(res, "tmp")
    res["ips"] = [{"interface": 1, "address": "10.51.0.4/31", "gateway": "10.51.0.5"}]
    assert a.join_answer(res, "tmp")["StaticRoutes"] == [
        {"Destination": "10.51.0.5/32", "RouteType": 1},
        {"Destination": "10.51.0.4/32", "RouteType": 0, "NextHop": "10.51.0.5"}]


# -- CNI 1.1 result fields ------------------------------------------------------------------


def result_110():
    return {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "cni0", "mac": "aa:aa:aa:aa:aa:01", "mtu": 1450},
                       {"name": "veth1234", "mac": "aa:aa:aa:aa:aa:02", "mtu": 1450},
                       {"name": "eth0", "mac": "02:42:0a:32:00:05", "sandbox": "/run/netns/x",
                        "mtu": 1450, "socketPath": "/run/vhost-user.sock",
                        "pciID": "0000:00:1f.6"}],
        "ips": [{"interface": 2, "address": "10.50.0.5/24", "gateway": "10.50.0.1"}],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "10.50.0.1", "mtu": 1400, "advmss": 1360,
             "priority": 100, "scope": 0},
            {"dst": "0.0.0.0/0", "gw": "10.50.0.254", "priority": 200},  # a backup
            {"dst": "0.0.0.0/0", "gw": "10.50.0.9", "table": 100},  # sbr's table
            {"dst": "192.168.7.0/24", "gw": "10.50.0.1", "table": 254, "priority": 5},
            {"dst": "192.168.8.0/24", "gw": "10.50.0.7", "table": 100},
            {"dst": "172.31.0.0/16", "scope": 253, "mtu": 9000},
        ],
    }


def test_join_with_a_1_1_result():
    res = result_110()
    ans = a.join_answer(res, "tmp")
    # The main table's default route with the lowest priority; sbr's table left out.
    assert ans["Gateway"] == "10.50.0.1"
    assert ans["StaticRoutes"] == [
        {"Destination": "192.168.7.0/24", "RouteType": 0, "NextHop": "10.50.0.1"},
        {"Destination": "172.31.0.0/16", "RouteType": 1},
    ]
    assert a.container_ips(res) == [ip("10.50.0.5/24")]
    assert a.container_mac(res, "eth0") == "02:42:0a:32:00:05"
    assert res == result_110()  # read, not changed: the cache keeps every field


def test_join_1_1_priority_order_does_not_matter():
    res = result_110()
    res["routes"] = [{"dst": "0.0.0.0/0", "gw": "10.50.0.254", "priority": 200},
                     {"dst": "0.0.0.0/0", "gw": "10.50.0.1", "priority": 100}]
    assert a.join_answer(res, "tmp")["Gateway"] == "10.50.0.1"
    res["routes"] = [{"dst": "0.0.0.0/0", "gw": "10.50.0.9", "table": 100}]
    ans = a.join_answer(res, "tmp")
    assert "Gateway" not in ans and ans["DisableGatewayService"] is True
