"""The managed plugin's files agree with each other and with what Docker 20.10 reads.

dockerd does not validate config.json (its validateConfig is a stub, and Go's JSON
decoding is case-insensitive and ignores unknown keys): a misspelt field is dropped
silently. So the field names are checked here against Docker 20.10's PluginConfig.
The shell scripts run with stub iptables binaries: nothing here needs root.
"""

import json
import os
import re
import shutil
import stat
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN_DIR = os.path.join(ROOT, "plugin")
ENTRYPOINT = os.path.join(PLUGIN_DIR, "entrypoint.sh")
WRAPPER = os.path.join(PLUGIN_DIR, "iptables-wrapper.sh")

# api/types/plugin*.go in moby's 20.10 branch (JSON field names, lower-cased).
FIELDS = {
    "": {"args", "description", "dockerversion", "documentation", "entrypoint", "env",
         "interface", "ipchost", "linux", "mounts", "network", "pidhost",
         "propagatedmount", "user", "workdir", "rootfs"},
    "interface": {"protocolscheme", "socket", "types"},
    "linux": {"allowalldevices", "capabilities", "devices"},
    "network": {"type"},
    "mount": {"description", "destination", "name", "options", "settable", "source", "type"},
    "env": {"description", "name", "settable", "value"},
}


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


@pytest.fixture(scope="module")
def config():
    return json.loads(read("plugin/config.json"))


def keys(obj):
    return {k.lower() for k in obj}


def test_config_fields_are_docker_20_10_fields(config):
    assert keys(config) <= FIELDS[""]
    assert keys(config["interface"]) <= FIELDS["interface"]
    assert keys(config["linux"]) <= FIELDS["linux"]
    assert keys(config["network"]) <= FIELDS["network"]
    for m in config["mounts"]:
        assert keys(m) <= FIELDS["mount"], m
    for e in config["env"]:
        assert keys(e) <= FIELDS["env"], e


def test_config_interface_and_entrypoint(config):
    assert config["interface"]["types"] == ["docker.networkdriver/1.0", "docker.ipamdriver/1.0"]
    assert config["network"]["type"] == "host"
    socket = re.search(r"^SOCKET=(\S+)", read("plugin/entrypoint.sh"), re.M).group(1)
    assert socket == "/run/docker/plugins/" + config["interface"]["socket"]
    [entry] = config["entrypoint"]
    assert re.search(rf"^COPY entrypoint.sh {re.escape(entry)}$", read("Dockerfile"), re.M)
    assert re.search(r'^ENTRYPOINT \["' + re.escape(entry) + r'"\]$', read("Dockerfile"), re.M)


def test_config_capabilities(config):
    assert sorted(config["linux"]["capabilities"]) == ["CAP_NET_ADMIN", "CAP_NET_RAW",
                                                       "CAP_SYS_ADMIN"]


def test_config_mounts(config):
    names = [m["name"] for m in config["mounts"]]
    assert len(names) == len(set(names))
    for m in config["mounts"]:
        assert m["type"] == "bind"
        # Without bind/rbind in the options Docker calls mount(2) without MS_BIND (moby#31222).
        assert {"bind", "rbind"} & set(m["options"]), m
        assert os.path.isabs(m["source"]) and os.path.isabs(m["destination"])
        assert m["settable"] == ["source"]  # the only settable mount field (plugin/v2/settable.go)
    # Least privilege: the dirs pycni uses, not their parents (no /etc, no /var/lib).
    by_name = {m["name"]: m for m in config["mounts"]}
    assert {n: (m["source"], m["destination"], "ro" in m["options"]) for n, m in by_name.items()
            if n in ("cni-conf", "cni-bin", "state", "cni-data")} == {
        "cni-conf": ("/etc/cni/net.d", "/etc/cni/net.d", True),
        "cni-bin": ("/opt/cni/bin", "/opt/cni/bin", True),
        "state": ("/var/lib/pycni", "/var/lib/pycni", False),
        "cni-data": ("/var/lib/cni", "/var/lib/cni", False)}
    for m in config["mounts"]:
        assert m["source"] not in ("/", "/etc", "/var/lib", "/opt", "/run", "/var/run"), m
    # Docker's netns: read-only, and a slave, so that the netns dockerd mounts later show.
    run = by_name["docker-run"]
    assert run["source"] == "/run/docker" and {"rbind", "ro", "rslave"} <= set(run["options"])
    # Not under /run/docker: Docker mounts the plugin's own exec root there, after these.
    assert not run["destination"].startswith("/run/docker")
    # Optional shares default to a source every host has.
    assert by_name["xtables-lock"]["source"] == "/dev/null"
    assert by_name["xtables-lock"]["destination"] == "/run/xtables.lock"


def test_sandbox_root_matches_the_docker_run_mount(config):
    env = {e["name"]: e["value"] for e in config["env"]}
    run = {m["name"]: m for m in config["mounts"]}["docker-run"]
    assert env["PYCNI_SANDBOX_ROOT"] + "/run/docker" == run["destination"]


def test_config_env_is_what_pycni_reads(config):
    readers = read("cnm_bridge/settings.py") + read("plugin/entrypoint.sh") + \
        read("plugin/iptables-wrapper.sh")
    for e in config["env"]:
        assert e["settable"] == ["value"]
        assert isinstance(e["value"], str)
        assert e["name"] in readers, f"{e['name']} is read by nothing"
    env = {e["name"]: e["value"] for e in config["env"]}
    mounts = {m["destination"] for m in config["mounts"]}
    for key in ("PYCNI_CONF_DIR", "PYCNI_STATE_DIR"):
        assert any(env[key] == m or env[key].startswith(m + "/") for m in mounts), key


@pytest.mark.parametrize("script", [ENTRYPOINT, WRAPPER])
def test_scripts_parse_with_posix_sh(script):
    assert subprocess.run(["sh", "-n", script]).returncode == 0
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", "-s", "sh", script],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


@pytest.fixture
def iptables_env(tmp_path):
    """A wrapper called as iptables / ip6tables-save, with stub variants that report calls."""
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    (sbin / "save").write_text(
        '#!/bin/sh\nn=${0##*/}; fam=${n%%-*}; b=${n#*-}; b=${b%%-*}\n'
        'eval "c=\\${STUB_${b}_${fam}:-0}"\n'
        'echo "*filter"; i=0; while [ $i -lt $c ]; do echo "-A X -j Y$i"; i=$((i+1)); done\n'
        'echo COMMIT\n')
    (sbin / "run").write_text('#!/bin/sh\necho "ran ${0##*/} $*"\n')
    for f in ("save", "run"):
        os.chmod(sbin / f, 0o755)
    for fam in ("iptables", "ip6tables"):
        for b in ("nft", "legacy"):
            os.symlink("save", sbin / f"{fam}-{b}-save")
            os.symlink("run", sbin / f"{fam}-{b}")
            os.symlink("run", sbin / f"{fam}-{b}-restore")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    shutil.copy(WRAPPER, bin_ / "pycni-iptables")
    os.chmod(bin_ / "pycni-iptables", 0o755)
    for name in ("iptables", "ip6tables-save"):
        os.symlink("pycni-iptables", bin_ / name)
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "PYCNI_IPTABLES_SBIN": str(sbin),
           "PYCNI_IPTABLES_STATE": str(tmp_path / "state" / "backend")}
    return env, tmp_path


def sh(env, *args, **extra):
    proc = subprocess.run(list(args), env={**env, **extra}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("counts,backend", [
    ({"STUB_nft_iptables": "30", "STUB_nft_ip6tables": "2"}, "nft"),
    ({"STUB_legacy_iptables": "30", "STUB_nft_iptables": "1"}, "legacy"),
    ({}, "nft"),  # nothing anywhere yet: Debian's default
    ({"STUB_legacy_iptables": "5", "STUB_nft_iptables": "5"}, "nft"),
])
def test_iptables_wrapper_picks_the_busier_backend(iptables_env, counts, backend):
    env, tmp = iptables_env
    out = sh(env, "iptables", "-t", "nat", "-S", **counts)
    assert out.stdout.strip() == f"ran iptables-{backend} -t nat -S"
    assert "decided at first use" in out.stderr
    assert (tmp / "state" / "backend").read_text().strip() == backend
    # Recorded: later calls do not count again, whatever the tables hold now.
    other = "legacy" if backend == "nft" else "nft"
    out = sh(env, "iptables", "-L", **{f"STUB_{other}_iptables": "99"})
    assert out.stdout.strip() == f"ran iptables-{backend} -L"
    assert out.stderr == ""
    out = sh(env, "ip6tables-save", **{f"STUB_{backend}_ip6tables": "4",
                                       f"STUB_{other}_ip6tables": "99"})
    assert out.stdout.count("-A X") == 4  # ip6tables-<backend>-save ran


def test_iptables_wrapper_detect(iptables_env):
    env, _ = iptables_env
    out = sh(env, "pycni-iptables", "detect", STUB_legacy_ip6tables="3", STUB_nft_iptables="7")
    assert out.stdout.split() == ["legacy", "3", "nft", "7"]


def entrypoint_lib(env, script):
    return sh(env, "sh", "-c", f". {ENTRYPOINT}; {script}", PYCNI_ENTRYPOINT_LIB="1")


def test_entrypoint_records_backend_at_start_only_when_it_can_tell(iptables_env):
    env, tmp = iptables_env
    env = {**env, "PATH": f"{tmp / 'bin'}:/usr/bin:/bin"}
    wrapper = f"IPTABLES_WRAPPER={tmp / 'bin' / 'pycni-iptables'}"
    out = entrypoint_lib(env, f"{wrapper}; setup_iptables")
    assert "undecided" in out.stderr and not (tmp / "state" / "backend").exists()
    out = entrypoint_lib({**env, "STUB_legacy_iptables": "12"}, f"{wrapper}; setup_iptables")
    assert "iptables backend: legacy (rules: legacy 12 nft 0)" in out.stderr
    assert (tmp / "state" / "backend").read_text().strip() == "legacy"
    out = entrypoint_lib({**env, "PYCNI_IPTABLES": "nft"}, f"{wrapper}; setup_iptables")
    assert "iptables backend: nft (PYCNI_IPTABLES)" in out.stderr
    assert (tmp / "state" / "backend").read_text().strip() == "nft"


def test_entrypoint_bin_dirs(tmp_path):
    env = {"PATH": "/usr/bin:/bin"}
    host = tmp_path / "host-bin"
    script = f'HOST_BIN_DIR={host}; setup_bin_dirs; echo "$PYCNI_BIN_DIR"'
    assert entrypoint_lib(env, script).stdout.strip() == "/usr/lib/cni"
    host.mkdir()
    assert entrypoint_lib(env, script).stdout.strip() == f"/usr/lib/cni:{host}"
    out = entrypoint_lib({**env, "PYCNI_BIN_DIR": f"/a:{host}:/b"}, script)
    assert out.stdout.strip() == f"/a:{host}:/b"


def test_entrypoint_makes_the_state_dir_and_warns_when_unmounted(tmp_path):
    state = tmp_path / "state"
    env = {"PATH": "/usr/bin:/bin", "PYCNI_STATE_DIR": str(state)}
    out = entrypoint_lib(env, f"CNI_DATA_DIR={tmp_path / 'data'}; "
                              f"PYCNI_CONF_DIR={tmp_path / 'none'}; setup_host_dirs")
    assert state.is_dir() and stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert f"WARNING: {state} is not a mount of a host dir" in out.stderr
    assert "absent (only zero-config networks" in out.stderr


def test_entrypoint_names_the_xtables_lock_command_on_legacy_hosts(tmp_path):
    env = {"PATH": "/usr/bin:/bin"}
    out = entrypoint_lib(env, "XTABLES_LOCK=/dev/null; check_xtables_lock")
    assert "docker plugin set NAME xtables-lock.source=/run/xtables.lock" in out.stderr
    lock = tmp_path / "xtables.lock"
    lock.touch()
    out = entrypoint_lib(env, f"XTABLES_LOCK={lock}; check_xtables_lock")
    assert "is the host's lock" in out.stderr


def test_entrypoint_tells_whether_direct_mode_can_see_the_netns(tmp_path):
    root = tmp_path / "host"
    (root / "run" / "docker").mkdir(parents=True)
    mountinfo = tmp_path / "mountinfo"
    line = "52 40 0:25 /docker {}/run/docker ro,relatime {} - tmpfs tmpfs rw\n"
    env = {"PATH": "/usr/bin:/bin", "PYCNI_SANDBOX_ROOT": str(root)}
    mountinfo.write_text(line.format(root, "master:7"))
    out = entrypoint_lib(env, f"MOUNTINFO={mountinfo}; check_sandbox_propagation")
    assert "direct mode available" in out.stderr
    mountinfo.write_text(line.format(root, ""))
    out = entrypoint_lib(env, f"MOUNTINFO={mountinfo}; check_sandbox_propagation")
    assert "does not receive the host's mounts" in out.stderr
    out = entrypoint_lib({**env, "PYCNI_SANDBOX_ROOT": ""}, "check_sandbox_propagation")
    assert "handoff only" in out.stderr


def test_entrypoint_names_values_where_pycni_keeps_them():
    """A comment naming where a value lives names a module that exists, with that value."""
    import importlib
    for line in read("plugin/entrypoint.sh").splitlines():
        m = re.match(r"(\w+)=(\S+)\s+# (cnm_bridge(?:\.\w+)+)\.(\w+)$", line)
        if m:
            _, value, module, name = m.groups()
            assert getattr(importlib.import_module(module), name) == value, line
            break
    else:
        raise AssertionError("entrypoint.sh names no cnm_bridge value")


def test_every_call_ends_inside_dockerds_patience(config):
    """dockerd gives a managed plugin's call 30 s (`docker plugin enable --timeout`); past
    that the user reads `Client.Timeout exceeded` and pycni finishes work for nobody."""
    env = {e["name"]: e["value"] for e in config["env"]}
    call, one_exec = float(env["PYCNI_CALL_DEADLINE"]), float(env["PYCNI_PLUGIN_TIMEOUT"])
    assert call < 30 and one_exec <= call
