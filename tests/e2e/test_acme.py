"""Automatic certificates (ACME, RFC 8555, HTTP-01) end to end against
Debian's pebble.

edge/acme.c runs inside build/tests/acme_driver, which plays relais-edge's
part around it: it calls acme_want() for its hosts, answers
GET /.well-known/acme-challenge/<token> on pebble's httpPort from
acme_challenge() (with a 404 while a "fail file" exists), and logs
"driver: certificates updated" when acme_take_updated() says so.  pebble
resolves every name to 127.0.0.1 through pebble-challtestsrv.  Backoff starts
at 1 s here (RELAIS_ACME_BACKOFF_MS=1000).
"""
import datetime
import os
import re
import shutil
import signal
import socket
import stat
import time
import urllib.error
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import relais
from relais import SLOW, Pebble, Proc, free_port, run

pytestmark = pytest.mark.skipif(
    shutil.which("pebble") is None or shutil.which("pebble-challtestsrv") is None,
    reason="pebble is not installed (deploy/install-deps.sh installs it)")

DRIVER = os.path.join(relais.BUILD, "tests", "acme_driver")
HOST = "app.example.org"
PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----\n?", re.S)
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z ")


class Driver:
    """tests/acme_driver: edge/acme.c plus a tiny HTTP-01 server on http_port."""

    def __init__(self, env, hosts, directory, ca, http_port, cert_dir=None, renew_days=None,
                 fail_file=None, backoff_ms=1000, min_interval_ms=None):
        self.env = env
        self.http_port = http_port
        self.cert_dir = cert_dir or os.path.join(env.dir, "certs")
        argv = ["/usr/bin/env", "RELAIS_ACME_BACKOFF_MS=%d" % backoff_ms]
        if min_interval_ms is not None:
            argv.append("RELAIS_ACME_MIN_INTERVAL_MS=%d" % min_interval_ms)
        argv += [DRIVER, "-v",
                "-d", self.cert_dir, "-D", directory, "-C", ca, "-e", "admin@example.org",
                "-p", str(http_port)]
        if renew_days is not None:
            argv += ["-r", str(renew_days)]
        if fail_file is not None:
            argv += ["-f", fail_file]
        logpath = os.path.join(env.dir, "driver.log")
        self.since = os.path.getsize(logpath) if os.path.exists(logpath) else 0
        self.proc = Proc(argv + list(hosts), logpath)
        env.procs.append(self.proc)
        self.wait_log("driver: ready")

    @classmethod
    def on(cls, env, pebble, hosts, **kw):
        return cls(env, hosts, pebble.directory(), pebble.ca, pebble.http_port, **kw)

    def log(self):
        """This run's part of the log (a restart appends to the same file)."""
        return self.proc.log()[self.since:]

    def wait_log(self, text, timeout=5.0, count=1):
        return self.proc.wait_log(text, timeout, count=count, since=self.since)

    def path(self, name):
        return os.path.join(self.cert_dir, name)

    def challenge(self, token):
        """GET the token from the driver's HTTP-01 server: (status, body)."""
        url = "http://127.0.0.1:%d/.well-known/acme-challenge/%s" % (self.http_port, token)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stop(self):
        return self.proc.stop()


def log_times(log, text):
    """Timestamps (seconds, UTC) of the log lines containing text."""
    out = []
    for line in log.splitlines():
        m = STAMP.match(line)
        if m and text in line:
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
            out.append(t.replace(tzinfo=datetime.timezone.utc).timestamp())
    return out


def read(path):
    with open(path, "rb") as f:
        return f.read()


def chain_of(path):
    return [x509.load_pem_x509_certificate(c) for c in PEM_CERT.findall(read(path))]


def spki(pub):
    return pub.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def check_issued(env, pebble, driver, host):
    """<host>.crt is pebble's chain for host and our key; <host>.key is 0600.
    Returns the leaf certificate."""
    crt, key = driver.path(host + ".crt"), driver.path(host + ".key")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    chain = chain_of(crt)
    assert len(chain) >= 2, "leaf and pebble's intermediate"
    leaf = chain[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [host]
    priv = serialization.load_pem_private_key(read(key), None)
    assert isinstance(priv, ec.EllipticCurvePrivateKey) and priv.curve.name == "secp256r1"
    assert spki(priv.public_key()) == spki(leaf.public_key())
    root = os.path.join(env.dir, "pebble-root.pem")
    with open(root, "w") as f:
        f.write(pebble.root())
    r = run(["openssl", "verify", "-CAfile", root, "-untrusted", crt, crt])
    assert r.returncode == 0 and crt + ": OK" in r.stdout, r.stdout + r.stderr
    return leaf


def plant(cert_dir, host, not_before, not_after, other_key=False):
    """A self-signed certificate for host in cert_dir, as if issued earlier."""
    os.makedirs(cert_dir, mode=0o700, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))
    if other_key:
        key = ec.generate_private_key(ec.SECP256R1())
    with open(os.path.join(cert_dir, host + ".crt"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(os.path.join(cert_dir, host + ".key"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert


def test_issue_then_keep(env):
    pebble = Pebble(env, free_port())
    d = Driver.on(env, pebble, [HOST])
    d.wait_log("acme: %s: certificate issued, valid until" % HOST, 20)
    d.wait_log("driver: certificates updated")
    check_issued(env, pebble, d, HOST)
    log = d.log()
    assert "acme: registered account https://127.0.0.1:%d/" % pebble.port in log
    assert "acme: %s: requesting a certificate (none yet)" % HOST in log

    # Only the account key and the pair: no temporary file left behind.
    assert sorted(os.listdir(d.cert_dir)) == ["acme-account.key", HOST + ".crt", HOST + ".key"]
    account = d.path("acme-account.key")
    assert stat.S_IMODE(os.stat(account).st_mode) == 0o600
    acct = serialization.load_pem_private_key(read(account), None)
    assert acct.curve.name == "secp256r1"

    # The token was served while pebble validated, and withdrawn afterwards.
    tokens = set(re.findall(r"driver: served challenge (\S+)", log))
    assert len(tokens) == 1
    for t in tokens:
        assert d.challenge(t)[0] == 404
    assert d.challenge("unknown-token")[0] == 404

    # A restart finds the certificate good: no order, the same account key;
    # asking again (a route reconnecting) only re-checks the files.
    before = read(account), read(d.path(HOST + ".crt"))
    assert d.stop() == 0
    d = Driver.on(env, pebble, [HOST])
    d.wait_log("acme: %s: certificate valid until" % HOST)
    d.proc.signal(signal.SIGHUP)
    d.wait_log("acme: %s: certificate valid until" % HOST, count=2)
    assert "requesting a certificate" not in d.log()
    assert (read(account), read(d.path(HOST + ".crt"))) == before


def test_short_lived_certificate_renewed_at_two_thirds(env):
    """pebble issues 9-second certificates: the driver renews each one after
    two thirds of its lifetime by itself, with a fresh key (the minimum gap
    between two issuances, 10 min by default, is cut to 1 s)."""
    pebble = Pebble(env, free_port(), validity=9, authz_reuse=100)
    d = Driver.on(env, pebble, [HOST], min_interval_ms=1000)
    d.wait_log("acme: %s: certificate issued" % HOST, 20)
    first = check_issued(env, pebble, d, HOST)
    first_key = read(d.path(HOST + ".key"))

    d.wait_log("acme: %s: requesting a certificate (renewal due, expires" % HOST, 15)
    d.wait_log("acme: %s: certificate issued" % HOST, 20, count=2)
    d.wait_log("driver: certificates updated", count=2)
    second = check_issued(env, pebble, d, HOST)
    assert second.serial_number != first.serial_number
    assert read(d.path(HOST + ".key")) != first_key

    nb = first.not_valid_before.replace(tzinfo=datetime.timezone.utc).timestamp()
    na = first.not_valid_after.replace(tzinfo=datetime.timezone.utc).timestamp()
    renewed = log_times(d.log(), "requesting a certificate (renewal due")[0]
    assert nb + (na - nb) * 2 // 3 <= renewed < na, (nb, na, renewed)


def test_certificate_already_due_is_refused_without_a_loop(env):
    """pebble issues 1-second certificates, due for renewal (or expired) as
    soon as they arrive: each is refused as a failure, and the next order
    waits for the minimum gap between two issuances (10 min), so 10 s see one
    order, not one a second."""
    pebble = Pebble(env, free_port(), validity=1, authz_reuse=100)
    d = Driver.on(env, pebble, [HOST])
    d.wait_log("acme: %s: certificate request failed: the CA sent a certificate " % HOST, 20)
    time.sleep(10)
    log = d.log()
    assert re.search(r"certificate request failed: the CA sent a certificate (that has already "
                     r"expired|already due for renewal) \(valid until [^)]*\); retrying in 10 min",
                     log), log
    assert log.count("requesting a certificate") == 1, log
    assert "certificate issued" not in log
    assert not os.path.exists(d.path(HOST + ".crt"))


def test_short_lived_certificates_not_reissued_within_the_gap(env):
    """9-second certificates are due after 6 s, but one host gets at most one
    certificate per 10 min: the renewal waits, with a log line."""
    pebble = Pebble(env, free_port(), validity=9, authz_reuse=100)
    d = Driver.on(env, pebble, [HOST])
    d.wait_log("acme: %s: certificate issued" % HOST, 20)
    d.wait_log("acme: %s: a certificate is needed (renewal due, expires" % HOST, 15)
    assert re.search(r"but the last one was issued \d+ s ago; next request in (9|10) min",
                     d.log()), d.log()
    assert d.log().count("requesting a certificate") == 1


def test_expiring_broken_and_fresh_certificates(env):
    """Certificates already in cert_dir: one expiring within renew_before_days,
    one whose key does not match and one whose key others can read (the
    certificate store would refuse it) are replaced; a fresh one is kept."""
    now = datetime.datetime.utcnow().replace(microsecond=0)
    day = datetime.timedelta(days=1)
    cert_dir = os.path.join(env.dir, "certs")
    plant(cert_dir, HOST, now - 85 * day, now + 5 * day)
    plant(cert_dir, "broken.example.org", now - day, now + 89 * day, other_key=True)
    plant(cert_dir, "fresh.example.org", now - 30 * day, now + 60 * day)
    plant(cert_dir, "open.example.org", now - 30 * day, now + 60 * day)
    os.chmod(os.path.join(cert_dir, "open.example.org.key"), 0o644)
    fresh = read(os.path.join(cert_dir, "fresh.example.org.crt"))

    pebble = Pebble(env, free_port())
    d = Driver.on(env, pebble, [HOST, "broken.example.org", "fresh.example.org",
                                "open.example.org"])
    d.wait_log("acme: %s: requesting a certificate (renewal due, expires %s" %
               (HOST, (now + 5 * day).strftime("%Y-%m-%d")), 10)
    d.wait_log("acme: broken.example.org: requesting a certificate (the certificate does not "
               "match its key)", 20)
    d.wait_log("acme: fresh.example.org: certificate valid until %s" %
               (now + 60 * day).strftime("%Y-%m-%dT%H:%M:%SZ"), 20)
    d.wait_log("acme: %s: certificate issued" % HOST, 20)
    d.wait_log("acme: open.example.org: requesting a certificate (%s is readable by others)"
               % os.path.join(cert_dir, "open.example.org.key"), 20)
    d.wait_log("acme: broken.example.org: certificate issued", 20)
    d.wait_log("acme: open.example.org: certificate issued", 20)
    check_issued(env, pebble, d, HOST)
    check_issued(env, pebble, d, "broken.example.org")
    check_issued(env, pebble, d, "open.example.org")
    assert read(os.path.join(cert_dir, "fresh.example.org.crt")) == fresh
    assert "fresh.example.org: requesting" not in d.log()


def test_failed_challenge_retried_with_backoff(env):
    """The token server answers 404 at first: the failure is logged with what
    the CA said, retried after 1 s, then 2 s (a repeated acme_want() does not
    cut the backoff short) with the same account, and succeeds once the token
    is served."""
    fail = os.path.join(env.dir, "fail")
    open(fail, "w").close()
    pebble = Pebble(env, free_port())
    d = Driver.on(env, pebble, [HOST], fail_file=fail)
    d.wait_log("; retrying in 1 s", 20)
    d.wait_log("; retrying in 2 s", 20)
    d.proc.signal(signal.SIGHUP)  # acme_want() again while backing off
    d.wait_log("driver: wanting every host again")
    os.unlink(fail)
    d.wait_log("acme: %s: certificate issued" % HOST, 20)
    check_issued(env, pebble, d, HOST)

    log = d.log()
    assert re.search(r"ERROR: acme: app\.example\.org: certificate request failed: challenge "
                     r"failed: the CA said: .*acme-challenge/\S+ returned 404 \(unauthorized\); "
                     r"retrying in 1 s", log), log
    assert "driver: refused challenge" in log
    asked = log_times(log, "acme: %s: requesting a certificate" % HOST)
    failed = log_times(log, "certificate request failed")
    assert len(asked) == 3 and len(failed) == 2, log
    assert asked[1] - failed[0] >= 0.99 and asked[2] - failed[1] >= 1.99, (asked, failed)
    # One account for all three attempts: a failure does not register again.
    assert pebble.log().count("POST /sign-me-up") == 1, pebble.log()
    assert log.count("acme: registered account") == 1


def test_untrusted_ca_refused(env, tmp_path):
    """The ACME server's certificate is checked against tls.acme.ca."""
    other = str(tmp_path / "other-ca.crt")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(tmp_path / "other-ca.key"), "-out", other, "-days", "2",
         "-subj", "/CN=someone else"], check=True)
    pebble = Pebble(env, free_port())
    d = Driver(env, [HOST], pebble.directory(), other, pebble.http_port)
    d.wait_log("certificate request failed: TLS: the server's certificate is not trusted", 10)
    d.wait_log("; retrying in 1 s")
    assert "POST" not in pebble.log()


def test_unreachable_or_silent_ca_stops_promptly(env):
    """A CA that refuses connections is retried with backoff; a CA that never
    answers does not hold up SIGTERM (the request is abandoned at once)."""
    closed = free_port()
    d = Driver(env, [HOST], "https://127.0.0.1:%d/dir" % closed, env.pki.ca, free_port())
    d.wait_log("certificate request failed: cannot connect to 127.0.0.1 port %d" % closed, 5)
    d.wait_log("; retrying in 2 s", 10)
    t = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t < 2 * SLOW

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nobody ever answers
    try:
        d = Driver(env, [HOST], "https://127.0.0.1:%d/dir" % silent.getsockname()[1],
                   env.pki.ca, free_port())
        d.wait_log("acme: %s: requesting a certificate" % HOST)
        time.sleep(0.5)
        t = time.monotonic()
        assert d.stop() == 0
        assert time.monotonic() - t < 2 * SLOW
        assert "driver: stopped" in d.log()
    finally:
        silent.close()
