#!/bin/sh
# Install relais-agent on this machine (at home), from this checkout.
#
#   sudo deploy/install-agent.sh --edge wss://edge.example.com/relais \
#        --edge-ca tunnel.crt --hosts '*.home.example.com,home.example.com'
#
# Builds (or uses build/), runs `make install`, creates the system user
# "relais" and /etc/relais, generates the agent's key /etc/relais/agent.key
# with `relais-agent keygen` and writes a starter /etc/relais/agent.yaml when
# they do not exist (never overwrites), then prints the public key and the
# exact lines to paste into the edge's edge.yaml, and enables the unit (it is
# started once agent.yaml names a real edge).  Safe to run again.
set -eu
PROG=install-agent
. "$(dirname "$0")/install-common.sh"

EDGE_URL=""
AGENT_NAME=""
HOSTS="*.home.example.com,home.example.com"
EDGE_CA=""
PLACEHOLDER=wss://edge.example.com/relais

usage() {
	cat <<EOF
usage: $0 [--edge URL] [--edge-ca FILE] [--name NAME] [--hosts LIST] [options]
  --edge URL       the edge's tunnel URL, wss://HOST[:PORT]/PATH, written to a new
                   agent.yaml (default: a placeholder to edit)
  --edge-ca FILE   trust anchor for a self-signed edge (the edge's tunnel.crt),
                   copied to /etc/relais/edge-ca.pem unless that exists
  --name NAME      this agent's name in the edge's agents: list (default: host name)
  --hosts LIST     comma-separated host patterns it may serve, for the printed
                   edge.yaml lines (default: *.home.example.com,home.example.com)
EOF
	common_usage
}

while [ $# -gt 0 ]; do
	case $1 in
	--edge) need_arg "$1" "${2:-}"; EDGE_URL=$2; shift 2 ;;
	--edge-ca) need_arg "$1" "${2:-}"; EDGE_CA=$2; shift 2 ;;
	--name) need_arg "$1" "${2:-}"; AGENT_NAME=$2; shift 2 ;;
	--hosts) need_arg "$1" "${2:-}"; HOSTS=$2; shift 2 ;;
	--dry-run) DRY=1; shift ;;
	--root) need_arg "$1" "${2:-}"; ROOT=$2; shift 2 ;;
	--prefix) need_arg "$1" "${2:-}"; PREFIX=$2; shift 2 ;;
	--no-build) NOBUILD=1; shift ;;
	--build-dir) need_arg "$1" "${2:-}"; BUILD_DIR=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done

if [ -z "$AGENT_NAME" ]; then
	AGENT_NAME=$(hostname -s 2>/dev/null | tr -c 'A-Za-z0-9_.\n-' '-' | cut -c1-63)
	AGENT_NAME=${AGENT_NAME:-home}
fi
printf '%s\n' "$AGENT_NAME" | grep -Eq '^[A-Za-z0-9_.-]{1,63}$' ||
	die "bad --name '$AGENT_NAME' (1-63 characters of A-Z a-z 0-9 _ . -)"
case $EDGE_URL in
"" | wss://* | ws://*) ;;
*) die "bad --edge '$EDGE_URL' (expected wss://HOST[:PORT]/PATH)" ;;
esac
case $EDGE_URL in *[\"\'\ \#]*) die "bad --edge '$EDGE_URL'" ;; esac
case $HOSTS in *[\"\\\ ]* | "" | ,* | *, | *,,*) die "bad --hosts '$HOSTS' (comma-separated host patterns)" ;; esac
if [ -n "$EDGE_CA" ] && [ ! -r "$EDGE_CA" ]; then die "--edge-ca $EDGE_CA: cannot read it"; fi

common_preflight
build_and_install
ensure_kill
create_user
ensure_dir "$ETC" 0755 root:root
ensure_dir "$STATE" 0750 "$RUSER:$RUSER"
ensure_dir "$LOGS" 0750 "$RUSER:$RUSER"

# The edge's trust anchor, when given.
if [ -n "$EDGE_CA" ]; then
	if [ -e "$ROOT$ETC/edge-ca.pem" ]; then
		if cmp -s "$EDGE_CA" "$ROOT$ETC/edge-ca.pem"; then
			say "$ETC/edge-ca.pem is up to date"
		else
			say "warning: keeping the existing $ETC/edge-ca.pem (differs from $EDGE_CA)"
		fi
	else
		act install -m 0644 "$EDGE_CA" "$ROOT$ETC/edge-ca.pem"
	fi
fi

# The agent's key: generated once, never replaced.
KEY="$ETC/agent.key"
AGENT_BIN="$ROOT$PREFIX/bin/relais-agent"
if [ "$DRY" = 1 ] && [ ! -x "$AGENT_BIN" ]; then AGENT_BIN="$BUILD_DIR/relais-agent"; fi
if [ -e "$ROOT$KEY" ] || [ -L "$ROOT$KEY" ]; then
	say "keeping the existing key $KEY"
else
	if [ "$DRY" = 1 ]; then
		say "would run: $(shquote "$AGENT_BIN" keygen "$ROOT$KEY")"
	else
		say "run: $(shquote "$AGENT_BIN" keygen "$ROOT$KEY")"
		"$AGENT_BIN" keygen "$ROOT$KEY" >/dev/null
	fi
fi
if [ -e "$ROOT$KEY" ] || [ "$DRY" = 1 ]; then owner "$RUSER:$RUSER" "$KEY"; fi

starter_agent_yaml() {
	ca="# edge_ca: $ETC/edge-ca.pem   # trust anchor for a self-signed edge"
	if [ -n "$EDGE_CA" ] || [ -e "$ROOT$ETC/edge-ca.pem" ]; then
		ca="edge_ca: $ETC/edge-ca.pem     # trust anchor for the edge's self-signed certificate"
	fi
	cat <<EOF
# relais-agent configuration, written by deploy/install-agent.sh (it never
# overwrites this file).  Every key: man relais-agent, docs/configuration.md,
# $PREFIX/share/relais/examples/agent.example.yaml
#
# Check:  relais-agent -t -c $ETC/agent.yaml
# Apply:  systemctl reload relais-agent

edge: ${EDGE_URL:-$PLACEHOLDER}
key: $KEY
$ca
name: $AGENT_NAME
log_level: info

# Host name -> local service.  Each host must be allowed for this agent in
# the edge's edge.yaml (hosts:).
routes:
  # - host: jellyfin.home.example.com
  #   to: http://127.0.0.1:8096
  # - host: nas.home.example.com
  #   to: https://192.168.1.10:5001
  #   tls_verify: false          # self-signed certificate on the NAS
EOF
}

write_once "$ETC/agent.yaml" 0640 "root:$RUSER" starter_agent_yaml || true

# The public key and the lines for the edge.
PUB=""
if [ -e "$ROOT$KEY" ]; then
	PUB=$("$AGENT_BIN" pubkey "$ROOT$KEY") || die "cannot read the public key of $KEY"
fi
hosts_yaml=$(printf '%s' "$HOSTS" | sed 's/[^,][^,]*/"&"/g; s/,/, /g')
echo
if [ -n "$PUB" ]; then
	say "public key of $KEY: $PUB"
	echo
	echo "---- paste under \"agents:\" in /etc/relais/edge.yaml on the edge ----"
	echo "  - name: $AGENT_NAME"
	echo "    key: \"$PUB\""
	echo "    hosts: [$hosts_yaml]"
	echo "---- end ----"
	echo "then, on the edge: systemctl reload relais-edge"
	echo
else
	say "(the public key and the lines for edge.yaml are printed once the key exists)"
fi

READY=1
if [ "$DRY" = 0 ] && grep -q "^edge: $PLACEHOLDER" "$ROOT$ETC/agent.yaml"; then
	say "$ETC/agent.yaml still names the placeholder edge $PLACEHOLDER:"
	say "set edge: (and routes:), then: systemctl start relais-agent"
	READY=0
fi
if [ -z "$ROOT" ] && [ "$DRY" = 0 ] && [ "$READY" = 1 ]; then
	if out=$("$PREFIX/bin/relais-agent" -t -c "$ETC/agent.yaml" 2>&1); then
		say "$ETC/agent.yaml: $out"
	else
		printf '%s\n' "$out" >&2
		say "fix $ETC/agent.yaml (relais-agent -t -c $ETC/agent.yaml), then: systemctl restart relais-agent"
		READY=0
	fi
fi
start_unit relais-agent "$ETC/agent.yaml" "$READY"
say "done.  Add routes to $ETC/agent.yaml, then: systemctl reload relais-agent;"
say "logs: journalctl -u relais-agent -f"
