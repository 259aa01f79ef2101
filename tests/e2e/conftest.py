import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import relais  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long test (still run by default)")


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return relais.PKI(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def env(tmp_path, pki):
    e = relais.Env(str(tmp_path), pki)
    yield e
    e.close()
    # A process that crashed (or an ASan report) fails the test that ran it.
    for p in e.procs:
        log = p.log()
        assert "ERROR: AddressSanitizer" not in log, log[-4000:]
        assert "runtime error:" not in log, log[-4000:]
        assert p.p.returncode in (0, -9, -15, None), "%s exited %s\n%s" % (p.argv, p.p.returncode, log[-4000:])
