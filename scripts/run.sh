#!/usr/bin/env bash
# `make run`: the whole system in one process for development.
#   - PostgreSQL from bash scripts/pg.sh (database "emailsender"; DATABASE_URL wins when set);
#   - grpcurl (pinned) in .bin/; the dev runner prints commands that work when
#     pasted into a new shell: "grpcurl" when the user's PATH has one, else the
#     absolute path of .bin/grpcurl (DEV_GRPCURL);
#   - go run ./services/devstack: ingest, worker (sandbox provider) and report with an
#     embedded NATS JetStream server (or the NATS_URL you export); it prints the dev
#     account's API key, grpcurl and curl (HTTP/JSON) commands to send a first mail
#     and read its status, and the console URL.
# Arguments are passed to the dev runner. Stop with Ctrl-C; a local PostgreSQL
# cluster started here keeps running (bash scripts/pg.sh stop).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/tools.sh
source "$ROOT/scripts/tools.sh"

DATABASE_URL="$(bash scripts/pg.sh dev)"
export DATABASE_URL

if [[ -z "${DEV_GRPCURL:-}" ]]; then
	if command -v grpcurl >/dev/null 2>&1; then
		DEV_GRPCURL=grpcurl
	elif ensure_tool grpcurl; then
		DEV_GRPCURL="$TOOLS_BIN/grpcurl"
	else
		echo "run: warning: grpcurl is not available; the printed commands need it (go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4)" >&2
		DEV_GRPCURL=grpcurl
	fi
fi
export DEV_GRPCURL

if [[ -n "${NATS_URL:-}" ]]; then
	echo "run: using NATS at $NATS_URL" >&2
	export NATS_URL
fi
# The dev stack's SMTP sinks and emulators run on this machine: open loopback
# to providers' hosts (the services allow only the public internet otherwise).
export OUTBOUND_ALLOW_NETS="${OUTBOUND_ALLOW_NETS-127.0.0.0/8,::1}"
echo "run: DATABASE_URL=$DATABASE_URL OUTBOUND_ALLOW_NETS=$OUTBOUND_ALLOW_NETS" >&2
exec go run ./services/devstack "$@"
