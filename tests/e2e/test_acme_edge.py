"""ACME inside relais-edge: a certificate is requested when an agent's
accepted route needs one, and for tunnel.hostname when tunnel.cert is not
set; HTTP-01 is answered on listen.http; the new certificate is served on
the TLS port without a restart.  Pebble (Debian) is the CA."""
import datetime
import os
import shutil
import socket
import ssl
import time

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from relais import Agent, Edge, Pebble, free_port, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("pebble") is None or shutil.which("pebble-challtestsrv") is None,
    reason="pebble is not installed (deploy/install-deps.sh installs it)")


def route(host, to="http://127.0.0.1:9", **kw):
    r = {"host": host, "to": to}
    r.update(kw)
    return r


def served_cert(port, sni, cafile=None):
    """The leaf certificate the edge serves for sni (DER), verified against cafile if given."""
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl._create_unverified_context()
    if not cafile:
        ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=sni) as t:
            return t.getpeercert(binary_form=True)


def acme_edge(env, agent, hosts, tunnel_hostname=None):
    """An edge whose HTTP-01 port is pebble's validation port."""
    e = Edge(env, agents=[agent.entry(hosts=hosts)])
    pebble = Pebble(env, e.http_port)
    e.https_port = free_port()
    e.cfg["listen"]["https"] = "127.0.0.1:%d" % e.https_port
    e.cert_dir = os.path.join(env.dir, "certs")
    e.cfg["tls"] = {"cert_dir": e.cert_dir,
                    "acme": {"directory": pebble.directory(), "ca": env.pki.ca,
                             "email": "admin@example.org", "accept_terms": True}}
    if tunnel_hostname:
        e.cfg["tunnel"]["hostname"] = tunnel_hostname
        del e.cfg["tunnel"]["cert"]
        del e.cfg["tunnel"]["key"]
    e.write()
    return e, pebble


def pebble_root(env, pebble):
    path = os.path.join(env.dir, "pebble-root.pem")
    with open(path, "w") as f:
        f.write(pebble.root())
    return path


def test_route_gets_a_certificate_and_it_is_served(env):
    a = Agent(env, "home", routes=[route("app.example.org")])
    e, pebble = acme_edge(env, a, ["app.example.org"])
    e.start()
    a.start(e.url())
    e.proc.wait_log("acme: app.example.org: certificate issued", 30)
    crt = os.path.join(e.cert_dir, "app.example.org.crt")
    assert oct(os.stat(os.path.join(e.cert_dir, "app.example.org.key")).st_mode & 0o777) == "0o600"
    root = pebble_root(env, pebble)
    # Picked up without a restart, verified against pebble's root.
    wait_for(lambda: _verifies(e.https_port, "app.example.org", root), 10,
             what="the ACME certificate served on the TLS port")
    assert os.path.exists(crt)


def test_redirect_host_gets_a_certificate_and_redirects_over_https(env):
    """An exact redirects: host needs no agent: the edge orders its
    certificate itself, serves it, and answers HTTPS with the redirect.
    """
    a = Agent(env, "home", routes=[route("app.example.org")])
    e, pebble = acme_edge(env, a, ["app.example.org"])
    e.cfg["redirects"] = [{"host": "old.example.org", "to": "https://app.example.org"}]
    e.write()
    e.start()
    e.proc.wait_log("acme: old.example.org: certificate issued", 30)
    root = pebble_root(env, pebble)
    wait_for(lambda: _verifies(e.https_port, "old.example.org", root), 10,
             what="the redirect host's certificate served")
    ctx = ssl.create_default_context(cafile=root)
    with socket.create_connection(("127.0.0.1", e.https_port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="old.example.org") as t:
            t.sendall(b"GET /x?y HTTP/1.1\r\nHost: old.example.org\r\nConnection: close\r\n\r\n")
            head = t.recv(4096)
    assert head.startswith(b"HTTP/1.1 301 ") and b"Location: https://app.example.org/x?y\r\n" in head, head


def _verifies(port, sni, root):
    try:
        served_cert(port, sni, root)
        return True
    except (ssl.SSLError, OSError):
        return False


def test_tunnel_hostname_gets_a_certificate(env):
    a = Agent(env, "home")
    e, pebble = acme_edge(env, a, ["x.example.org"], tunnel_hostname="edge.example.org")
    e.start()
    root = pebble_root(env, pebble)
    e.proc.wait_log("self-signed placeholder", 5)
    # The agent endpoint starts on the placeholder, then serves pebble's chain.
    e.proc.wait_log("acme: edge.example.org: certificate issued", 30)
    wait_for(lambda: _verifies(e.tunnel_port, "edge.example.org", root), 10,
             what="the tunnel endpoint serving the ACME certificate")


def test_mismatched_tunnel_pair_falls_back_to_the_placeholder(env):
    """A crash between ACME's two renames leaves a new key beside the old
    certificate: the edge still starts, says so, serves the placeholder on the
    agent endpoint, and ACME replaces it with a real certificate."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from test_acme import plant

    a = Agent(env, "home")
    e, pebble = acme_edge(env, a, ["x.example.org"], tunnel_hostname="edge.example.org")
    plant(e.cert_dir, "edge.example.org", datetime.datetime.utcnow() - datetime.timedelta(days=1),
          datetime.datetime.utcnow() + datetime.timedelta(days=60))
    key = os.path.join(e.cert_dir, "edge.example.org.key")
    with open(key, "wb") as f:
        f.write(ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    e.start()
    e.proc.wait_log("certificate for edge.example.org in %s is not usable (the private key "
                    "does not match the certificate" % e.cert_dir, 5)
    e.proc.wait_log("kept as .unusable; a self-signed placeholder stands in", 5)
    assert os.path.exists(key + ".unusable")  # the files it would overwrite are kept
    leaf = x509.load_der_x509_certificate(served_cert(e.tunnel_port, "edge.example.org"))
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == \
        "relais placeholder"
    e.proc.wait_log("acme: edge.example.org: requesting a certificate (self-signed placeholder)",
                    10)
    e.proc.wait_log("acme: edge.example.org: certificate issued", 30)
    root = pebble_root(env, pebble)
    wait_for(lambda: _verifies(e.tunnel_port, "edge.example.org", root), 10,
             what="the tunnel endpoint serving the ACME certificate")
    assert e.proc.alive()


def test_reload_turning_acme_off_stops_ordering(env, monkeypatch):
    """pebble's 9-second certificates would be renewed every 6 s (the minimum
    gap between two is cut to 1 s): after a reload without tls.acme the
    worker is stopped, nothing more is ordered, and the edge keeps serving.
    Adding tls.acme back asks for a restart."""
    monkeypatch.setenv("RELAIS_ACME_MIN_INTERVAL_MS", "1000")
    a = Agent(env, "home", routes=[route("app.example.org")])
    e = Edge(env, agents=[a.entry(hosts=["app.example.org"])])
    pebble = Pebble(env, e.http_port, validity=9, authz_reuse=100)
    e.https_port = free_port()
    e.cfg["listen"]["https"] = "127.0.0.1:%d" % e.https_port
    e.cert_dir = os.path.join(env.dir, "certs")
    acme = {"directory": pebble.directory(), "ca": env.pki.ca, "email": "admin@example.org",
            "accept_terms": True}
    e.cfg["tls"] = {"cert_dir": e.cert_dir, "acme": acme}
    e.write()
    e.start()
    a.start(e.url())
    e.proc.wait_log("acme: app.example.org: certificate issued", 30)
    issued = served_cert(e.https_port, "app.example.org")

    mark = e.proc.mark()
    del e.cfg["tls"]["acme"]
    e.reload()
    e.proc.wait_log("acme: tls.acme removed: the ACME client is stopped", 5, since=mark)
    time.sleep(10)
    tail = e.log()[mark:]
    assert "requesting a certificate" not in tail, tail
    assert e.proc.alive() and e.routes() == [("home", "http", "app.example.org")]
    assert served_cert(e.https_port, "app.example.org") == issued

    mark = e.proc.mark()
    e.cfg["tls"]["acme"] = acme
    e.reload()
    e.proc.wait_log("acme: tls.acme was added: restart relais-edge to start the ACME client",
                    5, since=mark)
    e.proc.wait_log("configuration reloaded", 5, since=mark)
    time.sleep(1)
    assert "requesting a certificate" not in e.log()[mark:]
    assert e.proc.alive()


def _acme_to_nowhere(env, agents):
    """An edge with ACME towards a CA that refuses connections: every order
    fails at once, and the log shows which hosts were asked for."""
    e = Edge(env, agents=agents)
    e.cert_dir = os.path.join(env.dir, "certs")
    e.cfg["tls"] = {"cert_dir": e.cert_dir,
                    "acme": {"directory": "https://127.0.0.1:%d/dir" % free_port(),
                             "ca": env.pki.ca, "accept_terms": True}}
    e.write()
    return e.start()


def test_agent_wildcard_capped_at_max_certificates(env, monkeypatch):
    """An agent allowed *.x.test declaring 60 routes gets at most 50 hosts
    managed by ACME (agents[].max_certificates, default 50): the other 10
    routes are accepted, with a log line and no order; another agent's host
    still gets its certificate requested."""
    monkeypatch.setenv("RELAIS_ACME_BACKOFF_MS", "600000")
    wild = Agent(env, "wild", routes=[route("h%d.x.test" % i) for i in range(60)])
    other = Agent(env, "other", routes=[route("app.example.org")])
    e = _acme_to_nowhere(env, [wild.entry(hosts=["*.x.test"]),
                               other.entry(hosts=["app.example.org"])])
    wild.start(e.url())
    wait_for(lambda: len(e.routes()) == 60, 10, what="60 routes")
    e.proc.wait_log("no certificate requested: agent 'wild' is at its limit of 50 "
                    "(agents[].max_certificates)", 5, count=10)
    other.start(e.url())
    e.proc.wait_log("acme: app.example.org: requesting a certificate (none yet)", 10)
    e.proc.wait_log(".x.test: requesting a certificate", 10, count=50)
    time.sleep(1)
    log = e.log()
    assert log.count(".x.test: requesting a certificate") == 50, log[-3000:]
    assert log.count("is at its limit of 50") == 10
    for i in range(50, 60):
        assert "acme: h%d.x.test: no certificate requested: agent 'wild'" % i in log
        assert "h%d.x.test: requesting" % i not in log


def test_max_certificates_zero_and_routes_gone(env, monkeypatch):
    """max_certificates: 0 orders nothing for that agent.  Hosts that were
    never issued stop counting once their routes are gone: an agent that
    comes back with other names gets those managed."""
    monkeypatch.setenv("RELAIS_ACME_BACKOFF_MS", "600000")
    none = Agent(env, "none", routes=[route("n.y.test")])
    wild = Agent(env, "wild", routes=[route("a.x.test"), route("b.x.test")])
    entry = wild.entry(hosts=["*.x.test"])
    entry["max_certificates"] = 2
    zero = none.entry(hosts=["*.y.test"])
    zero["max_certificates"] = 0
    e = _acme_to_nowhere(env, [entry, zero])
    none.start(e.url())
    e.proc.wait_log("acme: n.y.test: no certificate requested: agent 'none' is at its limit "
                    "of 0", 5)
    wild.start(e.url())
    e.proc.wait_log("acme: b.x.test: requesting a certificate", 10)
    wild.proc.stop()
    wait_for(lambda: ("wild", "http", "a.x.test") not in e.routes(), 5, what="routes gone")
    wild.cfg["routes"] = [route("c.x.test"), route("d.x.test"), route("e.x.test")]
    time.sleep(6)  # the next certificate rescan forgets a.x.test and b.x.test
    mark = e.proc.mark()
    wild.start(e.url())
    e.proc.wait_log("acme: c.x.test: requesting a certificate", 10, since=mark)
    e.proc.wait_log("acme: d.x.test: requesting a certificate", 10, since=mark)
    e.proc.wait_log("acme: e.x.test: no certificate requested: agent 'wild' is at its limit "
                    "of 2", 10, since=mark)
    assert "n.y.test: requesting" not in e.log()


def test_reconnecting_agent_does_not_shorten_the_retry_wait(env, monkeypatch):
    """A request that failed is retried after its wait (10 min here), also
    when the agent reconnects meanwhile: the host is dropped ~5 s after its
    route goes (it stops counting against max_certificates), but its wait is
    remembered, so each reconnect does not order again at once (an agent
    in a restart loop would otherwise spend the CA's failed-validation limit
    for the whole edge)."""
    monkeypatch.setenv("RELAIS_ACME_BACKOFF_MS", "600000")
    a = Agent(env, "home", routes=[route("app.x.test")])
    e = _acme_to_nowhere(env, [a.entry(hosts=["*.x.test"])])
    for i in range(3):
        mark = e.proc.mark()
        a.start(e.url())
        wait_for(lambda: ("home", "http", "app.x.test") in e.routes(), 5, what="the route")
        if i == 0:
            e.proc.wait_log("acme: app.x.test: certificate request failed", 10, since=mark)
        else:
            time.sleep(1.5)  # an order would come at once
        a.proc.stop()
        wait_for(lambda: ("home", "http", "app.x.test") not in e.routes(), 5,
                 what="the route gone")
        e.proc.wait_log("acme: app.x.test: no route needs it any more", 10, since=mark)
    log = e.log()
    assert log.count("acme: app.x.test: requesting a certificate") == 1, log[-3000:]
