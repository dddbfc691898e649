"""End-to-end fixtures: a real dockerd, the docker CLI, a pycni server on a unique socket."""

import os
import subprocess

import pytest

import support

from dockerlib import DOCKER, Docker, PycniServer, docker, make_busybox_image


def pytest_collection_modifyitems(config, items):
    """Tests of what only newer engines send, or only newer CNI plugins speak, are
    deselected, not skipped, where they do not apply (the matrix runs them where they do)."""
    cni = [i for i in items if i.get_closest_marker("cni_version")]
    # The managed plugin runs the CNI plugins it bundles: Debian 12's, as this host's own.
    dirs = ["/usr/lib/cni"] if os.environ.get("PYCNI_TEST_DRIVER") == "managed" else None
    drop = [i for i in cni if support.CNI_BIN_DIRS and not support.cni_plugins_speak(
        i.get_closest_marker("cni_version").args[0], dirs)]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [i for i in items if i not in drop]
    if os.environ.get("PYCNI_TEST_DRIVER") == "managed":
        drop = [i for i in items if i.get_closest_marker("host_paths")]
        config.hook.pytest_deselected(items=drop)
        items[:] = [i for i in items if i not in drop]
    marked = [i for i in items if i.get_closest_marker("min_engine")]
    if not marked:
        return
    proc = subprocess.run([DOCKER, "version", "-f", "{{.Server.Version}}"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return  # no engine: the tests fail on needs_docker, as every other e2e test
    major = int(proc.stdout.split(".")[0])
    drop = [i for i in marked if major < i.get_closest_marker("min_engine").args[0]]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [i for i in items if i not in drop]


@pytest.fixture(scope="session")
def busybox_image(needs_docker_session):
    return make_busybox_image()


@pytest.fixture(scope="session")
def pycni(busybox_image):
    """The driver under test: `pycni serve` (legacy plugin), or with
    PYCNI_TEST_DRIVER=managed the managed plugin built from this checkout."""
    if os.environ.get("PYCNI_TEST_DRIVER") == "managed":
        from pluginlib import ManagedPycni
        server = ManagedPycni()
    else:
        server = PycniServer()
    server.start()
    yield server
    # Anything a failed test left on this driver's networks.
    for net in docker("network", "ls", "-q", "--filter", f"driver={server.name}").split():
        for cid in docker("network", "inspect", net, "-f",
                          "{{range $k, $v := .Containers}}{{$k}} {{end}}").split():
            docker("rm", "-f", cid, check=False)
        docker("network", "rm", net, check=False)
    server.stop()
    server.cleanup()


@pytest.fixture
def dk(needs_docker, pycni):
    d = Docker(pycni.name)
    yield d
    d.cleanup()


