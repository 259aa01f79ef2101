"""End-to-end harness: real relais-edge / relais-agent processes on loopback.

Every test gets a fresh temporary directory, throwaway keys and a throwaway
CA made with openssl.  Nothing here talks to anything but 127.0.0.0/8.
"""
import asyncio
import base64
import json
import os
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.request

BUILD = os.environ.get("RELAIS_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
EDGE_BIN = os.path.join(BUILD, "relais-edge")
AGENT_BIN = os.path.join(BUILD, "relais-agent")
ASAN = os.environ.get("RELAIS_ASAN") == "1"
SLOW = 3.0 if ASAN else 1.0


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


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

    def start(self):
        self.proc = Proc([EDGE_BIN, "-d", "-c", self.path], os.path.join(self.env.dir, "edge.log"))
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

    def start(self, edge_url, wait=True):
        self.cfg["edge"] = edge_url
        with open(self.path, "w") as f:
            f.write(yaml_dump(self.cfg))
        logpath = os.path.join(self.env.dir, self.name + ".log")
        since = 0
        if os.path.exists(logpath):  # a restart appends to the same log
            with open(logpath, "r", errors="replace") as f:
                since = len(f.read())
        self.proc = Proc([AGENT_BIN, "-d", "-c", self.path], logpath)
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
DATA, PING, PONG, GOAWAY = 10, 15, 16, 17
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


class TcpRelay:
    """A TCP relay on 127.0.0.1 towards target_port that can stop forwarding
    (both directions) while keeping every socket open: a dead network path."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
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
            r, _, _ = select.select(watch, [], [], 0.05)
            for s in r:
                if s is self.lsock:
                    c, _ = self.lsock.accept()
                    try:
                        u = socket.create_connection(self.target, timeout=5)
                    except OSError:
                        c.close()
                        continue
                    self.peer[c], self.peer[u] = u, c
                    self.accepted += 1
                    continue
                if s not in self.peer:
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
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
