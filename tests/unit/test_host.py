"""host.py's parts that need no root: the port probe, the port range, iptables commands
(against a recording stand-in for iptables), netns recognition."""

import json
import os
import socket
import stat

import pytest

from cnm_bridge.host import host as host_mod
from cnm_bridge.host import hostrules, iptables, netns
from cnm_bridge.errors import HostError
from cnm_bridge.host.host import Host


def test_a_port_in_time_wait_is_free_a_listening_one_is_not():
    """A server that set SO_REUSEADDR (as most do) served a connection and stopped: its
    port is in TIME-WAIT, which Go's (docker-proxy's) listen with SO_REUSEADDR ignores."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        mapping = {"protocol": "tcp", "hostPort": port, "hostIP": "127.0.0.1"}
        assert Host().port_in_use(mapping) is True
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the host side closes first: its port goes to TIME-WAIT
        client.recv(1)
        client.close()
    assert Host().port_in_use(mapping) is False


def test_udp_port_held():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert Host().port_in_use({"protocol": "udp", "hostPort": port,
                                   "hostIP": "127.0.0.1"}) is True
    assert Host().port_in_use({"protocol": "sctp", "hostPort": port}) is False


def test_a_host_address_not_on_this_host():
    with pytest.raises(HostError, match="192.0.2.1 is not an address of this host"):
        Host().port_in_use({"protocol": "tcp", "hostPort": 8080, "hostIP": "192.0.2.1"})


@pytest.mark.parametrize("content, expected", [
    ("32768\t60999\n", (32768, 60999)), ("1024 2048", (1024, 2048)),
    ("junk", host_mod.DEFAULT_PORT_RANGE), (None, host_mod.DEFAULT_PORT_RANGE),
    ("9 1", host_mod.DEFAULT_PORT_RANGE)])
def test_ephemeral_ports(tmp_path, monkeypatch, content, expected):
    path = tmp_path / "range"
    if content is not None:
        path.write_text(content)
    monkeypatch.setattr(host_mod, "PORT_RANGE_FILE", str(path))
    assert Host().ephemeral_ports() == expected


def test_is_netns():
    assert netns.is_netns("/proc/self/ns/net") is True
    assert netns.is_netns("/etc/hostname") is False
    assert netns.is_netns("/no/such/path") is False
    assert netns.NetNS("pycni-x").path == os.path.join(netns.NETNS_DIR, "pycni-x")


FAKE_IPTABLES = """#!/bin/sh
# Records each call; "-C" finds nothing, "-n -L" finds no chain, the rest succeed,
# "-D" succeeds once per rule (state file), so removal loops end.
echo "$(basename "$0") $*" >> "{log}"
case " $* " in
  *" -C "*) exit 1 ;;
  *" -L "*) exit 1 ;;
  *" -D "*) key=$(echo "$*" | md5sum | cut -c1-8)
           [ -e "{log}.$key" ] && exit 1; touch "{log}.$key"; exit 0 ;;
esac
exit 0
"""


# iptables-save prints what a test put in "<log>.<command>-<table>".
FAKE_SAVE = """#!/bin/sh
cat "{log}.$(basename "$0" -save)-$2" 2>/dev/null
exit 0
"""


@pytest.fixture
def recorded_iptables(tmp_path, monkeypatch):
    log = tmp_path / "calls"
    for name in ("iptables", "ip6tables"):
        for path, text in ((tmp_path / name, FAKE_IPTABLES),
                           (tmp_path / f"{name}-save", FAKE_SAVE)):
            path.write_text(text.format(log=log))
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    return lambda: log.read_text().splitlines() if log.exists() else []


def saved(tmp_path, cmd, table, *lines):
    (tmp_path / f"calls.{cmd}-{table}").write_text("\n".join(lines) + "\n")


def test_install_rules_makes_chains_jumps_then_rules(recorded_iptables):
    rule = hostrules.Rule(4, "filter", "PYCNI-FORWARD", ("-i", "pc-x", "-j", "ACCEPT"))
    Host().install_rules([rule], "network x")
    calls = recorded_iptables()
    assert "iptables -w -t filter -N PYCNI-FORWARD" in calls
    assert "iptables -w -t mangle -I FORWARD 1 -m comment --comment pycni -j PYCNI-ISOLATION" \
        in calls
    assert calls[-1] == "iptables -w -t filter -A PYCNI-FORWARD -i pc-x -j ACCEPT"
    Host().remove_rules([rule])
    assert recorded_iptables()[-1].startswith("iptables -w -t filter -D PYCNI-FORWARD")
    Host().remove_base_rules(6)
    assert "ip6tables -w -t mangle -X PYCNI-ISOLATION-3" in recorded_iptables()


def test_base_chains_stay_while_another_servers_network_uses_them(recorded_iptables,
                                                                    tmp_path):
    """Two pycni servers on one host share the base chains: removing them would flush
    the other's network rules."""
    saved(tmp_path, "iptables", "filter", "-A PYCNI-FORWARD -i pc-b -m comment "
          '--comment "pycni-bbbbbbbbbbbb outbound" -j ACCEPT')
    Host().remove_base_rules(4)
    assert not [c for c in recorded_iptables() if " -X " in c or " -F " in c]
    saved(tmp_path, "iptables", "filter", "-A FORWARD -m comment --comment pycni -j PYCNI-FORWARD")
    Host().remove_base_rules(4)
    assert "iptables -w -t filter -X PYCNI-FORWARD" in recorded_iptables()


def test_rules_removed_by_their_network_tag(recorded_iptables, tmp_path):
    saved(tmp_path, "iptables", "nat",
          '-A POSTROUTING -s 10.9.0.0/24 ! -o pc-aaaaaaaaaaaa -m comment --comment '
          '"pycni-aaaaaaaaaaaa masquerade" -j MASQUERADE',
          '-A POSTROUTING -s 10.8.0.0/24 -m comment --comment "pycni-aaaaaaaaaaab x" -j ACCEPT')
    saved(tmp_path, "ip6tables", "mangle",
          '-A PYCNI-ISOLATION-2 -o pc-aaaaaaaaaaaa -m comment --comment '
          '"pycni-aaaaaaaaaaaa member" -j DROP')
    assert Host().remove_tagged_rules("pycni-aaaaaaaaaaaa") == 2
    deletes = [c for c in recorded_iptables() if " -D " in c]
    assert deletes == [
        "iptables -w -t nat -D POSTROUTING -s 10.9.0.0/24 ! -o pc-aaaaaaaaaaaa -m comment "
        "--comment pycni-aaaaaaaaaaaa masquerade -j MASQUERADE",
        "ip6tables -w -t mangle -D PYCNI-ISOLATION-2 -o pc-aaaaaaaaaaaa -m comment "
        "--comment pycni-aaaaaaaaaaaa member -j DROP"]


def test_a_rule_that_cannot_be_added_is_an_error(tmp_path, monkeypatch):
    path = tmp_path / "iptables"
    path.write_text("#!/bin/sh\necho 'iptables: No chain/target/match by that name.' >&2\n"
                    "exit 1\n")
    path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(HostError, match="cannot create chain PYCNI-FORWARD"):
        Host().install_rules([hostrules.Rule(4, "nat", "POSTROUTING", ("-j", "X"))], "n")
    with pytest.raises(iptables.IptablesError, match="network n: iptables: No chain"):
        iptables.ensure(hostrules.Rule(4, "nat", "POSTROUTING", ("-j", "X")), "network n")
    assert json.dumps(iptables.chain_command(hostrules.Chain(6, "nat", "x"))) == '"ip6tables"'


def test_bridge_netfilter_switched_on(tmp_path, monkeypatch):
    monkeypatch.setattr(host_mod, "BRIDGE_SYSCTL_DIR", str(tmp_path))
    Host().enable_bridge_netfilter()
    assert (tmp_path / "bridge-nf-call-iptables").read_text() == "1"
    assert (tmp_path / "bridge-nf-call-ip6tables").read_text() == "1"
    monkeypatch.setattr(host_mod, "BRIDGE_SYSCTL_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no modprobe either
    with pytest.raises(HostError, match="br_netfilter"):
        Host().enable_bridge_netfilter()


def test_rtnl_reads_without_root():
    from cnm_bridge.host import rtnl
    assert "lo" in rtnl.link_names()
    assert rtnl.link_mac("lo") == "00:00:00:00:00:00"
    assert rtnl.link_mac("nosuchlink0") == ""
    attr = rtnl._attr(3, b"eth0\0")
    assert len(attr) % 4 == 0 and attr[:4] == b"\x09\x00\x03\x00"
