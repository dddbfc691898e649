"""docker compose v2 as a user runs it, on a pycni network and on Docker's bridge in the same
test: aliases, a static address, published ports, depends_on, restart policies, down, and
the recreate path (compose 2.31+ removes and re-creates a network whose block changed)."""

import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import support
from dockerlib import DOCKER, IMAGE, assert_nothing_left, docker, random_subnet
from test_ports import tcp_hello

COMPOSE_PLUGIN = "/usr/local/lib/docker/cli-plugins/docker-compose"


@pytest.fixture
def compose_cli():
    if not os.access(COMPOSE_PLUGIN, os.X_OK):
        problem = "needs docker compose v2 (scripts/extras.sh compose)"
        if os.environ.get("PYCNI_REQUIRE_ALL") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    return COMPOSE_PLUGIN


def project_yaml(driver, subnet, port, label="one"):
    static = subnet.rsplit(".", 1)[0] + ".10"
    # JSON is YAML: no YAML library needed to write it.
    return json.dumps({
        "services": {
            "web": {"image": IMAGE, "pull_policy": "never", "restart": "always",
                    "command": ["sh", "-c", "nc -ll -p 80 -e echo hello-tcp"],
                    "ports": [f"{port}:80"],
                    "networks": {"front": {"aliases": ["webalias"], "ipv4_address": static}}},
            "client": {"image": IMAGE, "pull_policy": "never", "restart": "unless-stopped",
                       "command": ["sleep", "3600"], "depends_on": ["web"],
                       "networks": ["front"]},
        },
        "networks": {"front": {"driver": driver, "labels": {"pycni.test": label},
                               "ipam": {"config": [{"subnet": subnet}]}}},
    }), static


class Project:
    def __init__(self, compose, name, driver):
        self.compose, self.name, self.driver = compose, name, driver
        self.dir = tempfile.mkdtemp(prefix="pycni-compose-")
        self.file = os.path.join(self.dir, "compose.yaml")

    def write(self, text):
        with open(self.file, "w") as f:
            f.write(text)

    def run(self, *args, check=True):
        return support.run(DOCKER, "compose", "-p", self.name, "-f", self.file, *args,
                           check=check, timeout=180).stdout

    def container(self, service):
        return f"{self.name}-{service}-1"

    def network(self):
        return f"{self.name}_front"

    def down(self):
        if os.path.exists(self.file):
            self.run("down", "-t", "0", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_running(container, restarts=0, timeout=60):
    """Until the container runs, having restarted at least `restarts` times."""
    deadline = time.monotonic() + timeout
    while True:
        status, count = docker("inspect", container, "-f",
                               "{{.State.Status}} {{.RestartCount}}").split()
        if status == "running" and int(count) >= restarts:
            return
        assert time.monotonic() < deadline, f"{container} is {status}, {count} restarts"
        time.sleep(0.2)


def crash(container):
    """The container's process dies (not `docker kill`, which is a manual stop that restart
    policies leave alone)."""
    count = int(docker("inspect", container, "-f", "{{.RestartCount}}"))
    os.kill(int(docker("inspect", container, "-f", "{{.State.Pid}}")), signal.SIGKILL)
    return count + 1


def exercise(project, subnet):
    """What a user checks of a compose project; returns the network's id."""
    port = random.randint(20000, 40000)
    text, static = project_yaml(project.driver, subnet, port)
    project.write(text)
    project.run("up", "-d")
    web, client = project.container("web"), project.container("client")
    nid = docker("network", "inspect", project.network(), "-f", "{{.Id}}")
    addr = docker("inspect", web, "-f",
                  "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
    assert addr == static
    for target in ("web", "webalias", static):
        docker("exec", client, "ping", "-c", "1", "-W", "3", target)
    assert "hello-tcp" in docker("exec", client, "nc", "-w", "3", "webalias", "80")
    assert tcp_hello("127.0.0.1", port) == "hello-tcp"
    # restart: always brings a killed service back, address and alias kept.
    wait_running(web, crash(web))
    assert docker("inspect", web, "-f",
                  "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}") == static
    docker("exec", client, "ping", "-c", "1", "-W", "3", "webalias")
    assert tcp_hello("127.0.0.1", port) == "hello-tcp"
    # The recreate path: a changed network block is a new network, containers moved over.
    # What survives it (compose 2.40 reconnects without the service's aliases and address)
    # is compose's and Docker's doing: the test compares it with the bridge's.
    text, _ = project_yaml(project.driver, subnet, port, label="two")
    project.write(text)
    out = project.run("up", "-d", "--remove-orphans")
    new_nid = docker("network", "inspect", project.network(), "-f", "{{.Id}}")
    assert new_nid != nid, f"compose did not recreate the network:\n{out}"
    wait_running(web)
    wait_running(client)
    new_addr = docker("inspect", web, "-f",
                      "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
    docker("exec", client, "ping", "-c", "1", "-W", "3", new_addr)
    after = {"static address kept": new_addr == static,
             "port answers": answers(port)}
    # Names from Docker's view, not by asking its DNS: a name it does not know would be
    # forwarded to the host's resolver, off this machine.
    endpoint = json.loads(docker("inspect", web, "-f", "{{json .NetworkSettings.Networks}}"))
    names = {n for ep in endpoint.values()
             for n in (ep.get("Aliases") or []) + (ep.get("DNSNames") or [])}
    for name in ("web", "webalias"):
        after[f"{name} is a name of it"] = name in names
    project.run("down", "-t", "0")
    assert docker("ps", "-aq", "--filter", f"name={project.name}-") == ""
    assert subprocess.run([DOCKER, "network", "inspect", project.network()],
                          capture_output=True).returncode != 0
    return [nid, new_nid], after


def answers(port):
    try:
        return tcp_hello("127.0.0.1", port) == "hello-tcp"
    except OSError:
        return False


def test_compose_project_on_pycni_as_on_bridge(dk, pycni, compose_cli):
    seen = {}
    for driver in ("bridge", pycni.name):
        project = Project(compose_cli, f"pc{dk.tag}{driver[:2]}", driver)
        subnet = random_subnet()
        try:
            nids, seen[driver] = exercise(project, subnet)
        finally:
            project.down()
        if driver == pycni.name:
            assert_nothing_left(pycni, nids, [subnet])
    assert seen[pycni.name] == seen["bridge"], seen
