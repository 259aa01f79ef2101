"""What reaches the logs and the admin endpoint from outside: the process
log's escaping, the access log file (mode, symbolic links, FIFOs, a full
disk) and the admin endpoint's limits (connections, Host, methods)."""
import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import time

from relais import (EDGE_BIN, SLOW, WELCOME, Agent, Edge, HandKey, Proc, RawTunnel, parse_frames,
                    wait_for)

LINE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z 127\.0\.0\.1 nothing\.test '
                  r'"GET /[a-z]+" 404 in=\d+ out=\d+ ms=\d+$')


class TunedProc(Proc):
    """Proc started with a preexec_fn (limits, signal dispositions)."""

    def __init__(self, argv, log, preexec):
        self.argv = argv
        self.logpath = log
        self.logf = open(log, "ab")
        self.p = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                  preexec_fn=preexec, restore_signals=False)


def start_tuned(env, e, preexec):
    e.proc = TunedProc([EDGE_BIN, "-d", "-c", e.path], os.path.join(env.dir, "edge.log"), preexec)
    env.procs.append(e.proc)
    wait_for(e.ready, 5, what="edge admin endpoint")
    return e


def exchange(port, raw, timeout=5):
    """Send raw bytes to 127.0.0.1:port and read until the peer closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
    try:
        s.sendall(raw)
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                return out
            out += d
    finally:
        s.close()


def get(e, path):
    """A request for a host nobody serves: 404 and one access log line."""
    r = exchange(e.http_port, b"GET %s HTTP/1.1\r\nHost: nothing.test\r\nConnection: close\r\n\r\n"
                 % path.encode())
    assert r.startswith(b"HTTP/1.1 404 "), r[:100]


def read(path):
    with open(path, "rb") as f:
        return f.read()


# ---- the process log ----------------------------------------------------------------------

def test_agent_log_escapes_the_status_line_of_a_refused_handshake(env):
    """The agent logs the status line of a handshake the edge refused: a bare
    LF in it must not start a forged line, nor ESC, a C1 CSI, invalid UTF-8
    or a bidi override reach the terminal of whoever reads the log."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(env.pki.cert, env.pki.key)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    lsock.settimeout(5 * SLOW)
    evil = b"HTTP/1.1 403 x\nFORGED relais-agent[1] ERROR: \x1b[2J\xc2\x9b\xff\xe2\x80\xae!"
    a = Agent(env, "home", routes=[{"host": "www.home.test", "to": "http://127.0.0.1:9"}])
    try:
        a.start("wss://localhost:%d/relais" % lsock.getsockname()[1], wait=False)
        c, _ = lsock.accept()
        c.settimeout(5 * SLOW)
        t = ctx.wrap_socket(c, server_side=True)
        head = b""
        while b"\r\n\r\n" not in head:
            d = t.recv(4096)
            assert d
            head += d
        t.sendall(evil + b"\r\n\r\n")
        a.proc.wait_log("WebSocket handshake refused")
        t.close()
    finally:
        lsock.close()
    log = read(a.proc.logpath)
    assert (b"WebSocket handshake refused: HTTP/1.1 403 x\\x0aFORGED relais-agent[1] ERROR: "
            b"\\x1b[2J\\xc2\\x9b\\xff\\xe2\\x80\\xae!") in log, log[-2000:]
    assert not re.search(rb"(^|\n)FORGED", log)
    assert not re.search(rb"[\x00-\x09\x0b-\x1f\x7f]", log)
    log.decode("utf-8")  # strictly valid
