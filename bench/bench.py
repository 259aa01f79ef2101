"""relais benchmark: direct nginx origin vs nginx one-hop proxy vs relais.

Usage: bench.py BUILD SECONDS CONNECTIONS (see bench/run.sh).
"""
import json
import statistics
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from relais import DelayRelay  # noqa: E402  (the test harness's delaying TCP relay)

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


def url(port, path, tls):
    # HTTPS needs a name for SNI: "localhost" (127.0.0.1 in /etc/hosts).
    return ("https://localhost:%d%s" if tls else "http://127.0.0.1:%d%s") % (port, path)


def wrk(port, path, tls=False):
    out = subprocess.run(["wrk", "-t2", "-c%d" % CONNS, "-d%ds" % DUR, "--latency"] +
                         ([] if tls else ["-H", "Host: " + HOST]) + [url(port, path, tls)],
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


def bulk(port, path, tls=False, rounds=5):
    best = 0.0
    for _ in range(rounds):
        out = subprocess.run(["curl", "-s", "-k", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}"] +
                             ([] if tls else ["-H", "Host: " + HOST]) + [url(port, path, tls)],
                             capture_output=True, text=True).stdout.split()
        if int(out[1]) != 64 << 20:
            raise SystemExit("bench: short bulk download on port %d" % port)
        best = max(best, float(out[0]) / (1 << 20))
    return best


# ---- streams: iperf3 through relais (TCP/UDP stream port), a one-hop proxy, direct ----

SDUR = max(1, min(DUR, 3))  # seconds per iperf3 run
# TCP runs go round the targets TCP_ROUNDS times and report the median: the
# shared machine's speed drifts over seconds, and a target measured alone in
# a slow moment would skew a ratio.  About 3.5 minutes in all.
TCP_ROUNDS = 3
# TCP runs first; -R: the download direction (home service to client).
STREAM_RUNS = (("tcp", "TCP 1 stream", []), ("tcp4", "TCP -P 4", ["-P", "4"]),
               ("tcpR", "TCP -R", ["-R"]),
               ("udp200", "UDP 200M", ["-u", "-b", "200M", "-l", "1400"]),
               ("udp1g", "UDP 1G", ["-u", "-b", "1G", "-l", "1400"]))


TCP_RUNS = tuple(r for r in STREAM_RUNS if "-u" not in r[2])


def free_stream_port():
    """A port free for both TCP and UDP on 127.0.0.1 (iperf3 uses both)."""
    for _ in range(100):
        t, u = socket.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise SystemExit("bench: no port free for TCP and UDP")


def wait_listen(port, proto, timeout=10):
    """Wait until something listens on 127.0.0.1:port (TCP) or is bound to it (UDP)."""
    want = "0100007F:%04X" % port
    end = time.time() + timeout
    while time.time() < end:
        with open("/proc/net/" + proto) as f:
            for line in f.readlines()[1:]:
                v = line.split()
                if v[1] == want and (proto == "udp" or v[3] == "0A"):
                    return
        time.sleep(0.05)
    raise SystemExit("bench: nothing on %s port %d" % (proto, port))


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name (state is [0]), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children_of(pids):
    out = []
    for name in os.listdir("/proc"):
        v = proc_stat(int(name)) if name.isdigit() else None
        if v and int(v[1]) in pids:
            out.append(int(name))
    return out


def cpu_seconds(pids, children=False):
    """utime + stime of pids, in seconds; with children, also that of their
    live children and of those reaped (socat forks one per connection)."""
    pids = set(pids)
    if children:
        pids.update(children_of(pids))
    total = 0
    for pid in pids:
        v = proc_stat(pid)
        if v:
            total += int(v[11]) + int(v[12]) + ((int(v[13]) + int(v[14])) if children else 0)
    return total / os.sysconf("SC_CLK_TCK")


def mid(values):
    """The median of the values that are not None, or None."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def iperf3(port, args):
    """One iperf3 client run; (Gbit/s received, UDP loss % or None, error)."""
    for _ in range(20):
        r = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(SDUR), "-J",
                            "--connect-timeout", "3000"] + args,
                           capture_output=True, text=True, timeout=SDUR + 30)
        try:
            out = json.loads(r.stdout)
        except ValueError:
            return 0.0, None, (r.stderr.strip() or "no report")[:60]
        # One test at a time: the server may still be closing the last one.
        if "busy" not in out.get("error", ""):
            break
        time.sleep(0.25)
    if "error" in out:
        return 0.0, None, out["error"][:60]
    rx = out["end"]["sum_received"]
    loss = rx.get("lost_percent") if "-u" in args else None
    return rx["bits_per_second"] / 1e9, loss, ""


# direct: iperf3 itself; socat and nginx (stream module, 1 worker): one-hop
# proxies; tls2: two-hop TLS tunnel of socat processes; relais: the agent's
# tcp/udp stream route.
NGINX_STREAM = "/usr/lib/nginx/modules/ngx_stream_module.so"  # libnginx-mod-stream
TARGETS = tuple(t for t in ("direct", "socat", "nginx", "tls2", "relais")
                if t != "nginx" or os.path.exists(NGINX_STREAM))
TCP_ONLY = ("nginx", "tls2")


def long_path_bench(d, sp, p_tunnel, agent):
    """The agent reconnected through a relay that delays the tunnel 50 ms
    each way; one TCP stream each way (iperf3).  A fixed 1 MiB window would
    cap a stream at about 10 MB/s (84 Mbit/s) here; windows grow instead."""
    agent.send_signal(signal.SIGINT)
    agent.wait(10)
    relay = DelayRelay(p_tunnel, 0.05)
    cfg = open(d + "/agent.yaml").read().replace("localhost:%d/" % p_tunnel,
                                                  "localhost:%d/" % relay.port)
    with open(d + "/agent-long.yaml", "w") as f:
        f.write(cfg)
    long_agent = subprocess.Popen([BUILD + "/relais-agent", "-c", d + "/agent-long.yaml"],
                                  stderr=open(d + "/agent-long.log", "w"))
    server = subprocess.Popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(sp["direct"])],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = []
    try:
        time.sleep(1.5)  # the old session's ports close, the new one's open
        wait_listen(sp["relais"], "tcp")
        for args, what in (([], "upload"), (["-R"], "download")):
            gbps, _, err = iperf3(sp["relais"], args)
            out.append("%s %.0f Mbit/s%s" % (what, gbps * 1000, (" (" + err + ")") if err else ""))
    finally:
        server.terminate()
        server.wait(5)
        long_agent.send_signal(signal.SIGINT)
        try:
            long_agent.wait(5)
        except subprocess.TimeoutExpired:
            long_agent.kill()
        relay.close()
    print()
    print("streams over a long path (tunnel delayed 50 ms each way, one TCP stream, a fixed 1 MiB"
          " window would allow 84 Mbit/s): %s" % "   ".join(out))


def streams_bench(d, sp, edge, agent, nginx):
    procs = []
    try:
        def start(argv, name):
            p = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(d, name + ".log"), "w"))
            procs.append(p)
            return p

        start(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(sp["direct"])], "iperf3")
        # One-hop stream proxy: socat, one process per connection (and per
        # UDP peer, gone after 5 s without traffic), 128 KiB buffers.
        socat = [start(["socat", "-b", "131072"] + (["-T", "5"] if proto == "UDP4" else []) +
                       ["%s-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr" % (proto, sp["socat"]),
                        "%s:127.0.0.1:%d" % (proto, sp["direct"])], "socat-" + proto.lower())
                 for proto in ("TCP4", "UDP4")]
        # Two-hop TLS reference, TCP only: what relais does at its simplest
        # (public side -> TLS -> private side), without multiplexing, framing
        # or flow control: socat TCP -> TLS on one port, TLS -> TCP on another.
        socat += [start(["socat", "-b", "131072",
                         "OPENSSL-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr,cert=%s/t.crt,key=%s/t.key,"
                         "verify=0" % (sp["tls-in"], d, d),
                         "TCP4:127.0.0.1:%d" % sp["direct"]], "socat-tls-in"),
                  start(["socat", "-b", "131072",
                         "TCP4-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr" % sp["tls2"],
                         "OPENSSL:127.0.0.1:%d,verify=0" % sp["tls-in"]], "socat-tls-out")]
        for port in [sp[t] for t in TARGETS] + [sp["tls-in"]]:
            # relais: open once the agent's stream routes are accepted.  Not
            # by connecting: iperf3 would take that for a test.
            wait_listen(port, "tcp")
        wait_listen(sp["socat"], "udp")
        wait_listen(sp["relais"], "udp")
        samples = {}
        for rnd, target, key, args in [(r, t, k, a) for r in range(TCP_ROUNDS)
                                       for k, _, a in STREAM_RUNS for t in TARGETS]:
            if (target in TCP_ONLY or rnd) and "-u" in args:
                continue
            pids, kids = ([edge.pid, agent.pid], False) if target == "relais" else \
                ([p.pid for p in socat], True) if target in ("socat", "tls2") else \
                ([nginx.pid], True) if target == "nginx" else ([], False)
            c0, t0 = [cpu_seconds([p], kids) for p in pids], time.time()
            gbps, loss, err = iperf3(sp[target], args)
            if kids:
                time.sleep(0.3)  # let socat reap its children: their CPU time counts
            per_pid = [cpu_seconds([p], kids) - c for p, c in zip(pids, c0)]
            used = sum(per_pid)
            cpu = used / (time.time() - t0) * 100
            # CPU seconds per GB moved: steadier than Gbit/s on a shared machine;
            # and that of the busiest process (relais: edge or agent).
            gb = gbps / 8 * SDUR
            per_gb = used / gb if gbps else 0
            busiest = max(per_pid) / gb if gbps and per_pid else 0
            samples.setdefault((target, key), []).append(
                (gbps, loss, cpu if pids else None, err, per_gb, busiest))
        rows = {k: tuple(mid([x[i] for x in v]) if i != 3 else " ".join(x[3] for x in v).strip()
                         for i in range(6)) for k, v in samples.items()}
    finally:
        for pid in children_of({p.pid for p in procs}):  # socat's, not orphaned
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()

    print()
    print("streams: iperf3 -t %d (TCP: median of %d rounds) direct, through socat and nginx"
          " (one-hop; nginx TCP only),"
          " through two socat joined by TLS (tls2, TCP only) and through relais (tcp/udp stream port);"
          " UDP -l 1400; CPU = proxy processes (relais: edge + agent), %% of one core"
          % (SDUR, TCP_ROUNDS))
    print("%-13s %-7s %9s %8s %7s %s" % ("test", "target", "Gbit/s", "loss %", "CPU %", "errors"))
    for key, label, _ in STREAM_RUNS:
        for target in TARGETS:
            if (target, key) not in rows:
                continue
            gbps, loss, cpu, err, _, _ = rows[target, key]
            print("%-13s %-7s %9.2f %8s %7s %s" % (label, target, gbps,
                                                   "-" if loss is None else "%.2f" % loss,
                                                   "-" if cpu is None else "%.0f" % cpu, err))
    print()
    for base, what in (("socat", "one-hop socat (target >= 0.75)"),
                       ("nginx", "one-hop nginx (target >= 0.75)"), ("tls2", "two-hop TLS")):
        if base not in TARGETS:
            continue
        ratios = []
        for key, label, _ in TCP_RUNS:
            one, x = rows[base, key][0], rows["relais", key][0]
            # and the ratio within each round, taken seconds apart
            each = sorted(r[0] / b[0] if b[0] else 0
                          for b, r in zip(samples[base, key], samples["relais", key]))
            ratios.append("%s %.2fx (rounds %.2f-%.2fx)" % (label, x / one if one else 0,
                                                          each[0], each[-1]))
        print("streams relais/%s: %s" % (what, "   ".join(ratios)))
    for key, label, _ in TCP_RUNS:
        print("%s, CPU seconds per GB moved: %s" % (label, "   ".join(
            "%s %.2f" % (t, rows[t, key][4]) for t in TARGETS[1:])))
    # In use the edge and the agent run on different machines (the VPS, the
    # home server): what one core carries is set by the busier of the two,
    # where a one-hop proxy's is set by its one process.
    if "nginx" in TARGETS:
        for key, label, _ in TCP_RUNS:
            n, r = (8 / rows[t, key][5] if rows[t, key][5] else 0 for t in ("nginx", "relais"))
            print("%s, Gbit/s one core carries (8 / CPU s per GB of the busiest process: nginx's"
                  " worker; relais's edge or agent, as on two machines): nginx %.1f   relais %.1f"
                  "   relais/nginx %.2fx" % (label, n, r, r / n if n else 0))


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
        p_nginx_tls, p_https = free_port(), free_port()
        # streams: iperf3 server (direct), socat one-hop proxy, relais stream port
        sp = {k: free_stream_port() for k in ("direct", "socat", "nginx", "relais", "tls-in", "tls2")}
        certs = os.path.join(d, "certs")
        os.makedirs(certs)

        conf = os.path.join(d, "nginx.conf")
        # One-hop TCP proxy for the streams part, when the module is there.
        stream_block = ("stream { server { listen 127.0.0.1:%d; proxy_pass 127.0.0.1:%d; } }\n"
                        % (sp["nginx"], sp["direct"])) if "nginx" in TARGETS else ""
        with open(conf, "w") as f:
            if stream_block:
                f.write("load_module %s;\n%s" % (NGINX_STREAM, stream_block))
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
  server {
    listen 127.0.0.1:%(ptls)d ssl;
    ssl_certificate %(certs)s/localhost.crt; ssl_certificate_key %(certs)s/localhost.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://origin; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_set_header Host $host;
                 proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }
  }
}
""" % {"d": d, "o": p_origin, "p": p_nginx, "ptls": p_nginx_tls, "www": www, "certs": certs})
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", d + "/ca.key", "-out", d + "/ca.crt", "-days", "1", "-subj", "/CN=bench CA")
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", d + "/t.key", "-out", d + "/t.csr", "-subj", "/CN=localhost")
        with open(d + "/ext", "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        sh("openssl", "x509", "-req", "-in", d + "/t.csr", "-CA", d + "/ca.crt", "-CAkey", d + "/ca.key",
           "-CAcreateserial", "-days", "1", "-out", d + "/t.crt", "-extfile", d + "/ext")
        os.chmod(d + "/t.key", 0o600)
        # The same certificate for the public HTTPS side of both proxies.
        shutil.copy(d + "/t.crt", certs + "/localhost.crt")
        shutil.copy(d + "/t.key", certs + "/localhost.key")
        os.chmod(certs + "/localhost.key", 0o600)
        os.chmod(certs, 0o755)
        # One nginx master+worker serves both the origin and the proxy: the
        # proxy server block is the one-hop baseline relais is compared with.
        procs.append(subprocess.Popen(["nginx", "-c", conf, "-g", "daemon off;"],
                                      stderr=subprocess.DEVNULL))
        wait_port(p_origin)
        wait_port(p_nginx)

        pub = sh(BUILD + "/relais-agent", "keygen", d + "/a.key").stdout.strip()
        with open(d + "/edge.yaml", "w") as f:
            # Every client is 127.0.0.1 here: no limit per address (BENCH_CONNS).
            f.write("""listen: {http: "127.0.0.1:%d", https: "127.0.0.1:%d", streams: ["127.0.0.1"],
         max_connections_per_client: 0}
tunnel: {listen: "127.0.0.1:%d", path: /relais, cert: %s/t.crt, key: %s/t.key}
tls: {cert_dir: %s}
agents: [{name: bench, key: "%s", hosts: ["%s", "localhost"], ports: ["tcp/%d", "udp/%d"]}]
log_level: warn
""" % (p_http, p_https, p_tunnel, d, d, certs, pub, HOST, sp["relais"], sp["relais"]))
        with open(d + "/agent.yaml", "w") as f:
            f.write("""edge: wss://localhost:%d/relais
key: %s/a.key
edge_ca: %s/ca.crt
log_level: warn
routes: [{host: "%s", to: "http://127.0.0.1:%d"},
         {host: localhost, to: "http://127.0.0.1:%d", redirect_https: false}]
streams: [{listen: "tcp/%d", to: "127.0.0.1:%d"}, {listen: "udp/%d", to: "127.0.0.1:%d"}]
""" % (p_tunnel, d, d, HOST, p_origin, p_origin, sp["relais"], sp["direct"], sp["relais"],
       sp["direct"]))
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
        for name, port, tls in (("direct", p_origin, False), ("nginx", p_nginx, False),
                                ("relais", p_http, False), ("nginx-tls", p_nginx_tls, True),
                                ("relais-tls", p_https, True)):
            r = wrk(port, "/1k", tls)
            r["bulk"] = bulk(port, "/64m", tls)
            rows[name] = r
        rss.stop = True
        rss.join()

        print()
        print("relais benchmark: %d s wrk runs, %d connections, 1 KiB body; bulk = best of 5 x 64 MiB"
              % (DUR, CONNS))
        print("%-8s %12s %10s %10s %12s %s" % ("target", "req/s", "p50 ms", "p99 ms", "bulk MiB/s", "errors"))
        for name in ("direct", "nginx", "relais", "nginx-tls", "relais-tls"):
            r = rows[name]
            print("%-8s %12.0f %10.2f %10.2f %12.0f %s" % (name, r["rps"], r["p50"], r["p99"], r["bulk"],
                                                         (str(r["errors"]) + " " + r["sockerr"]).strip()))
        n, x = rows["nginx"], rows["relais"]
        print()
        print("relais/nginx: req/s %.2fx (target >= 0.75)   bulk %.2fx (target >= 0.75)   p99 %.2fx (target <= 2)"
              % (x["rps"] / n["rps"], x["bulk"] / n["bulk"], x["p99"] / n["p99"] if n["p99"] else 0))
        n, x = rows["nginx-tls"], rows["relais-tls"]
        print("HTTPS relais/nginx: req/s %.2fx (target >= 0.75)   bulk %.2fx   p99 %.2fx"
              % (x["rps"] / n["rps"], x["bulk"] / n["bulk"], x["p99"] / n["p99"] if n["p99"] else 0))
        print("peak RSS: edge %.1f MiB, agent %.1f MiB" % (rss.peak[edge.pid] / 1024, rss.peak[agent.pid] / 1024))
        streams_bench(d, sp, edge, agent, procs[0])
        long_path_bench(d, sp, p_tunnel, agent)
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
