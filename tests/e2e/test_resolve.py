"""The agent's name lookups (agent/resolve.c) against a DNS server that
answers only when the test says so: a route whose target is a host name,
and a flood of connections while the lookup hangs.

getaddrinfo() blocks, so each lookup runs in a thread of its own; one lookup
per name is in flight at a time and every connection that needs the same
name meanwhile waits for its answer.  Before, each connection started its
own thread, and a client leaving did not stop it: with the home network's
DNS server down (each lookup waiting out its timeouts) a flood of public
connections piled up threads without bound.

The test runs in network and mount namespaces of its own: /etc/resolv.conf
there names a DNS stub of the test's own on 127.0.0.1:53.
"""
import os
import socket
import struct
import subprocess
import threading
import time

from relais import (SLOW, Agent, Edge, connect, recv_all, rerun_in_own_netns, wait_for)

NAME = "slow.relais.test"


class DnsStub:
    """A DNS server on 127.0.0.1:53 (UDP) for NAME: A 127.0.0.1, AAAA none;
    NXDOMAIN for anything else.  While self.hold is set it keeps the queries
    for NAME and answers them all at release()."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 53))
        self.sock.settimeout(0.1)
        self.hold = True
        self.held = []
        self.queries = []  # (qtype, name) of each query for NAME
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @staticmethod
    def _question(q):
        """(name, qtype, end of the question) of query q."""
        labels, i = [], 12
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
            i += 1 + q[i]
        qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
        return ".".join(labels).lower(), qtype, i + 5

    def _answer(self, q, peer):
        name, qtype, end = self._question(q)
        known = name == NAME
        flags = 0x8180 if known else 0x8183  # response, RD, RA; NXDOMAIN
        ancount = 1 if known and qtype == 1 else 0
        out = q[:2] + struct.pack(">HHHHH", flags, 1, ancount, 0, 0) + q[12:end]
        if ancount:
            out += struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
        self.sock.sendto(out, peer)

    def _serve(self):
        while not self.stopping:
            try:
                q, peer = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                name, qtype, _ = self._question(q)
            except (IndexError, struct.error):
                continue
            with self.lock:
                if name == NAME:
                    self.queries.append((qtype, name))
                if name == NAME and self.hold:
                    self.held.append((q, peer))
                    continue
            self._answer(q, peer)

    def release(self):
        with self.lock:
            self.hold = False
            held, self.held = self.held, []
        for q, peer in held:
            self._answer(q, peer)

    def close(self):
        self.stopping = True
        self.sock.close()
        self.thread.join(2)


def threads(pid):
    return len(os.listdir("/proc/%d/task" % pid))


def get(port, host):
    """A client connection that sent GET / for host (Connection: close)."""
    s = connect("127.0.0.1", port, timeout=20 * SLOW)
    s.sendall(b"GET /headers HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host.encode())
    return s


def test_connections_to_a_name_share_one_lookup(env, origin, closing, request):
    """Twenty connections to a route whose target is a host name, while the
    DNS server holds its answer: the agent runs one lookup (one thread,
    one query per address family), not twenty.  Five clients leave
    meanwhile; once the answer comes the other fifteen are served, and a new
    connection afterwards looks the name up again."""
    if rerun_in_own_netns(request, mount=True):
        return
    conf = os.path.join(env.dir, "resolv.conf")
    with open(conf, "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:30 attempts:1\n")
    r = subprocess.run(["mount", "--bind", conf, "/etc/resolv.conf"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    dns = DnsStub()
    closing(dns)
    host = "www.home.test"
    # connect_timeout counts the lookup as well: longer than the test holds it.
    a = Agent(env, "home", routes=[{"host": host, "to": "http://%s:%d" % (NAME, origin.http)}],
              extra={"connect_timeout": "60s"})
    e = Edge(env, agents=[a.entry(hosts=[host])], http=True)
    e.start()
    a.start(e.url())
    a.proc.wait_log("route %s accepted by the edge" % host)
    base = threads(a.proc.pid)

    clients = [get(e.http_port, host) for _ in range(20)]
    for s in clients:
        closing(s)
    wait_for(lambda: e.status()["sessions"][0]["streams"] == 20, 5 * SLOW,
             what=lambda: "20 streams at the edge: %r" % e.status())
    wait_for(lambda: dns.queries, 5 * SLOW, what="the agent's lookup")
    seen = []
    for _ in range(10):  # a second: every stream has asked by now
        seen.append(threads(a.proc.pid))
        time.sleep(0.1)
    assert max(seen) <= base + 1, ("resolver threads", base, seen)
    assert len(dns.queries) <= 2, dns.queries  # A and AAAA, once

    for s in clients[:5]:  # a reset: a FIN alone may be a half-close
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    wait_for(lambda: e.status()["sessions"][0]["streams"] == 15, 5 * SLOW,
             what=lambda: "the five gone: %r" % e.status())
    dns.release()
    for s in clients[5:]:
        resp = recv_all(s)
        assert resp.startswith(b"HTTP/1.1 200"), resp[:300]
    wait_for(lambda: threads(a.proc.pid) == base, 5 * SLOW,
             what=lambda: "the resolver thread gone: %d, %d" % (threads(a.proc.pid), base))

    before = len(dns.queries)
    s = get(e.http_port, host)
    closing(s)
    resp = recv_all(s)
    assert resp.startswith(b"HTTP/1.1 200"), resp[:300]
    assert len(dns.queries) > before, "the name was not looked up again"
    assert a.proc.alive() and e.proc.alive()
