#!/usr/bin/python3
"""A test origin ("local service") for the relais end-to-end tests.

Run as its own process (Origin below starts it): it listens on three
127.0.0.1 ports and prints them as one JSON line on stdout, then serves until
stdin closes or it gets SIGTERM.

  http    HTTP/1.1 with keep-alive, one thread per connection.  Every response
          carries "X-Conn: <n>", the origin's number for the connection.
    GET|HEAD /bytes/N?seed=S   N deterministic bytes (body_chunks), Content-Length
    GET|HEAD /chunked/N?seed=S the same bytes, Transfer-Encoding: chunked
    POST|PUT /sha256           reads the body (Content-Length or chunked) and
                               answers {"sha256", "length", "headers", "seen",
                               "continue", "trailers"} as JSON
    GET /headers               {"headers": [[name, value]...], "method", "target"}
    GET /close?n=N             HTTP/1.0 style: N bytes, no Content-Length,
                               delimited by closing the connection
    GET /slow?ms=N             answers after N milliseconds
    GET /bytes/N?close=1       the same, then "Connection: close" and close
    GET /bytes/N?hangup=1      the same, then closes without saying so
    GET /dribble?n=N           N bytes; head and body sent a few bytes at a time
    GET /truncate?n=N&send=M   announces N bytes, sends M < N, closes
    GET /status?code=C         a response with status C (204 and 304 without body)
    GET /bad, /garbage, /drop  a bad Content-Length, a non-HTTP answer, no answer
    POST /refuse               401 at once, the request body unread, then closes
                               (the connection closes)
    GET /stats                 {"connections", "requests", "open"}
    GET /surplus?extra=X&ms=N  "Content-Length: 2", "ok", then X more bytes (at once,
                               or N milliseconds later): a server that breaks framing
    HEAD /headbody?ms=N        a head announcing 5 bytes, then after N milliseconds
                               the body a HEAD response must not have
    GET /early?n=N&pad=P       N "103 Early Hints" heads (each with P bytes of
                               X-Pad), then "200 OK" and "ok"
    GET /stall?n=N&send=M&ms=T announces N bytes, sends M, waits T ms, sends the rest
    GET /switch                "101 Switching Protocols" whatever was asked, with the
                               request's Upgrade (h2c if none), then echoes raw bytes
                               until the connection closes
    GET /.well-known/acme-challenge/T  "origin token T": the service answering HTTP-01
                               for itself
    "Expect: 100-continue" gets "HTTP/1.1 100 Continue" before the body is read.
  ws      a WebSocket echo server (python websockets), any path
  silent  accepts connections and never reads or answers
"""
import asyncio
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

BLOCK = 1 << 20
_blocks = {}
_digests = {}


def _block(seed, n=BLOCK):
    """The first n <= 1 MiB bytes of the seed's block (SHAKE-256 output: a
    shorter digest is a prefix of a longer one).  Full blocks are cached, a few."""
    if n < BLOCK:
        return hashlib.shake_256(("relais-origin:%s" % seed).encode()).digest(n)
    b = _blocks.get(seed)
    if b is None:
        if len(_blocks) >= 8:
            _blocks.pop(next(iter(_blocks)))
        b = hashlib.shake_256(("relais-origin:%s" % seed).encode()).digest(BLOCK)
        _blocks[seed] = b
    return b


def body_chunks(n, seed="0"):
    """The body of /bytes/n?seed=seed as pieces of at most 1 MiB.  MiB k > 0
    starts with k (8 bytes) so that reordered or repeated MiBs show."""
    blk = _block(str(seed), min(n, BLOCK))
    k = 0
    off = 0
    while off < n:
        take = min(BLOCK, n - off)
        piece = struct.pack(">Q", k) + blk[8:] if k else blk
        yield piece[:take] if take < len(piece) else piece
        off += take
        k += 1


def body_bytes(n, seed="0"):
    return b"".join(body_chunks(n, seed))


def body_sha256(n, seed="0"):
    key = (n, str(seed))
    d = _digests.get(key)
    if d is None:
        h = hashlib.sha256()
        for c in body_chunks(n, seed):
            h.update(c)
        d = _digests[key] = h.hexdigest()
    return d


# chunk sizes used by /chunked/N, in turn
CHUNK_SIZES = (1, 100, 4096, 65536, 7, 1000000, 300000)

SEEN = ("x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-forwarded-host", "connection",
        "keep-alive", "proxy-connection", "te", "upgrade", "x-hop", "host", "expect")


class Closed(Exception):
    pass


class Conn:
    def __init__(self, server, sock, cid):
        self.server = server
        self.s = sock
        self.cid = cid
        self.buf = bytearray()
        self.trailers = []  # of the last chunked request body

    def fill(self, n=1 << 20):
        d = self.s.recv(n)
        if not d:
            raise Closed()
        self.buf += d

    def readline(self, limit=65536):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self.fill(65536)

    def read_head(self):
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = bytes(self.buf[:i])
                del self.buf[:i + 4]
                return head
            if len(self.buf) > (1 << 20):
                raise ValueError("head too long")
            self.fill(65536)

    def body_length(self, n):
        """Yield the n bytes of a Content-Length body."""
        while n > 0:
            if not self.buf:
                self.fill(min(n, 1 << 20))
            take = min(n, len(self.buf))
            piece = bytes(self.buf[:take])
            del self.buf[:take]
            n -= take
            yield piece

    def body_chunked(self):
        while True:
            line = self.readline()
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers
                    line = self.readline()
                    if line == b"":
                        return
                    self.trailers.append(line.decode("latin-1"))
            yield from self.body_length(size)
            if self.readline() != b"":
                raise ValueError("chunk not followed by CRLF")

    def send(self, data):
        self.s.sendall(data)

    def respond(self, status, body=b"", ctype="text/plain", head_only=False, extra=(),
                keep=True, length=None):
        reason = {200: "OK", 404: "Not Found", 400: "Bad Request"}.get(status, "Other")
        hs = ["HTTP/1.1 %d %s" % (status, reason), "Content-Type: " + ctype,
              "Content-Length: %d" % (len(body) if length is None else length),
              "X-Conn: %d" % self.cid]
        hs += list(extra)
        if not keep:
            hs.append("Connection: close")
        data = ("\r\n".join(hs) + "\r\n\r\n").encode()
        if not head_only:
            data += body
        self.send(data)

    def serve(self):
        while True:
            try:
                head = self.read_head()
            except Closed:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ", 2)
            headers = []
            for ln in lines[1:]:
                name, _, value = ln.partition(":")
                headers.append((name.strip(), value.strip()))
            hmap = {}
            for name, value in headers:
                hmap.setdefault(name.lower(), []).append(value)
            conn_tokens = ",".join(hmap.get("connection", [])).lower()
            keep = "close" not in conn_tokens
            if version == "HTTP/1.0":
                keep = "keep-alive" in conn_tokens
            with self.server.lock:
                self.server.requests += 1
            if not self.handle(method, target, headers, hmap, keep):
                return
            if not keep:
                return

    def request_body(self, hmap):
        te = ",".join(hmap.get("transfer-encoding", [])).lower()
        if "chunked" in te:
            return self.body_chunked()
        n = int(hmap.get("content-length", ["0"])[0])
        return self.body_length(n)

    def handle(self, method, target, headers, hmap, keep):
        u = urlsplit(target)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        path = u.path
        head = method == "HEAD"
        has_body = "content-length" in hmap or "transfer-encoding" in hmap
        cont = False
        if has_body and "100-continue" in ",".join(hmap.get("expect", [])).lower():
            self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            cont = True

        if path == "/sha256":
            self.trailers = []
            h = hashlib.sha256()
            n = 0
            for piece in self.request_body(hmap):
                h.update(piece)
                n += len(piece)
            seen = {k: hmap[k] for k in SEEN if k in hmap}
            out = json.dumps({"sha256": h.hexdigest(), "length": n, "seen": seen,
                              "headers": headers, "continue": cont, "conn": self.cid,
                              "trailers": self.trailers})
            self.respond(200, out.encode(), "application/json", keep=keep)
            return True
        if path == "/refuse":
            # At once, the request body unread (a 401 to an upload it refuses);
            # this connection serves nothing more.
            self.respond(401, b"refused\n", keep=keep)
            return False
        # Every other endpoint ignores a request body, but must skip it.
        if has_body:
            for _ in self.request_body(hmap):
                pass
        if path.startswith("/bytes/"):
            n = int(path[len("/bytes/"):])
            seed = q.get("seed", "0")
            close = q.get("close") == "1"
            hs = ["HTTP/1.1 200 OK", "Content-Type: application/octet-stream",
                  "Content-Length: %d" % n, "X-Conn: %d" % self.cid]
            if not keep or close:
                hs.append("Connection: close")
            self.send(("\r\n".join(hs) + "\r\n\r\n").encode())
            if not head:
                for c in body_chunks(n, seed):
                    self.send(c)
            return not close and q.get("hangup") != "1"
        if path == "/dribble":
            # a response in pieces of 1..7 bytes, a millisecond apart
            n = int(q.get("n", "300"))
            data = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    b"X-Conn: %d\r\nContent-Length: %d\r\n\r\n" % (self.cid, n) +
                    body_bytes(n, q.get("seed", "0")))
            off, i = 0, 0
            while off < len(data):
                k = 1 + i % 7
                self.send(data[off:off + k])
                off += k
                i += 1
                time.sleep(0.001)
            return True
        if path == "/truncate":
            # announces n bytes, sends only `send` of them, then closes
            n, send = int(q.get("n", "100000")), int(q.get("send", "1000"))
            self.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Conn: %d\r\n\r\n" %
                      (n, self.cid) + body_bytes(send, q.get("seed", "0")))
            return False
        if path == "/status":
            code = int(q.get("code", "204"))
            if code in (204, 304):
                self.send(b"HTTP/1.1 %d Status\r\nX-Conn: %d\r\nETag: \"e\"\r\n\r\n" %
                          (code, self.cid))
            else:
                self.respond(code, b"status %d\n" % code, head_only=head, keep=keep)
            return True
        if path == "/bad":
            self.send(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\nbody")
            return False
        if path == "/garbage":
            self.send(b"this is not HTTP at all\r\n\r\n")
            return False
        if path == "/drop":
            return False
        if path.startswith("/chunked/"):
            n = int(path[len("/chunked/"):])
            seed = q.get("seed", "0")
            hs = ["HTTP/1.1 200 OK", "Content-Type: application/octet-stream",
                  "Transfer-Encoding: chunked", "X-Conn: %d" % self.cid]
            if not keep:
                hs.append("Connection: close")
            self.send(("\r\n".join(hs) + "\r\n\r\n").encode())
            if head:
                return True
            i = 0
            data = memoryview(body_bytes(n, seed))
            off = 0
            while off < n:
                k = min(CHUNK_SIZES[i % len(CHUNK_SIZES)], n - off)
                self.send(b"%x\r\n" % k + bytes(data[off:off + k]) + b"\r\n")
                off += k
                i += 1
            self.send(b"0\r\nX-Trailer: yes\r\n\r\n")
            return True
        if path == "/headers":
            out = json.dumps({"headers": headers, "method": method, "target": target,
                              "conn": self.cid})
            self.respond(200, out.encode(), "application/json", head_only=head, keep=keep)
            return True
        if path == "/close":
            n = int(q.get("n", "1000"))
            self.send(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
                      b"X-Conn: %d\r\n\r\n" % self.cid)
            if not head:
                for c in body_chunks(n, q.get("seed", "0")):
                    self.send(c)
            return False
        if path == "/slow":
            time.sleep(int(q.get("ms", "1000")) / 1000.0)
            self.respond(200, b"slow\n", head_only=head, keep=keep)
            return True
        if path == "/surplus":
            ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Conn: %d\r\n\r\nok" % self.cid
            extra = q.get("extra", "EXTRA").encode()
            if int(q.get("ms", "0")):
                self.send(ok)
                time.sleep(int(q["ms"]) / 1000.0)
                self.send(extra)
            else:
                self.send(ok + extra)
            return True
        if path == "/stall":
            n, send = int(q.get("n", "100000")), int(q.get("send", "1000"))
            data = body_bytes(n, q.get("seed", "0"))
            self.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Conn: %d\r\n\r\n" %
                      (n, self.cid) + data[:send])
            time.sleep(int(q.get("ms", "1000")) / 1000.0)
            self.send(data[send:])
            return True
        if path == "/early":
            hint = (b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n" +
                    (b"X-Pad: " + b"p" * int(q["pad"]) + b"\r\n" if "pad" in q else b"") +
                    b"\r\n")
            for _ in range(int(q.get("n", "1"))):
                self.send(hint)
            self.respond(200, b"ok", keep=keep)
            return True
        if path == "/headbody":
            self.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Conn: %d\r\n\r\n" % self.cid)
            time.sleep(int(q.get("ms", "0")) / 1000.0)
            self.send(b"HELLO")
            return True
        if path == "/switch":
            up = ", ".join(hmap.get("upgrade", [])) or "h2c"
            self.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                      b"Upgrade: %s\r\nX-Conn: %d\r\n\r\n" % (up.encode(), self.cid))
            data = bytes(self.buf)
            self.buf.clear()
            while True:
                if data:
                    self.send(data)
                data = self.s.recv(65536)
                if not data:
                    return False
        if path == "/stats":
            with self.server.lock:
                out = json.dumps({"connections": self.server.connections,
                                  "requests": self.server.requests,
                                  "open": self.server.open})
            self.respond(200, out.encode(), "application/json", head_only=head, keep=keep)
            return True
        if path.startswith("/.well-known/acme-challenge/"):
            token = path[len("/.well-known/acme-challenge/"):]
            self.respond(200, b"origin token %s\n" % token.encode(), head_only=head, keep=keep)
            return True
        self.respond(404, b"no such endpoint\n", head_only=head, keep=keep)
        return True


class HttpServer:
    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1024)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = 0
        self.open = 0
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            s, _ = self.lsock.accept()
            with self.lock:
                self.connections += 1
                self.open += 1
                cid = self.connections
            threading.Thread(target=self.run, args=(s, cid), daemon=True).start()

    def run(self, s, cid):
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            Conn(self, s, cid).serve()
        except (OSError, ValueError, Closed):
            pass
        finally:
            with self.lock:
                self.open -= 1
            try:
                s.close()
            except OSError:
                pass


class SilentServer:
    """Accepts and holds connections; never reads, never answers."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.held = []
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            s, _ = self.lsock.accept()
            self.held.append(s)


class WsServer:
    def __init__(self):
        ready = threading.Event()
        self.port = None

        def main():
            import websockets

            async def echo(ws, path=None):
                try:
                    async for m in ws:
                        await ws.send(m)
                except websockets.exceptions.ConnectionClosed:
                    pass

            async def serve():
                async with websockets.serve(echo, "127.0.0.1", 0, max_size=None,
                                            ping_interval=None) as srv:
                    self.port = srv.sockets[0].getsockname()[1]
                    ready.set()
                    await asyncio.Future()

            asyncio.run(serve())

        threading.Thread(target=main, daemon=True).start()
        ready.wait(10)


def serve_forever():
    http = HttpServer()
    silent = SilentServer()
    ws = WsServer()
    sys.stdout.write(json.dumps({"http": http.port, "ws": ws.port, "silent": silent.port}) + "\n")
    sys.stdout.flush()
    # Run until the parent closes our stdin (or kills us).
    try:
        sys.stdin.read()
    except Exception:
        pass
    os._exit(0)


class Origin:
    """The origin as a child process of the tests: .http, .ws, .silent ports."""

    def __init__(self, logpath):
        self.logf = open(logpath, "ab")
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.logf)
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("origin did not start; see %s" % logpath)
        ports = json.loads(line)
        self.http, self.ws, self.silent = ports["http"], ports["ws"], ports["silent"]

    def url(self, kind="http"):
        return "http://127.0.0.1:%d" % getattr(self, kind)

    def get_json(self, path):
        """GET path directly (not through the edge); the parsed JSON."""
        s = socket.create_connection(("127.0.0.1", self.http), timeout=5)
        try:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: origin\r\nConnection: close\r\n\r\n" %
                      path.encode())
            data = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        finally:
            s.close()
        return json.loads(data.split(b"\r\n\r\n", 1)[1])

    def stats(self):
        """Counters; the connection asking for them is not counted."""
        st = self.get_json("/stats")
        st["connections"] -= 1
        st["open"] -= 1
        return st

    def stop(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.close()
                self.p.wait(5)
            except Exception:
                self.p.kill()
                self.p.wait()
        self.logf.close()


if __name__ == "__main__":
    serve_forever()
