"""The edge's ACME client against a CA that limits requests (HTTP 429 with
Retry-After, RFC 8555 §6.6): a small CA of the test's own, on 127.0.0.1, with
a certificate from the test PKI.  pebble cannot be told to answer so.
"""
import email.utils
import http.server
import json
import os
import re
import ssl
import threading
import time

import pytest

from relais import Agent, Edge, free_port


class LimitingCa:
    """An ACME directory whose newOrder always answers 429 rateLimited with
    Retry-After (self.retry_after: seconds, or an HTTP-date when a
    callable returns one).  self.orders counts newOrder requests."""

    def __init__(self, pki, retry_after):
        self.retry_after = retry_after
        self.orders = 0
        self.lock = threading.Lock()
        port = free_port()
        base = "https://127.0.0.1:%d" % port
        ca = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, code, body, extra=()):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Replay-Nonce", "n%d" % time.monotonic_ns())
                self.send_header("Content-Type", "application/json" if code < 400
                                 else "application/problem+json")
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def do_HEAD(self):
                self.send(200, {})

            def do_GET(self):
                self.send(200, {"newNonce": base + "/nonce", "newAccount": base + "/acct",
                                "newOrder": base + "/order"})

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/acct":
                    self.send(201, {"status": "valid"}, [("Location", base + "/acct/1")])
                    return
                with ca.lock:
                    ca.orders += 1
                ra = ca.retry_after() if callable(ca.retry_after) else str(ca.retry_after)
                self.send(429, {"type": "urn:ietf:params:acme:error:rateLimited",
                                "detail": "too many new orders"}, [("Retry-After", ra)])

        crt, key, _ = pki.issue_pair("limiting-ca", ["IP:127.0.0.1"])
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.directory = base + "/dir"
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return self.orders

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def limited_edge(env, ca, agent):
    e = Edge(env, agents=[agent.entry(hosts=["*.x.test"])])
    e.cfg["tls"] = {"cert_dir": os.path.join(env.dir, "certs"),
                    "acme": {"directory": ca.directory, "ca": env.pki.ca,
                             "email": "admin@example.org", "accept_terms": True}}
    e.write()
    return e.start()


@pytest.mark.parametrize("form", ["seconds", "date"])
def test_rate_limit_pauses_all_requests_also_over_a_reload(env, closing, form):
    """429 with Retry-After (seconds, or an HTTP-date an hour ahead): no
    request goes to the CA for that hour.  A reload that changes the email
    (the same CA) does not lift the pause; only another directory would."""
    ca = LimitingCa(env.pki, 3600 if form == "seconds" else
                    lambda: email.utils.formatdate(time.time() + 3600, usegmt=True))
    closing(ca)
    a = Agent(env, "home", routes=[{"host": "app.x.test", "to": "http://127.0.0.1:9"}])
    e = limited_edge(env, ca, a)
    a.start(e.url())
    e.proc.wait_log("the CA is limiting requests: no request to it for ", 10)
    # an hour, give or take the second the date form loses
    assert re.search(r"the CA is limiting requests: no request to it for (59|60) min", e.log())
    assert ca.count() == 1

    m = e.proc.mark()
    e.cfg["tls"]["acme"]["email"] = "other@example.org"
    e.reload()
    e.proc.wait_log("configuration reloaded", 5, since=m)
    a.cfg["routes"].append({"host": "new.x.test", "to": "http://127.0.0.1:9"})
    a.proc.stop()
    a.start(e.url())  # a new name asks too
    time.sleep(3)
    assert ca.count() == 1, "the CA was asked again during its pause"
    assert e.proc.alive()
