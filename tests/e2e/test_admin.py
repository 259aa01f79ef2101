"""Operating a running edge: the /status document on admin.listen, and SIGTERM's
drain."""
import json
import os
import signal
import time
import urllib.request

from relais import (KIND_HTTP, ROUTE_ANSWER, SLOW, WELCOME, Edge, HandKey, RawTunnel, UdpEcho,
                    code_reason, free_ports, parse_frames, route_frame, stream_pair, udp_ask,
                    wait_for)

LABEL = "a" * 60


def long_hosts(n):
    """n distinct host names of 253 characters under *.big.test."""
    out = []
    for i in range(n):
        h = "h%05d%s.%s.%s.%s.big.test" % (i, LABEL[:55], LABEL, LABEL, LABEL)
        assert len(h) == 253
        out.append(h)
    return out


def declare(e, key, hosts):
    """An authenticated session of key's agent holding a route for each host."""
    t = RawTunnel(e)
    t.send(key.auth(t.hello()))
    assert parse_frames(t.recv())[0][0] == WELCOME
    for i in range(0, len(hosts), 100):
        t.send(b"".join(route_frame(i + j + 1, KIND_HTTP, h)
                        for j, h in enumerate(hosts[i:i + 100])))
    answered = 0
    while answered < len(hosts):
        for typ, _, p in parse_frames(t.recv()):
            if typ == ROUTE_ANSWER:
                assert code_reason(p) == (0, ""), code_reason(p)
                answered += 1
    return t


def raw_status(e):
    url = "http://127.0.0.1:%d/status" % e.admin_port
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def test_window_growth_is_shared_by_agents_then_by_their_sessions(env):
    """64 MiB of window growth: agent a connected twice and agent b once get
    half each, a's half split between its sessions (16, 16 and 32 MiB, as
    /status shows).  When b leaves, a's sessions get 32 MiB each; when one of
    them leaves too, the other gets it all.  A session's share is never less
    than one stream's largest window (16 MiB), however many sessions its
    agent has."""
    mib = 1 << 20
    ka = HandKey(os.path.join(env.dir, "a.key"))
    kb = HandKey(os.path.join(env.dir, "b.key"))
    e = Edge(env, agents=[ka.entry("a", hosts=["a.test"]),
                          kb.entry("b", hosts=["b.test"])]).start()

    def shares():
        return sorted((s["agent"], s["window_share"] // mib, s["window_grown"])
                      for s in e.status()["sessions"])

    tunnels = [declare(e, ka, []), declare(e, ka, []), declare(e, kb, [])]
    try:
        assert shares() == [("a", 16, 0), ("a", 16, 0), ("b", 32, 0)]
        more = [declare(e, ka, []), declare(e, ka, [])]  # 32 / 4 = 8 MiB each, but
        try:
            assert shares() == [("a", 16, 0)] * 4 + [("b", 32, 0)]
        finally:
            for t in more:
                t.close()
        wait_for(lambda: shares() == [("a", 16, 0), ("a", 16, 0), ("b", 32, 0)], 5,
                 what="a's extra sessions gone")
        tunnels.pop().close()
        wait_for(lambda: shares() == [("a", 32, 0), ("a", 32, 0)], 5, what="b gone")
        tunnels.pop().close()
        wait_for(lambda: shares() == [("a", 64, 0)], 5, what="a's second session gone")
    finally:
        for t in tunnels:
            t.close()


def test_status_with_many_long_routes_is_complete_json(env):
    """1000 routes of 253-byte names: well past the old fixed 256 KiB body."""
    key = HandKey(os.path.join(env.dir, "big.key"))
    e = Edge(env, agents=[key.entry("big", hosts=["*.big.test"])]).start()
    hosts = long_hosts(1000)
    t = declare(e, key, hosts)
    try:
        body = raw_status(e)
        assert len(body) > 256 * 1024
        doc = json.loads(body)
        assert "truncated" not in doc
        (s,) = doc["sessions"]
        assert s["agent"] == "big"
        assert sorted(r["host"] for r in s["routes"]) == hosts
    finally:
        t.close()


def test_status_past_its_cap_is_cut_but_valid_json(env):
    """Sessions of one agent may hold the same routes (HA): 30 sessions of
    1000 long routes are over the 8 MiB cap, so the document is cut, whole
    elements only, and says so."""
    key = HandKey(os.path.join(env.dir, "big.key"))
    e = Edge(env, agents=[key.entry("big", hosts=["*.big.test"])]).start()
    hosts = long_hosts(1000)
    tunnels = []
    try:
        for _ in range(30):
            tunnels.append(declare(e, key, hosts))
        body = raw_status(e)
        assert 8 * 1024 * 1024 - 1024 < len(body) <= 8 * 1024 * 1024
        doc = json.loads(body)
        assert doc["truncated"] is True
        assert 20 < len(doc["sessions"]) < 30
        assert all(s["agent"] == "big" for s in doc["sessions"])
        assert all(r["host"] in hosts for s in doc["sessions"] for r in s["routes"])
    finally:
        for t in tunnels:
            t.close()


def test_sigterm_does_not_wait_for_udp_flows(env):
    """A UDP flow never ends by itself: SIGTERM's drain must not wait the
    full 10 s for it."""
    echo = UdpEcho()
    try:
        port = free_ports(1)
        a, e = stream_pair(env, [dict(listen="udp/%d" % port, to="127.0.0.1:%d" % echo.port)])
        assert udp_ask("127.0.0.1", port, b"flow") == b"echo:flow"
        wait_for(lambda: e.status()["streams"] == 1, what="the flow's stream")
        m = e.proc.mark()
        t0 = time.monotonic()
        e.proc.signal(signal.SIGTERM)
        e.proc.p.wait(10 * SLOW)
        assert time.monotonic() - t0 < 2.0 * SLOW, e.log()[m:]
        assert e.proc.p.returncode == 0
        assert "draining: finishing 0 streams" in e.log()[m:]
    finally:
        echo.close()


def admin_get(port, path, host="127.0.0.1", method="GET"):
    """One request to the status endpoint: (status, headers dict, body)."""
    import socket
    from relais import recv_all
    s = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    try:
        s.sendall(("%s %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (method, path, host)).encode())
        data = recv_all(s)
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body)
    return int(lines[0].split()[1]), headers, body


def test_dashboard_pages(env):
    """The status endpoint serves a read-only dashboard at /: a page that
    loads only its own stylesheet and script (a Content-Security-Policy
    allowing nothing else), a script that reads /status and shows names as
    text, never as HTML.  The Host check and the method check still apply."""
    e = Edge(env, http=False)
    e.start()
    port = e.admin_port
    status, h, page = admin_get(port, "/")
    assert status == 200 and h["Content-Type"] == "text/html; charset=utf-8", h
    csp = h["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp, csp
    assert "frame-ancestors 'none'" in csp and h["X-Content-Type-Options"] == "nosniff"
    assert b'<script src="/dashboard.js"></script>' in page
    assert b"<script>" not in page and b"style=" not in page  # nothing inline: CSP allows none
    status, h, js = admin_get(port, "/dashboard.js")
    assert status == 200 and h["Content-Type"].startswith("text/javascript"), h
    assert b'fetch("/status"' in js and b"textContent" in js and b"innerHTML" not in js
    status, h, css = admin_get(port, "/dashboard.css")
    assert status == 200 and h["Content-Type"].startswith("text/css") and b"table" in css
    # the same guards as /status
    assert admin_get(port, "/", host="relais.example.com")[0] == 403
    assert admin_get(port, "/", method="POST")[0] == 405
    assert admin_get(port, "/dashboard.jsx")[0] == 404
    assert admin_get(port, "/status")[0] == 200
