import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import support  # noqa: E402


def _gate(need_docker):
    problem = support.requirement_problem(need_docker)
    if problem is None:
        return
    if os.environ.get("PYCNI_REQUIRE_ALL") == "1":
        pytest.fail(f"this test {problem}, and PYCNI_REQUIRE_ALL=1 forbids skipping it")
    pytest.skip(problem)


@pytest.fixture
def needs_root():
    _gate(False)


@pytest.fixture
def needs_docker():
    _gate(True)


@pytest.fixture(scope="session")
def needs_docker_session():
    _gate(True)


@pytest.fixture(scope="session")
def needs_root_session():
    _gate(False)


@pytest.fixture(scope="session", autouse=True)
def _host_baseline():
    """pycni's links and netns already on the host when the session starts: leak checks
    judge only newer ones. The CNI plugins' shared chains (CNI-FORWARD, CNI-HOSTPORT-*)
    that appeared during the session go at its end only if nothing is in them: one that
    another runtime's containers use meanwhile stays."""
    if support.requirement_problem(False):
        yield
        return
    support.record_baseline()
    before = support.chains()
    yield
    support.remove_new_empty_cni_chains(before)
