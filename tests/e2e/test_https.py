"""HTTPS at the edge end to end: client -TLS-> relais-edge (listen.https,
certificates from tls.cert_dir chosen by SNI) -> tunnel -> relais-agent ->
origin, plus SNI passthrough to a local TLS service, HTTP -> HTTPS redirects,
HSTS, certificates replaced on disk under load, the tunnel sharing the HTTPS
port, and hostile clients on the TLS port.

Certificates are issued at test time by the session's throwaway CA
(relais.PKI.issue_pair) with the SANs each test needs.  Every wait is on a
socket timeout or wait_for, never a fixed sleep.  Run:
RELAIS_BUILD=$PWD/build /usr/bin/python3 -m pytest -q tests/e2e/test_https.py
"""
import hashlib
import json
import os
import select
import socket
import ssl
import subprocess
import threading
import time

import pytest

from relais import (SLOW, Agent, Env, HttpsEdge, TlsOrigin, blind_ctx, ca_ctx, client_hello,
                    closed_within, free_port, handshake_error, install_pair, tls_connect,
                    pem_to_der, tls_origin_sha256, wait_for)

ONE, TWO, THREE = "one.test", "two.test", "three.test"
WILD = "a.apps.test"          # served by _wildcard.apps.test
WILD2 = "a.b.apps.test"       # two labels below apps.test: the wildcard does not cover it
NOREDIR = "noredir.test"      # certificate, redirect_https: false, hsts: true
HSTS = "hsts.test"            # certificate, hsts: 3600
NOCERT = "nocert.test"        # no certificate: plain HTTP stays plain
VAULT = "vault.test"          # tls: passthrough to a local TLS service
ROT = "rotate.test"           # certificate replaced while clients run
DOWN = "down.test"            # tls: passthrough to a closed local port
NEW = "new.test"              # certificate installed while the edge runs
BROKEN = "broken.test"        # replaced by a pair that does not match
GONE = "gone.test"            # certificate removed while the edge runs
ALL_HOSTS = [ONE, TWO, THREE, WILD, WILD2, NOREDIR, HSTS, NOCERT, VAULT, ROT, DOWN, NEW, BROKEN,
             GONE]


# ---- clients -------------------------------------------------------------------------


class Resp:
    def __init__(self, status, headers, body, peer_der=None, tls_version=None):
        self.status, self.headers, self.body = status, headers, body
        self.peer_der, self.tls_version = peer_der, tls_version

    def header(self, name, default=None):
        v = self.header_all(name)
        return v[0] if v else default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def fwd(self):
        """The request headers the origin saw (its /headers answer), lower-cased names."""
        got = {}
        for k, v in self.json()["headers"]:
            got.setdefault(k.lower(), []).append(v)
        return got

    def __repr__(self):
        return "<Resp %s %r %r>" % (self.status, self.headers, self.body[:200])


def read_resp(rf):
    """One response (Content-Length or close-delimited) from a buffered reader."""
    line = rf.readline(65537)
    if not line:
        raise EOFError("connection closed before a response")
    parts = line.decode("latin-1").split(" ", 2)
    assert parts[0].startswith("HTTP/1."), line
    status = int(parts[1])
    headers = []
    while True:
        line = rf.readline(65537)
        if not line:
            raise EOFError("connection closed inside a response head")
        if line == b"\r\n":
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))
    n = None
    for k, v in headers:
        if k.lower() == "content-length":
            n = int(v)
    if n is None:
        body = rf.read()
    else:
        body = rf.read(n)
        if len(body) != n:
            raise EOFError("body truncated")
    return Resp(status, headers, body)


def request_bytes(path, host, close=True, headers=()):
    hs = ["GET %s HTTP/1.1" % path, "Host: " + host] + ["%s: %s" % kv for kv in headers]
    if close:
        hs.append("Connection: close")
    return ("\r\n".join(hs) + "\r\n\r\n").encode()


def https_get(port, host, path, ctx, headers=(), sni=None):
    """GET over a new TLS connection (SNI = host unless given); the response
    with the server's certificate (DER) and the TLS version."""
    s = tls_connect(port, sni or host, ctx)
    try:
        der, version = s.getpeercert(binary_form=True), s.version()
        s.sendall(request_bytes(path, host, headers=headers))
        with s.makefile("rb") as rf:
            r = read_resp(rf)
        r.peer_der, r.tls_version = der, version
        return r
    finally:
        s.close()


def http_get(port, host, path, headers=()):
    s = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    try:
        s.sendall(request_bytes(path, host, headers=headers))
        with s.makefile("rb") as rf:
            return read_resp(rf)
    finally:
        s.close()


class Load:
    """Threads making HTTPS requests without pause until stop(): each on a new
    connection (new handshake) to host, recording the server certificate's
    serial per request and every failure."""

    def __init__(self, port, host, pki, threads=1, path="/headers"):
        self.port, self.host, self.path = port, host, path
        self.ctx = ca_ctx(pki)
        self.stopping = False
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.serials = [[] for _ in range(threads)]
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self, i):
        while not self.stopping:
            try:
                s = tls_connect(self.port, self.host, self.ctx)
                try:
                    serial = int(s.getpeercert()["serialNumber"], 16)
                    s.sendall(request_bytes(self.path, self.host))
                    with s.makefile("rb") as rf:
                        r = read_resp(rf)
                finally:
                    s.close()
                assert r.status == 200, r
                assert r.fwd()["x-forwarded-proto"] == ["https"], r
                with self.lock:
                    self.ok += 1
                    self.serials[i].append(serial)
            except Exception as e:  # noqa: BLE001 - every failure counts
                with self.lock:
                    self.failures.append("%s: %r" % (time.strftime("%T"), e))
                time.sleep(0.05)  # a broken edge must not make this spin

    def seen(self, serial):
        """Every thread has completed a request with this serial."""
        with self.lock:
            return all(serial in s for s in self.serials)

    def count(self):
        with self.lock:
            return self.ok

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join(10 * SLOW)
        return self


# ---- the topology ---------------------------------------------------------------------


class Net:
    """One edge (listen.http + listen.https + cert_dir), one agent serving
    every host of ALL_HOSTS, the HTTP origin and a TLS origin for VAULT."""

    def __init__(self, d, pki, origin):
        os.makedirs(d, exist_ok=True)
        self.env = Env(d, pki)
        self.pki = pki
        self.origin = origin
        self.vault = TlsOrigin(pki, name="vault-origin", sans=["DNS:" + VAULT])
        o = "http://127.0.0.1:%d" % origin.http
        routes = [{"host": h, "to": o}
                  for h in (ONE, TWO, THREE, WILD, WILD2, NOCERT, ROT, NEW, BROKEN, GONE)]
        routes += [
            {"host": NOREDIR, "to": o, "redirect_https": False, "hsts": True},
            {"host": HSTS, "to": o, "hsts": 3600},
            {"host": VAULT, "to": "127.0.0.1:%d" % self.vault.port, "tls": "passthrough"},
            {"host": DOWN, "to": "127.0.0.1:%d" % free_port(), "tls": "passthrough"},
        ]
        self.agent = Agent(self.env, "home", routes=routes)
        self.edge = HttpsEdge(self.env, agents=[self.agent.entry(hosts=ALL_HOSTS)])
        self.certs = {}  # host -> source certificate file
        self.serials = {}
        for h in (ONE, TWO, NOREDIR, HSTS, ROT, BROKEN, GONE):
            self.certs[h], _, self.serials[h] = self.edge.install(h)
        # one RSA certificate, with an extra SAN; both key types must work
        self.certs[THREE] = self.edge.install(THREE, sans=["DNS:" + THREE, "DNS:www.three.test"],
                                              kind="rsa")[0]
        self.certs["*.apps.test"] = self.edge.install("_wildcard.apps.test")[0]
        self.edge.start()
        self.agent.start(self.edge.url())
        wait_for(lambda: len(self.edge.routes()) == len(ALL_HOSTS), 5,
                 what=lambda: "all routes on the edge: %r" % self.edge.routes())
        self.http = self.edge.http_port
        self.https = self.edge.https_port
        self.ctx = ca_ctx(pki)

    def streams(self):
        return self.edge.status()["streams"]

    def close(self):
        self.vault.close()
        self.env.check()


@pytest.fixture(scope="module")
def net(tmp_path_factory, pki, origin):
    n = Net(str(tmp_path_factory.mktemp("https")), pki, origin)
    yield n
    n.close()


# ---- certificates by SNI --------------------------------------------------------------


def test_three_hosts_each_with_its_own_certificate(net):
    ders = set()
    for host in (ONE, TWO, THREE):
        s = tls_connect(net.https, host, net.ctx)  # verifies chain and host name
        try:
            cert = s.getpeercert()
            der = s.getpeercert(binary_form=True)
            assert s.version() in ("TLSv1.2", "TLSv1.3"), s.version()
            assert s.selected_alpn_protocol() is None  # none offered, none chosen
        finally:
            s.close()
        assert der == pem_to_der(net.certs[host]), "%s: served another certificate" % host
        assert dict(x[0] for x in cert["subject"])["commonName"] == host, cert
        sans = [v for k, v in cert["subjectAltName"] if k == "DNS"]
        assert sans == ([host, "www.three.test"] if host == THREE else [host]), cert
        ders.add(der)

        r = https_get(net.https, host, "/headers?h=" + host, net.ctx)
        assert r.status == 200, r
        assert r.peer_der == der
        got = r.fwd()
        assert got["x-forwarded-proto"] == ["https"], got
        assert got["host"] == [host] and got["x-forwarded-host"] == [host], got
        assert got["x-forwarded-for"] == ["127.0.0.1"], got
        assert r.json()["target"] == "/headers?h=" + host
    assert len(ders) == 3
    # The edge offers http/1.1 by ALPN and never h2.
    ctx = ca_ctx(net.pki)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    s = tls_connect(net.https, ONE, ctx)
    assert s.selected_alpn_protocol() == "http/1.1"
    s.close()
    # A client that offers ALPN without HTTP/1.x is refused with the alert
    # RFC 7301 requires, not served in a protocol it did not ask for.
    ctx = ca_ctx(net.pki)
    ctx.set_alpn_protocols(["h2", "imap"])
    with pytest.raises(ssl.SSLError, match="no application protocol"):
        tls_connect(net.https, ONE, ctx).close()


def test_sni_is_case_insensitive_and_keeps_alive(net):
    s = tls_connect(net.https, "TWO.Test", blind_ctx())
    try:
        assert s.getpeercert(binary_form=True) == pem_to_der(net.certs[TWO])
        with s.makefile("rb") as rf:
            for i in range(3):  # several requests on one TLS connection
                s.sendall(request_bytes("/headers?i=%d" % i, TWO, close=False))
                r = read_resp(rf)
                assert r.status == 200 and r.json()["target"] == "/headers?i=%d" % i, r
    finally:
        s.close()


def test_wildcard_certificate_covers_one_label(net):
    r = https_get(net.https, WILD, "/headers", net.ctx)
    assert r.status == 200, r
    assert r.peer_der == pem_to_der(net.certs["*.apps.test"])
    assert r.fwd()["x-forwarded-proto"] == ["https"]
    assert r.fwd()["host"] == [WILD]
    # a.b.apps.test has a route but no certificate: the wildcard must not be
    # offered (not even to a client that accepts anything), nor for apps.test.
    for sni in (WILD2, "apps.test"):
        e = handshake_error(net.https, sni)
        assert "UNRECOGNIZED_NAME" in str(e).upper(), (sni, e)


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "10"] + list(args),
                          capture_output=True, text=True, timeout=20)


def test_curl_resolve_with_test_ca(net):
    for host in (ONE, TWO, THREE, WILD, HSTS):
        r = curl("--resolve", "%s:%d:127.0.0.1" % (host, net.https), "--cacert", net.pki.ca,
                 "https://%s:%d/headers" % (host, net.https))
        assert r.returncode == 0, (host, r.stderr)
        got = {k.lower(): v for k, v in json.loads(r.stdout)["headers"]}
        assert got["x-forwarded-proto"] == "https", got
        assert got["host"] == "%s:%d" % (host, net.https), got  # as the client sent it
    # curl verifies against the CA: a name without a certificate fails the handshake
    r = curl("--resolve", "%s:%d:127.0.0.1" % (WILD2, net.https), "--cacert", net.pki.ca,
             "https://%s:%d/headers" % (WILD2, net.https))
    assert r.returncode == 35, (r.returncode, r.stderr)
    assert "unrecognized name" in r.stderr.lower(), r.stderr


# ---- redirects and HSTS ---------------------------------------------------------------


def test_http_redirects_to_https_when_a_certificate_exists(net):
    for host in (ONE, HSTS, WILD):
        r = http_get(net.http, "%s:%d" % (host, net.http), "/some/path?x=1&y=%C3%A9")
        assert r.status == 301, (host, r)
        loc = "https://%s:%d/some/path?x=1&y=%%C3%%A9" % (host, net.https)
        assert r.header("Location") == loc, (host, r)
        assert r.header("Strict-Transport-Security") is None, r  # never over plain HTTP
        # and the Location works
        r2 = https_get(net.https, host, "/some/path?x=1&y=%C3%A9", net.ctx)
        assert r2.status == 404 and r2.body == b"no such endpoint\n", r2  # the origin's 404


def test_redirect_keeps_the_whole_target(net):
    # a long path and query: the Location carries all of it
    path = "/long/" + "p" * 700 + "?q=" + "A" * 3000
    r = http_get(net.http, ONE, path)
    assert r.status == 301, r
    assert r.header("Location") == "https://%s:%d%s" % (ONE, net.https, path)
    # absolute-form target (RFC 9112 3.2.2): its path, on the https port
    for target, want in (("http://one.test/abs/p?q=1", "/abs/p?q=1"),
                         ("http://ONE.test:%d/x" % net.http, "/x"),
                         ("http://one.test", "/"),
                         ("http://one.test?q=2", "/?q=2")):
        r = http_get(net.http, ONE, target)
        assert r.status == 301, (target, r)
        assert r.header("Location") == "https://%s:%d%s" % (ONE, net.https, want), (target, r)
    # Host in upper case: the certificate lookup and the Location use the name
    r = http_get(net.http, "One.TEST", "/x")
    assert r.status == 301 and r.header("Location") == "https://%s:%d/x" % (ONE, net.https), r


def test_no_redirect_without_certificate_or_when_disabled(net):
    for host in (NOREDIR, NOCERT, WILD2):
        r = http_get(net.http, host, "/headers")
        assert r.status == 200, (host, r)
        assert r.fwd()["x-forwarded-proto"] == ["http"], r
        assert r.header("Strict-Transport-Security") is None, r
    # the route without redirect is still served over HTTPS
    r = https_get(net.https, NOREDIR, "/headers", net.ctx)
    assert r.status == 200 and r.fwd()["x-forwarded-proto"] == ["https"], r


def test_hsts_only_where_configured(net):
    r = https_get(net.https, HSTS, "/headers", net.ctx)
    assert r.status == 200, r
    assert r.header_all("Strict-Transport-Security") == ["max-age=3600"], r
    r = https_get(net.https, HSTS, "/status?code=418", net.ctx)  # on any final status
    assert r.status == 418 and r.header_all("Strict-Transport-Security") == ["max-age=3600"], r
    r = https_get(net.https, NOREDIR, "/headers", net.ctx)  # hsts: true
    assert r.header_all("Strict-Transport-Security") == ["max-age=31536000"], r
    for host in (ONE, WILD):
        r = https_get(net.https, host, "/headers", net.ctx)
        assert r.status == 200 and r.header("Strict-Transport-Security") is None, (host, r)


# ---- passthrough ----------------------------------------------------------------------


def test_passthrough_client_sees_the_origin_certificate(net):
    origin_der = pem_to_der(net.vault.crt)
    edge_ders = {pem_to_der(c) for c in net.certs.values()} | {pem_to_der(net.pki.cert)}
    assert origin_der not in edge_ders
    before = net.vault.handshakes
    results, errors = [], []

    def one(i):
        try:
            results.append(https_get(net.https, VAULT, "/vault/%d" % i, net.ctx))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    assert len(results) == 8
    assert sorted(r.json()["path"] for r in results) == sorted("/vault/%d" % i for i in range(8))
    for r in results:
        assert r.peer_der == origin_der, "the client did not get the origin's certificate"
        assert r.status == 200, r
        body = r.json()
        assert body["origin"] == "vault-origin" and body["sni"] == VAULT, body
        # the TLS origin itself answered the request this client sent
        assert body["path"].startswith("/vault/"), body
    assert net.vault.handshakes - before == 8
    # curl agrees, through the test CA
    r = curl("--resolve", "%s:%d:127.0.0.1" % (VAULT, net.https), "--cacert", net.pki.ca,
             "https://%s:%d/by-curl" % (VAULT, net.https))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["path"] == "/by-curl"
    # The edge never had a certificate for it.
    assert not [f for f in os.listdir(net.edge.cert_dir) if "vault" in f]
    assert "certs: %s" % VAULT not in net.edge.log()


def https_bulk(port, host, ctx, method, path, body=b""):
    """One request over a new TLS connection; (status, body length, body sha256)."""
    s = tls_connect(port, host, ctx, timeout=30)
    try:
        head = "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n" % (method, path, host)
        if method == "POST":
            head += "Content-Length: %d\r\n" % len(body)
        s.sendall(head.encode() + b"\r\n")
        view = memoryview(body)
        for i in range(0, len(body), 256 * 1024):
            s.sendall(view[i:i + 256 * 1024])
        with s.makefile("rb") as rf:
            r = read_resp(rf)
        return r.status, len(r.body), hashlib.sha256(r.body).hexdigest(), r
    finally:
        s.close()


def test_passthrough_bulk_both_ways(net):
    n = 8 * 1024 * 1024
    up = os.urandom(n)
    results, errors = {}, []

    def run(i):
        try:
            if i % 2:
                results[i] = https_bulk(net.https, VAULT, net.ctx, "GET", "/bytes/%d" % n)
            else:
                results[i] = https_bulk(net.https, VAULT, net.ctx, "POST", "/up", up)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60 * SLOW)
    assert not errors, errors
    for i, (status, length, digest, r) in sorted(results.items()):
        assert status == 200, r
        if i % 2:
            assert (length, digest) == (n, tls_origin_sha256(n))
        else:
            got = r.json()
            assert (got["length"], got["sha256"]) == (n, hashlib.sha256(up).hexdigest()), got
    assert len(results) == 4


def test_passthrough_local_service_down_closes(net):
    """The agent cannot reach the passthrough target: the client is closed at
    once (never a hang), and the edge does not answer with a certificate."""
    t0 = time.monotonic()
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)) as e:
        s = tls_connect(net.https, DOWN, net.ctx)
        s.close()
    assert not isinstance(e.value, socket.timeout), e.value
    assert time.monotonic() - t0 < 4 * SLOW
    # the port still serves the others
    assert https_get(net.https, ONE, "/headers", net.ctx).status == 200


# ---- certificates coming and going ------------------------------------------------------


def test_certificates_come_and_go_without_restart(net):
    """One rescan: a new pair is served, a pair replaced by a mismatching one
    keeps its previous certificate, a removed pair stops being served."""
    e = handshake_error(net.https, NEW)
    assert "UNRECOGNIZED_NAME" in str(e).upper(), e
    assert https_get(net.https, GONE, "/headers", net.ctx).status == 200
    mark = len(net.edge.log())
    new_crt = net.edge.install(NEW)[0]
    # broken.test: a new certificate next to the old key
    bad_crt, _, _ = net.pki.issue_pair(BROKEN, ["DNS:" + BROKEN])
    tmp = os.path.join(net.edge.cert_dir, ".%s.crt.tmp" % BROKEN)
    with open(bad_crt, "rb") as f, open(tmp, "wb") as g:
        g.write(f.read())
    os.rename(tmp, os.path.join(net.edge.cert_dir, BROKEN + ".crt"))
    os.unlink(os.path.join(net.edge.cert_dir, GONE + ".crt"))

    def new_served():
        try:
            return https_get(net.https, NEW, "/headers", net.ctx)
        except ssl.SSLError:
            return None

    r = wait_for(new_served, 12, interval=0.2, what="the new certificate served")
    assert r.status == 200 and r.peer_der == pem_to_der(new_crt), r
    net.edge.proc.wait_log("%s.crt removed, certificate dropped" % GONE, 6, since=mark)
    net.edge.proc.wait_log("certs: %s: skipped: the private key does not match" % BROKEN, 6,
                           since=mark)
    e = handshake_error(net.https, GONE)
    assert "UNRECOGNIZED_NAME" in str(e).upper(), e
    r = https_get(net.https, BROKEN, "/headers", net.ctx)
    assert r.status == 200 and r.peer_der == pem_to_der(net.certs[BROKEN]), \
        "the previous certificate should stay in service"
    # no HTTP -> HTTPS redirect for a host whose certificate is gone
    r = http_get(net.http, GONE, "/headers")
    assert r.status == 200 and r.fwd()["x-forwarded-proto"] == ["http"], r


# ---- certificate replaced on disk under load ------------------------------------------


def test_certificate_replaced_under_load(net):
    old_serial = net.serials[ROT]
    # a keep-alive connection opened before the change keeps working after it
    keep = tls_connect(net.https, ROT, net.ctx)
    keep_rf = keep.makefile("rb")
    assert int(keep.getpeercert()["serialNumber"], 16) == old_serial
    keep.sendall(request_bytes("/headers", ROT, close=False))
    assert read_resp(keep_rf).status == 200

    load = Load(net.https, ROT, net.pki, threads=2)
    try:
        wait_for(lambda: load.count() >= 20 and load.seen(old_serial), 10,
                 what="requests with the old certificate")
        mark = len(net.edge.log())
        crt, key, new_serial = net.pki.issue_pair(ROT, ["DNS:" + ROT])
        assert new_serial != old_serial
        # the documented way: temporary files, rename the key, then the certificate
        install_pair(net.edge.cert_dir, ROT, crt, key)
        t0 = time.monotonic()
        wait_for(lambda: load.seen(new_serial), 12,
                 what=lambda: "new handshakes with the new serial; failures %r; log:\n%s"
                 % (load.failures[:5], net.edge.log()[mark:][-2000:]))
        switched = time.monotonic() - t0
        n = load.count()
        wait_for(lambda: load.count() >= n + 20, 10, what="more requests after the change")
        # the old connection still works, with the certificate it started with
        keep.sendall(request_bytes("/headers", ROT, close=False))
        assert read_resp(keep_rf).status == 200
    finally:
        load.stop()
        keep_rf.close()
        keep.close()
    assert load.failures == [], load.failures[:10]
    for serials in load.serials:
        # each thread saw old ... old new ... new: never the old one after the new one
        first_new = serials.index(new_serial)
        assert set(serials[:first_new]) == {old_serial}
        assert set(serials[first_new:]) == {new_serial}, "old certificate served after the new"
    assert switched < 11 * SLOW
    assert "certs: %s: replaced from" % ROT in net.edge.log()[mark:]


# ---- hostile clients on the TLS port ---------------------------------------------------


def test_hostile_clients_closed_while_others_are_served(net):
    load = Load(net.https, ONE, net.pki)
    slow = {}

    def slow_sender():
        """A real ClientHello, one byte per second, until the edge hangs up."""
        hello = client_hello(ONE)
        s = socket.create_connection(("127.0.0.1", net.https), timeout=5)
        t0 = time.monotonic()
        try:
            for i in range(len(hello)):
                if time.monotonic() - t0 > 14 * SLOW:
                    break
                s.sendall(hello[i:i + 1])
                slow["sent"] = i + 1
                r, _, _ = select.select([s], [], [], 1.0)
                if r:
                    d = s.recv(4096)
                    if d:
                        slow["data"] = d
                    slow["closed"] = time.monotonic() - t0
                    return
        except OSError:
            slow["closed"] = time.monotonic() - t0
        finally:
            s.close()

    def silent():
        s = socket.create_connection(("127.0.0.1", net.https), timeout=5)
        t0 = time.monotonic()
        if closed_within(s, 14):
            slow["silent_closed"] = time.monotonic() - t0
        s.close()

    st = threading.Thread(target=slow_sender, daemon=True)
    si = threading.Thread(target=silent, daemon=True)
    st.start()
    si.start()
    try:
        wait_for(lambda: load.count() >= 5, 5, what="the normal client is served")

        # unknown SNI: a fatal alert, and no certificate at all (the blind
        # context would have accepted any)
        e = handshake_error(net.https, "unknown.test")
        assert "UNRECOGNIZED_NAME" in str(e).upper(), e
        # ... also with a verifying client, and for a name that only looks close
        for sni in ("unknown.test", "one.test.evil", "xone.test"):
            e = handshake_error(net.https, sni, ca_ctx(net.pki))
            assert "UNRECOGNIZED_NAME" in str(e).upper(), (sni, e)

        # no SNI at all
        e = handshake_error(net.https, None)
        assert "UNRECOGNIZED_NAME" in str(e).upper(), e

        # garbage, an oversized TLS record, a ClientHello announcing more than
        # 16 KiB, an SSLv2-style hello
        for junk in (b"\xff\xfethis is not TLS\r\n" * 20,
                     b"\x16\x03\x01\xff\xff" + b"\x01" * 600,
                     b"\x16\x03\x01\x01\x00\x01\x00\x4e\x20" + b"\x03\x03" + b"\x00" * 252,
                     b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + b"\x00" * 37):
            s = socket.create_connection(("127.0.0.1", net.https), timeout=5)
            try:
                s.sendall(junk)
                assert closed_within(s, 3), "garbage %r not closed" % junk[:8]
            finally:
                s.close()

        # plain HTTP on the TLS port: closed, no answer
        s = socket.create_connection(("127.0.0.1", net.https), timeout=5)
        try:
            s.sendall(request_bytes("/headers", ONE))
            assert closed_within(s, 3), "plain HTTP on the TLS port was not closed"
        finally:
            s.close()

        # a connection that closes in the middle of its ClientHello
        hello = client_hello(ONE)
        s = socket.create_connection(("127.0.0.1", net.https), timeout=5)
        s.sendall(hello[:len(hello) // 2])
        s.close()
        # ... is let go as soon as its close is seen, not at the 10 s deadline
        wait_for(lambda: "closed in the middle of its ClientHello" in net.edge.log(), 3,
                 what="the half-sent ClientHello let go at once")

        # the slow sender: closed by the 10 s deadline, not before
        st.join(16 * SLOW)
        si.join(16 * SLOW)
        assert "closed" in slow, "slow ClientHello still open after 14 s: %r" % slow
        assert "data" not in slow, slow
        assert 8.5 <= slow["closed"] <= 12.5 * SLOW, slow
        assert slow["sent"] < len(hello)
        assert "silent_closed" in slow and 8.5 <= slow["silent_closed"] <= 12.5 * SLOW, slow
        n = load.count()
        wait_for(lambda: load.count() >= n + 5, 5, what="the normal client is still served")
    finally:
        load.stop()
    assert load.failures == [], load.failures[:10]
    assert load.count() >= 20
    assert net.edge.proc.alive()
    log = net.edge.log()
    assert "no complete ClientHello within 10 s" in log
    assert "no SNI" in log and "unknown.test" in log
    wait_for(lambda: net.streams() == 0, 5,
             what=lambda: "streams back to 0: %r" % net.edge.status())


# ---- the tunnel on the HTTPS port -----------------------------------------------------


def test_tunnel_and_public_https_share_one_port(env, origin):
    o = "http://127.0.0.1:%d" % origin.http
    home = Agent(env, "home", routes=[{"host": "pub.test", "to": o}])
    late = Agent(env, "late", routes=[{"host": "late.test", "to": o}])
    edge = HttpsEdge(env, shared_tunnel=True,
                     agents=[home.entry(hosts=["pub.test"]), late.entry(hosts=["late.test"])])
    assert edge.cfg["tunnel"]["listen"] == edge.cfg["listen"]["https"]
    assert edge.cfg["tunnel"]["hostname"] == "localhost"
    pub_crt = edge.install("pub.test")[0]
    late_crt = edge.install("late.test")[0]
    edge.start()
    # the agent connects to wss://localhost:HTTPS_PORT/relais
    assert edge.url() == "wss://localhost:%d/relais" % edge.https_port
    home.start(edge.url())
    wait_for(lambda: edge.agent_routes("home") == [("http", "pub.test")], 5,
             what=lambda: "home's route: %r" % edge.routes())
    ctx = ca_ctx(env.pki)
    r = https_get(edge.https_port, "pub.test", "/headers", ctx)
    assert r.status == 200 and r.peer_der == pem_to_der(pub_crt), r
    assert r.fwd()["x-forwarded-proto"] == ["https"]

    # public clients keep going while a second agent connects on the same port
    load = Load(edge.https_port, "pub.test", env.pki, threads=2)
    try:
        wait_for(lambda: load.count() >= 10, 5, what="public HTTPS requests")
        late.start(edge.url())
        wait_for(lambda: edge.agent_routes("late") == [("http", "late.test")], 5,
                 what=lambda: "late's route: %r" % edge.routes())
        r = https_get(edge.https_port, "late.test", "/headers", ctx)
        assert r.status == 200 and r.peer_der == pem_to_der(late_crt), r
        # the tunnel name on this port gets the tunnel's certificate
        s = tls_connect(edge.https_port, "localhost", ctx)
        assert s.getpeercert(binary_form=True) == pem_to_der(env.pki.cert)
        s.close()
        n = load.count()
        wait_for(lambda: load.count() >= n + 10, 5, what="more public HTTPS requests")
    finally:
        load.stop()
    assert load.failures == [], load.failures[:10]
    # both agents' tunnels are still up on the shared port
    assert sorted(a for a, _, _ in edge.routes()) == ["home", "late"]
    assert "tunnel: connected to" in home.log() and "tunnel: connected to" in late.log()
    wait_for(lambda: edge.status()["streams"] == 0, 5, what="streams back to 0")


# ---- the end -------------------------------------------------------------------------


def test_streams_back_to_zero(net):
    wait_for(lambda: net.streams() == 0, 5,
             what=lambda: "no stream left on the edge: %r" % net.edge.status())
    wait_for(lambda: net.origin.stats()["open"] == 0, 5, what="no connection left at the origin")
    assert net.edge.proc.alive() and net.agent.proc.alive()
    # the edge still works after everything above
    r = https_get(net.https, ONE, "/headers", net.ctx)
    assert r.status == 200
