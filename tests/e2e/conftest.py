"""End-to-end fixtures: a real dockerd, the docker CLI, a pycni server on a unique socket."""

import pytest

from dockerlib import Docker, PycniServer, docker, make_busybox_image


@pytest.fixture(scope="session")
def busybox_image(needs_docker_session):
    return make_busybox_image()


@pytest.fixture(scope="session")
def pycni(busybox_image):
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


