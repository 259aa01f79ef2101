"""The edge's TLS port seen by a hostile client on the internet: ClientHellos
that stall, arrive in pieces or are malformed, passthrough streams whose
agent goes away or whose client half-closes, certificate selection by odd
spellings of a name.  Real relais-edge / relais-agent processes, a local
origin and a local TLS service, all on 127.0.0.1.  Run:
RELAIS_BUILD=$PWD/build /usr/bin/python3 -m pytest -q tests/e2e/test_https_review.py
"""
import os
import socket
import ssl
import time

import pytest

from relais import SLOW, Agent, Env, HttpsEdge, TlsOrigin, free_port, wait_for

ONE = "one.test"        # a certificate in cert_dir
WILD = "x.apps.test"    # served by _wildcard.apps.test
VAULT = "vault.test"    # tls: passthrough to a local TLS service
HOSTS = [ONE, WILD, VAULT]


# ---- helpers (the first three as in test_https.py) ------------------------------------


def ca_ctx(pki):
    return ssl.create_default_context(cafile=pki.ca)


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


def main_thread_wakeups(pid):
    """How often the process's event loop thread has slept and been woken."""
    with open("/proc/%d/task/%d/status" % (pid, pid)) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches for %d" % pid)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the topology ---------------------------------------------------------------------


class Net:
    """One edge (listen.https + cert_dir), one agent with an HTTP route for
    ONE and WILD and a passthrough route for VAULT to a local TLS service."""

    def __init__(self, d, pki, origin):
        os.makedirs(d, exist_ok=True)
        self.env = Env(d, pki)
        self.pki = pki
        self.vault = TlsOrigin(pki, name="vault-origin", sans=["DNS:" + VAULT])
        o = "http://127.0.0.1:%d" % origin.http
        routes = [{"host": ONE, "to": o}, {"host": WILD, "to": o},
                  {"host": VAULT, "to": "127.0.0.1:%d" % self.vault.port,
                   "tls": "passthrough"}]
        self.agent = Agent(self.env, "home", routes=routes)
        self.edge = HttpsEdge(self.env, agents=[self.agent.entry(hosts=HOSTS)])
        self.edge.install(ONE)
        self.edge.install("_wildcard.apps.test")
        self.edge.start()
        self.agent.start(self.edge.url())
        wait_for(lambda: len(self.edge.routes()) == len(HOSTS), 5,
                 what=lambda: "all routes on the edge: %r" % self.edge.routes())
        self.https = self.edge.https_port
        self.ctx = ca_ctx(pki)

    def close(self):
        self.vault.close()
        self.env.check()


@pytest.fixture(scope="module")
def net(tmp_path_factory, pki, origin):
    n = Net(str(tmp_path_factory.mktemp("https-review")), pki, origin)
    yield n
    n.close()


# ---- stalled ClientHellos -------------------------------------------------------------


def test_stalled_client_hellos_do_not_keep_the_edge_busy(net):
    """Clients that sent part of a ClientHello and then nothing: the edge
    waits for their next bytes (or the 10 s deadline) asleep, not by looking
    at each of them again every few milliseconds.  Before the fix every
    stalled connection was peeked at 50 times a second: 3000 of them took a
    whole core and made every other client wait."""
    edge = net.edge
    pid = edge.proc.pid
    mark = edge.proc.mark()
    hello = client_hello(ONE)
    socks = []
    try:
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", net.https), timeout=5)
            s.sendall(hello[:1 + i * 7])  # a record header cut anywhere, or part of a body
            socks.append(s)
        edge.proc.wait_log("ClientHello incomplete", 5, count=len(socks), since=mark)
        w0, c0, t0 = main_thread_wakeups(pid), cpu_seconds(pid), time.monotonic()
        time.sleep(2)  # the measurement window (nothing is awaited)
        w1, c1, t1 = main_thread_wakeups(pid), cpu_seconds(pid), time.monotonic()
        rate = (w1 - w0) / (t1 - t0)
        # Idle, the edge wakes a few times a second at most (certificate
        # rescans, lws's own timers); polling would be >= 50 per second.
        assert rate < 15, "the edge woke %.0f times a second for 20 stalled clients" % rate
        assert c1 - c0 < 0.1 * SLOW, "the edge used %.2f s of CPU in 2 s" % (c1 - c0)
        # the rest of each hello still completes them: the edge notices
        # new bytes at once, and the handshakes succeed
        for i, s in enumerate(socks[:3]):
            s.sendall(hello[1 + i * 7:])
        for s in socks[:3]:
            s.settimeout(3 * SLOW)
            d = s.recv(5)
            assert d[:1] == b"\x16", "no ServerHello after the rest of the ClientHello: %r" % d
    finally:
        for s in socks:
            s.close()
