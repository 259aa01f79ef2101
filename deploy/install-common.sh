# Shared by deploy/install-edge.sh and deploy/install-agent.sh (sourced, not run).
#
# Every step looks before it acts, so a second run changes nothing: files that
# exist (configurations, keys, certificates) are never overwritten, `make
# install` copies only files that differ (install -C), the user and the
# directories are created only when missing.
#
#   --dry-run      print each action instead of doing it
#   --root DIR     install into DIR (also: DESTDIR=DIR) instead of /; the
#                  machine's users, file owners and systemd are left alone:
#                  those actions are printed, not run
#   --prefix DIR   installation prefix (default /usr/local)
#   --no-build     do not run make; install the binaries already in the build
#                  directory
#   --build-dir D  build directory (default build, relative to the checkout)

umask 022
SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/usr/local
ROOT=${DESTDIR:-}
DRY=0
NOBUILD=0
BUILD_DIR=build
RUSER=relais
ETC=/etc/relais
STATE=/var/lib/relais
LOGS=/var/log/relais
BIN_CHANGED=0
UNIT_CHANGED=0

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() {
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	exit 1
}

# Quote arguments for display so that a printed command can be pasted.
shquote() {
	out=""
	for a in "$@"; do
		case $a in
		*[!A-Za-z0-9_./:=@%+,-]* | "") a="'$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'" ;;
		esac
		out="$out${out:+ }$a"
	done
	printf '%s' "$out"
}

# act CMD...: change something in the target tree (or print it with --dry-run).
act() {
	if [ "$DRY" = 1 ]; then
		say "would run: $(shquote "$@")"
	else
		say "run: $(shquote "$@")"
		"$@"
	fi
}

# host CMD...: change something on the machine itself (users, owners, systemd,
# packages): printed, not run, with --root or --dry-run.
host() {
	if [ -n "$ROOT" ]; then
		say "skipped (--root): $(shquote "$@")"
	else
		act "$@"
	fi
}

common_usage() {
	cat <<EOF
  --dry-run        print each action instead of doing it
  --root DIR       install into DIR (or DESTDIR=DIR) instead of /; user
                   creation, chown and systemctl are printed, not run
  --prefix DIR     installation prefix (default /usr/local)
  --no-build       do not build; install the binaries in the build directory
  --build-dir DIR  build directory (default: build in the checkout)
  -h, --help       this text
EOF
}

# need_arg OPTION VALUE
need_arg() { [ -n "${2:-}" ] || die "$1 needs an argument"; }

common_preflight() {
	case $PREFIX in /*) ;; *) die "--prefix must be an absolute path" ;; esac
	if [ -n "$ROOT" ]; then
		case $ROOT in /*) ;; *) ROOT="$(pwd)/$ROOT" ;; esac
		ROOT=${ROOT%/}
		[ -n "$ROOT" ] || die "--root / : leave --root out to install on this machine"
	fi
	case $BUILD_DIR in /*) ;; *) BUILD_DIR="$SRC/$BUILD_DIR" ;; esac
	if [ "$DRY" = 0 ] && [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
		die "run as root (sudo $0 ...), or try --dry-run / --root DIR"
	fi
	if [ "$DRY" = 1 ]; then say "dry run: nothing is changed"; fi
	if [ -n "$ROOT" ]; then say "installing into $ROOT"; fi
}

# Build (unless --no-build), then make install-files into ROOT.
build_and_install() {
	bin="$ROOT$PREFIX/bin"
	if [ "$NOBUILD" = 1 ]; then
		for b in relais-edge relais-agent; do
			[ -x "$BUILD_DIR/$b" ] || die "--no-build: $BUILD_DIR/$b does not exist; run make first"
		done
	else
		if ! command -v make >/dev/null 2>&1 || ! command -v cc >/dev/null 2>&1 ||
			! command -v pkg-config >/dev/null 2>&1 ||
			! pkg-config --exists libwebsockets openssl libsodium yaml-0.1 2>/dev/null; then
			if [ -n "$ROOT" ]; then
				die "build dependencies are missing; install them (deploy/install-deps.sh) or use --no-build"
			fi
			host env DEBIAN_FRONTEND=noninteractive apt-get update -qq
			host env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
				build-essential pkg-config libwebsockets-dev libssl-dev libsodium-dev libyaml-dev openssl
		fi
		# Build as the user who owns the checkout when run through sudo.
		asuser=""
		if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] && [ "$(id -u)" -eq 0 ] &&
			[ "$(stat -c %U "$SRC")" = "$SUDO_USER" ]; then
			asuser="runuser -u $SUDO_USER --"
		fi
		# shellcheck disable=SC2086
		act $asuser make -C "$SRC" -j"$(nproc 2>/dev/null || echo 2)" --no-print-directory \
			"BUILD=$BUILD_DIR" "$BUILD_DIR/relais-edge" "$BUILD_DIR/relais-agent"
	fi
	old_bin=$(cat "$bin/relais-edge" "$bin/relais-agent" 2>/dev/null | cksum)
	units="$ROOT$PREFIX/lib/systemd/system/relais-edge.service $ROOT$PREFIX/lib/systemd/system/relais-agent.service"
	# shellcheck disable=SC2086
	old_units=$(cat $units 2>/dev/null | cksum)
	command -v make >/dev/null 2>&1 || die "make is missing (apt-get install make)"
	set -- make -C "$SRC" --no-print-directory -s "BUILD=$BUILD_DIR" "PREFIX=$PREFIX" "DESTDIR=$ROOT" install-files
	if [ "$DRY" = 1 ]; then
		say "would run: $(shquote "$@")"
	else
		say "run: $(shquote "$@")"
		# Without the -dev packages (--no-build on a server) the Makefile's
		# pkg-config calls complain; copying files does not need them.
		err=$(mktemp)
		"$@" 2>"$err" || { grep -v -e pkg-config -e "^Perhaps you should add" -e "^to the PKG_CONFIG_PATH" \
			-e "required by 'virtual:world'" "$err" >&2; rm -f "$err"; die "make install-files failed"; }
		grep -v -e pkg-config -e "^Perhaps you should add" -e "^to the PKG_CONFIG_PATH" \
			-e "required by 'virtual:world'" "$err" >&2 || true
		rm -f "$err"
	fi
	[ "$old_bin" = "$(cat "$bin/relais-edge" "$bin/relais-agent" 2>/dev/null | cksum)" ] || BIN_CHANGED=1
	# shellcheck disable=SC2086
	[ "$old_units" = "$(cat $units 2>/dev/null | cksum)" ] || UNIT_CHANGED=1
	if [ "$DRY" = 1 ]; then
		:
	elif [ "$BIN_CHANGED$UNIT_CHANGED" = 00 ]; then
		say "installed binaries and units are up to date"
	else
		say "installed new binaries or units into $ROOT$PREFIX"
	fi
	if [ "$DRY" = 0 ] && [ -z "$ROOT" ] && [ "$PREFIX" != /usr/local ] && [ "$PREFIX" != /usr ]; then
		say "note: systemd looks for units in /etc/systemd/system, /usr/local/lib/systemd/system and"
		say "      /usr/lib/systemd/system; link $PREFIX/lib/systemd/system/relais-*.service from there"
	fi
}

# The units reload with /bin/kill (procps: priority "important", so present on
# every Debian installation except minimal container images).
ensure_kill() {
	if [ -z "$ROOT" ] && [ ! -x /bin/kill ]; then
		host env DEBIAN_FRONTEND=noninteractive apt-get update -qq
		host env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends procps
	fi
}

create_user() {
	if [ -z "$ROOT" ] && getent passwd "$RUSER" >/dev/null 2>&1; then
		say "user $RUSER exists"
		return
	fi
	host useradd --system --user-group --home-dir "$STATE" --no-create-home \
		--shell /usr/sbin/nologin --comment "relais tunnel" "$RUSER"
}

# owner OWNER PATH: chown on the machine (printed with --root or --dry-run).
owner() {
	if [ -z "$ROOT" ] && [ -e "$2" ] && [ "$(stat -c %U:%G "$2")" = "$1" ]; then
		return
	fi
	host chown "$1" "$ROOT$2"
}

# ensure_dir PATH MODE OWNER: create the directory if it is missing.
ensure_dir() {
	if [ -d "$ROOT$1" ]; then
		say "$1 exists"
	else
		act install -d -m "$2" "$ROOT$1"
	fi
	if [ "$3" != root:root ]; then owner "$3" "$1"; fi
}

# write_once PATH MODE OWNER FUNCTION: write FUNCTION's output to PATH unless
# PATH exists (never overwrite).
write_once() {
	if [ -e "$ROOT$1" ] || [ -L "$ROOT$1" ]; then
		say "keeping the existing $1"
		return 1
	fi
	if [ "$DRY" = 1 ]; then
		say "would write $1 (mode $2):"
		"$4" | sed 's/^/    | /'
	else
		say "writing $1 (mode $2)"
		tmp=$(mktemp "$ROOT$1.XXXXXX")
		"$4" >"$tmp"
		chmod "$2" "$tmp"
		mv "$tmp" "$ROOT$1"
	fi
	if [ "$3" != root:root ]; then owner "$3" "$1"; fi
	return 0
}

# start_unit UNIT CONFIG READY: enable the unit; start it when READY is 1
# (restart it when the binaries or the unit changed).
start_unit() {
	if [ -n "$ROOT" ]; then
		host systemctl daemon-reload
		host systemctl enable --now "$1"
		return
	fi
	if [ ! -d /run/systemd/system ]; then
		say "systemd is not running here: start it with"
		say "    $PREFIX/bin/$1 -c $2"
		return
	fi
	host systemctl daemon-reload
	if [ "$3" != 1 ]; then
		host systemctl enable "$1"
		return
	fi
	if [ "$DRY" = 0 ] && systemctl is-active --quiet "$1" &&
		{ [ "$BIN_CHANGED" = 1 ] || [ "$UNIT_CHANGED" = 1 ]; }; then
		say "new binaries or unit: restarting $1 (it drains first)"
		host systemctl restart "$1"
	fi
	if [ "$DRY" = 0 ] && systemctl is-enabled --quiet "$1" && systemctl is-active --quiet "$1"; then
		say "$1 is enabled and running"
	else
		host systemctl enable --now "$1"
	fi
}
