"""Connections per client address (listen.max_connections_per_client): one
address cannot hold the edge's public ports, whichever port it uses, while
other addresses, agents and the admin endpoint go on."""
import os
import socket
import ssl
import struct
import time

import pytest

from relais import (ACCEPT, DATA, FIN, KIND_TCP, OPEN, ROUTE_ANSWER, SLOW, WINDOW, Agent, Edge,
                    HandKey, HttpsEdge, TcpService, authed, blind_ctx, closed_within, echo_handler,
                    edge_frame, frame, free_port, free_ports, recv_all, route_frame, stream_setup,
                    tcp, wait_for)

REFUSED = ("%s listener: 127.0.0.2: %d connections from this address already "
           "(listen.max_connections_per_client); refused")


class Client(socket.socket):
    reset = False


def client(port, src="127.0.0.2", dst="127.0.0.1"):
    """A connection to the edge's port from the loopback address src (reset
    already, if the edge was quicker than connect's return)."""
    s = Client(socket.AF_INET6 if ":" in src else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    s.bind((src, 0))
    try:
        s.connect((dst, port))
    except ConnectionResetError:
        s.reset = True
    return s


def clients(closing, port, n, src="127.0.0.2", dst="127.0.0.1"):
    """n connections to the edge's port from src, closed when the test ends."""
    out = [client(port, src, dst) for _ in range(n)]
    for s in out:
        closing(s)
    return out


def over_limit(closing, port, src="127.0.0.2", dst="127.0.0.1"):
    """One more connection from src: True when the edge reset it at once."""
    return refused(clients(closing, port, 1, src, dst)[0])


def start_limited(e, limit):
    """Start edge e (not started yet) with listen.max_connections_per_client."""
    e.cfg["listen"]["max_connections_per_client"] = limit
    e.write()
    e.start()
    return e


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def http_status(s):
    """Send a request on s and return the status line's code."""
    s.sendall(b"GET / HTTP/1.1\r\nHost: nothing.test\r\n\r\n")
    head = b""
    while b"\r\n" not in head:
        d = s.recv(4096)
        assert d, "the edge closed instead of answering"
        head += d
    return int(head.split(b" ")[1])


def refused(s):
    """The edge reset s at once, without a byte."""
    return s.reset or closed_within(s, 2)


def test_http_port_limit_per_address(env, closing):
    e = start_limited(Edge(env), 3)
    held = clients(closing, e.http_port, 3)
    assert over_limit(closing, e.http_port)
    e.proc.wait_log(REFUSED % ("http", 3))
    # another address is served, and so are the three held
    assert http_status(clients(closing, e.http_port, 1, "127.0.0.3")[0]) == 404
    assert all(http_status(s) == 404 for s in held)
    # one of them goes: the address may connect again (its close is found
    # when the address is at its limit next, at most every 250 ms)
    held.pop().close()
    time.sleep(0.3)
    assert http_status(clients(closing, e.http_port, 1)[0]) == 404
    # and is at its limit again
    assert over_limit(closing, e.http_port)


def test_limit_counts_every_public_port(env, closing):
    """A stream port and the HTTP port count together; the agent's tunnel
    connection counts for its own address only."""
    origin = TcpService(echo_handler)
    closing(origin)
    port = free_port()
    a, e = stream_setup(env, [tcp(port, origin.port)])
    start_limited(e, 2)
    a.start(e.url())
    a.proc.wait_log("route tcp/%d accepted by the edge" % port)
    clients(closing, e.http_port, 1)
    s = clients(closing, port, 1)[0]
    s.sendall(b"ping")
    assert s.recv(4) == b"ping"
    assert over_limit(closing, port)
    e.proc.wait_log(REFUSED % ("tcp/%d" % port, 2))
    assert over_limit(closing, e.http_port)
    # the stream itself goes on
    s.sendall(b"pong")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"pong"


def test_limit_reload_and_off(env, closing):
    """A reload changes the limit for the next connection; 0 lifts it."""
    e = start_limited(Edge(env), 1)
    assert http_status(clients(closing, e.http_port, 1)[0]) == 404
    assert over_limit(closing, e.http_port)
    e.cfg["listen"]["max_connections_per_client"] = 0
    m = e.proc.mark()
    e.reload()
    e.proc.wait_log("configuration reloaded", since=m)
    assert all(http_status(s) == 404 for s in clients(closing, e.http_port, 20))


def test_default_limit_is_256(env, closing):
    """Without the key: 256 connections from one address, not 257; agents
    (here from 127.0.0.1) and the admin endpoint are not held up."""
    ag = Agent(env, "home")
    e = Edge(env, agents=[ag.entry()])
    e.start()
    held = clients(closing, e.http_port, 256)
    assert over_limit(closing, e.http_port)
    e.proc.wait_log(REFUSED % ("http", 256))
    ag.start(e.url())
    assert e.status()["sessions"][0]["agent"] == "home"
    assert http_status(held[-1]) == 404


def test_dual_stack_port_counts_ipv4_clients_by_their_ipv4_address(env, closing):
    """On "[::]:PORT" an IPv4 client arrives as ::ffff:a.b.c.d: it counts as
    its IPv4 address (not as the /64 every IPv4 client would share), and an
    IPv6 client as its /64."""
    if not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    e = Edge(env)
    e.cfg["listen"]["http"] = "[::]:%d" % e.http_port
    start_limited(e, 2)
    clients(closing, e.http_port, 2)
    assert over_limit(closing, e.http_port)
    e.proc.wait_log(REFUSED % ("http", 2))
    assert http_status(clients(closing, e.http_port, 1, "127.0.0.3")[0]) == 404
    assert all(http_status(s) == 404 for s in clients(closing, e.http_port, 2, "::1", "::1"))
    time.sleep(1.1)  # the refusal line, at most once a second
    assert over_limit(closing, e.http_port, "::1", "::1")
    e.proc.wait_log("http listener: ::1: 2 connections from this /64 already")


def test_refusals_logged_once_a_second_whatever_the_port(env, closing):
    """One address at its limit knocking on every port of an agent's range
    writes one line a second, not one a port."""
    origin = TcpService(echo_handler)
    closing(origin)
    n = 32
    lo = free_ports(n, kinds=(socket.SOCK_STREAM,))
    rng = "tcp/%d-%d" % (lo, lo + n - 1)
    a, e = stream_setup(env, [dict(listen=rng, to="127.0.0.1:%d" % origin.port)])
    start_limited(e, 1)
    a.start(e.url())
    a.proc.wait_log("route %s accepted by the edge" % rng)
    assert http_status(clients(closing, e.http_port, 1)[0]) == 404
    mark = e.proc.mark()
    for port in range(lo, lo + n):
        assert over_limit(closing, port)
    e.proc.wait_log("connections from this address already", since=mark)
    time.sleep(0.2)
    lines = [l for l in e.log()[mark:].splitlines() if "max_connections_per_client" in l]
    assert len(lines) == 1, lines


def tls_client(port, src="127.0.0.2", sni="localhost"):
    """A TLS connection from src with this SNI (any certificate), or None
    when the edge reset it."""
    s = client(port, src)
    if s.reset:
        s.close()
        return None
    try:
        return blind_ctx().wrap_socket(s, server_hostname=sni)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        s.close()
        return None


def test_shared_tunnel_port_counts_connections_handed_to_the_agent_endpoint(env, closing):
    """With tunnel.listen on listen.https, a ClientHello for tunnel.hostname
    hands the socket to lws as a dup() of the one accept gave out: it must
    go on counting, or any client could hold the port without limit by
    asking for that (public) name."""
    e = start_limited(HttpsEdge(env, shared_tunnel=True), 3)
    held = [tls_client(e.https_port) for _ in range(3)]
    for s in held:
        assert s is not None
        closing(s)
    assert over_limit(closing, e.https_port)
    e.proc.wait_log(REFUSED % ("https", 3))


def test_tunnel_port_counted_apart_from_public_ports(env, closing):
    """Public clients that share an agent's address (one carrier-grade NAT)
    and hold the limit on the public ports cannot keep the agent out: the
    tunnel port's connections count apart, under the same limit."""
    ag = Agent(env, "home")
    e = start_limited(Edge(env, agents=[ag.entry()]), 2)
    clients(closing, e.http_port, 2, "127.0.0.1")
    assert over_limit(closing, e.http_port, "127.0.0.1")
    ag.start(e.url())  # from 127.0.0.1 too
    assert [x["agent"] for x in e.status()["sessions"]] == ["home"]
    # and the tunnel port has the limit of its own
    clients(closing, e.tunnel_port, 2)
    time.sleep(1.1)  # refusals are logged once a second
    assert over_limit(closing, e.tunnel_port)
    e.proc.wait_log(REFUSED % ("tunnel", 2))


def test_connection_read_after_both_sides_closed_still_counts(env, closing):
    """The service has finished (FIN), and the client sends more than the
    stream's window, then closes: both directions are shut while the edge
    still has the client's last bytes to read.  lws closes such a descriptor
    at POLLHUP; the edge reads the rest from a duplicate.  That connection
    holds its place in the address's count until it is read to the end: it
    used to drop out of it, so that one address could hold more descriptors
    than its limit."""
    key = HandKey(os.path.join(env.dir, "hand.key"))
    port = free_port()
    e = Edge(env, agents=[key.entry("hand", ports=["tcp/%d" % port])])
    e.cfg["listen"]["streams"] = ["127.0.0.1"]
    start_limited(e, 1)
    t = authed(e, key, closing)
    t.send(route_frame(1, KIND_TCP, lo=port, hi=port))
    assert edge_frame(t, (ROUTE_ANSWER,))[2][:4] == b"\0\0\0\0"
    c = clients(closing, port, 1)[0]
    sid = edge_frame(t, (OPEN,))[1]
    t.send(frame(ACCEPT, stream=sid) + frame(FIN, stream=sid))
    assert c.recv(1) == b""  # the service's side is done
    window, rest = 1 << 20, 32 * 1024  # the edge's first window; the bytes left over
    c.sendall(b"x" * (window + rest))
    got = 0
    while got < window:  # the edge sends the window's worth, then stops reading
        f = edge_frame(t, (DATA,))
        assert f[1] == sid
        got += len(f[2])
    c.close()  # a FIN after the bytes: the edge's socket is shut both ways
    time.sleep(0.5 * SLOW)
    assert over_limit(closing, port)
    # the edge reads the rest once the window allows, then the count frees
    t.send(frame(WINDOW, struct.pack(">I", window), stream=sid))
    while got < window + rest:
        got += len(edge_frame(t, (DATA,))[2])
    assert got == window + rest and edge_frame(t, (FIN,))[1] == sid
    wait_for(lambda: not over_limit(closing, port), 5 * SLOW,
             what="a connection accepted again once the first was read to its end")
