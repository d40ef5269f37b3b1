#!/usr/bin/env bash
# One broker (fsync before ack), topics g and k of one partition; three
# alternating runs of `produce --count N --size 1024` over gRPC and of
# scripts/kafkabench (franz-go) over the Kafka listener, then three of each
# consuming N records from the start (Skein's consume over gRPC, franz-go
# and kcat over Kafka). N defaults to 100000.
# Build first: CGO_ENABLED=0 go build -o DIR/ ./cmd/... && go build -o DIR/kafkabench ./scripts/kafkabench
set -u
bin=${1:?usage: kafka-throughput.sh DIR-WITH-broker-produce-kafkabench}
d=$(mktemp -d /tmp/kafka-tput.XXXX)
$bin/broker --data-dir $d/data --addr 127.0.0.1:0 --http-addr "" --gossip-addr 127.0.0.1:0 --raft-addr 127.0.0.1:0 --kafka-addr 127.0.0.1:0 --log-format json > $d/log 2>&1 &
bpid=$!
for i in $(seq 1 100); do grep -q 'broker ready' $d/log && break; sleep 0.1; done
addr=$(grep 'broker ready' $d/log | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["addr"])')
kaddr=$(grep 'broker ready' $d/log | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["kafka"])')
$bin/broker topic create g -b $addr >/dev/null; $bin/broker topic create k -b $addr >/dev/null
for run in 1 2 3; do
  echo "grpc run $run: $($bin/produce -t g -b $addr --count ${N:-100000} --size 1024 --stats json)"
  echo "kafka run $run: $($bin/kafkabench -t k -b $kaddr --count ${N:-100000} --size 1024)"
done
# Consume: each topic now holds 3N records; read N from the start, thrice.
for run in 1 2 3; do
  echo "grpc consume run $run: $($bin/consume -t g -b $addr -p 0 -o beginning -c ${N:-100000} -f '' --stats json)"
  echo "kafka consume run $run: $($bin/kafkabench -t k -b $kaddr --count ${N:-100000} --consume)"
  t0=$(date +%s.%N)
  last=$(kcat -C -b $kaddr -t k -p 0 -o beginning -c ${N:-100000} -q -f '%o\n' | tail -1)
  t1=$(date +%s.%N)
  echo "kcat consume run $run: $(python3 -c "n=${N:-100000}; s=$t1-$t0; print(f'{{\"records\": {n}, \"last_offset\": $last, \"seconds\": {s:.3f}, \"records_per_sec\": {n/s:.0f}}}')")"
done
kill $bpid; wait $bpid; rm -rf $d
