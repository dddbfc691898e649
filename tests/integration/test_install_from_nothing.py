"""Every install step the test command relies on works on a machine that never ran it:
engines and plugin sets unpacked into an empty prefix, one after the other in one call
(an earlier engines.sh failed only there, after the first install: its RETURN trap stayed
set and fired in later functions)."""

import json
import os
import subprocess
import tempfile

import pytest

import support

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def script(name, *args, prefix):
    env = dict(os.environ, PYCNI_ENGINES_DIR=prefix)
    return subprocess.run([os.path.join(ROOT, "scripts", name), *args], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def empty_prefix(needs_root):
    with tempfile.TemporaryDirectory(prefix="pycni-fresh-") as prefix:
        yield prefix


def test_engines_install_into_an_empty_prefix(empty_prefix):
    proc = script("engines.sh", "install", "all", prefix=empty_prefix)
    assert proc.returncode == 0, proc.stderr
    engines = {"26": "26.1", "28": "28.5"}
    if script("engines.sh", "available", "29", prefix=empty_prefix).returncode == 0:
        engines["29"] = "29.7"
    assert sorted(os.listdir(empty_prefix)) == sorted(engines)
    for engine, version in engines.items():
        env_path = script("engines.sh", "env", engine, prefix=empty_prefix).stdout.strip()
        out = support.run("env", f"PATH={env_path}", "dockerd", "--version").stdout
        assert f"version {version}" in out, out
        # The host's runc serves: the engine's own needs a newer glibc.
        assert not any(os.path.exists(os.path.join(empty_prefix, engine, d, "runc"))
                       for d in ("usr/bin", "usr/sbin"))
    # Installed means skipped the second time.
    again = script("engines.sh", "install", "all", prefix=empty_prefix)
    assert again.returncode == 0 and "fetching" not in again.stderr, again.stderr


def test_cni_plugins_1_9_install_into_an_empty_prefix(empty_prefix):
    proc = script("extras.sh", "cni-1.9", prefix=empty_prefix)
    assert proc.returncode == 0, proc.stderr
    path = script("extras.sh", "path", "cni-1.9", prefix=empty_prefix).stdout.strip()
    assert path.startswith(empty_prefix)
    out = subprocess.run([os.path.join(path, "bridge")], input='{"cniVersion":"0.4.0"}',
                         env={"CNI_COMMAND": "VERSION"}, capture_output=True, text=True).stdout
    assert "1.1.0" in json.loads(out)["supportedVersions"]
