#!/bin/sh
# make container-test, in two parts:
#
# 1. Build the Dockerfile's edge and agent images with podman, run them the
#    way deploy/docker-compose.yml does (host network, /etc/relais and
#    /var/log/relais mounted, non-root user, the edge's HTTP port below 1024)
#    next to a small origin on the host, and pass one HTTP request through
#    them; then `podman stop` must drain and exit 0.
# 2. In a Debian 12 container with systemd as PID 1, run
#    deploy/install-edge.sh and deploy/install-agent.sh as on a fresh server,
#    paste the printed lines into edge.yaml, reload both units, pass a request
#    through the hardened units on the real ports 80/443, run both scripts
#    again (nothing may change, nothing restarts) and stop the units cleanly.
#
# No registry is reachable here, so the base images are made locally: a
# `debootstrap --variant=minbase bookworm` tree, imported with `podman import`
# and tagged debian:bookworm-slim and debian:bookworm (the build stage installs
# its compilers with apt, which only needs the Debian mirror).  The tree is
# cached in build/container/, and so is podman's image store (its own, so the
# machine's podman images are left alone): a rerun takes seconds unless the
# sources changed.
#
# Needs root, podman, runc and debootstrap (deploy/install-deps.sh).
# DEBIAN_MIRROR overrides the mirror; KEEP=1 keeps the temporary directory.
set -eu
cd "$(dirname "$0")/../.."
SRC=$(pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$SRC/$BUILD" ;; esac
CT="$BUILD/container"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
RUNROOT=/run/relais-container-test
RELAIS_UID=10001
TAG=test
START=$(date +%s)

say() { printf 'container-test: %s\n' "$*"; }
fail() {
	printf 'container-test: FAIL: %s\n' "$*" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || fail "needs root (podman with its own image store, debootstrap)"
for c in podman runc debootstrap curl openssl python3; do
	command -v "$c" >/dev/null 2>&1 || fail "$c is missing: run deploy/install-deps.sh"
done

# ---- podman configuration of our own -----------------------------------------
# runc (crun refuses this machine's hybrid cgroups), explicit ulimits, and an
# image store under build/container.
mkdir -p "$CT" "$RUNROOT"
cat >"$CT/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$RUNROOT/libpod"
EOF
cat >"$CT/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$CT/storage"
runroot = "$RUNROOT/storage"
EOF
cat >"$CT/registries.conf" <<EOF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
export CONTAINERS_CONF="$CT/containers.conf"
export CONTAINERS_STORAGE_CONF="$CT/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$CT/registries.conf"

# ---- base image: debootstrap, cached ------------------------------------------
# Bump BASE_VERSION when the recipe below changes, so that caches are redone.
BASE_VERSION=2
TAR="$CT/debian-bookworm-minbase-v$BASE_VERSION.tar"
if [ ! -s "$TAR" ]; then
	say "debootstrap --variant=minbase bookworm (cached in $TAR afterwards)"
	rm -rf "$CT/rootfs" "$CT"/debian-bookworm-minbase*.tar*
	debootstrap --variant=minbase bookworm "$CT/rootfs" "$MIRROR" >"$CT/debootstrap.log" 2>&1 ||
		{ tail -n 20 "$CT/debootstrap.log" >&2; fail "debootstrap failed"; }
	# apt sources as in Debian's own images: updates and security too
	rm -f "$CT/rootfs/etc/apt/sources.list"
	cat >"$CT/rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	# and, as in the -slim images, no documentation or translations
	cat >"$CT/rootfs/etc/dpkg/dpkg.cfg.d/slim" <<EOF
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
	find "$CT/rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
	rm -rf "$CT/rootfs/usr/share/man/"* "$CT/rootfs/usr/share/info/"* \
		"$CT/rootfs/var/lib/apt/lists/"* "$CT/rootfs/var/cache/apt/"*.bin \
		"$CT/rootfs/var/cache/apt/archives/"*.deb
	find "$CT/rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
	tar --numeric-owner -C "$CT/rootfs" -cf "$TAR.tmp" .
	mv "$TAR.tmp" "$TAR"
	rm -rf "$CT/rootfs"
	rm -f "$CT/base.id"
fi
if [ -s "$CT/base.id" ] && podman image exists "$(cat "$CT/base.id")" &&
	podman image exists docker.io/library/debian:bookworm-slim &&
	podman image exists docker.io/library/debian:bookworm; then
	say "base images debian:bookworm-slim and debian:bookworm present"
else
	say "podman import $TAR as debian:bookworm-slim and debian:bookworm"
	podman import -q --change 'CMD ["/bin/bash"]' "$TAR" docker.io/library/debian:bookworm-slim >"$CT/base.id.tmp"
	podman tag docker.io/library/debian:bookworm-slim docker.io/library/debian:bookworm
	tail -n 1 "$CT/base.id.tmp" >"$CT/base.id"
	rm -f "$CT/base.id.tmp"
fi

# ---- the images ------------------------------------------------------------------
for target in edge agent; do
	say "podman build --target $target -t relais-$target:$TAG"
	podman build --pull=never --network host --layers --target "$target" \
		-t "localhost/relais-$target:$TAG" -f Dockerfile . >"$CT/build-$target.log" 2>&1 ||
		{ tail -n 40 "$CT/build-$target.log" >&2; fail "podman build --target $target failed"; }
done
EDGE_IMG="localhost/relais-edge:$TAG"
AGENT_IMG="localhost/relais-agent:$TAG"
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep relais- | sed 's/^/container-test: image /'

# The runtime image holds no compiler and no -dev package.
extra=$(podman run --rm --network host --entrypoint dpkg-query "$EDGE_IMG" -W -f '${Package}\n' |
	grep -E -- '-dev$|^gcc(-[0-9]+)?$|^cpp|^binutils|^make$|^build-essential$|^pkg-config$' || true)
[ -z "$extra" ] || fail "runtime image contains build packages: $extra"

# ---- configuration, keys and a certificate on the host, mounted into the containers
T=$(mktemp -d /tmp/relais-ct.XXXXXX)
EDGE_C=relais-ct-edge-$$
AGENT_C=relais-ct-agent-$$
SYSTEMD_C=relais-ct-systemd-$$
ORIGIN_PID=""
cleanup() {
	rc=$?
	trap - EXIT INT TERM
	if [ "$rc" -ne 0 ]; then
		for c in "$EDGE_C" "$AGENT_C"; do
			if podman container exists "$c" 2>/dev/null; then
				echo "---- podman logs $c" >&2
				podman logs "$c" 2>&1 | tail -n 30 >&2
			fi
		done
	fi
	if [ "$rc" -ne 0 ] && podman container exists "$SYSTEMD_C" 2>/dev/null; then
		echo "---- journal of $SYSTEMD_C" >&2
		podman exec "$SYSTEMD_C" journalctl --no-pager -n 40 -u relais-edge -u relais-agent >&2 || true
	fi
	podman rm -f -t 0 "$EDGE_C" "$AGENT_C" "$SYSTEMD_C" >/dev/null 2>&1 || true
	[ -z "$ORIGIN_PID" ] || kill "$ORIGIN_PID" 2>/dev/null || true
	if [ "${KEEP:-0}" = 1 ]; then say "kept $T"; else rm -rf "$T"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Ports: the edge's HTTP listener on a free port below 1024, which the
# non-root edge can bind only through its file capability (as 80 and 443).
set -- $(python3 - <<'PY'
import socket
def free(lo=0, hi=0):
    for p in (range(lo, hi) if lo else [0]):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            return s.getsockname()[1]
        except OSError:
            pass
        finally:
            s.close()
    raise SystemExit("no free port")
print(free(900, 1000), free(), free())
PY
)
HTTP_PORT=$1
TUNNEL_PORT=$2
ORIGIN_PORT=$3

mkdir -p "$T/edge/etc" "$T/edge/log" "$T/agent/etc" "$T/www"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=localhost -addext subjectAltName=DNS:localhost \
	-keyout "$T/edge/etc/tunnel.key" -out "$T/edge/etc/tunnel.crt" 2>/dev/null
chmod 0600 "$T/edge/etc/tunnel.key"
cp "$T/edge/etc/tunnel.crt" "$T/agent/etc/edge-ca.pem"
chown "$RELAIS_UID:$RELAIS_UID" "$T/edge/etc/tunnel.key" "$T/edge/log" "$T/agent/etc"
chmod 0755 "$T/edge/etc" "$T/agent/etc" "$T"

# The agent's key, made by the image itself (runs as relais, writes 0600).
PUB=$(podman run --rm --network host -v "$T/agent/etc:/etc/relais" "$AGENT_IMG" keygen /etc/relais/agent.key)
case $PUB in ed25519:*) ;; *) fail "keygen in the agent image printed '$PUB'" ;; esac
[ "$(stat -c '%a %u' "$T/agent/etc/agent.key")" = "600 $RELAIS_UID" ] ||
	fail "agent.key: $(stat -c '%a %u' "$T/agent/etc/agent.key"), expected 600 $RELAIS_UID"

cat >"$T/edge/etc/edge.yaml" <<EOF
listen:
  http: 127.0.0.1:$HTTP_PORT
tunnel:
  listen: 127.0.0.1:$TUNNEL_PORT
  hostname: localhost
  path: /relais
  cert: /etc/relais/tunnel.crt
  key: /etc/relais/tunnel.key
agents:
  - name: container
    key: "$PUB"
    hosts: ["app.container.test"]
access_log: /var/log/relais/access.log
EOF
cat >"$T/agent/etc/agent.yaml" <<EOF
edge: wss://localhost:$TUNNEL_PORT/relais
key: /etc/relais/agent.key
edge_ca: /etc/relais/edge-ca.pem
routes:
  - host: app.container.test
    to: http://127.0.0.1:$ORIGIN_PORT
EOF

TOKEN="relais container test $(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$TOKEN" >"$T/www/index.html"
python3 -m http.server "$ORIGIN_PORT" --bind 127.0.0.1 --directory "$T/www" >"$T/origin.log" 2>&1 &
ORIGIN_PID=$!

for c in "edge $EDGE_IMG" "agent $AGENT_IMG"; do
	set -- $c
	out=$(podman run --rm --network host -v "$T/$1/etc:/etc/relais:ro" "$2" -t -c "/etc/relais/$1.yaml" 2>&1) ||
		fail "relais-$1 -t in the container: $out"
	[ "$out" = "configuration OK" ] || fail "relais-$1 -t printed: $out"
done

# ---- run them ---------------------------------------------------------------------
say "podman run $EDGE_IMG and $AGENT_IMG (host network), origin on 127.0.0.1:$ORIGIN_PORT"
podman run -d --name "$EDGE_C" --network host \
	-v "$T/edge/etc:/etc/relais:ro" -v "$T/edge/log:/var/log/relais" "$EDGE_IMG" >/dev/null
podman run -d --name "$AGENT_C" --network host \
	-v "$T/agent/etc:/etc/relais:ro" "$AGENT_IMG" >/dev/null

i=0
body=""
while :; do
	body=$(curl -sS --max-time 5 -H "Host: app.container.test" "http://127.0.0.1:$HTTP_PORT/" 2>/dev/null || true)
	[ "$body" = "$TOKEN" ] && break
	i=$((i + 1))
	[ $i -lt 150 ] || fail "no response through the containers (last body: '$body')"
	sleep 0.2
done
say "GET http://127.0.0.1:$HTTP_PORT/ (Host: app.container.test) -> '$body'"

# Both run as relais (uid $RELAIS_UID), not root.
for c in "$EDGE_C" "$AGENT_C"; do
	pid=$(podman inspect -f '{{.State.Pid}}' "$c")
	uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
	[ "$uid" = "$RELAIS_UID" ] || fail "$c runs as uid $uid, expected $RELAIS_UID"
done
# The access log reaches the mounted /var/log/relais.
i=0
until grep -q 'app.container.test "GET /"' "$T/edge/log/access.log" 2>/dev/null; do
	i=$((i + 1))
	[ $i -lt 50 ] || fail "no access log line in the mounted /var/log/relais"
	sleep 0.1
done

# SIGTERM (podman stop) drains and exits 0 well before the SIGKILL deadline.
for c in "$AGENT_C" "$EDGE_C"; do
	t0=$(date +%s)
	podman stop -t 30 "$c" >/dev/null
	code=$(podman inspect -f '{{.State.ExitCode}}' "$c")
	[ "$code" = 0 ] || fail "$c exited $code after podman stop"
	[ $(($(date +%s) - t0)) -lt 15 ] || fail "$c took more than 15 s to stop"
done

say "images: request passed, non-root, access log written, clean stop"

# ---- the systemd units and install scripts, for real -----------------------------
# A Debian 12 container with systemd as PID 1 (privileged, so that systemd can
# build the units' sandboxes) and its own network namespace, so that the edge
# binds the real ports 80 and 443.  The install scripts run in it as on a
# fresh server, with the binaries built above (--no-build).
say "podman build relais-systemd:$TAG (Debian 12 with systemd)"
podman build --pull=never --network host --layers -t "localhost/relais-systemd:$TAG" \
	-f tests/container/systemd.Containerfile tests/container >"$CT/build-systemd.log" 2>&1 ||
	{ tail -n 40 "$CT/build-systemd.log" >&2; fail "podman build of the systemd image failed"; }
mkdir -p "$T/bin"
podman run --rm --network host --user 0 -v "$T/bin:/out" --entrypoint /bin/cp "$EDGE_IMG" \
	/usr/bin/relais-edge /usr/bin/relais-agent /out/
podman run -d --name "$SYSTEMD_C" --privileged --systemd=always --network none \
	-v "$SRC:/src:ro" -v "$T/bin:/ctbin:ro" "localhost/relais-systemd:$TAG" >/dev/null
sd() { podman exec "$SYSTEMD_C" "$@"; }
i=0
until state=$(sd systemctl is-system-running 2>/dev/null) || [ "$state" = degraded ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || fail "systemd in $SYSTEMD_C did not come up (state: $state)"
	sleep 0.2
done

say "deploy/install-edge.sh in $SYSTEMD_C"
sd /src/deploy/install-edge.sh --no-build --build-dir /ctbin --hostname localhost >"$T/edge1.out" 2>&1 ||
	{ cat "$T/edge1.out" >&2; fail "install-edge.sh failed"; }
[ "$(sd systemctl is-active relais-edge)" = active ] || { cat "$T/edge1.out" >&2; fail "relais-edge is not active"; }
[ "$(sd systemctl is-enabled relais-edge)" = enabled ] || fail "relais-edge is not enabled"
pid=$(sd systemctl show -p MainPID --value relais-edge)
status=$(sd cat "/proc/$pid/status")
[ "$(printf '%s\n' "$status" | awk '/^Uid:/ {print $2}')" = "$(sd id -u relais)" ] || fail "relais-edge does not run as relais"
# only CAP_NET_BIND_SERVICE (bit 10), effective and bounding
for f in CapEff CapBnd CapAmb; do
	v=$(printf '%s\n' "$status" | awk -v f="$f:" '$1 == f {print $2}')
	[ "$v" = 0000000000000400 ] || fail "relais-edge $f is $v, expected 0000000000000400"
done

say "deploy/install-agent.sh in $SYSTEMD_C"
sd /src/deploy/install-agent.sh --no-build --build-dir /ctbin --edge wss://localhost/relais \
	--edge-ca /etc/relais/tunnel.crt --name home --hosts app.systemd.test >"$T/agent1.out" 2>&1 ||
	{ cat "$T/agent1.out" >&2; fail "install-agent.sh failed"; }
[ "$(sd stat -c '%a %U' /etc/relais/agent.key)" = "600 relais" ] || fail "agent.key: $(sd stat -c '%a %U' /etc/relais/agent.key)"
[ "$(sd systemctl is-active relais-agent)" = active ] || { cat "$T/agent1.out" >&2; fail "relais-agent is not active"; }
pid=$(sd systemctl show -p MainPID --value relais-agent)
v=$(sd awk '$1 == "CapEff:" {print $2}' "/proc/$pid/status")
[ "$v" = 0000000000000000 ] || fail "relais-agent CapEff is $v, expected none"

# The printed lines go into edge.yaml, a route into agent.yaml; both reload.
sed -n '/^---- paste under "agents:"/,/^---- end ----$/p' "$T/agent1.out" | sed '1d;$d' >"$T/lines"
grep -q "key: \"ed25519:" "$T/lines" || { cat "$T/agent1.out" >&2; fail "install-agent.sh printed no edge.yaml lines"; }
podman cp "$T/lines" "$SYSTEMD_C:/tmp/lines"
sd sh -c 'cat /tmp/lines >>/etc/relais/edge.yaml' || fail "cannot edit edge.yaml"
sd systemctl reload relais-edge || fail "systemctl reload relais-edge failed"
sd sh -c 'printf "  - host: app.systemd.test\n    to: http://127.0.0.1:8096\n" >>/etc/relais/agent.yaml'
sd systemctl reload relais-agent || fail "systemctl reload relais-agent failed"
sd sh -c "mkdir -p /srv/www && echo '$TOKEN systemd' >/srv/www/index.html && busybox httpd -p 127.0.0.1:8096 -h /srv/www"
i=0
while :; do
	body=$(sd curl -sS --max-time 5 -H "Host: app.systemd.test" http://127.0.0.1:80/ 2>/dev/null || true)
	[ "$body" = "$TOKEN systemd" ] && break
	i=$((i + 1))
	[ $i -lt 100 ] || fail "no response through the systemd units (last body: '$body')"
	sleep 0.2
done
say "GET http://127.0.0.1:80/ (Host: app.systemd.test) in $SYSTEMD_C -> '$body'"
sd grep -q 'app.systemd.test "GET /"' /var/log/relais/access.log || fail "no line in /var/log/relais/access.log"

# A second run of both scripts changes nothing and restarts nothing.
before=$(sd sh -c 'systemctl show -p MainPID --value relais-edge relais-agent;
	find /etc/relais /usr/local /var/lib/relais -printf "%p %m %U %s %T@\n" | sort')
sd /src/deploy/install-edge.sh --no-build --build-dir /ctbin --hostname localhost >"$T/edge2.out" 2>&1 ||
	{ cat "$T/edge2.out" >&2; fail "install-edge.sh (second run) failed"; }
sd /src/deploy/install-agent.sh --no-build --build-dir /ctbin --edge wss://localhost/relais \
	--edge-ca /etc/relais/tunnel.crt --name home --hosts app.systemd.test >"$T/agent2.out" 2>&1 ||
	{ cat "$T/agent2.out" >&2; fail "install-agent.sh (second run) failed"; }
after=$(sd sh -c 'systemctl show -p MainPID --value relais-edge relais-agent;
	find /etc/relais /usr/local /var/lib/relais -printf "%p %m %U %s %T@\n" | sort')
[ "$before" = "$after" ] || { printf '%s\n' "$before" >"$T/before"; printf '%s\n' "$after" >"$T/after";
	diff "$T/before" "$T/after" >&2; fail "the second run changed something"; }
grep -q "relais-edge is enabled and running" "$T/edge2.out" || { cat "$T/edge2.out" >&2; fail "second run: edge"; }
grep -q "relais-agent is enabled and running" "$T/agent2.out" || { cat "$T/agent2.out" >&2; fail "second run: agent"; }

# systemctl stop: SIGTERM drains, both exit 0.
sd systemctl stop relais-agent relais-edge
for u in relais-agent relais-edge; do
	r=$(sd systemctl show -p Result --value "$u")
	st=$(sd systemctl show -p ExecMainStatus --value "$u")
	[ "$r/$st" = success/0 ] || fail "$u after systemctl stop: result $r, status $st"
done
say "systemd: install scripts, hardened units, reload, request, idempotent re-run, clean stop"

say "PASS in $(($(date +%s) - START)) s"
