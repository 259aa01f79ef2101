"""conn_release(c, RELEASE_MS) end to end: the deadline of a finished
stream's https:// service connection.

When a stream to an https:// service has finished both ways, agent/upstream.c
(us_finish) hands the connection to conn_release(c, RELEASE_MS = 10000): it
closes itself once close_notify and FIN are out, and when they cannot leave
(the service stopped reading and its socket is full) RELEASE_MS later
(common/conn.c conn_release_late(): conn_fail("released, shutdown not sent
in time")), and logs "conn: ADDR took too little to let the shutdown out
within 10000 ms: closed without its TLS close_notify" (its owner is gone, so nobody else would).  The test
also watches what the service's side shows: the agent's socket leaving
CLOSE_WAIT (/proc/net/tcp of the test's own network namespace) RELEASE_MS
after the stream finished, and the service's bytes ending without
close_notify.

Only an HTTP route reaches an https:// service (`streams:` targets are plain
TCP), so the stream is an Upgrade: the service answers 101 and half-closes at
once (close_notify, FIN), which finishes the agent's side of the stream.  The
client sends its bytes; the service reads none of them, and once they all sit
in its socket it shrinks its receive buffer below what they take, so its
socket is full.  Then the client shuts its write side: the stream is
finished both ways and the agent's close_notify has to wait.  That it waits
in the agent (SSL_shutdown() wants to write: conn_release() with its
deadline) rather than in the kernel's send buffer is made certain in a
network namespace of the test's own: TCP send buffers of 1 byte (one segment
queued at a time), a route on which the service advertises a 40-byte window
(so the agent's segments carry 40 bytes) and acknowledges every segment at
once (so the client's bytes go in quickly), and a TLS 1.2 CBC suite whose
close_notify record takes 85 bytes: its first 40 bytes take the one segment,
which the full socket drops, and the rest waits for an acknowledgement that
never comes.
"""
import fcntl
import os
import queue
import socket
import ssl
import struct
import subprocess
import termios
import threading
import time

from relais import (SLOW, Agent, Edge, TcpService, connect, http_answer, recv_all,
                    rerun_in_own_netns, upgrade, wait_for)

RELEASE_S = 10.0  # agent/upstream.c RELEASE_MS
TCP_CLOSE_WAIT = 8  # /proc/net/tcp "st": the service's FIN seen, the agent not closed yet
FILL = 32 << 10  # bytes the client sends after the 101, none of them read
SEGMENT = 40  # the window the service advertises, so the agent's segment size
SERVICE_ADDR, AGENT_ADDR = "127.0.0.2", "127.0.0.3"  # routes of their own, see netns_setup()
CBC_SUITE = "ECDHE-ECDSA-AES256-SHA384"
CLOSE_NOTIFY_LEN = 85  # 5 header + 16 IV + 64 (alert, HMAC-SHA384, padding)
CBC_OVERHEAD = 16 + 48 + 1  # a record's least: IV, HMAC-SHA384, one byte of padding


def netns_setup():
    """Only in the test's own network namespace: TCP send buffers of one
    byte, and the agent reaching SERVICE_ADDR from AGENT_ADDR, a route on
    which the service advertises at most SEGMENT bytes and acknowledges each
    segment at once."""
    with open("/proc/sys/net/ipv4/tcp_wmem", "w") as f:
        f.write("1 1 1")
    for cmd in (["ip", "route", "add", "table", "local", "local", SERVICE_ADDR + "/32", "dev", "lo",
                 "src", AGENT_ADDR, "scope", "host"],
                ["ip", "route", "add", "table", "local", "local", AGENT_ADDR + "/32", "dev", "lo",
                 "scope", "host", "window", str(SEGMENT), "quickack", "1"]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, (cmd, r.stderr)


def http_status(port, host, timeout=5):
    """GET / on the edge for host: (status code, body)."""
    s = connect("127.0.0.1", port, timeout=timeout)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host.encode())
        resp = recv_all(s)
    finally:
        s.close()
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), resp[:300]
    return int(head.split()[1]), body


def tcp_socket(laddr, lport, raddr, rport):
    """(state, tx_queue) of a TCP socket in /proc/net/tcp (this namespace), or None."""
    def hexaddr(a, p):
        return "%s:%04X" % ("".join("%02X" % int(x) for x in reversed(a.split("."))), p)

    local, remote = hexaddr(laddr, lport), hexaddr(raddr, rport)
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            p = line.split()
            if p[1] == local and p[2] == remote:
                return int(p[3], 16), int(p[4].split(":")[0], 16)
    return None


class Held:
    """One connection of the service, driven by the test thread through
    memory BIOs: it reads when, and as much as, the test says."""

    def __init__(self, sock, ctx):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=True)
        self.agent_port = sock.getpeername()[1]
        self.got = 0  # plaintext after the request head
        self.end = None  # "close_notify", "eof" (FIN without it) or "reset"

    def flush(self):
        d = self.out.read()
        if d:
            self.sock.sendall(d)

    def call(self, fn, *a):
        """fn of the TLS object, reading (blocking) until it has what it needs."""
        while True:
            try:
                return fn(*a)
            except ssl.SSLWantReadError:
                self.flush()
                d = self.sock.recv(4096)
                if not d:
                    raise EOFError("the agent closed during the setup")
                self.inc.write(d)

    def queued(self):
        """Bytes from the agent waiting in the socket, unread."""
        return struct.unpack("i", fcntl.ioctl(self.sock, termios.FIONREAD, b"\0" * 4))[0]

    def set_rcvbuf(self, n):
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, n)

    def drain(self, timeout):
        """Read everything until the end (close_notify, EOF or reset)."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while not self.end and time.monotonic() < deadline:
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                self.end = "reset"
                break
            if d:
                self.inc.write(d)
            else:
                self.inc.write_eof()
            while not self.end:
                try:
                    r = self.obj.read(65536)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:  # a whole close_notify
                    self.end = "close_notify"
                    break
                except ssl.SSLEOFError:
                    self.end = "eof"
                    break
                self.got += len(r)
                if not r:  # what a memory BIO's EOF without close_notify reads as
                    self.end = "eof" if self.inc.eof else "empty read before EOF"
        return self.end

    def close(self):
        self.sock.close()


class ReleaseTlsService:
    """An https:// service (TLS 1.2, CBC_SUITE) on SERVICE_ADDR.  While .hold
    is set, each connection answers an Upgrade with 101, half-closes
    (close_notify, FIN) and is handed to the test (.held) without reading
    anything more; otherwise it answers a request with 200 "fresh"."""

    def __init__(self, pki):
        crt, key, _ = pki.issue_pair("release", ["DNS:localhost", "IP:" + SERVICE_ADDR])
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(crt, key)
        self.ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.set_ciphers(CBC_SUITE)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.lsock.bind((SERVICE_ADDR, 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.hold = True
        self.held = queue.Queue()
        self.errors = []
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.lsock.close()
        for s in self.socks:
            s.close()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.socks.append(c)
            target = self._hold if self.hold else self._fresh
            threading.Thread(target=target, args=(c,), daemon=True).start()

    def _hold(self, sock):
        sock.settimeout(10 * SLOW)
        h = Held(sock, self.ctx)
        try:
            h.call(h.obj.do_handshake)
            h.flush()
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += h.call(h.obj.read, 65536)
            assert not buf.partition(b"\r\n\r\n")[2], buf  # nothing before the 101
            assert h.obj.cipher()[0] == CBC_SUITE, h.obj.cipher()
            h.obj.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                        b"Upgrade: hold\r\n\r\n")
            try:
                h.obj.unwrap()  # close_notify: the service's side of the stream is done
            except ssl.SSLWantReadError:
                pass
            h.flush()
            sock.shutdown(socket.SHUT_WR)
            self.held.put(h)
        except Exception as e:  # noqa: BLE001 (the test shows it)
            self.errors.append(repr(e))

    def _fresh(self, sock):
        sock.settimeout(10 * SLOW)
        try:
            with self.ctx.wrap_socket(sock, server_side=True) as t:
                buf = b""
                while b"\r\n\r\n" not in buf:
                    d = t.recv(4096)
                    if not d:
                        return
                    buf += d
                t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
                          b"fresh")
        except Exception as e:  # noqa: BLE001
            self.errors.append(repr(e))


def test_released_tls_connection_closes_at_the_deadline(env, closing, request):
    """A stream to an https:// service finished both ways while the agent's
    close_notify could not leave (the service stopped reading, its socket is
    full): the agent keeps the connection for RELEASE_MS (10 s), not less
    and not for ever, then closes it (the service gets every byte of the
    client's and EOF, without close_notify), and serves new requests on both
    routes afterwards."""
    if rerun_in_own_netns(request):
        return
    netns_setup()
    svc = ReleaseTlsService(env.pki)
    closing(svc)
    web = TcpService(http_answer(b"ok"))
    closing(web)
    routes = [{"host": "up.home.test", "to": "https://%s:%d" % (SERVICE_ADDR, svc.port),
               "tls_verify": False},
              {"host": "probe.home.test", "to": "http://127.0.0.1:%d" % web.port}]
    # max_connections: 1, so a request on the other route gets 503 exactly
    # while the agent still holds the stream.
    a = Agent(env, "home", routes=routes, extra={"max_connections": 1})
    e = Edge(env, agents=[a.entry(hosts=["*.home.test"])])
    e.start()
    a.start(e.url())
    for r in routes:
        a.proc.wait_log("route %s accepted by the edge" % r["host"])
    assert http_status(e.http_port, "probe.home.test") == (200, b"ok")

    def why():
        return "service errors %r\n--- agent log ---\n%s" % (svc.errors, a.log()[-3000:])

    s = upgrade(e.http_port, "up.home.test", "hold", closing)
    h = svc.held.get(timeout=5 * SLOW)
    closing(h)

    def agent_socket():
        return tcp_socket(AGENT_ADDR, h.agent_port, SERVICE_ADDR, svc.port)

    # The client's bytes, all of them into the service's socket; the
    # service reads none.
    s.sendall(os.urandom(FILL))
    least = FILL + (FILL + 16383) // 16384 * (5 + CBC_OVERHEAD)  # as TLS records
    seen = []

    def all_in():
        # Nothing left in the agent's socket, nothing more coming for 0.5 s
        # (it writes as long as it has bytes: the window stays open).
        seen.append((agent_socket(), h.queued()))
        last = seen[-11:]
        return len(last) == 11 and len(set(last)) == 1 and \
            last[0][0] == (TCP_CLOSE_WAIT, 0) and last[0][1] >= least

    wait_for(all_in, 20, interval=0.05,
             what=lambda: "the client's bytes in the service's socket (%d at least): %r; %s"
             % (least, seen[-3:], why()))
    assert http_status(e.http_port, "probe.home.test")[0] == 503  # the stream holds the agent
    # Its socket full: a receive buffer far below what it holds already.
    h.set_rcvbuf(1)

    s.shutdown(socket.SHUT_WR)
    t_fin = time.monotonic()
    assert recv_all(s) == b"", "the service sent nothing after its 101"
    s.close()
    # The stream is finished both ways: the agent lets it go at once...
    wait_for(lambda: http_status(e.http_port, "probe.home.test")[0] == 200, 5,
             what=lambda: "the agent done with the stream; " + why())
    t_free = time.monotonic()
    # ...but not its connection: close_notify began (one segment of it in the
    # socket, refused by the service), the rest waits in TLS, FIN too.
    state = agent_socket()
    assert state and state[0] == TCP_CLOSE_WAIT and 0 < state[1] < CLOSE_NOTIFY_LEN, (state, why())

    # The service reads nothing: only the deadline can end it.
    wait_for(lambda: (agent_socket() or (0,))[0] != TCP_CLOSE_WAIT, RELEASE_S + 5, interval=0.02,
             what=lambda: "the agent closing its connection to the service: %r; %s"
             % (agent_socket(), why()))
    t_closed = time.monotonic()
    print("closed %.3f s after the client's FIN, %.3f s after the stream ended (%r then)" % (
        t_closed - t_fin, t_closed - t_free, state))
    # The stream ended after the client's FIN (and before the probe saw it
    # gone): the deadline fired RELEASE_S after that, not before.
    assert t_closed - t_fin >= RELEASE_S - 0.25, (t_closed - t_fin, why())
    assert t_closed - t_free <= RELEASE_S + 2.0 * SLOW, (t_closed - t_free, why())
    a.proc.wait_log("conn: %s:%d took too little to let the shutdown out within %d ms: closed "
                    "without its TLS close_notify"
                    % (SERVICE_ADDR, svc.port, int(RELEASE_S * 1000)), timeout=5 * SLOW)

    # Closed, not shut down cleanly: every byte of the client's, then EOF
    # without close_notify (the part in the socket arrives when the kernel
    # sends it again, the rest never left the agent).
    h.set_rcvbuf(1 << 20)
    t = time.monotonic()
    assert h.drain(40 * SLOW) == "eof", (h.end, h.got, agent_socket(), why())
    print("the rest read in %.3f s" % (time.monotonic() - t))
    assert h.got == FILL, (h.got, FILL)
    h.close()

    # And the agent goes on serving, on both routes.
    svc.hold = False
    wait_for(lambda: http_status(e.http_port, "up.home.test") == (200, b"fresh"), 5,
             what=lambda: "a fresh request on the https:// route; " + why())
    assert http_status(e.http_port, "probe.home.test") == (200, b"ok")
    assert not svc.errors, svc.errors
    assert a.proc.alive() and e.proc.alive()
