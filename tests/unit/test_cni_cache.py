"""The result cache: libcni's cniCacheV1 layout, permissions, atomic writes, corrupt entries."""

import base64
import json
import logging
import os
import stat

import pytest

from cni_runner import CacheEntry, ResultCache, conflist_from_bytes


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_entry_written_by_add_has_libcni_format(cni):
    cni.plugin("p1")
    cni.plugin("p2")
    net = cni.netlist(["p1", {"type": "p2", "capabilities": {"portMappings": True}}])
    ports = [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]
    res = cni.runtime().add(net, cni.rt("abc123", "eth1", "/run/netns/abc",
                                        args=[("IP", "10.22.0.9"), ("MAC", "0a:00:00:00:00:09")],
                                        caps={"portMappings": ports}))
    path = os.path.join(cni.cache_dir, "results", "testnet-abc123-eth1")
    with open(path) as f:
        doc = json.load(f)
    assert doc["kind"] == "cniCacheV1"
    assert doc["containerId"] == "abc123"
    assert doc["ifName"] == "eth1"
    assert doc["networkName"] == "testnet"
    assert doc["netns"] == "/run/netns/abc"
    assert doc["cniArgs"] == [["IP", "10.22.0.9"], ["MAC", "0a:00:00:00:00:09"]]
    assert doc["capabilityArgs"] == {"portMappings": ports}
    assert doc["result"] == res
    cached_list = json.loads(base64.b64decode(doc["config"]))
    assert cached_list["name"] == "testnet"
    assert [p["type"] for p in cached_list["plugins"]] == ["p1", "p2"]
    assert cached_list["plugins"][1]["capabilities"] == {"portMappings": True}
    assert conflist_from_bytes(base64.b64decode(doc["config"])).name == "testnet"


def test_modes_dir_0700_file_0600(cni):
    cni.plugin("p1")
    old = os.umask(0o022)
    try:
        cni.runtime().add(cni.netlist(), cni.rt())
    finally:
        os.umask(old)
    results = os.path.join(cni.cache_dir, "results")
    assert mode(results) == 0o700
    assert mode(os.path.join(results, "testnet-ctr1-eth0")) == 0o600


def test_results_dir_mode_fixed_even_if_it_existed(tmp_path):
    root = tmp_path / "cache"
    (root / "results").mkdir(parents=True, mode=0o755)
    os.chmod(root / "results", 0o755)
    cache = ResultCache(str(root))
    cache.save(CacheEntry("c", "eth0", "n", b"{}"))
    assert mode(root / "results") == 0o700
    assert mode(root / "results" / "n-c-eth0") == 0o600


def test_new_cache_root_is_private(tmp_path):
    root = tmp_path / "a" / "b"
    ResultCache(str(root)).save(CacheEntry("c", "eth0", "n", b"{}"))
    assert mode(root) == 0o700


def test_existing_cache_root_mode_is_left_alone(tmp_path):
    # The root may be shared (cnitool's /var/lib/cni); only what we own is made private.
    root = tmp_path / "shared"
    root.mkdir()
    os.chmod(root, 0o755)
    ResultCache(str(root)).save(CacheEntry("c", "eth0", "n", b"{}"))
    assert mode(root) == 0o755
    assert mode(root / "results") == 0o700


def test_round_trip():
    e = CacheEntry("cid", "eth0", "net", b'{"name":"net"}', "/ns", [("A", "1")], {"mac": "x"},
                   {"cniVersion": "1.0.0", "ips": []})
    back = CacheEntry.from_json(e.to_json())
    assert back == e


def test_intent_entry_has_no_result_key():
    doc = json.loads(CacheEntry("cid", "eth0", "net", b"{}").to_json())
    assert "result" not in doc
    assert CacheEntry.from_json(json.dumps(doc)).result is None


def test_reads_libcni_written_entry(tmp_path):
    """An entry as Go's libcni writes it (netns/cniArgs/capabilityArgs omitted when empty)."""
    conf = json.dumps({"cniVersion": "1.0.0", "name": "net",
                       "plugins": [{"type": "bridge"}]}).encode()
    doc = {"kind": "cniCacheV1", "containerId": "cid", "config": base64.b64encode(conf).decode(),
           "ifName": "eth0", "networkName": "net",
           "result": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}]}}
    os.makedirs(tmp_path / "results")
    (tmp_path / "results" / "net-cid-eth0").write_text(json.dumps(doc))
    e = ResultCache(str(tmp_path)).load("net", "cid", "eth0")
    assert e.config == conf and e.netns == "" and e.cni_args == [] and e.capability_args == {}
    assert e.result["interfaces"] == [{"name": "eth0"}]


def test_load_missing_returns_none(tmp_path):
    cache = ResultCache(str(tmp_path))
    assert cache.load("n", "c", "eth0") is None
    assert not cache.exists("n", "c", "eth0")
    cache.delete("n", "c", "eth0")  # no error


@pytest.mark.parametrize("content", [
    b"", b"{", b"null", b"[]", b'{"kind":"cniCacheV1"}', b'{"kind":"v2","containerId":"c"}',
    b"\xff\x00",
    # fields of the wrong type must not blow up later, in DEL
    b'{"kind":"cniCacheV1","containerId":"c","ifName":"eth0","networkName":"n",'
    b'"config":"","cniArgs":[["only-key"]]}',
    b'{"kind":"cniCacheV1","containerId":"c","ifName":"eth0","networkName":"n",'
    b'"config":"","cniArgs":"K=V"}',
    b'{"kind":"cniCacheV1","containerId":"c","ifName":"eth0","networkName":"n",'
    b'"config":"","capabilityArgs":["mac"]}',
    b'{"kind":"cniCacheV1","containerId":5,"ifName":"eth0","networkName":"n","config":""}',
    b'{"kind":"cniCacheV1","containerId":"c","ifName":"eth0","networkName":"n",'
    b'"config":"","result":"done"}',
    b'{"kind":"cniCacheV1","containerId":"c","ifName":"eth0","networkName":"n",'
    b'"config":"","netns":7}',
])
def test_corrupt_entries_load_as_none_with_warning(tmp_path, caplog, content):
    os.makedirs(tmp_path / "results")
    path = tmp_path / "results" / "n-c-eth0"
    path.write_bytes(content)
    cache = ResultCache(str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="cni_runner.cache"):
        assert cache.load("n", "c", "eth0") is None
    assert "corrupt" in caplog.text and str(path) in caplog.text
    assert cache.exists("n", "c", "eth0")
    assert cache.entries() == []


@pytest.mark.parametrize("content", [
    b'{"kind":"cniCacheV1","containerId":"c","ifName":"eth0","networkName":"testnet",'
    b'"config":"","cniArgs":[["only-key"]]}',
    b'{"kind":"cniCacheV1","containerId":"c","ifName":"eth0","networkName":"testnet",'
    b'"config":"","capabilityArgs":["mac"]}',
])
def test_del_survives_entries_with_wrong_field_types(cni, content):
    cni.plugin("p1")
    os.makedirs(os.path.join(cni.cache_dir, "results"))
    path = os.path.join(cni.cache_dir, "results", "testnet-c-eth0")
    with open(path, "wb") as f:
        f.write(content)
    cni.runtime().delete(cni.netlist(), cni.rt("c"))
    assert cni.verbs() == [("DEL", "p1")]
    assert not os.path.exists(path)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    cache = ResultCache(str(tmp_path))
    first = CacheEntry("c", "eth0", "n", b"{}", result={"cniVersion": "1.0.0"})
    cache.save(first)

    def broken_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", broken_rename)
    with pytest.raises(OSError):
        cache.save(CacheEntry("c", "eth0", "n", b"{}", result=None))
    monkeypatch.undo()
    # The old entry is intact and no temp file is left behind.
    assert cache.load("n", "c", "eth0") == first
    assert os.listdir(tmp_path / "results") == ["n-c-eth0"]


def test_entries_filters_by_network_and_skips_junk(tmp_path):
    cache = ResultCache(str(tmp_path))
    cache.save(CacheEntry("c1", "eth0", "a", b"{}"))
    cache.save(CacheEntry("c2", "eth0", "a", b"{}"))
    cache.save(CacheEntry("c1", "eth0", "b", b"{}"))
    (tmp_path / "results" / ".tmp-leftover").write_text("{")
    (tmp_path / "results" / "junk").write_text("nope")
    assert sorted(e.container_id for e in cache.entries("a")) == ["c1", "c2"]
    assert [e.network_name for e in cache.entries("b")] == ["b"]
    assert len(cache.entries()) == 3
    assert ResultCache(str(tmp_path / "none")).entries() == []


def test_path_layout(tmp_path):
    cache = ResultCache(str(tmp_path))
    assert cache.path("net", "cid", "eth0") == str(tmp_path / "results" / "net-cid-eth0")
