"""The managed plugin as users get it: a local registry to push to and install from, the
plugin's bundle, its host dirs, and its process (see docs/managed-plugin.md)."""

import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time

from dockerlib import ROOT, bundle_is_fresh, docker, make, write_conf

BUNDLE = os.path.join(ROOT, "plugin", "build", "pycni")
BASE = "pycni-base:local"


def registry_binary():
    """Debian's docker-registry (distribution 2.8), unpacked by scripts/extras.sh."""
    out = subprocess.run([os.path.join(ROOT, "scripts", "extras.sh"), "registry"],
                         capture_output=True, text=True)
    assert out.returncode == 0, f"scripts/extras.sh registry: {out.stderr}"
    return subprocess.run([os.path.join(ROOT, "scripts", "extras.sh"), "path", "registry"],
                          capture_output=True, text=True, check=True).stdout.strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """A registry on 127.0.0.1 (Docker pushes to loopback registries without TLS), with
    its own storage; stopped by pid."""

    def __init__(self, addr="127.0.0.1"):
        self.dir = tempfile.mkdtemp(prefix="pycni-registry-")
        self.host = f"{addr}:{free_port()}"
        self.proc = None

    def start(self, netns=None):
        """netns: run it in that network namespace (a swarm test host's), by its name."""
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {self.dir}/data\n  delete:\n    enabled: true\n"
                    f"http:\n  addr: {self.host}\n")
        self.log = open(os.path.join(self.dir, "registry.log"), "w")
        cmd = [registry_binary(), "serve", config]
        if netns:  # `ip netns exec` execs it: the pid is the registry's
            cmd = ["ip", "netns", "exec", netns, *cmd]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            probe = ["curl", "-sf", "-o", "/dev/null", f"http://{self.host}/v2/"]
            if netns:
                probe = ["ip", "netns", "exec", netns, *probe]
            if subprocess.run(probe, capture_output=True, timeout=10).returncode == 0:
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"registry did not start: {self.logs()}")
            time.sleep(0.1)

    def logs(self):
        with open(os.path.join(self.dir, "registry.log")) as f:
            return f.read()[-2000:]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def build_bundle():
    """plugin/build/pycni from this checkout (reused when newer than its sources)."""
    if not bundle_is_fresh(ROOT):
        make("base-image")  # kept if pycni-base:local exists
        make("bundle", f"BASE={BASE}")
    return BUNDLE


def push_build(registry, tag, build_id, docker=docker):
    """`docker plugin create` + `push` of the bundle as REGISTRY/pycni:TAG, then the local
    copy removed, as a build machine does. build_id makes each tag's rootfs differ (a
    registry keeps one copy of identical layers; an upgrade is a new build)."""
    ref = f"{registry.host}/pycni:{tag}"
    tmp = tempfile.mkdtemp(prefix="pycni-bundle-")
    try:
        subprocess.run(["cp", "-al", BUNDLE, f"{tmp}/b"], check=True)
        marker = f"{tmp}/b/rootfs/etc/pycni-build"
        if os.path.lexists(marker):
            os.unlink(marker)  # a hard link into the bundle: not written through
        with open(marker, "w") as f:
            f.write(build_id + "\n")
        docker("plugin", "create", ref, f"{tmp}/b", timeout=300)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        docker("plugin", "push", ref, timeout=300)
    finally:
        docker("plugin", "rm", "-f", ref, check=False)
    return ref


class HostDirs:
    """The plugin's settable mount sources, in a temporary dir of the test's own."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="pycni-plugin-host-")
        self.sources = {name: os.path.join(self.root, name)
                        for name in ("cni-conf", "cni-bin", "state", "cni-data")}
        for path in self.sources.values():
            os.makedirs(path)
        self.state_dir = self.sources["state"]  # what assert_nothing_left and settle read

    def settings(self):
        return [f"{name}.source={path}" for name, path in self.sources.items()]

    def db(self, query, *args):
        db = sqlite3.connect(os.path.join(self.state_dir, "pycni.db"), timeout=30)
        try:
            return db.execute(query, args).fetchall()
        finally:
            db.close()

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


def install(ref, alias, host_dirs, *settings):
    """`docker plugin install` as the docs say, with this test's mount sources."""
    out = docker("plugin", "install", "--grant-all-permissions", "--alias", alias, ref,
                 *host_dirs.settings(), "PYCNI_LOG_LEVEL=debug", *settings,
                 check=False, timeout=300)
    assert out.returncode == 0, f"docker plugin install: {out.stderr}"
    return f"{alias}:latest"


def unique_alias(base="pycnireg"):
    return base + secrets.token_hex(3)


def remove_plugin(name):
    docker("plugin", "disable", "-f", name, check=False)
    docker("plugin", "rm", "-f", name, check=False)


def plugin_pid(name):
    """The plugin's process (its entrypoint, exec'd into pycni): runc's state, kept by
    dockerd under plugins.moby."""
    import glob
    plugin_id = docker("plugin", "inspect", "-f", "{{.Id}}", name)
    for state in glob.glob(f"/run/docker/runtime-*/plugins.moby/{plugin_id}/state.json"):
        with open(state) as f:
            return json.load(f)["init_process_pid"]
    raise AssertionError(f"no runc state for plugin {name} ({plugin_id})")


def plugin_mounts(pid):
    """(mount point, root within its filesystem) of every mount the plugin's process sees."""
    with open(f"/proc/{pid}/mountinfo") as f:
        return [(ln.split()[4], ln.split()[3]) for ln in f]


class ManagedPycni:
    """The managed plugin standing in for the e2e layer's `pycni serve` (the `pycni`
    fixture with PYCNI_TEST_DRIVER=managed): created from the bundle under a unique name,
    its mounts on this object's own dirs, so the same tests run through it."""

    def __init__(self):
        self.host_dirs = HostDirs()
        self.root = self.host_dirs.root
        self.conf_dir = self.host_dirs.sources["cni-conf"]
        self.state_dir = self.host_dirs.state_dir
        self.plugin = "pycnim" + secrets.token_hex(4)
        self.name = f"{self.plugin}:latest"  # the driver name: tag included
        # The CNI plugins it bundles: Debian 12's, the same package as this host's.
        self.cni_bin_dirs = ["/usr/lib/cni"]

    def start(self):
        build_bundle()
        docker("plugin", "create", self.plugin, BUNDLE, timeout=600)
        docker("plugin", "set", self.plugin, *self.host_dirs.settings(), "PYCNI_LOG_LEVEL=debug")
        out = docker("plugin", "enable", self.plugin, check=False, timeout=180)
        assert out.returncode == 0, f"docker plugin enable: {out.stderr}"
        return self

    def write_conf(self, filename, content):
        return write_conf(self.conf_dir, filename, content)

    @property
    def master_pid(self):
        """gunicorn's master: the plugin's entrypoint execs into `pycni serve`."""
        return plugin_pid(self.plugin)

    def logs(self):
        return f"(the managed plugin's log is dockerd's, lines with plugin={self.plugin})"

    def stop(self):
        import support
        try:
            support.settle_db(os.path.join(self.state_dir, "pycni.db"), 60)
        finally:
            remove_plugin(self.name)

    def cleanup(self):
        self.host_dirs.cleanup()
