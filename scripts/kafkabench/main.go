// Command kafkabench produces generated records through a Kafka listener
// with franz-go, as an application would (idempotent, acks all, no
// compression, random values), and prints records/s and MB/s as JSON: the
// Kafka counterpart of `produce --count N --size B --stats json`. With
// --consume it reads N records of partition 0 from the start instead (the
// counterpart of `consume -p 0 -o beginning -c N --stats json`).
//
//	go run ./scripts/kafkabench -b 127.0.0.1:9092 -t bench --count 200000 --size 1024
//	go run ./scripts/kafkabench -b 127.0.0.1:9092 -t bench --count 200000 --consume
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	brokers := flag.String("b", "127.0.0.1:9092", "Kafka listener address")
	topic := flag.String("t", "bench", "topic (must exist)")
	count := flag.Int("count", 100000, "records to produce")
	size := flag.Int("size", 1024, "value size in bytes")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long")
	consume := flag.Bool("consume", false, "consume N records of partition 0 from the start instead of producing")
	flag.Parse()
	if *consume {
		os.Exit(consumeBench(*brokers, *topic, *count, *timeout))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(*brokers), kgo.DefaultProduceTopic(*topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	// Warm up: metadata, producer id.
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("warm-up")}).FirstErr(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	values := make([]byte, *size*64)
	rand.Read(values)
	var failed atomic.Int64
	start := time.Now()
	for i := 0; i < *count; i++ {
		off := (i % 64) * *size
		cl.Produce(ctx, &kgo.Record{Value: values[off : off+*size]}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	secs := time.Since(start).Seconds()
	json.NewEncoder(os.Stdout).Encode(map[string]any{
		"records": *count, "failed": failed.Load(), "seconds": secs,
		"records_per_sec": float64(*count) / secs, "mb_per_sec": float64(*count**size) / secs / 1e6,
	})
	if failed.Load() > 0 {
		os.Exit(1)
	}
}

// consumeBench reads n records of partition 0 from its start.
func consumeBench(brokers, topic string, n int, timeout time.Duration) int {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	got, bytes := 0, 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			fmt.Fprintf(os.Stderr, "read %d of %d records: %v\n", got, n, err)
			return 1
		}
		fs.EachRecord(func(r *kgo.Record) { got++; bytes += len(r.Value) + len(r.Key) })
	}
	secs := time.Since(start).Seconds()
	json.NewEncoder(os.Stdout).Encode(map[string]any{
		"records": got, "seconds": secs, "records_per_sec": float64(got) / secs, "mb_per_sec": float64(bytes) / secs / 1e6,
	})
	return 0
}
