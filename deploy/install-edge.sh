#!/bin/sh
# Install relais-edge on this machine (the public VPS), from this checkout.
#
#   sudo deploy/install-edge.sh --hostname edge.example.com
#
# Builds (or uses build/), runs `make install`, creates the system user
# "relais" and /etc/relais, /var/lib/relais, /var/log/relais, writes a starter
# /etc/relais/edge.yaml and a self-signed tunnel certificate when they do not
# exist (never overwrites), then enables and starts relais-edge.service.
# Safe to run again: after `git pull` it installs the new binaries and
# restarts the service; nothing else changes.
set -eu
PROG=install-edge
. "$(dirname "$0")/install-common.sh"

HOSTNAME_ARG=""

usage() {
	cat <<EOF
usage: $0 [--hostname NAME] [options]
  --hostname NAME  the name (or IP address) agents use to reach this edge:
                   tunnel.hostname and the self-signed tunnel certificate
                   (default: this machine's host name)
EOF
	common_usage
}

while [ $# -gt 0 ]; do
	case $1 in
	--hostname) need_arg "$1" "${2:-}"; HOSTNAME_ARG=$2; shift 2 ;;
	--dry-run) DRY=1; shift ;;
	--root) need_arg "$1" "${2:-}"; ROOT=$2; shift 2 ;;
	--prefix) need_arg "$1" "${2:-}"; PREFIX=$2; shift 2 ;;
	--no-build) NOBUILD=1; shift ;;
	--build-dir) need_arg "$1" "${2:-}"; BUILD_DIR=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done

EDGE_HOST=${HOSTNAME_ARG:-$(hostname -f 2>/dev/null || hostname)}
IS_IP=0
case $EDGE_HOST in
*[!0-9.]*) ;;
*.*.*.*) IS_IP=1 ;;
esac
if [ "$IS_IP" = 0 ] && ! printf '%s\n' "$EDGE_HOST" | grep -Eq '^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$'; then
	die "bad --hostname '$EDGE_HOST' (a DNS name or an IPv4 address)"
fi

common_preflight
build_and_install
ensure_kill
create_user
ensure_dir "$ETC" 0755 root:root
ensure_dir "$STATE" 0750 "$RUSER:$RUSER"
ensure_dir "$LOGS" 0750 "$RUSER:$RUSER"

# The tunnel's TLS certificate: self-signed for EDGE_HOST unless one exists.
# Agents trust it through edge_ca (install-agent.sh --edge-ca tunnel.crt).
CERT_NEW=0
if [ -e "$ROOT$ETC/tunnel.crt" ] && [ -e "$ROOT$ETC/tunnel.key" ]; then
	say "keeping the existing $ETC/tunnel.crt and $ETC/tunnel.key"
elif [ -e "$ROOT$ETC/tunnel.crt" ] || [ -e "$ROOT$ETC/tunnel.key" ]; then
	say "warning: only one of $ETC/tunnel.crt and $ETC/tunnel.key exists; not touching them"
else
	if [ "$IS_IP" = 1 ]; then san="IP:$EDGE_HOST"; else san="DNS:$EDGE_HOST"; fi
	act install -m 0600 /dev/null "$ROOT$ETC/tunnel.key" # openssl keeps the mode
	act openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
		-subj "/CN=$EDGE_HOST" -addext "subjectAltName=$san" \
		-keyout "$ROOT$ETC/tunnel.key" -out "$ROOT$ETC/tunnel.crt"
	act chmod 0644 "$ROOT$ETC/tunnel.crt"
	CERT_NEW=1
fi
if [ -e "$ROOT$ETC/tunnel.key" ] || [ "$DRY" = 1 ]; then owner "$RUSER:$RUSER" "$ETC/tunnel.key"; fi

starter_edge_yaml() {
	if [ "$IS_IP" = 1 ]; then hn="# hostname: edge.example.com"; else hn="hostname: $EDGE_HOST"; fi
	cat <<EOF
# relais-edge configuration, written by deploy/install-edge.sh (it never
# overwrites this file).  Every key: man relais-edge, docs/configuration.md,
# $PREFIX/share/relais/examples/edge.example.yaml
#
# Check:  relais-edge -t -c $ETC/edge.yaml
# Apply:  systemctl reload relais-edge

# Public listeners for proxied hosts.
listen:
  http: 0.0.0.0:80
  # https: 0.0.0.0:443        # HTTPS proxy hosts; may share 443 with the tunnel

# Where agents connect: wss://$EDGE_HOST/relais
tunnel:
  listen: 0.0.0.0:443
  $hn
  path: /relais
  cert: $ETC/tunnel.crt       # self-signed by install-edge.sh; agents use it as edge_ca
  key: $ETC/tunnel.key

# Status endpoint (GET /status), loopback only:
# admin:
#   listen: 127.0.0.1:9090

access_log: $LOGS/access.log
log_level: info

# The agents allowed to connect.  On each home machine, install-agent.sh
# prints the lines to paste below; then run: systemctl reload relais-edge
agents:
EOF
}

write_once "$ETC/edge.yaml" 0640 "root:$RUSER" starter_edge_yaml || true

READY=1
if [ -z "$ROOT" ] && [ "$DRY" = 0 ]; then
	if out=$("$PREFIX/bin/relais-edge" -t -c "$ETC/edge.yaml" 2>&1); then
		say "$ETC/edge.yaml: $out"
	else
		printf '%s\n' "$out" >&2
		say "fix $ETC/edge.yaml (relais-edge -t -c $ETC/edge.yaml), then: systemctl restart relais-edge"
		READY=0
	fi
fi
start_unit relais-edge "$ETC/edge.yaml" "$READY"

echo
say "done.  Next steps:"
if [ "$CERT_NEW" = 1 ] || [ "$DRY" = 1 ]; then
	say "  - copy $ETC/tunnel.crt (the self-signed tunnel certificate) to each home machine and"
	say "    run there: sudo deploy/install-agent.sh --edge wss://$EDGE_HOST/relais --edge-ca tunnel.crt"
fi
say "  - open TCP 80 and 443 (and your stream ports) in the VPS firewall"
say "  - point a wildcard DNS record (*.home.example.com) at this machine"
say "  - paste the lines install-agent.sh prints under 'agents:' in $ETC/edge.yaml,"
say "    then: systemctl reload relais-edge; logs: journalctl -u relais-edge -f"
