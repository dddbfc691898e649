"""ADD / DEL / CHECK / GC / STATUS ordering and cache bookkeeping (spec "Lifecycle & Ordering")."""

import fcntl
import logging
import os

import pytest

from cni_runner import (AlreadyAddedError, CacheEntry, ConfigError, NotAddedError, PluginError,
                        ResultCache, load_by_name)


def entry_path(cni, net="testnet", cid="ctr1", ifname="eth0"):
    return os.path.join(cni.cache_dir, "results", f"{net}-{cid}-{ifname}")


@pytest.fixture
def three(cni):
    for p in ("p1", "p2", "p3"):
        cni.plugin(p)
    return cni.netlist(["p1", "p2", "p3"])


# -- ADD ------------------------------------------------------------------------------------


def test_add_runs_forward_and_caches_result(cni, three):
    runtime = cni.runtime()
    res = runtime.add(three, cni.rt())
    assert cni.verbs() == [("ADD", "p1"), ("ADD", "p2"), ("ADD", "p3")]
    assert res["cniVersion"] == "1.0.0"
    assert res["interfaces"][0]["name"] == "eth0"
    assert res["ips"][0]["address"] == "10.22.0.5/16"
    assert runtime.cached_result(three, cni.rt()) == res
    assert ResultCache(cni.cache_dir).load("testnet", "ctr1", "eth0").result == res


def test_failed_add_in_second_plugin_deletes_whole_list(cni, three):
    cni.behave("p2", ADD={"error": {"code": 11, "msg": "try again"}})
    with pytest.raises(PluginError) as ei:
        cni.runtime().add(three, cni.rt(args=[("IP", "10.22.0.7")]))
    assert ei.value.plugin == "p2" and ei.value.code == 11
    assert cni.verbs() == [("ADD", "p1"), ("ADD", "p2"),
                           ("DEL", "p3"), ("DEL", "p2"), ("DEL", "p1")]
    for rec in cni.calls("DEL"):
        assert "prevResult" not in rec["stdin"]  # no final result existed
        assert rec["env"]["CNI_ARGS"] == "IgnoreUnknown=1;IP=10.22.0.7"  # same args as ADD
    assert not os.path.exists(entry_path(cni))


def test_failed_add_with_failing_cleanup_keeps_intent(cni, three, caplog):
    cni.behave("p2", ADD={"error": {"code": 7, "msg": "add broke"}},
               DEL={"error": {"code": 5, "msg": "del broke"}})
    runtime = cni.runtime()
    with caplog.at_level(logging.ERROR, logger="cni_runner.runtime"):
        with pytest.raises(PluginError, match="add broke"):  # the ADD error is the one raised
            runtime.add(three, cni.rt(caps={"mac": "0a:00:00:00:00:01"}))
    assert "del broke" in caplog.text
    entry = ResultCache(cni.cache_dir).load("testnet", "ctr1", "eth0")
    assert entry is not None and entry.result is None
    assert entry.capability_args == {"mac": "0a:00:00:00:00:01"}
    # Once the plugin is fixed, the next ADD first finishes the pending DEL.
    cni.behave("p2")
    cni.clear_calls()
    runtime.add(three, cni.rt())
    assert cni.verbs() == [("DEL", "p3"), ("DEL", "p2"), ("DEL", "p1"),
                           ("ADD", "p1"), ("ADD", "p2"), ("ADD", "p3")]


def test_second_add_of_same_attachment_is_refused(cni, three):
    runtime = cni.runtime()
    first = runtime.add(three, cni.rt())
    cni.clear_calls()
    with pytest.raises(AlreadyAddedError, match="ctr1"):
        runtime.add(three, cni.rt())
    assert cni.verbs() == []
    assert runtime.cached_result(three, cni.rt()) == first


def test_other_ifname_or_container_is_a_different_attachment(cni, three):
    runtime = cni.runtime()
    runtime.add(three, cni.rt())
    runtime.add(three, cni.rt(ifname="eth1"))
    runtime.add(three, cni.rt("ctr2"))
    assert len(cni.calls("ADD")) == 9


def test_add_after_del_works(cni, three):
    runtime = cni.runtime()
    runtime.add(three, cni.rt())
    runtime.delete(three, cni.rt())
    runtime.add(three, cni.rt())
    assert len(cni.calls("ADD")) == 6


def test_crash_mid_add_intent_is_deleted_before_next_add(cni, three):
    # A runtime died after writing its intent entry and before caching a result.
    ResultCache(cni.cache_dir).save(CacheEntry(
        "ctr1", "eth0", "testnet", three.bytes, "/run/netns/old", [("IP", "10.22.0.9")], {},
        None))
    res = cni.runtime().add(three, cni.rt())
    assert cni.verbs() == [("DEL", "p3"), ("DEL", "p2"), ("DEL", "p1"),
                           ("ADD", "p1"), ("ADD", "p2"), ("ADD", "p3")]
    for rec in cni.calls("DEL"):
        assert rec["env"]["CNI_ARGS"] == "IgnoreUnknown=1;IP=10.22.0.9"
        assert "prevResult" not in rec["stdin"]
    for rec in cni.calls("ADD"):
        assert rec["env"]["CNI_ARGS"] == "IgnoreUnknown=1"
    assert ResultCache(cni.cache_dir).load("testnet", "ctr1", "eth0").result == res


def test_corrupt_entry_is_deleted_before_add(cni, three):
    os.makedirs(os.path.dirname(entry_path(cni)))
    with open(entry_path(cni), "w") as f:
        f.write("")  # the empty file a crash left in old libcni
    cni.runtime().add(three, cni.rt())
    assert cni.verbs()[:3] == [("DEL", "p3"), ("DEL", "p2"), ("DEL", "p1")]
    assert cni.verbs()[3:] == [("ADD", "p1"), ("ADD", "p2"), ("ADD", "p3")]


def test_add_validates_runtime_conf_first(cni, three):
    runtime = cni.runtime()
    for rt in (cni.rt("bad id"), cni.rt(ifname="eth0:1"), cni.rt(ifname="x" * 16),
               cni.rt("ctr\n")):
        with pytest.raises(ConfigError):
            runtime.add(three, rt)
    assert cni.calls() == []
    assert not os.path.exists(os.path.join(cni.cache_dir, "results"))


def test_add_interrupted_still_deletes(cni, three, monkeypatch):
    """Even a KeyboardInterrupt during ADD is followed by DEL."""
    runtime = cni.runtime()
    real = runtime._exec
    calls = []

    def flaky(path, env, stdin):
        calls.append(env["CNI_COMMAND"])
        if env["CNI_COMMAND"] == "ADD" and calls.count("ADD") == 2:
            raise KeyboardInterrupt
        return real(path, env, stdin)

    monkeypatch.setattr(runtime, "_exec", flaky)
    with pytest.raises(KeyboardInterrupt):
        runtime.add(three, cni.rt())
    assert cni.verbs() == [("ADD", "p1"), ("DEL", "p3"), ("DEL", "p2"), ("DEL", "p1")]
    assert not os.path.exists(entry_path(cni))


# -- DEL ------------------------------------------------------------------------------------


def test_del_removes_cache_entry(cni, three):
    runtime = cni.runtime()
    runtime.add(three, cni.rt())
    assert os.path.exists(entry_path(cni))
    runtime.delete(three, cni.rt())
    assert not os.path.exists(entry_path(cni))
    assert runtime.cached_result(three, cni.rt()) is None


def test_del_without_cache_entry(cni, three):
    cni.runtime().delete(three, cni.rt(args=[("IP", "10.22.0.3")],
                                       caps={"portMappings": []}))
    assert cni.verbs() == [("DEL", "p3"), ("DEL", "p2"), ("DEL", "p1")]
    for rec in cni.calls("DEL"):
        assert "prevResult" not in rec["stdin"]
        assert rec["env"]["CNI_ARGS"] == "IgnoreUnknown=1;IP=10.22.0.3"


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"kind": "other"}',
                                     b'{"kind": "cniCacheV1"}', b"\xff\xfe",
                                     b'{"kind": "cniCacheV1", "containerId": "ctr1", '
                                     b'"ifName": "eth0", "networkName": "testnet", '
                                     b'"config": "%%%"}'])
def test_del_with_corrupt_cache_file(cni, three, content):
    os.makedirs(os.path.dirname(entry_path(cni)))
    with open(entry_path(cni), "wb") as f:
        f.write(content)
    cni.runtime().delete(three, cni.rt())
    assert cni.verbs() == [("DEL", "p3"), ("DEL", "p2"), ("DEL", "p1")]
    assert all("prevResult" not in r["stdin"] for r in cni.calls("DEL"))
    assert not os.path.exists(entry_path(cni))


def test_del_with_unusable_cached_result(cni, three):
    runtime = cni.runtime()
    runtime.add(three, cni.rt())
    cache = ResultCache(cni.cache_dir)
    entry = cache.load("testnet", "ctr1", "eth0")
    entry.result = {"cniVersion": "1.0.0", "ips": [{"address": "not-an-ip"}]}
    cache.save(entry)
    cni.clear_calls()
    runtime.delete(three, cni.rt())
    assert all("prevResult" not in r["stdin"] for r in cni.calls("DEL"))
    assert not os.path.exists(entry_path(cni))


def test_del_with_unusable_cached_config_uses_given_list(cni, three):
    runtime = cni.runtime()
    runtime.add(three, cni.rt())
    cache = ResultCache(cni.cache_dir)
    entry = cache.load("testnet", "ctr1", "eth0")
    entry.config = b"not json"
    cache.save(entry)
    cni.clear_calls()
    runtime.delete(three, cni.rt())
    assert cni.verbs() == [("DEL", "p3"), ("DEL", "p2"), ("DEL", "p1")]
    assert cni.calls("DEL")[0]["stdin"]["prevResult"]["ips"]


def test_failing_del_keeps_entry_for_retry(cni, three):
    runtime = cni.runtime()
    res = runtime.add(three, cni.rt())
    cni.behave("p2", DEL={"error": {"code": 5, "msg": "iptables busy"}})
    cni.clear_calls()
    with pytest.raises(PluginError, match="iptables busy"):
        runtime.delete(three, cni.rt())
    assert cni.verbs() == [("DEL", "p3"), ("DEL", "p2")]  # stops at the failure
    assert runtime.cached_result(three, cni.rt()) == res
    cni.behave("p2")
    cni.clear_calls()
    runtime.delete(three, cni.rt())
    assert cni.verbs() == [("DEL", "p3"), ("DEL", "p2"), ("DEL", "p1")]
    assert all(r["stdin"]["prevResult"] == res for r in cni.calls("DEL"))
    assert not os.path.exists(entry_path(cni))


def test_del_twice_succeeds(cni, three):
    runtime = cni.runtime()
    runtime.add(three, cni.rt())
    runtime.delete(three, cni.rt())
    runtime.delete(three, cni.rt())
    dels = cni.calls("DEL")
    assert len(dels) == 6
    assert all("prevResult" in r["stdin"] for r in dels[:3])
    assert all("prevResult" not in r["stdin"] for r in dels[3:])


def test_del_below_040_has_no_prev_result(cni):
    cni.plugin("p1", versions=["0.3.0", "0.3.1"])
    net = cni.netlist(["p1"], version="0.3.1")
    runtime = cni.runtime()
    runtime.add(net, cni.rt())
    runtime.delete(net, cni.rt())
    (rec,) = cni.calls("DEL")
    assert "prevResult" not in rec["stdin"] and rec["stdin"]["cniVersion"] == "0.3.1"


def test_del_prev_result_in_list_version(cni):
    cni.plugin("p1", versions=["0.4.0"])
    net = cni.netlist(["p1"], version="0.4.0")
    runtime = cni.runtime()
    runtime.add(net, cni.rt())
    runtime.delete(net, cni.rt())
    prev = cni.calls("DEL")[0]["stdin"]["prevResult"]
    assert prev["cniVersion"] == "0.4.0" and prev["ips"][0]["version"] == "4"


def test_single_plugin_legacy_conf_lifecycle(cni):
    cni.plugin("p1")
    cni.write_conf("10-legacy.conf", {"cniVersion": "0.4.0", "name": "legacy", "type": "p1",
                                      "extra": "kept"})
    net = load_by_name(cni.conf_dir, "legacy")
    runtime = cni.runtime()
    res = runtime.add(net, cni.rt())
    assert res["cniVersion"] == "0.4.0"
    runtime.check(net, cni.rt())
    runtime.delete(net, cni.rt())
    assert cni.verbs() == [("ADD", "p1"), ("CHECK", "p1"), ("DEL", "p1")]
    assert all(r["stdin"]["extra"] == "kept" for r in cni.calls("DEL"))


# -- CHECK ------------------------------------------------------------------------------------


def test_check_runs_forward_with_cached_result(cni, three):
    runtime = cni.runtime()
    res = runtime.add(three, cni.rt(args=[("IP", "10.22.0.5")]))
    cni.clear_calls()
    assert runtime.check(three, cni.rt()) is True
    assert cni.verbs() == [("CHECK", "p1"), ("CHECK", "p2"), ("CHECK", "p3")]
    for rec in cni.calls("CHECK"):
        assert rec["stdin"]["prevResult"] == res
        assert rec["env"]["CNI_NETNS"] == "/var/run/netns/fake"
        assert rec["env"]["CNI_ARGS"] == "IgnoreUnknown=1;IP=10.22.0.5"


def test_check_failure_raises(cni, three):
    runtime = cni.runtime()
    runtime.add(three, cni.rt())
    cni.behave("p2", CHECK={"error": {"code": 999, "msg": "veth missing"}})
    with pytest.raises(PluginError, match="veth missing") as ei:
        runtime.check(three, cni.rt())
    assert ei.value.command == "CHECK"
    assert runtime.cached_result(three, cni.rt()) is not None  # CHECK never drops the cache


@pytest.mark.parametrize("flag", [True, "true", "TRUE"])
def test_check_skipped_with_disable_check(cni, flag):
    cni.plugin("p1")
    net = cni.netlist(["p1"], disableCheck=flag)
    runtime = cni.runtime()
    runtime.add(net, cni.rt())
    assert runtime.check(net, cni.rt()) is False
    assert cni.calls("CHECK") == []


@pytest.mark.parametrize("ver", ["0.3.0", "0.3.1"])
def test_check_skipped_below_040(cni, ver):
    cni.plugin("p1")
    net = cni.netlist(["p1"], version=ver)
    runtime = cni.runtime()
    runtime.add(net, cni.rt())
    assert runtime.check(net, cni.rt()) is False
    assert cni.calls("CHECK") == []


def test_check_unknown_container(cni, three):
    with pytest.raises(NotAddedError, match="ctr9"):
        cni.runtime().check(three, cni.rt("ctr9"))
    assert cni.calls("CHECK") == []


def test_check_after_failed_or_partial_add(cni, three):
    ResultCache(cni.cache_dir).save(CacheEntry("ctr1", "eth0", "testnet", three.bytes))
    with pytest.raises(NotAddedError):
        cni.runtime().check(three, cni.rt())
    assert cni.calls("CHECK") == []


# -- GC ---------------------------------------------------------------------------------------


def test_gc_deletes_stale_attachments_only(cni, three):
    runtime = cni.runtime()
    for cid in ("keep", "stale1", "stale2"):
        runtime.add(three, cni.rt(cid, args=[("CID", cid)]))
    runtime.add(three, cni.rt("keep", ifname="eth1"))
    cni.clear_calls()
    removed = runtime.gc(three, [("keep", "eth0"), ("keep", "eth1"), ("gone", "eth0")])
    assert sorted(removed) == [("stale1", "eth0"), ("stale2", "eth0")]
    dels = cni.calls("DEL")
    assert len(dels) == 6
    assert {r["env"]["CNI_CONTAINERID"] for r in dels} == {"stale1", "stale2"}
    for r in dels:
        assert r["env"]["CNI_ARGS"] == f"IgnoreUnknown=1;CID={r['env']['CNI_CONTAINERID']}"
        assert "prevResult" in r["stdin"]
    assert cni.calls("GC") == []  # 1.0.0 list: no GC verb
    left = sorted((e.container_id, e.ifname) for e in ResultCache(cni.cache_dir).entries())
    assert left == [("keep", "eth0"), ("keep", "eth1")]


def test_gc_ignores_other_networks(cni):
    cni.plugin("p1")
    runtime = cni.runtime()
    a, b = cni.netlist(["p1"], name="neta"), cni.netlist(["p1"], name="netb")
    runtime.add(a, cni.rt("c1"))
    runtime.add(b, cni.rt("c1"))
    assert runtime.gc(a, []) == [("c1", "eth0")]
    assert [e.network_name for e in ResultCache(cni.cache_dir).entries()] == ["netb"]


def test_gc_sends_gc_verb_at_110(cni):
    for p in ("p1", "p2"):
        cni.plugin(p, versions=["1.0.0", "1.1.0"])
    net = cni.netlist(["p1", {"type": "p2", "capabilities": {"portMappings": True}}],
                      version="1.1.0")
    runtime = cni.runtime()
    runtime.add(net, cni.rt("live"))
    runtime.add(net, cni.rt("dead"))
    cni.clear_calls()
    assert runtime.gc(net, [("live", "eth0")]) == [("dead", "eth0")]
    assert cni.verbs() == [("DEL", "p2"), ("DEL", "p1"), ("GC", "p1"), ("GC", "p2")]
    for rec in cni.calls("GC"):
        conf = rec["stdin"]
        assert conf["cniVersion"] == "1.1.0" and conf["name"] == "testnet"
        assert conf["cni.dev/valid-attachments"] == [{"containerID": "live", "ifname": "eth0"}]
        assert conf["cni.dev/attachments"] == conf["cni.dev/valid-attachments"]
        assert "prevResult" not in conf and "capabilities" not in conf
        assert rec["env"]["CNI_COMMAND"] == "GC"
        assert rec["env"]["CNI_PATH"] == cni.bin_dir


def test_gc_with_no_valid_attachments(cni):
    cni.plugin("p1", versions=["1.1.0"])
    net = cni.netlist(["p1"], version="1.1.0")
    cni.runtime().gc(net, [])
    (rec,) = cni.calls("GC")
    assert rec["stdin"]["cni.dev/valid-attachments"] == []


def test_gc_verb_skipped_with_disable_gc(cni):
    cni.plugin("p1", versions=["1.1.0"])
    net = cni.netlist(["p1"], version="1.1.0", disableGC="true")
    runtime = cni.runtime()
    runtime.add(net, cni.rt())
    cni.clear_calls()
    # As libcni: disableGC turns garbage collection off entirely, stale DELs included.
    assert runtime.gc(net, []) == []
    assert cni.calls() == []
    assert len(ResultCache(cni.cache_dir).entries()) == 1


def test_gc_continues_past_a_failing_del(cni, caplog):
    cni.plugin("p1")
    net = cni.netlist(["p1"])
    runtime = cni.runtime()
    runtime.add(net, cni.rt("a"))
    runtime.add(net, cni.rt("b"))
    cni.behave("p1", DEL={"error": {"code": 5, "msg": "stuck"}})
    with caplog.at_level(logging.WARNING, logger="cni_runner.runtime"):
        assert runtime.gc(net, []) == []
    assert "stuck" in caplog.text
    assert len(ResultCache(cni.cache_dir).entries()) == 2  # kept for the next GC
    cni.behave("p1")
    assert sorted(runtime.gc(net, [])) == [("a", "eth0"), ("b", "eth0")]


def test_gc_error_from_gc_verb(cni):
    cni.plugin("p1", versions=["1.1.0"], GC={"error": {"code": 999, "msg": "gc failed"}})
    cni.plugin("p2", versions=["1.1.0"])
    with pytest.raises(PluginError, match="gc failed"):
        cni.runtime().gc(cni.netlist(["p1", "p2"], version="1.1.0"), [])
    # As libcni: every plugin has its GC, the failure is reported after.
    assert cni.verbs() == [("GC", "p1"), ("GC", "p2")]


def test_gc_and_status_set_the_six_variables(cni):
    cni.plugin("p1", versions=["1.1.0"])
    net = cni.netlist(["p1"], version="1.1.0")
    cni.runtime().gc(net, [])
    cni.runtime().status(net)
    for rec in cni.calls("GC") + cni.calls("STATUS"):
        env = rec["env"]
        assert {k: env.get(k) for k in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME",
                                        "CNI_ARGS")} == dict.fromkeys(
            ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS"), "")
        assert env["CNI_PATH"] == cni.bin_dir


def test_gc_valid_attachments_read_under_the_lock(cni):
    cni.plugin("p1", versions=["1.1.0"])
    net = cni.netlist(["p1"], version="1.1.0")
    runtime = cni.runtime()
    runtime.add(net, cni.rt("late"))  # as if added between a caller's look and the GC
    held = []

    def valid():
        fd = os.open(os.path.join(runtime.locks.path, "host.lock"), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            held.append(False)
        except BlockingIOError:
            held.append(True)  # gc holds the host lock exclusively
        finally:
            os.close(fd)
        return [("late", "eth0")]
    assert runtime.gc(net, valid) == []
    assert held == [True]
    (rec,) = cni.calls("GC")
    assert rec["stdin"]["cni.dev/valid-attachments"] == [{"containerID": "late",
                                                          "ifname": "eth0"}]


# -- STATUS -----------------------------------------------------------------------------------


def test_status_at_110(cni):
    cni.plugin("p1", versions=["1.1.0"])
    cni.plugin("p2", versions=["1.1.0"])
    assert cni.runtime().status(cni.netlist(["p1", "p2"], version="1.1.0")) is True
    assert cni.verbs() == [("STATUS", "p1"), ("STATUS", "p2")]
    rec = cni.calls("STATUS")[0]
    assert rec["stdin"]["cniVersion"] == "1.1.0" and rec["env"]["CNI_PATH"] == cni.bin_dir


def test_status_not_sent_below_110(cni):
    cni.plugin("p1")
    net = cni.netlist(["p1"], version=None, cniVersions=["1.0.0", "1.1.0"])
    assert cni.runtime().status(net) is False  # plugin tops out at 1.0.0
    assert cni.calls("STATUS") == []


@pytest.mark.parametrize("code", [50, 51])
def test_status_not_ready(cni, code):
    cni.plugin("p1", versions=["1.1.0"], STATUS={"error": {"code": code, "msg": "no ipam"}})
    with pytest.raises(PluginError) as ei:
        cni.runtime().status(cni.netlist(["p1"], version="1.1.0"))
    assert ei.value.code == code and ei.value.command == "STATUS"


def test_list_at_020_returns_ip4_block(cni):
    cni.plugin("p1", versions=["0.1.0", "0.2.0"])
    net = cni.netlist(["p1"], version="0.2.0")
    runtime = cni.runtime()
    res = runtime.add(net, cni.rt())
    assert res == {"cniVersion": "0.2.0",
                   "ip4": {"ip": "10.22.0.5/16", "gateway": "10.22.0.1",
                           "routes": [{"dst": "0.0.0.0/0"}]}}
    assert runtime.cached_result(net, cni.rt()) == res
    runtime.delete(net, cni.rt())
    assert "prevResult" not in cni.calls("DEL")[0]["stdin"]


def test_empty_add_output_is_cleaned_up(cni, three):
    cni.behave("p3", ADD={"stdout": ""})
    with pytest.raises(PluginError, match="printed no result"):
        cni.runtime().add(three, cni.rt())
    assert cni.verbs()[-3:] == [("DEL", "p3"), ("DEL", "p2"), ("DEL", "p1")]
    assert not os.path.exists(entry_path(cni))


def test_host_lock_false_does_not_wait_behind_another_list(cni):
    """An IPAM plugin run alone (host_lock=False) goes ahead while another list holds the
    host-wide lock; a runtime with the lock waits for it."""
    import threading
    cni.plugin("p1")
    holder = cni.runtime()
    free, locked = cni.runtime(host_lock=False), cni.runtime()
    done = {}

    def add(name, rt_):
        rt_.add(cni.netlist(name=name), cni.rt("c-" + name))
        done[name] = True

    with holder.locks.host(True):
        threads = [threading.Thread(target=add, args=("free", free)),
                   threading.Thread(target=add, args=("locked", locked))]
        for t in threads:
            t.start()
        threads[0].join(10)
        assert done.get("free") and not done.get("locked")
    threads[1].join(10)
    assert done.get("locked")


def test_a_1_1_result_keeps_its_fields_in_the_cache(cni):
    res = {"cniVersion": "1.1.0",
           "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x", "mtu": 1450,
                           "socketPath": "/run/vhost.sock", "pciID": "0000:00:1f.6"}],
           "ips": [{"interface": 0, "address": "10.22.0.5/16", "gateway": "10.22.0.1"}],
           "routes": [{"dst": "0.0.0.0/0", "gw": "10.22.0.1", "mtu": 1400, "advmss": 1360,
                       "priority": 10, "table": 254, "scope": 0}]}
    cni.plugin("p1", versions=["1.0.0", "1.1.0"], ADD={"result": res})
    cni.plugin("p2", versions=["1.0.0", "1.1.0"])  # passes prevResult on
    net = cni.netlist(["p1", "p2"], version="1.1.0")
    runtime = cni.runtime()
    assert runtime.add(net, cni.rt()) == res
    [p2] = cni.calls("ADD", "p2")
    assert p2["stdin"]["prevResult"] == res
    assert ResultCache(cni.cache_dir).load("testnet", "ctr1", "eth0").result == res
    runtime.delete(net, cni.rt())
    assert [r["stdin"]["prevResult"] for r in cni.calls("DEL")] == [res, res]


def test_gc_takes_locks_in_the_order_add_and_del_do(cni, three, monkeypatch):
    """ADD and DEL take the attachment's lock, then the host lock: a GC holding the host
    lock while it waits for an attachment's would deadlock with an ADD holding that one."""
    from cni_runner.locks import LockDir
    runtime = cni.runtime()
    for cid in ("keep", "stale1", "stale2"):
        runtime.add(three, cni.rt(cid))
    taken, real = [], LockDir._flock

    def record(self, name, mode):
        taken.append(name)
        return real(self, name, mode)
    monkeypatch.setattr(LockDir, "_flock", record)
    runtime.add(three, cni.rt("probe"))
    add_order = ["att" if n.startswith("att-") else n for n in taken]
    taken.clear()
    assert sorted(runtime.gc(three, [("keep", "eth0"), ("probe", "eth0")])) == [
        ("stale1", "eth0"), ("stale2", "eth0")]
    host_at = taken.index("host.lock")
    assert add_order == ["att", "host.lock"]
    assert host_at > 0 and all(n.startswith("att-") for n in taken[:host_at])
    assert not any(n.startswith("att-") for n in taken[host_at:])
