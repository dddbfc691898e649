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
def _iptables_baseline():
    """Remove at the end the shared CNI chains that the tests' plugins created."""
    if support.requirement_problem(False):
        yield
        return
    before = support.chains()
    support.record_baseline()
    yield
    support.remove_global_cni_chains(before)
