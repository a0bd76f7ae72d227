#!/usr/bin/env bash
# `make run`: the whole system in one process for development.
#   - PostgreSQL from bash scripts/pg.sh (database "emailsender"; DATABASE_URL wins when set);
#   - grpcurl (pinned) in .bin/, which is put first on PATH, so the commands the
#     dev runner prints work as they are;
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

ensure_tool grpcurl || echo "run: warning: grpcurl is not available; the printed commands need it" >&2
export PATH="$TOOLS_BIN:$PATH"

if [[ -n "${NATS_URL:-}" ]]; then
	echo "run: using NATS at $NATS_URL" >&2
	export NATS_URL
fi
echo "run: DATABASE_URL=$DATABASE_URL" >&2
exec go run ./services/devstack "$@"
