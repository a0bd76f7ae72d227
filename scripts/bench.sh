#!/usr/bin/env bash
# make bench: run the benchmark harness (services/devstack/bench) against real
# PostgreSQL (scripts/pg.sh), an in-process NATS server and local SMTP sinks,
# write results/bench-<date>.json, results/bench-latest.json,
# results/bench-interop.txt (the SMTP delivery rate to Mailpit, Postfix and
# aiosmtpd), results/bench-inbound.txt (inbound DSN processing, dsn/s),
# results/bench-submission.txt (SMTP submission against gRPC SendEmail,
# msg/s), results/bench-templates.txt (templated SendBatch against plain,
# cpu-µs/msg and msg/s) and
# results/bench-latest.md (with CPU and allocation profiles in
# results/profiles/), and put the table into README.md between the BENCH
# markers of its Performance section.
#
#   scripts/bench.sh [harness flags]     e.g. -only ingest, -ingest-duration 4s,
#                                        -only webhook,watch (webhook delivery
#                                        events/s, WatchEvents latency)
#
# Environment: BENCH_OUT (results) is the results directory; BENCH_README=0
# leaves README.md alone.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${BENCH_OUT:-results}"
start=$(date +%s)

DATABASE_URL="$(bash scripts/pg.sh test)"
export DATABASE_URL

mkdir -p .bin "$OUT"
# Absolute: the steps below run in other directories.
OUT="$(cd "$OUT" && pwd)"
echo "bench: building the harness" >&2
go build -o .bin/bench ./services/devstack/bench
echo "bench: running (about 7 minutes on 2 cores)" >&2
.bin/bench -out "$OUT" "$@"

if [[ $# -eq 0 ]]; then
	# The SMTP provider against each server of the interoperability matrix
	# (Mailpit, Postfix, aiosmtpd): msgs/s of 1 KB over 8 pooled connections.
	echo "bench: SMTP delivery rate per independent server" >&2
	bash scripts/mail-servers.sh install
	(cd pkg/provider && go test -run '^$' -bench BenchmarkInterop -benchtime 3s ./smtp/) |
		tee "$OUT/bench-interop.txt" | grep -E '^Benchmark' >&2
fi

if [[ $# -eq 0 ]]; then
	# Inbound DSN processing: DSNs over SMTP (32 connections) into events on
	# JetStream and suppressions in PostgreSQL, end to end (dsn/s: the clock
	# stops when the last event is on EMAIL_EVENTS; smtp-dsn/s: the 250s
	# alone; cpu-us/dsn: this process's CPU per DSN), and the parser alone.
	echo "bench: inbound DSN processing" >&2
	( (cd services/inbound && go test -run '^$' -bench 'BenchmarkInboundDSN' -benchtime 3000x .) &&
		(cd pkg && go test -run '^$' -bench 'BenchmarkParseDSN' -benchtime 2s ./mailreport/) ) |
		tee "$OUT/bench-inbound.txt" | grep -E '^Benchmark' >&2
fi

if [[ $# -eq 0 ]]; then
	# SMTP submission against gRPC SendEmail: the same 1 KB messages accepted
	# per second through each path (8 senders, no worker), both numbers.
	echo "bench: SMTP submission against gRPC SendEmail" >&2
	(cd services/devstack && E2E_BENCH_OUT="$OUT/bench-submission.txt" \
		go test -tags e2ebench -count=1 -run '^TestSubmissionThroughput$' ./e2e/ >/dev/null)
	cat "$OUT/bench-submission.txt" >&2
fi

if [[ $# -eq 0 ]]; then
	# Templated SendBatch against the same messages sent plain (issue 16: the
	# goal is within 20%): batches of 100 through ingest, per message.
	echo "bench: templated SendBatch against plain" >&2
	(cd services/ingest && go test -run '^$' -bench 'BenchmarkSendBatchTemplate' -benchtime 100x -count 3 .) |
		tee "$OUT/bench-templates.txt" | grep -E '^Benchmark' >&2
fi

if [[ "${BENCH_README:-1}" != 0 && $# -eq 0 ]]; then
	table="$OUT/bench-latest.md"
	if ! grep -q '<!-- BENCH:BEGIN -->' README.md; then
		# First run: add the section before the configuration.
		awk '/^## Configuration/ { print "## Performance\n\n<!-- BENCH:BEGIN -->\n<!-- BENCH:END -->\n" } { print }' README.md >README.md.tmp
		mv README.md.tmp README.md
	fi
	awk -v table="$table" '
		/<!-- BENCH:BEGIN -->/ { print; while ((getline line < table) > 0) print line; skip = 1; next }
		/<!-- BENCH:END -->/ { skip = 0 }
		!skip { print }' README.md >README.md.tmp
	mv README.md.tmp README.md
	echo "bench: README.md Performance section updated from $table" >&2
fi
echo "bench: done in $(($(date +%s) - start)) s; results in $OUT/" >&2
