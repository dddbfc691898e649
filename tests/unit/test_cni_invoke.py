"""Plugin execution: environment, request on stdin, error reporting, deadlines, output caps."""

import errno
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from cni_runner.errors import ConfigError

from cni_runner import CNIRuntime, PluginError, PluginNotFoundError
from cni_runner.errors import INTERNAL
from cni_runner.invoke import base_environ, exec_plugin, find_plugin, format_cni_args

NETNS = "/var/run/netns/fake"


def add_env(cni, plugin="p1"):
    (rec,) = cni.calls("ADD", plugin)
    return rec["env"]


# -- finding plugins ----------------------------------------------------------------------


def test_find_plugin_follows_cni_path_order(cni, tmp_path):
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    cni.plugin("p", bin_dir=second)
    assert find_plugin("p", [first, second]) == os.path.join(second, "p")
    cni.plugin("p", bin_dir=first)
    assert find_plugin("p", [first, second]) == os.path.join(first, "p")


def test_find_plugin_skips_non_executables_and_dirs(cni, tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    os.makedirs(os.path.join(a, "p"))            # a directory called p
    os.makedirs(b)
    with open(os.path.join(b, "p"), "w") as f:   # not executable
        f.write("#!/bin/sh\n")
    cni.plugin("p", bin_dir=c)
    assert find_plugin("p", [a, b, c]) == os.path.join(c, "p")


@pytest.mark.parametrize("ptype", ["", "a/b", "/bin/sh", ".", ".."])
def test_find_plugin_rejects_paths(ptype, cni):
    with pytest.raises(PluginNotFoundError):
        find_plugin(ptype, [cni.bin_dir])


def test_find_plugin_missing_names_dirs(cni):
    with pytest.raises(PluginNotFoundError) as ei:
        find_plugin("nope", [cni.bin_dir, "/nonexistent"])
    assert "nope" in str(ei.value) and cni.bin_dir in str(ei.value)


# -- environment ----------------------------------------------------------------------------


def test_six_cni_variables_are_set(cni):
    cni.plugin("p1")
    cni.runtime().add(cni.netlist(), cni.rt("ctr-A", "net1", "/run/netns/x",
                                            args=[("K8S_POD_NAME", "web")]))
    env = add_env(cni)
    assert env["CNI_COMMAND"] == "ADD"
    assert env["CNI_CONTAINERID"] == "ctr-A"
    assert env["CNI_NETNS"] == "/run/netns/x"
    assert env["CNI_IFNAME"] == "net1"
    assert env["CNI_ARGS"] == "IgnoreUnknown=1;K8S_POD_NAME=web"
    assert env["CNI_PATH"] == cni.bin_dir
    assert sorted(k for k in env if k.startswith("CNI_")) == sorted(
        ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"])


def test_cni_path_joins_all_plugin_dirs(cni, tmp_path):
    other = str(tmp_path / "other")
    cni.plugin("p1", bin_dir=other)
    CNIRuntime([cni.bin_dir, other], cni.cache_dir).add(cni.netlist(), cni.rt())
    assert add_env(cni)["CNI_PATH"] == f"{cni.bin_dir}:{other}"


def test_caller_cni_variables_do_not_leak(cni, monkeypatch):
    monkeypatch.setenv("CNI_NETNS_OVERRIDE", "1")
    monkeypatch.setenv("CNI_FOO", "bar")
    monkeypatch.setenv("CNI_NETNS", "/caller/netns")
    monkeypatch.setenv("CNI_ARGS", "EVIL=1")
    cni.plugin("p1")
    cni.runtime().add(cni.netlist(), cni.rt())
    env = add_env(cni)
    assert "CNI_NETNS_OVERRIDE" not in env and "CNI_FOO" not in env
    assert env["CNI_NETNS"] == NETNS
    assert "EVIL" not in env["CNI_ARGS"]
    assert "CNI_NETNS_OVERRIDE" not in base_environ()


def test_path_gets_sbin_dirs(cni, monkeypatch):
    monkeypatch.setenv("PATH", "/opt/custom/bin:/usr/bin:/bin")
    cni.plugin("p1")
    cni.runtime().add(cni.netlist(), cni.rt())
    path = add_env(cni)["PATH"].split(":")
    assert path[:3] == ["/opt/custom/bin", "/usr/bin", "/bin"]  # caller's order kept first
    assert "/usr/sbin" in path and "/sbin" in path
    assert len(path) == len(set(path))


def test_path_when_caller_has_none(monkeypatch):
    monkeypatch.delenv("PATH", raising=False)
    path = base_environ()["PATH"].split(":")
    assert "/usr/sbin" in path and "/sbin" in path and "" not in path


def test_other_caller_variables_pass_through(cni, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY_TEST_MARKER", "kept")
    assert base_environ()["HTTP_PROXY_TEST_MARKER"] == "kept"


@pytest.mark.parametrize("pairs,expected", [
    ([], "IgnoreUnknown=1"),
    ([("IP", "10.1.2.3")], "IgnoreUnknown=1;IP=10.1.2.3"),
    ([("IgnoreUnknown", "0"), ("MAC", "aa:bb:cc:dd:ee:ff")],
     "IgnoreUnknown=1;MAC=aa:bb:cc:dd:ee:ff"),
    ([("A", ""), ("B", "x=y")], "IgnoreUnknown=1;A=;B=x=y"),
])
def test_format_cni_args(pairs, expected):
    assert format_cni_args(pairs) == expected


@pytest.mark.parametrize("pair", [("", "v"), ("a;b", "v"), ("a=b", "v"), ("k", "a;b"),
                                  ("k", "a\0b")])
def test_format_cni_args_rejects(pair):
    with pytest.raises(ValueError):
        format_cni_args([pair])


def test_bad_cni_args_rejected_before_anything_runs(cni):
    cni.plugin("p1")
    with pytest.raises(ConfigError, match="invalid CNI_ARGS pair"):
        cni.runtime().add(cni.netlist(), cni.rt(args=[("A;B", "1")]))
    assert cni.calls() == []


# -- the request on stdin ---------------------------------------------------------------------


def test_stdin_has_name_selected_version_and_unknown_keys(cni):
    cni.plugin("p1", versions=["0.4.0", "1.0.0"])
    plugin = {"type": "p1", "bridge": "cni0", "ipam": {"type": "host-local", "x": [1]},
              "name": "ignored", "cniVersion": "0.1.0", "future": {"deep": True}}
    net = cni.netlist([plugin], version=None, cniVersions=["0.4.0", "1.0.0", "1.1.0"])
    cni.runtime().add(net, cni.rt())
    (rec,) = cni.calls("ADD")
    conf = rec["stdin"]
    assert conf["name"] == "testnet"
    assert conf["cniVersion"] == "1.0.0"
    assert conf["bridge"] == "cni0" and conf["future"] == {"deep": True}
    assert conf["ipam"] == {"type": "host-local", "x": [1]}
    assert "prevResult" not in conf and "runtimeConfig" not in conf


def test_runtime_config_is_declared_caps_intersect_given(cni):
    cni.plugin("p1")
    cni.plugin("p2")
    cni.plugin("p3")
    ports = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    net = cni.netlist([
        {"type": "p1", "capabilities": {"portMappings": True, "bandwidth": False, "ips": True}},
        {"type": "p2"},
        {"type": "p3", "capabilities": {"dns": True}},
    ])
    caps = {"portMappings": ports, "bandwidth": {"ingressRate": 1}, "mac": "0a:00:00:00:00:01"}
    cni.runtime().add(net, cni.rt(caps=caps))
    p1, p2, p3 = (cni.calls("ADD", p)[0]["stdin"] for p in ("p1", "p2", "p3"))
    assert p1["runtimeConfig"] == {"portMappings": ports}
    assert "runtimeConfig" not in p2
    assert "runtimeConfig" not in p3  # declared dns, but none given
    for conf in (p1, p2, p3):
        assert "capabilities" not in conf


def test_prev_result_chains_between_plugins(cni):
    first = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}],
             "ips": [{"address": "10.9.0.2/24", "interface": 0}]}
    second = dict(first, dns={"nameservers": ["10.9.0.1"]})
    cni.plugin("p1", ADD={"result": first})
    cni.plugin("p2", ADD={"result": second})
    cni.plugin("p3")
    res = cni.runtime().add(cni.netlist(["p1", "p2", "p3"]), cni.rt())
    assert [c for c in cni.verbs()] == [("ADD", "p1"), ("ADD", "p2"), ("ADD", "p3")]
    p1, p2, p3 = (cni.calls("ADD", p)[0]["stdin"] for p in ("p1", "p2", "p3"))
    assert "prevResult" not in p1
    assert p2["prevResult"]["ips"] == first["ips"]
    assert p2["prevResult"]["interfaces"] == first["interfaces"]
    assert p3["prevResult"]["dns"] == {"nameservers": ["10.9.0.1"]}
    assert res["dns"] == {"nameservers": ["10.9.0.1"]}  # the last plugin's result is final


def test_prev_result_is_rendered_in_list_version(cni):
    old = {"cniVersion": "0.3.1", "interfaces": [{"name": "eth0"}],
           "ips": [{"version": "4", "address": "10.9.0.2/24", "interface": 0}]}
    cni.plugin("p1", versions=["0.4.0"], ADD={"result": old})
    cni.plugin("p2", versions=["0.4.0"])
    res = cni.runtime().add(cni.netlist(["p1", "p2"], version="0.4.0"), cni.rt())
    prev = cni.calls("ADD", "p2")[0]["stdin"]["prevResult"]
    assert prev["cniVersion"] == "0.4.0" and prev["ips"][0]["version"] == "4"
    assert res["cniVersion"] == "0.4.0"


def test_del_reverse_order_with_cached_result_args_and_caps(cni):
    cni.plugin("p1")
    cni.plugin("p2")
    net = cni.netlist(["p1", {"type": "p2", "capabilities": {"portMappings": True}}])
    ports = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    runtime = cni.runtime()
    added = runtime.add(net, cni.rt(args=[("IP", "10.22.0.9")], caps={"portMappings": ports}))
    cni.clear_calls()
    # The caller no longer knows args or capability args: DEL takes them from the cache.
    runtime.delete(net, cni.rt(args=[], caps={}))
    assert cni.verbs() == [("DEL", "p2"), ("DEL", "p1")]
    for rec in cni.calls("DEL"):
        assert rec["env"]["CNI_ARGS"] == "IgnoreUnknown=1;IP=10.22.0.9"
        assert rec["env"]["CNI_NETNS"] == NETNS
        assert rec["stdin"]["prevResult"] == added
    assert cni.calls("DEL", "p2")[0]["stdin"]["runtimeConfig"] == {"portMappings": ports}
    assert "runtimeConfig" not in cni.calls("DEL", "p1")[0]["stdin"]


def test_del_uses_cached_config_not_the_current_one(cni):
    cni.plugin("p1")
    cni.plugin("p2")
    runtime = cni.runtime()
    runtime.add(cni.netlist(["p1", "p2"]), cni.rt())
    cni.clear_calls()
    # The conf file changed since ADD (p2 dropped): DEL must still undo what ADD did.
    runtime.delete(cni.netlist(["p1"]), cni.rt())
    assert cni.verbs() == [("DEL", "p2"), ("DEL", "p1")]


def test_del_netns_falls_back_to_cached(cni):
    cni.plugin("p1")
    runtime = cni.runtime()
    runtime.add(cni.netlist(), cni.rt(netns="/run/netns/orig"))
    runtime.delete(cni.netlist(), cni.rt(netns=""))
    assert cni.calls("DEL")[0]["env"]["CNI_NETNS"] == "/run/netns/orig"


# -- errors -----------------------------------------------------------------------------------


def test_plugin_error_json_on_stdout(cni):
    cni.plugin("p1", ADD={"error": {"cniVersion": "1.0.0", "code": 7, "msg": "bad config",
                                    "details": "bridge name too long"}})
    with pytest.raises(PluginError) as ei:
        cni.runtime().add(cni.netlist(), cni.rt())
    e = ei.value
    assert (e.plugin, e.code, e.msg, e.details, e.command) == \
        ("p1", 7, "bad config", "bridge name too long", "ADD")
    assert e.to_dict() == {"code": 7, "msg": "bad config", "details": "bridge name too long"}
    assert "p1" in str(e) and "bad config" in str(e) and "code 7" in str(e)


def test_plugin_error_without_details_or_code(cni):
    cni.plugin("p1", ADD={"error": {"msg": "oops"}})
    with pytest.raises(PluginError) as ei:
        cni.runtime().add(cni.netlist(), cni.rt())
    assert ei.value.code == INTERNAL and ei.value.msg == "oops" and ei.value.details == ""


def test_plugin_error_code_not_an_int(cni):
    cni.plugin("p1", ADD={"error": {"code": "11", "msg": "later"}})
    with pytest.raises(PluginError) as ei:
        cni.runtime().add(cni.netlist(), cni.rt())
    assert ei.value.code == INTERNAL and ei.value.msg == "later"


def test_empty_stdout_message_from_stderr(cni):
    cni.plugin("p1", ADD={"stdout": "", "stderr": "failed to open netns: no such file\n",
                          "exit": 1})
    with pytest.raises(PluginError) as ei:
        cni.runtime().add(cni.netlist(), cni.rt())
    assert ei.value.msg == "failed to open netns: no such file"
    assert ei.value.plugin == "p1" and ei.value.code == INTERNAL


def test_silent_failure_reports_exit_status(cni):
    cni.plugin("p1", ADD={"stdout": "", "exit": 3})
    with pytest.raises(PluginError, match="exited with status 3"):
        cni.runtime().add(cni.netlist(), cni.rt())


def test_non_json_failure_output(cni):
    cni.plugin("p1", ADD={"stdout": "panic: runtime error", "stderr": "goroutine 1", "exit": 2})
    with pytest.raises(PluginError) as ei:
        cni.runtime().add(cni.netlist(), cni.rt())
    assert ei.value.msg == "panic: runtime error" and ei.value.details == "goroutine 1"


def test_add_success_with_empty_stdout_is_an_error(cni):
    cni.plugin("p1", ADD={"stdout": "  \n"})
    with pytest.raises(PluginError, match="printed no result") as ei:
        cni.runtime().add(cni.netlist(), cni.rt())
    assert ei.value.plugin == "p1" and ei.value.command == "ADD"


def test_add_non_json_result(cni):
    cni.plugin("p1", ADD={"stdout": "ok, done"})
    with pytest.raises(PluginError, match="invalid result.*not valid JSON"):
        cni.runtime().add(cni.netlist(), cni.rt())


@pytest.mark.parametrize("ver", ["9.9.9", "1.0", "banana", 1])
def test_add_result_with_bad_cni_version(cni, ver):
    res = {"cniVersion": ver, "interfaces": [{"name": "eth0"}],
           "ips": [{"address": "10.0.0.2/24", "interface": 0}]}
    cni.plugin("p1", ADD={"result": res})
    with pytest.raises(PluginError, match="cniVersion"):
        cni.runtime().add(cni.netlist(), cni.rt())


def test_add_result_in_other_known_version_is_converted(cni):
    res = {"cniVersion": "0.3.1", "interfaces": [{"name": "eth0"}],
           "ips": [{"version": "4", "address": "10.0.0.2/24", "interface": 0}]}
    cni.plugin("p1", ADD={"result": res})
    out = cni.runtime().add(cni.netlist(version="1.0.0"), cni.rt())
    assert out["cniVersion"] == "1.0.0" and "version" not in out["ips"][0]


def test_add_result_without_cni_version_gets_the_list_version(cni):
    cni.plugin("p1", ADD={"result": {"ips": [{"address": "10.0.0.2/24"}]}})
    out = cni.runtime().add(cni.netlist(version="1.0.0"), cni.rt())
    assert out["cniVersion"] == "1.0.0"


@pytest.mark.parametrize("idx", [1, -1, "0", True])
def test_add_result_interface_index_out_of_range(cni, idx):
    res = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}],
           "ips": [{"address": "10.0.0.2/24", "interface": idx}]}
    cni.plugin("p1", ADD={"result": res})
    with pytest.raises(PluginError, match="interface index"):
        cni.runtime().add(cni.netlist(), cni.rt())


def test_error_on_del_carries_command(cni):
    cni.plugin("p1", DEL={"error": {"code": 5, "msg": "io"}})
    with pytest.raises(PluginError) as ei:
        cni.runtime().delete(cni.netlist(), cni.rt())
    assert ei.value.command == "DEL" and ei.value.code == 5


def test_unexecutable_plugin(cni):
    path = os.path.join(cni.bin_dir, "p1")
    with open(path, "w") as f:
        f.write("#!/nonexistent/interpreter\n")
    os.chmod(path, 0o755)
    with pytest.raises(PluginError, match="cannot execute") as ei:
        exec_plugin(path, {"CNI_COMMAND": "ADD"}, b"{}")
    assert ei.value.plugin == "p1"


def _dead(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def test_hanging_plugin_and_its_children_are_killed(cni):
    cni.plugin("p1", ADD={"sleep": 60, "child": True})
    start = time.monotonic()
    with pytest.raises(PluginError, match="timed out after 1s") as ei:
        cni.runtime(timeout=1).add(cni.netlist(), cni.rt())
    elapsed = time.monotonic() - start
    assert ei.value.plugin == "p1" and ei.value.command == "ADD"
    assert elapsed < 6
    (child,) = cni.child_pids()
    (rec,) = cni.calls("ADD")
    try:
        deadline = time.monotonic() + 3
        while not (_dead(child) and _dead(rec["pid"])) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _dead(rec["pid"]), "plugin still running"
        assert _dead(child), "plugin's child (sleep 1000) still running"
    finally:
        for pid in (child, rec["pid"]):  # never leak a sleeper if the assertion fails
            if not _dead(pid):
                os.kill(pid, signal.SIGKILL)
    # The failed ADD was followed by a DEL.
    assert cni.verbs()[-1] == ("DEL", "p1")


def test_plugin_that_closes_pipes_but_keeps_running_is_killed(cni, tmp_path):
    path = tmp_path / "closer"
    path.write_text("#!/bin/sh\nexec >/dev/null 2>&1 </dev/null\nsleep 30\n")
    path.chmod(0o755)
    start = time.monotonic()
    with pytest.raises(PluginError, match="timed out"):
        exec_plugin(str(path), {"CNI_COMMAND": "ADD", "PATH": "/usr/bin:/bin"}, b"{}",
                    timeout=0.5)
    assert time.monotonic() - start < 5


def test_flooding_plugin_is_killed(cni):
    cni.plugin("p1", ADD={"flood": True})
    start = time.monotonic()
    with pytest.raises(PluginError, match="printed more than 200000 bytes") as ei:
        cni.runtime(max_output=200_000).add(cni.netlist(), cni.rt())
    assert ei.value.plugin == "p1"
    assert time.monotonic() - start < 5
    (rec,) = cni.calls("ADD")
    deadline = time.monotonic() + 3
    while not _dead(rec["pid"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _dead(rec["pid"])


def test_large_stdin_to_plugin_that_never_reads(cni, tmp_path):
    path = tmp_path / "deaf"
    path.write_text("#!/bin/sh\necho '{}'\n")
    path.chmod(0o755)
    out = exec_plugin(str(path), {"CNI_COMMAND": "DEL", "PATH": "/usr/bin:/bin"},
                      b" " * (1 << 20), timeout=5)
    assert out.strip() == b"{}"


def _busy_binary(path, seconds):
    """Hold `path` open for writing (as an installer copying over it would) for a while."""
    fd = os.open(path, os.O_WRONLY)
    timer = threading.Timer(seconds, os.close, [fd])
    timer.start()
    return timer


def _etxtbsy_provokable(path):
    fd = os.open(path, os.O_WRONLY)
    try:
        subprocess.run([path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env={"CNI_COMMAND": "VERSION"}, timeout=5)
    except OSError as e:
        return e.errno == errno.ETXTBSY
    finally:
        os.close(fd)
    return False


def test_exec_retried_while_text_file_busy(cni):
    path = cni.plugin("p1")
    if not _etxtbsy_provokable(path):
        pytest.skip("kernel does not report ETXTBSY here")
    timer = _busy_binary(path, 0.1)
    try:
        out = exec_plugin(path, {"CNI_COMMAND": "VERSION"}, b'{"cniVersion":"1.0.0"}')
    finally:
        timer.join()
    assert json.loads(out)["supportedVersions"]


def test_exec_gives_up_when_text_file_stays_busy(cni, monkeypatch):
    path = cni.plugin("p1")
    if not _etxtbsy_provokable(path):
        pytest.skip("kernel does not report ETXTBSY here")
    monkeypatch.setattr("cni_runner.invoke.ETXTBSY_RETRIES", 1)
    fd = os.open(path, os.O_WRONLY)
    try:
        with pytest.raises(PluginError, match="busy"):
            exec_plugin(path, {"CNI_COMMAND": "VERSION"}, b"{}")
    finally:
        os.close(fd)


def test_a_callers_deadline_cuts_every_exec_short(cni):
    """A server whose caller gives up after N seconds sets a deadline: a plugin run is
    killed by then, whatever the runtime's own per-exec timeout, and a run the deadline
    has already passed is not started."""
    from cni_runner import deadline
    cni.plugin("p1", ADD={"sleep": 60})
    try:
        deadline.start(0.5)
        with pytest.raises(PluginError, match=r"timed out after 0\.[0-5]\d*s"):
            cni.runtime(timeout=60).add(cni.netlist(), cni.rt())
        deadline.start(0.001)
        time.sleep(0.01)
        cni.plugin("p1")
        with pytest.raises(PluginError, match="not run: the caller's deadline had passed"):
            cni.runtime(timeout=60).add(cni.netlist(), cni.rt("ctr2"))
    finally:
        deadline.clear()
    assert deadline.remaining(7.0) == 7.0  # cleared: the runtime's own timeout again


def test_a_deadline_belongs_to_its_thread():
    import threading
    from cni_runner import deadline
    seen = {}
    deadline.start(100)
    try:
        t = threading.Thread(target=lambda: seen.update(other=deadline.remaining(5.0)))
        t.start()
        t.join()
        assert seen["other"] == 5.0 and deadline.remaining(500) <= 100
    finally:
        deadline.clear()
