"""Version selection (list versions x plugin VERSION answers) and the per-binary probe cache."""

import os
import time

import pytest

from cni_runner import ConfigError, PluginNotFoundError, ResultError, VersionError
from cni_runner import version as cniversion
from cni_runner.errors import PluginError
from cni_runner.invoke import VersionProber


def test_parse_and_order():
    assert cniversion.parse("1.0.0") == (1, 0, 0)
    assert cniversion.at_least("1.1.0", "1.0.0")
    assert not cniversion.at_least("0.3.1", "0.4.0")
    assert cniversion.newest_first(["0.4.0", "1.0.0", "0.10.0", "1.0.0"]) == \
        ["1.0.0", "0.10.0", "0.4.0"]


@pytest.mark.parametrize("bad", ["1.0", "1.0.0.0", "v1.0.0", "", "a.b.c", None, 1.0])
def test_parse_rejects(bad):
    with pytest.raises(ConfigError):
        cniversion.parse(bad)


def test_runs_at_highest_common_version(cni):
    cni.plugin("p1", versions=["0.4.0", "1.0.0"])
    cni.plugin("p2", versions=["0.3.1", "0.4.0", "1.0.0"])
    net = cni.netlist(["p1", "p2"], version=None, cniVersions=["1.0.0", "1.1.0"])
    runtime = cni.runtime()
    assert runtime.select_version(net) == "1.0.0"
    runtime.add(net, cni.rt())
    assert {r["stdin"]["cniVersion"] for r in cni.calls("ADD")} == {"1.0.0"}


def test_cni_version_and_cni_versions_combined(cni):
    cni.plugin("p1", versions=["0.4.0", "1.0.0", "1.1.0"])
    net = cni.netlist(["p1"], version="0.4.0", cniVersions=["1.1.0"])
    assert cni.runtime().select_version(net) == "1.1.0"


def test_one_plugin_limits_the_whole_list(cni):
    cni.plugin("p1", versions=["0.4.0", "1.0.0", "1.1.0"])
    cni.plugin("p2", versions=["0.3.1", "0.4.0"])
    net = cni.netlist(["p1", "p2"], version=None, cniVersions=["0.4.0", "1.0.0", "1.1.0"])
    assert cni.runtime().select_version(net) == "0.4.0"


def test_no_common_version_names_plugin_and_versions(cni):
    cni.plugin("goodplug", versions=["1.0.0", "1.1.0"])
    cni.plugin("oldplug", versions=["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
    net = cni.netlist(["goodplug", "oldplug"], version="1.1.0")
    with pytest.raises(VersionError) as ei:
        cni.runtime().add(net, cni.rt())
    msg = str(ei.value)
    assert "oldplug" in msg and "1.1.0" in msg and "1.0.0" in msg
    assert "testnet" in msg
    assert cni.calls("ADD") == []  # nothing was run
    assert not os.path.exists(os.path.join(cni.cache_dir, "results", "testnet-ctr1-eth0"))


def test_list_versions_unknown_to_runtime(cni):
    cni.plugin("p1")
    net = cni.netlist(["p1"], version="2.0.0")
    with pytest.raises(VersionError, match="2.0.0"):
        cni.runtime().select_version(net)


def test_missing_plugin(cni):
    cni.plugin("p1")
    net = cni.netlist(["p1", "nosuch"])
    with pytest.raises(PluginNotFoundError, match="nosuch") as ei:
        cni.runtime().add(net, cni.rt())
    assert cni.bin_dir in str(ei.value)
    assert cni.calls("ADD") == []


def test_probe_is_cached_per_binary(cni):
    cni.plugin("p1")
    cni.plugin("p2")
    net = cni.netlist(["p1", "p2", "p1"])
    runtime = cni.runtime()
    for i in range(3):
        runtime.add(net, cni.rt(f"c{i}"))
        runtime.delete(net, cni.rt(f"c{i}"))
    versions = cni.calls("VERSION")
    assert sorted(r["plugin"] for r in versions) == ["p1", "p2"]


def test_probe_repeated_after_binary_changes(cni):
    path = cni.plugin("p1", versions=["1.0.0"])
    net = cni.netlist(["p1"])
    runtime = cni.runtime()
    assert runtime.select_version(net) == "1.0.0"
    assert runtime.select_version(net) == "1.0.0"
    assert len(cni.calls("VERSION")) == 1
    # The package manager replaced the binary: same path, new mtime.
    cni.behave("p1", versions=["0.4.0"])
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert runtime.select_version(cni.netlist(["p1"], version=None,
                                              cniVersions=["0.4.0", "1.0.0"])) == "0.4.0"
    assert len(cni.calls("VERSION")) == 2


def test_probe_request(cni):
    path = cni.plugin("p1")
    assert VersionProber().supported(path)[-1] == "1.0.0"
    (rec,) = cni.calls("VERSION")
    assert rec["env"]["CNI_COMMAND"] == "VERSION"
    assert rec["stdin"]["cniVersion"]
    for var in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"):
        assert var in rec["env"]


def test_probe_bad_answer(cni):
    path = cni.plugin("p1", VERSION={"stdout": '{"cniVersion": "1.0.0"}'})
    with pytest.raises(ResultError, match="p1"):
        VersionProber().supported(path)
    cni.behave("p1", VERSION={"stdout": "not json"})
    os.utime(path, ns=(0, 1))
    with pytest.raises(ResultError, match="bad VERSION answer"):
        VersionProber().supported(path)


def test_probe_plugin_error(cni):
    path = cni.plugin("p1", VERSION={"error": {"code": 4, "msg": "no"}})
    with pytest.raises(PluginError) as ei:
        VersionProber().supported(path)
    assert ei.value.code == 4 and ei.value.plugin == "p1"


def test_hanging_version_probe_obeys_runtime_timeout(cni):
    cni.plugin("p1", VERSION={"sleep": 30})
    start = time.monotonic()
    with pytest.raises(PluginError, match="timed out"):
        cni.runtime(timeout=1).add(cni.netlist(["p1"]), cni.rt())
    assert time.monotonic() - start < 5
    assert cni.calls("ADD") == []
