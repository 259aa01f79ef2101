"""Connections per client address (listen.max_connections_per_client): one
address cannot hold the edge's public ports, whichever port it uses, while
other addresses, agents and the admin endpoint go on."""
import socket
import time

from relais import (Agent, Edge, TcpService, closed_within, echo_handler, free_port, recv_all,
                    stream_setup, tcp)

REFUSED = ("%s listener: 127.0.0.2: %d connections from this address already "
           "(listen.max_connections_per_client); refused")


class Client(socket.socket):
    reset = False


def client(port, src="127.0.0.2"):
    """A connection to the edge's port from the loopback address src (reset
    already, if the edge was quicker than connect's return)."""
    s = Client(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    s.bind((src, 0))
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionResetError:
        s.reset = True
    return s


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
    e = Edge(env)
    e.cfg["listen"]["max_connections_per_client"] = 3
    e.write()
    e.start()
    held = [client(e.http_port) for _ in range(3)]
    for s in held:
        closing(s)
    fourth = client(e.http_port)
    closing(fourth)
    assert refused(fourth)
    e.proc.wait_log(REFUSED % ("http", 3))
    # another address is served, and so are the three held
    other = client(e.http_port, "127.0.0.3")
    closing(other)
    assert http_status(other) == 404
    assert all(http_status(s) == 404 for s in held)
    # one of them goes: the address may connect again (its close is found
    # when the address is at its limit next, at most every 250 ms)
    held.pop().close()
    time.sleep(0.3)
    again = client(e.http_port)
    closing(again)
    assert http_status(again) == 404
    # and is at its limit again
    over = client(e.http_port)
    closing(over)
    assert refused(over)


def test_limit_counts_every_public_port(env, closing):
    """A stream port and the HTTP port count together; the agent's tunnel
    connection counts for its own address only."""
    origin = TcpService(echo_handler)
    closing(origin)
    port = free_port()
    a, e = stream_setup(env, [tcp(port, origin.port)])
    e.cfg["listen"]["max_connections_per_client"] = 2
    e.write()
    e.start()
    a.start(e.url())
    a.proc.wait_log("route tcp/%d accepted by the edge" % port)
    h = client(e.http_port)
    closing(h)
    s = client(port)
    closing(s)
    s.sendall(b"ping")
    assert s.recv(4) == b"ping"
    third = client(port)
    closing(third)
    assert refused(third)
    e.proc.wait_log(REFUSED % ("tcp/%d" % port, 2))
    third = client(e.http_port)
    closing(third)
    assert refused(third)
    # the stream itself goes on
    s.sendall(b"pong")
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b"pong"


def test_limit_reload_and_off(env, closing):
    """A reload changes the limit for the next connection; 0 lifts it."""
    e = Edge(env)
    e.cfg["listen"]["max_connections_per_client"] = 1
    e.write()
    e.start()
    first = client(e.http_port)
    closing(first)
    assert http_status(first) == 404
    second = client(e.http_port)
    closing(second)
    assert refused(second)
    e.cfg["listen"]["max_connections_per_client"] = 0
    m = e.proc.mark()
    e.reload()
    e.proc.wait_log("configuration reloaded", since=m)
    more = [client(e.http_port) for _ in range(20)]
    for s in more:
        closing(s)
    assert all(http_status(s) == 404 for s in more)


def test_default_limit_is_256(env, closing):
    """Without the key: 256 connections from one address, not 257; agents
    (here from 127.0.0.1) and the admin endpoint are not held up."""
    ag = Agent(env, "home")
    e = Edge(env, agents=[ag.entry()])
    e.start()
    held = []
    for _ in range(256):
        s = client(e.http_port)
        closing(s)
        held.append(s)
    over = client(e.http_port)
    closing(over)
    assert refused(over)
    e.proc.wait_log(REFUSED % ("http", 256))
    ag.start(e.url())
    assert e.status()["sessions"][0]["agent"] == "home"
    assert http_status(held[-1]) == 404
