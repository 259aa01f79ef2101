"""edge.yaml's access lists (access:) and redirection hosts (redirects:),
end to end: real relais-edge and relais-agent processes, the test origin, a
TCP echo and a UDP echo service.  Clients come from different loopback
addresses (127.0.0.2, 127.0.0.3, ...: all of 127.0.0.0/8 is local), so the
edge sees each as another client.  Run:
RELAIS_BUILD=$PWD/build /usr/bin/python3 -m pytest -q tests/e2e/test_access.py
"""
import base64
import os
import re
import socket
import ssl
import subprocess

from relais import (EDGE_BIN, SLOW, Agent, Edge, HttpsEdge, TcpService, UdpEcho, ca_ctx, echo_handler,
                    free_ports, recv_all, tcp, udp, stream_pair, upgrade, wait_for)

LAN = "127.0.0.2"       # a client the lists allow
STRANGER = "127.0.0.3"  # a client they deny
OTHER = "127.0.0.4"     # a client no list names


def http_get(port, host, src, path="/headers", ctx=None, auth=None, headers=()):
    """One GET from source address src (over TLS with ctx, with an
    Authorization field when auth): (status, head text, body).  The body
    is exactly what Content-Length says, not a byte more."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW,
                                 source_address=(src, 0))
    if ctx is not None:
        s = ctx.wrap_socket(s, server_hostname=host)
    fields = "".join("%s: %s\r\n" % kv for kv in headers)
    if auth:
        fields += "Authorization: %s\r\n" % auth
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n"
                   % (path, host, fields)).encode())
        data = recv_all(s)
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), data[:200]
    length = re.search(rb"\r\nContent-Length: (\d+)", head)
    if length:
        assert int(length.group(1)) == len(body), (head, body[-200:])
    return int(head.split()[1]), head.decode("latin-1"), body


def location(head):
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.lower() == "location":
            return v.strip()
    return None


def reloaded(edge):
    """Write edge.cfg, reload, and wait until the edge says it took it."""
    edge.write()
    mark = edge.proc.mark()
    edge.reload()
    edge.proc.wait_log("configuration reloaded", 5, since=mark)


def access_log(env):
    with open(os.path.join(env.dir, "access.log")) as f:
        return f.read()


# ---- HTTP and HTTPS -------------------------------------------------------------------


def test_access_lists_on_http_hosts(env, origin):
    """allow: only those clients; deny: everyone but those; the closest host
    pattern decides (an exact name over a wildcard).  A denied request gets
    403 and never reaches the service; a reload changes the lists for the
    next request."""
    o = "http://127.0.0.1:%d" % origin.http
    hosts = ["lan.test", "public.test", "a.w.test", "x.w.test", "open.test"]
    agent = Agent(env, "home", routes=[{"host": h, "to": o} for h in hosts])
    edge = Edge(env, agents=[agent.entry(hosts=hosts)], extra={"access": [
        {"hosts": ["lan.test"], "allow": ["127.0.0.2/31"]},
        {"hosts": ["public.test"], "deny": [STRANGER]},
        {"hosts": ["*.w.test"], "allow": [LAN]},
        {"hosts": ["x.w.test"], "allow": ["127.0.0.0/8"], "deny": [STRANGER]},
    ]})
    edge.start()
    agent.start(edge.url())
    port = edge.http_port
    want = {
        ("lan.test", LAN): 200, ("lan.test", STRANGER): 200,  # 127.0.0.2/31 holds .3
        ("lan.test", OTHER): 403,
        ("public.test", LAN): 200, ("public.test", STRANGER): 403,
        ("public.test", OTHER): 200,
        ("a.w.test", LAN): 200, ("a.w.test", OTHER): 403,
        ("x.w.test", OTHER): 200, ("x.w.test", STRANGER): 403,  # exact entry wins
        ("open.test", STRANGER): 200,
    }
    for (host, src), status in want.items():
        got, head, body = http_get(port, host, src)
        assert got == status, (host, src, head)
        if status == 200:
            assert b'"X-Forwarded-For", "%s"' % src.encode() in body, body[:300]
        else:
            assert b"X-Forwarded-For" not in body and b"403" in body, body[:300]
    log = access_log(env)
    assert '%s public.test "GET /headers" 403 ' % STRANGER in log, log[-2000:]

    # a reload: public.test now allows only LAN
    edge.cfg["access"][1] = {"hosts": ["public.test"], "allow": [LAN]}
    reloaded(edge)
    assert http_get(port, "public.test", OTHER)[0] == 403
    assert http_get(port, "public.test", LAN)[0] == 200


def test_access_list_on_https_and_passthrough(env, origin, pki):
    """Over HTTPS the request gets 403 (the edge terminates TLS); a
    passthrough name refuses the denied client's handshake, and the allowed
    one reaches its own TLS service."""
    from relais import TlsOrigin
    vault = TlsOrigin(pki, name="vault-origin", sans=["DNS:vault.test"])
    try:
        o = "http://127.0.0.1:%d" % origin.http
        routes = [{"host": "web.test", "to": o},
                  {"host": "vault.test", "to": "127.0.0.1:%d" % vault.port,
                   "tls": "passthrough"}]
        agent = Agent(env, "home", routes=routes)
        edge = HttpsEdge(env, agents=[agent.entry(hosts=["web.test", "vault.test"])],
                         extra={"access": [{"hosts": ["web.test", "vault.test"],
                                            "allow": [LAN]}]})
        edge.install("web.test")
        edge.start()
        agent.start(edge.url())
        wait_for(lambda: len(edge.routes()) == 2, 5, what="both routes")
        ctx = ca_ctx(pki)
        assert http_get(edge.https_port, "web.test", LAN, ctx=ctx)[0] == 200
        assert http_get(edge.https_port, "web.test", OTHER, ctx=ctx)[0] == 403
        status, _, body = http_get(edge.https_port, "vault.test", LAN, path="/p", ctx=ctx)
        assert status == 200 and b'"origin": "vault-origin"' in body, body[:300]
        mark = edge.proc.mark()
        try:
            http_get(edge.https_port, "vault.test", OTHER, ctx=ctx)
            raise AssertionError("a denied client completed a passthrough handshake")
        except (ssl.SSLError, ConnectionError):
            pass
        edge.proc.wait_log("the access list denies this client for vault.test", 5, since=mark)
        assert '%s vault.test "TLS -" 403 ' % OTHER in access_log(env)
    finally:
        vault.close()


# ---- streams --------------------------------------------------------------------------


def test_access_lists_on_tcp_and_udp_ports(env, closing):
    """A TCP client the list denies is closed before anything reaches the
    service, and logged with 403; a denied UDP client's datagrams are
    dropped.  Allowed clients are served as before."""
    svc = TcpService(echo_handler)
    closing(svc)
    echo = UdpEcho()
    closing(echo)
    tport = free_ports(2)
    uport = tport + 1
    a, e = stream_pair(env, [tcp(tport, svc.port), udp(uport, echo.port)])
    e.cfg["access"] = [{"ports": ["tcp/%d" % tport], "allow": [LAN]},
                       {"ports": ["udp/1-65535"], "allow": [OTHER]},
                       {"ports": ["udp/%d" % uport], "deny": [STRANGER]}]  # narrowest wins
    reloaded(e)

    def tcp_echo(src):
        s = socket.create_connection(("127.0.0.1", tport), timeout=5 * SLOW,
                                     source_address=(src, 0))
        try:
            s.sendall(b"ping")
            s.shutdown(socket.SHUT_WR)
            return recv_all(s)
        except OSError:  # reset, or closed before the shutdown: refused
            return b""
        finally:
            s.close()

    assert tcp_echo(LAN) == b"ping"
    before = len(svc.conns)
    assert tcp_echo(OTHER) == b""
    assert len(svc.conns) == before, "a denied client reached the service"
    assert '%s tcp/%d "TCP -" 403 ' % (OTHER, tport) in access_log(env)

    def udp_echo(src):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        s.settimeout(0.5 * SLOW)
        try:
            for _ in range(3):
                s.sendto(b"hi from " + src.encode(), ("127.0.0.1", uport))
                try:
                    return s.recvfrom(65536)[0]
                except socket.timeout:
                    continue
            return None
        finally:
            s.close()

    assert udp_echo(OTHER) == b"echo:hi from " + OTHER.encode()
    mark = e.proc.mark()
    assert udp_echo(STRANGER) is None
    e.proc.wait_log("udp/%d: client %s denied by its access list" % (uport, STRANGER), 5,
                    since=mark)
    assert not any(p[0] == STRANGER for p, _ in echo.seen)


# ---- redirects ------------------------------------------------------------------------


def test_redirection_hosts(env, origin, pki):
    """The edge answers a redirect host itself, with or without an agent:
    the configured code, the target URL, the request's path and query kept
    unless keep_path is false.  An exact redirect wins over an agent's
    wildcard route; a wildcard redirect over names an agent may serve is
    refused by -t.  Over HTTPS (with a certificate for the name) the
    redirect is the same."""
    o = "http://127.0.0.1:%d" % origin.http
    agent = Agent(env, "home", routes=[{"host": "app.test", "to": o},
                                       {"host": "*.old.test", "to": o}])
    edge = HttpsEdge(env, agents=[agent.entry(hosts=["app.test", "*.old.test"])], extra={
        "redirects": [
            {"host": "old.test", "to": "https://new.test"},
            {"host": "blog.old.test", "to": "https://new.test/blog/", "code": 308},
            {"host": "*.gone.test", "to": "http://new.test:8080/moved", "code": 302,
             "keep_path": False},
        ]})
    edge.install("old.test")
    edge.start()
    agent.start(edge.url())
    port = edge.http_port
    cases = [
        ("old.test", "/a/b?c=1&d", 301, "https://new.test/a/b?c=1&d"),
        ("old.test", "/", 301, "https://new.test/"),
        ("Old.Test.", "/?q", 301, "https://new.test/?q"),
        ("blog.old.test", "/post/1", 308, "https://new.test/blog/post/1"),
        ("x.gone.test", "/anything?x", 302, "http://new.test:8080/moved"),
        ("y.z.gone.test", "/", 302, "http://new.test:8080/moved"),
    ]
    for host, path, code, loc in cases:
        status, head, _ = http_get(port, host, LAN, path=path)
        assert status == code and location(head) == loc, (host, path, head)
    # absolute-form targets keep only their path
    s = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    s.sendall(b"GET http://old.test/abs?1 HTTP/1.1\r\nHost: old.test\r\n\r\n")
    head = recv_all(s).decode("latin-1")
    s.close()
    assert location(head) == "https://new.test/abs?1", head
    # over HTTPS, with a certificate for the name
    status, head, _ = http_get(edge.https_port, "old.test", LAN, path="/s", ctx=ca_ctx(pki))
    assert status == 301 and location(head) == "https://new.test/s", head
    # routes are untouched: the agent's wildcard serves what no exact
    # redirect names
    assert http_get(port, "app.test", LAN)[0] == 200
    assert http_get(port, "www.old.test", LAN)[0] == 200
    assert '%s old.test "GET /a/b?c=1&d" 301 ' % LAN in access_log(env)
    # a wildcard redirect over names an agent may serve: refused
    edge.cfg["redirects"].append({"host": "*.blog.old.test", "to": "https://new.test"})
    edge.write()
    out = subprocess.run([EDGE_BIN, "-t", "-c", edge.path], capture_output=True, timeout=30)
    assert out.returncode == 1, out
    assert (b"redirect '*.blog.old.test' covers names agent 'home' may serve ('*.old.test')"
            in out.stderr), out.stderr


# ---- passwords ------------------------------------------------------------------------


def passwd(password):
    """relais-edge passwd's hash of password (read from a pipe)."""
    out = subprocess.run([EDGE_BIN, "passwd"], input=password.encode(), capture_output=True,
                         timeout=30, check=True)
    h = out.stdout.decode().strip()
    assert h.startswith("$argon2id$v=19$m=4096,t=3,p=1$"), out
    return h


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def get_as(port, host, src, auth=None, path="/headers"):
    return http_get(port, host, src, path=path, auth=auth)


def test_passwords_on_http_hosts(env, origin):
    """users: asks for HTTP Basic authentication (401 with a realm), lets the
    right name and password in, and keeps the credentials from the service;
    satisfy: any lets a listed address in without one, satisfy: all wants
    both.  Ten wrong tries from a client get it 429 without a check, while
    other clients go on."""
    o = "http://127.0.0.1:%d" % origin.http
    hosts = ["secret.test", "either.test", "both.test"]
    agent = Agent(env, "home", routes=[{"host": h, "to": o} for h in hosts])
    users = [{"name": "alice", "password": passwd("hunter2")},
             {"name": "bob smith", "password": passwd("pässwörd with spaces")}]
    edge = Edge(env, agents=[agent.entry(hosts=hosts)], extra={"access": [
        {"hosts": ["secret.test"], "users": users},
        {"hosts": ["either.test"], "users": users, "allow": [LAN], "satisfy": "any"},
        {"hosts": ["both.test"], "users": users, "allow": [LAN]},
    ]})
    edge.start()
    agent.start(edge.url())
    port = edge.http_port
    good, bob = basic("alice", "hunter2"), basic("bob smith", "pässwörd with spaces")

    status, head, _ = get_as(port, "secret.test", OTHER)
    assert status == 401, head
    assert 'WWW-Authenticate: Basic realm="secret.test", charset="UTF-8"' in head, head
    for wrong in (basic("alice", "hunter3"), basic("mallory", "hunter2"), "Basic !!!",
                  "Bearer abc", basic("alice", "")):
        assert get_as(port, "secret.test", OTHER, wrong)[0] == 401, wrong
    status, head, body = get_as(port, "secret.test", OTHER, good)
    assert status == 200, head
    assert b"Authorization" not in body and b"hunter2" not in body, body[:400]
    assert get_as(port, "secret.test", OTHER, bob)[0] == 200
    assert get_as(port, "secret.test", OTHER, good.replace("Basic", "basic"))[0] == 200

    # satisfy: any: the address is enough; else the password.  A browser
    # that logged in elsewhere still sends its Basic credentials: they are
    # the edge's, never the service's; another scheme is the service's.
    status, _, body = get_as(port, "either.test", LAN, good)
    assert status == 200 and b"Authorization" not in body, body[:400]
    status, _, body = get_as(port, "either.test", LAN, "Bearer t0ken")
    assert status == 200 and b'"Authorization", "Bearer t0ken"' in body, body[:400]
    status, _, body = http_get(port, "either.test", LAN, auth=good,
                               headers=[("Authorization", "Bearer t0ken")])
    assert status == 200 and b'"Authorization", "Bearer t0ken"' in body, body[:400]
    assert b"Basic" not in body, body[:400]
    assert get_as(port, "either.test", OTHER)[0] == 401
    assert get_as(port, "either.test", OTHER, good)[0] == 200
    # satisfy: all: the address and the password
    assert get_as(port, "both.test", OTHER, good)[0] == 403
    assert get_as(port, "both.test", LAN)[0] == 401
    assert get_as(port, "both.test", LAN, good)[0] == 200

    # guessing: ten wrong tries (OTHER made 3 above: a malformed field is no
    # guess, and is not counted), then 429 without a check
    for i in range(7):
        assert get_as(port, "secret.test", OTHER, basic("alice", "guess%d" % i))[0] == 401
    status, head, _ = get_as(port, "secret.test", OTHER, good)
    assert status == 429 and "Retry-After: 60" in head, head
    edge.proc.wait_log("too many wrong passwords", 5)
    assert get_as(port, "secret.test", STRANGER, good)[0] == 200  # another client
    assert get_as(port, "secret.test", OTHER)[0] == 401  # asking costs nothing

    # many clients, one wrong try each: past 20 checks a second the answer
    # is 429 (Retry-After: 1) without a check; remembered logins go on
    statuses = []
    for i in range(60):
        status, head, _ = get_as(port, "secret.test", "127.0.1.%d" % (i + 1),
                                 basic("alice", "spray%d" % i))
        statuses.append(status)
        if status == 429:
            assert "Retry-After: 1\r\n" in head + "\r\n", head
    assert 429 in statuses and statuses[:10] == [401] * 10, statuses
    edge.proc.wait_log("the password checks of this second (20) are used up", 5)
    assert get_as(port, "secret.test", STRANGER, good)[0] == 200


def test_password_config_errors(env):
    """A hash relais-edge passwd did not make, or one too costly to check on
    the event loop, is refused at its line and column; so are users on a
    stream port and a bad satisfy."""
    ok = passwd("pw")
    costly = ok.replace("m=4096,t=3", "m=65536,t=3")
    cheap = ok.replace("m=4096,t=3", "m=8,t=1")
    passwd2 = ok.replace("m=4096,t=3", "m=8192,t=3")  # a cost of its own
    edge = Edge(env, extra={"access": [
        {"hosts": ["a.test"], "users": [{"name": "a", "password": "hunter2"}]},
        {"hosts": ["b.test"], "users": [{"name": "b", "password": costly}]},
        {"hosts": ["c.test"], "users": [{"name": "c:d", "password": ok}], "satisfy": "some"},
        {"ports": ["tcp/22"], "users": [{"name": "e", "password": ok}]},
        {"hosts": ["f.test"], "users": [{"name": "f", "password": cheap}]},
        {"hosts": ["g.test"], "allow": []},
        {"hosts": ["h.test"], "deny": ["::ffff:10.0.0.0/104"]},
        {"hosts": ["a.test"], "ports": ["tcp/22"], "deny": ["10.0.0.1"]},
        {"hosts": ["i.test"], "deny": ["::ffff:7f00:3", "0:0:0:0:0:ffff:127.0.0.3",
                                       "::ffff:0:0/96", "::/0"]},
        {"hosts": ["j.test"], "users": [{"name": "j", "password": ok},
                                        {"name": "k", "password": passwd2}]},
    ]})
    out = subprocess.run([EDGE_BIN, "-t", "-c", edge.path], capture_output=True, timeout=30)
    err = out.stderr.decode()
    assert out.returncode == 1, err
    assert "'::/0'" not in err, err  # all of IPv6 is fine
    for want in ("bad password hash: not an argon2id hash: make one with 'relais-edge passwd'",
                 "bad password hash: too costly to check for each login (m=65536,t=3,p=1; "
                 "at most m=8192,t=3,p=1)",
                 "bad password hash: too cheap to resist guessing if the file leaks (m=8,t=1; "
                 "at least m=4096,t=2)",
                 "'allow' is empty: list something, or leave it out",
                 "'::ffff:10.0.0.0/104' is an IPv4 address in IPv6 form: write it as IPv4",
                 "'::ffff:7f00:3' is an IPv4 address in IPv6 form",
                 "'0:0:0:0:0:ffff:127.0.0.3' is an IPv4 address in IPv6 form",
                 "'::ffff:0:0/96' is an IPv4 address in IPv6 form",
                 "the users of one list must have hashes of one cost "
                 "('$argon2id$v=19$m=4096,t=3,p=1$' as the first)",
                 "host 'a.test' is named by an access entry already",
                 "port range tcp/22-22 is named by an access entry already",
                 "bad user name 'c:d'", "bad satisfy 'some' (expected all or any)",
                 "'users' (HTTP passwords) cannot apply to stream 'ports'"):
        assert want in err, err
    # two different prompts' worth of input on a pipe: only the first line counts
    two = subprocess.run([EDGE_BIN, "passwd"], input=b"one\ntwo\n", capture_output=True,
                         timeout=30)
    assert two.returncode == 0 and two.stdout.startswith(b"$argon2id$")
    empty = subprocess.run([EDGE_BIN, "passwd"], input=b"\n", capture_output=True, timeout=30)
    assert empty.returncode == 1 and b"empty password" in empty.stderr


# ---- unknown hosts --------------------------------------------------------------------


def test_unknown_hosts(env, origin):
    """unknown_hosts: a page of your own for the 404, no answer at all
    (close, logged 444), or a 302 to a URL of yours.  A host an agent may
    serve but does not now still gets 502; served hosts are untouched."""
    page = os.path.join(env.dir, "404.html")
    with open(page, "wb") as f:
        f.write("<h1>Nothing here</h1> — relais\n".encode())
    o = "http://127.0.0.1:%d" % origin.http
    agent = Agent(env, "home", routes=[{"host": "app.test", "to": o}])
    edge = Edge(env, agents=[agent.entry(hosts=["app.test", "*.away.test"])],
                extra={"unknown_hosts": {"page": page}})
    edge.start()
    agent.start(edge.url())
    port = edge.http_port

    status, head, body = http_get(port, "nobody.test", OTHER)
    assert status == 404 and body == open(page, "rb").read(), (head, body)
    assert "text/html; charset=utf-8" in head
    assert http_get(port, "x.away.test", OTHER)[0] == 502
    assert http_get(port, "app.test", OTHER)[0] == 200

    edge.cfg["unknown_hosts"] = {"answer": "redirect", "to": "https://www.example.test/"}
    reloaded(edge)
    status, head, _ = http_get(port, "nobody.test", OTHER, path="/a?b")
    assert status == 302 and location(head) == "https://www.example.test/", head

    edge.cfg["unknown_hosts"] = {"answer": "close"}
    reloaded(edge)
    s = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: nobody.test\r\n\r\n")
        assert recv_all(s) == b""
    finally:
        s.close()
    assert http_get(port, "app.test", OTHER)[0] == 200
    assert '"GET /" 444 ' in access_log(env)

    # a page too large, or a redirect without its target, is refused
    big = os.path.join(env.dir, "big.html")
    with open(big, "wb") as f:
        f.write(b"x" * (64 * 1024 + 1))
    edge.cfg["unknown_hosts"] = {"page": big}
    edge.write()
    out = subprocess.run([EDGE_BIN, "-t", "-c", edge.path], capture_output=True, timeout=30)
    assert out.returncode == 1 and b"is larger than 65536 bytes" in out.stderr, out.stderr
    edge.cfg["unknown_hosts"] = {"answer": "redirect"}
    edge.write()
    out = subprocess.run([EDGE_BIN, "-t", "-c", edge.path], capture_output=True, timeout=30)
    assert out.returncode == 1 and b"'answer: redirect' needs 'to'" in out.stderr, out.stderr


def test_passwords_are_never_asked_for_over_plain_http(env, origin, pki):
    """With a certificate for the host, a plain http:// request to a host
    that needs a password is sent to https:// first (301), so the browser
    never sends the password in clear; over HTTPS the 401 comes."""
    o = "http://127.0.0.1:%d" % origin.http
    agent = Agent(env, "home", routes=[{"host": "pw.test", "to": o,
                                        "redirect_https": False}])
    edge = HttpsEdge(env, agents=[agent.entry(hosts=["pw.test"])], extra={"access": [
        {"hosts": ["pw.test"], "users": [{"name": "alice", "password": passwd("hunter2")}]}]})
    edge.install("pw.test")
    edge.start()
    agent.start(edge.url())
    good = basic("alice", "hunter2")
    for auth in (None, good):  # even with the right password: never over plain HTTP
        status, head, _ = http_get(edge.http_port, "pw.test", OTHER, path="/p?q", auth=auth)
        assert status == 301 and location(head) == "https://pw.test:%d/p?q" % edge.https_port, head
    ctx = ca_ctx(pki)
    assert http_get(edge.https_port, "pw.test", OTHER, ctx=ctx)[0] == 401
    assert http_get(edge.https_port, "pw.test", OTHER, ctx=ctx, auth=good)[0] == 200


# ---- reloads cut off what the new lists refuse ----------------------------------------


def echoes(s, data=b"still here"):
    """1 when s still carries data both ways (0: closed or reset)."""
    try:
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            d = s.recv(65536)
            if not d:
                return 0
            got += d
        return got == data
    except OSError:
        return 0


def test_reload_cuts_off_clients_the_new_lists_refuse(env, origin, closing):
    """Connections already past the check when a reload changes the lists:
    an upgraded HTTP connection (a WebSocket), a TCP stream and a UDP flow
    whose client the new list turns away are cut off at once; a logged-in
    upgraded connection goes on while its user and password stay, and is
    cut off when the password changes.  Allowed ones go on."""
    svc = TcpService(echo_handler)
    closing(svc)
    udp_svc = UdpEcho(prefix=b"")
    closing(udp_svc)
    tport = free_ports(2)
    uport = tport + 1
    ws = "http://127.0.0.1:%d" % origin.http
    alice = {"name": "alice", "password": passwd("hunter2")}
    a, e = stream_pair(env, [tcp(tport, svc.port), udp(uport, udp_svc.port)],
                       routes=[{"host": "ws.test", "to": ws}, {"host": "pw.test", "to": ws}],
                       hosts=["ws.test", "pw.test"])
    e.cfg["access"] = [{"hosts": ["pw.test"], "users": [alice]}]
    reloaded(e)
    port = e.http_port

    # upgraded to the origin's raw echo (GET /switch)
    ws_other = upgrade(port, "ws.test", "echo", closing, path="/switch", src=OTHER)
    ws_lan = upgrade(port, "ws.test", "echo", closing, path="/switch", src=LAN)
    pw_lan = upgrade(port, "pw.test", "echo", closing, path="/switch", src=LAN,
                     fields="Authorization: %s\r\n" % basic("alice", "hunter2"))
    tcp_other = socket.create_connection(("127.0.0.1", tport), timeout=5 * SLOW,
                                         source_address=(OTHER, 0))
    udp_other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_other.bind((OTHER, 0))
    udp_other.settimeout(1 * SLOW)
    for s in (tcp_other, udp_other):
        closing(s)
    for s in (ws_other, ws_lan, pw_lan, tcp_other):
        assert echoes(s)
    udp_other.sendto(b"one", ("127.0.0.1", uport))
    assert udp_other.recvfrom(100)[0] == b"one"

    e.cfg["access"] = [{"hosts": ["pw.test"], "users": [alice]},
                       {"hosts": ["ws.test"], "deny": [OTHER]},
                       {"ports": ["tcp/%d" % tport, "udp/%d" % uport], "deny": [OTHER]}]
    reloaded(e)
    assert not echoes(ws_other) and not echoes(tcp_other)
    assert echoes(ws_lan) and echoes(pw_lan)
    e.proc.wait_log("udp/%d: client %s: the access list no longer lets it in" % (uport, OTHER), 5)
    udp_other.sendto(b"two", ("127.0.0.1", uport))
    try:
        got = udp_other.recvfrom(100)[0]
        raise AssertionError("a denied UDP client still answered: %r" % got)
    except socket.timeout:
        pass
    assert '%s tcp/%d "TCP -" 403 ' % (OTHER, tport) in access_log(env)

    # alice's password changes: her open connection ends with it
    e.cfg["access"][0] = {"hosts": ["pw.test"], "users": [
        {"name": "alice", "password": passwd("hunter3")}]}
    reloaded(e)
    assert not echoes(pw_lan)
    assert echoes(ws_lan)
