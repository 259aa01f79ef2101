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
import time

import pytest

from relais import AGENT_BIN, EDGE_BIN, SLOW, Agent, Edge, run, wait_for, yaml_dump

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
    assert_error(path, r, line, col, msg)


@pytest.mark.parametrize("name,text,line,col,msg", AGENT_BAD, ids=[c[0] for c in AGENT_BAD])
def test_agent_bad_config(files, name, text, line, col, msg):
    path, r = check(AGENT_BIN, files, "agent-%s.yaml" % name, text)
    assert_error(path, r, line, col, msg)


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
    a.proc.wait_log("reload failed: %s: No such file or directory; keeping the old "
                    "configuration and key" % missing, since=m)
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
