"""The edge against a malicious or buggy *authenticated* agent.

An agent that holds a valid key may still send anything: the edge must never
crash, hang or grow without bound because of it, nor let it disturb other
agents' sessions and streams.  A misbehaving agent loses its stream or its
session, with a logged reason.

Agents here are made by hand (RawTunnel + HandKey); real relais-edge on
127.0.0.1.
"""
import os
import socket
import struct

from relais import (ACCEPT, DATA, DATAGRAM, FIN, GOAWAY, KIND_HTTP, KIND_TCP, KIND_UDP, OPEN,
                    PING, PONG, REFUSE, REJECT, RST, ROUTE_ANSWER, SLOW, WINDOW, Edge, HandKey,
                    RawTunnel, authed, closed_within, code_reason, edge_frame, frame, free_ports,
                    route_frame, scripted_agent_on_port, streams_open, wait_for)

CODE_PROTOCOL, CODE_REFUSED, CODE_FLOW, CODE_CANCEL = 1, 2, 6, 7


def ping_pong(t, value=0x5151):
    """Round trip: everything sent before has been handled by the edge."""
    t.send(frame(PING, struct.pack(">Q", value)))
    while edge_frame(t, (PONG,))[2] != struct.pack(">Q", value):
        pass


def two_agents(env, ports=()):
    """An edge with agents 'bad' (*.bad.test, the given ports) and 'good'
    (*.good.test)."""
    bad = HandKey(os.path.join(env.dir, "bad.key"))
    good = HandKey(os.path.join(env.dir, "good.key"))
    e = Edge(env, agents=[bad.entry("bad", hosts=["*.bad.test"], ports=list(ports)),
                          good.entry("good", hosts=["*.good.test"])])
    if ports:
        e.cfg["listen"]["streams"] = ["127.0.0.1"]
        e.write()
    e.start()
    return e, bad, good


# ---- sessions and declarations --------------------------------------------------


def test_an_agent_holds_a_bounded_number_of_sessions(env, closing):
    """Each session may queue up to 16 MiB for an agent that does not read;
    without a limit on sessions per agent, one agent multiplied that without
    end (20 sessions flooding PINGs took the edge to 170 MB).  The 33rd
    session is rejected with a reason; other agents still get in, and a
    freed slot is usable again."""
    e, bad, good = two_agents(env)
    held = [authed(e, bad, closing) for _ in range(32)]
    extra = RawTunnel(e)
    closing(extra)
    extra.send(bad.auth(extra.hello()))
    frames = extra.wait_closed()
    assert [f[0] for f in frames] == [REJECT], frames
    code, reason = code_reason(frames[0][2])
    assert code == CODE_REFUSED and "32 sessions" in reason, (code, reason)
    e.proc.wait_log("rejected: agent 'bad' holds 32 sessions already")
    authed(e, good, closing)
    held[0].close()
    wait_for(lambda: len(e.status()["sessions"]) == 32, 5, what="one session gone")
    authed(e, bad, closing)


def test_route_declarations_per_session_are_limited(env, closing):
    """Every refused ROUTE is a log line: an agent declaring without end
    filled the log (and the disk) at wire speed.  Past 2048 declarations on
    one connection the session ends with a logged reason."""
    e, bad, good = two_agents(env)
    t = authed(e, bad, closing)
    flood = b"".join(route_frame(i + 1, KIND_HTTP, "x%d.elsewhere.test" % i)
                     for i in range(2048))
    t.send(flood)
    ping_pong(t)
    assert len(e.log().split("route x")) - 1 == 2048
    t.send(route_frame(5000, KIND_HTTP, "one.more.test"))
    f = edge_frame(t, (GOAWAY,))
    assert code_reason(f[2]) == (CODE_PROTOCOL, "more than 2048 route declarations"), f
    e.proc.wait_log("(bad): closing: more than 2048 route declarations")
    g = authed(e, good, closing)
    ping_pong(g)


def test_repeated_goaway_is_logged_once(env, closing):
    """GOAWAY is logged; a thousand of them made a thousand lines."""
    e, bad, _ = two_agents(env)
    t = authed(e, bad, closing)
    bye = struct.pack(">IB", 0, 3) + b"bye"
    t.send(frame(GOAWAY, bye) * 1000)
    ping_pong(t)
    assert e.log().count("agent 'bad' is going away: bye") == 1


# ---- streams ----------------------------------------------------------------


def test_window_on_a_udp_flow_is_a_stream_error(env, closing):
    """PROTOCOL.md section 9: WINDOW on a UDP flow is a stream protocol error
    (RST CODE_PROTOCOL), as DATA and FIN are; the edge ignored it."""
    port = free_ports(1)
    e, bad, _ = two_agents(env, ports=["udp/%d" % port])
    t = authed(e, bad, closing)
    t.send(route_frame(1, KIND_UDP, lo=port, hi=port))
    assert code_reason(edge_frame(t, (ROUTE_ANSWER,))[2])[0] == 0
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closing(c)
    c.sendto(b"hello", ("127.0.0.1", port))
    sid = edge_frame(t, (OPEN,))[1]
    assert edge_frame(t, (DATAGRAM,)) == (DATAGRAM, sid, b"hello")
    mark = e.proc.mark()
    t.send(frame(WINDOW, struct.pack(">I", 65536), stream=sid))
    assert edge_frame(t, (RST,)) == (RST, sid, struct.pack(">I", CODE_PROTOCOL))
    e.proc.wait_log("stream %d: WINDOW on a UDP flow" % sid, since=mark)
    wait_for(lambda: streams_open(e) == 0, 5, what="the flow ended at the edge")
    c.sendto(b"again", ("127.0.0.1", port))
    assert edge_frame(t, (OPEN,))[1] != sid


def test_hostile_stream_frames_cost_only_the_agents_own_streams(env, closing):
    """One agent breaks every stream rule (DATA past its credit, credit past
    2^30, frames for ids it never got, FIN/RST/REFUSE storms); each breach
    costs it that stream only, with a logged reason; its other stream
    carries on."""
    port = free_ports(1)
    e, bad, _ = two_agents(env, ports=["tcp/%d" % port])
    t = authed(e, bad, closing)
    t.send(route_frame(1, KIND_TCP, lo=port, hi=port))
    assert code_reason(edge_frame(t, (ROUTE_ANSWER,))[2])[0] == 0
    clients, sids = [], []
    for _ in range(3):
        c = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
        closing(c)
        clients.append(c)
        sids.append(edge_frame(t, (OPEN,))[1])
    a, b, d = sids
    t.send(frame(ACCEPT, stream=a) + frame(ACCEPT, stream=b) + frame(ACCEPT, stream=d))
    # a: DATA past the window (its client reads nothing: what the sockets
    # absorb comes back as credit, a few MiB at most)
    burst = b"".join(frame(DATA, b"x" * 65536, stream=a) for _ in range(15))
    for _ in range(32 * 1024 * 1024 // len(burst)):
        t.send(burst)
    assert edge_frame(t, (RST,)) == (RST, a, struct.pack(">I", CODE_FLOW))
    e.proc.wait_log("stream %d: exceeded its window" % a)
    # b: more credit than 2^30 outstanding
    t.send(frame(WINDOW, struct.pack(">I", 1 << 30), stream=b))
    assert edge_frame(t, (RST,)) == (RST, b, struct.pack(">I", CODE_FLOW))
    # storms on ids never opened, or closed: dropped, or answered with RST
    junk = b"".join(frame(FIN, stream=i) + frame(RST, struct.pack(">I", 7), stream=i) +
                    frame(REFUSE, struct.pack(">IB", 2, 0), stream=i) +
                    frame(WINDOW, struct.pack(">I", 1), stream=i)
                    for i in list(range(100, 5000)) + [a, b])
    t.send(junk)
    t.send(b"".join(frame(DATA, b"", stream=i) for i in range(100, 200)))
    ping_pong(t)
    # d is untouched: bytes flow both ways
    t.send(frame(DATA, b"still here", stream=d))
    clients[2].settimeout(5 * SLOW)
    assert clients[2].recv(100) == b"still here"
    clients[2].sendall(b"and back")
    assert edge_frame(t, (DATA,)) == (DATA, d, b"and back")
    # a FIN storm on a live stream is one half-close
    t.send(frame(FIN, stream=d) * 1000)
    assert clients[2].recv(100) == b""
    assert e.proc.alive()


def test_agent_frames_that_only_the_edge_sends_end_the_session(env, closing):
    """OPEN (agents never open streams) and a second AUTH close the session
    with a logged reason; the other agent is not affected."""
    e, bad, good = two_agents(env)
    g = authed(e, good, closing)
    open_payload = struct.pack(">IBB16sHB16sH", 1, KIND_HTTP, 4, b"\x7f\0\0\1" + b"\0" * 12,
                               1234, 0, b"\0" * 16, 0)
    for f, what in ((frame(OPEN, open_payload, stream=1), "unexpected OPEN frame"),
                    (bad.auth(os.urandom(32)), "unexpected AUTH frame")):
        t = authed(e, bad, closing)
        t.send(f)
        frames = t.wait_closed()
        assert frames and frames[-1][0] == GOAWAY, frames
        e.proc.wait_log("agent 'bad': " + what)
    ping_pong(g)
    assert [s["agent"] for s in e.status()["sessions"]] == ["good"]


def test_tcp_client_not_held_when_the_agent_never_answers_open(env, closing):
    """An agent that never answers a TCP stream's OPEN (ACCEPT or REFUSE)
    does not hold the client forever: after http.upstream_timeout the edge
    closes it, with a log line and a 504 in the access log."""
    port = free_ports(1)
    e, t = scripted_agent_on_port(env, closing, port, KIND_TCP,
                                  extra={"http": {"upstream_timeout": "1s"}})
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    closing(c)
    c.sendall(b"hello")
    assert edge_frame(t, (OPEN,))[0] == OPEN
    assert closed_within(c, 4)
    e.proc.wait_log("the agent did not connect the service in time")
    wait_for(lambda: ' "TCP -" 504 ' in open(os.path.join(env.dir, "access.log")).read(), 5,
             what="the access log's 504")


def test_client_gone_while_its_reset_stream_drains(env, closing):
    """The agent overruns a stream whose client reads nothing: the edge resets
    it and keeps what is queued for the client, to deliver before its own
    reset.  The client then goes (a reset: it left data unread).  The edge
    used to keep that connection for ever, paused on a descriptor nobody
    polled; it must close it (the access log line says it did)."""
    port = free_ports(1)
    e, t = scripted_agent_on_port(env, closing, port, KIND_TCP)
    c = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    sid = edge_frame(t, (OPEN,))[1]
    t.send(frame(ACCEPT, stream=sid))
    burst = b"".join(frame(DATA, b"x" * 65536, stream=sid) for _ in range(15))
    for _ in range(32 * 1024 * 1024 // len(burst)):
        t.send(burst)
    assert edge_frame(t, (RST,)) == (RST, sid, struct.pack(">I", CODE_FLOW))
    ping_pong(t)
    c.close()  # unread data: a reset
    log = os.path.join(env.dir, "access.log")
    wait_for(lambda: os.path.exists(log) and ' "TCP -" ' in open(log).read(), 5,
             what="the connection closed and logged")
    assert e.proc.alive()
