#!/usr/bin/env bash
# The fault injection run (`make chaos`): builds the services and nats-server,
# runs them as separate processes (2 ingest, 2 SMTP workers, report, nats-server
# and a PostgreSQL cluster of the run's own, started from the machine's server
# binaries like scripts/pg.sh does) under a steady load while a seeded schedule
# SIGKILLs workers (and an ingest replica and the report), restarts nats-server
# and PostgreSQL, and makes the SMTP sink answer 421/451/550 or drop
# connections; then checks that nothing accepted is lost, everything ends,
# the sink got only accepted messages and every SENT one, and counts duplicates.
#
# Writes results/chaos-latest.json and results/chaos-latest.md and puts the
# summary into README.md between <!-- CHAOS:BEGIN --> and <!-- CHAOS:END -->.
# Exits 1 when an invariant failed (the README still shows that run).
#
# Environment (defaults in brackets):
#   CHAOS_SEED      fault schedule seed [from the clock; printed]
#   CHAOS_MESSAGES  messages to send [12000]
#   CHAOS_RATE      messages per second [150: about half of what make bench
#                   measures ingest taking on a 2-core machine]
#   CHAOS_FAULTS    faults during the load [30]
#   CHAOS_KEEP=1    keep the work directory (logs, stores) of a passing run
#   CHAOS_README=0  leave README.md alone
# Extra arguments go to the harness (go run ./services/devstack/chaos -h).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Unset means the harness's defaults (services/devstack/chaos, Config.withDefaults).
args=(-out results -name chaos-latest)
[[ -n "${CHAOS_MESSAGES:-}" ]] && args+=(-messages "$CHAOS_MESSAGES")
[[ -n "${CHAOS_RATE:-}" ]] && args+=(-rate "$CHAOS_RATE")
[[ -n "${CHAOS_FAULTS:-}" ]] && args+=(-faults "$CHAOS_FAULTS")
[[ -n "${CHAOS_SEED:-}" ]] && args+=(-seed "$CHAOS_SEED")
[[ "${CHAOS_KEEP:-0}" == 1 ]] && args+=(-keep)

set +e
go run ./services/devstack/chaos "${args[@]}" "$@"
rc=$?
set -e
if [[ $rc -gt 1 || ! -f results/chaos-latest.md ]]; then
	echo "chaos: the harness did not complete (exit $rc)" >&2
	exit "$rc"
fi

if [[ "${CHAOS_README:-1}" != 0 ]]; then
	if ! grep -q '<!-- CHAOS:BEGIN -->' README.md || ! grep -q '<!-- CHAOS:END -->' README.md; then
		echo "chaos: README.md has no <!-- CHAOS:BEGIN --> / <!-- CHAOS:END --> markers; not updated" >&2
	else
		tmp="$(mktemp)"
		awk -v summary=results/chaos-latest.md '
			/<!-- CHAOS:BEGIN -->/ { print; while ((getline line < summary) > 0) print line; skip = 1; next }
			/<!-- CHAOS:END -->/ { skip = 0 }
			!skip { print }
		' README.md >"$tmp"
		cat "$tmp" >README.md
		rm -f "$tmp"
		echo "chaos: README.md Reliability section updated from results/chaos-latest.md" >&2
	fi
fi
exit "$rc"
