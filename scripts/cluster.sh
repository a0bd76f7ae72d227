#!/usr/bin/env bash
# A 3-node NATS cluster with JetStream on loopback, for running the services
# against replicated (R3) streams on one machine.
#
#   scripts/cluster.sh start    start n1..n3 (client ports 4301-4303, cluster
#                               ports 6301-6303, stores under .data/cluster/nN)
#                               and print the NATS_URL to use
#   scripts/cluster.sh stop     stop them (SIGTERM; the stores are kept)
#   scripts/cluster.sh kill N   SIGKILL node N (to watch the cluster lose it)
#   scripts/cluster.sh status   list the nodes and whether they run
#   scripts/cluster.sh reset    stop them and delete the stores
#
# nats-server is the pinned version from scripts/tools.sh (.bin/nats-server),
# the same version the services embed in tests; not Debian's older package.
# Then, e.g.:
#   export NATS_URL=nats://127.0.0.1:4301,nats://127.0.0.1:4302,nats://127.0.0.1:4303
#   export NATS_STREAM_REPLICAS=3
# and start ingest, worker and report as in the README. The automated version
# of this, with a node killed under load, is TestClusterNodeLoss in
# services/devstack/chaos (`go run ./services/devstack/chaos -scenario cluster`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.data/cluster"
NODES=(1 2 3)
client_port() { echo $((4300 + $1)); }
cluster_port() { echo $((6300 + $1)); }

log() { echo "cluster: $*" >&2; }

pid_of() {
	local f="$DIR/n$1/nats.pid"
	[[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"
}

write_conf() {
	local n=$1 routes=() m
	for m in "${NODES[@]}"; do
		[[ $m == "$n" ]] || routes+=("nats-route://127.0.0.1:$(cluster_port "$m")")
	done
	mkdir -p "$DIR/n$n/store"
	cat >"$DIR/n$n/nats.conf" <<-CONF
		server_name: n$n
		listen: 127.0.0.1:$(client_port "$n")
		max_payload: 16777216
		pid_file: "$DIR/n$n/nats.pid"
		jetstream {
		  store_dir: "$DIR/n$n/store"
		}
		cluster {
		  name: emailsender-local
		  listen: 127.0.0.1:$(cluster_port "$n")
		  routes: [$(
			IFS=,
			echo "${routes[*]}"
		)]
		}
	CONF
}

start() {
	# shellcheck source=tools.sh
	source "$ROOT/scripts/tools.sh"
	ensure_tool nats-server
	local n urls=()
	for n in "${NODES[@]}"; do
		urls+=("nats://127.0.0.1:$(client_port "$n")")
		if pid_of "$n" >/dev/null; then
			log "n$n already running (pid $(pid_of "$n"))"
			continue
		fi
		if (exec 3<>"/dev/tcp/127.0.0.1/$(client_port "$n")") 2>/dev/null; then
			log "error: port $(client_port "$n") is taken by another program"
			exit 1
		fi
		write_conf "$n"
		nohup "$TOOLS_BIN/nats-server" -c "$DIR/n$n/nats.conf" >>"$DIR/n$n/nats.log" 2>&1 &
		log "n$n started: client 127.0.0.1:$(client_port "$n"), cluster 127.0.0.1:$(cluster_port "$n"), log .data/cluster/n$n/nats.log"
	done
	for n in "${NODES[@]}"; do
		for _ in $(seq 100); do
			(exec 3<>"/dev/tcp/127.0.0.1/$(client_port "$n")") 2>/dev/null && break
			sleep 0.1
		done
	done
	log "stream replicas: set NATS_STREAM_REPLICAS=3 for the services"
	(
		IFS=,
		echo "NATS_URL=${urls[*]}"
	)
}

stop_nodes() {
	local sig=$1 n pid
	for n in "${NODES[@]}"; do
		if pid="$(pid_of "$n")"; then
			kill "-$sig" "$pid"
			for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			log "n$n stopped"
		fi
	done
}

case "${1:-}" in
start) start ;;
stop) stop_nodes TERM ;;
kill)
	n="${2:?usage: cluster.sh kill 1|2|3}"
	pid="$(pid_of "$n")" || { log "n$n is not running"; exit 1; }
	kill -KILL "$pid"
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	log "n$n killed (SIGKILL)"
	;;
status)
	for n in "${NODES[@]}"; do
		if pid="$(pid_of "$n")"; then echo "n$n running (pid $pid) on 127.0.0.1:$(client_port "$n")"; else echo "n$n stopped"; fi
	done
	;;
reset)
	stop_nodes TERM
	rm -rf "$DIR"
	log "removed .data/cluster"
	;;
*)
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
	exit 2
	;;
esac
