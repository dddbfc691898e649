"""hostrules.py: a network's spec -> the iptables rules pycni keeps for it."""

import pytest

from cnm_bridge.network import conflists, netspec
from cnm_bridge.host import hostrules
from cnm_bridge import names
from cnm_bridge.network.options import plan_network
from dockercalls import create_network

NID = "3f" * 32
TAG = names.rule_tag(NID)


def spec_for(options=None, internal=False, v6=None, named=None):
    req = create_network(options=options, internal=internal, v6=v6, nid=NID)
    plan = plan_network(req.generic)
    if named is not None:
        raw = named
    else:
        raw = conflists.generate(names.cni_network_name(NID), names.bridge_name(NID), plan,
                                 req.ipv4_data, req.ipv6_data, internal)
    bridge = conflists.bridge_of(raw)
    return netspec.make_spec(NID, plan, raw, req.ipv4_data, req.ipv6_data, internal,
                             req.ipv6, "docker", owned_links=[bridge] if bridge else [])


def lines(rules):
    return [f"{r.command} -t {r.table} {'-I' if r.head else '-A'} {r.chain} {' '.join(r.args)}"
            for r in rules]


def test_generated_bridge_rules():
    br = names.bridge_name(NID)
    got = lines(hostrules.network_rules(spec_for()))
    assert got == [
        f'iptables -t nat -A POSTROUTING -s 10.50.0.0/24 ! -o {br} -m comment --comment '
        f'{TAG} masquerade -j MASQUERADE',
        f'iptables -t filter -A PYCNI-FORWARD -o {br} -m conntrack --ctstate RELATED,ESTABLISHED '
        f'-m comment --comment {TAG} replies -j ACCEPT',
        f'iptables -t filter -A PYCNI-FORWARD -o {br} -m conntrack --ctstate DNAT -m comment '
        f'--comment {TAG} published ports -j ACCEPT',
        f'iptables -t filter -A PYCNI-FORWARD -i {br} -m comment --comment {TAG} outbound '
        f'-j ACCEPT',
        f'iptables -t mangle -A PYCNI-ISOLATION -i {br} ! -o {br} -m comment --comment {TAG} '
        f'isolation -j PYCNI-ISOLATION-2',
        f'iptables -t mangle -A PYCNI-ISOLATION -o {br} ! -i {br} -m comment --comment {TAG} '
        f'isolation -j PYCNI-ISOLATION-3',
        f'iptables -t mangle -A PYCNI-ISOLATION-2 -o {br} -m comment --comment {TAG} member '
        f'-j DROP',
        f'iptables -t mangle -A PYCNI-ISOLATION-3 -i {br} -m comment --comment {TAG} member '
        f'-j DROP',
    ]


def test_no_rule_grows_with_containers():
    # Everything is per network: the spec, not the endpoints, decides the rules.
    assert all(TAG in " ".join(r.args) for r in hostrules.network_rules(spec_for()))


def test_internal_network_drops_traffic_leaving_and_entering():
    got = lines(hostrules.network_rules(spec_for(internal=True)))
    assert not [ln for ln in got if "MASQUERADE" in ln or "outbound" in ln or "DNAT" in ln]
    assert [ln for ln in got if "internal -j DROP" in ln and "! -o" in ln]
    assert [ln for ln in got if "internal -j DROP" in ln and "! -i" in ln]


def test_icc_false_and_masquerade_false():
    got = lines(hostrules.network_rules(spec_for({
        "com.docker.network.bridge.enable_icc": "false",
        "com.docker.network.bridge.enable_ip_masquerade": "false"})))
    br = names.bridge_name(NID)
    assert f"iptables -t mangle -A PYCNI-ISOLATION -i {br} -o {br} -m comment --comment " \
           f"{TAG} enable_icc=false -j DROP" in got
    assert not [ln for ln in got if "MASQUERADE" in ln]


def test_dual_stack_rules_in_both_families():
    rules = hostrules.network_rules(spec_for(v6=("fd50::/64", "fd50::1")))
    assert {r.family for r in rules} == {4, 6}
    assert [ln for ln in lines(rules) if ln.startswith("ip6tables -t nat") and "fd50::/64" in ln]
    assert hostrules.families_in_use([spec_for(v6=("fd50::/64", "fd50::1"))]) == [4, 6]


def test_ptp_rules_by_subnet():
    got = lines(hostrules.network_rules(spec_for({"cni.type": "ptp"})))
    assert "iptables -t filter -A PYCNI-FORWARD -s 10.50.0.0/24 -m comment --comment " \
           f"{TAG} outbound -j ACCEPT" in got
    assert f"iptables -t nat -A POSTROUTING -s 10.50.0.0/24 ! -d 10.50.0.0/24 -m comment " \
           f"--comment {TAG} masquerade -j MASQUERADE" in got


def test_named_list_keeps_its_authors_rules_but_is_isolated_from():
    raw = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge", "bridge": "cni7"},
                                                            {"type": "firewall"}]}
    got = lines(hostrules.network_rules(spec_for(named=raw, options={"cni.network": "n"})))
    # Only membership: zero-config networks drop traffic to and from its bridge.
    assert got == [
        f"iptables -t mangle -A PYCNI-ISOLATION-2 -o cni7 -m comment --comment {TAG} member "
        "-j DROP",
        f"iptables -t mangle -A PYCNI-ISOLATION-3 -i cni7 -m comment --comment {TAG} member "
        "-j DROP"]


def test_a_bridge_the_host_had_is_not_a_member():
    raw = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge", "bridge": "br0"},
                                                            {"type": "firewall"}]}
    req = create_network(options={"cni.network": "n"}, nid=NID)
    spec = netspec.make_spec(NID, plan_network(req.generic), raw, req.ipv4_data, [], False,
                             False, "docker", owned_links=[])  # br0 existed: the uplink
    assert hostrules.network_rules(spec) == []


def test_a_named_list_without_firewall_forwards_like_a_host_without_docker():
    raw = {"cniVersion": "0.2.0", "name": "mynet", "plugins": [
        {"type": "bridge", "bridge": "cni0", "ipMasq": True}]}
    got = lines(hostrules.network_rules(spec_for(named=raw, options={"cni.network": "mynet"})))
    assert "iptables -t filter -A PYCNI-FORWARD -i cni0 -m comment --comment " \
           f"{TAG} outbound -j ACCEPT" in got
    assert not [ln for ln in got if "MASQUERADE" in ln or "PYCNI-ISOLATION " in ln]


def test_base_rules_jump_first_and_cover_dockers_bridges():
    got = lines(hostrules.base_rules(4))
    assert "iptables -t filter -I FORWARD -m comment --comment pycni -j PYCNI-FORWARD" in got
    assert "iptables -t mangle -I FORWARD -m comment --comment pycni -j PYCNI-ISOLATION" in got
    assert "iptables -t mangle -I PYCNI-ISOLATION -m conntrack --ctstate DNAT -m comment " \
           "--comment pycni -j RETURN" in got
    for pattern in ("docker+", "br-+"):
        assert f"iptables -t mangle -A PYCNI-ISOLATION-2 -o {pattern} -m comment --comment " \
               "pycni -j DROP" in got
    assert {c.name for c in hostrules.base_chains(6)} == {
        "PYCNI-FORWARD", "PYCNI-ISOLATION", "PYCNI-ISOLATION-2", "PYCNI-ISOLATION-3"}


def test_chains_of():
    rules = hostrules.network_rules(spec_for())
    assert {c.name for c in hostrules.chains_of(rules)} == {
        "PYCNI-FORWARD", "PYCNI-ISOLATION", "PYCNI-ISOLATION-2", "PYCNI-ISOLATION-3"}


@pytest.mark.parametrize("family, cmd", [(4, "iptables"), (6, "ip6tables")])
def test_rule_command(family, cmd):
    assert hostrules.Rule(family, "nat", "X", ()).command == cmd
