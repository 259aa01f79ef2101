#!/bin/sh
# make demo: a local edge + agent + demo origin on an embedded configuration.
# Everything lives in a temporary directory and stops on Ctrl-C.
set -eu
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD="$(pwd)/$BUILD" ;; esac
HTTP_PORT=${DEMO_PORT:-8080}
TUNNEL_PORT=${DEMO_TUNNEL_PORT:-8443}
ORIGIN_PORT=${DEMO_ORIGIN_PORT:-8090}
DIR=$(mktemp -d /tmp/relais-demo.XXXXXX)
PIDS=""

cleanup() {
	trap - INT TERM EXIT
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$DIR"
	echo
	echo "demo stopped"
}
trap cleanup INT TERM EXIT

# Throwaway CA and tunnel certificate (the agent trusts only this CA).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-keyout "$DIR/ca.key" -out "$DIR/ca.crt" -subj "/CN=relais demo CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$DIR/tunnel.key" -out "$DIR/tunnel.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$DIR/ext"
openssl x509 -req -in "$DIR/tunnel.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
	-CAcreateserial -days 1 -out "$DIR/tunnel.crt" -extfile "$DIR/ext" 2>/dev/null
chmod 600 "$DIR/tunnel.key"
PUB=$("$BUILD/relais-agent" keygen "$DIR/agent.key")

cat > "$DIR/edge.yaml" <<EOY
listen:
  http: 127.0.0.1:$HTTP_PORT
tunnel:
  listen: 127.0.0.1:$TUNNEL_PORT
  hostname: localhost
  path: /relais
  cert: $DIR/tunnel.crt
  key: $DIR/tunnel.key
agents:
  - name: demo
    key: "$PUB"
    hosts: ["demo.localhost", "*.demo.localhost"]
access_log: "-"
EOY
cat > "$DIR/agent.yaml" <<EOY
edge: wss://localhost:$TUNNEL_PORT/relais
key: $DIR/agent.key
edge_ca: $DIR/ca.crt
routes:
  - host: demo.localhost
    to: http://127.0.0.1:$ORIGIN_PORT
EOY

mkdir -p "$DIR/www"
cat > "$DIR/www/index.html" <<'EOH'
<!doctype html>
<html><head><meta charset="utf-8"><title>relais demo</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto">
<h1>It works: this page came through the relais tunnel.</h1>
<p>Your browser asked <b>relais-edge</b> (the VPS side), which routed the request by its
Host header through an authenticated WebSocket tunnel to <b>relais-agent</b> (the home side),
which fetched it from a local web server that listens on no public port.</p>
</body></html>
EOH
(cd "$DIR/www" && exec /usr/bin/python3 -m http.server "$ORIGIN_PORT" --bind 127.0.0.1 \
	>"$DIR/origin.log" 2>&1) &
PIDS="$PIDS $!"
"$BUILD/relais-edge" -c "$DIR/edge.yaml" &
PIDS="$PIDS $!"
"$BUILD/relais-agent" -c "$DIR/agent.yaml" &
PIDS="$PIDS $!"

i=0
until curl -fsS -o /dev/null -H "Host: demo.localhost" "http://127.0.0.1:$HTTP_PORT/" 2>/dev/null; do
	i=$((i + 1))
	if [ $i -gt 100 ]; then
		echo "demo: the page did not come up; see the logs above" >&2
		exit 1
	fi
	sleep 0.1
done
echo
echo "relais demo is running. Open:"
echo
echo "    http://demo.localhost:$HTTP_PORT/"
echo
echo "(edge on 127.0.0.1:$HTTP_PORT, tunnel on 127.0.0.1:$TUNNEL_PORT, origin on 127.0.0.1:$ORIGIN_PORT; Ctrl-C stops)"
wait
