"""reconcile.py: what a crash or a reboot left, and what dockerd forgot, with a fake host."""

import os
import time

from cni_runner import RuntimeConf, conflist_from_dict
from cnm_bridge.docker import protocol as p
from dockercalls import V11, create_endpoint, create_network, join, named_network, ref, run


def test_local_reinstalls_the_host_rules(side):
    req = create_network()
    side.driver.create_network(req)
    side.host.rules.clear()
    report = side.graph.reconciler.local()
    assert side.host.rules and report["host_rules"] == 1


def test_local_tears_down_half_made_endpoints(side):
    req = create_network()
    side.driver.create_network(req)
    eid, _, _ = run(side.driver, req.network_id)
    ep = side.store.get_endpoint(eid)
    ep.state = "creating"  # a crash mid-ADD
    side.store.update_endpoint(ep)
    assert side.graph.reconciler.local(min_age=3600)["half_made"] == 0  # too young
    report = side.graph.reconciler.local()
    assert report["half_made"] == 1 and side.store.get_endpoint(eid) is None
    assert side.runtime.cached_attachments() == []


def test_local_releases_what_an_earlier_boot_made(side, monkeypatch):
    req = create_network()
    side.driver.create_network(req)
    eid, _, _ = run(side.driver, req.network_id)
    waiting = create_endpoint(req.network_id, "10.50.0.6/24")
    side.driver.create_endpoint(waiting)  # CreateEndpoint done, Join not yet: kept
    assert side.graph.reconciler.local()["lost"] == 0
    monkeypatch.setenv("PYCNI_BOOT_ID", "another-boot")
    report = side.graph.reconciler.local()
    assert report["lost"] == 2 and side.store.endpoints() == []
    assert side.cni.calls("DEL", "bridge")


def test_local_dels_orphan_attachments(side):
    req = create_network()
    side.driver.create_network(req)
    eid, _, _ = run(side.driver, req.network_id)
    side.store.delete_endpoint(eid)  # a crash after ADD, before the record
    ipam = conflist_from_dict({"cniVersion": "1.0.0", "name": "pycni-ipam-x",
                               "plugins": [{"type": "host-local", "ipam": {
                                   "type": "host-local", "ranges": [[{"subnet": "10.9.0.0/24"}]]}}]})
    side.runtime.add(ipam, RuntimeConf("pycni-ipam-orphan", "/dev/null", "eth0"))
    assert side.graph.reconciler.local(min_age=3600)["orphan_attachments"] == 0
    report = side.graph.reconciler.local()
    assert report["orphan_attachments"] == 2
    assert side.runtime.cached_attachments() == []


class FakeDocker:
    def __init__(self, networks, daemon_id="daemon-1"):
        self.networks = networks  # id -> {"Containers": {...}}
        self.daemon_id = daemon_id

    def network(self, network_id):
        return self.networks.get(network_id)

    def info(self):
        return {"ID": self.daemon_id}


def test_with_docker_tears_down_what_dockerd_forgot(side):
    a, b = create_network(), create_network(subnet="10.51.0.0/24", gateway="10.51.0.1")
    side.driver.create_network(a)
    side.driver.create_network(b)
    live, _, _ = run(side.driver, a.network_id)
    gone, _, _ = run(side.driver, a.network_id, address="10.50.0.6/24")
    docker = FakeDocker({a.network_id: {"Containers": {"c1": {"EndpointID": live}}}})
    first = side.graph.reconciler.with_docker(docker)
    assert first["networks"] == first["endpoints"] == 0  # all under 60 s: kept
    report = side.graph.reconciler.with_docker(docker, min_age=0)
    assert report["networks"] == report["endpoints"] == 0  # seen gone once: not yet
    assert report["unconfirmed"] == 2
    report = side.graph.reconciler.with_docker(docker, min_age=0)
    assert (report["networks"], report["endpoints"], report["errors"]) == (1, 1, 0)
    assert side.store.get_network(b.network_id) is None
    assert side.store.get_endpoint(gone) is None and side.store.get_endpoint(live)


def test_errors_are_counted_not_raised(side):
    req = create_network()
    side.driver.create_network(req)
    eid, _, _ = run(side.driver, req.network_id)
    side.cni.behave("bridge", DEL={"error": {"code": 999, "msg": "stuck"}})
    for _ in range(2):
        report = side.graph.reconciler.with_docker(FakeDocker({req.network_id: {}}), min_age=0)
    assert report["errors"] == 1 and side.store.get_endpoint(eid).state == "deleting"


def test_background_runs_gc_as_a_child(tmp_path):
    import sys
    from cnm_bridge.network import reconcile
    from cnm_bridge.settings import Settings
    marker = tmp_path / "ran"
    argv = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x'); print('gc done')"]
    reconcile.background(3600, argv, first_delay=0)
    deadline = time.monotonic() + 20
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    s = Settings(conf_dir="/c", state_dir="/s", bin_dirs=["/b1", "/b2"])
    cmd = reconcile.gc_argv(s, min_age=30)
    assert cmd[1:4] == ["-m", "cnm_bridge.cli", "gc"] and "/b1:/b2" in cmd and "30" in cmd


def test_ready_endpoint_join_and_ref_helpers_stay_consistent(side):
    # join() of a deleted endpoint is refused: Docker never joins after DeleteEndpoint.
    req = create_network()
    side.driver.create_network(req)
    ce = create_endpoint(req.network_id)
    side.driver.create_endpoint(ce)
    side.driver.delete_endpoint(ref(req.network_id, ce.endpoint_id))
    import pytest
    from cnm_bridge.errors import NotFound
    with pytest.raises(NotFound):
        side.driver.join(join(req.network_id, ce.endpoint_id))
    assert os.path.isdir(side.settings.state_dir) and p.NetworkRef


def test_collect_is_libcnis_gc_of_every_list(side):
    for plugin in ("bridge", "portmap"):
        side.cni.behave(plugin, versions=V11)
    req = named_network(side)
    live, _, _ = run(side.driver, req.network_id)
    lost, _, _ = run(side.driver, req.network_id, address="10.50.0.6/24")
    side.store.delete_endpoint(lost)  # a crash after ADD, before the record
    # An IPAM handle of pycni's IPAM driver on the same list (--ipam-opt cni.network).
    pool = side.ipam.request_pool(p.parse_request_pool({
        "AddressSpace": "PycniLocal", "Pool": "10.50.0.0/24",
        "Options": {"cni.network": "lan11"}}))
    side.ipam.request_address(p.parse_request_address({"PoolID": pool["PoolID"],
                                                       "Address": ""}))
    [handle] = side.store.handles()
    side.cni.clear_calls()

    young = side.graph.reconciler.collect(min_age=3600)
    assert young == {"gc_lists": 2, "gc_deleted": 0, "errors": 0}
    [gc] = side.cni.calls("GC", "bridge")
    assert gc["stdin"]["name"] == "lan11" and gc["stdin"]["cniVersion"] == "1.1.0"
    # Too young to judge (an ADD may be in flight): still held.
    held = gc["stdin"]["cni.dev/valid-attachments"]
    assert {(a["containerID"], a["ifname"]) for a in held} == {
        (live, "eth0"), (lost, "eth0"), (handle, "eth0")}

    side.cni.clear_calls()
    report = side.graph.reconciler.collect(min_age=0)
    assert report == {"gc_lists": 2, "gc_deleted": 1, "errors": 0}
    # The lost attachment is DELeted first, then every plugin of each list pycni runs
    # (the endpoint's, the ports') gets GC with what pycni still holds on it: the live
    # endpoint and the IPAM handle.
    assert side.cni.verbs() == [("DEL", "bridge"), ("GC", "bridge"), ("GC", "portmap")]
    assert {r["env"]["CNI_CONTAINERID"] for r in side.cni.calls("DEL")} == {lost}
    [gc] = side.cni.calls("GC", "bridge")
    valid = [{"containerID": c, "ifname": "eth0"} for c in sorted([live, handle])]
    assert gc["stdin"]["cni.dev/valid-attachments"] == valid
    [ports] = side.cni.calls("GC", "portmap")
    assert ports["stdin"]["name"] == "lan11-ports"
    assert ports["stdin"]["cni.dev/valid-attachments"] == [{"containerID": live,
                                                            "ifname": "eth0"}]
    assert {e.container_id for e in side.runtime.cached_attachments("lan11")} == {live, handle}


def test_collect_below_1_1_dels_but_sends_no_gc(side):
    req = create_network()  # generated: CNI 1.0.0
    side.driver.create_network(req)
    eid, _, _ = run(side.driver, req.network_id)
    gone, _, _ = run(side.driver, req.network_id, address="10.50.0.6/24")
    side.store.delete_endpoint(gone)
    side.cni.clear_calls()
    report = side.graph.reconciler.collect(min_age=0)
    assert report["gc_deleted"] == 1 and report["errors"] == 0
    assert side.cni.calls("GC") == []
    assert [e.container_id for e in side.runtime.cached_attachments()] == [eid]


def test_collect_counts_a_failing_gc(side):
    side.cni.behave("bridge", versions=V11, GC={"error": {"code": 999, "msg": "gc broke"}})
    side.cni.behave("portmap", versions=V11)
    named_network(side, plugins=[{"type": "bridge"}])
    assert side.graph.reconciler.collect(min_age=0) == {"gc_lists": 0, "gc_deleted": 0,
                                                        "errors": 1}


def test_gc_judges_age_by_the_last_state_change(side):
    """An endpoint created long ago that joined just now is starting: dockerd does not
    list it yet, and gc leaves it."""
    req = create_network()
    side.driver.create_network(req)
    ce = create_endpoint(req.network_id)
    side.driver.create_endpoint(ce)
    side.store._db.execute("UPDATE endpoints SET created=created-1, changed=changed-1")
    side.driver.join(join(req.network_id, ce.endpoint_id))
    docker = FakeDocker({req.network_id: {"Containers": {}}})
    assert side.graph.reconciler.with_docker(docker)["endpoints"] == 0
    assert side.store.get_endpoint(ce.endpoint_id).state == "ready"


def test_teardown_waits_for_an_attach_in_flight(side, monkeypatch):
    """Join holds the endpoint's lock across the ADD: a gc teardown started meanwhile
    waits, and finds the endpoint as attach left it."""
    import threading
    req = create_network()
    side.driver.create_network(req)
    ce = create_endpoint(req.network_id)
    side.driver.create_endpoint(ce)
    real_add, seen = side.runtime.add, {}

    def add(*a, **kw):
        t = threading.Thread(target=side.attachments.release, args=(ce.endpoint_id,))
        t.start()
        t.join(0.5)
        seen["blocked"] = t.is_alive()
        seen["thread"] = t
        return real_add(*a, **kw)
    monkeypatch.setattr(side.runtime, "add", add)
    side.driver.join(join(req.network_id, ce.endpoint_id))
    seen["thread"].join(30)
    assert seen["blocked"]
    assert side.store.get_endpoint(ce.endpoint_id) is None
    assert side.runtime.cached_attachments() == []  # the teardown DELeted what ADD made


def test_attach_fails_when_its_row_is_gone(side, monkeypatch):
    """A row removed under an attach (a store shared with an older gc) is an error, and
    what the ADD made is undone: Docker must not be told the endpoint joined."""
    import pytest
    from cnm_bridge.errors import NotFound
    req = create_network()
    side.driver.create_network(req)
    ce = create_endpoint(req.network_id)
    side.driver.create_endpoint(ce)
    real_add = side.runtime.add

    def add(*a, **kw):
        out = real_add(*a, **kw)
        side.store.delete_endpoint(ce.endpoint_id)
        return out
    monkeypatch.setattr(side.runtime, "add", add)
    with pytest.raises(NotFound, match="removed meanwhile"):
        side.driver.join(join(req.network_id, ce.endpoint_id))
    assert side.runtime.cached_attachments() == []


def test_gc_deletes_only_what_two_passes_in_a_row_find_gone(side):
    """One NotFound (a dockerd restarting, an answer from the wrong moment) deletes
    nothing: the next pass must agree."""
    req = create_network()
    side.driver.create_network(req)
    gc = side.graph.reconciler.with_docker
    present = FakeDocker({req.network_id: {"Containers": {}}})
    assert gc(FakeDocker({}), min_age=0)["networks"] == 0
    assert gc(present, min_age=0)["networks"] == 0  # back: the first finding is void
    assert gc(FakeDocker({}), min_age=0)["networks"] == 0
    assert side.store.get_network(req.network_id)
    assert gc(FakeDocker({}), min_age=0)["networks"] == 1
    assert side.store.get_network(req.network_id) is None


def test_gc_trusts_no_other_dockerd(side):
    """Another daemon (DOCKER_HOST, a second dockerd on the host) knows none of pycni's
    networks: nothing is deleted on its word, until the operator adopts it."""
    req = create_network()
    side.driver.create_network(req)
    gc = side.graph.reconciler.with_docker
    gc(FakeDocker({req.network_id: {}}, "daemon-1"), min_age=0)  # remembered
    other = FakeDocker({}, "daemon-2")
    for _ in range(3):
        report = gc(other, min_age=0)
        assert report["other_dockerd"] == 1 and report["networks"] == 0
    assert side.store.get_network(req.network_id)
    gc(other, min_age=0, adopt=True)
    assert gc(other, min_age=0)["networks"] == 1
