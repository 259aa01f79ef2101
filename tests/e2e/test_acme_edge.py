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
    e.proc.wait_log("replacing it with a self-signed placeholder", 5)
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
