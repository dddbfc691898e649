"""Loading and validating network configuration (libcni conf.go rules)."""

import json
import logging
import os

import pytest

from cni_runner import (ConfigError, NotFoundError, conflist_from_bytes, conflist_from_dict,
                        load_all, load_by_name, validate_container_id, validate_ifname,
                        validate_name)
from cni_runner.config import config_files


def bridge(name, **extra):
    return dict({"cniVersion": "1.0.0", "name": name,
                 "plugins": [{"type": "bridge", "bridge": "cni0"}]}, **extra)


def single(name, ptype="bridge", **extra):
    return dict({"cniVersion": "0.4.0", "name": name, "type": ptype}, **extra)


# -- conf dir order -------------------------------------------------------------------


def test_config_files_lists_first_then_singles_in_byte_order(cni):
    for fname in ("b.conf", "a.json", "z.conflist", "C.conflist", "a.conflist", "10.conf",
                  "notes.txt", "x.conflist.bak", "conf", ".conf"):
        cni.write_conf(fname, "{}")
    os.mkdir(os.path.join(cni.conf_dir, "dir.conf"))  # not a regular file
    got = [os.path.basename(p) for p in config_files(cni.conf_dir)]
    assert got == ["C.conflist", "a.conflist", "z.conflist", ".conf", "10.conf", "a.json",
                   "b.conf"]


def test_config_files_missing_dir_is_empty(tmp_path):
    assert config_files(str(tmp_path / "nope")) == []


def test_conflist_wins_over_single_conf_of_same_name(cni):
    cni.write_conf("00-net.conf", single("net", ptype="single"))
    cni.write_conf("99-net.conflist", bridge("net"))
    conf = load_by_name(cni.conf_dir, "net")
    assert conf.source.endswith("99-net.conflist")
    assert [p.type for p in conf.plugins] == ["bridge"]


def test_first_file_with_a_name_wins(cni):
    cni.write_conf("20-second.conflist", bridge("net", marker=2))
    cni.write_conf("10-first.conflist", bridge("net", marker=1))
    cni.write_conf("05-first.conf", single("net"))
    assert load_by_name(cni.conf_dir, "net").raw["marker"] == 1
    lists, problems = load_all(cni.conf_dir)
    assert [c.name for c in lists] == ["net"] and problems == []


def test_load_all_returns_each_name_once(cni):
    cni.write_conf("a.conflist", bridge("one"))
    cni.write_conf("b.conflist", bridge("two"))
    cni.write_conf("c.conf", single("three"))
    cni.write_conf("d.json", single("one"))
    lists, problems = load_all(cni.conf_dir)
    assert sorted(c.name for c in lists) == ["one", "three", "two"]
    assert problems == []


def test_invalid_files_are_skipped_with_warning(cni, caplog):
    cni.write_conf("00-broken.conflist", "{not json")
    cni.write_conf("01-noname.conflist", {"cniVersion": "1.0.0", "plugins": [{"type": "x"}]})
    cni.write_conf("02-good.conflist", bridge("good"))
    with caplog.at_level(logging.WARNING, logger="cni_runner.config"):
        lists, problems = load_all(cni.conf_dir)
    assert [c.name for c in lists] == ["good"]
    paths = [os.path.basename(p) for p, _ in problems]
    assert paths == ["00-broken.conflist", "01-noname.conflist"]
    assert "not valid JSON" in problems[0][1]
    assert "name" in problems[1][1]
    text = caplog.text
    assert "00-broken.conflist" in text and "not valid JSON" in text
    assert "01-noname.conflist" in text
    # The good network is still loadable despite its broken neighbours.
    assert load_by_name(cni.conf_dir, "good").name == "good"


def test_broken_file_does_not_shadow_a_later_valid_one(cni):
    cni.write_conf("00-net.conflist", dict(bridge("net"), plugins=[{"bridge": "no type"}]))
    cni.write_conf("10-net.conflist", bridge("net", marker="ok"))
    assert load_by_name(cni.conf_dir, "net").raw["marker"] == "ok"


def test_oversized_file_is_skipped(cni):
    conf = bridge("big", padding="x" * (1 << 20))
    cni.write_conf("big.conflist", conf)
    lists, problems = load_all(cni.conf_dir)
    assert lists == [] and "larger than" in problems[0][1]


# -- load_by_name errors --------------------------------------------------------------------


def test_load_by_name_missing_names_network_and_dir(cni):
    cni.write_conf("a.conflist", bridge("other"))
    with pytest.raises(NotFoundError) as ei:
        load_by_name(cni.conf_dir, "mynet")
    msg = str(ei.value)
    assert "'mynet'" in msg and cni.conf_dir in msg
    assert isinstance(ei.value, ConfigError)


def test_load_by_name_points_at_broken_file_with_that_name(cni):
    cni.write_conf("10-mynet.conflist", '{"name": "mynet", "plugins": [}')
    cni.write_conf("20-other.conflist", "garbage")
    with pytest.raises(NotFoundError) as ei:
        load_by_name(cni.conf_dir, "mynet")
    msg = str(ei.value)
    assert "10-mynet.conflist" in msg and "not valid JSON" in msg
    assert "20-other" not in msg  # only the related file is blamed


def test_load_by_name_mentions_skipped_files(cni):
    cni.write_conf("10-a.conflist", "garbage")
    with pytest.raises(NotFoundError) as ei:
        load_by_name(cni.conf_dir, "mynet")
    assert "1 unparsable file(s)" in str(ei.value) and "10-a.conflist" in str(ei.value)


def test_load_by_name_missing_dir(tmp_path):
    with pytest.raises(NotFoundError):
        load_by_name(str(tmp_path / "none"), "net")


def test_load_by_name_rejects_invalid_name(cni):
    with pytest.raises(ConfigError):
        load_by_name(cni.conf_dir, "../etc")


# -- legacy single configs --------------------------------------------------------------------


def test_single_conf_is_wrapped_into_a_list(cni):
    raw = single("legacy", ipam={"type": "host-local", "subnet": "10.1.0.0/16"}, foo="bar")
    cni.write_conf("10-legacy.conf", raw)
    conf = load_by_name(cni.conf_dir, "legacy")
    assert conf.name == "legacy" and conf.cni_version == "0.4.0"
    assert len(conf.plugins) == 1
    assert conf.plugins[0].raw == raw  # unknown keys survive
    assert conf.raw["plugins"] == [raw]


def test_single_json_file_is_loaded(cni):
    cni.write_conf("10-legacy.json", single("legacyjson"))
    assert load_by_name(cni.conf_dir, "legacyjson").plugins[0].type == "bridge"


def test_conflist_from_bytes_detects_single_conf():
    conf = conflist_from_bytes(json.dumps(single("s")).encode())
    assert conf.name == "s" and conf.plugins[0].type == "bridge"
    conf = conflist_from_bytes(json.dumps(bridge("l")))
    assert conf.name == "l"


def test_single_conf_without_type_is_rejected(cni):
    cni.write_conf("10-x.conf", {"cniVersion": "0.4.0", "name": "x"})
    lists, problems = load_all(cni.conf_dir)
    assert lists == [] and len(problems) == 1


def test_conflist_from_bytes_rejects_garbage():
    with pytest.raises(ConfigError, match="not valid JSON"):
        conflist_from_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError):
        conflist_from_bytes(b"[1, 2]")


# -- sibling plugin folders (spec 1.1) ----------------------------------------------------------


def test_sibling_folder_plugins_are_appended(cni):
    cni.write_conf("10-net.conflist", bridge("net", cniVersion="1.1.0"))
    cni.write_conf("net/20-tuning.conf", {"type": "tuning", "mtu": 1400})
    cni.write_conf("net/10-portmap.conf", {"type": "portmap"})
    cni.write_conf("net/ignored.json", {"type": "ignored"})
    cni.write_conf("net/ignored.conflist", {"type": "ignored"})
    conf = load_by_name(cni.conf_dir, "net")
    assert [p.type for p in conf.plugins] == ["bridge", "portmap", "tuning"]
    # The list's raw form (cached for DEL) carries the folder plugins too.
    assert [p["type"] for p in conf.raw["plugins"]] == ["bridge", "portmap", "tuning"]
    assert conflist_from_bytes(conf.bytes).plugins[2].raw["mtu"] == 1400


def test_sibling_folder_may_hold_all_plugins(cni):
    cni.write_conf("10-net.conflist", {"cniVersion": "1.1.0", "name": "net"})
    cni.write_conf("net/a.conf", {"type": "bridge"})
    assert [p.type for p in load_by_name(cni.conf_dir, "net").plugins] == ["bridge"]


def test_load_only_inlined_plugins_ignores_folder(cni):
    cni.write_conf("10-net.conflist", bridge("net", loadOnlyInlinedPlugins=True))
    cni.write_conf("net/a.conf", {"type": "portmap"})
    assert [p.type for p in load_by_name(cni.conf_dir, "net").plugins] == ["bridge"]


def test_load_only_inlined_plugins_as_string(cni):
    cni.write_conf("10-net.conflist", bridge("net", loadOnlyInlinedPlugins="true"))
    cni.write_conf("net/a.conf", {"type": "portmap"})
    assert [p.type for p in load_by_name(cni.conf_dir, "net").plugins] == ["bridge"]


def test_broken_sibling_plugin_makes_list_unusable(cni):
    cni.write_conf("10-net.conflist", bridge("net"))
    cni.write_conf("net/a.conf", "{broken")
    with pytest.raises(NotFoundError, match="a.conf"):
        load_by_name(cni.conf_dir, "net")


def test_no_plugins_at_all_is_invalid():
    with pytest.raises(ConfigError, match="no plugins"):
        conflist_from_dict({"cniVersion": "1.0.0", "name": "n", "plugins": []})


def test_sibling_folder_of_other_network_is_not_used(cni):
    cni.write_conf("10-net.conflist", bridge("net"))
    cni.write_conf("other/a.conf", {"type": "portmap"})
    assert [p.type for p in load_by_name(cni.conf_dir, "net").plugins] == ["bridge"]


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "net-1", "my_net.v2", "0abc", "A" * 200])
def test_valid_names(name):
    assert validate_name(name) == name
    assert validate_container_id(name) == name


@pytest.mark.parametrize("name", ["", "-net", ".net", "_x", "a/b", "a b", "a:b", "net\n",
                                  "\nnet", "né", "a;b", None, 5])
def test_invalid_names(name):
    with pytest.raises(ConfigError):
        validate_name(name)
    with pytest.raises(ConfigError):
        validate_container_id(name)


@pytest.mark.parametrize("ifname", ["eth0", "a", "x" * 15, "veth.1", "eth-0_1", "é" * 7])
def test_valid_ifnames(ifname):
    assert validate_ifname(ifname) == ifname


@pytest.mark.parametrize("ifname", ["", "x" * 16, "é" * 8, ".", "..", "a/b", "a:b", "a b",
                                    "a\tb", "eth0\n", "a\0b", None])
def test_invalid_ifnames(ifname):
    with pytest.raises(ConfigError):
        validate_ifname(ifname)


def test_list_name_is_validated():
    with pytest.raises(ConfigError, match="invalid network name"):
        conflist_from_dict(bridge("bad/name"))
    with pytest.raises(ConfigError, match="no \"name\""):
        conflist_from_dict({"cniVersion": "1.0.0", "plugins": [{"type": "x"}]})


@pytest.mark.parametrize("value,expected", [(True, True), (False, False), ("true", True),
                                            ("false", False), ("TRUE", True), ("False", False)])
def test_disable_check_bool_or_string(value, expected):
    conf = conflist_from_dict(bridge("n", disableCheck=value, disableGC=value))
    assert conf.disable_check is expected
    assert conf.disable_gc is expected


@pytest.mark.parametrize("value", ["yes", "1", 1, None, []])
def test_disable_check_bad_values(value):
    with pytest.raises(ConfigError, match="disableCheck"):
        conflist_from_dict(bridge("n", disableCheck=value))


def test_disable_check_defaults_false():
    conf = conflist_from_dict(bridge("n"))
    assert conf.disable_check is False and conf.disable_gc is False


@pytest.mark.parametrize("ptype", ["../bridge", "/usr/lib/cni/bridge", "sub/bridge", "a\\b",
                                   ".", ".."])
def test_plugin_type_with_path_is_rejected(ptype):
    with pytest.raises(ConfigError, match="plain file name"):
        conflist_from_dict({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": ptype}]})


@pytest.mark.parametrize("plugin", [{}, {"type": ""}, {"type": 5}, "bridge", None])
def test_plugin_needs_a_type(plugin):
    with pytest.raises(ConfigError):
        conflist_from_dict({"cniVersion": "1.0.0", "name": "n", "plugins": [plugin]})


def test_plugins_must_be_a_list():
    with pytest.raises(ConfigError, match="must be a list"):
        conflist_from_dict({"cniVersion": "1.0.0", "name": "n", "plugins": {"type": "x"}})


@pytest.mark.parametrize("raw", [
    {"name": "n", "plugins": [{"type": "x"}]},                          # no version at all
    {"name": "n", "cniVersion": "1.0", "plugins": [{"type": "x"}]},
    {"name": "n", "cniVersion": 1, "plugins": [{"type": "x"}]},
    {"name": "n", "cniVersions": "1.0.0", "plugins": [{"type": "x"}]},
    {"name": "n", "cniVersions": ["1.0.0", "one"], "plugins": [{"type": "x"}]},
    [],
])
def test_bad_versions_and_shapes(raw):
    with pytest.raises(ConfigError):
        conflist_from_dict(raw)


def test_cni_versions_alone_is_enough():
    conf = conflist_from_dict({"name": "n", "cniVersions": ["1.0.0", "1.1.0"],
                               "plugins": [{"type": "x"}]})
    assert conf.offered_versions() == ["1.1.0", "1.0.0"]


def test_offered_versions_merge_and_sort():
    conf = conflist_from_dict(bridge("n", cniVersion="0.4.0", cniVersions=["1.0.0", "0.4.0"]))
    assert conf.offered_versions() == ["1.0.0", "0.4.0"]


def test_unknown_keys_and_capabilities_kept_in_plugin_raw():
    plugin = {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True,
              "nested": {"a": [1, 2]}}
    conf = conflist_from_dict({"cniVersion": "1.0.0", "name": "n", "plugins": [plugin],
                               "extra": 1})
    assert conf.plugins[0].raw == plugin
    assert json.loads(conf.bytes)["extra"] == 1


def test_load_only_inlined_plugins_bad_value():
    with pytest.raises(ConfigError, match="loadOnlyInlinedPlugins"):
        conflist_from_dict(bridge("n", loadOnlyInlinedPlugins="maybe"))


def test_may_run_at():
    from cni_runner import conflist_from_dict
    def net(**kw):
        return conflist_from_dict({"name": "n", "plugins": [{"type": "p"}], **kw})
    assert net(cniVersion="1.1.0").may_run_at("1.1.0")
    assert net(cniVersion="1.0.0", cniVersions=["1.0.0", "1.1.0"]).may_run_at("1.1.0")
    assert not net(cniVersion="1.0.0").may_run_at("1.1.0")
    assert not net(cniVersion="0.4.0").may_run_at("1.1.0")
