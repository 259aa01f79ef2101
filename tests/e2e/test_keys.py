"""Agent keys on the command line (`relais-agent keygen` / `pubkey`), the key
file permission check, and --help / --version of both binaries."""
import base64
import os
import re
import stat
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relais import AGENT_BIN, EDGE_BIN, SLOW, run

PUBKEY_RE = re.compile(r"^ed25519:([A-Za-z0-9+/]{43}=)$")
PERM_MSG = "is readable or writable by group/others (mode 0644); run: chmod 600"


def keygen(path):
    # umask 0: the 0600 mode must come from relais itself
    return run([AGENT_BIN, "keygen", path], preexec_fn=lambda: os.umask(0))


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keygen_writes_0600_and_prints_the_public_key(tmp_path):
    path = str(tmp_path / "agent.key")
    r = keygen(path)
    assert r.returncode == 0, r.stderr
    m = PUBKEY_RE.match(r.stdout.rstrip("\n"))
    assert m and r.stdout.count("\n") == 1, r.stdout
    assert len(base64.b64decode(m.group(1))) == 32
    assert mode(path) == 0o600
    # the file holds the seed; the printed key is its Ed25519 public key
    text = open(path).read()
    assert text.startswith("ed25519-secret:") and text.endswith("\n") and text.count("\n") == 1
    seed = base64.b64decode(text[len("ed25519-secret:"):].strip())
    pub = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.b64decode(m.group(1)) == pub


def test_keygen_never_overwrites(tmp_path):
    path = str(tmp_path / "agent.key")
    assert keygen(path).returncode == 0
    before = open(path, "rb").read()
    r = keygen(path)
    assert r.returncode != 0
    assert "refusing to overwrite" in r.stderr
    assert r.stdout == ""
    assert open(path, "rb").read() == before and mode(path) == 0o600


@pytest.mark.parametrize("arg", ["--help", "-h", "-"])
def test_keygen_refuses_an_option_for_a_file_name(tmp_path, arg):
    """`relais-agent keygen --help` once wrote a private key to ./--help."""
    r = run([AGENT_BIN, "keygen", arg], cwd=str(tmp_path))
    assert r.returncode == 2 and "looks like an option, not a file name" in r.stderr, r
    assert r.stdout == "" and os.listdir(str(tmp_path)) == []


def test_pubkey_prints_the_same_key(tmp_path):
    path = str(tmp_path / "agent.key")
    printed = keygen(path).stdout
    r = run([AGENT_BIN, "pubkey", path])
    assert (r.returncode, r.stdout) == (0, printed)


def test_key_readable_by_others_is_refused(tmp_path):
    path = str(tmp_path / "agent.key")
    assert keygen(path).returncode == 0
    os.chmod(path, 0o644)
    r = run([AGENT_BIN, "pubkey", path])
    assert r.returncode != 0 and r.stdout == ""
    assert PERM_MSG in r.stderr and path in r.stderr
    cfg = str(tmp_path / "agent.yaml")
    with open(cfg, "w") as f:
        f.write("edge: wss://edge.test/relais\nkey: %s\n" % path)
    r = run([AGENT_BIN, "-t", "-c", cfg])
    assert r.returncode == 1
    assert "configuration OK" not in r.stdout
    assert PERM_MSG in r.stderr and path in r.stderr
    # the same file with the right mode is fine
    os.chmod(path, 0o600)
    assert run([AGENT_BIN, "-t", "-c", cfg]).stdout == "configuration OK\n"


def test_key_file_that_is_not_a_key_is_refused(tmp_path):
    path = str(tmp_path / "agent.key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"ed25519-secret:not base64\n")
    os.close(fd)
    r = run([AGENT_BIN, "pubkey", path])
    assert r.returncode != 0 and "not a relais private key" in r.stderr


@pytest.mark.parametrize("binary,name", [(EDGE_BIN, "relais-edge"), (AGENT_BIN, "relais-agent")],
                         ids=["edge", "agent"])
def test_help_and_version(binary, name):
    r = run([binary, "--help"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: %s" % name) and "-c" in r.stdout and "-t" in r.stdout
    r = run([binary, "--version"])
    assert r.returncode == 0, r.stderr
    assert re.match(r"^%s \d+\.\d+\.\d+" % name, r.stdout), r.stdout
    # a wrong option is a usage error, not a start
    r = run([binary, "--no-such-option"])
    assert r.returncode != 0 and "usage:" in r.stderr


def test_fifo_as_key_file_fails_at_once(tmp_path):
    """Opening a FIFO blocks until a writer comes; the key is refused instead."""
    path = str(tmp_path / "agent.key")
    os.mkfifo(path, 0o600)
    cfg = str(tmp_path / "agent.yaml")
    with open(cfg, "w") as f:
        f.write("edge: ws://127.0.0.1:9/relais\nkey: %s\n" % path)
    for argv in ([AGENT_BIN, "pubkey", path], [AGENT_BIN, "-t", "-c", cfg],
                 [AGENT_BIN, "-c", cfg]):
        t0 = time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10 * SLOW)
        assert time.monotonic() - t0 < 1.0 * SLOW, argv
        assert r.returncode == 1 and r.stdout == "", (argv, r.stdout, r.stderr)
        assert "%s: not a regular file" % path in r.stderr, (argv, r.stderr)
