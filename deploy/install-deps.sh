#!/bin/sh
# Install every Debian 12 package that relais' build, tests and benchmarks need
# (systemd for `systemd-analyze verify`; podman, runc and debootstrap for
# `make container-test`, which runs podman as root with host networking and
# the kernel's overlayfs, so neither uidmap, slirp4netns nor fuse-overlayfs).
# Idempotent: packages already present are left alone; run as root or with sudo.
set -eu

PKGS="build-essential pkg-config make gcc clang libclang-rt-14-dev llvm
libwebsockets-dev libssl-dev libsodium-dev libyaml-dev
openssl ca-certificates curl iproute2 procps psmisc
python3 python3-pytest python3-websockets python3-cryptography python3-yaml
nginx libnginx-mod-stream wrk pebble iperf3 socat
systemd podman runc debootstrap"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
	exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
# The benchmark starts its own nginx; the packaged service must not hold port 80.
if command -v systemctl >/dev/null 2>&1; then
	$SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
fi
echo "install-deps: done"
