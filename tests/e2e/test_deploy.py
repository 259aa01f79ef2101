"""Deployment: `make install`, the systemd units and deploy/install-{edge,agent}.sh.

The install scripts run against a temporary root directory (--root), never
the machine's own /etc, users or systemd.  The configurations they write are
then checked with `-t` and used to run a real edge and agent on loopback.
"""
import hashlib
import http.server
import os
import re
import stat
import subprocess
import threading
import urllib.request

import pytest

from relais import AGENT_BIN, BUILD, EDGE_BIN, Proc, free_port, run, wait_for

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.path.abspath(BUILD)
PUBKEY_RE = re.compile(r"ed25519:[A-Za-z0-9+/]{43}=")
HOSTS = "*.deploy.test,deploy.test"


def script(name, root, *args, dry=False):
    argv = [os.path.join(SRC, "deploy", name), "--root", root, "--no-build", "--build-dir", BUILD_DIR]
    if dry:
        argv.append("--dry-run")
    r = run(argv + list(args))
    assert r.returncode == 0, "%s failed\n%s\n%s" % (name, r.stdout, r.stderr)
    return r.stdout


def install_edge(root, dry=False):
    return script("install-edge.sh", root, "--hostname", "localhost", dry=dry)


def install_agent(root, dry=False, ca_root=None):
    ca = os.path.join(ca_root or root, "etc/relais/tunnel.crt")
    return script("install-agent.sh", root, "--edge", "wss://localhost/relais", "--name", "home",
                  "--hosts", HOSTS, "--edge-ca", ca, dry=dry)


def snapshot(root):
    """Every path under root with its mode, size, mtime and content hash."""
    snap = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            h = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    h = hashlib.sha256(f.read()).hexdigest()
            snap[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, h)
    return snap


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def pasted_lines(out):
    m = re.search(r'^---- paste under "agents:" in /etc/relais/edge.yaml on the edge ----\n'
                  r"(.*?)^---- end ----$", out, re.S | re.M)
    assert m, out
    return m.group(1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("deploy") / "root")
    return root, install_edge(root), install_agent(root)


def test_files_land_where_expected_with_the_right_modes(installed):
    root, _, _ = installed
    expect = {
        "usr/local/bin/relais-edge": 0o755,
        "usr/local/bin/relais-agent": 0o755,
        "usr/local/share/man/man8/relais-edge.8": 0o644,
        "usr/local/share/man/man8/relais-agent.8": 0o644,
        "usr/local/share/relais/examples/edge.example.yaml": 0o644,
        "usr/local/share/relais/examples/agent.example.yaml": 0o644,
        "usr/local/lib/systemd/system/relais-edge.service": 0o644,
        "usr/local/lib/systemd/system/relais-agent.service": 0o644,
        "etc/relais": 0o755,
        "etc/relais/edge.yaml": 0o640,
        "etc/relais/tunnel.crt": 0o644,
        "etc/relais/tunnel.key": 0o600,
        "etc/relais/agent.yaml": 0o640,
        "etc/relais/agent.key": 0o600,
        "etc/relais/edge-ca.pem": 0o644,
        "var/lib/relais": 0o750,
        "var/log/relais": 0o750,
    }
    for rel, m in expect.items():
        p = os.path.join(root, rel)
        assert os.path.exists(p), rel
        assert mode(p) == m, "%s: %o, expected %o" % (rel, mode(p), m)
    for b in ("relais-edge", "relais-agent"):
        with open(os.path.join(BUILD_DIR, b), "rb") as f1, \
                open(os.path.join(root, "usr/local/bin", b), "rb") as f2:
            assert f1.read() == f2.read(), b
    # the units run the installed binaries
    unit = open(os.path.join(root, "usr/local/lib/systemd/system/relais-edge.service")).read()
    assert "\nExecStart=/usr/local/bin/relais-edge -c /etc/relais/edge.yaml\n" in unit
    # nothing else outside these trees
    tops = {p.split(os.sep)[0] for p in snapshot(root)}
    assert tops == {"usr", "etc", "var"}, tops


def test_users_owners_and_systemd_are_printed_not_run_with_root(installed):
    root, edge_out, agent_out = installed
    for out, unit in ((edge_out, "relais-edge"), (agent_out, "relais-agent")):
        assert "skipped (--root): useradd --system --user-group" in out, out
        assert "skipped (--root): systemctl enable --now %s" % unit in out, out
    assert "skipped (--root): chown relais:relais %s/etc/relais/agent.key" % root in agent_out
    assert "skipped (--root): chown relais:relais %s/etc/relais/tunnel.key" % root in edge_out


def test_second_run_changes_nothing_and_keeps_configs_and_keys(installed):
    root, _, first_agent_out = installed
    # an administrator's edits must survive a re-run
    for name in ("edge.yaml", "agent.yaml"):
        with open(os.path.join(root, "etc/relais", name), "a") as f:
            f.write("# edited by the administrator\n")
    before = snapshot(root)
    edge_out = install_edge(root)
    agent_out = install_agent(root)
    assert snapshot(root) == before
    assert "keeping the existing /etc/relais/edge.yaml" in edge_out, edge_out
    assert "keeping the existing /etc/relais/tunnel.crt and /etc/relais/tunnel.key" in edge_out
    assert "keeping the existing /etc/relais/agent.yaml" in agent_out, agent_out
    assert "keeping the existing key /etc/relais/agent.key" in agent_out
    assert "installed binaries and units are up to date" in agent_out
    assert pasted_lines(agent_out) == pasted_lines(first_agent_out)
    for name in ("edge.yaml", "agent.yaml"):
        assert open(os.path.join(root, "etc/relais", name)).read().endswith(
            "# edited by the administrator\n")


def test_dry_run_writes_nothing(tmp_path, installed):
    fresh = str(tmp_path / "fresh")
    edge_out = install_edge(fresh, dry=True)
    agent_out = install_agent(fresh, dry=True, ca_root=installed[0])
    assert not os.path.exists(fresh)
    assert "would run: make -C %s" % SRC in edge_out and "install-files" in edge_out
    assert "would run: openssl req -x509" in edge_out
    assert "would write /etc/relais/edge.yaml (mode 0640):" in edge_out
    assert "/relais-agent keygen %s/etc/relais/agent.key" % fresh in agent_out, agent_out
    assert "would write /etc/relais/agent.yaml" in agent_out
    assert "    | edge: wss://localhost/relais" in agent_out
    # DESTDIR in the environment means the same as --root
    r = run([os.path.join(SRC, "deploy/install-edge.sh"), "--dry-run", "--no-build", "--build-dir", BUILD_DIR,
             "--hostname", "localhost"], env=dict(os.environ, DESTDIR=fresh))
    assert r.returncode == 0, r.stderr
    assert "installing into %s\n" % fresh in r.stdout and "skipped (--root): systemctl" in r.stdout
    assert not os.path.exists(fresh)
    # on an installed tree, too
    root = installed[0]
    before = snapshot(root)
    install_edge(root, dry=True)
    out = install_agent(root, dry=True)
    assert snapshot(root) == before
    assert PUBKEY_RE.search(pasted_lines(out))


def test_printed_edge_lines_hold_the_agent_key_and_pass_the_edge_check(installed, tmp_path):
    root, _, agent_out = installed
    key = os.path.join(root, "etc/relais/agent.key")
    pub = run([AGENT_BIN, "pubkey", key]).stdout.strip()
    assert PUBKEY_RE.fullmatch(pub), pub
    lines = pasted_lines(agent_out)
    assert lines == ('  - name: home\n    key: "%s"\n    hosts: ["*.deploy.test", "deploy.test"]\n'
                     % pub), lines
    assert "public key of /etc/relais/agent.key: %s" % pub in agent_out
    edge_yaml = edge_config(root, lines, tmp_path)
    r = run([EDGE_BIN, "-t", "-c", edge_yaml])
    assert (r.returncode, r.stdout) == (0, "configuration OK\n"), r.stderr
    # the check is real: a damaged key in the same place is refused
    bad = os.path.join(str(tmp_path), "bad.yaml")
    with open(edge_yaml) as f, open(bad, "w") as g:
        g.write(f.read().replace(pub, pub[:-6] + "A===="))
    r = run([EDGE_BIN, "-t", "-c", bad])
    assert r.returncode == 1 and "bad public key" in r.stderr, r.stderr


def edge_config(root, lines, tmp_path, http_port=80, tunnel_port=443):
    """The starter edge.yaml with the agent's lines pasted under agents:, its
    /etc/relais and /var/log/relais paths moved into the test's directories."""
    text = open(os.path.join(root, "etc/relais/edge.yaml")).read()
    assert "\nagents:\n" in text
    text = text.replace("\nagents:\n", "\nagents:\n" + lines, 1)
    text = text.replace("/etc/relais/", os.path.join(root, "etc/relais") + "/")
    text = text.replace("/var/log/relais/", str(tmp_path) + "/")
    text = text.replace("0.0.0.0:80\n", "127.0.0.1:%d\n" % http_port)
    text = text.replace("0.0.0.0:443\n", "127.0.0.1:%d\n" % tunnel_port)
    path = os.path.join(str(tmp_path), "edge.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


class Origin(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"origin says hi to " + self.headers["Host"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_the_installed_configurations_carry_a_request(installed, tmp_path):
    """Edge and agent run on the files the scripts wrote (the self-signed
    tunnel certificate as the agent's edge_ca), with only the ports and the
    directories changed, plus one route."""
    root, _, agent_out = installed
    http_port, tunnel_port = free_port(), free_port()
    origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    agent_yaml = os.path.join(str(tmp_path), "agent.yaml")
    text = open(os.path.join(root, "etc/relais/agent.yaml")).read()
    text = text.replace("/etc/relais/", os.path.join(root, "etc/relais") + "/")
    text = text.replace("wss://localhost/relais", "wss://localhost:%d/relais" % tunnel_port)
    text = text.replace("\nroutes:\n", "\nroutes:\n  - host: app.deploy.test\n    to: http://127.0.0.1:%d\n"
                        % origin.server_address[1], 1)
    with open(agent_yaml, "w") as f:
        f.write(text)
    edge_yaml = edge_config(root, pasted_lines(agent_out), tmp_path, http_port, tunnel_port)
    edge = Proc([EDGE_BIN, "-c", edge_yaml], os.path.join(str(tmp_path), "edge.log"))
    agent = None
    try:
        edge.wait_log("agent endpoint")
        agent = Proc([AGENT_BIN, "-c", agent_yaml], os.path.join(str(tmp_path), "agent.log"))

        def fetch():
            req = urllib.request.Request("http://127.0.0.1:%d/" % http_port,
                                         headers={"Host": "app.deploy.test"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.read()
            except OSError:
                return None
        assert wait_for(fetch, timeout=10, what="a response through the tunnel") == \
            b"origin says hi to app.deploy.test"
        wait_for(lambda: os.path.exists(os.path.join(str(tmp_path), "access.log")) and
                 "app.deploy.test" in open(os.path.join(str(tmp_path), "access.log")).read(),
                 what="the access log line")
    finally:
        if agent:
            agent.stop()
        edge.stop()
        origin.shutdown()


def test_install_scripts_refuse_bad_arguments(tmp_path):
    r = run([os.path.join(SRC, "deploy/install-agent.sh"), "--root", str(tmp_path / "r"), "--no-build",
             "--name", "bad name"])
    assert r.returncode == 1 and "bad --name" in r.stderr
    r = run([os.path.join(SRC, "deploy/install-edge.sh"), "--bogus"])
    assert r.returncode == 2 and "usage:" in r.stderr
    assert not os.path.exists(str(tmp_path / "r"))


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    """make install with PREFIX pointing into a temporary directory, so that
    the units' ExecStart binaries and the man pages they name exist."""
    d = str(tmp_path_factory.mktemp("units"))
    r = run(["make", "-C", SRC, "--no-print-directory", "-s", "BUILD=" + BUILD_DIR, "PREFIX=" + d + "/usr",
             "SYSTEMDUNITDIR=" + d + "/units", "install-files"])
    assert r.returncode == 0, r.stdout + r.stderr
    return d


@pytest.mark.parametrize("unit", ["relais-edge", "relais-agent"])
def test_systemd_analyze_verify(units, unit):
    path = os.path.join(units, "units", unit + ".service")
    text = open(path).read()
    assert "ExecStart=%s/usr/bin/%s -c /etc/relais/" % (units, unit) in text
    env = dict(os.environ, MANPATH=os.path.join(units, "usr/share/man"))
    r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True,
                       env=env, cwd=units, timeout=60)
    # any warning (unknown key, bad value, missing binary or man page) fails
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"Overall exposure level for %s.service: [01]\.\d OK" % unit, r.stdout), r.stdout


@pytest.mark.parametrize("unit", ["relais-edge", "relais-agent"])
def test_unit_settings(unit):
    text = open(os.path.join(SRC, "deploy", unit + ".service")).read()
    kv = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            kv.setdefault(k, []).append(v)
    cfg = "/etc/relais/%s.yaml" % unit.split("-")[1]
    assert kv["User"] == ["relais"] and kv["Group"] == ["relais"]
    assert kv["ExecStartPre"] == ["/usr/local/bin/%s -t -c %s" % (unit, cfg)]
    assert kv["ExecStart"] == ["/usr/local/bin/%s -c %s" % (unit, cfg)]
    assert kv["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert kv["Restart"] == ["always"]
    if unit == "relais-edge":
        assert kv["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
        assert kv["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    else:
        assert kv["CapabilityBoundingSet"] == [""] and kv.get("AmbientCapabilities", [""]) == [""]
    for k, v in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                 "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
                 "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
                 "ProtectControlGroups": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
                 "SystemCallArchitectures": "native", "LockPersonality": "yes",
                 "MemoryDenyWriteExecute": "yes", "RestrictNamespaces": "yes",
                 "RestrictRealtime": "yes", "UMask": "0077", "StateDirectory": "relais",
                 "ConfigurationDirectory": "relais", "LogsDirectory": "relais"}.items():
        assert kv.get(k) == [v], k
    assert "@system-service" in kv["SystemCallFilter"]
