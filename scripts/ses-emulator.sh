#!/usr/bin/env bash
# The SES v2 emulator (aws-ses-v2-local from npm, the version locked in
# deploy/ses-emulator/package-lock.json) that the SES tests send to.
#
#   scripts/ses-emulator.sh install        npm ci into .data/ses-emulator (once; again when the lock changes)
#   scripts/ses-emulator.sh run PORT       install, then run it in the foreground on 127.0.0.1:PORT (exec)
#   scripts/ses-emulator.sh start [PORT]   install, start it in the background (PORT: 8005 or the next
#                                          free one), wait until it answers and print its URL
#   scripts/ses-emulator.sh stop           stop what start started
#   scripts/ses-emulator.sh url            print the URL of what start started
#
# GET /store on the URL lists what it received; POST /clear-store empties it.
# With AWS_SES_ACCOUNT set (GetAccount's JSON answer) it answers GetAccount too.
# Needs Node.js (20+) and npm: `apt-get install nodejs npm` where they are missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/deploy/ses-emulator"
DIR="$ROOT/.data/ses-emulator"
BIN="$DIR/node_modules/.bin/aws-ses-v2-local"
PIDFILE="$DIR/emulator.pid"
URLFILE="$DIR/emulator.url"

log() { echo "ses-emulator: $*" >&2; }
die() {
	echo "ses-emulator: error: $*" >&2
	exit 1
}

install() {
	command -v node >/dev/null 2>&1 || die "node is not installed (the SES tests need Node.js 20+ and npm: apt-get install nodejs npm)"
	command -v npm >/dev/null 2>&1 || die "npm is not installed (apt-get install npm)"
	mkdir -p "$DIR"
	# Test binaries run in parallel and each may ask for the install: one at a time.
	exec 9>"$DIR/.install.lock"
	flock 9
	if [[ -x "$BIN" ]] && cmp -s "$SRC/package-lock.json" "$DIR/package-lock.json"; then
		flock -u 9
		return 0
	fi
	log "installing aws-ses-v2-local into ${DIR#"$ROOT"/} (npm ci)"
	cp "$SRC/package.json" "$SRC/package-lock.json" "$DIR/"
	(cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error >&2) || die "npm ci failed"
	[[ -x "$BIN" ]] || die "npm ci did not install $BIN"
	flock -u 9
}

port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_up() {
	local url="$1" pid="$2" i
	for i in $(seq 1 100); do
		if curl -fsS -o /dev/null "$url/health-check" 2>/dev/null; then
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

MODE="${1:-}"
case "$MODE" in
install)
	install
	;;
run)
	[[ -n "${2:-}" ]] || die "usage: $0 run PORT"
	install
	exec "$BIN" --host 127.0.0.1 --port "$2"
	;;
start)
	install
	if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
		cat "$URLFILE"
		exit 0
	fi
	port="${2:-8005}"
	while ! port_free "$port"; do port=$((port + 1)); done
	nohup "$BIN" --host 127.0.0.1 --port "$port" >"$DIR/emulator.log" 2>&1 &
	pid=$!
	url="http://127.0.0.1:$port"
	if ! wait_up "$url" "$pid"; then
		kill "$pid" 2>/dev/null || true
		cat "$DIR/emulator.log" >&2
		die "the emulator did not answer on $url"
	fi
	echo "$pid" >"$PIDFILE"
	echo "$url" >"$URLFILE"
	log "running on $url (pid $pid, log ${DIR#"$ROOT"/}/emulator.log)"
	echo "$url"
	;;
stop)
	if [[ -f "$PIDFILE" ]]; then
		kill "$(cat "$PIDFILE")" 2>/dev/null || true
		rm -f "$PIDFILE" "$URLFILE"
	fi
	;;
url)
	[[ -f "$URLFILE" ]] || die "not started (scripts/ses-emulator.sh start)"
	cat "$URLFILE"
	;;
-h | --help | help)
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
	;;
*) die "unknown command ${MODE:-(none)} (install, run, start, stop, url)" ;;
esac
