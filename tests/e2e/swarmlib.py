"""Two Docker hosts on this machine, for the multi-host tests: each a dockerd in a network
and mount namespace of its own, joined by a bridge that plays the L2 between hosts.

Each host has its own netns (`ip netns add`), its own /run (so its own
/run/docker/plugins and docker.sock), data root, exec root, cgroup parent and the
dirs the managed plugin mounts; a veth `lan0` into the shared bridge carries its
address. The managed pycni plugin is created on each from one bundle, the busybox
image is copied with `docker save | docker load`. The managed plugin comes as a cluster
gets it: built once, pushed to a registry on host 1's LAN address, and installed from
there on every host (`docker plugin install --alias`). Only processes started here are
stopped, by pid; everything is removed at the end, also when a test failed.
"""

import os
import random
import secrets
import shutil
import subprocess
import tempfile
import time

import support
from dockerlib import DOCKER, IMAGE, daemon_config_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(ROOT, "plugin", "build", "pycni")


def sh(*args, check=True, timeout=300, **kw):
    return support.run(*args, check=check, timeout=timeout, **kw)


class Host:
    """One Docker host: `docker(...)` runs the CLI against its dockerd."""

    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.name = f"pysw{index}-{cluster.tag}"
        self.dir = os.path.join(cluster.root, self.name)
        self.sock = os.path.join(self.dir, "docker.sock")
        self.address = f"{cluster.l2_prefix}.{index}"
        self.proc = None
        for sub in ("data", "etc/cni/net.d", "opt/cni/bin", "var-lib/pycni", "var-lib/cni"):
            os.makedirs(os.path.join(self.dir, sub))

    @property
    def conf_dir(self):
        return os.path.join(self.dir, "etc", "cni", "net.d")

    @property
    def state_dir(self):
        return os.path.join(self.dir, "var-lib", "pycni")

    def docker(self, *args, check=True, timeout=180):
        p = support.run(DOCKER, "-H", f"unix://{self.sock}", *args, check=check,
                        timeout=timeout)
        return p.stdout.strip() if check else p

    def netns_run(self, *cmd, check=True):
        return sh("ip", "netns", "exec", self.name, *cmd, check=check)

    def start(self):
        sh("ip", "netns", "add", self.name)
        veth = f"pv{self.index}{self.cluster.tag}"
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "lan0", "netns",
           self.name)
        sh("ip", "link", "set", veth, "master", self.cluster.bridge, "up")
        self.netns_run("ip", "addr", "add", f"{self.address}/24", "dev", "lan0")
        self.netns_run("ip", "link", "set", "lan0", "up")
        self.netns_run("ip", "link", "set", "lo", "up")
        self.start_dockerd()

    def start_dockerd(self):
        script = f"""
set -e
hostname {self.name}
mkdir -p {self.dir}/cgroup
mount --rbind /sys/fs/cgroup {self.dir}/cgroup
mount -t sysfs sysfs /sys
mount --rbind {self.dir}/cgroup /sys/fs/cgroup
umount -l {self.dir}/cgroup
mount -t tmpfs -o mode=0755 pysw-run /run
mkdir -p /run/docker/plugins /run/netns
exec dockerd -H unix://{self.sock} -H unix:///var/run/docker.sock \
    --data-root {self.dir}/data --exec-root /run/docker --pidfile /run/docker.pid \
    --cgroup-parent /{self.name} --iptables=true \
    --insecure-registry {self.cluster.l2_prefix}.0/24 {self.cluster.daemon_flags}
"""
        self.log = open(os.path.join(self.dir, "dockerd.log"), "ab")
        env = dict(os.environ, PATH=self.cluster.path)
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.name}", "unshare", "-m", "-u",
             "--propagation", "private", "sh", "-c", script],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 90
        while self.docker("info", check=False).returncode != 0:
            assert self.proc.poll() is None, f"dockerd of {self.name} died:\n{self.logs()}"
            assert time.monotonic() < deadline, f"dockerd of {self.name}:\n{self.logs()}"
            time.sleep(0.3)

    def stop_dockerd(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(30)
        self.proc = None

    def logs(self):
        try:
            with open(os.path.join(self.dir, "dockerd.log"), "rb") as f:
                return f.read().decode(errors="replace")[-6000:]
        except OSError:
            return ""

    def install_plugin(self, plugin, ref, env=()):
        """From the registry, under the name every host gives it (swarm resolves a
        network's driver by name on each node)."""
        self.docker("plugin", "install", "--grant-all-permissions", "--disable", "--alias",
                    plugin, ref, timeout=600)
        self.docker("plugin", "set", plugin, f"cni-conf.source={self.conf_dir}",
                    f"cni-bin.source={self.dir}/opt/cni/bin",
                    f"state.source={self.dir}/var-lib/pycni",
                    f"cni-data.source={self.dir}/var-lib/cni", "PYCNI_LOG_LEVEL=debug",
                    "PYCNI_RECONCILE_INTERVAL=10", *env)
        self.docker("plugin", "enable", plugin, timeout=300)

    def write_conf(self, filename, obj):
        import json
        with open(os.path.join(self.conf_dir, filename), "w") as f:
            json.dump(obj, f)

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            for svc in self.docker("service", "ls", "-q", check=False).stdout.split():
                self.docker("service", "rm", svc, check=False)
            for c in self.docker("ps", "-aq", check=False).stdout.split():
                self.docker("rm", "-f", c, check=False)
            self.docker("swarm", "leave", "--force", check=False, timeout=60)
            for p in self.docker("plugin", "ls", "-q", check=False).stdout.split():
                self.docker("plugin", "disable", "-f", p, check=False)
                self.docker("plugin", "rm", "-f", p, check=False)
        self.stop_dockerd()
        sh("ip", "netns", "del", self.name, check=False)
        # cgroups the host's containers left (cgroup v1: one dir per controller)
        for ctl in os.listdir("/sys/fs/cgroup"):
            path = os.path.join("/sys/fs/cgroup", ctl, self.name)
            if os.path.isdir(path):
                subprocess.run(["find", path, "-depth", "-type", "d", "-exec", "rmdir", "{}",
                                ";"], capture_output=True)


class Cluster:
    """Two hosts, their L2, and a swarm of them (host 1 the manager)."""

    def __init__(self, engine_path=None):
        self.tag = secrets.token_hex(2)
        self.root = tempfile.mkdtemp(prefix="pycni-swarm-")
        self.bridge = f"pysw{self.tag}"
        self.l2_prefix = f"10.{random.randint(160, 189)}.{random.randint(0, 255)}"
        self.path = engine_path or os.environ["PATH"]
        self.daemon_flags = " ".join(daemon_config_flags())
        self.hosts = [Host(self, 1), Host(self, 2)]
        self.registry = None
        self.rule = ["-i", self.bridge, "-o", self.bridge, "-m", "comment", "--comment",
                     f"pycni swarm test {self.tag}", "-j", "ACCEPT"]

    def start(self, plugin, plugin_env=()):
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "link", "set", self.bridge, "up")
        # The root netns's FORWARD policy is DROP (its dockerd's); the hosts' frames cross
        # the bridge through it (br_netfilter).
        sh("iptables", "-I", "FORWARD", *self.rule)
        image = subprocess.Popen([DOCKER, "save", IMAGE], stdout=subprocess.PIPE)
        saved = image.communicate()[0]

        def prepare(host):
            host.start()
            load = subprocess.run([DOCKER, "-H", f"unix://{host.sock}", "load"], input=saved,
                                  capture_output=True, timeout=300)
            assert load.returncode == 0, load.stderr

        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(len(self.hosts)) as pool:
            list(pool.map(prepare, self.hosts))
        ref = self.publish_plugin()
        with ThreadPoolExecutor(len(self.hosts)) as pool:
            list(pool.map(lambda h: h.install_plugin(plugin, ref, plugin_env), self.hosts))
        manager, worker = self.hosts
        manager.docker("swarm", "init", "--advertise-addr", manager.address)
        token = manager.docker("swarm", "join-token", "-q", "worker")
        worker.docker("swarm", "join", "--token", token, f"{manager.address}:2377")
        deadline = time.monotonic() + 60
        while manager.docker("node", "ls", "--format", "{{.Status}}").split().count("Ready") < 2:
            assert time.monotonic() < deadline, manager.docker("node", "ls")
            time.sleep(0.5)

    def publish_plugin(self):
        """A registry on host 1's LAN address; the bundle pushed to it from host 1."""
        from pluginlib import Registry, push_build
        self.registry = Registry(addr=self.hosts[0].address)
        self.registry.start(netns=self.hosts[0].name)
        return push_build(self.registry, "swarm", f"swarm-{self.tag}",
                          docker=self.hosts[0].docker)

    @property
    def manager(self):
        return self.hosts[0]

    def cleanup(self):
        for host in reversed(self.hosts):
            try:
                host.cleanup()
            except Exception as e:  # keep cleaning the rest
                print(f"swarm cleanup of {host.name}: {e}")
        if getattr(self, "registry", None):
            self.registry.stop()
        support.run("iptables", "-D", "FORWARD", *self.rule, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
