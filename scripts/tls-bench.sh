#!/bin/sh
# TLS cost on one broker: 1 KiB produce throughput and one-record-in-flight
# latency, plaintext vs TLS vs mutual TLS, alternating in one run.
#   ./scripts/tls-bench.sh [RUNS]      (default 3; binaries built into a temp dir)
# Each mode starts a fresh broker on 127.0.0.1 (fsync on), creates a topic
# with one partition, then runs the CLIs' bench mode:
#   produce -t T --count 300000 --size 1024                     # throughput
#   produce -t T --count 3000 --size 1024 --rate 200 --linger 0s # one in flight
set -eu
runs=${1:-3}
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT INT TERM
pid=
CGO_ENABLED=0 go build -o "$work/bin/" ./cmd/broker ./cmd/produce
bin=$work/bin
"$bin/broker" certs create --dir "$work/certs" --hosts 127.0.0.1 --clients bench >/dev/null
head -c 32 /dev/urandom | base64 > "$work/gossip.key"
c=$work/certs
field() { tr , "\n" | sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" | head -1; }
printf '%-10s %-4s %12s %8s %8s %8s\n' mode run records/s MB/s p50_ms p99_ms
for run in $(seq 1 "$runs"); do
	for mode in plaintext tls mtls; do
		rm -rf "$work/data"
		port=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom) % 30000 ))
		set -- --data-dir "$work/data" --addr 127.0.0.1:$port --http-addr "" --kafka-addr "" \
			--gossip-addr 127.0.0.1:$((port+1)) --raft-addr 127.0.0.1:$((port+2)) --peer-addr 127.0.0.1:$((port+3)) --log-level warn
		cli=""
		case $mode in
		tls) set -- "$@" --tls-cert-file "$c/broker.crt" --tls-key-file "$c/broker.key" --tls-ca-file "$c/ca.crt" --gossip-key-file "$work/gossip.key"
			cli="--tls-ca-file $c/ca.crt" ;;
		mtls) set -- "$@" --tls-cert-file "$c/broker.crt" --tls-key-file "$c/broker.key" --tls-ca-file "$c/ca.crt" --gossip-key-file "$work/gossip.key" --tls-client-auth require
			cli="--tls-ca-file $c/ca.crt --tls-cert-file $c/bench.crt --tls-key-file $c/bench.key" ;;
		esac
		"$bin/broker" "$@" 2>"$work/broker.log" &
		pid=$!
		# shellcheck disable=SC2086
		"$bin/broker" topic create t --partitions 1 -b 127.0.0.1:$port $cli >/dev/null 2>&1
		# shellcheck disable=SC2086
		tput=$("$bin/produce" -t t -b 127.0.0.1:$port --count 300000 --size 1024 --stats json $cli)
		# shellcheck disable=SC2086
		lat=$("$bin/produce" -t t -b 127.0.0.1:$port --count 3000 --size 1024 --rate 200 --linger 0s --stats json $cli)
		kill "$pid"; wait "$pid" 2>/dev/null || true
		printf '%-10s %-4s %12s %8s %8s %8s\n' "$mode" "$run" "$(echo "$tput" | field records_per_sec)" "$(echo "$tput" | field mb_per_sec)" \
			"$(echo "$lat" | field p50)" "$(echo "$lat" | field p99)"
	done
done
