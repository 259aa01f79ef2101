"""TCP and UDP streams end to end: ports opened on the edge at runtime for an
agent, carried through the tunnel to services "at home", with half-close,
UDP flows, PROXY protocol v1/v2, listeners that follow the agent, and port
conflicts.

Real relais-edge / relais-agent / iperf3 processes on loopback (127.0.0.1 and
::1); every wait is on a log line, a socket or /status, never a fixed sleep.
"""
import hashlib
import os
import re
import resource
import selectors
import signal
import socket
import ssl
import struct
import threading
import time

import pytest

from relais import (SLOW, Agent, DelayRelay, Edge, Iperf3Server, TcpRelay, TcpService, UdpEcho,
                    connect, echo_handler, echo_roundtrip, ephemeral_ports, free_ports,
                    iperf3_client, rerun_in_own_netns,
                    proc_cpu_seconds, proxy_v1, proxy_v2, read_proxy_header, recv_all, stream_pair,
                    stream_setup, streams_open, tcp, tcp_listening, udp, udp_ask, udp_bound,
                    upgrade, wait_for, wait_streams_zero)


# ---- iperf3 through the tunnel ----------------------------------------------------------


@pytest.fixture
def iperf(env):
    """An iperf3 server at home and an edge port (TCP and UDP) leading to it."""
    srv = Iperf3Server(env)
    port = free_ports(1)
    a, e = stream_pair(env, [tcp(port, srv.port), udp(port, srv.port)])
    return port, a, e


def tcp_result(out):
    sent, recv = out["end"]["sum_sent"], out["end"]["sum_received"]
    return sent["bytes"], recv["bytes"], recv["bits_per_second"] / 1e9


@pytest.mark.parametrize("args", [(), ("-R",), ("-P", 4)], ids=["upload", "reverse", "P4"])
def test_iperf3_tcp(iperf, args):
    port, a, e = iperf
    out = iperf3_client(port, *args)
    sent, recv, gbps = tcp_result(out)
    assert sent > 0 and recv > 0, out["end"]
    # every byte sent arrived (the receiver counts what it read)
    assert recv <= sent and recv > sent * 0.9, (sent, recv)
    if args and args[0] == "-P":
        assert len(out["end"]["streams"]) == 4
        assert all(s["receiver"]["bytes"] > 0 for s in out["end"]["streams"])
    print("iperf3 tcp %s: %.2f Gbit/s, %d bytes" % (" ".join(map(str, args)) or "upload",
                                                    gbps, recv))
    wait_streams_zero(e)


def test_iperf3_udp_at_fixed_rate_reports_loss(iperf):
    port, a, e = iperf
    out = iperf3_client(port, "-u", "-b", "50M", "-l", "1400")
    s = out["end"]["sum"]
    packets, lost, loss = s["packets"], s["lost_packets"], s["lost_percent"]
    print("iperf3 udp 50M: %d packets, %d lost (%.2f%%), jitter %.3f ms"
          % (packets, lost, loss, s["jitter_ms"]))
    # 50 Mbit/s for 2 s in 1400-byte datagrams is ~8900 datagrams
    assert packets > 5000, s
    assert 0 <= loss < 20, s
    print("edge udp_dropped: %d" % e.status()["udp_dropped"])
    # The flow (iperf3 sends from one socket) lives on until its idle
    # timeout; the control connection's stream is gone.
    wait_for(lambda: streams_open(e) == 1, 5,
             what=lambda: "only the UDP flow left: %r" % e.status())


# ---- UDP request / response ---------------------------------------------------------------


def test_udp_echo_from_ipv4_and_ipv6_clients(env, closing):
    echo = UdpEcho()
    closing(echo)
    port = free_ports(1, hosts=("127.0.0.1", "::1"))
    a, e = stream_pair(env, [udp(port, echo.port)], listen=("127.0.0.1", "::1"))
    assert udp_ask("127.0.0.1", port, b"hello v4") == b"echo:hello v4"
    assert udp_ask("::1", port, b"hello v6") == b"echo:hello v6"
    # the agent keeps one socket per flow: two flows seen by the service
    wait_for(lambda: len({p for p, _ in echo.seen}) == 2, 5, what="two flows at the service")
    assert streams_open(e) == 2

    # Four clients at once (two of each family), many requests each: every
    # answer reaches the client that asked, and only that one.
    socks = []
    for host in ("127.0.0.1", "127.0.0.1", "::1", "::1"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.bind((host, 0))
        s.settimeout(2 * SLOW)
        socks.append((host, s))
    try:
        errors = []

        def client(i, host, s):
            try:
                for k in range(50):
                    msg = b"client %d request %d %s" % (i, k, os.urandom(8).hex().encode())
                    assert udp_ask(host, port, msg, sock=s) == b"echo:" + msg
            except AssertionError as ex:
                errors.append(ex)

        threads = [threading.Thread(target=client, args=(i, h, s)) for i, (h, s) in
                   enumerate(socks)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
    finally:
        for _, s in socks:
            s.close()
    # each client address is its own flow; the service saw each from its own socket
    assert streams_open(e) == 6
    assert len({p for p, _ in echo.seen}) == 6
    assert e.status()["udp_dropped"] == 0


def big_rcvbuf(s, size=4 << 20):
    """As large a receive buffer as allowed (SO_RCVBUFFORCE as root), so that
    a burst of datagrams fits; its size as the kernel took it."""
    try:
        s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), size)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def burst_datagram(flow, seq, size):
    """Datagram seq of flow: both in its first bytes, then a pattern of its own."""
    head = struct.pack("!BH", flow, seq)
    return head + bytes([(flow * 7 + seq) % 251]) * (size - len(head))


def recv_burst(s, n):
    """n datagrams from s: {flow: [(seq, datagram), ...]} in arrival order, and
    the senders' addresses by flow."""
    got, peers = {}, {}
    for _ in range(n):
        data, peer = s.recvfrom(65536)
        flow, seq = struct.unpack("!BH", data[:3])
        got.setdefault(flow, []).append((seq, data))
        peers[flow] = peer
    return got, peers


def check_burst(got, flows, count, size):
    for flow in flows:
        seqs = [seq for seq, _ in got.get(flow, [])]
        assert seqs == list(range(count)), (flow, seqs[:10], len(seqs))
        assert all(d == burst_datagram(flow, seq, size) for seq, d in got[flow]), flow


def test_udp_bursts_arrive_whole_and_in_order(env, closing):
    """Datagrams that reach the agent or the edge together leave in batches
    (sendmmsg): bursts larger than a batch, in datagrams (64) and in bytes
    (256 KiB), from flows interleaved, arrive whole and in order both ways."""
    svc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closing(svc)
    svc.bind(("127.0.0.1", 0))
    port = free_ports(1)
    a, e = stream_pair(env, [udp(port, svc.getsockname()[1])])
    clients = []
    for _ in range(3):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        closing(c)
        c.bind(("127.0.0.1", 0))
        c.settimeout(5 * SLOW)
        clients.append(c)
    if min(big_rcvbuf(x) for x in [svc] + clients) < 2 << 20:
        pytest.skip("receive buffers of 2 MiB are not allowed here (net.core.rmem_max)")
    svc.settimeout(5 * SLOW)
    # Each flow set up first (its socket at the agent), one datagram each.
    for i, c in enumerate(clients):
        c.sendto(burst_datagram(i, 0, 10), ("127.0.0.1", port))
    got, agent_socks = recv_burst(svc, 3)
    check_burst(got, range(3), 1, 10)

    # Upload: 200 datagrams of one flow at once, then 30 of 6000 bytes from
    # each of the three, interleaved (540 KB).
    for k in range(200):
        clients[0].sendto(burst_datagram(0, k, 1000), ("127.0.0.1", port))
    check_burst(recv_burst(svc, 200)[0], [0], 200, 1000)
    for k in range(30):
        for i, c in enumerate(clients):
            c.sendto(burst_datagram(i, k, 6000), ("127.0.0.1", port))
    check_burst(recv_burst(svc, 90)[0], range(3), 30, 6000)

    # Download: the same from the service to each flow's socket at the agent.
    for k in range(200):
        svc.sendto(burst_datagram(0, k, 1000), agent_socks[0])
    check_burst(recv_burst(clients[0], 200)[0], [0], 200, 1000)
    for k in range(30):
        for i in range(3):
            svc.sendto(burst_datagram(i, k, 6000), agent_socks[i])
    for i, c in enumerate(clients):
        check_burst(recv_burst(c, 30)[0], [i], 30, 6000)
    assert e.status()["udp_dropped"] == 0


def test_udp_replies_past_a_full_tunnel_are_dropped_and_counted(env, closing):
    """The tunnel stops moving (a dead path): a service's replies queue up to
    the agent's high watermark, then are dropped, never queued without bound,
    and the agent says so (at most once a second, with the count so far).
    Once the path moves again, the flow still works."""
    svc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closing(svc)
    svc.bind(("127.0.0.1", 0))
    svc.settimeout(5 * SLOW)
    port = free_ports(1)
    a, e = stream_setup(env, [udp(port, svc.getsockname()[1])])
    e.start()
    relay = TcpRelay(e.tunnel_port)
    closing(relay)
    a.start("wss://localhost:%d/relais" % relay.port)
    a.proc.wait_log("route udp/%d accepted by the edge" % port)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closing(client)
    client.settimeout(5 * SLOW)
    client.sendto(b"hello", ("127.0.0.1", port))
    data, agent_sock = svc.recvfrom(100)
    assert data == b"hello"

    mark = a.proc.mark()
    relay.pause()
    chunk = b"r" * 8000
    full = "udp: a datagram dropped: the tunnel to the edge is full"
    # Past every socket buffer on the way and 4 MiB queued: bursts the
    # agent's socket holds (800 KB), until the agent says so, well before it
    # would give up on the silent path (12 s).
    deadline, sent = time.monotonic() + 8, 0
    while full not in a.proc.log()[mark:] and time.monotonic() < deadline:
        for _ in range(100):
            svc.sendto(chunk, agent_sock)
        sent += 100
        time.sleep(0.01)
    a.proc.wait_log(full, since=mark)
    counts = [int(n) for n in re.findall(r"the tunnel to the edge is full \((\d+) so far\)",
                                         a.proc.log()[mark:])]
    assert counts and counts[0] >= 1 and counts == sorted(counts), counts
    relay.resume()
    # What was queued reaches the client (some of it at least); the flow then
    # carries new datagrams both ways.
    got = 0
    client.settimeout(1.0 * SLOW)
    try:
        while True:
            assert client.recv(65536) == chunk
            got += 1
    except socket.timeout:
        pass
    assert 0 < got < sent, (got, sent)
    client.sendto(b"again", ("127.0.0.1", port))
    data, agent_sock2 = svc.recvfrom(100)
    assert data == b"again" and agent_sock2 == agent_sock  # the same flow
    svc.sendto(b"back", agent_sock)
    client.settimeout(5 * SLOW)
    assert client.recv(100) == b"back"
    assert a.proc.alive() and e.proc.alive()


# ---- many connections, half-close -----------------------------------------------------------


def test_1000_concurrent_tcp_connections_echo_their_own_data(env, closing):
    n = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 4 * n + 200
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip("RLIMIT_NOFILE hard limit %d < %d" % (hard, need))
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    origin = TcpService(echo_handler, backlog=2048)
    closing(origin)
    port = free_ports(1)
    a, e = stream_pair(env, [tcp(port, origin.port)])

    sel = selectors.DefaultSelector()
    want, got, socks = {}, {}, []
    try:
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            # 1000 clients from 8 addresses: each under the edge's default
            # of 256 connections per address
            s.bind(("127.0.1.%d" % (1 + i % 8), 0))
            s.connect_ex(("127.0.0.1", port))
            want[s] = (b"%06d:" % i) + hashlib.sha256(b"%d" % i).digest() * 32  # 1031 bytes
            got[s] = bytearray()
            socks.append(s)
            sel.register(s, selectors.EVENT_WRITE, 0)  # 0 bytes sent so far
        open_ = set(socks)
        deadline = time.monotonic() + 30 * SLOW
        while open_ and time.monotonic() < deadline:
            for key, ev in sel.select(0.5):
                s = key.fileobj
                if ev & selectors.EVENT_WRITE:
                    off = key.data
                    try:
                        off += s.send(want[s][off:])
                    except BlockingIOError:
                        pass
                    except OSError as ex:
                        raise AssertionError("connection %s: %r" % (want[s][:6], ex))
                    if off == len(want[s]):
                        # everything sent; keep the connection open until the echo is back
                        sel.modify(s, selectors.EVENT_READ, off)
                    else:
                        sel.modify(s, selectors.EVENT_WRITE, off)
                    continue
                d = s.recv(65536)
                if not d:
                    raise AssertionError("connection %s closed early after %d bytes"
                                         % (want[s][:6], len(got[s])))
                got[s] += d
                if len(got[s]) >= len(want[s]):
                    sel.unregister(s)
                    open_.discard(s)
        assert not open_, "%d connections did not get their echo" % len(open_)
        for s in socks:
            assert bytes(got[s]) == want[s], "connection %s got another's data" % want[s][:6]
        # all of them were alive at the same time, each its own stream
        assert e.status()["streams"] == n
        assert origin.open == n
    finally:
        for s in socks:
            s.close()
        sel.close()
    wait_streams_zero(e, 20)
    wait_for(lambda: origin.open == 0, 10, what="origin connections closed")
    assert len(origin.conns) == n
    assert [c.get("bytes") for c in origin.conns] == [1031] * n


def test_half_close_client_shuts_write_and_gets_the_whole_answer(env, closing):
    """An origin that reads to EOF and only then answers (a digest and 4 MiB)."""
    def handler(sock, info):
        h = hashlib.sha256()
        n = 0
        while True:
            d = sock.recv(65536)
            if not d:
                break
            h.update(d)
            n += len(d)
        info["got"] = n
        answer = b"%d %s\n" % (n, h.hexdigest().encode())
        sock.sendall(answer + hashlib.sha256(answer).digest() * (4 << 20 >> 5))

    origin = TcpService(handler)
    closing(origin)
    port = free_ports(1)
    a, e = stream_pair(env, [tcp(port, origin.port)])
    # several rounds: a lost tail shows up in most, not necessarily in each
    for size in (3 << 20, 0, 1000, 3 << 20, 64 << 10, 1 << 20):
        data = os.urandom(size)
        s = connect("127.0.0.1", port, timeout=20)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            reply = recv_all(s)
        finally:
            s.close()
        head, _, rest = reply.partition(b"\n")
        assert head == b"%d %s" % (len(data), hashlib.sha256(data).hexdigest().encode())
        assert len(rest) == 4 << 20, "upload %d: answer cut at %d bytes" % (size, len(rest))
        assert rest == hashlib.sha256(head + b"\n").digest() * (4 << 20 >> 5)
    wait_streams_zero(e)


def test_streams_are_in_the_access_log(env, closing):
    """One access log line per TCP stream when it ends: client, tcp/PORT,
    "TCP -", 200 (502 when the service refused), bytes each way, duration."""
    origin = TcpService(echo_handler)
    closing(origin)
    port, dead = free_ports(1), free_ports(1)
    a, e = stream_pair(env, [tcp(port, origin.port), tcp(dead, free_ports(1))])
    assert echo_roundtrip("127.0.0.1", port, b"hello, log") == b"hello, log"
    s = connect("127.0.0.1", dead)
    closing(s)
    try:
        assert s.recv(10) == b""
    except ConnectionResetError:
        pass
    log = os.path.join(env.dir, "access.log")
    line = r'^\d{4}-\d\d-\d\dT[\d:.]+Z 127\.0\.0\.1 tcp/%d "TCP -" %d in=%d out=%d ms=\d+$'
    wait_for(lambda: re.search(line % (port, 200, 10, 10), open(log).read(), re.M), 5,
             what=lambda: "the stream's line in\n" + open(log).read())
    wait_for(lambda: re.search(line % (dead, 502, 0, 0), open(log).read(), re.M), 5,
             what=lambda: "the refused stream's line in\n" + open(log).read())


@pytest.mark.parametrize("to", ["127.0.0.1", "0.0.0.0"])
def test_service_socket_connected_to_itself_is_refused(env, closing, request, to):
    """The agent's socket to a service gets its port from the ephemeral range
    at connect().  With nothing listening on the service's port, and that
    port in the range, the kernel may draw the service's port itself, and
    TCP's simultaneous open then connects the socket to itself: it echoed the
    client's bytes back as the service's answer.  Here the range is that one
    port (in a network namespace of the test's own): the stream is refused,
    and the client never reads its own bytes.  Also when the service is
    given as 0.0.0.0, which the kernel connects as 127.0.0.1."""
    if rerun_in_own_netns(request):
        return
    svc, port = free_ports(1), free_ports(1)  # nothing listens on svc
    a, e = stream_pair(env, [dict(listen="tcp/%d" % port, to="%s:%d" % (to, svc))])
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closing(c)
    c.settimeout(5 * SLOW)
    c.bind(("127.0.0.1", 0))  # its port from the whole range
    got = b""
    with ephemeral_ports(svc, svc):  # only while the agent connects
        c.connect(("127.0.0.1", port))
        c.sendall(b"anyone there?")
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                got += d
        except ConnectionResetError:
            pass
    assert got == b""
    wait_streams_zero(e)
    log = os.path.join(env.dir, "access.log")
    wait_for(lambda: re.search(r'tcp/%d "TCP -" 502 ' % port, open(log).read()), 5,
             what=lambda: "the refused stream's line in\n" + open(log).read())


def test_udp_flows_are_in_the_access_log(env, closing):
    """A UDP flow gets its line when it ends (here by its 1 s idle timeout):
    udp/PORT, "UDP -", 200, datagram bytes each way."""
    echo = UdpEcho()
    closing(echo)
    port = free_ports(1)
    a, e = stream_pair(env, [udp(port, echo.port, idle_timeout="1s")])
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closing(c)
    c.bind(("127.0.0.1", 0))
    for msg in (b"one", b"two!"):
        assert udp_ask("127.0.0.1", port, msg, sock=c) == b"echo:" + msg
    log = os.path.join(env.dir, "access.log")
    line = (r'^\S+Z 127\.0\.0\.1 udp/%d "UDP -" 200 in=7 out=17 ms=(\d+)$' % port)
    m = wait_for(lambda: re.search(line, open(log).read(), re.M), 10,
                 what=lambda: "the flow's line in\n" + open(log).read())
    assert int(m.group(1)) >= 1000  # it lasted until its idle timeout


def test_service_closing_mid_upload_frees_the_stream(env, closing):
    """The service reads for a while and resets while clients upload at full
    speed for 2 s: the agent drops what it can no longer deliver but returns
    its credit, so the edge goes on reading, sees its client finish, and
    every stream ends (none left waiting for credit that never comes)."""
    def handler(sock, info):
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.5:  # at full speed, every window full
            if not sock.recv(1 << 20):
                return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    origin = TcpService(handler)
    closing(origin)
    port = free_ports(1)
    a, e = stream_pair(env, [tcp(port, origin.port)])

    def upload():
        s = connect("127.0.0.1", port, timeout=10)
        try:
            chunk = b"u" * (256 << 10)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2:
                s.sendall(chunk)
        except OSError:
            pass
        finally:
            s.close()

    for _ in range(2):
        threads = [threading.Thread(target=upload) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        wait_streams_zero(e)
    assert e.proc.alive() and a.proc.alive()


class ShaService:
    """A service at home: "D" downloads size bytes (block repeated); "U"
    uploads until EOF and gets back "LENGTH SHA256" (info["n"] counts)."""

    def __init__(self, size, block):
        self.size, self.block = size, block
        self.service = TcpService(self.handler)
        self.port = self.service.port

    def handler(self, sock, info):
        cmd = sock.recv(1)
        if cmd == b"D":
            for _ in range(self.size // len(self.block)):
                sock.sendall(self.block)
        elif cmd == b"U":
            h, n = hashlib.sha256(), 0
            while True:
                d = sock.recv(1 << 20)
                if not d:
                    break
                h.update(d)
                n += len(d)
                info["n"] = n
            sock.sendall(b"%d %s" % (n, h.hexdigest().encode()))

    def close(self):
        self.service.close()


def download(port, size, block):
    """Ask a ShaService for its size bytes of block through port; check them."""
    s = connect("127.0.0.1", port, timeout=30)
    try:
        s.sendall(b"D")
        got = recv_all(s)
    finally:
        s.close()
    assert len(got) == size and got == block * (size // len(block))


def upload(port, size):
    """Send size random bytes to a ShaService through port; check its digest."""
    data = os.urandom(size)
    s = connect("127.0.0.1", port, timeout=30)
    try:
        s.sendall(b"U" + data)
        s.shutdown(socket.SHUT_WR)
        reply = recv_all(s)
    finally:
        s.close()
    assert reply == b"%d %s" % (size, hashlib.sha256(data).hexdigest().encode())


def relayed_pair(env, closing, origin, make_relay, scheme="wss"):
    """Agent and edge with one TCP stream to origin, the tunnel going through
    make_relay(tunnel_port).  Returns (agent, edge, stream port, relay)."""
    closing(origin)
    port = free_ports(1)
    a, e = stream_setup(env, [tcp(port, origin.port)])
    e.start()
    relay = make_relay(e.tunnel_port)
    closing(relay)
    a.start("%s://localhost:%d/relais" % (scheme, relay.port))
    a.proc.wait_log("route tcp/%d accepted by the edge" % port)
    return a, e, port, relay


def test_window_grows_with_a_long_round_trip(env, closing):
    """50 ms each way between agent and edge: with its starting 1 MiB window
    a stream would move 10 MB/s at most, whatever the link.  Downloading,
    the edge (the receiver) finds the window is the limit and grows it;
    uploading, the agent does.  Every byte still arrives in order."""
    size = 24 << 20
    block = hashlib.sha256(b"window").digest() * 2048  # 64 KiB

    a, e, port, _ = relayed_pair(env, closing, ShaService(size, block),
                                 lambda tunnel_port: DelayRelay(tunnel_port, 0.05))
    download(port, size, block)
    assert "window grown to" in e.log(), "the edge never grew a window"

    upload(port, size)
    assert "window grown to" in a.log(), "the agent never grew a window"
    wait_streams_zero(e)


def test_tunnel_stalled_mid_transfer_loses_nothing(env, closing):
    """24 uploads and 4 downloads at full speed while the path between agent
    and edge stops for a second (a relay stops forwarding, sockets open):
    the tunnel's sockets take what they can (about 6 MB here), then every
    sender waits for room or credit, and all drains in order.  Every
    stream's bytes arrive whole, and every stream ends."""
    size = 8 << 20
    block = hashlib.sha256(b"stall").digest() * 2048  # 64 KiB
    got = []
    origin = ShaService(size, block)
    a, e, port, relay = relayed_pair(env, closing, origin, TcpRelay)
    data = os.urandom(size)
    want_up = b"%d %s" % (size, hashlib.sha256(data).hexdigest().encode())

    def transfer(cmd):
        s = connect("127.0.0.1", port, timeout=30)
        try:
            if cmd == b"D":
                s.sendall(b"D")
                r = recv_all(s)
                got.append(r == block * (size // len(block)))
            else:
                s.sendall(b"U" + data)
                s.shutdown(socket.SHUT_WR)
                got.append(recv_all(s) == want_up)
        finally:
            s.close()

    threads = [threading.Thread(target=transfer, args=(c,)) for c in [b"U"] * 24 + [b"D"] * 4]
    for t in threads:
        t.start()
    wait_for(lambda: sum(i.get("n", 0) for i in origin.service.conns) >= 8 << 20, 10,
             what="uploads under way")
    relay.pause()
    time.sleep(1)
    relay.resume()
    for t in threads:
        t.join(60 * SLOW)
    assert got == [True] * 28, got
    wait_streams_zero(e)


def test_large_messages_over_plain_ws_are_masked(env, closing):
    """Over ws:// (tests only) the agent masks every frame with a fresh key;
    a large message is masked in place in its queue and written from there.
    A relay takes the plain side and speaks TLS to the real edge, which
    unmasks: 8 MiB down (large messages from the agent) and 8 MiB up arrive
    whole.  A payload left unmasked would reach the edge scrambled."""
    size = 8 << 20
    block = hashlib.sha256(b"masked").digest() * 2048  # 64 KiB
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    a, e, port, _ = relayed_pair(env, closing, ShaService(size, block),
                                 lambda tunnel_port: TcpRelay(tunnel_port, tls=tls), scheme="ws")
    download(port, size, block)
    upload(port, size)
    wait_streams_zero(e)


def test_half_close_origin_shuts_first_and_still_reads(env, closing):
    """The other direction: the service says its piece and shuts its write
    side; the client sees EOF, then sends, and the service still gets it all."""
    done = threading.Event()

    def handler(sock, info):
        try:
            sock.sendall(b"greeting; send me your data\n")
            sock.shutdown(socket.SHUT_WR)
            h = hashlib.sha256()
            n = 0
            while True:
                d = sock.recv(65536)
                if not d:
                    break
                h.update(d)
                n += len(d)
            info["got"] = (n, h.hexdigest())
        finally:
            done.set()

    origin = TcpService(handler)
    closing(origin)
    port = free_ports(1)
    a, e = stream_pair(env, [tcp(port, origin.port)])
    for i in range(5):  # several rounds, as above
        done.clear()
        s = connect("127.0.0.1", port, timeout=20)
        try:
            assert recv_all(s) == b"greeting; send me your data\n"  # EOF from the service
            data = os.urandom(2 << 20)
            s.sendall(data)  # the connection is still open our way
            s.shutdown(socket.SHUT_WR)
            assert done.wait(10 * SLOW), "the service did not finish"
            assert origin.conns[i].get("got") == (len(data), hashlib.sha256(data).hexdigest())
            assert recv_all(s) == b""
        finally:
            s.close()
    wait_streams_zero(e)


# ---- port ranges ----------------------------------------------------------------------------


def test_tcp_range_maps_to_the_base_port(env, closing):
    n = 4
    base = free_ports(n, kinds=(socket.SOCK_STREAM,))
    services = []
    for i in range(n):
        def handler(sock, info, i=i):
            sock.sendall(b"service %d port %d\n" % (i, base + i))
            recv_all(sock)  # closing with the request unread would reset the connection
        services.append(TcpService(handler, port=base + i))
        closing(services[-1])
    lo = free_ports(n, kinds=(socket.SOCK_STREAM,))
    rng = "tcp/%d-%d" % (lo, lo + n - 1)
    a, e = stream_pair(env, [dict(listen=rng, to="127.0.0.1:%d" % base)])
    assert sorted(e.agent_routes("home")) == [("tcp", "%d-%d" % (lo, lo + n - 1))]
    assert echo_roundtrip("127.0.0.1", lo) == b"service 0 port %d\n" % base
    assert echo_roundtrip("127.0.0.1", lo + 2) == b"service 2 port %d\n" % (base + 2)
    assert echo_roundtrip("127.0.0.1", lo + 3) == b"service 3 port %d\n" % (base + 3)
    assert [len(s.conns) for s in services] == [1, 0, 1, 1]
    assert not tcp_listening("127.0.0.1", lo + n)  # just past the range
    wait_streams_zero(e)


# ---- listeners follow the agent -------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_agent_disconnect_closes_listeners_and_restart_reopens(env, closing, sig):
    origin = TcpService(echo_handler)
    closing(origin)
    echo = UdpEcho()
    closing(echo)
    port, uport = free_ports(1), free_ports(1)
    a, e = stream_pair(env, [tcp(port, origin.port), udp(uport, echo.port)])
    assert echo_roundtrip("127.0.0.1", port, b"before") == b"before"
    assert udp_ask("127.0.0.1", uport, b"before") == b"echo:before"
    # a connection open across the disconnect: cut (SIGKILL) or finished (SIGTERM)
    held = connect("127.0.0.1", port)
    held.sendall(b"x")
    assert held.recv(1) == b"x"

    a.proc.signal(sig)
    if sig == signal.SIGTERM:
        # draining: the open connection is finished, not cut
        a.proc.wait_log("draining: finishing")
        held.sendall(b"during the drain")
        assert held.recv(100) == b"during the drain"
        held.shutdown(socket.SHUT_WR)
        assert recv_all(held) == b""
    a.proc.p.wait(5 * SLOW)
    e.proc.wait_log("agent 'home' disconnected")
    wait_for(lambda: not tcp_listening("127.0.0.1", port), 5, what="tcp listener closed")
    wait_for(lambda: not udp_bound("127.0.0.1", uport), 5, what="udp socket closed")
    with pytest.raises(ConnectionRefusedError):
        connect("127.0.0.1", port)
    if sig == signal.SIGKILL:
        try:  # the connection open across the disconnect is ended
            assert held.recv(1) == b""
        except ConnectionResetError:
            pass
    held.close()
    wait_streams_zero(e)
    assert e.status()["sessions"] == []

    a.start(e.url())
    a.proc.wait_log("route tcp/%d accepted by the edge" % port, count=2)
    a.proc.wait_log("route udp/%d accepted by the edge" % uport, count=2)
    assert echo_roundtrip("127.0.0.1", port, b"after") == b"after"
    assert udp_ask("127.0.0.1", uport, b"after") == b"echo:after"
    assert e.proc.alive()


# ---- port conflicts -------------------------------------------------------------------------


def test_port_in_use_is_refused_with_reason_and_nothing_else_breaks(env, closing):
    origin = TcpService(echo_handler)
    closing(origin)
    echo = UdpEcho()
    closing(echo)
    both = ("127.0.0.1", "::1")
    busy_tcp, busy_udp, busy6, good = (free_ports(1, hosts=both) for _ in range(4))
    rng = free_ports(4, hosts=both, kinds=(socket.SOCK_STREAM,))
    blockers = []
    # another process's sockets: TCP, UDP, one port of a range, and a port
    # busy on ::1 only (free on 127.0.0.1)
    for host, port, kind in (("127.0.0.1", busy_tcp, socket.SOCK_STREAM),
                             ("127.0.0.1", busy_udp, socket.SOCK_DGRAM),
                             ("127.0.0.1", rng + 2, socket.SOCK_STREAM),
                             ("::1", busy6, socket.SOCK_STREAM)):
        b = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind)
        b.bind((host, port))
        if kind == socket.SOCK_STREAM:
            b.listen(1)
        blockers.append(b)
        closing(b)
    streams = [tcp(busy_tcp, origin.port), udp(busy_udp, echo.port), tcp(good, origin.port),
               dict(listen="tcp/%d-%d" % (rng, rng + 3), to="127.0.0.1:%d" % origin.port),
               tcp(busy6, origin.port), udp(good, echo.port)]
    routes = [{"host": "www.home.test", "to": "http://127.0.0.1:9"}]
    a, e = stream_pair(env, streams, routes=routes, hosts=["*.home.test"], listen=both,
                       wait=False)
    in_use = "refused by the edge: cannot open %s/%d on %s: Address already in use"
    a.proc.wait_log("route tcp/%d " % busy_tcp + in_use % ("tcp", busy_tcp,
                                                         "127.0.0.1:%d" % busy_tcp))
    a.proc.wait_log("route udp/%d " % busy_udp + in_use % ("udp", busy_udp,
                                                         "127.0.0.1:%d" % busy_udp))
    a.proc.wait_log("route tcp/%d-%d " % (rng, rng + 3) + in_use % ("tcp", rng + 2,
                                                                   "127.0.0.1:%d" % (rng + 2)))
    a.proc.wait_log("route tcp/%d " % busy6 + in_use % ("tcp", busy6, "[::1]:%d" % busy6))
    a.proc.wait_log("route tcp/%d accepted by the edge" % good)
    a.proc.wait_log("route udp/%d accepted by the edge" % good)
    a.proc.wait_log("route www.home.test accepted by the edge")
    # a refused route leaves none of its sockets open: the other ports of
    # the range, and 127.0.0.1 for the port busy on ::1
    for p in (rng, rng + 1, rng + 3, busy6):
        assert not tcp_listening("127.0.0.1", p), p
    for p in (rng, rng + 1, rng + 3):
        assert not tcp_listening("::1", p), p
    assert e.agent_routes("home") == sorted([("http", "www.home.test"),
                                             ("tcp", "%d-%d" % (good, good)),
                                             ("udp", "%d-%d" % (good, good))])
    # the other process still has its ports; the accepted streams work
    assert [b.getsockname()[1] for b in blockers] == [busy_tcp, busy_udp, rng + 2, busy6]
    for host in both:
        assert echo_roundtrip(host, good, b"still fine") == b"still fine"
        assert udp_ask(host, good, b"still fine") == b"echo:still fine"
    assert e.proc.alive() and a.proc.alive()
    assert a.log().count("refused by the edge") == 4


# ---- PROXY protocol -------------------------------------------------------------------------


def proxy_echo_handler(sock, info):
    """Read one PROXY header, keep it, then echo until EOF."""
    info["header"] = read_proxy_header(sock)
    echo_handler(sock, info)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_proxy_protocol_tcp_from_ipv4_and_ipv6(env, closing, version):
    origin = TcpService(proxy_echo_handler)
    closing(origin)
    port = free_ports(1, hosts=("127.0.0.1", "::1"))
    a, e = stream_pair(env, [tcp(port, origin.port, proxy_protocol=version)],
                       listen=("127.0.0.1", "::1"))
    make = proxy_v1 if version == "v1" else proxy_v2
    for i, host in enumerate(("127.0.0.1", "::1", "127.0.0.1")):
        s = connect(host, port)
        try:
            src = s.getsockname()[:2]
            # data sent before the stream is even accepted comes after the header
            s.sendall(b"payload %d" % i)
            s.shutdown(socket.SHUT_WR)
            assert recv_all(s) == b"payload %d" % i
        finally:
            s.close()
        wait_for(lambda: len(origin.conns) == i + 1 and "bytes" in origin.conns[i], 5,
                 what="origin done with connection %d" % i)
        assert origin.conns[i]["header"] == make(src, (host, port)), (host, src)
    wait_streams_zero(e)


class ProxyV2UdpService:
    """A UDP service on 127.0.0.1 behind PROXY v2: keeps every datagram it
    gets (.seen) and answers "reply:" + what came after the header + ":" and
    the header's address family (1 IPv4, 2 IPv6)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.sock.settimeout(0.1)
        while True:
            try:
                d, peer = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.seen.append(d)
            fam = d[13] >> 4
            n = 16 + struct.unpack(">H", d[14:16])[0] if d[:12] == b"\r\n\r\n\x00\r\nQUIT\n" \
                else 0
            self.sock.sendto(b"reply:" + d[n:] + b":%d" % fam, peer)

    def close(self):
        self.sock.close()


def test_proxy_protocol_v2_udp_header_on_every_datagram(env, closing):
    svc = ProxyV2UdpService()
    closing(svc)
    port = free_ports(1, hosts=("127.0.0.1", "::1"))
    a, e = stream_pair(env, [udp(port, svc.port, proxy_protocol="v2")],
                       listen=("127.0.0.1", "::1"))
    for host, fam in (("127.0.0.1", 1), ("::1", 2)):
        c = socket.socket(socket.AF_INET6 if fam == 2 else socket.AF_INET, socket.SOCK_DGRAM)
        c.bind((host, 0))
        try:
            src = c.getsockname()[:2]
            hdr = proxy_v2(src, (host, port), dgram=True)
            for k in range(3):
                msg = b"datagram %d" % k
                assert udp_ask(host, port, msg, sock=c) == b"reply:" + msg + b":%d" % fam
                assert svc.seen[-1] == hdr + msg
        finally:
            c.close()
    # every datagram carried its own complete header
    assert all(d.startswith(b"\r\n\r\n\x00\r\nQUIT\n\x21") for d in svc.seen)


def test_udp_on_wildcard_answers_from_the_address_asked(env, closing):
    # listen.streams 0.0.0.0 / ::, a client asking 127.0.0.2: the answer must
    # come from 127.0.0.2 (a connected client socket drops any other source)
    # and the service's PROXY v2 header names 127.0.0.2 as the destination.
    svc = ProxyV2UdpService()
    closing(svc)
    port = free_ports(1, hosts=("0.0.0.0", "::"))
    a, e = stream_pair(env, [udp(port, svc.port, proxy_protocol="v2")],
                       listen=("0.0.0.0", "::"))
    for host in ("127.0.0.2", "127.0.0.1", "::1"):
        c = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            c.connect((host, port))
            src = c.getsockname()[:2]
            msg = b"to " + host.encode()
            fam = b"2" if ":" in host else b"1"
            assert udp_ask(host, port, msg, sock=c) == b"reply:" + msg + b":" + fam, host
            assert svc.seen[-1] == proxy_v2(src, (host, port), dgram=True) + msg
        finally:
            c.close()
    assert e.status()["udp_dropped"] == 0


def read_request(sock):
    """Bytes up to the end of a request head (and whatever came with it), or
    None when the client closed before it."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            return None
        buf += d
    return buf


def proxy_http_handler(sock, info):
    """An HTTP origin behind PROXY: answers one request with the header it got."""
    info["header"] = read_proxy_header(sock)
    buf = read_request(sock)
    if buf is None:
        return
    info["request"] = buf
    body = info["header"]
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                 % len(body) + body)


def test_proxy_protocol_v1_on_an_http_route(env, closing):
    origin = TcpService(proxy_http_handler)
    closing(origin)
    routes = [{"host": "pp.home.test", "to": "http://127.0.0.1:%d" % origin.port,
               "proxy_protocol": "v1"}]
    a, e = stream_pair(env, [], routes=routes, hosts=["*.home.test"])
    for i in range(2):  # two client connections: each its own header
        s = connect("127.0.0.1", e.http_port)
        try:
            src = s.getsockname()
            s.sendall(b"GET /x HTTP/1.1\r\nHost: pp.home.test\r\nConnection: close\r\n\r\n")
            resp = recv_all(s)
        finally:
            s.close()
        expected = proxy_v1(src, ("127.0.0.1", e.http_port))
        assert resp.startswith(b"HTTP/1.1 200"), resp[:200]
        assert resp.endswith(b"\r\n\r\n" + expected), resp
        wait_for(lambda: len(origin.conns) == i + 1 and "request" in origin.conns[i], 5,
                 what="origin got request %d" % i)
        assert origin.conns[i]["header"] == expected
        assert origin.conns[i]["request"].startswith(b"GET /x HTTP/1.1\r\n")
    wait_streams_zero(e)


def test_http_on_the_ipv6_wildcard_takes_ipv4_clients_too(env, closing):
    """listen.http "[::]:PORT" serves IPv4 and IPv6 clients, and an IPv4
    client is passed on as IPv4 (PROXY TCP4 127.0.0.1), not ::ffff:127.0.0.1."""
    origin = TcpService(proxy_http_handler)
    closing(origin)
    routes = [{"host": "pp.home.test", "to": "http://127.0.0.1:%d" % origin.port,
               "proxy_protocol": "v1"}]
    a = Agent(env, "home", routes=routes)
    e = Edge(env, agents=[a.entry(hosts=["*.home.test"])])
    e.cfg["listen"]["http"] = "[::]:%d" % e.http_port
    e.write()
    e.start()
    a.start(e.url())
    a.proc.wait_log("route pp.home.test accepted by the edge")
    for i, host in enumerate(("127.0.0.1", "::1")):
        s = connect(host, e.http_port)
        try:
            src = s.getsockname()[:2]
            s.sendall(b"GET / HTTP/1.1\r\nHost: pp.home.test\r\nConnection: close\r\n\r\n")
            resp = recv_all(s)
        finally:
            s.close()
        expected = proxy_v1(src, (host, e.http_port))
        assert expected.startswith(b"PROXY TCP4 127.0.0.1 " if i == 0 else b"PROXY TCP6 ::1 ")
        assert resp.startswith(b"HTTP/1.1 200"), resp[:200]
        assert resp.endswith(b"\r\n\r\n" + expected), resp
    wait_streams_zero(e)


# ---- idle timeouts ------------------------------------------------------------------------------


def test_idle_udp_flow_is_closed(env, closing):
    echo = UdpEcho()
    closing(echo)
    port = free_ports(1)
    a, e = stream_pair(env, [udp(port, echo.port, idle_timeout="2s")])
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind(("127.0.0.1", 0))
    closing(c)
    assert udp_ask("127.0.0.1", port, b"one", sock=c) == b"echo:one"
    assert streams_open(e) == 1
    t0 = time.monotonic()
    wait_streams_zero(e, 6)
    idle = time.monotonic() - t0
    print("udp flow closed after %.1f s idle" % idle)
    assert idle >= 1.5, "closed after %.1f s, before its idle timeout" % idle
    assert idle < 4 * SLOW, "closed after %.1f s, long after its idle timeout" % idle
    # the same client comes back: a new flow, a new socket at the agent
    assert udp_ask("127.0.0.1", port, b"two", sock=c) == b"echo:two"
    assert streams_open(e) == 1
    assert len({p for p, _ in echo.seen}) == 2


def test_idle_tcp_connection_is_closed(env, closing):
    origin = TcpService(echo_handler)
    closing(origin)
    port = free_ports(1)
    a, e = stream_pair(env, [tcp(port, origin.port, idle_timeout="1s")])
    s = connect("127.0.0.1", port, timeout=10)
    closing(s)
    # traffic keeps it alive past the timeout
    for i in range(6):
        s.sendall(b"tick %d" % i)
        assert s.recv(100) == b"tick %d" % i
        time.sleep(0.3)
    t0 = time.monotonic()
    assert recv_all(s) == b""  # closed by the idle timeout
    idle = time.monotonic() - t0
    assert 0.5 <= idle < 5, idle
    wait_streams_zero(e)
    wait_for(lambda: origin.open == 0, 5, what="origin connection closed")


def test_idle_timeout_with_bytes_the_client_never_took_is_a_reset(env, closing):
    """A client that stops reading a download: the idle timeout ends the
    stream, and the bytes the edge still held for it are lost.  The client
    gets a reset, not a clean end that would hide the truncation (the edge
    closed quietly, its queue dropped)."""
    total = 8 << 20

    def sender(sock, info):
        try:
            sock.sendall(b"x" * total)
        except OSError:
            pass
        time.sleep(10)

    origin = TcpService(sender)
    closing(origin)
    port = free_ports(1)
    a, e = stream_pair(env, [tcp(port, origin.port, idle_timeout="1s")])
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    closing(s)
    s.settimeout(10 * SLOW)
    s.connect(("127.0.0.1", port))
    a.proc.wait_log("idle for 1000 ms; closing", timeout=10 * SLOW)
    got = 0
    with pytest.raises(ConnectionResetError):
        while True:
            d = s.recv(1 << 20)
            assert d, "a clean end after %d of %d bytes" % (got, total)
            got += len(d)
    assert got < total


# ---- resets, failures and running out of descriptors ----------------------------------------


def reset_close(sock):
    """Close with a TCP RST (SO_LINGER 0), as a crashed or aborting peer does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_service_reset_reaches_the_client_as_a_reset(env, closing):
    """A service that aborts mid-answer: the client gets what was sent, then a
    reset, as over a direct connection, and never a clean end (truncation
    would go unnoticed)."""
    def aborting(sock, info):
        sock.sendall(b"partial answer")
        time.sleep(0.2)
        reset_close(sock)
    origin = TcpService(aborting)
    closing(origin)
    port = free_ports(1)
    a, e = stream_pair(env, [tcp(port, origin.port)])
    s = connect("127.0.0.1", port)
    closing(s)
    got = b""
    with pytest.raises(ConnectionResetError):
        while True:
            d = s.recv(65536)
            assert d, "a clean end after %r instead of a reset" % got
            got += d
    assert got == b"partial answer"
    wait_streams_zero(e)


def test_client_reset_reaches_the_service_as_a_reset(env, closing):
    def reader(sock, info):
        info["first"] = sock.recv(100)
        try:
            info["then"] = sock.recv(100)
        except ConnectionResetError:
            info["then"] = "reset"
    origin = TcpService(reader)
    closing(origin)
    port = free_ports(1)
    a, e = stream_pair(env, [tcp(port, origin.port)])
    s = connect("127.0.0.1", port)
    s.sendall(b"hello")
    wait_for(lambda: origin.conns and origin.conns[0].get("first") == b"hello", 5,
             what="the service got the first bytes")
    reset_close(s)
    wait_for(lambda: "then" in origin.conns[0], 5, what="the service saw the end")
    assert origin.conns[0]["then"] == "reset"
    wait_streams_zero(e)


def test_udp_flow_survives_the_service_restarting(env, closing):
    """An ICMP port unreachable (the service was down a moment) ends the
    flow at the agent; the client's next datagrams open a new one."""
    echo = UdpEcho()
    port = free_ports(1)
    a, e = stream_pair(env, [udp(port, echo.port)])
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind(("127.0.0.1", 0))
    closing(c)
    assert udp_ask("127.0.0.1", port, b"one", sock=c) == b"echo:one"
    service_port = echo.port
    echo.close()
    mark = a.proc.mark()
    c.sendto(b"into the void", ("127.0.0.1", port))
    a.proc.wait_log("the service's socket failed", since=mark)
    echo = UdpEcho(port=service_port)
    closing(echo)
    assert udp_ask("127.0.0.1", port, b"two", sock=c) == b"echo:two"
    assert udp_ask("127.0.0.1", port, b"three", sock=c) == b"echo:three"


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def test_soft_limit_of_open_files_is_raised_at_start(env, closing):
    """Started from a shell's low soft limit, edge and agent raise it towards
    the hard limit (at most 65536) and then carry more connections than the
    old limit allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if want < 1024:
        pytest.skip("RLIMIT_NOFILE hard limit %d too low" % hard)
    origin = TcpService(echo_handler, backlog=512)
    closing(origin)
    port = free_ports(1)
    a, e = stream_setup(env, [tcp(port, origin.port)])
    low = ["prlimit", "--nofile=128:%d" % hard]  # execs the program: same pid
    e.start(wrap=low)
    a.start(e.url(), wrap=low)
    a.proc.wait_log("route tcp/%d accepted by the edge" % port)
    for proc in (a.proc, e.proc):
        assert resource.prlimit(proc.pid, resource.RLIMIT_NOFILE) == (want, hard)
    # 200 clients at once: 200 descriptors at the edge (the clients) and at
    # the agent (its connections to the service), past the 128 they started with.
    socks = []
    for i in range(200):
        c = connect("127.0.0.1", port)
        closing(c)
        socks.append(c)
    for i, c in enumerate(socks):
        c.sendall(b"n%d" % i)
    for i, c in enumerate(socks):
        want, got = b"n%d" % i, b""
        while len(got) < len(want):
            d = c.recv(len(want) - len(got))
            assert d, "connection %d closed early" % i
            got += d
        assert got == want
    assert a.proc.alive() and e.proc.alive()


def test_agent_out_of_descriptors_refuses_and_recovers(env, closing):
    """New flows and connections fail at once (socket() or connect()) when the
    agent has no descriptor left: refused cleanly, nothing else breaks, and
    all works again once descriptors are back."""
    echo = UdpEcho()
    closing(echo)
    origin = TcpService(echo_handler)
    closing(origin)
    uport, tport = free_ports(1), free_ports(1)
    a, e = stream_pair(env, [udp(uport, echo.port), tcp(tport, origin.port)])
    pid = a.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds(pid), hard))
    try:
        mark = e.proc.mark()
        clients = []
        for i in range(6):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            closing(c)
            c.sendto(b"flow %d" % i, ("127.0.0.1", uport))
            clients.append(c)
        e.proc.wait_log("local service: Too many open files", since=mark)
        s = connect("127.0.0.1", tport)
        closing(s)
        s.sendall(b"x")
        try:
            assert s.recv(10) == b""
        except ConnectionResetError:
            pass
        assert a.proc.alive()
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert udp_ask("127.0.0.1", uport, b"back") == b"echo:back"
    assert echo_roundtrip("127.0.0.1", tport, b"again") == b"again"
    assert a.proc.alive() and e.proc.alive()


def test_public_clients_leave_descriptors_for_agents(env, closing):
    """A flood of public connections cannot take the edge's last descriptors:
    with a limit of 600 the edge keeps 150 (a quarter, at most 512), refuses
    clients past that with a warning, and a reconnecting agent still gets in
    and has its stream port reopened."""
    origin = TcpService(echo_handler)
    closing(origin)
    port = free_ports(1)
    a, e = stream_setup(env, [tcp(port, origin.port)])
    # The edge alone runs with soft = hard = 600 (prlimit execs it: same pid).
    e.start(wrap=["prlimit", "--nofile=600:600"])
    a.start(e.url())
    a.proc.wait_log("route tcp/%d accepted by the edge" % port)
    # 600 idle HTTP clients (no request head: they wait for header_timeout),
    # from 4 addresses (the edge takes 256 connections per address).
    flood = []
    for i in range(600):
        c = socket.socket()
        closing(c)
        c.setblocking(False)
        c.bind(("127.0.2.%d" % (1 + i % 4), 0))
        c.connect_ex(("127.0.0.1", e.http_port))
        flood.append(c)
    e.proc.wait_log("descriptors in use, the rest kept for agents", timeout=10)
    assert e.proc.alive()
    # The agent goes and comes back: a tunnel connection and a new listener.
    a.proc.stop()
    mark = e.proc.mark()
    a.start(e.url(), wait=False)
    e.proc.wait_log("agent 'home': route tcp/%d-%d accepted" % (port, port), timeout=10,
                    since=mark)
    assert "Too many open files" not in e.log()
    for c in flood:
        c.close()
    assert echo_roundtrip("127.0.0.1", port, b"after") == b"after"
    assert e.proc.alive()


def test_edge_out_of_descriptors_pauses_accepting(env, closing):
    """accept() failing with EMFILE leaves the connection in the backlog: the
    edge stops polling that listener for a while instead of spinning, warns
    once a second at most, and serves the waiting clients once it can."""
    origin = TcpService(echo_handler)
    closing(origin)
    port = free_ports(1)
    a, e = stream_pair(env, [tcp(port, origin.port)])
    pid = e.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    mark = e.proc.mark()
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds(pid), hard))
    waiting = []
    try:
        for _ in range(4):
            waiting.append(connect("127.0.0.1", port))
            closing(waiting[-1])
        e.proc.wait_log("accept: Too many open files", since=mark)
        cpu0 = proc_cpu_seconds(pid)
        time.sleep(1.5)
        busy = proc_cpu_seconds(pid) - cpu0
        assert busy < 0.5, "the edge spun: %.2f s of CPU in 1.5 s" % busy
        assert e.log()[mark:].count("accept: Too many open files") <= 3
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    for s in waiting:
        s.sendall(b"waited")
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"waited"


# ---- max_connections ----------------------------------------------------------------------------


def http_ok_handler(sock, info):
    """An HTTP origin: answers one request with 200 "ok"."""
    if read_request(sock) is None:
        return
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


def http_get(port, host):
    s = connect("127.0.0.1", port)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host.encode())
        return recv_all(s)
    finally:
        s.close()


def refused(s):
    """The edge ends connection s without a byte of the service's."""
    try:
        s.sendall(b"anyone?")
        return s.recv(10) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_max_connections_refuses_past_the_limit(env, closing):
    """agent.yaml max_connections bounds the connections the agent holds to
    its services (and so its memory: each may queue a window toward a slow
    service).  Past it, a TCP stream's client is closed and an HTTP request
    gets 503, the agent logs why, and the access log says 503; once one
    ends, the next gets through."""
    echo, web = TcpService(echo_handler), TcpService(http_ok_handler)
    closing(echo)
    closing(web)
    port = free_ports(1)
    routes = [{"host": "app.home.test", "to": "http://127.0.0.1:%d" % web.port}]
    a, e = stream_setup(env, [tcp(port, echo.port)], routes=routes, hosts=["*.home.test"])
    a.cfg["max_connections"] = 2
    e.start()
    a.start(e.url())
    a.proc.wait_log("route app.home.test accepted by the edge")
    held = []
    for i in range(2):
        s = connect("127.0.0.1", port)
        closing(s)
        s.sendall(b"held %d" % i)
        assert s.recv(64) == b"held %d" % i
        held.append(s)
    third = connect("127.0.0.1", port)
    closing(third)
    assert refused(third)
    resp = http_get(e.http_port, "app.home.test")
    assert resp.startswith(b"HTTP/1.1 503 "), resp[:200]
    a.proc.wait_log("2 connections open, the most allowed (max_connections): new ones refused")
    assert len(echo.conns) == 2 and len(web.conns) == 0
    log = os.path.join(env.dir, "access.log")
    wait_for(lambda: re.search(r'tcp/%d "TCP -" 503 ' % port, open(log).read()), 5,
             what=lambda: "the refused stream's line in\n" + open(log).read())
    held.pop().close()
    wait_for(lambda: streams_open(e) == 1, 5, what=lambda: "one stream left: %r" % e.status())
    resp = http_get(e.http_port, "app.home.test")
    assert resp.startswith(b"HTTP/1.1 200 ") and resp.endswith(b"\r\n\r\nok"), resp[:200]
    wait_for(lambda: streams_open(e) == 1, 5, what=lambda: "one stream left: %r" % e.status())
    assert echo_roundtrip("127.0.0.1", port, b"after") == b"after"


# ---- TLS services: close_notify after a half-close ----------------------------------------------


class HalfClosingTlsService:
    """A TLS service that answers an Upgrade with 101, sends close_notify and
    FIN at once (TLS half-close), then reads the client's bytes slowly from
    a small receive buffer, and records how they ended: "close_notify" (a
    clean TLS end) or "eof" (FIN without close_notify: a truncation attack,
    for TLS)."""

    def __init__(self, pki):
        crt, key, _ = pki.issue_pair("half", ["DNS:localhost"])
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(crt, key)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.ends = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.lsock.close()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, sock):
        sock.settimeout(20 * SLOW)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.ctx.wrap_bio(inc, out, server_side=True)

        def flush():
            d = out.read()
            if d:
                sock.sendall(d)

        def feed(n=65536):
            d = sock.recv(n)
            if d:
                inc.write(d)
            else:
                inc.write_eof()

        def call(fn, *a, n=65536):
            while True:
                try:
                    return fn(*a)
                except ssl.SSLWantReadError:
                    flush()
                    feed(n)

        got = 0
        try:
            call(obj.do_handshake)
            flush()
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += call(obj.read, 65536)
            got = len(buf.partition(b"\r\n\r\n")[2])
            obj.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                      b"Upgrade: slow\r\n\r\n")
            try:
                obj.unwrap()
            except ssl.SSLWantReadError:
                pass
            flush()
            sock.shutdown(socket.SHUT_WR)
            while True:
                time.sleep(0.0005)
                try:
                    d = call(obj.read, 65536, n=1024)
                except ssl.SSLZeroReturnError:
                    self.ends.append(("close_notify", got))
                    return
                except ssl.SSLEOFError:
                    d = b""
                if not d:  # the socket's EOF, no close_notify before it
                    self.ends.append(("eof", got))
                    return
                got += len(d)
        except Exception as e:  # noqa: BLE001 (the test shows it)
            self.ends.append(("error %r" % e, got))
        finally:
            sock.close()


def test_tls_service_gets_close_notify_after_its_half_close(env, closing, request):
    """An https:// service half-closes (close_notify, FIN) after a 101 and
    goes on reading, slowly; the client sends its bytes and shuts its write
    side.  The agent writes them all, then close_notify, then FIN, even when
    the service's socket is full at the moment the stream ends in both
    directions (tiny send buffers in a network namespace of the test's own
    make that the rule): it used to close the connection there, and the
    service saw FIN without close_notify, a truncation for TLS."""
    if rerun_in_own_netns(request):
        return
    with open("/proc/sys/net/ipv4/tcp_wmem", "w") as f:
        f.write("4096 4096 4096")
    svc = HalfClosingTlsService(env.pki)
    closing(svc)
    routes = [{"host": "up.home.test", "to": "https://localhost:%d" % svc.port,
               "tls_verify": False}]
    a, e = stream_pair(env, [], routes=routes, hosts=["*.home.test"])
    n, size = 8, 256 << 10
    for i in range(n):
        s = upgrade(e.http_port, "up.home.test", "slow", closing)
        s.sendall(os.urandom(size))
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b""
        wait_for(lambda: len(svc.ends) == i + 1, 20, what=lambda: "service done: %r" % svc.ends)
    assert svc.ends == [("close_notify", size)] * n
