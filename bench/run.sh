#!/bin/sh
# make bench: relais side by side with a direct connection and with nginx as
# a one-hop reverse proxy, all on loopback, in one run.  Prints a table and
# the relais/nginx ratios.  A benchmark, not a test: it never fails on numbers.
set -eu
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD="$(pwd)/$BUILD" ;; esac
DUR=${BENCH_SECONDS:-8}
CONNS=${BENCH_CONNS:-50}
exec /usr/bin/python3 "$(dirname "$0")/bench.py" "$BUILD" "$DUR" "$CONNS"
