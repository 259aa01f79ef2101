"""UDP flows and PROXY headers under attack: a public client cycling source
ports, floods of new flows, a local service that is down, odd datagrams.

Real relais-edge / relais-agent processes on loopback (127.0.0.0/8 and ::1);
waits are on replies, log lines and /status, never a fixed sleep.
"""
import os
import resource
import select
import signal
import socket
import struct
import threading
import time

import pytest

from relais import (ACCEPT, AUTH, DATA, DATAGRAM, FIN, GOAWAY, HELLO, KIND_HTTP, KIND_TCP,
                    KIND_UDP, OPEN, REFUSE, ROUTE, ROUTE_ANSWER, RST, SLOW, WELCOME, WINDOW,
                    Agent, FakeEdge, TcpService, UdpEcho, echo_handler, echo_roundtrip,
                    edge_frame, frame, free_ports, parse_frames, scripted_agent_on_port,
                    stream_pair, streams_open, tcp, udp, udp_ask, wait_for, rerun_in_own_netns,
                    ephemeral_ports)

CODE_PROTOCOL, CODE_REFUSED, CODE_UNREACHABLE, CODE_TIMEOUT, CODE_SHUTDOWN = 1, 2, 3, 4, 10
CODE_NO_ROUTE = 5

UDP_MAX_FLOWS = 4096  # edge/udp.h, per port and address
UDP_MAX_FLOWS_PER_SRC = 256  # edge/udp.h
UDP_MAX_FLOWS_PER_AGENT = 16384  # edge/udp.h


def send_from(src_ip, src_port, data, dst):
    """One datagram from src_ip:src_port (a socket bound just for it)."""
    s = socket.socket(socket.AF_INET6 if ":" in src_ip else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((src_ip, src_port))
        s.sendto(data, dst)
    finally:
        s.close()


def udp_rx_queued(*ports):
    """Bytes waiting in the receive queues of the UDP sockets bound to these
    ports (/proc/net/udp, udp6): 0 once the edge has read every datagram."""
    total = 0
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        with open(path) as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) in ports:
                    total += int(fields[4].split(":")[1], 16)
    return total


def ask_again(host, port, msg, sock):
    """udp_ask() for a socket bound to the address of an earlier flow: replies
    to what that flow sent before (b"echo:x") may still come; skip them."""
    sock.settimeout(1.0 * SLOW)
    for _ in range(5):
        sock.sendto(msg, (host, port))
        try:
            while True:
                d = sock.recvfrom(65536)[0]
                if d != b"echo:x":
                    return d
        except socket.timeout:
            continue
    raise AssertionError("no UDP answer from %s:%d to %r" % (host, port, msg))


# ---- flow table --------------------------------------------------------------------------------


def test_one_client_cycling_source_ports_cannot_fill_the_flow_table(env, closing):
    """One host sending from 4,200 source ports (each a new flow) used to take
    all 4,096 flows of the port in a fraction of a second and lock every other
    client out for the idle timeout.  Now one IPv4 address (or IPv6 /64)
    holds at most 256 flows: its extra datagrams are dropped and counted,
    and other clients are served."""
    echo = UdpEcho()
    closing(echo)
    port = free_ports(1)
    a, e = stream_pair(env, [udp(port, echo.port)])
    mark = e.proc.mark()
    n = UDP_MAX_FLOWS + 104
    for i in range(n):
        send_from("127.0.0.2", 40000 + i, b"x", ("127.0.0.1", port))
    # the attacker's first flow still answers, after all its datagrams (one socket, in order)
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closing(c)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c.bind(("127.0.0.2", 40000))
    assert ask_again("127.0.0.1", port, b"first", c) == b"echo:first"
    assert streams_open(e) <= UDP_MAX_FLOWS_PER_SRC
    assert e.status()["udp_dropped"] >= n - UDP_MAX_FLOWS_PER_SRC - 50  # the kernel may drop some
    e.proc.wait_log("udp/%d: client 127.0.0.2 holds %d flows: its new ones are dropped"
                    % (port, UDP_MAX_FLOWS_PER_SRC), since=mark)
    # at most one such line a second, however many datagrams
    assert e.log()[mark:].count("its new ones are dropped") < 10
    # another client is served
    assert udp_ask("127.0.0.1", port, b"other host") == b"echo:other host"
    assert a.proc.alive() and e.proc.alive()


def test_ipv6_client_cycling_source_ports_is_limited_too(env, closing):
    """The same limit for an IPv6 client (counted per /64)."""
    echo = UdpEcho()
    closing(echo)
    port = free_ports(1, hosts=("127.0.0.1", "::1"))
    a, e = stream_pair(env, [udp(port, echo.port)], listen=("127.0.0.1", "::1"))
    mark = e.proc.mark()
    n = UDP_MAX_FLOWS_PER_SRC + 100
    for i in range(n):
        send_from("::1", 40000 + i, b"x", ("::1", port))
    c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    closing(c)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c.bind(("::1", 40000))
    assert ask_again("::1", port, b"first", c) == b"echo:first"
    assert streams_open(e) == UDP_MAX_FLOWS_PER_SRC
    e.proc.wait_log("udp/%d: client ::1 (its /64) holds %d flows" % (port, UDP_MAX_FLOWS_PER_SRC),
                    since=mark)
    # IPv4 clients are counted apart
    assert udp_ask("127.0.0.1", port, b"v4") == b"echo:v4"


def test_udp_flood_leaves_the_agent_descriptors_for_tcp(env, closing):
    """Each UDP flow is a socket at the agent.  Datagrams from the internet
    (several hosts, many source ports) used to open flows until the agent had
    no descriptor left, and then every TCP stream and HTTP request through
    it failed with "Too many open files" for as long as the flood went on.
    Now UDP flows take at most half the agent's hard limit of open files:
    beyond, new flows are refused, and TCP still works."""
    echo = UdpEcho()
    closing(echo)
    origin = TcpService(echo_handler)
    closing(origin)
    uport, tport = free_ports(1), free_ports(1)
    a, e = stream_pair(env, [udp(uport, echo.port), tcp(tport, origin.port)])
    limit = 1024
    resource.prlimit(a.proc.pid, resource.RLIMIT_NOFILE, (limit, limit))
    mark = e.proc.mark()
    # six hosts, 220 ports each: under the edge's per-source limit, 1,320 flows in all
    for h in range(6):
        for i in range(220):
            send_from("127.0.0.%d" % (10 + h), 40000 + i, b"x", ("127.0.0.1", uport))
    # the first flow answers after every datagram before it was handled
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closing(c)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c.bind(("127.0.0.10", 40000))
    assert ask_again("127.0.0.1", uport, b"first", c) == b"echo:first"
    assert echo_roundtrip("127.0.0.1", tport, b"tcp still works") == b"tcp still works"
    assert streams_open(e) <= limit // 2 + 1  # and the TCP stream, maybe not ended yet
    e.proc.wait_log("udp/%d: local service: too many UDP flows" % uport, since=mark)
    assert e.log()[mark:].count("local service:") < 10  # one line a second at most
    a.proc.wait_log("flows open, the most allowed: new ones refused")
    assert a.proc.alive() and e.proc.alive()


def test_wildcard_flow_per_address_asked(env, closing):
    """listen.streams 0.0.0.0 (the default): one client socket asking two
    addresses of the edge from the same port used to be one flow, keyed by
    the client's address alone, so the answer to 127.0.0.2 came from
    127.0.0.1 (a connected client socket or a NAT drops it) and the service's
    PROXY v2 header named 127.0.0.1.  Each (client, address asked) pair is
    now its own flow, as in nginx."""
    echo = UdpEcho()
    closing(echo)
    port = free_ports(1, hosts=("0.0.0.0",))
    a, e = stream_pair(env, [udp(port, echo.port, proxy_protocol="v2")], listen=("0.0.0.0",))
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closing(c)
    c.bind(("127.0.0.5", 0))
    c.settimeout(2 * SLOW)
    for dst in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.1"):
        msg = b"to " + dst.encode()
        for _ in range(5):  # the first datagram of a flow may be lost while it is set up
            c.sendto(msg, (dst, port))
            try:
                reply, src = c.recvfrom(65536)
                break
            except socket.timeout:
                continue
        assert src == (dst, port), (dst, src)
        # echo: + the PROXY v2 header (src 127.0.0.5, dst as asked) + msg
        assert reply[:5] == b"echo:" and reply[5 + 12:5 + 14] == b"\x21\x12", reply
        assert reply[5 + 20:5 + 24] == socket.inet_aton(dst), reply
        assert reply.endswith(msg)
    assert streams_open(e) == 3
    assert e.status()["udp_dropped"] == 0


@pytest.mark.slow
def test_flows_on_a_port_range_while_the_tunnel_stalls(env, closing):
    """4,096 client addresses on a 100-port range (410,000 flows, each within
    the per-port and per-source limits) while the agent reads nothing for a
    moment: the edge queued an OPEN for each until the session passed its
    16 MiB limit and was closed (every route of the agent with it), and the
    edge spent its CPU walking stream hash chains (/status timed out).  Now
    an agent session takes no new flow past 16,384 streams."""
    # (under ASAN the edge reads slower: fewer ports keep the stall well
    # under the 30 s after which a silent agent is dropped anyway)
    np_ = 100 if SLOW == 1 else 20
    base = free_ports(np_)
    svc = free_ports(np_)
    for i in range(np_):  # the services: bound, never read (no ICMP error ends a flow)
        k = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        closing(k)
        k.bind(("127.0.0.1", svc + i))
    origin = TcpService(echo_handler)
    closing(origin)
    tport = free_ports(1)
    a, e = stream_pair(env, [dict(listen="udp/%d-%d" % (base, base + np_ - 1),
                                  to="127.0.0.1:%d" % svc), tcp(tport, origin.port)])
    mark = e.proc.mark()
    a.proc.signal(signal.SIGSTOP)  # a stalled tunnel: the agent reads nothing
    try:
        clients = []
        for h in range(16):
            for i in range(256):
                c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                closing(c)
                c.bind(("127.0.1.%d" % (h + 1), 40000 + i))
                clients.append(c)
        for p in range(base, base + np_):
            for c in clients:
                c.sendto(b"x", ("127.0.0.1", p))
        ports = set(range(base, base + np_))
        wait_for(lambda: udp_rx_queued(*ports) == 0, 20, what="the edge read every datagram")
        assert "closing:" not in e.log()[mark:], e.log()[mark:][-1000:]
        assert streams_open(e) <= UDP_MAX_FLOWS_PER_AGENT
        e.proc.wait_log("streams: new flows are dropped", since=mark)
    finally:
        a.proc.signal(signal.SIGCONT)
    assert echo_roundtrip("127.0.0.1", tport, b"still connected") == b"still connected"
    assert "closing:" not in e.log()[mark:], e.log()[mark:][-2000:]
    assert a.proc.alive() and e.proc.alive()


# ---- a local service that is down ---------------------------------------------------------


def test_service_down_does_not_flood_the_log(env, closing):
    """With the service down, every new flow ends with an ICMP error at the
    agent; the agent used to log one line per flow, so any client on the
    internet could write to its log at the rate it sends datagrams."""
    echo = UdpEcho()
    port = free_ports(1)
    a, e = stream_pair(env, [udp(port, echo.port)])
    echo.close()
    mark = a.proc.mark()
    for i in range(300):
        send_from("127.0.0.2", 40000 + i, b"into the void", ("127.0.0.1", port))
    a.proc.wait_log("the service's socket failed", since=mark)
    # the edge read every datagram, then every flow they opened ended
    wait_for(lambda: udp_rx_queued(port) == 0 and streams_open(e) == 0, 10,
             what=lambda: "all flows ended: %r" % e.status())
    lines = a.log()[mark:].count("the service's socket failed")
    assert 1 <= lines < 10, lines
    assert a.proc.alive() and e.proc.alive()


def test_flow_whose_socket_connects_to_itself_is_refused(env, closing, request):
    """The agent's socket for a flow gets its port from the ephemeral range
    at connect().  With nothing listening on the service's port, and that
    port in the range (UdpEcho's are), the kernel may pick the service's port
    itself: the socket is then connected to itself.  It read back each
    datagram it sent as the service's reply, passed it to the client, and no
    ICMP error ever came: the flow lived until its idle timeout (about 1 run
    in 100 of test_service_down_does_not_flood_the_log, whose 256 flows try
    256 random ports).  Here the range is that one port, in a network
    namespace of the test's own: the flow is refused at once."""
    if rerun_in_own_netns(request):
        return
    svc, port = free_ports(1), free_ports(1)  # nothing listens on svc
    a, e = stream_pair(env, [udp(port, svc)])
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closing(c)
    c.bind(("127.0.0.1", 0))
    mark = a.proc.mark()
    with ephemeral_ports(svc, svc):  # only while the agent makes the flow's socket
        c.sendto(b"anyone there?", ("127.0.0.1", port))
        wait_for(lambda: "connected to itself" in a.log()[mark:] or
                 select.select([c], [], [], 0)[0], 5,
                 what=lambda: "the flow's socket at the agent:\n" + a.log()[mark:])
    wait_for(lambda: streams_open(e) == 0, 5, what=lambda: "the flow ended: %r" % e.status())
    e.proc.wait_log("udp/%d: local service: Connection refused" % port)
    c.setblocking(False)
    with pytest.raises(BlockingIOError):  # its own datagram did not come back as a reply
        c.recv(65536)


# ---- the agent, seen from a scripted edge -------------------------------------------------


def agent_at_fake_edge_with(env, streams):
    """An agent with these streams, welcomed by a FakeEdge (no pings) that
    accepted every route it declared.  Returns (fake, agent, route ids)."""
    fake = FakeEdge(env)
    a = Agent(env, "home", streams=streams)
    try:
        a.start(fake.url(), wait=False)
        fake.accept()
        fake.send(frame(HELLO, struct.pack(">H", 1) + os.urandom(32)))
        assert [f[0] for f in parse_frames(fake.recv())] == [AUTH]
        fake.send(frame(WELCOME, struct.pack(">II", 1 << 20, 0) + b"\x04home"))
        routes = []
        while len(routes) < len(streams):
            routes += [sid for t, sid, _ in parse_frames(fake.recv()) if t == ROUTE]
        for r in routes:
            fake.send(frame(ROUTE_ANSWER, struct.pack(">IB", 0, 0), stream=r))
        for st in streams:
            a.proc.wait_log("route %s accepted by the edge" % st["listen"])
    except BaseException:
        fake.close()
        raise
    return fake, a, routes


def open_frame(stream, route, port, client=("127.0.0.1", 40000), kind=KIND_UDP):
    """OPEN of a UDP flow (or a TCP stream) from client to the edge's 127.0.0.1:port."""
    return frame(OPEN, struct.pack(">IBB16sHB16sH", route, kind, 4,
                                   socket.inet_aton(client[0]), client[1], 4,
                                   socket.inet_aton("127.0.0.1"), port), stream=stream)


def next_frame(fake, types):
    """The next frame the agent sends whose type is in types: (type, stream, payload)."""
    while True:
        for f in parse_frames(fake.recv()):
            if f[0] in types:
                return f


def test_idle_udp_flow_ends_with_code_timeout(env, closing):
    """PROTOCOL.md section 9: a flow ended by its idle timeout ends with RST
    CODE_TIMEOUT (it was CODE_OK)."""
    echo = UdpEcho()
    closing(echo)
    port = free_ports(1)
    fake, a, routes = agent_at_fake_edge_with(env, [udp(port, echo.port, idle_timeout="1s")])
    closing(fake)
    fake.send(open_frame(5, routes[0], port) + frame(DATAGRAM, b"ping", stream=5))
    assert next_frame(fake, (DATAGRAM, RST, REFUSE)) == (DATAGRAM, 5, b"echo:ping")
    t, sid, payload = next_frame(fake, (DATAGRAM, RST, REFUSE))
    assert (t, sid) == (RST, 5)
    assert struct.unpack(">I", payload)[0] == CODE_TIMEOUT


def test_udp_flow_ends_when_a_send_takes_the_icmp_error(env, closing):
    """A connected UDP socket reports an ICMP error once, to whichever call
    comes first.  On loopback the port unreachable for the first datagram
    is there before sendmsg() returns; the second datagram, in the same
    message from the edge, is sent before the loop polls the socket, so its
    sendmsg() took the error (ECONNREFUSED), which the agent ignored: poll
    then saw nothing, and the flow waited for its idle timeout (60 s) with
    the service down.  A hard error from a send now ends the flow."""
    port = free_ports(1)
    svc = free_ports(1)  # nothing listens there
    fake, a, routes = agent_at_fake_edge_with(env, [udp(port, svc)])
    closing(fake)
    fake.send(open_frame(5, routes[0], port) + frame(DATAGRAM, b"one", stream=5) +
              frame(DATAGRAM, b"two", stream=5))
    t, sid, payload = next_frame(fake, (DATAGRAM, RST, REFUSE))
    assert (t, sid) == (RST, 5), (t, sid, payload)
    assert struct.unpack(">I", payload[:4])[0] == CODE_UNREACHABLE
    a.proc.wait_log("the service's socket failed (Connection refused)")
    # the flow is gone: the next datagram of the client opens a new one
    fake.send(open_frame(7, routes[0], port) + frame(DATAGRAM, b"again", stream=7))
    assert next_frame(fake, (DATAGRAM, RST, REFUSE))[:2] == (RST, 7)


def test_udp_open_crossing_the_agents_goaway_is_refused(env, closing):
    """PROTOCOL.md section 10: an agent that sent GOAWAY refuses an OPEN that
    crossed it with REFUSE CODE_SHUTDOWN.  A UDP flow was opened anyway (a
    socket, the datagram sent to the service) while the agent shut down."""
    echo = UdpEcho()
    closing(echo)
    origin = TcpService(echo_handler)
    closing(origin)
    uport, tport = free_ports(1), free_ports(1)
    fake, a, routes = agent_at_fake_edge_with(env, [udp(uport, echo.port),
                                                    tcp(tport, origin.port)])
    closing(fake)
    # a TCP stream keeps the agent draining (it waits for streams, not flows)
    fake.send(open_frame(1, routes[1], tport, kind=KIND_TCP))
    assert next_frame(fake, (ACCEPT, REFUSE))[:2] == (ACCEPT, 1)
    a.proc.signal(signal.SIGTERM)
    t, _, payload = next_frame(fake, (GOAWAY,))
    assert struct.unpack(">I", payload[:4])[0] == CODE_SHUTDOWN
    fake.send(open_frame(3, routes[0], uport) + frame(DATAGRAM, b"late", stream=3))
    t, sid, payload = next_frame(fake, (REFUSE, DATAGRAM, RST))
    assert (t, sid) == (REFUSE, 3), (t, sid, payload)
    assert struct.unpack(">I", payload[:4])[0] == CODE_SHUTDOWN
    assert echo.seen == []


def tcp_stream_at_fake_edge(env, closing):
    """An agent at a FakeEdge with a TCP stream to an echo origin, stream 1
    opened and accepted.  Returns (fake, agent, route ids, port, origin)."""
    origin = TcpService(echo_handler)
    closing(origin)
    tport = free_ports(1)
    fake, a, routes = agent_at_fake_edge_with(env, [tcp(tport, origin.port)])
    closing(fake)
    fake.send(open_frame(1, routes[0], tport, kind=KIND_TCP))
    assert next_frame(fake, (ACCEPT, REFUSE))[:2] == (ACCEPT, 1)
    return fake, a, routes, tport, origin


def test_tcp_open_crossing_the_agents_goaway_is_refused(env, closing):
    """The TCP side of section 10: the agent accepted such an OPEN and
    connected to the service while it shut down."""
    fake, a, routes, tport, origin = tcp_stream_at_fake_edge(env, closing)
    a.proc.signal(signal.SIGTERM)
    next_frame(fake, (GOAWAY,))
    fake.send(open_frame(3, routes[0], tport, kind=KIND_TCP))
    t, sid, payload = next_frame(fake, (ACCEPT, REFUSE))
    assert (t, sid) == (REFUSE, 3), (t, sid, payload)
    assert struct.unpack(">I", payload[:4])[0] == CODE_SHUTDOWN
    # the origin's accept thread may lag behind the kernel: wait for the
    # first connection, then make sure no second one follows
    wait_for(lambda: len(origin.conns) == 1, 5, what="the first stream's connection")
    time.sleep(0.3)
    assert len(origin.conns) == 1


def test_agent_resets_a_tcp_stream_given_a_datagram(env, closing):
    """Section 9 the other way round: DATAGRAM on a TCP stream is a stream
    protocol error (the agent ignored it)."""
    fake, a, routes, tport, origin = tcp_stream_at_fake_edge(env, closing)
    fake.send(frame(DATAGRAM, b"not bytes", stream=1))
    assert next_frame(fake, (RST,)) == (RST, 1, struct.pack(">I", CODE_PROTOCOL))
    a.proc.wait_log("DATAGRAM on a TCP stream")


def test_window_from_the_edge_keeps_a_tcp_stream_from_idling(env, closing):
    """idle_timeout counts the client's reads, which the edge tells with
    WINDOW: a stream whose client keeps taking bytes, while the service has
    nothing new to say, is not idle; once the WINDOWs stop, it is.  The
    agent counted only its own reads and the edge's DATA."""
    def hello(sock, info):
        sock.sendall(b"hello")
        time.sleep(20 * SLOW)

    origin = TcpService(hello)
    closing(origin)
    tport = free_ports(1)
    fake, a, routes = agent_at_fake_edge_with(env, [tcp(tport, origin.port, idle_timeout="1s")])
    closing(fake)
    fake.send(open_frame(1, routes[0], tport, kind=KIND_TCP))
    assert next_frame(fake, (ACCEPT, REFUSE))[:2] == (ACCEPT, 1)
    assert next_frame(fake, (DATA, RST)) == (DATA, 1, b"hello")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5:
        fake.send(frame(WINDOW, struct.pack(">I", 1), stream=1))
        time.sleep(0.25)
    assert "idle for" not in a.proc.log()
    quiet = time.monotonic()
    assert next_frame(fake, (RST,)) == (RST, 1, struct.pack(">I", CODE_TIMEOUT))
    assert time.monotonic() - quiet >= 0.5


def test_open_of_another_kind_than_its_route_is_refused(env, closing):
    """PROTOCOL.md section 7: an OPEN whose kind does not match its route is
    refused with CODE_NO_ROUTE.  The agent opened a TCP connection to a UDP
    stream's service (or an HTTP route's, or a TCP stream's as HTTP)."""
    echo = UdpEcho()
    closing(echo)
    tsvc = TcpService(echo_handler, port=echo.port)  # TCP on the UDP service's port
    closing(tsvc)
    port = free_ports(2)
    fake, a, routes = agent_at_fake_edge_with(env, [udp(port, echo.port),
                                                    tcp(port + 1, echo.port)])
    closing(fake)
    for sid, (route, p, kind) in enumerate([(0, port, KIND_TCP), (0, port, KIND_HTTP),
                                            (1, port + 1, KIND_HTTP), (1, port + 1, KIND_UDP)],
                                           start=1):
        fake.send(open_frame(sid, routes[route], p, kind=kind))
        t, got, payload = next_frame(fake, (ACCEPT, REFUSE))
        assert (t, got) == (REFUSE, sid), (t, got, payload)
        assert struct.unpack(">I", payload[:4])[0] == CODE_NO_ROUTE
    assert tsvc.conns == []


def test_open_on_an_id_the_agent_still_holds_is_refused(env, closing):
    """PROTOCOL.md section 7: after 2^32 streams the edge may reuse an id the
    agent still finishes.  An OPEN on an id the agent holds, a TCP stream's
    or a UDP flow's, of either kind, is refused (CODE_PROTOCOL); the stream
    and the flow holding the ids go on, and so does the tunnel.  The edge's
    frames on such an id are for the stream it opened, not for the holder:
    they are dropped.  The agent closed the tunnel on a TCP id and gave a UDP
    id to a second flow; then it fed the refused stream's DATA, RST, FIN or
    WINDOW to the holder."""
    go = threading.Event()

    def slow_to_finish(sock, info):
        info["got"] = sock.recv(65536)
        sock.sendall(info["got"])
        go.wait(20 * SLOW)
        info["then"] = sock.recv(65536)  # b"": the edge's FIN, and nothing after it
        sock.sendall(b"late")

    origin = TcpService(slow_to_finish)
    closing(origin)
    echo = UdpEcho()
    closing(echo)
    tport = free_ports(2)
    uport = tport + 1
    fake, a, routes = agent_at_fake_edge_with(env, [tcp(tport, origin.port),
                                                    udp(uport, echo.port)])
    closing(fake)
    fake.send(open_frame(1, routes[0], tport, kind=KIND_TCP))
    assert next_frame(fake, (ACCEPT, REFUSE))[:2] == (ACCEPT, 1)
    fake.send(frame(DATA, b"before", stream=1) + frame(FIN, b"", stream=1))
    assert next_frame(fake, (DATA, RST)) == (DATA, 1, b"before")
    fake.send(open_frame(5, routes[1], uport) + frame(DATAGRAM, b"ping", stream=5))
    assert next_frame(fake, (DATAGRAM, RST, REFUSE)) == (DATAGRAM, 5, b"echo:ping")
    for sid, route, port, kind in [(1, 0, tport, KIND_TCP), (1, 1, uport, KIND_UDP),
                                   (5, 1, uport, KIND_UDP), (5, 0, tport, KIND_TCP)]:
        fake.send(open_frame(sid, routes[route], port, kind=kind))
        t, got, payload = next_frame(fake, (ACCEPT, REFUSE, RST))
        assert (t, got) == (REFUSE, sid), (t, got, payload)
        assert struct.unpack(">I", payload[:4])[0] == CODE_PROTOCOL
        assert b"still in use" in payload
    # the refused streams' frames, as an edge sends them: all dropped
    big = struct.pack(">I", 1 << 30)
    fake.send(b"".join(frame(t, p, stream=sid) for sid in (1, 5) for t, p in
                       [(DATA, b"injected"), (DATAGRAM, b"injected"), (WINDOW, big),
                        (WINDOW, big), (FIN, b""), (RST, struct.pack(">I", CODE_PROTOCOL))]))
    # a flow opened after them answers once the agent has read them all
    fake.send(open_frame(9, routes[1], uport) + frame(DATAGRAM, b"after", stream=9))
    seen = []
    while (DATAGRAM, 9, b"echo:after") not in seen:  # nothing on 1 or 5, no WINDOW either
        seen += parse_frames(fake.recv())
    assert seen == [(DATAGRAM, 9, b"echo:after")], seen
    assert [d for _, d in echo.seen] == [b"ping", b"after"]
    # the holder of id 1 goes on to its end
    go.set()
    seen = []
    while (FIN, 1, b"") not in seen:
        seen += parse_frames(fake.recv())
    assert seen == [(DATA, 1, b"late"), (FIN, 1, b"")], seen
    assert origin.conns[0].get("then") == b"" and "error" not in origin.conns[0]
    assert len(origin.conns) == 1
    assert a.proc.log().count("which is still open here: refused") == 4


@pytest.mark.parametrize("ftype", [DATA, WINDOW, FIN])
def test_agent_resets_a_udp_flow_given_data_window_or_fin(env, closing, ftype):
    """PROTOCOL.md section 9, the agent's side: DATA, WINDOW or FIN on a UDP
    flow is a stream protocol error (RST CODE_PROTOCOL).  The agent ignored
    DATA and WINDOW and dropped the flow on FIN without a word."""
    echo = UdpEcho()
    closing(echo)
    port = free_ports(1)
    fake, a, routes = agent_at_fake_edge_with(env, [udp(port, echo.port)])
    closing(fake)
    fake.send(open_frame(5, routes[0], port) + frame(DATAGRAM, b"ping", stream=5))
    assert next_frame(fake, (DATAGRAM, RST, REFUSE)) == (DATAGRAM, 5, b"echo:ping")
    payload = {DATA: b"bytes", WINDOW: struct.pack(">I", 4096), FIN: b""}[ftype]
    fake.send(frame(ftype, payload, stream=5))
    assert next_frame(fake, (DATAGRAM, RST, REFUSE)) == (RST, 5, struct.pack(">I", CODE_PROTOCOL))
    a.proc.wait_log("on a UDP flow; flow reset")
    # the flow is gone: a datagram for it reaches no one
    fake.send(frame(DATAGRAM, b"after", stream=5) + open_frame(7, routes[0], port) +
              frame(DATAGRAM, b"new flow", stream=7))
    assert next_frame(fake, (DATAGRAM, RST, REFUSE)) == (DATAGRAM, 7, b"echo:new flow")
    assert [d for _, d in echo.seen] == [b"ping", b"new flow"]


# ---- the edge, seen from a scripted agent ---------------------------------------------------


def test_edge_returns_credit_to_a_slow_reader(env, closing):
    """The edge returns credit in 256 KiB batches, and at least every 250 ms
    while the client takes bytes: the agent's idle_timeout counts a slow
    download by those WINDOWs.  Under a batch, credit never came back."""
    port = free_ports(1)
    e, t = scripted_agent_on_port(env, closing, port, kind=KIND_TCP)
    c = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    closing(c)
    _, sid, _ = edge_frame(t, (OPEN,))
    t.send(frame(ACCEPT, b"", stream=sid) + frame(DATA, b"x" * 1000, stream=sid))
    got = b""
    while len(got) < 1000:
        got += c.recv(1000)
    time.sleep(0.3)
    t.send(frame(DATA, b"y" * 1000, stream=sid))
    while len(got) < 2000:
        got += c.recv(1000)
    # far under a batch: the credit comes back as the client reads, 250 ms on
    assert edge_frame(t, (WINDOW, RST, FIN)) == (WINDOW, sid, struct.pack(">I", 2000))


@pytest.mark.parametrize("ftype", [DATA, FIN])
def test_data_or_fin_on_a_udp_flow_is_a_stream_error(env, closing, ftype):
    """PROTOCOL.md section 9: DATA or FIN on a UDP flow is a stream protocol
    error (RST CODE_PROTOCOL).  The edge took DATA as if the flow were a
    TCP stream (and returned credit for it) and ignored FIN."""
    port = free_ports(1)
    e, t = scripted_agent_on_port(env, closing, port)
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closing(c)
    c.sendto(b"hello", ("127.0.0.1", port))
    _, sid, _ = edge_frame(t, (OPEN,))
    assert edge_frame(t, (DATAGRAM,)) == (DATAGRAM, sid, b"hello")
    mark = e.proc.mark()
    t.send(frame(ftype, b"not a datagram" if ftype == DATA else b"", stream=sid))
    f = edge_frame(t, (RST, WINDOW))
    assert f == (RST, sid, struct.pack(">I", CODE_PROTOCOL)), f
    e.proc.wait_log("on a UDP flow", since=mark)
    wait_for(lambda: streams_open(e) == 0, 5, what="the flow ended at the edge")
    # the client's next datagram opens a new flow
    c.sendto(b"again", ("127.0.0.1", port))
    _, sid2, _ = edge_frame(t, (OPEN,))
    assert sid2 != sid


def test_a_datagram_on_a_tcp_stream_is_a_stream_error(env, closing):
    """The edge's side: DATAGRAM on a TCP stream resets it (RST
    CODE_PROTOCOL) and the client's connection; it used to be ignored."""
    port = free_ports(1)
    e, t = scripted_agent_on_port(env, closing, port, kind=KIND_TCP)
    c = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    closing(c)
    _, sid, _ = edge_frame(t, (OPEN,))
    mark = e.proc.mark()
    t.send(frame(ACCEPT, b"", stream=sid) + frame(DATAGRAM, b"not bytes", stream=sid))
    assert edge_frame(t, (RST,)) == (RST, sid, struct.pack(">I", CODE_PROTOCOL))
    e.proc.wait_log("DATAGRAM on a TCP stream", since=mark)
    try:
        assert c.recv(10) == b""
    except ConnectionResetError:
        pass
