"""Request smuggling and header handling at the edge, end to end: raw
client sockets -> relais-edge -> tunnel -> relais-agent -> a scripted origin
(ScriptedOrigin below) that records the exact bytes it receives and answers
each request with bytes a test chose, so that a test can check both what
reaches the service and what reaches the client.

Run: RELAIS_BUILD=$PWD/build /usr/bin/python3 -m pytest -q tests/e2e/test_http_review.py
"""
import socket
import threading

import pytest

from relais import SLOW, Agent, Edge, Env, wait_for

APP = "app.review.test"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class ScriptedOrigin:
    """An HTTP/1.1 origin on 127.0.0.1.  Every request head it reads is kept
    (heads, in order, with the raw bytes of its body); the answer to a request
    for path P is answers[P] (bytes sent as they are), else OK."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.answers = {}
        self.heads = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    @staticmethod
    def _fill(s, buf):
        d = s.recv(65536)
        if not d:
            raise EOFError
        buf += d

    def _serve(self, s):
        buf = bytearray()
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    self._fill(s, buf)
                i = buf.index(b"\r\n\r\n")
                head = bytes(buf[:i + 4])
                del buf[:i + 4]
                low = head.lower()
                body = b""
                if b"\r\ncontent-length:" in low:
                    n = int(low.split(b"\r\ncontent-length:")[1].split(b"\r\n")[0])
                    while len(buf) < n:
                        self._fill(s, buf)
                    body = bytes(buf[:n])
                    del buf[:n]
                elif b"\r\ntransfer-encoding: chunked\r\n" in low:
                    while not (b"\r\n" + buf).count(b"\r\n0\r\n\r\n"):
                        self._fill(s, buf)
                    j = (b"\r\n" + buf).index(b"\r\n0\r\n\r\n") + 3
                    body = bytes(buf[:j])
                    del buf[:j]
                with self.lock:
                    self.heads.append((head, body))
                path = head.split(b" ")[1].decode("latin-1")
                s.sendall(self.answers.get(path, OK))
        except (OSError, EOFError):
            pass
        finally:
            s.close()

    def saw(self, path):
        """The head (and body) of the last request for path, or None."""
        with self.lock:
            for head, body in reversed(self.heads):
                if head.split(b" ")[1] == path.encode():
                    return head, body
        return None

    def close(self):
        self.ls.close()


class Review:
    def __init__(self, d, pki):
        self.env = Env(d, pki)
        self.origin = ScriptedOrigin()
        agent = Agent(self.env, "home",
                      routes=[{"host": APP, "to": "http://127.0.0.1:%d" % self.origin.port}])
        self.edge = Edge(self.env, agents=[agent.entry(hosts=[APP])])
        self.edge.start()
        agent.start(self.edge.url())
        wait_for(lambda: len(self.edge.routes()) == 1, 5, what="the route on the edge")
        self.port = self.edge.http_port

    def close(self):
        self.origin.close()
        self.env.check()


@pytest.fixture(scope="module")
def rv(tmp_path_factory, pki):
    r = Review(str(tmp_path_factory.mktemp("review")), pki)
    yield r
    r.close()


def exchange(port, data, timeout=2.0):
    """Send data, then read until the edge closes or nothing comes for
    timeout seconds.  Returns (bytes, closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.settimeout(timeout * SLOW)
    out = bytearray()
    try:
        s.sendall(data)
        while True:
            d = s.recv(65536)
            if not d:
                return bytes(out), True
            out += d
    except socket.timeout:
        return bytes(out), False
    except ConnectionResetError:
        return bytes(out), True
    finally:
        s.close()


def request(path, version="1.1", method="GET", headers=b""):
    return b"%s %s HTTP/%s\r\nHost: %s\r\n%s\r\n" % (
        method.encode(), path.encode(), version.encode(), APP.encode(), headers)


def fields(head):
    """{lower name: [values]} of a request head from the origin."""
    got = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if line:
            k, _, v = line.partition(":")
            got.setdefault(k.strip().lower(), []).append(v.strip())
    return got


# ---- client address fields ----------------------------------------------------------


def test_client_ip_fields_removed(rv):
    """Client-IP (read first by the common PHP client-address code,
    $_SERVER['HTTP_CLIENT_IP']), X-Originating-IP, X-Remote-IP and
    X-Remote-Addr sent by a client never reach the service: it would take
    them for the client's address.  Nor does X-Forwarded, the draft of
    RFC 7239's Forwarded that some frameworks still read."""
    spoof = (b"Client-IP: 6.6.6.6\r\nX-Originating-IP: 6.6.6.6\r\n"
             b"x-remote-ip: 6.6.6.6\r\nX-Remote-Addr: 6.6.6.6\r\nX-Kept: yes\r\n"
             b"X-Forwarded: for=6.6.6.6\r\n"
             b"Connection: close\r\n")
    out, closed = exchange(rv.port, request("/client-ip", headers=spoof))
    assert out.startswith(b"HTTP/1.1 200 ") and closed, out
    head, _ = rv.origin.saw("/client-ip")
    got = fields(head)
    assert b"6.6.6.6" not in head, head
    assert got["x-kept"] == ["yes"]
    assert got["x-real-ip"] == ["127.0.0.1"] and got["x-forwarded-for"] == ["127.0.0.1"]


# ---- interim responses ---------------------------------------------------------------

EARLY = (b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
         b"HTTP/1.1 100 Continue\r\n\r\n" + OK)


@pytest.mark.parametrize("path", ["/early-hints", "/continue-10"])
def test_no_interim_response_to_http10(rv, path):
    """An HTTP/1.0 client knows no 1xx (RFC 9110 §15.2: never sent to one):
    it would read "103 Early Hints" or "100 Continue" as its answer and the
    real answer as the body.  The edge drops them; an HTTP/1.1 client still
    gets them."""
    rv.origin.answers[path] = EARLY
    hs = b"Content-Length: 2\r\nExpect: 100-continue\r\n" if "continue" in path else b""
    data = request(path, "1.0", "POST" if hs else "GET", hs) + (b"ab" if hs else b"")
    out, closed = exchange(rv.port, data)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\nok"), out
    assert b" 103 " not in out and b" 100 " not in out, out
    assert closed
    # keep-alive HTTP/1.0: the next answer on the connection is framed right
    out, _ = exchange(rv.port, request(path, "1.0", headers=b"Connection: keep-alive\r\n") +
                      request("/after", "1.0"))
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 2 and b" 103 " not in out, out
    # HTTP/1.1 clients get both interim responses
    out, _ = exchange(rv.port, request(path, headers=b"Connection: close\r\n"))
    assert out.startswith(b"HTTP/1.1 103 Early Hints\r\n"), out
    assert b"\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n" in out, out


# ---- framing fields in responses without a body ---------------------------------------


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nETag: \"e\"\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\nETag: \"e\"\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\n\r\n" + OK,
], ids=["204-length", "204-chunked", "103-length"])
def test_no_framing_fields_in_1xx_or_204(rv, answer):
    """A 1xx or 204 has no body, and must not carry Content-Length or
    Transfer-Encoding (RFC 9110 §8.6, RFC 9112 §6.1).  The edge reads no
    body after one, so passing them on would let a client that honours them
    take the next response's first bytes for this one's body."""
    path = "/nobody-%d" % len(answer)
    rv.origin.answers[path] = answer
    out, _ = exchange(rv.port, request(path) + request("/after",
                                                       headers=b"Connection: close\r\n"))
    first = out.split(b"\r\n\r\n")[0]
    assert first.startswith(answer.split(b"\r\n")[0]), out
    assert b"Content-Length" not in first and b"Transfer-Encoding" not in first, out
    assert out.endswith(b"\r\n\r\nok") and out.count(b"HTTP/1.1 200 OK\r\n") == 1 + (
        b" 103 " in answer), out


def test_bad_length_dropped_from_head_response(rv):
    """A HEAD answer reads no body, so a Content-Length that disagrees with
    itself is not refused; it is not passed on either."""
    rv.origin.answers["/head-bad"] = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                                      b"Content-Length: 6\r\nX-A: 1\r\n\r\n")
    out, _ = exchange(rv.port, request("/head-bad", method="HEAD",
                                       headers=b"Connection: close\r\n"))
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"X-A: 1\r\n" in out, out
    assert b"Content-Length" not in out, out


# ---- the request smuggling matrix: refused, closed, never forwarded --------------------

H = b"Host: " + APP.encode() + b"\r\n"
REFUSED = [
    ("te-chunked-identity", b"POST /m1 HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400),
    ("te-xchunked", b"POST /m2 HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n", 501),
    ("te-http10", b"POST /m3 HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     400),
    ("te-and-cl", b"POST /m4 HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("cl-list-differs", b"POST /m5 HTTP/1.1\r\n" + H + b"Content-Length: 2, 3\r\n\r\nab", 400),
    ("cl-plus", b"POST /m6 HTTP/1.1\r\n" + H + b"Content-Length: +2\r\n\r\nab", 400),
    ("obs-fold", b"GET /m7 HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400),
    ("space-before-colon", b"GET /m8 HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n",
     400),
    ("nul-in-value", b"GET /m9 HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    ("cr-in-value", b"GET /m10 HTTP/1.1\r\n" + H + b"X-A: a\rX-B: b\r\n\r\n", 400),
    ("bad-name", b"GET /m11 HTTP/1.1\r\n" + H + b"X(A): a\r\n\r\n", 400),
    ("http2-version", b"GET /m12 HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("http09", b"GET /m13\r\n\r\n", 400),
    ("no-host", b"GET /m14 HTTP/1.1\r\n\r\n", 400),
    ("two-hosts", b"GET /m15 HTTP/1.1\r\n" + H + H + b"\r\n", 400),
    # a service that reads lengths as signed 64-bit numbers would see a
    # negative one; one that folds the case of methods would take "head"
    # for HEAD and send no body
    ("cl-2^63", b"POST /m16 HTTP/1.1\r\n" + H + b"Content-Length: 9223372036854775808\r\n\r\n",
     400),
    ("lower-case-method", b"head /m17 HTTP/1.1\r\n" + H + b"\r\n", 400),
]


@pytest.mark.parametrize("data,status", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_smuggling_heads_refused(rv, data, status):
    """Heads two parsers could frame differently get their 4xx/5xx and a
    closed connection (a request pipelined behind is never answered), and
    never reach the service."""
    out, closed = exchange(rv.port, data + request("/behind"))
    assert out.startswith(b"HTTP/1.1 %d " % status), out
    assert b"Connection: close\r\n" in out and closed, out
    assert out.count(b"HTTP/1.1 ") == 1, out
    path = data.split(b" ")[1].decode()
    assert rv.origin.saw(path) is None


@pytest.mark.parametrize("body", [
    b"2\nab\r\n0\r\n\r\n",                      # bare LF after the size
    b"2 \r\nab\r\n0\r\n\r\n",                    # whitespace after the size
    b"10000000000000002\r\nab\r\n0\r\n\r\n",     # size over 2^64
    b"8000000000000000\r\nab\r\n0\r\n\r\n",      # size over 2^63-1
    b"2;a=\"x\ny\"\r\nab\r\n0\r\n\r\n",          # LF in a quoted extension
    b"2\r\nabc\r\n0\r\n\r\n",                    # data longer than its size
], ids=["bare-lf", "size-space", "overflow", "overflow-signed", "ext-lf", "long-data"])
def test_bad_chunked_request_400(rv, body):
    out, closed = exchange(rv.port, b"POST /chunked-bad HTTP/1.1\r\n" + H +
                           b"Transfer-Encoding: chunked\r\n\r\n" + body + request("/behind"))
    assert out.startswith(b"HTTP/1.1 400 ") and closed, out
    assert out.count(b"HTTP/1.1 ") == 1, out


def test_chunked_response_to_http10_client_is_dechunked(rv):
    """RFC 9112 §6.1: an HTTP/1.0 client never gets Transfer-Encoding (it
    would not decode it): the edge sends the chunks' payload and ends it with
    the close.  Many one-byte chunks: the chunks' framing (1.5 MB)
    goes back to the agent as credit, or the stream would stall at its window.
    An HTTP/1.1 client gets the chunks as they came."""
    parts = [b"hello ", b"x" * 70000] + [b"%d" % (i % 10) for i in range(300000)] + [b" end"]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\nX-T: 1\r\n\r\n"
    rv.origin.answers["/chunked10"] = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                                       b"X-A: 1\r\n\r\n" + chunked)
    out, closed = exchange(rv.port, b"GET /chunked10 HTTP/1.0\r\n" + H + b"\r\n", timeout=10)
    head, _, body = out.partition(b"\r\n\r\n")
    assert closed, head
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"X-A: 1\r\n" in head, head
    assert b"transfer-encoding" not in head.lower() and b"Connection: close" in head, head
    assert body == b"".join(parts)
    out, _ = exchange(rv.port, b"GET /chunked10 HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
                      timeout=10)
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked\r\n" in head, head
    assert body == chunked


def test_http12_is_taken_as_http11(rv):
    """RFC 9110 §2.5: a request in HTTP/1.2 is processed as HTTP/1.1 (as
    nginx does), not refused with 505; HTTP/2.0 and 0.9 still are."""
    out, _ = exchange(rv.port, b"GET /v12 HTTP/1.2\r\n" + H + b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"ok"), out
    head, _ = rv.origin.saw("/v12")
    assert head.startswith(b"GET /v12 HTTP/1.1\r\n"), head
