"""names.py: what pycni calls what it makes."""

import pytest

from cnm_bridge import names
from cnm_bridge.network.options import IFNAME_RE

NID = "3f" * 32
EID = "a1b2c3d4e5f6" + "0" * 52


def test_name_helpers():
    assert names.cni_network_name(NID) == "pycni-" + NID[:12]
    assert names.bridge_name(NID) == "pc-" + NID[:12]
    assert names.netns_name(EID) == "pycni-" + EID
    assert names.tmp_ifname(EID) == "pyc" + EID[:12]
    assert names.rule_tag(NID) == "pycni-" + NID[:12]
    assert names.ports_network_name("x" * 200) == "x" * 120 + "-ports"


@pytest.mark.parametrize("fn", [names.bridge_name, names.tmp_ifname])
def test_interface_names_fit_the_kernel_limit(fn):
    for ident in (NID, EID, "f" * 64, "0" * 64):
        name = fn(ident)
        assert 1 <= len(name.encode()) <= 15
        assert IFNAME_RE.fullmatch(name)


def test_netns_name_is_a_plain_file_name():
    assert "/" not in names.netns_name(EID) and names.netns_name(EID) not in (".", "..")
