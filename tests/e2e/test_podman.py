"""Another CNI runtime on the same network: Podman (its CNI backend) and Docker containers on
one podman-style conflist. One host-local pool, no address twice, each side reaches the
other and the other's published ports, and removing Docker's side leaves podman's whole."""

import json
import os
import random
import secrets
import shutil
import subprocess
import tempfile

import pytest

import support
from dockerlib import DOCKER, IMAGE, docker, inspect_net, random_subnet
from test_ports import tcp_hello

SERVER = "nc -ll -p 80 -e echo hello-{}"


class Podman:
    """podman with storage, run dirs and config of its own: it touches nothing of the host's."""

    def __init__(self, conf_dir):
        self.root = tempfile.mkdtemp(prefix="pycni-podman-")
        self.conf = os.path.join(self.root, "containers.conf")
        # This sandbox refuses podman's default rlimits; bookworm's crun is too old for it.
        with open(self.conf, "w") as f:
            f.write(f"""[containers]
default_ulimits = []
pids_limit = 0
[network]
network_backend = "cni"
network_config_dir = "{conf_dir}"
cni_plugin_dirs = {json.dumps(support.CNI_BIN_DIRS)}
[engine]
runtime = "runc"
""")
        self.env = dict(os.environ, CONTAINERS_CONF=self.conf)

    def __call__(self, *args, check=True, timeout=120):
        proc = subprocess.run(
            ["podman", "--root", f"{self.root}/storage", "--runroot", f"{self.root}/run",
             "--storage-driver", "vfs", *args],
            capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def import_image(self):
        cid = docker("create", IMAGE, "true")
        try:
            export = subprocess.Popen([DOCKER, "export", cid], stdout=subprocess.PIPE)
            subprocess.run(["podman", "--root", f"{self.root}/storage", "--runroot",
                            f"{self.root}/run", "--storage-driver", "vfs", "import",
                            "-c", 'CMD ["sh"]', "-", "localhost/busybox"],
                           stdin=export.stdout, env=self.env, check=True, capture_output=True)
            export.wait()
        finally:
            docker("rm", cid)
        return "localhost/busybox"

    def cleanup(self):
        self("rm", "-a", "-f", "-t", "0", check=False)
        self("system", "reset", "--force", check=False)
        subprocess.run(["umount", "-R", f"{self.root}/storage"], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def podman(pycni):
    if not shutil.which("podman"):
        problem = "needs podman (scripts/extras.sh podman)"
        if os.environ.get("PYCNI_REQUIRE_ALL") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    p = Podman(pycni.conf_dir)
    yield p
    p.cleanup()


def podman_conflist(name, bridge, subnet, data_dir):
    """What podman 4.3 writes as 87-podman-bridge.conflist, with this test's names."""
    return {"cniVersion": "0.4.0", "name": name, "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True,
         "hairpinMode": True,
         "ipam": {"type": "host-local", "dataDir": data_dir, "routes": [{"dst": "0.0.0.0/0"}],
                  "ranges": [[{"subnet": subnet, "gateway": subnet.rsplit(".", 1)[0] + ".1"}]]}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "firewall"},
        {"type": "tuning"}]}


def test_podman_and_docker_share_a_conflist(dk, pycni, podman):
    subnet = random_subnet()
    name = "pdm-" + secrets.token_hex(4)
    bridge = "cnip" + secrets.token_hex(4)
    data_dir = os.path.join(pycni.root, "hostlocal")
    pycni.write_conf(f"87-{name}.conflist", podman_conflist(name, bridge, subnet, data_dir))
    image = podman.import_image()
    p_port, d_port = random.sample(range(20000, 40000), 2)
    try:
        podman("run", "-d", "--name", "pc", "--network", name, "-p", f"{p_port}:80", image,
               "sh", "-c", SERVER.format("podman"))
        p_ip = json.loads(podman("inspect", "pc"))[0]["NetworkSettings"]["Networks"][name]["IPAddress"]

        # Without --subnet the list's bridge is already up with the pool's route: the create
        # answers at once (with the pool, or an error naming the --subnet to pass).
        net = dk.name("shared")
        ipam = ["--ipam-driver", pycni.name, "--ipam-opt", f"cni.network={name}"]
        proc = support.run(DOCKER, "network", "create", "-d", pycni.name,
                           "-o", f"cni.network={name}", *ipam, net, check=False, timeout=60)
        if proc.returncode == 0:
            dk.networks.append(net)
            assert docker("network", "inspect", net, "-f",
                          "{{range .IPAM.Config}}{{.Subnet}}{{end}}") == subnet
        else:
            assert f"--subnet {subnet}" in proc.stderr, proc.stderr
            net = dk.network("shared", "-o", f"cni.network={name}", *ipam, "--subnet", subnet)

        a = dk.run("a", net, "-p", f"{d_port}:80", cmd=("sh", "-c", SERVER.format("docker")))
        b = dk.run("b", net)
        ips = {p_ip, inspect_net(a, net)["IPAddress"], inspect_net(b, net)["IPAddress"]}
        assert len(ips) == 3  # one pool: no address twice
        files = {os.path.basename(f) for f in support.ip_files(os.path.join(data_dir, name))}
        assert files == ips
        # Each side reaches the other, by address and through its published port.
        dk.exec(a, "ping", "-c", "1", "-W", "3", p_ip)
        assert "hello-podman" in dk.exec(b, "nc", "-w", "3", p_ip, "80")
        podman("exec", "pc", "ping", "-c", "1", "-W", "3", inspect_net(a, net)["IPAddress"])
        assert "hello-docker" in podman("exec", "pc", "nc", "-w", "3",
                                        inspect_net(a, net)["IPAddress"], "80")
        assert tcp_hello("127.0.0.1", p_port) == "hello-podman"
        assert tcp_hello("127.0.0.1", d_port) == "hello-docker"

        # Docker's side goes; podman's stays whole.
        dk.cleanup()
        assert bridge in support.links()
        files = {os.path.basename(f) for f in support.ip_files(os.path.join(data_dir, name))}
        assert files == {p_ip}
        assert tcp_hello("127.0.0.1", p_port) == "hello-podman"
        assert tcp_hello(p_ip, 80) == "hello-podman"
    finally:
        dk.cleanup()
        podman("rm", "-f", "-t", "0", "pc", check=False)
        support.run("ip", "link", "del", bridge, check=False)
