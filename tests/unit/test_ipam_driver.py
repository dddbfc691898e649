"""ipam.py with a fake host-local (and static): pools, addresses, replays, a conflist's IPAM."""

import ipaddress

import pytest

from cnm_bridge.docker import protocol as p
from cnm_bridge.host import routes
from cnm_bridge.errors import DriverError, NotFound, UnsupportedOption


def pool(side, pool=None, sub=None, v6=False, **options):
    body = {"AddressSpace": "PycniLocal", "Pool": pool or "", "SubPool": sub or "",
            "Options": options, "V6": v6}
    return side.ipam.request_pool(p.parse_request_pool(body))


def address(side, pool_id, addr="", gateway=False):
    opts = {"RequestAddressType": "com.docker.network.gateway"} if gateway else {}
    return side.ipam.request_address(p.parse_request_address(
        {"PoolID": pool_id, "Address": addr, "Options": opts}))["Address"]


def release(side, pool_id, addr):
    side.ipam.release_address(p.parse_release_address({"PoolID": pool_id, "Address": addr}))


def test_capabilities_and_spaces(side):
    assert side.ipam.capabilities() == {"RequiresMACAddress": False,
                                        "RequiresRequestReplay": True}
    assert side.ipam.default_address_spaces() == {
        "LocalDefaultAddressSpace": "PycniLocal", "GlobalDefaultAddressSpace": "PycniGlobal"}


def test_own_pool_addresses_and_release(side):
    ans = pool(side, "10.60.0.0/24")
    pid = ans["PoolID"]
    assert ans["Pool"] == "10.60.0.0/24" and pid.startswith("pycni:")
    assert address(side, pid, gateway=True) == "10.60.0.1/24"
    first = address(side, pid)
    assert first == "10.60.0.2/24"  # host-local never hands out the gateway
    assert address(side, pid, "10.60.0.9") == "10.60.0.9/24"
    with pytest.raises(UnsupportedOption, match="10.60.0.9 is already in use"):
        address(side, pid, "10.60.0.9")
    [add] = side.cni.calls("ADD", "host-local")[-1:]
    assert add["stdin"]["ipam"]["dataDir"] == side.settings.ipam_dir
    release(side, pid, "10.60.0.9")
    assert address(side, pid, "10.60.0.9") == "10.60.0.9/24"
    side.ipam.release_pool(p.parse_release_pool({"PoolID": pid}))
    assert side.store.get_pool(pid) is None and side.runtime.cached_attachments() == []
    side.ipam.release_pool(p.parse_release_pool({"PoolID": pid}))  # repeatable
    release(side, pid, "10.60.0.9")


def test_ip_range_and_errors(side):
    pid = pool(side, "10.61.0.0/24", "10.61.0.64/26")["PoolID"]
    address(side, pid, gateway=True)
    assert address(side, pid) == "10.61.0.64/24"
    with pytest.raises(UnsupportedOption, match="not in subnet"):
        address(side, pid, "10.99.0.1")
    with pytest.raises(NotFound):
        address(side, "pycni:nope")
    with pytest.raises(UnsupportedOption, match="needs a subnet"):
        pool(side)
    with pytest.raises(UnsupportedOption, match="overlaps 10.61.0.0/24"):
        pool(side, "10.61.0.0/16")
    with pytest.raises(UnsupportedOption, match="color"):
        pool(side, "10.62.0.0/24", color="blue")


def test_replay_after_get_capabilities_only_once(side):
    pid = pool(side, "10.63.0.0/24")["PoolID"]
    addr = address(side, pid).split("/")[0]
    side.ipam.capabilities()  # Docker restarted with live-restore: replays follow
    assert address(side, pid, addr) == f"{addr}/24"
    with pytest.raises(UnsupportedOption, match="already in use"):
        address(side, pid, addr)


def test_two_networks_with_one_subnet_are_two_pools(side):
    """Docker allows it under a remote IPAM: removing one network must leave the other's
    addresses (and host-local's record of them) alone."""
    a, b = pool(side, "10.65.0.0/24")["PoolID"], pool(side, "10.65.0.0/24")["PoolID"]
    assert a != b
    for pid in (a, b):
        address(side, pid, gateway=True)
    first_a, first_b = address(side, a), address(side, b)
    assert first_a == first_b == "10.65.0.2/24"  # each its own host-local network
    names_used = {c["stdin"]["name"] for c in side.cni.calls("ADD", "host-local")}
    assert len(names_used) == 2
    side.ipam.release_pool(p.parse_release_pool({"PoolID": a}))
    assert side.store.get_pool(a) is None
    assert side.store.addresses(b) == {"10.65.0.1": "gateway",
                                       "10.65.0.2": side.store.get_address(b, "10.65.0.2")}
    assert len(side.runtime.cached_attachments()) == 1
    assert [c["stdin"]["name"] for c in side.cni.calls("DEL", "host-local")] == \
        [side.cni.calls("ADD", "host-local")[0]["stdin"]["name"]]
    with pytest.raises(UnsupportedOption, match="10.65.0.2 is already in use"):
        address(side, b, "10.65.0.2")


def test_a_replayed_pool_request_gets_its_pool_back(side):
    """Docker replays RequestPool for its networks after GetCapabilities when it starts:
    the pool it had, once; a later request is another network's."""
    a, b = pool(side, "10.66.0.0/24")["PoolID"], pool(side, "10.66.0.0/24")["PoolID"]
    side.ipam.capabilities()
    assert {pool(side, "10.66.0.0/24")["PoolID"] for _ in (a, b)} == {a, b}
    assert pool(side, "10.66.0.0/24")["PoolID"] not in (a, b)


def test_a_pool_of_an_older_store_keeps_its_host_local_name(side):
    from cnm_bridge import names
    old = "pycni:" + "ab" * 12
    assert names.ipam_network_name(old) == "pycni-ipam-" + "ab" * 8
    assert names.ipam_network_name(old + "-1") == "pycni-ipam-" + "ab" * 8 + "-1"


def test_an_address_row_without_a_cni_attachment_is_free(side):
    """The row outlived the allocation (its DEL ran, the row's removal did not): the
    address is free, not "already in use" for good."""
    from cni_runner import RuntimeConf, conflist_from_bytes
    pid = pool(side, "10.67.0.0/24")["PoolID"]
    address(side, pid, gateway=True)
    taken = address(side, pid, "10.67.0.7")
    [entry] = side.ipam.runtime.cached_attachments()
    side.ipam.runtime.delete(conflist_from_bytes(entry.config), RuntimeConf.from_cache(entry))
    assert side.store.get_address(pid, "10.67.0.7")  # the row is still there
    assert address(side, pid, "10.67.0.7") == taken
    assert len(side.ipam.runtime.cached_attachments()) == 1
    with pytest.raises(UnsupportedOption, match="already in use"):
        address(side, pid, "10.67.0.7")  # held again, for real


def test_no_address_from_the_plugin(side):
    pid = pool(side, "10.64.0.0/24")["PoolID"]
    side.cni.behave("host-local", ADD={"result": {"cniVersion": "1.0.0", "ips": []}})
    with pytest.raises(DriverError, match="returned no address"):
        address(side, pid)


def write_named(side, name, ipam, version="1.0.0"):
    side.cni.write_conf(f"10-{name}.conflist", {"cniVersion": version, "name": name,
                                                "plugins": [{"type": "bridge", "ipam": ipam}]})


def test_named_pool_uses_the_conflists_ipam_exactly(side):
    write_named(side, "lan", {"type": "host-local", "dataDir": "/srv/cni-lan",
                              "ranges": [[{"subnet": "10.213.0.0/24", "rangeStart": "10.213.0.100",
                                           "rangeEnd": "10.213.0.199"}],
                                         [{"subnet": "fd13::/64"}]],
                              "routes": [{"dst": "0.0.0.0/0"}]})
    ans = pool(side, **{"cni.network": "lan"})
    assert ans["Pool"] == "10.213.0.0/24"
    pid = ans["PoolID"]
    assert address(side, pid, gateway=True) == "10.213.0.1/24"
    assert address(side, pid) == "10.213.0.100/24"
    [add] = side.cni.calls("ADD", "host-local")
    # Under the conflist's own name, with its dataDir and range: other CNI users of
    # `lan` see the same allocations.
    assert add["stdin"]["name"] == "lan"
    assert add["stdin"]["ipam"] == {"type": "host-local", "dataDir": "/srv/cni-lan",
                                    "routes": [{"dst": "0.0.0.0/0"}],
                                    "ranges": [[{"subnet": "10.213.0.0/24",
                                                 "rangeStart": "10.213.0.100",
                                                 "rangeEnd": "10.213.0.199"}]]}
    six = pool(side, v6=True, **{"cni.network": "lan"})
    assert six["Pool"] == "fd13::/64"
    assert address(side, six["PoolID"]) == "fd13::2/64"


def test_named_pool_refusals(side):
    write_named(side, "lan", {"type": "host-local", "ranges": [[{"subnet": "10.214.0.0/24",
                                                                 "gateway": "10.214.0.254"}]]})
    with pytest.raises(UnsupportedOption, match="--subnet 10.214.0.0/24"):
        pool(side, "10.215.0.0/24", **{"cni.network": "lan"})
    with pytest.raises(UnsupportedOption, match="--ip-range cannot be combined"):
        pool(side, "10.214.0.0/24", "10.214.0.0/25", **{"cni.network": "lan"})
    with pytest.raises(UnsupportedOption, match="no IPv6 subnet"):
        pool(side, v6=True, **{"cni.network": "lan"})
    pid = pool(side, **{"cni.network": "lan"})["PoolID"]
    with pytest.raises(UnsupportedOption, match="--gateway 10.214.0.254"):
        address(side, pid, "10.214.0.1", gateway=True)
    assert address(side, pid, gateway=True) == "10.214.0.254/24"
    write_named(side, "dh", {"type": "dhcp"})
    with pytest.raises(UnsupportedOption, match="'dhcp'"):
        pool(side, **{"cni.network": "dh"})
    side.cni.write_conf("10-noipam.conflist", {"cniVersion": "1.0.0", "name": "noipam",
                                               "plugins": [{"type": "bridge"}]})
    with pytest.raises(UnsupportedOption, match="no IPAM section"):
        pool(side, **{"cni.network": "noipam"})
    with pytest.raises(DriverError, match="no CNI network named"):
        pool(side, **{"cni.network": "absent"})


def test_static_pool_needs_the_address(side):
    write_named(side, "st", {"type": "static", "addresses": [{"address": "10.216.0.5/24"}]})
    pid = pool(side, **{"cni.network": "st"})["PoolID"]
    address(side, pid, gateway=True)
    with pytest.raises(UnsupportedOption, match="run the container with --ip"):
        address(side, pid)
    assert address(side, pid, "10.216.0.9") == "10.216.0.9/24"
    [add] = side.cni.calls("ADD", "static")
    assert add["stdin"]["ipam"]["addresses"] == [{"address": "10.216.0.9/24",
                                                  "gateway": "10.216.0.1"}]
    release(side, pid, "10.216.0.9")
    assert side.cni.calls("DEL", "static")


def docker_requests_pool(side, **options):
    """What dockerd does without --subnet (requestPoolHelper, ipams/remote): ask, and while
    the answer overlaps an on-link route keep it and ask again; release what it kept once
    a request succeeds or fails. At most 5 rounds here: pycni must end it in 2."""
    kept, answers = [], []
    try:
        for _ in range(5):
            ans = pool(side, **options)
            answers.append(ans["PoolID"])
            net = ipaddress.ip_network(ans["Pool"])
            if routes.overlapping(net, side.host.onlink_routes()) is None:
                return ans, answers
            kept.append(ans["PoolID"])
        raise AssertionError(f"dockerd would loop: {answers}")
    finally:
        for pid in kept:
            side.ipam.release_pool(p.parse_release_pool({"PoolID": pid}))


def test_a_routed_named_subnet_is_refused_at_the_first_request(side):
    # podman's cni-podman0 is up with the list's subnet: Docker would ask again forever.
    write_named(side, "podman", {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]]})
    side.host.routes = [routes.Route(ipaddress.ip_network("10.88.0.0/16"), "cni-podman0")]
    with pytest.raises(UnsupportedOption, match=r"on cni-podman0.*--subnet 10\.88\.0\.0/16"):
        docker_requests_pool(side, **{"cni.network": "podman"})
    assert side.store.pools() == []
    assert side.cni.calls("ADD") == []
    # With --subnet Docker skips its check: the pool is the list's.
    assert pool(side, "10.88.0.0/16", **{"cni.network": "podman"})["Pool"] == "10.88.0.0/16"
    # A route that does not overlap (or of the other family) changes nothing.
    side.host.routes = [routes.Route(ipaddress.ip_network("10.89.0.0/16"), "eth1")]
    write_named(side, "other", {"type": "host-local", "ranges": [[{"subnet": "10.90.0.0/24"}],
                                                                 [{"subnet": "fd90::/64"}]]})
    assert docker_requests_pool(side, **{"cni.network": "other"})[0]["Pool"] == "10.90.0.0/24"
    six = docker_requests_pool(side, v6=True, **{"cni.network": "other"})[0]
    assert six["Pool"] == "fd90::/64"


def test_a_named_pool_is_never_answered_twice_without_subnet(side):
    # The overlap Docker finds and pycni does not see (a gateway route on Docker 20.10, a
    # nameserver): the second request of the same create must end the loop, with the fix.
    write_named(side, "lan", {"type": "host-local", "ranges": [[{"subnet": "10.217.0.0/24"}]]})
    first = pool(side, **{"cni.network": "lan"})  # Docker found an overlap pycni cannot see
    with pytest.raises(UnsupportedOption,
                       match=r"already held by pycni.*--subnet 10\.217\.0\.0/24"):
        pool(side, **{"cni.network": "lan"})
    # Docker then releases the pool it kept: nothing is left.
    side.ipam.release_pool(p.parse_release_pool({"PoolID": first["PoolID"]}))
    assert side.store.pools() == []
    # With --subnet Docker checks nothing: a second Docker network on the same list gets
    # a pool of its own on the list's subnet.
    a = pool(side, "10.217.0.0/24", **{"cni.network": "lan"})
    b = pool(side, "10.217.0.0/24", **{"cni.network": "lan"})
    assert a["Pool"] == b["Pool"] == "10.217.0.0/24" and a["PoolID"] != b["PoolID"]


def test_a_global_space_pool_is_not_checked(side):
    # Docker skips its overlap check in the global address space (swarm scope): no loop.
    write_named(side, "lan", {"type": "host-local", "ranges": [[{"subnet": "10.218.0.0/24"}]]})
    side.host.routes = [routes.Route(ipaddress.ip_network("10.218.0.0/24"), "br0")]
    body = {"AddressSpace": "PycniGlobal", "Pool": "", "SubPool": "",
            "Options": {"cni.network": "lan"}, "V6": False}
    ans = side.ipam.request_pool(p.parse_request_pool(body))
    assert ans["Pool"] == "10.218.0.0/24"


def test_an_own_pool_without_subnet_is_refused_every_time(side):
    # host-local run alone has no subnet of its own to offer: never a pool without --subnet,
    # so never the same one twice.
    for _ in range(2):
        with pytest.raises(UnsupportedOption, match="needs a subnet: pass --subnet"):
            docker_requests_pool(side)
    assert side.store.pools() == []


def test_pools_requested_at_once_are_still_two(side, monkeypatch):
    import threading
    real, barrier = side.store.pools, threading.Barrier(2, timeout=2)

    def pools():
        out = real()
        try:
            barrier.wait()  # both requests have read the pools before either records
        except threading.BrokenBarrierError:
            pass
        return out
    monkeypatch.setattr(side.store, "pools", pools)
    got = []
    threads = [threading.Thread(target=lambda: got.append(pool(side, "10.68.0.0/24")["PoolID"]))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 2 and len(real()) == 2
