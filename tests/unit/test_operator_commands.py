"""The operator commands' logic without root: render, status, inspection, doctor's checks
(against recording stand-ins for iptables), the CLI's dispatch."""

import json
import os
import stat

import pytest

from cnm_bridge import cli
from cnm_bridge.ops import doctor, inspection, render, status
from dockercalls import V11, create_network, named_network, run


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
    req = create_network(options={"cni.attach": "direct"})
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


def test_doctor_shows_each_networks_cni_status(side):
    for plugin in ("bridge", "portmap"):
        side.cni.behave(plugin, versions=V11)
    nets = {name: named_network(side, name, version,
                                [{"type": "bridge" if name != "down11" else "portmap"}])
            for name, version in (("ok11", "1.1.0"), ("down11", "1.1.0"), ("old", "1.0.0"))}
    side.cni.behave("portmap", versions=V11, STATUS={"error": {
        "code": 51, "msg": "nftables table cni_hostport missing"}})
    found = doctor.check_cni_status(side.store.networks(), side.runtime)
    summary = found[0]
    assert summary.ok and "ready: ok11" in summary.detail
    assert "n/a (below CNI 1.1.0): old" in summary.detail
    generated = create_network(subnet="10.51.0.0/24", gateway="10.51.0.1")
    side.driver.create_network(generated)
    [bad] = [f for f in doctor.check_cni_status(side.store.networks(), side.runtime)
             if not f.ok]
    assert bad.check == f"CNI STATUS down11 ({nets['down11'].network_id[:12]})"
    assert "portmap cannot add: nftables table cni_hostport missing [code 51]" in bad.detail
    assert "docker run" in bad.fix
    assert doctor.check_cni_status([], side.runtime) == []


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


# -- doctor's checks with stand-ins for dockerd and the host -----------------------------------

class FakeClientAPI:
    def __init__(self, fail=None):
        self.fail = fail
        self.made = []

    def create_network(self, name, driver, ipam):
        if self.fail:
            raise RuntimeError(self.fail)
        self.made.append(name)
        return {"Id": "n1"}

    def remove_network(self, nid):
        self.made.remove(self.made[0])

    def info(self):
        return {"Swarm": {"LocalNodeState": "active"}}

    def version(self):
        return {"Version": "28.5.2", "ApiVersion": "1.51"}

    def inspect_network(self, nid):
        return {"Id": nid}

    def networks(self):
        return [{"Id": "n1", "Name": "net1"}]

    def containers(self, all=True):
        return [{"Names": ["/web"], "NetworkSettings": {"Networks": {"n": {"EndpointID": "e1"}}}}]

    def inspect_container(self, ref):
        return {"Name": ref}


class FakeClient:
    def __init__(self, fail=None):
        self.api = FakeClientAPI(fail)


def test_doctor_dockerd_probe_and_its_fixes():
    from cnm_bridge.ops.dockerapi import DockerAPI
    ok = DockerAPI(FakeClient())
    found = {f.check: f for f in doctor.check_dockerd(ok, "pycni")}
    assert found["dockerd running"].detail == "Docker 28.5.2" and found["dockerd uses pycni"].ok
    assert ok.client.api.made == []  # the probe network is gone again
    for msg, fix in (('plugin "pycni" not found', "/run/docker/plugins/pycni.sock"),
                     ("error looking up IPAM driver", "restart dockerd"),
                     ("something else", "dockerd's log")):
        [_, f] = doctor.check_dockerd(DockerAPI(FakeClient(msg)), "pycni")
        assert not f.ok and fix in f.fix
    [f] = doctor.check_dockerd(None, "pycni")
    assert not f.ok and "systemctl start docker" in f.fix


def test_doctor_swarm_note(tmp_path):
    from cnm_bridge.ops.dockerapi import DockerAPI
    from cnm_bridge.settings import Settings
    legacy = Settings(socket="/run/docker/plugins/pycni.sock")
    [f] = doctor.check_swarm(DockerAPI(FakeClient()), legacy)
    assert "legacy plugin" in f.detail and "managed plugin" in f.fix
    [f] = doctor.check_swarm(DockerAPI(FakeClient()), Settings(socket="/run/p/pycni.sock"))
    assert "managed plugin" in f.detail
    assert doctor.check_swarm(None, legacy) == []


def test_doctor_netfilter_and_rules(side, monkeypatch):
    req = create_network(options={"com.docker.network.bridge.enable_icc": "false"})
    side.driver.create_network(req)
    monkeypatch.setattr(doctor, "_read", lambda path: "0")
    calls = []

    def run(*cmd, timeout=60):
        import subprocess
        calls.append(cmd)
        out = ":FORWARD DROP [0:0]\n" if cmd[0] == "iptables-save" else ""
        return subprocess.CompletedProcess(cmd, 1 if "-C" in cmd else 0, out, "")
    monkeypatch.setattr(doctor, "_run", run)
    found = {f.check: f for f in doctor.check_netfilter(side.store.networks())}
    assert not found["br_netfilter"].ok and "enable_icc=false" in found["br_netfilter"].detail
    assert not found["pycni's iptables rules"].ok
    assert "FORWARD policy DROP" in found["pycni's iptables rules"].detail


def test_doctor_server_and_report(side, capsys, monkeypatch):
    [f] = doctor.check_server(side.settings)
    assert not f.ok and "start it" in f.fix

    class Opts:
        json, format, driver = False, None, "pycni"

    class ReachableDocker(FakeDocker):
        # dockerd answers, pycni does not: dockerd is not asked to use pycni. (A stand-in:
        # whether this host runs a dockerd must not decide the test.)
        def version(self):
            return {"Version": "28.0.0"}

        def info(self):
            return {"Swarm": {}}
    monkeypatch.setattr("cnm_bridge.ops.dockerapi.DockerAPI.connect",
                        classmethod(lambda cls, timeout=10: ReachableDocker()))
    monkeypatch.setattr(doctor, "check_iptables_backend", lambda: [])
    monkeypatch.setattr(doctor, "check_netfilter", lambda specs: [])
    monkeypatch.setattr(doctor, "check_orphan_rules", lambda store, tags: [])
    rc = doctor.run_doctor(side.settings, Opts(), docker=None)
    out = capsys.readouterr().out
    assert rc == 1 and "PROBLEM" in out and "not asked" in out
    Opts.json = True
    doctor.run_doctor(side.settings, Opts(), docker=None)
    assert json.loads(capsys.readouterr().out)[0]["check"] == "pycni serving"


def test_dockerapi_reads(monkeypatch):
    from cnm_bridge.ops.dockerapi import DockerAPI
    api = DockerAPI(FakeClient())
    assert api.network("n1") == {"Id": "n1"}
    assert api.networks()[0]["Name"] == "net1"
    assert api.endpoint_names() == {"e1": "web"}
    assert api.container("c") == {"Name": "c"}
    assert api.info()["Swarm"] and api.version()["ApiVersion"] == "1.51"
    import docker
    seen = {}
    monkeypatch.setattr(docker, "from_env", lambda **kw: seen.update(kw) or FakeClient())
    DockerAPI.connect(timeout=3)
    assert seen == {"version": "auto", "timeout": 3}


# -- the command line ------------------------------------------------------------------------

@pytest.fixture
def no_dockerd(monkeypatch):
    from cnm_bridge.ops import dockerapi

    def refuse(cls, timeout=10):
        raise ConnectionError("no dockerd here")
    monkeypatch.setattr(dockerapi.DockerAPI, "connect", classmethod(refuse))


def dirs(side):
    return ["--state-dir", side.settings.state_dir, "--conf-dir", side.settings.conf_dir,
            "--bin-dir", side.cni.bin_dir, "--socket", side.settings.socket]


def test_cli_status_inspect_check_ports_gc(side, capsys, no_dockerd, monkeypatch):
    # `pycni gc` builds its graph with the real host; here it gets the fake one.
    monkeypatch.setattr("cnm_bridge.compose.Host", lambda **kw: side.host)
    req = create_network()
    side.driver.create_network(req)
    run(side.driver, req.network_id)
    assert cli.main(["status", "--json", *dirs(side)]) == 1  # no server answers
    assert json.loads(capsys.readouterr().out)["Endpoints"][0]["State"] == "ready"
    assert cli.main(["inspect", req.network_id[:12], *dirs(side)]) == 0
    assert json.loads(capsys.readouterr().out)["Mode"] == "generated"
    assert cli.main(["inspect", req.network_id[:12], "--format", "{{.Mode}}", *dirs(side)]) == 0
    assert capsys.readouterr().out.strip() == "generated"
    assert cli.main(["inspect", "nope", *dirs(side)]) == 1
    assert "no pycni network" in capsys.readouterr().err
    assert cli.main(["check", "web", *dirs(side)]) == 1
    assert "cannot reach dockerd" in capsys.readouterr().err
    assert cli.main(["ports", *dirs(side)]) == 0
    assert "CONTAINER" in capsys.readouterr().out
    assert cli.main(["gc", *dirs(side)]) == 1
    assert "cannot reach dockerd" in capsys.readouterr().err


def test_cli_bad_scope(monkeypatch, capsys):
    monkeypatch.setenv("PYCNI_SCOPE", "everywhere")
    assert cli.main(["status"]) == 2 and "PYCNI_SCOPE" in capsys.readouterr().err


def test_app_and_server_wiring(side, monkeypatch):
    from cnm_bridge import app as app_mod
    from cnm_bridge.docker import server
    app = app_mod.make_app(side.settings, host=side.host)
    resp = app.test_client().post("/Plugin.Activate", data=b"")
    assert resp.get_json()["Implements"] == ["NetworkDriver", "IpamDriver"]
    assert resp.headers["X-Pycni-Move-Ms"] == "0.00"
    seen = {}
    monkeypatch.setattr(server._Server, "run", lambda self: seen.update(self.options))
    server.serve(side.settings, lambda: app)
    assert seen["workers"] == 1 and seen["umask"] == 0o077
    assert seen["bind"] == [f"unix:{side.settings.socket}"]

    class Worker:
        wsgi = app
    server._drain_deleter(Worker())  # nothing pending: returns
    started = []
    monkeypatch.setattr("cnm_bridge.network.reconcile.background",
                        lambda interval, argv: started.append(argv))
    worker = Worker()
    server._worker_started(side.settings)(worker)
    assert started and started[0][3] == "gc"
    # After each request the trimmer hears of it (a trim follows once calls stop).
    assert worker.pycni_trimmer.due_in() is None
    server._request_done(worker, None, {}, None)
    assert worker.pycni_trimmer.due_in() is not None
    worker.pycni_trimmer.stop()


def test_a_damaged_store_in_status_and_doctor(tmp_path, capsys, no_dockerd):
    """No traceback: status says it cannot read the store and why, doctor has a finding."""
    from cnm_bridge.settings import Settings
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "pycni.db").write_bytes(b"\x00garbage" * 512)
    s = Settings(conf_dir=str(tmp_path), state_dir=str(state), bin_dirs=[str(tmp_path)],
                 socket=str(tmp_path / "no.sock"))

    class Opts:
        json, format = False, None
    assert status.run_status(s, Opts()) == 1
    out = capsys.readouterr()
    assert f"cannot read the store {s.db_path}" in out.err and "damaged" in out.err
    [f] = doctor.check_store(s)
    assert not f.ok and s.db_path in f.detail and "move it aside" in f.fix
    os.unlink(s.db_path)
    assert doctor.check_store(s) == [] or doctor.check_store(s)[0].ok


def test_reach_is_dockerapi_or_none(monkeypatch):
    import docker
    from cnm_bridge.ops import dockerapi
    seen = {}
    monkeypatch.setattr(docker, "from_env", lambda **kw: seen.update(kw) or FakeClient())
    assert isinstance(dockerapi.reach(), dockerapi.DockerAPI)
    assert seen == {"version": "auto", "timeout": dockerapi.TIMEOUT}

    def refuse(**kw):
        raise ConnectionError("no dockerd here")
    monkeypatch.setattr(docker, "from_env", refuse)
    assert dockerapi.reach() is None
