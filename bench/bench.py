"""relais benchmark: direct nginx origin vs nginx one-hop proxy vs relais.

Usage: bench.py BUILD SECONDS CONNECTIONS (see bench/run.sh).
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BUILD, DUR, CONNS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
HOST = "bench.test"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def sh(*a, **kw):
    return subprocess.run(a, check=True, capture_output=True, text=True, **kw)


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("bench: port %d did not open" % port)


class RSS(threading.Thread):
    """Samples VmRSS of some pids; keeps the peak (VmHWM is read at the end too)."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = {p: 0 for p in pids}
        self.stop = False

    def run(self):
        while not self.stop:
            for p in self.pids:
                try:
                    with open("/proc/%d/status" % p) as f:
                        for line in f:
                            if line.startswith(("VmHWM", "VmRSS")):
                                self.peak[p] = max(self.peak[p], int(line.split()[1]))
                except OSError:
                    pass
            time.sleep(0.2)


def wrk(port, path):
    out = subprocess.run(["wrk", "-t2", "-c%d" % CONNS, "-d%ds" % DUR, "--latency",
                          "-H", "Host: " + HOST, "http://127.0.0.1:%d%s" % (port, path)],
                         capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def lat(pct):
        m = re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)" % pct, out)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": lat(50), "p99": lat(99),
            "errors": (int(errors.group(1)) if errors else 0), "sockerr": sock.group(1) if sock else ""}


def bulk(port, path, rounds=5):
    best = 0.0
    for _ in range(rounds):
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}",
                              "-H", "Host: " + HOST, "http://127.0.0.1:%d%s" % (port, path)],
                             capture_output=True, text=True).stdout.split()
        if int(out[1]) != 64 << 20:
            raise SystemExit("bench: short bulk download on port %d" % port)
        best = max(best, float(out[0]) / (1 << 20))
    return best


def main():
    d = tempfile.mkdtemp(prefix="relais-bench.")
    procs = []
    try:
        os.chmod(d, 0o755)  # nginx workers run unprivileged
        www = os.path.join(d, "www")
        os.makedirs(www)
        with open(os.path.join(www, "1k"), "wb") as f:
            f.write(os.urandom(1024))
        with open(os.path.join(www, "64m"), "wb") as f:
            f.write(os.urandom(64 << 20))
        p_origin, p_nginx, p_http, p_tunnel = free_port(), free_port(), free_port(), free_port()

        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  client_body_temp_path %(d)s/cb; proxy_temp_path %(d)s/pt; fastcgi_temp_path %(d)s/ft;
  uwsgi_temp_path %(d)s/ut; scgi_temp_path %(d)s/st;
  server { listen 127.0.0.1:%(o)d; root %(www)s; }
  upstream origin { server 127.0.0.1:%(o)d; keepalive 64; }
  server {
    listen 127.0.0.1:%(p)d;
    location / { proxy_pass http://origin; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_set_header Host $host;
                 proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }
  }
}
""" % {"d": d, "o": p_origin, "p": p_nginx, "www": www})
        # One nginx master+worker serves both the origin and the proxy: the
        # proxy server block is the one-hop baseline relais is compared with.
        procs.append(subprocess.Popen(["nginx", "-c", conf, "-g", "daemon off;"],
                                      stderr=subprocess.DEVNULL))
        wait_port(p_origin)
        wait_port(p_nginx)

        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", d + "/ca.key", "-out", d + "/ca.crt", "-days", "1", "-subj", "/CN=bench CA")
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", d + "/t.key", "-out", d + "/t.csr", "-subj", "/CN=localhost")
        with open(d + "/ext", "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        sh("openssl", "x509", "-req", "-in", d + "/t.csr", "-CA", d + "/ca.crt", "-CAkey", d + "/ca.key",
           "-CAcreateserial", "-days", "1", "-out", d + "/t.crt", "-extfile", d + "/ext")
        os.chmod(d + "/t.key", 0o600)
        pub = sh(BUILD + "/relais-agent", "keygen", d + "/a.key").stdout.strip()
        with open(d + "/edge.yaml", "w") as f:
            f.write("""listen: {http: "127.0.0.1:%d"}
tunnel: {listen: "127.0.0.1:%d", path: /relais, cert: %s/t.crt, key: %s/t.key}
agents: [{name: bench, key: "%s", hosts: ["%s"]}]
log_level: warn
""" % (p_http, p_tunnel, d, d, pub, HOST))
        with open(d + "/agent.yaml", "w") as f:
            f.write("""edge: wss://localhost:%d/relais
key: %s/a.key
edge_ca: %s/ca.crt
log_level: warn
routes: [{host: "%s", to: "http://127.0.0.1:%d"}]
""" % (p_tunnel, d, d, HOST, p_origin))
        dbg = ["-d"] if os.environ.get("BENCH_DEBUG") else []
        edge = subprocess.Popen([BUILD + "/relais-edge", "-c", d + "/edge.yaml"] + dbg,
                                stderr=open(d + "/edge.log", "w"))
        procs.append(edge)
        wait_port(p_http)
        agent = subprocess.Popen([BUILD + "/relais-agent", "-c", d + "/agent.yaml"] + dbg,
                                 stderr=open(d + "/agent.log", "w"))
        procs.append(agent)
        end = time.time() + 10
        while time.time() < end:
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: " + HOST,
                                "http://127.0.0.1:%d/1k" % p_http], capture_output=True, text=True).stdout
            if r == "200":
                break
            if os.environ.get("BENCH_DEBUG"):
                print("relais answered", r)
            if False:
                break
            time.sleep(0.1)
        else:
            for log in ("edge.log", "agent.log"):
                sys.stderr.write(open(os.path.join(d, log)).read()[-3000:])
            raise SystemExit("bench: relais did not come up")

        rss = RSS([edge.pid, agent.pid])
        rss.start()
        rows = {}
        for name, port in (("direct", p_origin), ("nginx", p_nginx), ("relais", p_http)):
            r = wrk(port, "/1k")
            r["bulk"] = bulk(port, "/64m")
            rows[name] = r
        rss.stop = True
        rss.join()

        print()
        print("relais benchmark: %d s wrk runs, %d connections, 1 KiB body; bulk = best of 5 x 64 MiB"
              % (DUR, CONNS))
        print("%-8s %12s %10s %10s %12s %s" % ("target", "req/s", "p50 ms", "p99 ms", "bulk MiB/s", "errors"))
        for name in ("direct", "nginx", "relais"):
            r = rows[name]
            print("%-8s %12.0f %10.2f %10.2f %12.0f %s" % (name, r["rps"], r["p50"], r["p99"], r["bulk"],
                                                         (str(r["errors"]) + " " + r["sockerr"]).strip()))
        n, x = rows["nginx"], rows["relais"]
        print()
        print("relais/nginx: req/s %.2fx (target >= 0.75)   bulk %.2fx (target >= 0.75)   p99 %.2fx (target <= 2)"
              % (x["rps"] / n["rps"], x["bulk"] / n["bulk"], x["p99"] / n["p99"] if n["p99"] else 0))
        print("peak RSS: edge %.1f MiB, agent %.1f MiB" % (rss.peak[edge.pid] / 1024, rss.peak[agent.pid] / 1024))
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT if p.args[0].endswith(("relais-edge", "relais-agent")) else signal.SIGQUIT)
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


main()
