#!/usr/bin/env bash
# Make sure a PostgreSQL server is available and print the DATABASE_URL to use
# (only the URL goes to stdout; progress goes to stderr).
#
#   scripts/pg.sh [test]   URL of the database "test"        (make test)
#   scripts/pg.sh dev      URL of the database "emailsender" (make run), created if missing
#   scripts/pg.sh status   say which local cluster runs; exit 0 when it runs
#   scripts/pg.sh stop     stop the project-local cluster (its data is kept)
#   scripts/pg.sh reset    stop it and delete its data
#
# Where the server comes from, first match wins:
#   1. DATABASE_URL, when set: checked, then printed as it is.
#   2. A server on 127.0.0.1:5432 that lets user postgres in without a password
#      (trust auth, as on the project's machines): the database is created if missing.
#   3. A throwaway cluster from this machine's PostgreSQL binaries (initdb/pg_ctl under
#      /usr/lib/postgresql/*/bin or on PATH), data in .data/pg, trust auth, on
#      127.0.0.1:55432 or the next free port, tuned for speed not durability.
#      As root it runs as the "postgres" user (initdb refuses root).
#
# Environment: PG_FORCE_LOCAL=1 skips 1 and 2; PG_PORT (55432) is the first port
# tried; PG_DIR (.data/pg) the data directory; PG_USER the account the local
# cluster runs as when started by root (postgres, else nobody).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="$ROOT/.data"
STATE_FILE="$STATE_DIR/pg.env"
FIRST_PORT="${PG_PORT:-55432}"

log() { echo "pg: $*" >&2; }
die() {
	echo "pg: error: $*" >&2
	exit 1
}

MODE="${1:-test}"
case "$MODE" in
test) DB="test" ;;
dev | run) DB=emailsender ;;
stop | status | reset) DB= ;;
-h | --help | help)
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*) die "unknown command $MODE (test, dev, status, stop, reset)" ;;
esac

# --- helpers -----------------------------------------------------------------

# The directory of initdb/pg_ctl/postgres: the version matching an existing data
# directory if any, else the newest under /usr/lib/postgresql, else PATH.
find_pg_bin() {
	local want="${1:-}" d best="" v bestv=0 p
	if [[ -n "$want" && -x "/usr/lib/postgresql/$want/bin/initdb" ]]; then
		echo "/usr/lib/postgresql/$want/bin"
		return 0
	fi
	for d in /usr/lib/postgresql/*/bin; do
		[[ -x "$d/initdb" && -x "$d/pg_ctl" ]] || continue
		v="$(basename "$(dirname "$d")")"
		v="${v%%.*}"
		[[ "$v" =~ ^[0-9]+$ ]] || continue
		if ((v > bestv)); then
			bestv=$v
			best=$d
		fi
	done
	if [[ -n "$best" ]]; then
		echo "$best"
		return 0
	fi
	if p="$(command -v initdb 2>/dev/null)"; then
		p="$(readlink -f "$p")"
		dirname "$p"
		return 0
	fi
	if p="$(command -v pg_config 2>/dev/null)" && [[ -x "$("$p" --bindir)/initdb" ]]; then
		"$p" --bindir
		return 0
	fi
	return 1
}

psql_bin() {
	local b
	if b="$(command -v psql 2>/dev/null)"; then
		echo "$b"
	elif b="$(find_pg_bin)" && [[ -x "$b/psql" ]]; then
		echo "$b/psql"
	else
		return 1
	fi
}

# psql_q URL SQL: run one statement, print the unaligned result; never prompts.
psql_q() {
	local psql
	psql="$(psql_bin)" || return 1
	PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-3}" "$psql" -X -w -q -A -t -v ON_ERROR_STOP=1 -d "$1" -c "$2"
}

# url_for HOSTPORT DB
url_for() { echo "postgres://postgres@$1/$2?sslmode=disable"; }

# ensure_db ADMIN_URL NAME: create database NAME when it does not exist.
ensure_db() {
	local admin="$1" name="$2"
	[[ "$name" =~ ^[a-z_][a-z0-9_]*$ ]] || die "bad database name $name"
	if [[ "$(psql_q "$admin" "select 1 from pg_database where datname = '$name'")" == 1 ]]; then
		return 0
	fi
	log "creating database $name"
	# A concurrent creator may win the race: only fail if it still is missing.
	psql_q "$admin" "create database \"$name\"" >/dev/null 2>&1 || true
	[[ "$(psql_q "$admin" "select 1 from pg_database where datname = '$name'")" == 1 ]] ||
		die "could not create database $name"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Run a command as the cluster's owner (initdb and postgres refuse root).
OWNER=""
runas() {
	if [[ -z "$OWNER" ]]; then
		"$@"
	elif command -v runuser >/dev/null 2>&1; then
		runuser -u "$OWNER" -- "$@"
	else
		su -s /bin/bash "$OWNER" -c "$(printf '%q ' "$@")"
	fi
}

pick_owner() {
	OWNER=""
	if [[ "$(id -u)" -eq 0 ]]; then
		if [[ -n "${PG_USER:-}" ]]; then
			OWNER="$PG_USER"
		elif id postgres >/dev/null 2>&1; then
			OWNER=postgres
		else
			OWNER=nobody
		fi
		id "$OWNER" >/dev/null 2>&1 || die "user $OWNER does not exist (set PG_USER)"
	fi
}

load_state() {
	PGDATA_DIR="" PGBIN_DIR="" OWNER=""
	if [[ -f "$STATE_FILE" ]]; then
		# shellcheck disable=SC1090
		source "$STATE_FILE"
	fi
	if [[ -n "${PG_DIR:-}" ]]; then
		PGDATA_DIR="$PG_DIR"
	fi
}

cluster_running() {
	[[ -n "${PGDATA_DIR:-}" && -n "${PGBIN_DIR:-}" && -f "$PGDATA_DIR/postmaster.pid" ]] || return 1
	(cd / && runas "$PGBIN_DIR/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1)
}

# The port a running cluster listens on: line 4 of postmaster.pid.
cluster_port() { sed -n 4p "$PGDATA_DIR/postmaster.pid"; }

stop_cluster() {
	load_state
	if cluster_running; then
		log "stopping local cluster in $PGDATA_DIR"
		(cd / && runas "$PGBIN_DIR/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null)
	else
		log "no local cluster running"
	fi
}

# --- the local cluster -------------------------------------------------------

start_local() {
	mkdir -p "$STATE_DIR"
	# One starter at a time. The lock is fd 9, closed for the server (9>&-) so
	# the postmaster does not inherit it; it is released when this script exits.
	if command -v flock >/dev/null 2>&1; then
		exec 9>"$STATE_DIR/pg.lock"
		flock -w 120 9 || die "another scripts/pg.sh holds $STATE_DIR/pg.lock"
	fi

	load_state
	if cluster_running; then
		PORT="$(cluster_port)"
		log "local cluster already running on 127.0.0.1:$PORT ($PGDATA_DIR)"
		return 0
	fi

	pick_owner
	PGDATA_DIR="${PGDATA_DIR:-${PG_DIR:-$STATE_DIR/pg}}"
	local have_version=""
	[[ -f "$PGDATA_DIR/PG_VERSION" ]] && have_version="$(cat "$PGDATA_DIR/PG_VERSION")"
	PGBIN_DIR="$(find_pg_bin "$have_version")" ||
		die "no PostgreSQL server binaries (initdb, pg_ctl) found under /usr/lib/postgresql/*/bin or on PATH; install them (Debian: apt-get install postgresql) or set DATABASE_URL"
	local binver
	binver="$("$PGBIN_DIR/pg_ctl" --version | awk '{print $NF}')"
	binver="${binver%%.*}"
	if [[ -n "$have_version" && "$have_version" != "$binver" ]]; then
		die "$PGDATA_DIR was made by PostgreSQL $have_version but the binaries are $binver: run scripts/pg.sh reset"
	fi

	mkdir -p "$PGDATA_DIR"
	if [[ -n "$OWNER" ]]; then
		chown "$OWNER" "$PGDATA_DIR"
		chmod 700 "$PGDATA_DIR"
		# The owner must reach the folder through every parent; if it cannot (a
		# private home directory, say), keep the cluster under /tmp instead.
		if ! runas test -w "$PGDATA_DIR"; then
			local alt
			alt="/tmp/emailsender-pg-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
			log "$OWNER cannot reach $PGDATA_DIR; using $alt"
			rmdir "$PGDATA_DIR" 2>/dev/null || true
			PGDATA_DIR="$alt"
			mkdir -p "$PGDATA_DIR"
			chown "$OWNER" "$PGDATA_DIR"
			chmod 700 "$PGDATA_DIR"
		fi
	fi

	if [[ ! -f "$PGDATA_DIR/PG_VERSION" ]]; then
		[[ -z "$(ls -A "$PGDATA_DIR")" ]] || die "$PGDATA_DIR is not empty and holds no cluster: remove it or set PG_DIR"
		log "initdb $PGDATA_DIR (PostgreSQL $binver${OWNER:+, as $OWNER})"
		if ! (cd / && runas "$PGBIN_DIR/initdb" -D "$PGDATA_DIR" -U postgres -A trust -E UTF8 --locale=C --no-sync) >"$STATE_DIR/initdb.log" 2>&1 9>&-; then
			cat "$STATE_DIR/initdb.log" >&2
			die "initdb failed"
		fi
		# Unix socket next to the data when the path fits (sun_path is 108 bytes),
		# else TCP only.
		local sockdir="$PGDATA_DIR"
		((${#PGDATA_DIR} + 20 < 100)) || sockdir=""
		cat >>"$PGDATA_DIR/postgresql.conf" <<-CONF

			# scripts/pg.sh: a throwaway development and test cluster.
			listen_addresses = '127.0.0.1'
			unix_socket_directories = '$sockdir'
			max_connections = 300
			fsync = off
			synchronous_commit = off
			full_page_writes = off
		CONF
	fi

	PORT="$FIRST_PORT"
	local tries=0
	while port_in_use "$PORT"; do
		((++tries <= 50)) || die "no free port from $FIRST_PORT to $PORT"
		PORT=$((PORT + 1))
	done
	[[ "$PORT" == "$FIRST_PORT" ]] || log "port $FIRST_PORT is taken; using $PORT"

	log "starting local cluster on 127.0.0.1:$PORT"
	if ! (cd / && runas "$PGBIN_DIR/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w -t 60 -o "-p $PORT" start) >/dev/null 2>&1 9>&-; then
		tail -n 30 "$PGDATA_DIR/server.log" >&2 || true
		die "pg_ctl start failed (log: $PGDATA_DIR/server.log)"
	fi
	{
		printf 'PGDATA_DIR=%q\n' "$PGDATA_DIR"
		printf 'PGBIN_DIR=%q\n' "$PGBIN_DIR"
		printf 'OWNER=%q\n' "$OWNER"
	} >"$STATE_FILE"
}

# --- main ---------------------------------------------------------------------

case "$MODE" in
stop)
	stop_cluster
	exit 0
	;;
reset)
	stop_cluster
	load_state
	if [[ -n "$PGDATA_DIR" && -d "$PGDATA_DIR" ]]; then
		log "removing $PGDATA_DIR"
		rm -rf "$PGDATA_DIR"
	fi
	rm -f "$STATE_FILE"
	exit 0
	;;
status)
	load_state
	if cluster_running; then
		log "local cluster running on 127.0.0.1:$(cluster_port) ($PGDATA_DIR)"
		exit 0
	fi
	log "no local cluster running"
	exit 1
	;;
esac

# 1. DATABASE_URL
if [[ -n "${DATABASE_URL:-}" && "${PG_FORCE_LOCAL:-0}" != 1 ]]; then
	if psql_bin >/dev/null; then
		psql_q "$DATABASE_URL" "select 1" >/dev/null ||
			die "DATABASE_URL is set but the server does not accept it"
	elif command -v pg_isready >/dev/null 2>&1; then
		pg_isready -q -t 5 -d "$DATABASE_URL" || die "DATABASE_URL is set but the server does not answer"
	else
		log "no psql or pg_isready: using DATABASE_URL unchecked"
	fi
	log "using DATABASE_URL from the environment"
	echo "$DATABASE_URL"
	exit 0
fi

# 2. A trusting server on 127.0.0.1:5432
if [[ "${PG_FORCE_LOCAL:-0}" != 1 ]] && port_in_use 5432 && psql_bin >/dev/null; then
	admin=""
	for d in test postgres; do
		if psql_q "$(url_for 127.0.0.1:5432 "$d")" "select 1" >/dev/null 2>&1; then
			admin="$(url_for 127.0.0.1:5432 "$d")"
			break
		fi
	done
	if [[ -n "$admin" ]]; then
		ensure_db "$admin" "$DB"
		log "using the server on 127.0.0.1:5432, database $DB"
		url_for 127.0.0.1:5432 "$DB"
		exit 0
	fi
	log "127.0.0.1:5432 answers but does not let postgres in without a password; starting a local cluster"
fi

# 3. The project-local cluster
start_local
admin="$(url_for "127.0.0.1:$PORT" postgres)"
psql_q "$admin" "select 1" >/dev/null || die "local cluster on 127.0.0.1:$PORT does not accept connections"
ensure_db "$admin" test
ensure_db "$admin" emailsender
log "using the local cluster on 127.0.0.1:$PORT, database $DB (stop it with scripts/pg.sh stop)"
url_for "127.0.0.1:$PORT" "$DB"
