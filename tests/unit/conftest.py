"""Fixtures for the cni_runner unit tests: a tmp conf dir, cache dir and fake plugins."""

import json
import os
import shutil
import sys

import pytest

from cni_runner import CNIRuntime, RuntimeConf, conflist_from_dict

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_SOURCE = os.path.join(HERE, "fakeplugin.py")


# iptables commands that change a table.
_IPTABLES_WRITES = {"-A", "-I", "-D", "-R", "-N", "-X", "-F", "-P", "-Z", "-E", "--append",
                    "--insert", "--delete", "--replace", "--new-chain", "--delete-chain",
                    "--flush", "--policy", "--zero", "--rename-chain"}


@pytest.fixture(autouse=True)
def _ssl_stays_real():
    """A test that calls `cli.main(["serve", ...])` in this process must not leave the
    server's ssl stand-in (cnm_bridge.docker.notls) to the tests after it; the stand-ins
    are tested in fresh interpreters (test_server_memory.py). Its own MonkeyPatch, not
    the `monkeypatch` fixture: that one, set up by an autouse fixture, would be undone
    after `_the_real_host_is_left_alone` and put back the refusals it captured from a
    test's own patches, into the root layers that run next."""
    from cnm_bridge.docker import notls
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(notls, "install", lambda: None)
        yield


@pytest.fixture(autouse=True)
def _the_real_host_is_left_alone(tmp_path_factory):
    """The unit layer runs on a fake host: the calls that would change the real one (an
    iptables command that writes, a netns made or pinned, a netlink request) fail the
    test instead, as root or not. Checked at the calls, not by comparing the host before
    and after: something else on the host (another test run, dockerd) may change it
    meanwhile. A test that puts a fake iptables first on PATH runs it. Per test: tests/unit
    is no Python package, so a "package" fixture would outlive it into the root layers
    when one pytest run holds them all."""
    from cnm_bridge.host import iptables, netns, rtnl
    base = str(tmp_path_factory.getbasetemp())
    touched = []

    def refuse(what):
        touched.append(what)
        raise AssertionError(f"the unit layer would touch the real host: {what}")

    real_run = iptables.run

    def run(cmd, table, *args):
        path = os.path.realpath(shutil.which(cmd) or cmd)
        if not path.startswith(base) and _IPTABLES_WRITES & set(args):
            refuse(f"{cmd} -t {table} {' '.join(args)}")
        return real_run(cmd, table, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(iptables, "run", run)
        mp.setattr(netns, "create", lambda name: refuse(f"netns create {name}"))
        mp.setattr(netns, "pin", lambda name, source: refuse(f"netns pin {name}"))
        mp.setattr(rtnl, "_request", lambda kind, body, flags=0: refuse(f"netlink request {kind}"))
        yield
    assert not touched, "the unit layer touched the real host:\n" + "\n".join(touched)


class FakeCNI:
    """A sandbox: plugin dir with fake plugins, conf dir, cache dir, recorded calls."""

    def __init__(self, root):
        self.root = str(root)
        self.bin_dir = os.path.join(self.root, "bin")
        self.conf_dir = os.path.join(self.root, "net.d")
        self.cache_dir = os.path.join(self.root, "cache")
        self.state_dir = os.path.join(self.root, "state")
        for d in (self.bin_dir, self.conf_dir, self.state_dir):
            os.makedirs(d, exist_ok=True)
        with open(FAKE_SOURCE) as f:
            self._source = f.read()

    # -- plugins ----------------------------------------------------------------

    def plugin(self, name, bin_dir=None, **behaviour):
        """Install fake plugin `name` (executable) and set its behaviour."""
        d = bin_dir or self.bin_dir
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, name)
        # -S: skip site, which halves the interpreter's start-up time.
        text = f"#!{sys.executable} -S\nSTATE_DIR = {self.state_dir!r}\n" + self._source
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)
        self.behave(name, **behaviour)
        return path

    def behave(self, name, **behaviour):
        """Replace a plugin's behaviour, e.g. behave("p", versions=[...], ADD={"error": ...})."""
        with open(os.path.join(self.state_dir, name + ".json"), "w") as f:
            json.dump(behaviour, f)

    def calls(self, command=None, plugin=None):
        try:
            with open(os.path.join(self.state_dir, "calls.jsonl")) as f:
                recs = [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []
        return [r for r in recs
                if (command is None or r["command"] == command)
                and (plugin is None or r["plugin"] == plugin)]

    def verbs(self, skip_version=True):
        """[(command, plugin), ...] in call order, VERSION probes left out."""
        return [(r["command"], r["plugin"]) for r in self.calls()
                if not (skip_version and r["command"] == "VERSION")]

    def clear_calls(self):
        try:
            os.unlink(os.path.join(self.state_dir, "calls.jsonl"))
        except FileNotFoundError:
            pass

    def child_pids(self):
        try:
            with open(os.path.join(self.state_dir, "child.pid")) as f:
                return [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return []

    # -- configs and runtime ----------------------------------------------------------

    def netlist(self, plugins=("p1",), name="testnet", version="1.0.0", **extra):
        """A NetworkConfigList; plugins are type names or plugin dicts."""
        return conflist_from_dict(self.netlist_dict(plugins, name, version, **extra))

    @staticmethod
    def netlist_dict(plugins=("p1",), name="testnet", version="1.0.0", **extra):
        raw = {"name": name, "plugins": [p if isinstance(p, dict) else {"type": p}
                                          for p in plugins]}
        if version is not None:
            raw["cniVersion"] = version
        raw.update(extra)
        return raw

    def write_conf(self, filename, obj, conf_dir=None):
        path = os.path.join(conf_dir or self.conf_dir, filename)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(obj if isinstance(obj, str) else json.dumps(obj))
        return path

    def runtime(self, **kw):
        kw.setdefault("timeout", 10)
        return CNIRuntime([self.bin_dir], self.cache_dir, **kw)

    @staticmethod
    def rt(container_id="ctr1", ifname="eth0", netns="/var/run/netns/fake", args=(),
           caps=None):
        return RuntimeConf(container_id, netns, ifname, list(args), dict(caps or {}))


@pytest.fixture
def cni(tmp_path):
    return FakeCNI(tmp_path)


# -- the Docker side, with fake CNI plugins and a fake host ---------------------------------

DOCKER_SIDE_PLUGINS = ("bridge", "portmap", "host-local", "static", "tuning", "ptp", "macvlan",
                       "ipvlan", "firewall", "sbr")


class DockerSide:
    """The graph `pycni serve` builds (compose.build), on fake plugins and a FakeHost."""

    def __init__(self, cni, defer_delete=False):
        from cnm_bridge.compose import build
        from cnm_bridge.settings import Settings
        from fakehost import FakeHost
        self.cni = cni
        for name in DOCKER_SIDE_PLUGINS:
            cni.plugin(name)
        self.settings = Settings(socket=os.path.join(cni.root, "sock"), conf_dir=cni.conf_dir,
                                 bin_dirs=[cni.bin_dir],
                                 state_dir=os.path.join(cni.root, "pycni"), plugin_timeout=10)
        self.host = FakeHost(cni.root)
        self.graph = build(self.settings, host=self.host, defer_delete=defer_delete)
        self.driver, self.ipam, self.store = self.graph.driver, self.graph.ipam, self.graph.store
        self.attachments, self.runtime = self.graph.attachments, self.graph.runtime


@pytest.fixture
def side(cni):
    return DockerSide(cni)


@pytest.fixture
def deferred_side(cni):
    s = DockerSide(cni, defer_delete=True)
    yield s
    s.attachments.drain(timeout=30)
