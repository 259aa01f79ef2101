"""`relais-edge -t` and `relais-agent -t`: valid files pass, and every error is
reported as FILE:LINE:COL: message (1-based, pointing at the offending node)
with exit status 1.

Each bad case is literal YAML so that its positions can be read off the text;
{cert}, {key}, {pub}, {pub2} and {keyfile} are filled in on lines that are
not the one under test.
"""
import json
import os
import signal
import socket
import ssl
import time

import pytest

from relais import (AGENT_BIN, EDGE_BIN, SLOW, Agent, Edge, free_port, install_pair, run, wait_for,
                    yaml_dump)

EDGE_OK = """\
listen:
  http: 127.0.0.1:8080
  https: 127.0.0.1:8443
tunnel:
  listen: 127.0.0.1:8443
  hostname: edge.test
  path: /relais
  cert: {cert}
  key: {key}
admin:
  listen: 127.0.0.1:8081
agents:
  - name: home
    key: "{pub}"
    hosts: ["*.home.test", "home.test"]
    ports: ["tcp/2222", "udp/51820", "tcp/30000-30100"]
access_log: "-"
log_level: info
"""

AGENT_OK = """\
edge: wss://edge.test/relais
key: {keyfile}
edge_ca: {cert}
name: laptop
routes:
  - host: www.home.test
    to: http://127.0.0.1:8096
  - host: "*.apps.home.test"
    to: https://192.168.1.10:5001
    tls_verify: false
  - host: vault.home.test
    to: 127.0.0.1:8443
    tls: passthrough
streams:
  - listen: tcp/2222
    to: 127.0.0.1:22
    proxy_protocol: v2
  - listen: udp/51820
    to: 127.0.0.1:51820
"""

# (name, yaml, line, col, message substring)
EDGE_BAD = [
    ("unknown-key", """\
tunnel:
  listen: 127.0.0.1:8443
  cert: {cert}
  key: {key}
  colour: blue
""", 5, 3, "unknown key 'colour' in tunnel"),
    ("wrong-type", """\
tunnel:
  listen: 127.0.0.1:8443
  cert: {cert}
  key: {key}
agents:
  - name: home
    key: "{pub}"
    hosts: "*.home.test"
""", 8, 12, "'hosts' must be a list of strings"),
    ("bad-address", """\
tunnel:
  listen: 127.0.0.1:99999
  cert: {cert}
  key: {key}
""", 2, 11, "bad address '127.0.0.1:99999'"),
    ("bad-host-pattern", """\
tunnel:
  listen: 127.0.0.1:8443
  cert: {cert}
  key: {key}
agents:
  - name: home
    key: "{pub}"
    hosts: ["*.home.test", "www.*.test"]
""", 8, 28, "bad host pattern 'www.*.test'"),
    ("duplicate-agent", """\
tunnel:
  listen: 127.0.0.1:8443
  cert: {cert}
  key: {key}
agents:
  - name: home
    key: "{pub}"
  - name: home
    key: "{pub2}"
""", 8, 11, "duplicate agent 'home' (first at 6:11)"),
    ("bad-key", """\
tunnel:
  listen: 127.0.0.1:8443
  cert: {cert}
  key: {key}
agents:
  - name: home
    key: "ed25519:AAAA"
""", 7, 10, "bad public key (expected ed25519:<base64 of 32 bytes>)"),
    ("yaml-syntax", """\
tunnel:
  listen: 127.0.0.1:8443
  path: /relais: x
""", 3, 16, "mapping values are not allowed in this context"),
    # a missing key is reported at the mapping that lacks it (its first key)
    ("missing-required-key", """\
tunnel:
  listen: 127.0.0.1:8443
  key: {key}
""", 2, 3, "missing required key 'cert' in tunnel"),
    ("missing-tunnel", """\
agents: []
""", 1, 1, "missing required key 'tunnel' at top level"),
    # aliases would multiply the walk ("billion laughs"): refused at the anchor
    ("anchor-alias", """\
tunnel:
  listen: 127.0.0.1:8443
  cert: {cert}
  key: {key}
agents:
  - &a {{name: home, key: "{pub}", hosts: [&h x.home.test, *h, *h]}}
  - *a
""", 6, 5, "anchors and aliases are not supported ('&a')"),
    ("tunnel-key-readable-by-others", """\
tunnel:
  listen: 127.0.0.1:8443
  cert: {cert}
  key: {openkey}
""", 4, 3, "private key '{openkey}' is accessible by others (mode 644): chmod 600 it"),
    ("tunnel-cert-not-a-file", """\
tunnel:
  listen: 127.0.0.1:8443
  cert: /dev/null
  key: {key}
""", 3, 3, "cannot read '/dev/null': not a regular file"),
    ("acme-ca-not-a-certificate", """\
tunnel:
  listen: 127.0.0.1:8443
  hostname: edge.test
tls:
  cert_dir: {dir}/certs
  acme:
    directory: https://127.0.0.1:14000/dir
    ca: {notcert}
""", 8, 5, "cannot use '{notcert}' as 'ca': no PEM certificate in it"),
    ("streams-empty", """\
listen:
  streams: []
tunnel:
  listen: 127.0.0.1:8443
  cert: {cert}
  key: {key}
""", 2, 12, "listen.streams lists no address"),
    ("streams-twice", """\
listen:
  streams: ["127.0.0.1", "::1", "127.0.0.1"]
tunnel:
  listen: 127.0.0.1:8443
  cert: {cert}
  key: {key}
""", 2, 33, "'127.0.0.1' is listed twice in listen.streams"),
    ("streams-wildcard-overlap", """\
listen:
  streams: ["0.0.0.0", "::", "127.0.0.2"]
tunnel:
  listen: 127.0.0.1:8443
  cert: {cert}
  key: {key}
""", 2, 30, "'127.0.0.2' overlaps another address in listen.streams"),
    ("listen-wildcard-overlap", """\
listen:
  http: 127.0.0.1:8080
  https: "[::]:8080"
tunnel:
  listen: 127.0.0.1:8443
  cert: {cert}
  key: {key}
""", 3, 10, "listen.https uses the same address as listen.http ([::]:8080): a wildcard"),
    ("access-log-no-directory", """\
tunnel:
  listen: 127.0.0.1:8443
  cert: {cert}
  key: {key}
access_log: {dir}/nope/access.log
""", 5, 13, "access_log '{dir}/nope/access.log': no directory '{dir}/nope'"),
]

AGENT_BAD = [
    ("unknown-key", """\
edge: wss://edge.test/relais
key: {keyfile}
colour: blue
""", 3, 1, "unknown key 'colour' at top level"),
    ("wrong-type", """\
edge: wss://edge.test/relais
key: {keyfile}
routes: "www.home.test"
""", 3, 9, "'routes' must be a list of mappings"),
    ("bad-address", """\
edge: wss://edge.test/relais
key: {keyfile}
streams:
  - listen: tcp/2222
    to: 127.0.0.1:99999
""", 5, 9, "bad target '127.0.0.1:99999'"),
    ("bad-edge-url", """\
edge: wss://edge.test:0/relais
key: {keyfile}
""", 1, 7, "bad edge URL 'wss://edge.test:0/relais'"),
    ("bad-host-pattern", """\
edge: wss://edge.test/relais
key: {keyfile}
routes:
  - host: www.*.test
    to: http://127.0.0.1:8096
""", 4, 11, "bad host pattern 'www.*.test'"),
    ("duplicate-route", """\
edge: wss://edge.test/relais
key: {keyfile}
routes:
  - host: www.home.test
    to: http://127.0.0.1:8096
  - host: WWW.home.test
    to: http://127.0.0.1:8097
""", 6, 11, "duplicate route 'www.home.test' (first at 4:11)"),
    ("duplicate-stream", """\
edge: wss://edge.test/relais
key: {keyfile}
streams:
  - listen: tcp/2222
    to: 127.0.0.1:22
  - listen: tcp/2000-3000
    to: 127.0.0.1:22
""", 6, 13, "duplicate route 'tcp/2000-3000' (first at 4:13)"),
    ("yaml-syntax", """\
edge: wss://edge.test/relais
\tkey: {keyfile}
""", 2, 1, "found a tab character that violates indentation"),
    ("missing-required-key", """\
edge: wss://edge.test/relais
routes: []
""", 1, 1, "missing required key 'key' at top level"),
    ("alias", """\
edge: wss://edge.test/relais
key: {keyfile}
name: *x
""", 3, 7, "aliases are not supported ('*x')"),
    ("edge-ca-not-a-certificate", """\
edge: wss://edge.test/relais
key: {keyfile}
edge_ca: {notcert}
""", 3, 1, "cannot use '{notcert}' as 'edge_ca': no PEM certificate in it"),
    ("hsts-too-long", """\
edge: wss://edge.test/relais
key: {keyfile}
routes:
  - host: www.home.test
    to: http://127.0.0.1:8096
    hsts: 1234567890
""", 6, 11, "'hsts' must be true, false or a max-age in seconds below 1000000000"),
    ("agent-key-missing", """\
edge: wss://edge.test/relais
key: {dir}/nokey
name: "bad name"
""", 2, 6, "{dir}/nokey: No such file or directory"),
]


@pytest.fixture
def files(tmp_path, pki):
    """Values for the placeholders: a real cert/key pair and agent keys."""
    d = str(tmp_path)
    out = {"cert": pki.cert, "key": pki.key, "dir": d}
    for n, name in (("pub", "a.key"), ("pub2", "b.key")):
        r = run([AGENT_BIN, "keygen", os.path.join(d, name)])
        assert r.returncode == 0, r.stderr
        out[n] = r.stdout.strip()
    out["keyfile"] = os.path.join(d, "a.key")
    out["openkey"] = os.path.join(d, "open.key")  # the key, readable by all
    with open(pki.key) as f, open(out["openkey"], "w") as g:
        g.write(f.read())
    os.chmod(out["openkey"], 0o644)
    out["notcert"] = os.path.join(d, "notcert.pem")  # readable, not a certificate
    with open(out["notcert"], "w") as f:
        f.write("edge: wss://edge.test/relais\n")
    return out


def check(binary, files, name, text):
    path = os.path.join(files["dir"], name)
    with open(path, "w") as f:
        f.write(text.format(**files))
    return path, run([binary, "-t", "-c", path])


def assert_error(path, r, line, col, msg):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "configuration OK" not in r.stdout
    prefix = "%s:%d:%d: " % (path, line, col)
    lines = r.stderr.splitlines()
    assert any(x.startswith(prefix) and msg in x for x in lines), \
        "want %r + %r in:\n%s" % (prefix, msg, r.stderr)
    # every line printed is a positioned error
    assert all(x.startswith(path + ":") for x in lines), r.stderr


def test_edge_valid_config(files):
    _, r = check(EDGE_BIN, files, "edge.yaml", EDGE_OK)
    assert (r.returncode, r.stdout, r.stderr) == (0, "configuration OK\n", "")


def test_agent_valid_config(files):
    _, r = check(AGENT_BIN, files, "agent.yaml", AGENT_OK)
    assert (r.returncode, r.stdout, r.stderr) == (0, "configuration OK\n", "")


@pytest.mark.parametrize("name,text,line,col,msg", EDGE_BAD, ids=[c[0] for c in EDGE_BAD])
def test_edge_bad_config(files, name, text, line, col, msg):
    path, r = check(EDGE_BIN, files, "edge-%s.yaml" % name, text)
    assert_error(path, r, line, col, msg.format(**files))


@pytest.mark.parametrize("name,text,line,col,msg", AGENT_BAD, ids=[c[0] for c in AGENT_BAD])
def test_agent_bad_config(files, name, text, line, col, msg):
    path, r = check(AGENT_BIN, files, "agent-%s.yaml" % name, text)
    assert_error(path, r, line, col, msg.format(**files))


@pytest.mark.parametrize("binary", [EDGE_BIN, AGENT_BIN], ids=["edge", "agent"])
def test_missing_file(files, binary):
    path = os.path.join(files["dir"], "nope.yaml")
    r = run([binary, "-t", "-c", path])
    assert_error(path, r, 0, 0, "cannot open: No such file or directory")


@pytest.mark.parametrize("binary", [EDGE_BIN, AGENT_BIN], ids=["edge", "agent"])
def test_deep_nesting_is_refused_quickly(files, binary):
    """libyaml's scanner is quadratic in flow nesting: 64 levels at most."""
    path = os.path.join(files["dir"], "deep.yaml")
    with open(path, "w") as f:
        f.write("name: " + "[" * 200000 + "]" * 200000 + "\n")
    t0 = time.monotonic()
    r = run([binary, "-t", "-c", path])
    assert time.monotonic() - t0 < 1.0 * SLOW
    assert_error(path, r, 1, 70, "nesting deeper than 64 levels")


def test_all_errors_are_reported_in_file_order(files):
    path, r = check(EDGE_BIN, files, "edge-many.yaml", """\
tunnel:
  listen: 127.0.0.1:99999
  cert: {cert}
  key: {key}
agents:
  - name: home
    key: "ed25519:AAAA"
    colour: blue
""")
    assert r.returncode == 1
    assert [x.split(": ", 1)[0] for x in r.stderr.splitlines()] == \
        ["%s:2:11" % path, "%s:7:10" % path, "%s:8:5" % path], r.stderr


# ---- SIGHUP on running processes ------------------------------------------------


def bad_request(edge):
    """Send a malformed request to the edge's HTTP listener: a DEBUG line."""
    with socket.create_connection(("127.0.0.1", edge.http_port), timeout=5) as c:
        c.sendall(b"NOT HTTP\r\n\r\n")
        assert c.recv(100).startswith(b"HTTP/1.1 400")


def test_edge_reload_keeps_debug_logging(env):
    """-d wins over log_level (default info) after a reload too."""
    e = Edge(env).start()
    m = e.proc.mark()
    e.reload()
    e.proc.wait_log("configuration reloaded", since=m)
    bad_request(e)
    e.proc.wait_log("DEBUG: client 127.0.0.1: bad request", since=m)


def http_head(port, host):
    """The status line and headers of GET / for host on the edge's HTTP port."""
    with socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host.encode())
        out = b""
        while b"\r\n\r\n" not in out:
            d = c.recv(4096)
            if not d:
                break
            out += d
    return out.split(b"\r\n\r\n")[0].decode("latin-1")


def test_edge_reload_keeps_the_listeners_it_started_with(env):
    """listen.https added in a reload: the edge opened no such listener, so
    it must not start redirecting http:// to it (a 301, which browsers
    keep, to a closed port).  The reload says a restart applies it; the
    restart does."""
    host = "www.home.test"
    a = Agent(env, "home", routes=[{"host": host, "to": "http://127.0.0.1:%d" % free_port()}])
    certs = os.path.join(env.dir, "certs")
    os.makedirs(certs)
    install_pair(certs, host, *env.pki.issue_pair(host, ["DNS:" + host])[:2])
    e = Edge(env, agents=[a.entry(hosts=[host])], extra={"tls": {"cert_dir": certs}}).start()
    a.start(e.url())
    a.proc.wait_log("route %s accepted by the edge" % host)
    assert http_head(e.http_port, host).startswith("HTTP/1.1 502"), "no service: 502"

    https = free_port()
    e.cfg["listen"]["https"] = "127.0.0.1:%d" % https
    m = e.proc.mark()
    e.reload()
    e.proc.wait_log("listen.https changed: restart relais-edge to apply it", since=m)
    e.proc.wait_log("configuration reloaded", since=m)
    assert http_head(e.http_port, host).startswith("HTTP/1.1 502"), "redirected after the reload"

    e.restart()
    a.proc.wait_log("route %s accepted by the edge" % host, count=2)
    head = http_head(e.http_port, host)
    assert head.startswith("HTTP/1.1 301") and \
        "Location: https://%s:%d/" % (host, https) in head, head


def tunnel_fingerprint(port):
    """The agent endpoint's certificate (DER bytes)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert(binary_form=True)


def test_edge_reload_reads_tunnel_cert_again(env):
    """A renewed tunnel.cert/tunnel.key (same paths) is served after a
    reload; a pair that does not match is refused with its reason and the
    endpoint keeps the certificate it has; agents connect throughout."""
    crt, key = os.path.join(env.dir, "tunnel.crt"), os.path.join(env.dir, "tunnel.key")

    def put(pair):
        install_pair(env.dir, "tunnel", pair[0], pair[1])

    first = env.pki.issue_pair("tunnel-1", ["DNS:localhost", "IP:127.0.0.1"])
    put(first)
    a = Agent(env, "home", routes=[{"host": "www.home.test", "to": "http://127.0.0.1:9"}])
    e = Edge(env, agents=[a.entry(hosts=["www.home.test"])])
    e.cfg["tunnel"].update({"cert": crt, "key": key})
    e.write()
    e.start()
    a.start(e.url())
    old = tunnel_fingerprint(e.tunnel_port)

    second = env.pki.issue_pair("tunnel-2", ["DNS:localhost", "IP:127.0.0.1"])
    put(second)
    m = e.proc.mark()
    e.reload()
    e.proc.wait_log("configuration reloaded", since=m)
    new = tunnel_fingerprint(e.tunnel_port)
    assert new != old, "the old certificate is still served"
    with open(second[0]) as f:
        assert new == ssl.PEM_cert_to_DER_cert(f.read())

    # a key that does not match its certificate: refused, the renewed pair stays
    install_pair(env.dir, "tunnel", first[0], second[1])
    m = e.proc.mark()
    e.reload()
    e.proc.wait_log("ERROR: tunnel.cert/tunnel.key: the private key does not match the "
                    "certificate", since=m)
    e.proc.wait_log("the agent endpoint keeps its certificate", since=m)
    assert tunnel_fingerprint(e.tunnel_port) == new
    a.proc.stop()
    a.start(e.url())  # an agent still gets in
    assert e.proc.alive()


def test_edge_reload_with_aliases_keeps_running_with_the_old_config(env):
    """An alias-amplified edge.yaml once made the reload copy strings until the
    edge aborted; it is refused and the running configuration stays."""
    a = Agent(env, "home", routes=[{"host": "www.home.test", "to": "http://127.0.0.1:9"}])
    e = Edge(env, agents=[a.entry(hosts=["*.home.test"])]).start()
    a.start(e.url())
    lines = ["%s: %s" % (k, json.dumps(v)) for k, v in e.cfg.items() if k != "agents"]
    lines.append("agents:")
    lines.append("  - &a {name: home, key: \"%s\", hosts: [&h x.home.test%s]}"
                 % (a.pubkey, ", *h" * 5000))
    lines += ["  - *a"] * 5000
    with open(e.path, "w") as f:
        f.write("\n".join(lines) + "\n")
    at = len(lines) - 5000
    m = e.proc.mark()
    e.proc.signal(signal.SIGHUP)
    e.proc.wait_log("reload failed: configuration has errors; keeping the old one", since=m)
    assert "%s:%d:5: anchors and aliases are not supported ('&a')" % (e.path, at) \
        in e.log()[m:]
    assert e.proc.alive()
    assert e.agent_routes("home") == [("http", "www.home.test")]
    # the old configuration still admits the agent after it reconnects
    m = a.proc.mark()
    a.proc.signal(signal.SIGHUP)
    a.proc.wait_log("tunnel: connected to", since=m)
    wait_for(lambda: e.agent_routes("home") == [("http", "www.home.test")])


def write_agent(a):
    with open(a.path, "w") as f:
        f.write(yaml_dump(a.cfg))


def test_agent_reload_keeps_debug_logging(env):
    a = Agent(env, "home", extra={"log_level": "warn"})
    e = Edge(env, agents=[a.entry()]).start()
    a.start(e.url())
    m = a.proc.mark()
    a.proc.signal(signal.SIGHUP)
    a.proc.wait_log("tunnel: connected to", since=m)
    assert "DEBUG: tunnel: connecting to" in a.log()[m:]


def test_agent_reload_with_missing_key_keeps_the_old_config_and_key(env):
    a = Agent(env, "home", routes=[{"host": "www.home.test", "to": "http://127.0.0.1:9"}])
    e = Edge(env, agents=[a.entry(hosts=["*.home.test"])]).start()
    a.start(e.url())
    missing = os.path.join(env.dir, "missing.key")
    a.cfg["key"] = missing
    a.cfg["routes"].append({"host": "new.home.test", "to": "http://127.0.0.1:9"})
    write_agent(a)
    m = a.proc.mark()
    a.proc.signal(signal.SIGHUP)
    # reported at its key, as any file the configuration names
    a.proc.wait_log("%s:3:10: %s: No such file or directory" % (a.path, missing), since=m)
    a.proc.wait_log("reload failed: configuration has errors; keeping the old one", since=m)
    assert "configuration reloaded" not in a.log()[m:]
    # still connected with the old key and routes, no reconnect
    assert e.agent_routes("home") == [("http", "www.home.test")]
    assert a.proc.alive() and a.log()[m:].count("tunnel: connected to") == 0
    # fixed file: the reload goes through
    a.cfg["key"] = a.keyfile
    write_agent(a)
    a.proc.signal(signal.SIGHUP)
    a.proc.wait_log("configuration reloaded", since=m)
    wait_for(lambda: e.agent_routes("home") == [("http", "new.home.test"),
                                                ("http", "www.home.test")])


def test_agent_reload_with_a_new_key_reconnects_with_it(env):
    """Key rotation: the edge lists the new public key; a SIGHUP on the agent
    reconnects at once and authenticates with the new key."""
    a = Agent(env, "home", routes=[{"host": "www.home.test", "to": "http://127.0.0.1:9"}])
    newkey = os.path.join(env.dir, "new.key")
    r = run([AGENT_BIN, "keygen", newkey])
    assert r.returncode == 0, r.stderr
    newpub = r.stdout.strip()
    e = Edge(env, agents=[a.entry(hosts=["*.home.test"]),
                          {"name": "rotated", "key": newpub, "hosts": ["*.home.test"]}]).start()
    a.start(e.url())
    assert e.agent_routes("home") == [("http", "www.home.test")]
    a.cfg["key"] = newkey
    write_agent(a)
    m = a.proc.mark()
    a.proc.signal(signal.SIGHUP)
    a.proc.wait_log("new agent key %s" % newpub, since=m)
    a.proc.wait_log("tunnel: connected to", since=m)
    wait_for(lambda: e.routes() == [("rotated", "http", "www.home.test")],
             what=lambda: "routes %r" % e.routes())
