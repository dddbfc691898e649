"""The operator commands' logic without root: render, status, inspection, doctor's checks
(against recording stand-ins for iptables), the CLI's dispatch."""

import json
import os
import stat

import pytest

from cnm_bridge import cli, doctor, inspection, render, status
from dockercalls import create_network, run


def test_render_table_json_and_template():
    rows = [{"Container": "a", "Ports": ["1", "2"], "Nested": {"X": 1}, "Empty": ""}]
    table = render.render(rows, columns=["Container", "Ports", "Empty"])
    assert table.splitlines()[0].split() == ["CONTAINER", "PORTS", "EMPTY"]
    assert "1, 2" in table and table.splitlines()[1].rstrip().endswith("-")
    assert json.loads(render.render(rows, as_json=True)) == rows
    assert json.loads(render.render(rows, single=True)) == rows[0]
    assert render.render(rows, template="{{.Container}}\\t{{.Nested.X}} {{json .Ports}}") \
        == 'a\t1 ["1", "2"]'
    assert render.apply_template("{{ .Nope }}|{{json .}}", {"a": 1}) == '|{"a": 1}'
    assert render.table([], ["CNINetwork"]).strip() == "CNI NETWORK"


class FakeDocker:
    def __init__(self, networks=None, containers=None, names=None):
        self._networks = networks or {}
        self._containers = containers or {}
        self._names = names or {}

    def network(self, ref):
        return self._networks.get(ref)

    def networks(self):
        return [dict(v, Id=k) for k, v in self._networks.items()]

    def endpoint_names(self):
        return self._names

    def container(self, ref):
        return self._containers.get(ref)


def test_status_collects_networks_and_endpoints(side):
    req = create_network()
    side.driver.create_network(req)
    eid, _, _ = run(side.driver, req.network_id)
    docker = FakeDocker({req.network_id: {"Name": "net1", "Id": req.network_id}},
                        names={eid: "web"})
    data = status.collect(side.settings, docker)
    assert data["Server"]["Answering"] is False  # no server on this socket
    [n] = data["Networks"]
    assert (n["Network"], n["Endpoints"], n["Subnets"]) == ("net1", 1, ["10.50.0.0/24"])
    [e] = data["Endpoints"]
    assert (e["Container"], e["Addresses"], e["State"], e["Attach"]) == (
        "web", ["10.50.0.5/24"], "ready", "handoff eth0")


def test_status_command_output(side, capsys):
    class Opts:
        json, format = False, None
    assert status.run_status(side.settings, Opts(), docker=FakeDocker()) == 1
    out = capsys.readouterr().out
    assert "NOT answering" in out and "Pending deferred DELs: 0" in out
    Opts.json = True
    status.run_status(side.settings, Opts(), docker=FakeDocker())
    assert json.loads(capsys.readouterr().out)["PendingDeletes"] == 0


def test_find_and_describe_network(side):
    req = create_network(options={"cni.type": "ptp"})
    side.driver.create_network(req)
    spec = inspection.find_network(side.store, FakeDocker(
        {"mynet": {"Id": req.network_id}}), "mynet")
    assert spec.id == req.network_id
    assert inspection.find_network(side.store, None, req.network_id[:6]).id == req.network_id
    assert inspection.find_network(side.store, None, spec.cni_name).id == req.network_id
    with pytest.raises(inspection.LookupFailed, match="no pycni network"):
        inspection.find_network(side.store, None, "zzz")
    d = inspection.describe_network(spec, "mynet")
    changes = " ".join(d["Changes"])
    assert "tuning (capability mac)" in changes and "generated" in changes
    assert d["PortsList"]["name"].endswith("-ports")


def test_check_container(side):
    sandbox = "/var/run/docker/netns/abc"
    side.host.add_sandbox(sandbox)
    req = create_network()
    side.driver.create_network(req)
    direct, _, _ = run(side.driver, req.network_id, sandbox_key=sandbox)
    handed, _, _ = run(side.driver, req.network_id, address="10.50.0.6/24")
    docker = FakeDocker(containers={"c": {"NetworkSettings": {"Networks": {
        "n1": {"EndpointID": direct}, "n2": {"EndpointID": handed},
        "other": {"EndpointID": "ff" * 32}}}}})
    rows = {r["Network"]: r for r in inspection.check_container(side.graph, docker, "c")}
    assert rows["n1"]["Result"] == "ok" and side.cni.calls("CHECK", "bridge")
    assert rows["n2"]["Result"] == "not checked" and "handoff" in rows["n2"]["Detail"]
    side.cni.behave("bridge", CHECK={"error": {"code": 999, "msg": "eth0 has no 10.50.0.5"}})
    rows = {r["Network"]: r for r in inspection.check_container(side.graph, docker, "c")}
    assert rows["n1"]["Result"] == "failed" and "no 10.50.0.5" in rows["n1"]["Detail"]
    with pytest.raises(inspection.LookupFailed, match="no such container"):
        inspection.check_container(side.graph, docker, "nope")


def write_tool(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_doctor_iptables_backend_mismatch(tmp_path, monkeypatch):
    write_tool(tmp_path, "iptables", 'echo "iptables v1.8.9 (nf_tables)"\n')
    write_tool(tmp_path, "iptables-legacy-save", 'printf -- "-A FORWARD -j X\\n-A X -j Y\\n"\n')
    write_tool(tmp_path, "iptables-nft-save", "true\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    [f] = doctor.check_iptables_backend()
    assert not f.ok and "legacy" in f.detail
    assert f.fix == "update-alternatives --set iptables /usr/sbin/iptables-legacy (and ip6tables)"
    write_tool(tmp_path, "iptables-nft-save", 'printf -- "-A A\\n-A B\\n-A C\\n"\n')
    [f] = doctor.check_iptables_backend()
    assert f.ok


def test_doctor_plugins_and_conflists(side):
    from cni_runner.invoke import VersionProber
    prober = VersionProber(timeout=10)
    found = {f.check: f for f in doctor.check_plugins(side.settings, prober)}
    assert all(f.ok for f in found.values())
    os.unlink(os.path.join(side.cni.bin_dir, "static"))
    found = {f.check: f for f in doctor.check_plugins(side.settings, prober)}
    assert not found["CNI plugin static"].ok
    side.cni.write_conf("10-a.conflist", {"cniVersion": "1.0.0", "name": "x",
                                          "plugins": [{"type": "nosuch"}]})
    side.cni.write_conf("20-b.conflist", {"cniVersion": "1.0.0", "name": "x",
                                          "plugins": [{"type": "bridge"}]})
    found = {f.check: f for f in doctor.check_conflists(side.settings, prober)}
    assert "'nosuch' not found" in found["conflist 10-a.conflist"].detail
    assert "never used" in found["conflist 20-b.conflist"].detail


def test_doctor_leftovers_and_state(side):
    req = create_network()
    side.driver.create_network(req)
    eid, _, _ = run(side.driver, req.network_id)
    ep = side.store.get_endpoint(eid)
    found = doctor.check_leftovers(side.store, [ep.tmp_ifname, "pycaaaaaaaaaaaa", "eth0"],
                                   [ep.netns, "pycni-stray"])
    checks = {f.check: f for f in found}
    assert checks["leftover links"].detail.endswith("pycaaaaaaaaaaaa")
    assert checks["leftover netns"].fix == "ip netns del pycni-stray"
    assert doctor.check_leftovers(side.store, [ep.tmp_ifname], [ep.netns])[0].ok
    os.chmod(side.settings.conf_dir, 0o777)
    [f] = doctor.check_state_dirs(side.settings)
    assert not f.ok and "chmod go-w" in f.detail


def test_doctor_forgotten_endpoints(side):
    req = create_network()
    side.driver.create_network(req)
    eid, _, _ = run(side.driver, req.network_id)
    [f] = doctor.check_forgotten(side.store, FakeDocker({req.network_id: {"Containers": {}}}))
    assert not f.ok and eid[:12] in f.detail
    [f] = doctor.check_forgotten(side.store, FakeDocker({}))
    assert "network" in f.detail
    assert doctor.check_forgotten(side.store, None) == []


def test_cli_refuses_unsafe_dirs_and_unknown_commands(tmp_path, capsys):
    conf = tmp_path / "conf"
    conf.mkdir()
    os.chmod(conf, 0o777)
    rc = cli.main(["status", "--conf-dir", str(conf), "--state-dir", str(tmp_path / "s")])
    assert rc == 2 and "writable by group or others" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["nosuchcommand"])
