"""Result validation and conversion between 0.2.0, 0.3.x, 0.4.0, 1.0.0 and 1.1.0."""

import copy
import json

import pytest

from cni_runner import ResultError, convert
from cni_runner.result import normalize, render

R110 = {
    "cniVersion": "1.1.0",
    "interfaces": [
        {"name": "cni0", "mac": "0a:58:0a:16:00:01"},
        {"name": "eth0", "mac": "0a:58:0a:16:00:05", "sandbox": "/run/netns/x", "mtu": 1450,
         "socketPath": "/run/vhost.sock", "pciID": "0000:00:1f.6"},
    ],
    "ips": [
        {"address": "10.22.0.5/16", "gateway": "10.22.0.1", "interface": 1},
        {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 1},
    ],
    "routes": [
        {"dst": "0.0.0.0/0", "gw": "10.22.0.1", "mtu": 1400, "advmss": 1360, "priority": 10,
         "table": 100, "scope": 0},
        {"dst": "::/0"},
    ],
    "dns": {"nameservers": ["10.22.0.1"], "search": ["example.org"]},
}

R040 = {
    "cniVersion": "0.4.0",
    "interfaces": [{"name": "cni0", "mac": "0a:58:0a:16:00:01"},
                   {"name": "eth0", "mac": "0a:58:0a:16:00:05", "sandbox": "/run/netns/x"}],
    "ips": [{"version": "4", "address": "10.22.0.5/16", "gateway": "10.22.0.1", "interface": 1},
            {"version": "6", "address": "fd00::5/64", "gateway": "fd00::1", "interface": 1}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.22.0.1"}, {"dst": "::/0"}],
    "dns": {"nameservers": ["10.22.0.1"], "search": ["example.org"]},
}

R020 = {
    "cniVersion": "0.2.0",
    "ip4": {"ip": "10.22.0.5/16", "gateway": "10.22.0.1",
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.22.0.1"}]},
    "ip6": {"ip": "fd00::5/64", "gateway": "fd00::1", "routes": [{"dst": "::/0"}]},
    "dns": {"nameservers": ["10.22.0.1"]},
}


def test_110_to_100_drops_11_fields():
    out = convert(R110, "1.0.0")
    assert out["cniVersion"] == "1.0.0"
    eth0 = out["interfaces"][1]
    assert eth0 == {"name": "eth0", "mac": "0a:58:0a:16:00:05", "sandbox": "/run/netns/x"}
    assert out["routes"][0] == {"dst": "0.0.0.0/0", "gw": "10.22.0.1"}
    assert all("version" not in ip for ip in out["ips"])
    assert out["dns"] == R110["dns"]


def test_110_to_110_keeps_everything():
    assert convert(R110, "1.1.0") == R110


def test_input_is_not_modified():
    before = copy.deepcopy(R110)
    convert(R110, "0.2.0")
    convert(R110, "0.4.0")
    assert R110 == before


@pytest.mark.parametrize("target", ["0.3.0", "0.3.1", "0.4.0"])
def test_to_03x_04x_adds_ip_version(target):
    out = convert(R110, target)
    assert out["cniVersion"] == target
    assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
    assert "mtu" not in out["interfaces"][1] and "table" not in out["routes"][0]
    assert out["ips"][0]["interface"] == 1


def test_040_to_100_drops_ip_version():
    out = convert(R040, "1.0.0")
    assert out["cniVersion"] == "1.0.0"
    assert out["ips"] == [
        {"address": "10.22.0.5/16", "gateway": "10.22.0.1", "interface": 1},
        {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 1}]
    assert out["interfaces"] == R040["interfaces"]


def test_040_to_110_and_back():
    up = convert(R040, "1.1.0")
    assert up["cniVersion"] == "1.1.0"
    assert convert(up, "0.4.0") == R040


def test_031_to_040():
    r031 = dict(R040, cniVersion="0.3.1")
    assert convert(r031, "0.4.0") == R040


def test_to_020_uses_ip4_ip6_blocks():
    out = convert(R110, "0.2.0")
    assert out == {
        "cniVersion": "0.2.0",
        "ip4": {"ip": "10.22.0.5/16", "gateway": "10.22.0.1",
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.22.0.1"}]},
        "ip6": {"ip": "fd00::5/64", "gateway": "fd00::1", "routes": [{"dst": "::/0"}]},
        "dns": R110["dns"],
    }
    assert "interfaces" not in out and "ips" not in out


def test_to_020_one_address_per_family():
    res = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}, {"address": "10.0.1.2/24"}]}
    out = convert(res, "0.2.0")
    assert out == {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}}


def test_from_020_to_100():
    out = convert(R020, "1.0.0")
    assert out["cniVersion"] == "1.0.0"
    assert out["interfaces"] == []
    assert out["ips"] == [{"address": "10.22.0.5/16", "gateway": "10.22.0.1"},
                          {"address": "fd00::5/64", "gateway": "fd00::1"}]
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.22.0.1"}, {"dst": "::/0"}]
    assert out["dns"] == {"nameservers": ["10.22.0.1"]}


def test_from_020_to_040_has_versions():
    out = convert(R020, "0.4.0")
    assert [ip["version"] for ip in out["ips"]] == ["4", "6"]


def test_020_round_trip():
    assert convert(convert(R020, "1.1.0"), "0.2.0") == R020


def test_020_ip6_only():
    res = {"cniVersion": "0.2.0", "ip6": {"ip": "fd00::2/64"}}
    assert convert(res, "1.0.0")["ips"] == [{"address": "fd00::2/64"}]


@pytest.mark.parametrize("src", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
@pytest.mark.parametrize("dst", ["0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_every_pair_converts_and_validates(src, dst):
    raw = convert(R110, src)
    out = convert(raw, dst)
    assert out["cniVersion"] == dst
    # What we hand out must itself be a valid result of its version.
    assert normalize(out, dst)["cniVersion"] == dst
    if dst != "0.2.0":
        assert [ip["address"] for ip in out["ips"]] == ["10.22.0.5/16", "fd00::5/64"]


def test_empty_dns_dropped_when_rendering():
    out = convert({"cniVersion": "1.0.0", "ips": [], "dns": {}}, "1.0.0")
    assert "dns" not in out


def test_null_lists_become_empty():
    out = normalize({"cniVersion": "1.0.0", "interfaces": None, "ips": None, "routes": None},
                    "1.0.0")
    assert out["interfaces"] == [] and out["ips"] == [] and out["routes"] == []


def test_missing_cni_version_uses_default():
    assert normalize({"ips": []}, "0.4.0")["cniVersion"] == "0.4.0"


def test_normalize_accepts_bytes_and_str():
    assert normalize(json.dumps(R040).encode(), "0.4.0")["cniVersion"] == "0.4.0"
    assert normalize(json.dumps(R040), "0.4.0")["cniVersion"] == "0.4.0"


@pytest.mark.parametrize("bad,match", [
    (b"not json", "not valid JSON"),
    (b"[]", "JSON object"),
    ({"cniVersion": "9.0.0"}, "unsupported cniVersion"),
    ({"cniVersion": "x"}, "invalid cniVersion"),
    ({"cniVersion": "1.0.0", "ips": {}}, "must be a list"),
    ({"cniVersion": "1.0.0", "interfaces": [{"mac": "x"}]}, "interfaces\\[0\\]"),
    ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1"}]}, "ips\\[0\\].address"),
    ({"cniVersion": "1.0.0", "ips": [{"address": "300.0.0.1/24"}]}, "invalid CIDR"),
    ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/24", "gateway": "x"}]}, "gateway"),
    ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/24", "interface": 0}]},
     "out of range"),
    ({"cniVersion": "1.0.0", "interfaces": [{"name": "a"}],
      "ips": [{"address": "10.0.0.1/24", "interface": 1}]}, "out of range"),
    ({"cniVersion": "1.0.0", "interfaces": [{"name": "a"}],
      "ips": [{"address": "10.0.0.1/24", "interface": -1}]}, "out of range"),
    ({"cniVersion": "1.0.0", "routes": [{"gw": "10.0.0.1"}]}, "routes\\[0\\].dst"),
    ({"cniVersion": "1.0.0", "routes": [{"dst": "0.0.0.0/0", "gw": "nope"}]}, "routes\\[0\\].gw"),
    ({"cniVersion": "1.0.0", "dns": ["8.8.8.8"]}, "dns"),
    ({"cniVersion": "0.2.0", "ip4": "10.0.0.1/24"}, "ip4"),
])
def test_invalid_results(bad, match):
    with pytest.raises(ResultError, match=match):
        normalize(bad, "1.0.0")


def test_interface_index_in_range_ok():
    res = {"cniVersion": "1.0.0", "interfaces": [{"name": "a"}, {"name": "b"}],
           "ips": [{"address": "10.0.0.1/24", "interface": 1}]}
    assert normalize(res, "1.0.0")["ips"][0]["interface"] == 1


def test_render_keeps_unknown_fields():
    res = normalize({"cniVersion": "1.0.0", "ips": [], "x-vendor": {"a": 1}}, "1.0.0")
    assert render(res, "1.0.0")["x-vendor"] == {"a": 1}
