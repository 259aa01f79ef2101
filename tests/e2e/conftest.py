import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import relais  # noqa: E402
from origin import Origin  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long test (still run by default)")


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return relais.PKI(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def env(tmp_path, pki):
    e = relais.Env(str(tmp_path), pki)
    yield e
    e.check()


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    """The test origin (tests/e2e/origin.py), one per test module."""
    o = Origin(str(tmp_path_factory.mktemp("origin") / "origin.log"))
    yield o
    o.stop()


@pytest.fixture
def closing():
    """Things with .close() to close at the end of the test."""
    items = []
    yield items.append
    for x in reversed(items):
        x.close()
