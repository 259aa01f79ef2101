"""End-to-end harness: real relais-edge / relais-agent processes on loopback.

Every test gets a fresh temporary directory, throwaway keys and a throwaway
CA made with openssl.  Nothing here talks to anything but 127.0.0.0/8.
"""
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import queue
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

BUILD = os.environ.get("RELAIS_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
EDGE_BIN = os.path.join(BUILD, "relais-edge")
AGENT_BIN = os.path.join(BUILD, "relais-agent")
ASAN = os.environ.get("RELAIS_ASAN") == "1"
SLOW = 3.0 if ASAN else 1.0


def free_port(kind=socket.SOCK_STREAM):
    """A free port on 127.0.0.1, never one handed out before in this run, and
    below the ephemeral range: a port the kernel picked for bind(0) could be
    taken by some outgoing connection's source port before the test binds it."""
    return free_ports(1, kinds=(kind,))


def wait_for(cond, timeout=5.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout * SLOW
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s" % (what() if callable(what) else what))


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60 * SLOW, **kw)


def rerun_in_own_netns(request, mount=False):
    """Unless this is that run, run the calling test again in a network
    namespace of its own (a loopback and ephemeral port range of its own:
    nothing it changes there touches the machine's), and with mount=True in a
    mount namespace of its own too (files bind-mounted there, e.g. over
    /etc/resolv.conf, stay there); return True once it passed.  False in that
    run."""
    if os.environ.get("RELAIS_TEST_NETNS"):
        return False
    if (os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip") or
            run(["unshare", "--net", "true"]).returncode != 0):
        pytest.skip("needs root for a network namespace of its own (unshare --net)")
    path = str(request.node.fspath)
    ns = ["unshare", "--net"] + (["--mount"] if mount else [])
    r = run(ns + ["sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                  sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:warnings",
                  "%s::%s" % (os.path.basename(path), request.node.name)],
            cwd=os.path.dirname(path), env=dict(os.environ, RELAIS_TEST_NETNS="1"))
    assert r.returncode == 0, "in a network namespace of its own:\n" + r.stdout[-6000:] + r.stderr
    return True


@contextlib.contextmanager
def ephemeral_ports(lo, hi):
    """The (network namespace's) ephemeral port range set to lo..hi meanwhile."""
    path = "/proc/sys/net/ipv4/ip_local_port_range"
    with open(path) as f:
        saved = f.read()
    with open(path, "w") as f:
        f.write("%d %d" % (lo, hi))
    try:
        yield
    finally:
        with open(path, "w") as f:
            f.write(saved)


class PKI:
    """A throwaway CA and a server certificate for localhost / 127.0.0.1 / *.test."""

    def __init__(self, d):
        self.dir = d
        self.ca_key = os.path.join(d, "ca.key")
        self.ca = os.path.join(d, "ca.crt")
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2", "-subj",
             "/CN=relais test CA"], check=True)
        self.cert, self.key = self.issue("edge", ["DNS:localhost", "IP:127.0.0.1", "DNS:edge.test"])

    def issue(self, name, sans):
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        crt = os.path.join(self.dir, name + ".crt")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\n" % ",".join(sans))
        run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=%s" % name], check=True)
        run(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
             "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext], check=True)
        os.chmod(key, 0o600)
        return crt, key


class Proc:
    """A child process whose stderr goes to a log file we can search."""

    def __init__(self, argv, log):
        self.argv = argv
        self.logpath = log
        self.logf = open(log, "ab")
        self.p = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT)

    @property
    def pid(self):
        return self.p.pid

    def log(self):
        with open(self.logpath, "r", errors="replace") as f:
            return f.read()

    def mark(self):
        """Current length of the log: pass it as since= to look only at what follows."""
        return len(self.log())

    def wait_log(self, text, timeout=5.0, count=1, since=0):
        return wait_for(lambda: self.log()[since:].count(text) >= count, timeout,
                        what=lambda: "%r in %s\n--- log ---\n%s"
                        % (text, self.logpath, self.log()[-3000:]))

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        self.p.send_signal(sig)

    def stop(self, timeout=10):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.logf.close()
        return self.p.returncode

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.logf.close()


def yaml_dump(obj):
    """JSON is valid YAML for libyaml: flow mappings and quoted scalars."""
    return json.dumps(obj, indent=2) + "\n"


# ---- TLS clients (test_https.py, test_https_review.py) ------------------------------


def ca_ctx(pki):
    return ssl.create_default_context(cafile=pki.ca)


def blind_ctx():
    """Accepts any certificate: a handshake that still fails got none."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_connect(port, sni, ctx, timeout=5.0):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
    try:
        return ctx.wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


def handshake_error(port, sni, ctx=None):
    """The SSLError of a handshake that must fail (AssertionError if it succeeds)."""
    try:
        s = tls_connect(port, sni, ctx or blind_ctx())
    except ssl.SSLError as e:
        return e
    der = s.getpeercert(binary_form=True)
    s.close()
    raise AssertionError("handshake for SNI %r succeeded; the edge sent a certificate of %d "
                         "bytes" % (sni, len(der or b"")))


def closed_within(s, timeout):
    """True when the peer ends the connection (FIN or RST) before timeout;
    fails if it sends anything instead."""
    s.settimeout(timeout * SLOW)
    try:
        d = s.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    assert d == b"", "the edge answered %r" % d[:200]
    return True


def client_hello(sni):
    """The bytes of a real ClientHello for sni, made by Python's OpenSSL."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ssl.create_default_context().wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    data = out.read()
    assert data[0] == 0x16 and len(data) > 100, data[:16]
    return data


class Edge:
    def __init__(self, env, agents=None, http=True, extra=None, tunnel_port=None):
        self.env = env
        self.tunnel_port = tunnel_port or free_port()
        self.admin_port = free_port()
        self.http_port = free_port() if http else None
        cfg = {
            "tunnel": {"listen": "127.0.0.1:%d" % self.tunnel_port, "hostname": "localhost",
                       "path": "/relais", "cert": env.pki.cert, "key": env.pki.key},
            "admin": {"listen": "127.0.0.1:%d" % self.admin_port},
            "agents": agents or [],
            "access_log": os.path.join(env.dir, "access.log"),
        }
        if http:
            cfg["listen"] = {"http": "127.0.0.1:%d" % self.http_port}
        if extra:
            cfg.update(extra)
        self.cfg = cfg
        self.path = os.path.join(env.dir, "edge.yaml")
        self.write()
        self.proc = None

    def write(self):
        with open(self.path, "w") as f:
            f.write(yaml_dump(self.cfg))

    def start(self, wrap=()):
        """Start the edge (through the command wrap, e.g. prlimit, which
        must exec it) and wait for its admin endpoint."""
        self.proc = Proc(list(wrap) + [EDGE_BIN, "-d", "-c", self.path],
                         os.path.join(self.env.dir, "edge.log"))
        self.env.procs.append(self.proc)
        wait_for(self.ready, 5, what="edge admin endpoint")
        return self

    def ready(self):
        try:
            self.status()
            return True
        except OSError:
            return False

    def status(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/status" % self.admin_port, timeout=2) as r:
            return json.loads(r.read())

    def routes(self):
        out = []
        for s in self.status()["sessions"]:
            for r in s["routes"]:
                out.append((s["agent"], r["kind"], r["host"] or "%d-%d" % (r["port_lo"], r["port_hi"])))
        return sorted(out)

    def url(self):
        return "wss://localhost:%d/relais" % self.tunnel_port

    def stop(self):
        """SIGTERM the edge and wait; returns its exit status."""
        return self.proc.stop()

    def restart(self):
        """Stop, then start again on the same ports with the current config."""
        self.stop()
        return self.start()

    def reload(self):
        """Write self.cfg and send SIGHUP."""
        self.write()
        self.proc.signal(signal.SIGHUP)

    def agent_routes(self, agent):
        """Routes of one agent name in /status, as (kind, host-or-ports) sorted."""
        return sorted((k, h) for a, k, h in self.routes() if a == agent)

    def log(self):
        return self.proc.log()


class Agent:
    def __init__(self, env, name, routes=None, streams=None, extra=None, keyfile=None):
        self.env = env
        self.name = name
        self.keyfile = keyfile or os.path.join(env.dir, name + ".key")
        if not os.path.exists(self.keyfile):
            r = run([AGENT_BIN, "keygen", self.keyfile])
            assert r.returncode == 0, r.stderr
            self.pubkey = r.stdout.strip()
        else:
            self.pubkey = run([AGENT_BIN, "pubkey", self.keyfile]).stdout.strip()
        self.cfg = {"edge": None, "key": self.keyfile, "edge_ca": env.pki.ca,
                    "routes": routes or [], "streams": streams or []}
        if extra:
            self.cfg.update(extra)
        self.path = os.path.join(env.dir, name + ".yaml")
        self.proc = None

    def entry(self, hosts=None, ports=None, name=None):
        """This agent's entry for edge.yaml."""
        return {"name": name or self.name, "key": self.pubkey, "hosts": hosts or [],
                "ports": ports or []}

    def start(self, edge_url, wait=True, wrap=()):
        """Start the agent (through the command wrap, which must exec it);
        unless wait is False, wait until it is connected."""
        self.cfg["edge"] = edge_url
        with open(self.path, "w") as f:
            f.write(yaml_dump(self.cfg))
        logpath = os.path.join(self.env.dir, self.name + ".log")
        since = 0
        if os.path.exists(logpath):  # a restart appends to the same log
            with open(logpath, "r", errors="replace") as f:
                since = len(f.read())
        self.proc = Proc(list(wrap) + [AGENT_BIN, "-d", "-c", self.path], logpath)
        self.env.procs.append(self.proc)
        if wait:
            self.proc.wait_log("tunnel: connected to", 5, since=since)
        return self

    def log(self):
        return self.proc.log()


class Env:
    def __init__(self, d, pki):
        self.dir = d
        self.pki = pki
        self.procs = []
        _handed_now.clear()  # a new test: see free_ports()

    def check(self):
        """Stop every process; one that crashed or logged a sanitizer report
        fails the test that ran it."""
        self.close()
        for p in self.procs:
            log = p.log()
            assert "ERROR: AddressSanitizer" not in log, log[-4000:]
            assert "runtime error:" not in log, log[-4000:]
            assert p.p.returncode in (0, -9, -15, None), "%s exited %s\n%s" % (
                p.argv, p.p.returncode, log[-4000:])

    def close(self):
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception:
                p.kill()


def tls_client_context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    return ctx


# ---- the tunnel protocol by hand (proto/frame.h) ------------------------------

PROTO_VERSION = 1
HELLO, AUTH, WELCOME, REJECT, ROUTE, ROUTE_ANSWER = 1, 2, 3, 4, 5, 6
OPEN, ACCEPT, REFUSE = 7, 8, 9
DATA, WINDOW, FIN, RST, DATAGRAM, PING, PONG, GOAWAY = 10, 11, 12, 13, 14, 15, 16, 17
KIND_HTTP, KIND_TLS, KIND_TCP, KIND_UDP = 1, 2, 3, 4


def frame(ftype, payload=b"", stream=0, flags=0, length=None):
    """One frame: type u8, flags u8, stream u32, length u32 (big endian), payload."""
    n = len(payload) if length is None else length
    return struct.pack(">BBII", ftype, flags, stream, n) + payload


def parse_frames(msg):
    """Split one WebSocket message into [(type, stream, payload)]."""
    out = []
    while msg:
        t, _flags, stream, n = struct.unpack(">BBII", msg[:10])
        out.append((t, stream, msg[10:10 + n]))
        msg = msg[10 + n:]
    return out


def code_reason(payload):
    """(code, reason) of REJECT / ROUTE_ANSWER / GOAWAY payloads."""
    code, n = struct.unpack(">IB", payload[:5])
    return code, payload[5:5 + n].decode()


def auth_message(version, challenge, pubkey, name=b""):
    """What the agent signs: "relais-auth-v1" NUL, version, challenge, pubkey, name."""
    return b"relais-auth-v1\0" + struct.pack(">H", version) + challenge + pubkey + \
        bytes([len(name)]) + name


def route_frame(route_id, kind, host="", lo=0, hi=0, hsts=0, flags=0):
    """ROUTE: u8 kind, u16 port_lo, u16 port_hi, u32 hsts, str8 host."""
    h = host.encode()
    return frame(ROUTE, struct.pack(">BHHIB", kind, lo, hi, hsts, len(h)) + h, stream=route_id,
                 flags=flags)


class HandKey:
    """An Ed25519 agent key made in Python, written in relais's key file format."""

    def __init__(self, path):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        raw = serialization.Encoding.Raw
        self.priv = Ed25519PrivateKey.generate()
        seed = self.priv.private_bytes(raw, serialization.PrivateFormat.Raw,
                                       serialization.NoEncryption())
        self.pub = self.priv.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
        self.pubtext = "ed25519:" + base64.b64encode(self.pub).decode()
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("ed25519-secret:%s\n" % base64.b64encode(seed).decode())

    def entry(self, name, hosts=None, ports=None):
        return {"name": name, "key": self.pubtext, "hosts": hosts or [], "ports": ports or []}

    def auth(self, challenge, version=PROTO_VERSION, name=b"", sign_version=None):
        """The AUTH frame answering challenge."""
        msg = auth_message(version if sign_version is None else sign_version, challenge,
                           self.pub, name)
        sig = self.priv.sign(msg)
        return frame(AUTH, struct.pack(">H", version) + self.pub + sig + bytes([len(name)]) + name)


class RawTunnel:
    """A WebSocket client on the edge's tunnel endpoint, driven by hand.

    Uses python websockets (asyncio) on a private event loop so that tests can
    stay sequential: send(), recv(), wait_closed().
    """

    def __init__(self, edge, path="/relais", subprotocol="relais.v1", timeout=5.0):
        self.loop = asyncio.new_event_loop()
        self.timeout = timeout * SLOW
        import websockets
        import websockets.exceptions

        self.closed_exc = websockets.exceptions.ConnectionClosed
        ctx = tls_client_context(edge.env.pki.ca)
        uri = "wss://localhost:%d%s" % (edge.tunnel_port, path)
        async def connect():  # websockets 10 binds the loop when connect() is built
            return await websockets.connect(
                uri, ssl=ctx, subprotocols=[subprotocol] if subprotocol else None,
                max_size=None, ping_interval=None, open_timeout=self.timeout, close_timeout=1)

        try:
            self.ws = self._run(connect())
        except BaseException:
            self.loop.close()
            raise

    def _run(self, coro):
        return self.loop.run_until_complete(asyncio.wait_for(coro, self.timeout))

    def send(self, data):
        self._run(self.ws.send(data))

    def recv(self):
        """The next message (bytes); raises ConnectionClosed when the edge closed."""
        return self._run(self.ws.recv())

    def hello(self):
        """Read HELLO and return its 32-byte challenge."""
        (t, stream, payload), = parse_frames(self.recv())
        assert (t, stream, len(payload)) == (HELLO, 0, 34), (t, stream, payload)
        assert struct.unpack(">H", payload[:2])[0] == PROTO_VERSION
        return payload[2:]

    def wait_closed(self):
        """Read until the edge ends the connection; returns the frames received.
        Fails if the connection is still open after the timeout."""
        frames = []
        try:
            while True:
                frames += parse_frames(self.recv())
        except self.closed_exc:
            return frames
        except asyncio.TimeoutError:
            raise AssertionError("the edge did not close the connection; got %r" % frames)

    def close(self):
        try:
            self._run(self.ws.close())
        except Exception:
            pass
        self.loop.close()


class FakeEdge:
    """A scripted edge for testing the agent: TLS (the test CA's certificate)
    and the WebSocket handshake on 127.0.0.1, then raw frames by hand.
    accept() waits for the agent; send() writes one binary message; recv()
    returns the next message the agent sent (its frames are masked)."""

    def __init__(self, env):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(env.pki.cert, env.pki.key)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.port = self.lsock.getsockname()[1]
        self.sock = None
        self.buf = b""

    def url(self):
        return "wss://localhost:%d/relais" % self.port

    def accept(self, timeout=5):
        self.lsock.settimeout(timeout * SLOW)
        c, _ = self.lsock.accept()
        c.settimeout(timeout * SLOW)
        self.sock = self.ctx.wrap_socket(c, server_side=True)
        while b"\r\n\r\n" not in self.buf:
            d = self.sock.recv(4096)
            assert d, "the agent closed during the WebSocket handshake"
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        key = re.search(rb"Sec-WebSocket-Key: *(\S+)", head, re.I).group(1)
        acc = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                               .digest())
        self.sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc +
                          b"\r\nSec-WebSocket-Protocol: relais.v1\r\n\r\n")

    def send(self, payload):
        n = len(payload)
        if n < 126:
            h = struct.pack(">BB", 0x82, n)
        elif n < 65536:
            h = struct.pack(">BBH", 0x82, 126, n)
        else:
            h = struct.pack(">BBQ", 0x82, 127, n)
        self.sock.sendall(h + payload)

    def _need(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("the agent closed the connection")
            self.buf += d

    def recv(self):
        """The next data message (control frames skipped); EOFError once closed."""
        msg = b""
        while True:
            self._need(2)
            b0, b1 = self.buf[0], self.buf[1]
            n, off = b1 & 0x7f, 2
            if n == 126:
                self._need(4)
                n, off = struct.unpack(">H", self.buf[2:4])[0], 4
            elif n == 127:
                self._need(10)
                n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
            mask = b""
            if b1 & 0x80:
                self._need(off + 4)
                mask, off = self.buf[off:off + 4], off + 4
            self._need(off + n)
            p = self.buf[off:off + n]
            self.buf = self.buf[off + n:]
            if mask:
                p = bytes(c ^ mask[i % 4] for i, c in enumerate(p))
            if b0 & 0x0f == 8:
                raise EOFError("the agent sent a WebSocket close")
            if b0 & 0x0f in (1, 2, 0):
                msg += p
                if b0 & 0x80:
                    return msg

    def close(self):
        for s in (self.sock, self.lsock):
            if s is not None:
                s.close()


class TcpRelay:
    """A TCP relay on 127.0.0.1 towards target_port that can stop forwarding
    (both directions) while keeping every socket open: a dead network path.
    With tls (an ssl.SSLContext) it speaks TLS towards the target: plain in,
    encrypted out."""

    def __init__(self, target_port, tls=None):
        self.target = ("127.0.0.1", target_port)
        self.tls = tls
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.peer = {}
        self.forwarding = True
        self.accepted = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _drop(self, s):
        o = self.peer.pop(s, None)
        if o is not None:
            self.peer.pop(o, None)
            o.close()
        s.close()

    def _run(self):
        while not self.stopping:
            watch = [self.lsock] + (list(self.peer) if self.forwarding else [])
            # TLS may hold decrypted bytes select() does not see.
            ready = [s for s in watch if isinstance(s, ssl.SSLSocket) and s.pending()]
            r, _, _ = select.select(watch, [], [], 0 if ready else 0.05)
            for s in set(r) | set(ready):
                if s is self.lsock:
                    c, _ = self.lsock.accept()
                    try:
                        u = socket.create_connection(self.target, timeout=5)
                        if self.tls:
                            u = self.tls.wrap_socket(u, server_hostname="localhost")
                    except OSError:
                        c.close()
                        continue
                    self.peer[c], self.peer[u] = u, c
                    self.accepted += 1
                    continue
                if s not in self.peer:
                    continue
                tls = isinstance(s, ssl.SSLSocket)
                try:
                    if tls:  # readable may be only TLS records with no data (tickets)
                        s.settimeout(0)
                    data = s.recv(65536)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
                except OSError:
                    data = b""
                finally:
                    if tls:
                        s.settimeout(5)
                if not data:
                    self._drop(s)
                    continue
                try:
                    self.peer[s].sendall(data)
                except OSError:
                    self._drop(s)
        for s in list(self.peer):
            s.close()
        self.lsock.close()

    def pause(self):
        self.forwarding = False

    def resume(self):
        self.forwarding = True

    def close(self):
        self.stopping = True
        self.thread.join(5)


class DelayRelay:
    """A TCP relay on 127.0.0.1 towards target_port that holds every chunk
    for `delay` seconds in each direction: a long path (the kernel here has
    no netem).  It reads as fast as it can, so only the round trip of the
    protocol running through it is stretched."""

    def __init__(self, target_port, delay):
        self.target = ("127.0.0.1", target_port)
        self.delay = delay
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                return
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)
            self.socks += [c, u]
            for a, b in ((c, u), (u, c)):
                q = queue.Queue()
                threading.Thread(target=self._read, args=(a, q), daemon=True).start()
                threading.Thread(target=self._write, args=(b, q), daemon=True).start()

    def _read(self, s, q):
        while True:
            try:
                d = s.recv(1 << 18)
            except OSError:
                d = b""
            q.put((time.monotonic() + self.delay, d))
            if not d:
                return

    def _write(self, s, q):
        while True:
            due, d = q.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if not d:
                    s.shutdown(socket.SHUT_WR)
                    return
                s.sendall(d)
            except OSError:
                return

    def close(self):
        self.lsock.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


def listening_pids():
    """pids owning a listening TCP or UDP socket, from `ss -ltnup`."""
    out = run(["ss", "-ltnup"]).stdout
    return {int(p) for p in re.findall(r"pid=(\d+),", out)}, out


class Pebble:
    """Debian's pebble ACME test CA, with pebble-challtestsrv as its DNS server
    so that every name resolves to 127.0.0.1.  HTTP-01 validations go to
    http_port (the edge's listen.http); validity (seconds) sets the lifetime
    of the certificates it issues; authz_reuse is PEBBLE_AUTHZREUSE (0..100).
    Its own TLS certificate comes from env.pki, so env.pki.ca is the trust
    anchor for the directory URL (tls.acme.ca)."""

    def __init__(self, env, http_port, validity=None, authz_reuse=0):
        self.env = env
        self.http_port = http_port
        self.port = free_port()
        self.mgmt_port = free_port()
        self.dns_port = free_port(socket.SOCK_DGRAM)
        self.ca = env.pki.ca
        self.dir = os.path.join(env.dir, "pebble")
        os.makedirs(self.dir, exist_ok=True)
        cert, key = env.pki.cert, env.pki.key  # localhost / 127.0.0.1
        cfg = {"pebble": {"listenAddress": "127.0.0.1:%d" % self.port,
                          "managementListenAddress": "127.0.0.1:%d" % self.mgmt_port,
                          "certificate": cert, "privateKey": key,
                          "httpPort": http_port, "tlsPort": free_port(),
                          "ocspResponderURL": "", "externalAccountBindingRequired": False}}
        if validity is not None:
            cfg["pebble"]["certificateValidityPeriod"] = validity
        self.config = os.path.join(self.dir, "pebble.json")
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        self.dns = Proc(["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                         "-http01", "", "-https01", "", "-tlsalpn01", "",
                         "-dns01", "127.0.0.1:%d" % self.dns_port,
                         "-management", "127.0.0.1:%d" % free_port()],
                        os.path.join(self.dir, "challtestsrv.log"))
        env.procs.append(self.dns)
        self.proc = Proc(["/usr/bin/env", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0",
                          "PEBBLE_AUTHZREUSE=%d" % authz_reuse, "pebble", "-config", self.config,
                          "-dnsserver", "127.0.0.1:%d" % self.dns_port],
                         os.path.join(self.dir, "pebble.log"))
        env.procs.append(self.proc)
        self.ssl = ssl.create_default_context(cafile=self.ca)
        wait_for(self._ready, 10, what=lambda: "pebble directory\n" + self.proc.log()[-2000:])

    def _get(self, url):
        with urllib.request.urlopen(url, timeout=5, context=self.ssl) as r:
            return r.read()

    def _ready(self):
        try:
            return b"newOrder" in self._get(self.directory())
        except OSError:
            return False

    def directory(self):
        return "https://127.0.0.1:%d/dir" % self.port

    def root(self):
        """PEM of the root that signs pebble's issuing intermediate."""
        return self._get("https://127.0.0.1:%d/roots/0" % self.mgmt_port).decode()

    def log(self):
        return self.proc.log()


# ---- HTTPS at the edge (tests/e2e/test_https.py) -------------------------------


def install_pair(cert_dir, name, crt_src, key_src):
    """Install a certificate pair into cert_dir as NAME.crt / NAME.key the way
    docs/https.md asks: copy each file to a hidden temporary name in the same
    directory, then rename into place, the key first, then the certificate."""
    paths = []
    for src, ext, mode in ((key_src, "key", 0o600), (crt_src, "crt", 0o644)):
        tmp = os.path.join(cert_dir, ".%s.%s.tmp" % (name, ext))
        with open(src, "rb") as f:
            data = f.read()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        paths.append((tmp, os.path.join(cert_dir, "%s.%s" % (name, ext))))
    for tmp, dst in paths:  # key first, then the certificate
        os.rename(tmp, dst)
    return paths[1][1], paths[0][1]


def _issue_pair(pki, cn, sans, kind="ec", serial=None, days=2):
    """A new key and a certificate from pki's CA with exactly these SANs
    ("DNS:a.test", "IP:127.0.0.1"), written under pki.dir with unique names.
    kind: "ec" (P-256) or "rsa" (2048).  Returns (crt, key, serial)."""
    if serial is None:
        serial = int.from_bytes(os.urandom(8), "big") | (1 << 62)
    base = os.path.join(pki.dir, "%s-%x" % (re.sub(r"[^A-Za-z0-9.-]", "_", cn), serial))
    key, csr, crt, ext = base + ".key", base + ".csr", base + ".crt", base + ".ext"
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n" % ",".join(sans))
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec" else \
        ["-newkey", "rsa:2048"]
    run(["openssl", "req"] + newkey + ["-nodes", "-keyout", key, "-out", csr,
                                       "-subj", "/CN=%s" % cn], check=True)
    run(["openssl", "x509", "-req", "-in", csr, "-CA", pki.ca, "-CAkey", pki.ca_key,
         "-set_serial", str(serial), "-out", crt, "-days", str(days), "-extfile", ext],
        check=True)
    os.chmod(key, 0o600)
    return crt, key, serial


PKI.issue_pair = _issue_pair


def pem_to_der(path):
    """The DER bytes of the first certificate in a PEM file."""
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class HttpsEdge(Edge):
    """An Edge with listen.http, listen.https and tls.cert_dir (env.dir/certs
    unless given).  shared_tunnel=True puts tunnel.listen on listen.https, so
    agents reach the edge on the HTTPS port by SNI (tunnel.hostname, "localhost",
    whose certificate is env.pki.cert)."""

    def __init__(self, env, agents=None, shared_tunnel=False, cert_dir=None, extra=None):
        self.https_port = free_port()
        self.cert_dir = cert_dir or os.path.join(env.dir, "certs")
        os.makedirs(self.cert_dir, exist_ok=True)
        Edge.__init__(self, env, agents=agents, http=True, extra=extra,
                      tunnel_port=self.https_port if shared_tunnel else None)
        self.cfg["listen"]["https"] = "127.0.0.1:%d" % self.https_port
        self.cfg.setdefault("tls", {})["cert_dir"] = self.cert_dir
        self.write()

    def install(self, name, sans=None, kind="ec", cn=None):
        """Issue a certificate for sans (default DNS:name; name may be
        "_wildcard.DOMAIN") and install it as cert_dir/NAME.crt/.key.
        Returns (crt, key, serial) of the source files."""
        if sans is None:
            host = "*." + name[len("_wildcard."):] if name.startswith("_wildcard.") else name
            sans = ["DNS:" + host]
        crt, key, serial = self.env.pki.issue_pair(cn or name, sans, kind=kind)
        install_pair(self.cert_dir, name, crt, key)
        return crt, key, serial


def tls_origin_block():
    """The 64 KiB block TlsOrigin's /bytes/N repeats."""
    return hashlib.sha256(b"relais").digest() * 2048


def tls_origin_sha256(n):
    """sha256 of TlsOrigin's /bytes/N answer."""
    h, block = hashlib.sha256(), tls_origin_block()
    while n > 0:
        h.update(block[:n])
        n -= min(n, len(block))
    return h.hexdigest()


class TlsOrigin:
    """A local TLS service for passthrough routes: each connection gets one
    HTTP/1.1 answer with Connection: close: GET /bytes/N gives N bytes
    (tls_origin_sha256(N)), anything else a JSON body {"origin": name, "sni":
    ..., "path": ..., "conn": n, "length": ..., "sha256": ...} describing the
    request (and its Content-Length body).  Its certificate (self.crt) comes from
    pki and is not one the edge knows."""

    def __init__(self, pki, name="tls-origin", sans=("DNS:vault.test",)):
        self.name = name
        self.crt, self.key, self.serial = pki.issue_pair(name, list(sans))
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(self.crt, self.key)
        self.ctx.sni_callback = self._sni
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = 0
        self.handshakes = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _sni(self, sslobj, name, ctx):
        sslobj.relais_sni = name

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                cid = self.connections
            threading.Thread(target=self._serve, args=(c, cid), daemon=True).start()

    def _serve(self, c, cid):
        c.settimeout(10)
        try:
            s = self.ctx.wrap_socket(c, server_side=True)
        except (OSError, ssl.SSLError):
            c.close()
            return
        try:
            with self.lock:
                self.handshakes += 1
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    return
                buf += d
            head, _, rest = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            line = lines[0].split(" ")
            path = line[1] if len(line) > 1 else ""
            length = 0
            for h in lines[1:]:
                k, _, v = h.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v)
            digest = hashlib.sha256(rest[:length])
            got = len(rest[:length])
            while got < length:  # a request body: hash it
                d = s.recv(min(65536, length - got))
                if not d:
                    return
                digest.update(d)
                got += len(d)
            if path.startswith("/bytes/"):  # GET /bytes/N: N bytes of tls_origin_bytes(N)
                n = int(path[len("/bytes/"):])
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                          b"Content-Length: %d\r\nConnection: close\r\n\r\n" % n)
                block = tls_origin_block()
                while n > 0:
                    s.sendall(block[:n])
                    n -= min(n, len(block))
            else:
                body = json.dumps({"origin": self.name, "sni": getattr(s, "relais_sni", None),
                                   "path": path, "conn": cid, "length": length,
                                   "sha256": digest.hexdigest()}).encode()
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) +
                          body)
            try:
                s.unwrap()
            except (OSError, ssl.SSLError, ValueError):
                pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            s.close()

    def close(self):
        self.stopping = True
        self.lsock.close()


# ---- TCP/UDP streams (tests/e2e/test_streams.py, bench) ------------------------


def free_ports(n=1, hosts=("127.0.0.1",), kinds=(socket.SOCK_STREAM, socket.SOCK_DGRAM)):
    """The first of n consecutive ports, below the ephemeral range, that are
    free for every kind (TCP, UDP) on every host ("127.0.0.1", "::1")."""
    import random

    # Never a port handed out earlier in this test: it may not be bound yet.
    # Ports of earlier tests are avoided while that is easy; late in a run
    # they leave no 100 consecutive ports, and then a port free now will do.
    for avoid in (_handed_out, _handed_now):
        for _ in range(200):
            base = random.randrange(20000, 32000 - n)
            if any(p in avoid for p in range(base, base + n)):
                continue
            held = []
            try:
                for port in range(base, base + n):
                    for host in hosts:
                        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
                        for kind in kinds:
                            s = socket.socket(fam, kind)
                            held.append(s)
                            if fam == socket.AF_INET6:
                                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                            s.bind((host, port))
                _handed_out.update(range(base, base + n))
                _handed_now.update(range(base, base + n))
                return base
            except OSError:
                continue
            finally:
                for s in held:
                    s.close()
    raise AssertionError("no %d free consecutive ports" % n)


_handed_out = set()  # every port free_ports() gave in this run
_handed_now = set()  # those given since the current test's Env was made


def tcp(port, to_port, **kw):
    """agent.yaml streams entry: tcp/port to 127.0.0.1:to_port."""
    return dict(listen="tcp/%d" % port, to="127.0.0.1:%d" % to_port, **kw)


def udp(port, to_port, **kw):
    """agent.yaml streams entry: udp/port to 127.0.0.1:to_port."""
    return dict(listen="udp/%d" % port, to="127.0.0.1:%d" % to_port, **kw)


def streams_open(edge):
    return edge.status()["streams"]


def wait_streams_zero(edge, timeout=5):
    wait_for(lambda: streams_open(edge) == 0, timeout,
             what=lambda: "edge streams back to 0: %r" % edge.status())


def connect(host, port, timeout=5):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout * SLOW)
    s.connect((host, port))
    return s


def upgrade(port, host, proto, closing, path="/", src=None, fields=""):
    """A client on the edge's HTTP port (127.0.0.1), from address src if
    given, asking host for an Upgrade to proto at path (with the extra
    header lines fields): its socket, once the 101 head has come."""
    if src is None:
        s = connect("127.0.0.1", port, timeout=20)
    else:
        s = socket.create_connection(("127.0.0.1", port), timeout=20 * SLOW,
                                     source_address=(src, 0))
    closing(s)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: %s\r\n%s\r\n"
              % (path.encode(), host.encode(), proto.encode(), fields.encode()))
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(4096)
        assert d, head
        head += d
    assert head.startswith(b"HTTP/1.1 101 "), head
    return s


def http_answer(body):
    """A TcpService handler answering one HTTP request with 200 and body."""
    def handler(sock, info):
        head = b""
        while b"\r\n\r\n" not in head:
            d = sock.recv(4096)
            if not d:
                return
            head += d
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (len(body), body))
    return handler


def echo_handler(sock, info):
    """A TcpService handler: echo everything until EOF, then close."""
    n = 0
    while True:
        d = sock.recv(65536)
        if not d:
            break
        sock.sendall(d)
        n += len(d)
    info["bytes"] = n


def echo_roundtrip(host, port, data=b"ping"):
    """Send data through host:port, half-close, and return what came back."""
    s = connect(host, port)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return recv_all(s)
    finally:
        s.close()


def stream_setup(env, streams, ports=None, listen=("127.0.0.1",), routes=None, hosts=None,
                 name="home"):
    """stream_pair()'s agent and edge, configured but not started."""
    a = Agent(env, name, routes=routes, streams=streams)
    if ports is None:
        ports = [s["listen"] for s in streams]
    e = Edge(env, agents=[a.entry(hosts=hosts, ports=ports)])
    e.cfg["listen"]["streams"] = list(listen)
    e.write()
    return a, e


def stream_pair(env, streams, ports=None, listen=("127.0.0.1",), routes=None, hosts=None,
                name="home", wait=True):
    """Agent `name` with these streams (and HTTP routes), connected to a fresh
    edge whose listen.streams is `listen` and which allows `ports` (default:
    each stream's listen) and `hosts`.  Waits until every stream and route
    was accepted unless wait is False.  Returns (agent, edge)."""
    a, e = stream_setup(env, streams, ports, listen, routes, hosts, name)
    e.start()
    a.start(e.url())
    if wait:
        for s in streams:
            a.proc.wait_log("route %s accepted by the edge" % s["listen"])
        for r in routes or []:
            a.proc.wait_log("route %s accepted by the edge" % r["host"])
    return a, e


class KilledProc(Proc):
    """A helper process (iperf3, socat) that stop() ends with SIGKILL:
    their exit status on SIGTERM says nothing about relais."""

    def stop(self, timeout=10):
        self.kill()
        return self.p.returncode


def tcp_listening(host, port):
    """Whether something accepts TCP connections on host:port."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def udp_bound(host, port):
    """Whether a UDP socket is bound on host:port (we cannot bind it)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((host, port))
        return False
    except OSError:
        return True
    finally:
        s.close()


class Iperf3Server:
    """`iperf3 -s` on host:port (TCP and UDP), the "home" service."""

    def __init__(self, env, port=None, host="127.0.0.1", name="iperf3"):
        self.port = port or free_ports(1)
        self.host = host
        self.proc = KilledProc(["iperf3", "-s", "-B", host, "-p", str(self.port), "--forceflush"],
                               os.path.join(env.dir, name + ".log"))
        env.procs.append(self.proc)
        self.proc.wait_log("Server listening on %d" % self.port, 5)


def iperf3_client(port, *args, host="127.0.0.1", seconds=2):
    """Run `iperf3 -c host -p port -t seconds -J args...`; its JSON report.
    Fails with iperf3's own error text when the run failed."""
    r = subprocess.run(["iperf3", "-c", host, "-p", str(port), "-t", str(seconds), "-J",
                        "--connect-timeout", "3000"] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=(seconds + 20) * SLOW)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        raise AssertionError("iperf3 %s: no JSON report (exit %d)\n%s\n%s"
                             % (args, r.returncode, r.stdout[-2000:], r.stderr[-2000:]))
    assert r.returncode == 0 and "error" not in out, \
        "iperf3 %s failed: %s" % (args, out.get("error", r.stderr[-2000:]))
    return out


class UdpEcho:
    """A UDP request/response service on host:port: answers each datagram
    with prefix + the datagram, to whoever sent it.  .seen lists (peer, data)."""

    def __init__(self, host="127.0.0.1", port=0, prefix=b"echo:"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.prefix = prefix
        self.seen = []
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.1)
        while not self.stopping:
            try:
                data, peer = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.seen.append((peer, data))
            try:
                self.sock.sendto(self.prefix + data, peer)
            except OSError:
                pass

    def close(self):
        self.stopping = True
        self.thread.join(2)
        self.sock.close()


def udp_ask(host, port, data, timeout=1.0, tries=5, sock=None):
    """Send one datagram to host:port and return the reply (retrying: UDP may
    lose the first datagram of a flow while the agent sets it up)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = sock or socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(timeout * SLOW)
    try:
        for _ in range(tries):
            s.sendto(data, (host, port))
            try:
                return s.recvfrom(65536)[0]
            except socket.timeout:
                continue
        raise AssertionError("no UDP answer from %s:%d to %r" % (host, port, data[:40]))
    finally:
        if sock is None:
            s.close()


def proxy_v1(src, dst):
    """The PROXY protocol v1 line for src -> dst ((ip, port) pairs)."""
    fam = "TCP6" if ":" in src[0] else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src[0], dst[0], src[1], dst[1])).encode()


def proxy_v2(src, dst, dgram=False):
    """The PROXY protocol v2 header (PROXY command) for src -> dst."""
    six = ":" in src[0]
    fam = socket.AF_INET6 if six else socket.AF_INET
    addrs = socket.inet_pton(fam, src[0]) + socket.inet_pton(fam, dst[0]) + \
        struct.pack(">HH", src[1], dst[1])
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, (0x20 if six else 0x10) | (2 if dgram else 1)])
            + struct.pack(">H", len(addrs)) + addrs)


def read_proxy_header(sock):
    """Read one PROXY v1 line or v2 header from a TCP socket, byte by byte
    as far as needed (nothing after it).  Returns the raw bytes."""
    def exactly(n):
        b = b""
        while len(b) < n:
            d = sock.recv(n - len(b))
            if not d:
                raise EOFError("EOF inside a PROXY header: %r" % b)
            b += d
        return b
    head = exactly(5)
    if head == b"PROXY":
        while not head.endswith(b"\r\n"):
            head += exactly(1)
            if len(head) > 107:
                raise ValueError("PROXY v1 line too long: %r" % head)
        return head
    head += exactly(11)
    return head + exactly(struct.unpack(">H", head[14:16])[0])


class TcpService:
    """A threaded TCP service on host:port (port 0: any) calling
    handler(sock, info) per connection, info a dict it may fill in; every
    info is kept in .conns in accept order.  .open counts live connections."""

    def __init__(self, handler, host="127.0.0.1", port=0, backlog=1024):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.lsock = socket.socket(fam, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.lsock.listen(backlog)
        self.port = self.lsock.getsockname()[1]
        self.handler = handler
        self.lock = threading.Lock()
        self.conns = []
        self.open = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                c, peer = self.lsock.accept()
            except OSError:
                return
            info = {"peer": peer}
            with self.lock:
                self.conns.append(info)
                self.open += 1
            threading.Thread(target=self._serve, args=(c, info), daemon=True).start()

    def _serve(self, c, info):
        c.settimeout(20 * SLOW)
        try:
            self.handler(c, info)
        except (OSError, EOFError, ValueError) as e:
            info["error"] = repr(e)
        finally:
            c.close()
            with self.lock:
                self.open -= 1

    def close(self):
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()


def recv_all(sock):
    """Read until EOF."""
    out = []
    while True:
        d = sock.recv(1 << 20)
        if not d:
            return b"".join(out)
        out.append(d)


def proc_cpu_seconds(pid):
    """utime + stime of a process, in seconds (from /proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- agents made by hand -------------------------------------------------------------------


def authed(e, key, closing):
    """A hand-made session of key's agent (HandKey) on edge e, past WELCOME."""
    t = RawTunnel(e)
    closing(t)
    t.send(key.auth(t.hello()))
    assert parse_frames(t.recv())[0][0] == WELCOME
    return t


def edge_frame(t, types):
    """The next frame of one of these types from the edge on RawTunnel t
    (others skipped; frames after it in the same message are kept for the
    next call)."""
    if not hasattr(t, "pending"):
        t.pending = []
    while True:
        while t.pending:
            f = t.pending.pop(0)
            if f[0] in types:
                return f
        t.pending = parse_frames(t.recv())


def scripted_agent_on_port(env, closing, port, kind=KIND_UDP, extra=None):
    """A real edge (with extra edge.yaml keys), and an agent made by hand
    (RawTunnel) holding udp/port (tcp/port with kind KIND_TCP).  Returns
    (edge, tunnel)."""
    key = HandKey(os.path.join(env.dir, "hand.key"))
    proto = "udp" if kind == KIND_UDP else "tcp"
    e = Edge(env, agents=[key.entry("hand", ports=["%s/%d" % (proto, port)])], extra=extra)
    e.cfg["listen"]["streams"] = ["127.0.0.1"]
    e.write()
    e.start()
    t = authed(e, key, closing)
    t.send(route_frame(1, kind, lo=port, hi=port))
    assert edge_frame(t, (ROUTE_ANSWER,))[2][:4] == b"\0\0\0\0"
    return e, t
