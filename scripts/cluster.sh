#!/usr/bin/env bash
# A three-broker cluster on this machine, for trying Skein out.
#   scripts/cluster.sh up      build, start brokers 1-3 (ports 9420-9444), wait until ready
#   scripts/cluster.sh status  broker cluster
#   scripts/cluster.sh down    stop them (SIGTERM: leaderships are handed off first)
#   scripts/cluster.sh wipe    down, then delete their data
# Data and logs go to ./cluster-data (override with SKEIN_CLUSTER_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${SKEIN_CLUSTER_DIR:-$PWD/cluster-data}
bin=$dir/bin

up() {
  mkdir -p "$dir"
  CGO_ENABLED=0 go build -o "$bin/" ./cmd/...
  for id in 1 2 3; do
    if [ -f "$dir/broker$id.pid" ] && kill -0 "$(cat "$dir/broker$id.pid")" 2>/dev/null; then
      echo "broker $id is already running"; continue
    fi
    base=$((9410 + id * 10))
    args=(--node-id "$id" --data-dir "$dir/d$id" --addr "127.0.0.1:$base" --gossip-addr "127.0.0.1:$((base + 1))"
      --raft-addr "127.0.0.1:$((base + 2))" --http-addr "127.0.0.1:$((base + 3))" --kafka-addr "127.0.0.1:$((base + 4))" --peer-addr "127.0.0.1:$((base + 5))")
    [ "$id" != 1 ] && args+=(--join 127.0.0.1:9421)
    "$bin/broker" "${args[@]}" >>"$dir/broker$id.log" 2>&1 &
    echo $! >"$dir/broker$id.pid"
    echo "broker $id: client 127.0.0.1:$base, gossip :$((base + 1)), raft :$((base + 2)), http :$((base + 3)), kafka :$((base + 4)), peer :$((base + 5)), log $dir/broker$id.log"
  done
  for id in 1 2 3; do
    base=$((9410 + id * 10))
    for _ in $(seq 1 150); do
      "$bin/broker" healthcheck --addr "127.0.0.1:$base" >/dev/null 2>&1 && break
      sleep 0.2
    done
    "$bin/broker" healthcheck --addr "127.0.0.1:$base" || { echo "broker $id did not become ready; see $dir/broker$id.log" >&2; exit 1; }
  done
  echo
  echo "export SKEIN_BROKERS=127.0.0.1:9420,127.0.0.1:9430,127.0.0.1:9440"
  echo "then: broker topic create orders --partitions 6 --replication-factor 3"
  echo "      broker cluster"
}

down() {
  for id in 3 2 1; do
    f=$dir/broker$id.pid
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      echo "broker $id stopped"
    fi
    rm -f "$f"
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) "$bin/broker" cluster --brokers 127.0.0.1:9420,127.0.0.1:9430,127.0.0.1:9440 ;;
  wipe) down; rm -rf "$dir"; echo "removed $dir" ;;
  *) echo "usage: $0 up|status|down|wipe" >&2; exit 2 ;;
esac
