"""The tunnel core end to end: route declarations, authentication, hostile
clients on the agent endpoint, reconnects, dead paths and signals.

Real relais-edge / relais-agent processes on 127.0.0.1; every wait is on a
log line or on /status, never a fixed sleep.
"""
import base64
import hashlib
import os
import re
import signal
import socket
import ssl
import struct
import time

import pytest
import websockets.exceptions

from relais import (AGENT_BIN, AUTH, GOAWAY, HELLO, KIND_HTTP, KIND_TCP, PING, PONG, REJECT, ROUTE,
                    ROUTE_ANSWER, SLOW, WELCOME, Agent, Edge, FakeEdge, HandKey, RawTunnel,
                    TcpRelay, TcpService, UdpEcho, code_reason, echo_handler, echo_roundtrip,
                    frame,
                    free_port, listening_pids, parse_frames, route_frame, run, stream_setup,
                    tls_client_context, udp_ask, wait_for)

CODE_PROTOCOL, CODE_AUTH = 1, 9
BAD_SIGNATURE = "authentication failed: bad signature"


def route(host, **kw):
    return dict(host=host, to="http://127.0.0.1:9", **kw)


def stream(listen):
    return {"listen": listen, "to": "127.0.0.1:9"}


def ports(port, kind="tcp"):
    return (kind, "%d-%d" % (port, port))


def home_pair(env, **agent_kw):
    """Agent 'home' with www.home.test, connected to a fresh edge allowing *.home.test."""
    a = Agent(env, "home", routes=[route("www.home.test")], **agent_kw)
    e = Edge(env, agents=[a.entry(hosts=["*.home.test"])]).start()
    a.start(e.url())
    a.proc.wait_log("route www.home.test accepted by the edge")
    assert e.agent_routes("home") == [("http", "www.home.test")]
    return a, e


# ---- route declarations ----------------------------------------------------------



def refused(host, port):
    try:
        socket.create_connection((host, port), 2).close()
        return False
    except ConnectionRefusedError:
        return True



def start_agent_with_hosts(env, a, edge_url, hosts):
    """Start agent a with its own /etc/hosts (a private mount namespace: the
    machine's file is untouched).  Needs root, as CI has."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a private /etc/hosts (unshare --mount)")
    path = os.path.join(env.dir, "hosts")
    with open(path, "w") as f:
        f.write(hosts)
    a.start(edge_url, wait=False,
            wrap=["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
                  path])


def test_agent_tries_each_address_of_a_name(env):
    """Names with an IPv6 and an IPv4 address, IPv6 first (RFC 6724), where
    only IPv4 listens: the edge (tunnel on 127.0.0.1) and a service (on
    127.0.0.1) are still reached, by the next address.  The agent used the
    first answer only: "localhost" as ::1 on a stock Debian /etc/hosts, and a
    service on 0.0.0.0, meant every connection refused."""
    origin = TcpService(echo_handler)
    port = free_port()
    a, e = stream_setup(env, [{"listen": "tcp/%d" % port, "to": "dual.test:%d" % origin.port}])
    e.start()
    try:
        start_agent_with_hosts(env, a, "wss://edge.test:%d/relais" % e.tunnel_port,
                               "127.0.0.1 localhost\n::1 edge.test dual.test\n"
                               "127.0.0.1 edge.test dual.test\n")
        a.proc.wait_log("cannot connect to wss://edge.test:%d/relais (::1)" % e.tunnel_port)
        a.proc.wait_log("route tcp/%d accepted by the edge" % port)
        assert echo_roundtrip("127.0.0.1", port, b"both families") == b"both families"
        a.proc.wait_log("trying 127.0.0.1")
    finally:
        origin.close()

def test_udp_flow_moves_to_the_next_address_of_a_name(env, closing):
    """A UDP service named dual.test (::1 first, then 127.0.0.1) listening on
    127.0.0.1 only.  A flow's first address refuses (an ICMP error on its
    socket): the flow moves to the next.  Later flows of the route start at
    the address that answered, and their first datagram, which came while
    the name was looked up, is not lost."""
    echo = UdpEcho()
    closing(echo)
    port = free_port(socket.SOCK_DGRAM)
    a, e = stream_setup(env, [{"listen": "udp/%d" % port, "to": "dual.test:%d" % echo.port}])
    e.start()
    start_agent_with_hosts(env, a, e.url(),
                           "127.0.0.1 localhost\n::1 dual.test\n127.0.0.1 dual.test\n")
    a.proc.wait_log("route udp/%d accepted by the edge" % port)
    assert udp_ask("127.0.0.1", port, b"first", timeout=0.5, tries=10) == b"echo:first"
    a.proc.wait_log("trying 127.0.0.1:%d" % echo.port)
    for i in range(3):  # new client ports: new flows, each answered at once
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        closing(s)
        s.settimeout(3)
        s.sendto(b"flow %d" % i, ("127.0.0.1", port))
        assert s.recvfrom(65536)[0] == b"echo:flow %d" % i
    assert a.log().count("trying 127.0.0.1:%d" % echo.port) == 1


def test_udp_burst_to_a_refusing_address_moves_on_in_order(env, closing):
    """A burst of datagrams opens a flow to dual.test, whose first address
    (::1) refuses.  The refusal (ICMP) comes back while the burst is being
    sent; sendmmsg() would hide it, the agent sends the rest one by one so
    it sees it: the datagrams not yet sent move to 127.0.0.1, in order."""
    echo = UdpEcho()
    closing(echo)
    port = free_port(socket.SOCK_DGRAM)
    a, e = stream_setup(env, [{"listen": "udp/%d" % port, "to": "dual.test:%d" % echo.port}])
    e.start()
    start_agent_with_hosts(env, a, e.url(),
                           "127.0.0.1 localhost\n::1 dual.test\n127.0.0.1 dual.test\n")
    a.proc.wait_log("route udp/%d accepted by the edge" % port)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closing(s)
    for i in range(4):  # the most a flow holds until its socket is up
        s.sendto(b"b%d" % i, ("127.0.0.1", port))
    s.settimeout(3)
    got = [s.recvfrom(65536)[0]]
    s.settimeout(0.5)
    try:
        while True:
            got.append(s.recvfrom(65536)[0])
    except socket.timeout:
        pass
    assert got == sorted(got) and len(set(got)) == len(got), got
    assert got[-1] == b"echo:b3", got
    a.proc.wait_log("trying 127.0.0.1:%d" % echo.port)


def test_tunnel_listens_only_where_told(env):
    """tunnel.listen 127.0.0.1:P is bound to 127.0.0.1 alone (lws, given that
    address, used to listen on all of them); "[::]:P" and "0.0.0.0:P" take
    IPv4 and IPv6."""
    a = Agent(env, "home")
    e = Edge(env, agents=[a.entry()]).start()
    assert refused("127.0.0.2", e.tunnel_port)
    a.start(e.url())
    # "[::]", and "0.0.0.0" as it always did (lws listened on "::" for it:
    # agents whose edge name has an AAAA record come over IPv6)
    for n, wild in enumerate(("[::]", "0.0.0.0"), 2):
        e.stop()
        e.cfg["tunnel"]["listen"] = "%s:%d" % (wild, e.tunnel_port)
        e.write()
        e.start()
        for host in ("127.0.0.1", "::1"):
            socket.create_connection((host, e.tunnel_port), 2).close()
        a.proc.wait_log("tunnel: connected to", count=n, timeout=10)

def test_allowed_routes_are_accepted_and_listed(env):
    tcp, udp = free_port(), free_port(socket.SOCK_DGRAM)
    a = Agent(env, "home",
              routes=[route("www.home.test"), route("*.apps.home.test"), route("home.test"),
                      {"host": "vault.home.test", "to": "127.0.0.1:9", "tls": "passthrough"}],
              streams=[stream("tcp/%d" % tcp), stream("udp/%d" % udp)])
    e = Edge(env, agents=[a.entry(hosts=["*.home.test", "home.test"],
                                  ports=["tcp/%d" % tcp, "udp/%d" % udp])]).start()
    a.start(e.url())
    for name in ["www.home.test", "*.apps.home.test", "home.test", "vault.home.test",
                 "tcp/%d" % tcp, "udp/%d" % udp]:
        a.proc.wait_log("route %s accepted by the edge" % name)
    assert e.agent_routes("home") == sorted([
        ("http", "www.home.test"), ("http", "*.apps.home.test"), ("http", "home.test"),
        ("tls", "vault.home.test"), ports(tcp), ports(udp, "udp")])
    assert "refused" not in a.log()


def test_disallowed_host_and_port_are_refused_with_reason(env):
    good, bad = free_port(), free_port()
    a = Agent(env, "home",
              routes=[route("www.home.test"), route("evil.example"), route("*.test")],
              streams=[stream("tcp/%d" % good), stream("tcp/%d" % bad)])
    e = Edge(env, agents=[a.entry(hosts=["*.home.test"], ports=["tcp/%d" % good])]).start()
    a.start(e.url())
    a.proc.wait_log("route evil.example refused by the edge: "
                    "host 'evil.example' is not allowed for agent 'home'")
    # a wildcard wider than the allowed one is refused too
    a.proc.wait_log("route *.test refused by the edge: "
                    "host '*.test' is not allowed for agent 'home'")
    a.proc.wait_log("route tcp/%d refused by the edge: "
                    "port tcp/%d-%d is not allowed for agent 'home'" % (bad, bad, bad))
    a.proc.wait_log("route tcp/%d accepted by the edge" % good)
    a.proc.wait_log("route www.home.test accepted by the edge")
    assert e.agent_routes("home") == [("http", "www.home.test"), ports(good)]


def test_route_held_by_another_agent_is_refused(env):
    port = free_port()
    home = Agent(env, "home", routes=[route("shared.test")], streams=[stream("tcp/%d" % port)])
    other = Agent(env, "other", routes=[route("shared.test"), route("other.test")],
                  streams=[stream("tcp/%d" % port)])
    e = Edge(env, agents=[
        home.entry(hosts=["shared.test"], ports=["tcp/%d" % port]),
        other.entry(hosts=["shared.test", "other.test"], ports=["tcp/%d" % port])]).start()
    home.start(e.url())
    home.proc.wait_log("route shared.test accepted by the edge")
    home.proc.wait_log("route tcp/%d accepted by the edge" % port)
    other.start(e.url())
    # The agent learns why, not who: the holder's name is in the edge's log only.
    other.proc.wait_log("route shared.test refused by the edge: "
                        "host 'shared.test' is held by another agent")
    other.proc.wait_log("route tcp/%d refused by the edge: port %d is held by another agent"
                        % (port, port))
    e.proc.wait_log("agent 'other': route shared.test refused: "
                    "host 'shared.test' is held by another agent (agent 'home')")
    assert "'home'" not in other.proc.log()
    other.proc.wait_log("route other.test accepted by the edge")
    assert e.routes() == sorted([("home", "http", "shared.test"), ("home",) + ports(port),
                                 ("other", "http", "other.test")])


# ---- authentication ------------------------------------------------------------------


def test_unknown_key_is_rejected_and_the_agent_keeps_retrying(env):
    known = Agent(env, "home")
    stranger = Agent(env, "stranger", routes=[route("www.home.test")])
    e = Edge(env, agents=[known.entry(hosts=["*.home.test"])]).start()
    stranger.start(e.url(), wait=False)
    e.proc.wait_log("unknown key %s" % stranger.pubkey)
    stranger.proc.wait_log("the edge rejected this agent: "
                           "authentication failed: key not authorized")
    stranger.proc.wait_log("rejected this agent", count=2)  # tried again after a backoff
    assert stranger.proc.alive()
    assert e.status()["sessions"] == []
    assert "accepted by the edge" not in stranger.log()


@pytest.fixture
def hand(env):
    """An edge that knows one key made in Python (agent 'hand', *.hand.test)."""
    key = HandKey(os.path.join(env.dir, "hand.key"))
    e = Edge(env, agents=[key.entry("hand", hosts=["*.hand.test"])]).start()
    return key, e


def test_hand_made_auth_is_welcomed(hand):
    key, e = hand
    # the key file format is the one relais-agent reads
    assert run([AGENT_BIN, "pubkey", key.path]).stdout.strip() == key.pubtext
    t = RawTunnel(e)
    try:
        t.send(key.auth(t.hello(), name=b"laptop"))
        (typ, stream_id, p), = parse_frames(t.recv())
        assert (typ, stream_id) == (WELCOME, 0)
        window, ping_ms, n = struct.unpack(">IIB", p[:9])
        assert p[9:9 + n] == b"hand" and window > 0 and ping_ms > 0
        e.proc.wait_log("agent 'hand' authenticated")
        t.send(route_frame(7, KIND_HTTP, "www.hand.test"))
        (typ, stream_id, p), = parse_frames(t.recv())
        assert (typ, stream_id, code_reason(p)) == (ROUTE_ANSWER, 7, (0, ""))
        assert e.agent_routes("hand") == [("http", "www.hand.test")]
        t.send(frame(PING, struct.pack(">Q", 0x1234)))
        assert parse_frames(t.recv()) == [(PONG, 0, struct.pack(">Q", 0x1234))]
    finally:
        t.close()


def ws_client_frame(payload):
    """One masked binary WebSocket frame (payload < 64 KiB)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x82, 0x80 | n]) if n < 126 else bytes([0x82, 0x80 | 126]) + struct.pack(">H", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_read_message(s):
    """The payload of the next (unmasked, unfragmented) binary frame."""
    hdr = recv_exact(s, 2)
    n = hdr[1] & 0x7f
    if n == 126:
        n = struct.unpack(">H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack(">Q", recv_exact(s, 8))[0]
    assert hdr[0] == 0x82 and not hdr[1] & 0x80, hdr
    return recv_exact(s, n)


def test_a_burst_of_small_messages_is_all_answered(hand):
    # After AUTH the edge's TLS reads ahead: the burst's records arrive in
    # one segment, one read takes them all and nothing more arrives, so every
    # record after the first must be decoded without a POLLIN (edge/session.c,
    # session_rx_more).
    key, e = hand
    raw = socket.create_connection(("127.0.0.1", e.tunnel_port), timeout=5 * SLOW)
    s = tls_client_context(e.env.pki.ca).wrap_socket(raw, server_hostname="localhost")
    try:
        s.sendall(b"GET /relais HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: relais.v1\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += recv_exact(s, 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        (typ, _, p), = parse_frames(ws_read_message(s))
        assert typ == HELLO
        s.sendall(ws_client_frame(key.auth(p[2:])))
        assert parse_frames(ws_read_message(s))[0][0] == WELCOME
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        for i in range(64):  # one TLS record each, held back by the cork
            s.sendall(ws_client_frame(frame(PING, struct.pack(">Q", i))))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        got = []
        while len(got) < 64:
            got += parse_frames(ws_read_message(s))
        assert got == [(PONG, 0, struct.pack(">Q", i)) for i in range(64)]
    finally:
        s.close()


def test_signature_over_a_stale_challenge_is_rejected(hand):
    key, e = hand
    t = RawTunnel(e)
    try:
        t.hello()
        t.send(key.auth(os.urandom(32)))
        frames = t.wait_closed()
    finally:
        t.close()
    assert [(f[0], code_reason(f[2])) for f in frames] == [(REJECT, (CODE_AUTH, BAD_SIGNATURE))]
    e.proc.wait_log("rejected: " + BAD_SIGNATURE)
    assert e.status()["sessions"] == []


def test_replayed_auth_is_rejected(hand):
    key, e = hand
    first = RawTunnel(e)
    try:
        captured = key.auth(first.hello())
        first.send(captured)
        assert parse_frames(first.recv())[0][0] == WELCOME
        # the same bytes in a new session answer a challenge that is not its own
        second = RawTunnel(e)
        try:
            second.hello()
            second.send(captured)
            frames = second.wait_closed()
        finally:
            second.close()
        assert [(f[0], code_reason(f[2])) for f in frames] == [(REJECT, (CODE_AUTH, BAD_SIGNATURE))]
        # and a second AUTH on the authenticated session is a protocol error
        first.send(captured)
        first.wait_closed()
        e.proc.wait_log("agent 'hand': unexpected AUTH frame")
    finally:
        first.close()
    wait_for(lambda: e.status()["sessions"] == [], 5, what="no sessions")


def test_wrong_protocol_version_is_rejected(hand):
    key, e = hand
    t = RawTunnel(e)
    try:
        t.send(key.auth(t.hello(), version=2))
        frames = t.wait_closed()
    finally:
        t.close()
    assert [(f[0], code_reason(f[2])) for f in frames] == \
        [(REJECT, (CODE_PROTOCOL, "unsupported protocol version"))]
    e.proc.wait_log("(unauthenticated): closing: unsupported protocol version")
    assert e.status()["sessions"] == []


def test_route_id_declared_twice_is_a_protocol_error(hand):
    key, e = hand
    t = RawTunnel(e)
    try:
        t.send(key.auth(t.hello()))
        assert parse_frames(t.recv())[0][0] == WELCOME
        t.send(route_frame(7, KIND_HTTP, "a.hand.test"))
        assert parse_frames(t.recv())[0][0] == ROUTE_ANSWER
        t.send(route_frame(7, KIND_HTTP, "b.hand.test"))
        frames = t.wait_closed()
    finally:
        t.close()
    assert [(f[0], code_reason(f[2])) for f in frames] == \
        [(GOAWAY, (CODE_PROTOCOL, "route id 7 declared twice"))]
    e.proc.wait_log("(hand): closing: route id 7 declared twice")
    wait_for(lambda: e.status()["sessions"] == [], 5, what="no sessions")


# ---- hostile clients on the agent endpoint ---------------------------------------------


def ws_attack(*messages, expect=None):
    """Connect, read HELLO, send messages, and require the edge to close."""
    def attack(edge):
        t = RawTunnel(edge)
        try:
            t.hello()
            for m in messages:
                try:
                    t.send(m)
                except (t.closed_exc, OSError):
                    break  # closed while we were still sending
            frames = t.wait_closed()
        finally:
            t.close()
        if expect is not None:
            assert [(f[0], code_reason(f[2])) for f in frames] == expect
    return attack


def read_to_end(s):
    """Read until EOF or reset; a timeout (connection left open) fails."""
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data


def wrong_path(edge):
    with pytest.raises(websockets.exceptions.InvalidHandshake):
        RawTunnel(edge, path="/not-relais")


def plain_http(edge):
    with socket.create_connection(("127.0.0.1", edge.tunnel_port), timeout=5 * SLOW) as s:
        s.sendall(b"GET /relais HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
                  b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        assert b"101" not in read_to_end(s)


def https_without_upgrade(edge):
    ctx = tls_client_context(edge.env.pki.ca)
    raw = socket.create_connection(("127.0.0.1", edge.tunnel_port), timeout=5 * SLOW)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"GET /relais HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert b"101" not in read_to_end(s)


def rejected(reason):
    return [(REJECT, (CODE_PROTOCOL, reason))]


HOSTILE = {
    "garbage": (ws_attack(b"\x77 this is not a relais frame",
                          expect=rejected("unknown frame type")),
                "(unauthenticated): closing: unknown frame type"),
    "oversize-length": (ws_attack(frame(AUTH, length=0xffffffff),
                                  expect=rejected("AUTH payload length must be 99..162")),
                        "(unauthenticated): closing: AUTH payload length must be 99..162"),
    # (the REJECT may be lost to the reset caused by the unread rest of the message)
    "message-over-1MiB": (ws_attack(b"\0" * ((1 << 20) + 1)),
                          "(unauthenticated): closing: message exceeds the 1 MiB limit"),
    "route-before-auth": (ws_attack(route_frame(1, KIND_HTTP, "www.home.test"),
                                    expect=rejected("expected AUTH")),
                          "ROUTE frame before authentication"),
    # judged from the header: the edge does not wait for (or buffer) 64 KiB
    "big-frame-before-auth": (ws_attack(frame(10, b"x" * 100, stream=1, length=65536),
                                        expect=rejected("frame too large before authentication")),
                              "(unauthenticated): closing: frame too large before authentication"),
    "text-message": (ws_attack("hello", expect=rejected("text message on the tunnel")),
                     "(unauthenticated): closing: text message on the tunnel"),
    "wrong-path": (wrong_path, "on a wrong path; closing"),
    "plain-http": (plain_http, "connection closed before any HTTP request"),
    "https-without-upgrade": (https_without_upgrade, "plain HTTP request from"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_client_is_closed_and_good_agent_stays(env, case):
    attack, edge_log = HOSTILE[case]
    a, e = home_pair(env)
    mark = e.proc.mark()
    attack(e)
    e.proc.wait_log(edge_log, since=mark)
    assert e.agent_routes("home") == [("http", "www.home.test")]
    assert a.proc.alive() and "disconnected" not in a.log()


# ---- reconnects and liveness ------------------------------------------------------------


def test_agent_is_back_within_5s_of_an_edge_restart(env):
    port = free_port()
    a = Agent(env, "home", routes=[route("www.home.test")], streams=[stream("tcp/%d" % port)])
    e = Edge(env, agents=[a.entry(hosts=["*.home.test"], ports=["tcp/%d" % port])]).start()
    a.start(e.url())
    want = [("http", "www.home.test"), ports(port)]
    wait_for(lambda: e.agent_routes("home") == want, 5, what="routes")
    mark = a.proc.mark()
    assert e.stop() == 0
    a.proc.wait_log("tunnel: disconnected from the edge", since=mark)
    e.start()
    wait_for(lambda: e.agent_routes("home") == want, 5, what="routes after the restart")
    a.proc.wait_log("tunnel: connected to", since=mark)


def test_dead_path_is_detected_and_the_agent_reconnects(env):
    a = Agent(env, "home", routes=[route("www.home.test")])
    e = Edge(env, agents=[a.entry(hosts=["*.home.test"])]).start()
    relay = TcpRelay(e.tunnel_port)
    try:
        a.start("wss://localhost:%d/relais" % relay.port)
        a.proc.wait_log("route www.home.test accepted by the edge")
        mark = a.proc.mark()
        relay.pause()  # sockets stay open, nothing gets through
        a.proc.wait_log("no traffic from the edge for 12 s", timeout=15, since=mark)
        relay.resume()
        a.proc.wait_log("tunnel: connected to", since=mark)
        a.proc.wait_log("route www.home.test accepted by the edge", since=mark)
        # the old session goes once the relay passes on the agent's close
        wait_for(lambda: [s["agent"] for s in e.status()["sessions"]] == ["home"], 5,
                 what="a single session")
        assert e.agent_routes("home") == [("http", "www.home.test")]
        assert relay.accepted >= 2
    finally:
        relay.close()


def test_agent_has_no_listening_socket(env):
    port = free_port()
    a = Agent(env, "home", routes=[route("www.home.test")], streams=[stream("tcp/%d" % port)])
    e = Edge(env, agents=[a.entry(hosts=["*.home.test"], ports=["tcp/%d" % port])]).start()
    a.start(e.url())
    a.proc.wait_log("route tcp/%d accepted by the edge" % port)
    pids, out = listening_pids()
    assert e.proc.pid in pids, out  # ss does show our own processes
    assert a.proc.pid not in pids, out


# ---- signals -------------------------------------------------------------------------------


def test_sighup_with_a_broken_config_keeps_the_old_one(env):
    a, e = home_pair(env)
    mark = e.proc.mark()
    with open(e.path, "w") as f:
        f.write("tunnel: [unclosed\n")
    e.proc.signal(signal.SIGHUP)
    e.proc.wait_log("reload failed", since=mark)
    assert e.agent_routes("home") == [("http", "www.home.test")]
    # the old configuration still admits the agent after a restart of it
    a.proc.stop()
    e.proc.wait_log("agent 'home' disconnected", since=mark)
    a.start(e.url())
    wait_for(lambda: e.agent_routes("home") == [("http", "www.home.test")], 5, what="routes")


def test_sighup_removing_a_key_closes_that_session(env):
    keeper = Agent(env, "keeper", routes=[route("keep.test")])
    a = Agent(env, "home", routes=[route("www.home.test")])
    e = Edge(env, agents=[a.entry(hosts=["*.home.test"]),
                          keeper.entry(hosts=["keep.test"])]).start()
    a.start(e.url())
    keeper.start(e.url())
    wait_for(lambda: len(e.routes()) == 2, 5, what="both agents' routes")
    mark_e, mark_a = e.proc.mark(), a.proc.mark()
    e.cfg["agents"] = [keeper.entry(hosts=["keep.test"])]
    e.reload()
    e.proc.wait_log("configuration reloaded", since=mark_e)
    e.proc.wait_log("closing: agent key no longer in the configuration", since=mark_e)
    a.proc.wait_log("tunnel: disconnected from the edge", since=mark_a)
    a.proc.wait_log("the edge rejected this agent", since=mark_a)  # and stays out
    assert e.routes() == [("keeper", "http", "keep.test")]
    assert "disconnected" not in keeper.log()


def test_sigterm_exits_0_promptly(env):
    a, e = home_pair(env)
    idle = socket.create_connection(("127.0.0.1", e.tunnel_port))  # never says anything
    try:
        t0 = time.monotonic()
        e.proc.signal(signal.SIGTERM)
        assert e.proc.p.wait(11 * SLOW) == 0
        assert time.monotonic() - t0 < 11 * SLOW
    finally:
        idle.close()
    a.proc.wait_log("tunnel: the edge is going away: edge shutting down")
    a.proc.wait_log("tunnel: disconnected from the edge")


def test_sighup_narrowing_hosts_closes_the_session_and_reapplies(env):
    a = Agent(env, "home", routes=[route("www.home.test"), route("old.home.test")])
    e = Edge(env, agents=[a.entry(hosts=["*.home.test"])]).start()
    a.start(e.url())
    wait_for(lambda: len(e.routes()) == 2, 5, what="both routes")
    mark_e, mark_a = e.proc.mark(), a.proc.mark()
    e.cfg["agents"] = [a.entry(hosts=["www.home.test"])]
    e.reload()
    e.proc.wait_log("closing: route old.home.test no longer allowed by the configuration",
                    since=mark_e)
    a.proc.wait_log("route old.home.test refused by the edge", since=mark_a)
    wait_for(lambda: e.routes() == [("home", "http", "www.home.test")], 5,
             what="only the still-allowed route")


def test_agent_sigterm_says_goaway_and_exits_0_promptly(env):
    a, e = home_pair(env)
    mark = e.proc.mark()
    t0 = time.monotonic()
    a.proc.signal(signal.SIGTERM)
    assert a.proc.p.wait(11 * SLOW) == 0
    assert time.monotonic() - t0 < 2 * SLOW  # no stream to finish
    e.proc.wait_log("agent 'home' is going away: agent shutting down", since=mark)
    wait_for(lambda: e.status()["sessions"] == [], 5, what="no sessions")


# ---- WebSocket masking -------------------------------------------------------------


def pong_masks(env, tls, pings=3):
    """A hand-made edge that upgrades the agent's connection, sends WebSocket
    PINGs and returns the masking key of each PONG the agent answers with
    (after checking the unmasked payload echoes the PING)."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(5 * SLOW)
    port = lsock.getsockname()[1]
    a = Agent(env, "home")
    a.start("%s://localhost:%d/relais" % ("wss" if tls else "ws", port), wait=False)
    s, _ = lsock.accept()
    lsock.close()
    s.settimeout(5 * SLOW)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(env.pki.cert, env.pki.key)
        s = ctx.wrap_socket(s, server_side=True)
    req = b""
    while b"\r\n\r\n" not in req:
        chunk = s.recv(4096)
        assert chunk, req
        req += chunk
    key = re.search(rb"(?i)sec-websocket-key: *(\S+)", req).group(1)
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: relais.v1\r\n\r\n")
    masks = []
    try:
        for i in range(pings):
            payload = b"probe %d" % i
            s.sendall(bytes([0x89, len(payload)]) + payload)
            hdr = recv_exact(s, 2)
            assert hdr[0] == 0x8A and hdr[1] == 0x80 | len(payload), hdr  # masked PONG
            mask = recv_exact(s, 4)
            body = recv_exact(s, len(payload))
            assert bytes(b ^ mask[j % 4] for j, b in enumerate(body)) == payload
            masks.append(mask)
    finally:
        s.close()
    return masks


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "connection closed after %r" % out
        out += chunk
    return out


def test_agent_masks_with_a_zero_key_inside_tls(env):
    # RFC 6455 masking guards intermediaries that read the bytes; inside TLS
    # none can, and lws skips unmasking an all-zero key (docs/design.md).
    assert pong_masks(env, tls=True) == [b"\0\0\0\0"] * 3


def test_agent_masks_with_fresh_random_keys_without_tls(env):
    masks = pong_masks(env, tls=False)
    assert b"\0\0\0\0" not in masks and len(set(masks)) == 3, masks


# ---- limits on what a peer can make the edge hold -------------------------------------------

OPEN, ACCEPT, FIN, RST, WINDOW = 7, 8, 12, 13, 11


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))


def test_agent_that_does_not_read_is_closed(hand):
    """PINGs in floods, never reading the PONGs: what is queued for the agent
    stops at 16 MiB and the session is closed, instead of growing without end."""
    key, e = hand
    t = RawTunnel(e)
    flood = frame(PING, b"\0" * 8) * 50000  # 900 KB in, 900 KB of PONGs out
    sent = 0
    try:
        t.send(key.auth(t.hello()))
        assert parse_frames(t.recv())[0][0] == WELCOME
        try:
            while sent < 300 * len(flood):
                t.send(flood)
                sent += len(flood)
        except (t.closed_exc, OSError):
            pass
    finally:
        t.close()
    e.proc.wait_log("(hand): closing: the agent does not read what is sent to it (16 MiB queued)")
    assert sent < 300 * len(flood), "the edge kept reading"
    wait_for(lambda: e.status()["sessions"] == [], 5, what="no sessions")
    if not SLOW > 1:  # (ASAN keeps freed memory in quarantine)
        assert vm_hwm_kib(e.proc.pid) < 100 * 1024


def test_sessions_waiting_to_authenticate_are_limited_per_address(hand):
    key, e = hand
    waiting = []
    try:
        for _ in range(16):
            t = RawTunnel(e)
            waiting.append((t, t.hello()))
        extra = RawTunnel(e)
        with pytest.raises(extra.closed_exc):
            extra.recv()
        extra.close()
        e.proc.wait_log("too many connections waiting to authenticate; closing")
        # one of them authenticates: that makes room for another
        t, challenge = waiting[0]
        t.send(key.auth(challenge))
        assert parse_frames(t.recv())[0][0] == WELCOME
        more = RawTunnel(e)
        waiting.append((more, more.hello()))
    finally:
        for w, _ in waiting:
            w.close()


def test_stream_the_agent_breaks_is_reset_both_ways(env):
    """DATA after FIN: the edge resets the stream, tells the agent (RST), and
    the client's connection ends."""
    key = HandKey(os.path.join(env.dir, "hand.key"))
    port = free_port()
    e = Edge(env, agents=[key.entry("hand", ports=["tcp/%d" % port])])
    e.cfg["listen"]["streams"] = ["127.0.0.1"]
    e.write()
    e.start()
    t = RawTunnel(e)
    c = None
    try:
        t.send(key.auth(t.hello()))
        assert parse_frames(t.recv())[0][0] == WELCOME
        t.send(route_frame(1, KIND_TCP, lo=port, hi=port))
        assert [f[0] for f in parse_frames(t.recv())] == [ROUTE_ANSWER]
        c = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
        sid = next_frame(t, OPEN)[1]
        t.send(frame(ACCEPT, stream=sid) + frame(FIN, stream=sid) + frame(10, b"late", stream=sid))
        rst = next_frame(t, RST)
        assert rst[1] == sid and struct.unpack(">I", rst[2][:4])[0] == CODE_PROTOCOL
        e.proc.wait_log("stream %d: DATA after FIN" % sid)
        c.settimeout(5 * SLOW)
        try:
            assert c.recv(100) == b""
        except ConnectionResetError:
            pass
    finally:
        if c:
            c.close()
        t.close()


def next_frame(t, ftype):
    """Frames from the edge until one of ftype (PING and WINDOW are skipped)."""
    while True:
        for f in parse_frames(t.recv()):
            if f[0] == ftype:
                return f
            assert f[0] in (PING, WINDOW), f


# ---- an edge that misbehaves, seen from the agent ---------------------------------------


def hello_frame():
    return frame(HELLO, struct.pack(">H", 1) + os.urandom(32))


def agent_at_fake_edge(env):
    """An agent connected to a FakeEdge that sent HELLO and got its AUTH."""
    fake = FakeEdge(env)
    a = Agent(env, "home", routes=[route("www.home.test")])
    try:
        a.start(fake.url(), wait=False)
        fake.accept()
        fake.send(hello_frame())
        assert [f[0] for f in parse_frames(fake.recv())] == [AUTH]
    except BaseException:
        fake.close()
        raise
    return fake, a


def test_agent_signs_one_hello_per_connection(env):
    """The agent answers the first HELLO only: a second one (a relay trying to
    have it sign someone else's challenge) ends the connection."""
    fake, a = agent_at_fake_edge(env)
    try:
        fake.send(hello_frame())
        with pytest.raises((EOFError, OSError)):
            while True:
                assert AUTH not in [f[0] for f in parse_frames(fake.recv())]
        a.proc.wait_log("tunnel: a second HELLO from the edge")
    finally:
        fake.close()


def test_agent_takes_no_welcome_before_hello(env):
    """WELCOME answers the agent's AUTH: as the first frame (nothing signed,
    nothing proven) it ends the connection, and no route is declared."""
    fake = FakeEdge(env)
    a = Agent(env, "home", routes=[route("www.home.test")])
    try:
        a.start(fake.url(), wait=False)
        fake.accept()
        fake.send(frame(WELCOME, struct.pack(">II", 1 << 20, 5000) + b"\x04home"))
        with pytest.raises((EOFError, OSError)):
            while True:
                assert ROUTE not in [f[0] for f in parse_frames(fake.recv())]
        a.proc.wait_log("tunnel: WELCOME from the edge before its HELLO")
        assert "tunnel: connected to" not in a.log()
    finally:
        fake.close()


@pytest.mark.parametrize("window,taken", [(1 << 20, True), ((1 << 20) + 1, False),
                                          (1 << 30, False)])
def test_agent_refuses_a_welcome_window_above_1_mib(env, window, taken):
    """The edge's WELCOME.window is what each stream may make the agent
    buffer toward its service: 1 MiB (what the edge sends) is taken, more is
    refused with the reason logged, so an edge cannot make max_connections
    streams hold a GiB each."""
    fake, a = agent_at_fake_edge(env)
    try:
        fake.send(frame(WELCOME, struct.pack(">II", window, 5000) + b"\x04home"))
        if taken:
            assert ROUTE in [f[0] for f in parse_frames(fake.recv())]
            a.proc.wait_log("tunnel: connected to")
            return
        with pytest.raises((EOFError, OSError)):
            while True:
                assert ROUTE not in [f[0] for f in parse_frames(fake.recv())]
        a.proc.wait_log("tunnel: the edge offered a window of %d bytes per stream, more than"
                        " the 1048576 this agent accepts" % window)
        assert "tunnel: connected to" not in a.log()
    finally:
        fake.close()


def test_edge_that_does_not_read_is_left(env):
    """PINGs in floods, PONGs never read: the agent stops at 16 MiB queued,
    closes the connection and will connect again."""
    fake, a = agent_at_fake_edge(env)
    try:
        fake.send(frame(WELCOME, struct.pack(">II", 1 << 20, 5000) + b"\x04home"))
        fake.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        flood = frame(PING, b"\0" * 8) * 50000
        sent = 0
        try:
            while sent < 300 * len(flood):
                fake.send(flood)
                sent += len(flood)
        except OSError:
            pass
        a.proc.wait_log("the edge does not read what is sent to it (16 MiB queued)")
        assert sent < 300 * len(flood), "the agent kept reading"
        if not SLOW > 1:  # (ASAN keeps freed memory in quarantine)
            assert vm_hwm_kib(a.proc.pid) < 100 * 1024
        assert a.proc.alive()
    finally:
        fake.close()
