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

from relais import (EDGE_BIN, SLOW, WELCOME, Agent, Edge, HandKey, Proc, RawTunnel, free_port,
                    parse_frames, wait_for)

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


class FakeAcme:
    """An ACME directory on https://127.0.0.1 (the test CA's certificate) with
    the given terms-of-service URL; every other request gets 500."""

    def __init__(self, env, tos):
        import http.server
        import json
        import threading
        body = None

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/dir":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(500)

            do_HEAD = do_POST = do_GET

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(env.pki.cert, env.pki.key)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.url = "https://127.0.0.1:%d/dir" % self.srv.server_address[1]
        base = self.url[:-4]
        body = json.dumps({"newNonce": base + "/nonce", "newAccount": base + "/acct",
                           "newOrder": base + "/order",
                           "meta": {"termsOfService": tos}}).encode()
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def test_edge_log_escapes_what_an_acme_server_sent(env):
    """The edge logs the CA's terms-of-service URL as the directory gave it:
    JSON escapes decode to a newline, ESC and a C1 CSI."""
    acme = FakeAcme(env, "https://ca.test/tos\nFORGED relais-edge[1] ERROR: \x1b[2J\x9b")
    try:
        e = Edge(env)
        e.cfg["tunnel"]["hostname"] = "edge.test"  # no tunnel.cert: ordered at start
        del e.cfg["tunnel"]["cert"]
        del e.cfg["tunnel"]["key"]
        e.cfg["listen"]["https"] = "127.0.0.1:%d" % free_port()
        e.cfg["tls"] = {"cert_dir": os.path.join(env.dir, "certs"),
                        "acme": {"directory": acme.url, "ca": env.pki.ca,
                                 "email": "admin@example.org", "accept_terms": True}}
        e.write()
        e.start()
        e.proc.wait_log("acme: terms of service of")
    finally:
        acme.close()
    log = read(e.proc.logpath)
    assert (b"acme: terms of service of %s: https://ca.test/tos\\x0aFORGED relais-edge[1] "
            b"ERROR: \\x1b[2J\\xc2\\x9b (accepted in edge.yaml)" % acme.url.encode()) in log, log
    assert not re.search(rb"(^|\n)FORGED", log)
    assert not re.search(rb"[\x00-\x09\x0b-\x1f\x7f]", log)


# ---- the access log -----------------------------------------------------------------------

def test_access_log_is_created_without_access_for_others(env):
    """Client addresses are personal data: under a umask of 022 (a container,
    a shell) the file must still not be readable by every local user."""
    old = os.umask(0o022)
    try:
        e = Edge(env).start()
    finally:
        os.umask(old)
    get(e, "/x")
    mode = os.stat(e.cfg["access_log"]).st_mode & 0o777
    assert mode == 0o640, oct(mode)


def test_an_access_log_readable_by_all_is_warned_about(env):
    """A file an older version (or a shell) made 0644 keeps its mode; the
    edge says so instead of changing the operator's file."""
    e = Edge(env)
    with open(e.cfg["access_log"], "w"):
        pass
    os.chmod(e.cfg["access_log"], 0o644)
    e.start()
    e.proc.wait_log("access_log %s is readable by every local user (mode 0644)"
                    % e.cfg["access_log"])
    assert os.stat(e.cfg["access_log"]).st_mode & 0o777 == 0o644


def reopened_after_rotation(env, poke, logged):
    """An edge with a line in its access log; the file is moved away as
    logrotate does, poke(edge) runs and the edge logs `logged`.  The next
    request must land in a new file by the old name, not the moved one."""
    e = Edge(env).start()
    path = e.cfg["access_log"]
    get(e, "/before")
    wait_for(lambda: b"/before" in read(path), what="the first line")
    os.rename(path, path + ".1")
    m = e.proc.mark()
    poke(e)
    e.proc.wait_log(logged, since=m)
    get(e, "/after")
    wait_for(lambda: os.path.exists(path) and b"/after" in read(path), what="the new file")
    assert b"/after" not in read(path + ".1")
    assert e.proc.alive()


def test_sigusr1_reopens_the_access_log(env):
    """logrotate's nginx habit: move the file, send SIGUSR1.  The edge starts
    a new file by the name (it used to die of the signal)."""
    reopened_after_rotation(env, lambda e: e.proc.signal(signal.SIGUSR1),
                            "reopening the access log")


def test_a_failed_reload_still_reopens_the_access_log(env):
    """logrotate's postrotate reload with a broken edge.yaml: the old
    configuration stays, and the log still moves to a new file."""
    def broken_reload(e):
        with open(e.path, "a") as f:
            f.write("bogus_key: [\n")
        e.proc.signal(signal.SIGHUP)

    reopened_after_rotation(env, broken_reload, "reload failed")


def test_reload_does_not_follow_a_symlink_planted_at_the_access_log(env):
    """Whoever can write the log directory must not get the edge to append
    to another file: after rotation a symbolic link sits where access.log
    was; the reload refuses it and lines keep going to the file open before."""
    e = Edge(env).start()
    path = e.cfg["access_log"]
    victim = os.path.join(env.dir, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    get(e, "/before")
    wait_for(lambda: b"/before" in read(path), what="the first line")
    os.rename(path, path + ".1")
    os.symlink(victim, path)
    m = e.proc.mark()
    e.reload()
    e.proc.wait_log("configuration reloaded", since=m)
    get(e, "/after")
    get(e, "/after2")
    assert read(victim) == b"precious\n"
    wait_for(lambda: b"/after2" in read(path + ".1"), what="the lines in the file open before")
    assert "cannot open access_log %s: Too many levels of symbolic links" % path in e.log()[m:]


def test_a_fifo_nobody_reads_at_the_access_log_does_not_hang_the_edge(env):
    """open() of a FIFO for writing waits for a reader: the edge would hang
    at start (or in a reload) instead of saying what is wrong."""
    e = Edge(env)
    os.mkfifo(e.cfg["access_log"])
    p = subprocess.Popen([EDGE_BIN, "-c", e.path], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=5 * SLOW)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError("the edge hangs opening a FIFO nobody reads")
    assert p.returncode != 0
    assert b"cannot open access_log %s: No such device or address" % e.cfg[
        "access_log"].encode() in out, out


def test_access_log_write_errors_are_warned_and_requests_still_served(env):
    """Disk full: each line is lost, requests go on, the process log says so
    once (not once per request)."""
    e = Edge(env, extra={"access_log": "/dev/full"}).start()
    for p in ("/a", "/b", "/c"):
        get(e, p)
    e.proc.wait_log("access_log: cannot write: No space left on device (1 lines lost)")
    assert e.status()["streams"] == 0
    assert e.log().count("access_log: cannot write") == 1


def test_a_line_cut_by_a_full_disk_is_ended_before_the_next(env):
    """A file size limit stands in for a full disk: the kernel writes part of
    a line; once there is room again, the next line must start a line of its
    own, not be glued to the fragment."""
    e = Edge(env)
    path = e.cfg["access_log"]
    with open(path, "wb") as f:
        f.write((b"#" * 99 + b"\n") * 10000)  # far larger than edge.log will get
    start_tuned(env, e, lambda: signal.signal(signal.SIGXFSZ, signal.SIG_IGN))
    get(e, "/first")
    wait_for(lambda: b"/first" in read(path), what="the first line")
    size = os.path.getsize(path)
    resource.prlimit(e.proc.pid, resource.RLIMIT_FSIZE, (size + 30, resource.RLIM_INFINITY))
    get(e, "/second")
    wait_for(lambda: os.path.getsize(path) == size + 30, what="the cut line")
    resource.prlimit(e.proc.pid, resource.RLIMIT_FSIZE,
                     (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    get(e, "/third")
    wait_for(lambda: b"/third" in read(path), what="the line after the cut")
    lines = read(path)[1000000:].decode().split("\n")
    assert LINE.match(lines[0]) and "/first" in lines[0], lines
    assert len(lines[1]) == 30 and re.match(r"\d{4}-\d\d-\d\dT", lines[1]), lines  # the cut one
    assert LINE.match(lines[2]) and "/third" in lines[2], lines
    assert lines[3:] == [""], lines
    e.proc.wait_log("access_log: cannot write: File too large")


# ---- the admin endpoint -------------------------------------------------------------------

def test_admin_connections_cannot_take_the_descriptors_kept_for_agents(env):
    """The admin listener may use the descriptors kept for agents; a local
    process opening hundreds of connections to it must not lock agents out
    (nor make the tunnel listener spin on EMFILE)."""
    key = HandKey(os.path.join(env.dir, "a.key"))
    e = Edge(env, agents=[key.entry("a", hosts=["*.a.test"])])
    e.start(wrap=["prlimit", "--nofile=256:256"])
    socks = []
    try:
        for _ in range(300):
            socks.append(socket.create_connection(("127.0.0.1", e.admin_port), 5 * SLOW))
        # refused past the limit (fixed), or out of descriptors (not)
        wait_for(lambda: "admin: 16 connections open, refused" in e.log()
                 or "admin listener: accept: Too many open files" in e.log(),
                 what="the edge to have taken the admin connections")
        t = RawTunnel(e)
        t.send(key.auth(t.hello()))
        assert parse_frames(t.recv())[0][0] == WELCOME
        t.close()
        assert socks[-1].recv(100).startswith(b"HTTP/1.1 503 ")
        assert len(os.listdir("/proc/%d/fd" % e.proc.pid)) < 100
    finally:
        for s in socks:
            s.close()
    # the slots are given back as connections close
    wait_for(e.ready, what="the admin endpoint answering again")
    assert e.log().count("lws: accept: errno 24") == 0


def admin(e, head):
    r = exchange(e.admin_port, head)
    status = int(r.split(b" ", 2)[1])
    return status, r


def test_admin_answers_only_requests_naming_it_by_address(env):
    """No authentication: a web page that got its name resolved to 127.0.0.1
    (DNS rebinding) would read /status with its own name in Host."""
    e = Edge(env).start()
    p = e.admin_port
    for host in (b"evil.example", b"evil.example:%d" % p, b"127.0.0.1.evil.example",
                 b"localhost.evil.example", b"1.2.3"):
        st, r = admin(e, b"GET /status HTTP/1.1\r\nHost: %s\r\n\r\n" % host)
        assert st == 403, (host, r)
        assert r.endswith(b'{"error":"Host must be an IP address or localhost"}\n')
    for host in (b"127.0.0.1", b"127.0.0.1:%d" % p, b"localhost:%d" % p, b"LocalHost",
                 b"[::1]:%d" % p, b" 127.0.0.1 "):
        st, r = admin(e, b"GET /status HTTP/1.1\r\nHost: %s\r\n\r\n" % host)
        assert st == 200, (host, r)
    st, _ = admin(e, b"GET /status HTTP/1.0\r\n\r\n")
    assert st == 200
    st, _ = admin(e, b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nhost: evil.example\r\n\r\n")
    assert st == 400


def test_admin_answers_405_to_methods_other_than_get(env):
    e = Edge(env).start()
    st, r = admin(e, b"POST /status HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
    assert st == 405 and b"\r\nAllow: GET\r\n" in r, r
    st, _ = admin(e, b"GET /statusx HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert st == 404
    st, _ = admin(e, b"GET /status\r\n\r\n")
    assert st == 400
    st, _ = admin(e, b"GET /status HTTP/1.1\r\nno colon here\r\n\r\n")
    assert st == 400
    # a NUL byte is not HTTP: closed without an answer
    assert exchange(e.admin_port, b"GET /status\0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") == b""
    assert e.proc.alive()


def test_public_port_never_reaches_the_admin_endpoint(env):
    """Guard: Host, absolute-form targets and paths naming the admin address
    on the public HTTP port are routed like any unknown host."""
    e = Edge(env).start()
    a = b"127.0.0.1:%d" % e.admin_port
    for head in (b"GET /status HTTP/1.1\r\nHost: %s\r\n\r\n" % a,
                 b"GET http://%s/status HTTP/1.1\r\nHost: %s\r\n\r\n" % (a, a),
                 b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n",
                 b"GET //%s/status HTTP/1.1\r\nHost: x.test\r\n\r\n" % a):
        r = exchange(e.http_port, head)
        assert r.startswith(b"HTTP/1.1 404 ") and b'"sessions"' not in r, (head, r[:200])


def test_status_is_json_whatever_an_agent_declares(env):
    """Guard: /status prints route hosts without escaping; the edge must
    refuse every host that would need it (the frame decoder refuses bytes
    that are not printable ASCII), and the document stays JSON."""
    import json
    from relais import KIND_HTTP, ROUTE_ANSWER, code_reason, route_frame
    key = HandKey(os.path.join(env.dir, "a.key"))
    e = Edge(env, agents=[key.entry("a", hosts=["*.a.test"])]).start()
    t = RawTunnel(e)
    t.send(key.auth(t.hello()))
    assert parse_frames(t.recv())[0][0] == WELCOME
    hosts = ['q"x.a.test', "b\\x.a.test", "UP.a.test", "s p.a.test", "x</script>.a.test",
             "ok.a.test"]
    t.send(b"".join(route_frame(i + 1, KIND_HTTP, h) for i, h in enumerate(hosts)))
    answers = {}
    while len(answers) < len(hosts):
        for typ, sid, p in parse_frames(t.recv()):
            if typ == ROUTE_ANSWER:
                answers[hosts[sid - 1]] = code_reason(p)[0]
    assert [h for h, code in answers.items() if code == 0] == ["ok.a.test"], answers
    doc = json.loads(raw_status(e))
    assert [r["host"] for s in doc["sessions"] for r in s["routes"]] == ["ok.a.test"]
    t.close()


def raw_status(e):
    return exchange(e.admin_port, b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").split(
        b"\r\n\r\n", 1)[1]
