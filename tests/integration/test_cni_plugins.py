"""cni_runner against the real reference plugins, each test in fresh netns with private dirs."""

import concurrent.futures
import ipaddress
import os
import random
import secrets
import stat

import pytest

import support
from cni_runner import CNIRuntime, PluginError, RuntimeConf, conflist_from_dict


def sub():
    return f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"


@pytest.fixture
def env(needs_root, tmp_path, host):
    class Env:
        pass
    e = Env()
    e.tmp = tmp_path
    e.host = host
    e.ipam_dir = str(tmp_path / "ipam")
    e.bins = str(tmp_path / "bin")
    os.makedirs(e.bins)
    e.runtime = CNIRuntime([e.bins] + support.CNI_BIN_DIRS, str(tmp_path / "cache"), timeout=20)
    e.bridges = []
    yield e
    for br in e.bridges:
        support.run("ip", "link", "del", br, check=False)


def bridge_list(e, subnet, extra=(), ipmasq=True):
    br = "cnt" + secrets.token_hex(5)
    e.bridges.append(br)
    name = "it-" + secrets.token_hex(4)
    return conflist_from_dict({
        "cniVersion": "1.0.0", "name": name,
        "plugins": [{"type": "bridge", "bridge": br, "isGateway": True, "ipMasq": ipmasq,
                     "ipam": {"type": "host-local", "dataDir": e.ipam_dir,
                              "ranges": [[{"subnet": subnet}]],
                              "routes": [{"dst": "0.0.0.0/0"}]}}, *extra]})


def in_ns(ns, *cmd):
    return support.run("ip", "netns", "exec", ns, *cmd).stdout


def assert_clean(e, conf, subnet):
    prefix = subnet.rsplit(".", 1)[0] + "."
    assert support.files_under(os.path.join(e.tmp, "cache", "results")) == []
    assert support.ip_files(e.ipam_dir) == []
    assert support.iptables_mentioning(prefix, f'"{conf.name}"') == []


def test_bridge_hostlocal_portmap_firewall(env):
    subnet = sub()
    conf = bridge_list(env, subnet, [
        {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        {"type": "firewall"}])
    ns = env.host.add_netns()
    rt = RuntimeConf("ctr-" + secrets.token_hex(4), f"/run/netns/{ns}", "eth0",
                     capability_args={"portMappings": [
                         {"hostPort": random.randint(20000, 30000), "containerPort": 80,
                          "protocol": "tcp"}]})
    result = env.runtime.add(conf, rt)
    addr = result["ips"][0]["address"]
    assert addr.split("/")[0] in in_ns(ns, "ip", "-o", "addr", "show", "eth0")
    assert support.iptables_mentioning("CNI-DN-")  # portmap's per-container DNAT chain
    gw = result["ips"][0]["gateway"]
    in_ns(ns, *support.ping_cmd(gw))
    if support.cni_plugins_speak("1.1.0"):
        env.runtime.check(conf, rt)  # the plugins of 2024 on check an IPv4-only container
    else:
        # portmap 1.1.1's CHECK looks for an IPv6 DNAT chain even for an IPv4-only
        # container and fails; cni_runner must surface that as the plugin's error.
        with pytest.raises(PluginError) as err:
            env.runtime.check(conf, rt)
        assert err.value.plugin == "portmap"
    env.runtime.delete(conf, rt)
    env.runtime.delete(conf, rt)  # DEL twice succeeds
    assert "eth0" not in in_ns(ns, "ip", "-o", "link")
    assert_clean(env, conf, subnet)


def test_check_passes_without_portmap(env):
    subnet = sub()
    conf = bridge_list(env, subnet, [{"type": "firewall"}])
    ns = env.host.add_netns()
    rt = RuntimeConf("ctr-" + secrets.token_hex(4), f"/run/netns/{ns}", "eth0")
    env.runtime.add(conf, rt)
    assert env.runtime.check(conf, rt) is True
    env.runtime.delete(conf, rt)
    assert_clean(env, conf, subnet)


def test_ptp(env):
    subnet = sub()
    conf = conflist_from_dict({"cniVersion": "1.0.0", "name": "ptp-" + secrets.token_hex(4),
                               "plugins": [{"type": "ptp", "ipMasq": True,
                                            "ipam": {"type": "host-local",
                                                     "dataDir": env.ipam_dir,
                                                     "ranges": [[{"subnet": subnet}]],
                                                     "routes": [{"dst": "0.0.0.0/0"}]}}]})
    ns = env.host.add_netns()
    rt = RuntimeConf("ctr-" + secrets.token_hex(4), f"/run/netns/{ns}", "eth0")
    result = env.runtime.add(conf, rt)
    in_ns(ns, *support.ping_cmd(result["ips"][0]["gateway"]))
    env.runtime.check(conf, rt)
    env.runtime.delete(conf, rt)
    assert_clean(env, conf, subnet)


def test_macvlan_on_veth_parent(env):
    subnet = sub()
    parent = "pvp" + secrets.token_hex(4)
    support.run("ip", "link", "add", parent, "type", "veth", "peer", "name", parent + "p")
    env.host.links.append(parent)
    conf = conflist_from_dict({"cniVersion": "1.0.0", "name": "mv-" + secrets.token_hex(4),
                               "plugins": [{"type": "macvlan", "master": parent,
                                            "ipam": {"type": "host-local",
                                                     "dataDir": env.ipam_dir,
                                                     "ranges": [[{"subnet": subnet}]]}}]})
    ns = env.host.add_netns()
    rt = RuntimeConf("ctr-" + secrets.token_hex(4), f"/run/netns/{ns}", "eth0")
    env.runtime.add(conf, rt)
    assert "macvlan" in in_ns(ns, "ip", "-d", "link", "show", "eth0")
    env.runtime.check(conf, rt)
    env.runtime.delete(conf, rt)
    assert_clean(env, conf, subnet)


def test_static_tuning_bandwidth(env):
    subnet = sub()
    addr = subnet.rsplit(".", 1)[0] + ".9/24"
    br = "cnt" + secrets.token_hex(5)
    env.bridges.append(br)
    conf = conflist_from_dict({
        "cniVersion": "1.0.0", "name": "stb-" + secrets.token_hex(4),
        "plugins": [
            {"type": "bridge", "bridge": br, "isGateway": True,
             "ipam": {"type": "static", "addresses": [{"address": addr}]}},
            {"type": "tuning", "mac": "02:00:00:aa:bb:cc",
             "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}},
            {"type": "bandwidth", "capabilities": {"bandwidth": True}}]})
    ns = env.host.add_netns()
    rt = RuntimeConf("ctr-" + secrets.token_hex(4), f"/run/netns/{ns}", "eth0",
                     capability_args={"bandwidth": {"ingressRate": 8000000,
                                                    "ingressBurst": 800000,
                                                    "egressRate": 8000000,
                                                    "egressBurst": 800000}})
    try:
        result = env.runtime.add(conf, rt)
    except PluginError as e:
        if e.plugin == "bandwidth" and ("ifb" in str(e).lower() or "not supported" in str(e)):
            pytest.fail(f"kernel lacks what bandwidth needs: {e}")
        raise
    link = in_ns(ns, "ip", "-o", "link", "show", "eth0")
    assert "02:00:00:aa:bb:cc" in link
    assert in_ns(ns, "cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify").strip() == "1"
    assert addr in in_ns(ns, "ip", "-o", "addr", "show", "eth0")
    assert any(i["name"] == "eth0" for i in result["interfaces"])
    env.runtime.delete(conf, rt)
    assert not [n for n in support.links() if n.startswith("bwp")]  # bandwidth's ifb
    assert_clean(env, conf, subnet)


HANG = """#!/bin/sh
# A plugin that hangs on ADD (after the bridge already did its work).
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}';;
ADD) sleep 100;;
*) exit 0;;
esac
"""


def test_plugin_killed_mid_add_is_deleted(env):
    subnet = sub()
    path = os.path.join(env.bins, "hang")
    with open(path, "w") as f:
        f.write(HANG)
    os.chmod(path, stat.S_IRWXU)
    env.runtime.timeout = 2
    conf = bridge_list(env, subnet, [{"type": "hang"}])
    ns = env.host.add_netns()
    rt = RuntimeConf("ctr-" + secrets.token_hex(4), f"/run/netns/{ns}", "eth0")
    with pytest.raises(PluginError) as err:
        env.runtime.add(conf, rt)
    assert err.value.plugin == "hang" and "timed out" in str(err.value)
    # The bridge's ADD was undone: no link, no address, no masquerade, no cache.
    assert "eth0" not in in_ns(ns, "ip", "-o", "link")
    assert_clean(env, conf, subnet)


def test_twenty_concurrent_adds_on_one_bridge(env):
    subnet = sub()
    conf = bridge_list(env, subnet, [{"type": "firewall"}])
    ctrs = [(env.host.add_netns(), "ctr-" + secrets.token_hex(4)) for _ in range(20)]

    def add(item):
        ns, cid = item
        return env.runtime.add(conf, RuntimeConf(cid, f"/run/netns/{ns}", "eth0"))

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(add, ctrs))
    addrs = {r["ips"][0]["address"] for r in results}
    assert len(addrs) == 20
    assert all(ipaddress.ip_interface(a) in ipaddress.ip_network(subnet) or
               ipaddress.ip_interface(a).ip in ipaddress.ip_network(subnet) for a in addrs)

    def delete(item):
        ns, cid = item
        env.runtime.delete(conf, RuntimeConf(cid, f"/run/netns/{ns}", "eth0"))

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        list(pool.map(delete, ctrs))
    assert_clean(env, conf, subnet)
