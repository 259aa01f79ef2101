"""The edge's TLS port seen by a hostile client on the internet: ClientHellos
that stall, arrive in pieces or are malformed, passthrough streams whose
agent goes away or whose client half-closes, certificate selection by odd
spellings of a name.  Real relais-edge / relais-agent processes, a local
origin and a local TLS service, all on 127.0.0.1.  Run:
RELAIS_BUILD=$PWD/build /usr/bin/python3 -m pytest -q tests/e2e/test_https_review.py
"""
import os
import socket
import ssl
import time

import pytest

from relais import (SLOW, Agent, Env, HttpsEdge, TlsOrigin, ca_ctx, client_hello, closed_within,
                    handshake_error, proc_cpu_seconds, wait_for)

ONE = "one.test"        # a certificate in cert_dir
WILD = "x.apps.test"    # served by _wildcard.apps.test
VAULT = "vault.test"    # tls: passthrough to a local TLS service
HOSTS = [ONE, WILD, VAULT]


# ---- helpers ------------------------------------------------------------------------


def main_thread_wakeups(pid):
    """How often the process's event loop thread has slept and been woken."""
    with open("/proc/%d/task/%d/status" % (pid, pid)) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches for %d" % pid)




# ---- the topology ---------------------------------------------------------------------


class Net:
    """One edge (listen.https + cert_dir), one agent with an HTTP route for
    ONE and WILD and a passthrough route for VAULT to a local TLS service."""

    def __init__(self, d, pki, origin):
        os.makedirs(d, exist_ok=True)
        self.env = Env(d, pki)
        self.pki = pki
        self.vault = TlsOrigin(pki, name="vault-origin", sans=["DNS:" + VAULT])
        o = "http://127.0.0.1:%d" % origin.http
        routes = [{"host": ONE, "to": o}, {"host": WILD, "to": o},
                  {"host": VAULT, "to": "127.0.0.1:%d" % self.vault.port,
                   "tls": "passthrough"}]
        self.agent = Agent(self.env, "home", routes=routes)
        self.edge = HttpsEdge(self.env, agents=[self.agent.entry(hosts=HOSTS)])
        self.edge.install(ONE)
        self.edge.install("_wildcard.apps.test")
        self.edge.start()
        self.agent.start(self.edge.url())
        wait_for(lambda: len(self.edge.routes()) == len(HOSTS), 5,
                 what=lambda: "all routes on the edge: %r" % self.edge.routes())
        self.https = self.edge.https_port
        self.ctx = ca_ctx(pki)

    def close(self):
        self.vault.close()
        self.env.check()


@pytest.fixture(scope="module")
def net(tmp_path_factory, pki, origin):
    n = Net(str(tmp_path_factory.mktemp("https-review")), pki, origin)
    yield n
    n.close()


# ---- stalled ClientHellos -------------------------------------------------------------


def test_stalled_client_hellos_do_not_keep_the_edge_busy(net):
    """Clients that sent part of a ClientHello and then nothing: the edge
    waits for their next bytes (or the 10 s deadline) asleep, not by looking
    at each of them again every few milliseconds.  Before the fix every
    stalled connection was peeked at 50 times a second: 3000 of them took a
    whole core and made every other client wait."""
    edge = net.edge
    pid = edge.proc.pid
    mark = edge.proc.mark()
    hello = client_hello(ONE)
    socks = []
    try:
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", net.https), timeout=5)
            s.sendall(hello[:1 + i * 7])  # a record header cut anywhere, or part of a body
            socks.append(s)
        edge.proc.wait_log("ClientHello incomplete", 5, count=len(socks), since=mark)
        w0, c0, t0 = main_thread_wakeups(pid), proc_cpu_seconds(pid), time.monotonic()
        time.sleep(2)  # the measurement window (nothing is awaited)
        w1, c1, t1 = main_thread_wakeups(pid), proc_cpu_seconds(pid), time.monotonic()
        rate = (w1 - w0) / (t1 - t0)
        # Idle, the edge wakes a few times a second at most (certificate
        # rescans, lws's own timers); polling would be >= 50 per second.
        assert rate < 15, "the edge woke %.0f times a second for 20 stalled clients" % rate
        assert c1 - c0 < 0.1 * SLOW, "the edge used %.2f s of CPU in 2 s" % (c1 - c0)
        # the rest of each hello still completes them: the edge notices
        # new bytes at once, and the handshakes succeed
        for i, s in enumerate(socks[:3]):
            s.sendall(hello[1 + i * 7:])
        for s in socks[:3]:
            s.settimeout(3 * SLOW)
            d = s.recv(5)
            assert d[:1] == b"\x16", "no ServerHello after the rest of the ClientHello: %r" % d
    finally:
        for s in socks:
            s.close()


# ---- ClientHellos taken apart and put together again ----------------------------------


def hello_message(record):
    """The handshake message (type, length, body) in a one-record first flight."""
    assert record[0] == 0x16 and len(record) == 5 + int.from_bytes(record[3:5], "big")
    return record[5:]


def as_records(msg, sizes, version=b"\x03\x01"):
    """msg cut into handshake records of the given sizes (the last one repeats)."""
    out, i, k = b"", 0, 0
    while i < len(msg):
        n = sizes[min(k, len(sizes) - 1)]
        frag = msg[i:i + n]
        out += b"\x16" + version + len(frag).to_bytes(2, "big") + frag
        i += n
        k += 1
    return out


def with_extensions(msg, edit):
    """msg (a ClientHello) with its extension list replaced by edit(list of
    (type, data)), every length recomputed."""
    body = msg[4:]
    p = 2 + 32
    p += 1 + body[p]                                   # legacy_session_id
    p += 2 + int.from_bytes(body[p:p + 2], "big")      # cipher_suites
    p += 1 + body[p]                                   # legacy_compression_methods
    head, exts, q = body[:p], [], p + 2
    while q < len(body):
        t, n = int.from_bytes(body[q:q + 2], "big"), int.from_bytes(body[q + 2:q + 4], "big")
        exts.append((t, body[q + 4:q + 4 + n]))
        q += 4 + n
    raw = b"".join(t.to_bytes(2, "big") + len(d).to_bytes(2, "big") + d for t, d in edit(exts))
    body = head + len(raw).to_bytes(2, "big") + raw
    return b"\x01" + len(body).to_bytes(3, "big") + body


def server_name(*names):
    """A server_name extension's data with these (type, name) entries."""
    lst = b"".join(bytes([t]) + len(n).to_bytes(2, "big") + n for t, n in names)
    return len(lst).to_bytes(2, "big") + lst


def replace_sni(*names, extra=()):
    def edit(exts):
        return [(0, server_name(*names)) if t == 0 else (t, d) for t, d in exts] + list(extra)
    return edit


def handshake_over(port, sni, ctx, send_first_flight):
    """A TLS client over a plain socket whose first flight goes out through
    send_first_flight(sock, record); the rest of the handshake as usual.
    Returns (sock, sslobj, inc, out) ready for app data."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    first = True
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            data = out.read()
            if first:
                send_first_flight(raw, data)
                first = False
            elif data:
                raw.sendall(data)
            data = raw.recv(65536)
            if not data:
                raise ConnectionError("closed during the handshake")
            inc.write(data)
    data = out.read()
    if data:
        raw.sendall(data)
    return raw, obj, inc, out


def request_over(raw, obj, inc, out, host, path):
    """GET path with Connection: close over a handshake_over() connection;
    the whole response (up to the server's close_notify or FIN)."""
    obj.write(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
               % (path, host)).encode())
    raw.sendall(out.read())
    resp = b""
    while True:
        data = raw.recv(65536)
        if not data:
            return resp
        inc.write(data)
        while True:
            try:
                chunk = obj.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                return resp
            if not chunk:
                return resp
            resp += chunk


def tls_get(port, sni, ctx, path):
    """GET path over TLS for sni: (the server certificate's CN, the response)."""
    raw, obj, inc, out = handshake_over(port, sni, ctx, lambda s, d: s.sendall(d))
    try:
        subject = dict(x[0] for x in obj.getpeercert()["subject"])
        return subject["commonName"], request_over(raw, obj, inc, out, sni, path)
    finally:
        raw.close()


def test_fragmented_client_hello_reaches_both_paths(net):
    """A ClientHello cut into 1-byte handshake records (RFC 8446 §5.1 allows
    any split), the records sent in two bursts with a pause at a record
    boundary, then the first bytes of a record header: the edge waits for the
    rest, then terminates TLS with the right certificate, or passes the very
    same bytes to the local TLS service."""
    for host, want in ((ONE, b'"X-Forwarded-Host", "one.test"'), (VAULT, b'"origin": "vault-origin"')):
        mark = net.edge.proc.mark()

        def send(sock, record):
            recs = as_records(hello_message(record), [3, 1])
            cut = len(recs) // 2 + 2  # inside a record header
            sock.sendall(recs[:cut])
            net.edge.proc.wait_log("ClientHello incomplete", 5, since=mark)
            sock.sendall(recs[cut:])

        conn = handshake_over(net.https, host, net.ctx, send)
        try:
            resp = request_over(*conn, host, "/headers")
        finally:
            conn[0].close()
        assert resp.startswith(b"HTTP/1.1 200"), resp[:300]
        assert want in resp, resp[:600]


def test_sni_spellings_choose_the_right_certificate(net):
    """Upper case and a final dot are the same name (RFC 6066 §3, RFC 4343);
    the wildcard covers one label whatever its case."""
    blind = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    blind.check_hostname = False
    blind.verify_mode = ssl.CERT_NONE
    want = {}
    for sni, name in ((ONE, ONE), (WILD, WILD)):
        with blind.wrap_socket(socket.create_connection(("127.0.0.1", net.https)),
                               server_hostname=sni) as s:
            want[name] = s.getpeercert(binary_form=True)
    assert want[ONE] != want[WILD]
    for sni, name in (("ONE.TEST", ONE), ("one.test.", ONE), ("One.Test.", ONE),
                      ("X.APPS.TEST.", WILD), ("zz.Apps.Test", WILD)):
        with blind.wrap_socket(socket.create_connection(("127.0.0.1", net.https)),
                               server_hostname=sni) as s:
            assert s.getpeercert(binary_form=True) == want[name], sni
    # the passthrough route, spelled differently
    conn = handshake_over(net.https, "VAULT.Test.", blind, lambda s, d: s.sendall(d))
    try:
        resp = request_over(*conn, VAULT, "/spelled")
    finally:
        conn[0].close()
    assert b'"origin": "vault-origin"' in resp and b'"path": "/spelled"' in resp, resp[:600]


def test_host_must_name_the_tls_connections_server_name(net):
    """The certificate was chosen for the SNI name: a request on that
    connection for another host the edge serves gets 421 Misdirected
    Request, not that host's service (domain fronting).  The same name
    spelled in another case or with a final dot is the same host."""
    for sni, host, want in ((ONE, WILD, b"HTTP/1.1 421 "), (WILD, ONE, b"HTTP/1.1 421 "),
                            (ONE, "One.Test.", b"HTTP/1.1 200 "),
                            ("X.Apps.Test", WILD + ":443", b"HTTP/1.1 200 ")):
        conn = handshake_over(net.https, sni, net.ctx, lambda s, d: s.sendall(d))
        try:
            resp = request_over(*conn, host, "/headers")
        finally:
            conn[0].close()
        assert resp.startswith(want), (sni, host, resp[:300])
        if want.endswith(b"421 "):
            assert b"X-Forwarded-Host" not in resp, resp[:600]


def test_malformed_server_names_are_closed_without_answer(net):
    """A server_name the parser cannot route by is refused before any TLS
    state exists: closed, no alert, no certificate, and the edge carries on."""
    msg = hello_message(client_hello(ONE))
    bad = {
        "two host names": replace_sni((0, b"one.test"), (0, b"vault.test")),
        "two server_name extensions": replace_sni((0, b"one.test"),
                                                  extra=[(0, server_name((0, b"vault.test")))]),
        "NUL inside": replace_sni((0, b"one.test\x00.evil")),
        "NUL at the end": replace_sni((0, b"one.test\x00")),
        "non-ASCII": replace_sni((0, "\u00e9t\u00e9.test".encode())),
        "empty name": replace_sni((0, b"")),
        "only a dot": replace_sni((0, b".")),
        "two final dots": replace_sni((0, b"one.test..")),
        "empty label": replace_sni((0, b"one..test")),
        "underscore": replace_sni((0, b"one_x.test")),
        "label of 64": replace_sni((0, b"a" * 64 + b".test")),
        "254 characters": replace_sni((0, (b"a" * 62 + b".") * 4 + b"ab")),
        "wildcard": replace_sni((0, b"*.apps.test")),
        "list length beyond the extension": lambda exts: [
            (t, (b"\x00\xff" + d[2:]) if t == 0 else d) for t, d in exts],
    }
    for what, edit in bad.items():
        s = socket.create_connection(("127.0.0.1", net.https), timeout=5 * SLOW)
        try:
            s.sendall(as_records(with_extensions(msg, edit), [16384]))
            assert closed_within(s, 3), "%s: still open" % what
        finally:
            s.close()
    # an encrypted_client_hello extension (draft-ietf-tls-esni, 0xfe0d) next
    # to the public name: routed by the public name, the extension ignored
    ech = (0xfe0d, b"\x00" + os.urandom(40))
    s = socket.create_connection(("127.0.0.1", net.https), timeout=5 * SLOW)
    try:
        s.sendall(as_records(with_extensions(msg, replace_sni((0, b"one.test"), extra=[ech])),
                             [16384]))
        s.settimeout(3 * SLOW)
        head = s.recv(6)
        assert head[:1] == b"\x16" and head[5:6] == b"\x02", "no ServerHello: %r" % head
    finally:
        s.close()
    assert net.edge.proc.alive()
    log = net.edge.log()
    assert "bad server name" in log and "malformed ClientHello" in log


# ---- passthrough streams ending ------------------------------------------------------


def test_passthrough_client_half_close_still_gets_the_answer(net):
    """The client sends its request and shuts its write side (FIN) before the
    answer: the FIN travels to the local TLS service, and the whole answer
    and the service's close come back."""
    conn = handshake_over(net.https, VAULT, net.ctx, lambda s, d: s.sendall(d))
    raw, obj, inc, out = conn
    try:
        obj.write(b"GET /half-closed HTTP/1.1\r\nHost: vault.test\r\n\r\n")
        raw.sendall(out.read())
        raw.shutdown(socket.SHUT_WR)
        resp = b""
        while True:
            data = raw.recv(65536)
            if not data:
                break
            inc.write(data)
            try:
                while True:
                    chunk = obj.read(65536)
                    if not chunk:
                        break
                    resp += chunk
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
    finally:
        raw.close()
    assert resp.startswith(b"HTTP/1.1 200"), resp[:300]
    assert b'"path": "/half-closed"' in resp, resp[:600]


def test_passthrough_agent_gone_mid_stream_resets_the_client(env):
    """The agent dies while a passthrough download runs: the client's
    connection ends with a TCP reset, never a clean end that a careless
    client could take for the whole answer, and the edge carries on."""
    vault = TlsOrigin(env.pki, name="vault-origin", sans=["DNS:" + VAULT])
    try:
        agent = Agent(env, "home", routes=[{"host": VAULT, "to": "127.0.0.1:%d" % vault.port,
                                            "tls": "passthrough"}])
        edge = HttpsEdge(env, agents=[agent.entry(hosts=[VAULT])])
        edge.start()
        agent.start(edge.url())
        wait_for(lambda: edge.agent_routes("home") == [("tls", VAULT)], 5,
                 what=lambda: "the passthrough route: %r" % edge.routes())
        raw, obj, inc, out = handshake_over(edge.https_port, VAULT, ca_ctx(env.pki),
                                            lambda s, d: s.sendall(d))
        try:
            obj.write(b"GET /bytes/1000000000 HTTP/1.1\r\nHost: vault.test\r\n\r\n")
            raw.sendall(out.read())
            got = len(raw.recv(65536))
            assert got > 0
            agent.proc.kill()
            raw.settimeout(5 * SLOW)
            with pytest.raises(ConnectionResetError):
                while True:
                    data = raw.recv(1 << 20)
                    assert data, "a clean end after %d bytes instead of a reset" % got
                    got += len(data)
        finally:
            raw.close()
        edge.proc.wait_log("agent 'home' disconnected", 5)
        wait_for(lambda: edge.status()["streams"] == 0, 5, what="no stream left on the edge")
        assert edge.proc.alive()
    finally:
        vault.close()


def test_fragmented_client_hello_for_the_shared_tunnel_name(env, origin):
    """With the tunnel on the HTTPS port, a ClientHello for tunnel.hostname
    that arrives in pieces still reaches the agent endpoint (lws), which
    completes the handshake with the tunnel's certificate: the socket is
    handed over with every byte still unread and wakes it as usual."""
    agent = Agent(env, "home", routes=[{"host": ONE, "to": "http://127.0.0.1:%d" % origin.http}])
    edge = HttpsEdge(env, shared_tunnel=True, agents=[agent.entry(hosts=[ONE])])
    edge.start()
    mark = edge.proc.mark()

    def send(sock, record):
        # all but the last bytes: the edge waits for more than it has, and
        # lws must still hear of the client's later (shorter) flights
        recs = as_records(hello_message(record), [7, 50])
        sock.sendall(recs[:-5])
        edge.proc.wait_log("ClientHello incomplete", 5, since=mark)
        sock.sendall(recs[-5:])

    raw, obj, inc, out = handshake_over(edge.https_port, "localhost", ca_ctx(env.pki), send)
    try:
        with open(env.pki.cert) as f:
            assert obj.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(f.read())
        # the endpoint reads what follows (a GET that is no upgrade: refused)
        resp = request_over(raw, obj, inc, out, "localhost", "/relais")
    finally:
        raw.close()
    assert resp == b"" or resp.startswith(b"HTTP/1.1 "), resp[:200]
    edge.proc.wait_log("plain HTTP request from 127.0.0.1", 5, since=mark)
    # and the agent connects through the same port
    agent.start(edge.url())
    wait_for(lambda: edge.agent_routes("home") == [("http", ONE)], 5,
             what=lambda: "home's route: %r" % edge.routes())


def test_passthrough_name_not_terminated_while_its_agent_is_away(env):
    """A passthrough host under a wildcard certificate the edge holds
    (_wildcard.apps.test, e.g. from certbot with DNS-01): while the agent that
    serves it is away, the edge must not terminate TLS for it with that
    certificate.  Before the fix it did: the client's request, meant for the
    service behind the agent, was decrypted at the edge, its path and query
    written to the access log, and answered with a 502."""
    host = "vault.apps.test"
    vault = TlsOrigin(env.pki, name="vault-origin", sans=["DNS:" + host])
    try:
        agent = Agent(env, "home", routes=[{"host": host, "to": "127.0.0.1:%d" % vault.port,
                                            "tls": "passthrough"}])
        edge = HttpsEdge(env, agents=[agent.entry(hosts=["*.apps.test"])])
        edge.install("_wildcard.apps.test")
        edge.start()
        agent.start(edge.url())
        wait_for(lambda: edge.agent_routes("home") == [("tls", host)], 5,
                 what=lambda: "the passthrough route: %r" % edge.routes())
        ctx = ca_ctx(env.pki)

        def get(sni):
            return tls_get(edge.https_port, sni, ctx, "/secret?token=abc")

        cn, resp = get(host)
        assert cn == "vault-origin" and b'"origin": "vault-origin"' in resp, (cn, resp[:300])

        mark = edge.proc.mark()
        agent.proc.stop()
        edge.proc.wait_log("agent 'home' disconnected", 5, since=mark)
        e = handshake_error(edge.https_port, host)  # fails if the edge terminated TLS
        assert "UNRECOGNIZED_NAME" in str(e).upper(), e
        edge.proc.wait_log("passthrough route down for %s" % host, 5, since=mark)
        with open(os.path.join(env.dir, "access.log")) as f:
            log = f.read()
        # the passthrough connection made before has its line; no request was read
        assert '%s "TLS -" 200 in=' % host in log, log
        assert "/secret" not in log, "the edge read a request for %s" % host
        # a name of the wildcard without a passthrough route is served as before
        cn, resp = get("other.apps.test")
        assert cn == "_wildcard.apps.test" and resp.startswith(b"HTTP/1.1 502"), (cn, resp[:200])

        # the agent back: passthrough again
        agent.start(edge.url())
        wait_for(lambda: edge.agent_routes("home") == [("tls", host)], 5,
                 what=lambda: "the passthrough route back: %r" % edge.routes())
        cn, resp = get(host)
        assert cn == "vault-origin" and b'"origin": "vault-origin"' in resp, (cn, resp[:300])
    finally:
        vault.close()


def test_passthrough_name_never_used_is_not_terminated_either(env):
    """The edge learns a passthrough name when an agent declares it, not only
    when a client first used it: a name nobody asked for yet, whose agent
    went away, is refused rather than terminated with the wildcard."""
    host = "vault.apps.test"
    agent = Agent(env, "home", routes=[{"host": host, "to": "127.0.0.1:9", "tls": "passthrough"}])
    edge = HttpsEdge(env, agents=[agent.entry(hosts=["*.apps.test"])])
    edge.install("_wildcard.apps.test")
    edge.start()
    agent.start(edge.url())
    wait_for(lambda: edge.agent_routes("home") == [("tls", host)], 5,
             what=lambda: "the passthrough route: %r" % edge.routes())
    mark = edge.proc.mark()
    agent.proc.stop()
    edge.proc.wait_log("agent 'home' disconnected", 5, since=mark)
    e = handshake_error(edge.https_port, host)  # fails if the edge terminated TLS
    assert "UNRECOGNIZED_NAME" in str(e).upper(), e
    edge.proc.wait_log("passthrough route down for %s" % host, 5, since=mark)


def test_exact_http_route_wins_over_another_agents_wildcard_passthrough(env, origin):
    """An exact route wins over a wildcard one across kinds too: agent "web"
    serves www.x.test over HTTP (the edge terminates TLS with its
    certificate), agent "vault" passes *.x.test through to its own TLS
    service.  Before the fix every HTTPS connection for www.x.test went raw
    to "vault", whose operator could hold a certificate for it.  Other names
    of the wildcard still pass through, and www.x.test does once "web" has
    gone."""
    www = "www.x.test"
    vault = TlsOrigin(env.pki, name="vault-origin", sans=["DNS:*.x.test"])
    try:
        web = Agent(env, "web", routes=[{"host": www, "to": "http://127.0.0.1:%d" % origin.http}])
        tls = Agent(env, "vault", routes=[{"host": "*.x.test", "to": "127.0.0.1:%d" % vault.port,
                                           "tls": "passthrough"}])
        edge = HttpsEdge(env, agents=[web.entry(hosts=[www]), tls.entry(hosts=["*.x.test"])])
        edge.install(www)
        edge.start()
        web.start(edge.url())
        tls.start(edge.url())
        wait_for(lambda: edge.agent_routes("web") == [("http", www)] and
                 edge.agent_routes("vault") == [("tls", "*.x.test")], 5,
                 what=lambda: "both routes: %r" % edge.routes())
        ctx = ca_ctx(env.pki)

        def get(sni):
            return tls_get(edge.https_port, sni, ctx, "/headers")

        cn, resp = get(www)
        assert cn == www and resp.startswith(b"HTTP/1.1 200"), (cn, resp[:300])
        assert b"vault-origin" not in resp, resp[:300]
        assert vault.handshakes == 0, "the vault agent got a connection for %s" % www
        cn, resp = get("other.x.test")
        assert cn == "vault-origin" and b'"origin": "vault-origin"' in resp, (cn, resp[:300])

        mark = edge.proc.mark()
        web.proc.stop()
        edge.proc.wait_log("agent 'web' disconnected", 5, since=mark)
        cn, resp = get(www)
        assert cn == "vault-origin" and b'"origin": "vault-origin"' in resp, (cn, resp[:300])
    finally:
        vault.close()


def test_client_stalled_in_the_tls_handshake_is_closed_at_header_timeout(env):
    """A client that sends its ClientHello and nothing more: the edge closes
    it once header_timeout (1 s here) is up, as it would a client sending no
    request head, not idle_timeout (30 s) later: the 408 page it queued
    before could never go out without TLS."""
    agent = Agent(env, "home", routes=[{"host": ONE, "to": "http://127.0.0.1:9"}])
    edge = HttpsEdge(env, agents=[agent.entry(hosts=[ONE])],
                     extra={"http": {"header_timeout": "1s", "idle_timeout": "30s"}})
    edge.install(ONE)
    edge.start()
    s = socket.create_connection(("127.0.0.1", edge.https_port), timeout=5 * SLOW)
    try:
        s.sendall(client_hello(ONE))
        t = time.monotonic()
        s.settimeout(10 * SLOW)
        got = b""
        try:
            while True:
                d = s.recv(65536)  # the edge's first flight, then its close
                if not d:
                    break
                got += d
        except ConnectionResetError:
            pass
        took = time.monotonic() - t
    finally:
        s.close()
    assert got[:1] == b"\x16", got[:16]  # the ServerHello came, then nothing
    assert 0.8 <= took <= 3 * SLOW, took
    edge.proc.wait_log("TLS handshake not complete in time", 5)
    assert edge.proc.alive()
