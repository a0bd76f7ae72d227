#!/usr/bin/env bash
# make bench-scale: the report's queries at scale (services/devstack/benchscale).
# Seeds a database of its own on the PostgreSQL server of DATABASE_URL
# (scripts/pg.sh) with 10 million messages for 1,000 accounts, unless the
# database already holds that seed (its marker matches: the run then takes a
# few minutes), starts the report service in process and measures p50/p95 of
# GetMessage, every ListMessages filter shape and GetStats for the big account
# and a small one; writes results/bench-scale.md (the table and the EXPLAIN
# (ANALYZE, BUFFERS) of every shape) and results/bench-scale.json, and puts the
# table into README.md between the BENCH-SCALE markers of its Performance
# section.
#
#   scripts/bench-scale.sh [harness flags]   e.g. -messages 200000 -database scale_dev
#                                            (a small seed to develop with), -only stats
#                                            (-only console: the console pages only),
#                                            -calls 20, -reseed
#
# Environment: BENCH_OUT (results) is the results directory; BENCH_README=0
# leaves README.md alone (so does any flag: only the default run is the
# README's).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${BENCH_OUT:-results}"
start=$(date +%s)

DATABASE_URL="$(bash scripts/pg.sh test)"
export DATABASE_URL

mkdir -p "$OUT"
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
echo "bench-scale: building the harness" >&2
go build -o "$bin/bench-scale" ./services/devstack/benchscale
echo "bench-scale: running (the first run seeds for about 30 minutes on 2 cores; later runs reuse the seed)" >&2
"$bin/bench-scale" -out "$OUT" "$@"

if [[ "${BENCH_README:-1}" != 0 && $# -eq 0 ]]; then
	table="$bin/table.md"
	# The summary: everything of bench-scale.md before its EXPLAIN section,
	# without its title.
	awk '/^## EXPLAIN/ { exit } NR > 2 { print }' "$OUT/bench-scale.md" >"$table"
	echo "Full results with the EXPLAIN (ANALYZE, BUFFERS) of every shape: \`$OUT/bench-scale.md\`." >>"$table"
	awk -v table="$table" '
		/<!-- BENCH-SCALE:BEGIN -->/ { print; while ((getline line < table) > 0) print line; skip = 1; next }
		/<!-- BENCH-SCALE:END -->/ { skip = 0 }
		!skip { print }' README.md >README.md.tmp
	mv README.md.tmp README.md
	echo "bench-scale: README.md Performance section updated from $OUT/bench-scale.md" >&2
fi
echo "bench-scale: done in $(($(date +%s) - start)) s; results in $OUT/" >&2
