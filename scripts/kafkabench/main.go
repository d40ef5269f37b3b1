// Command kafkabench produces generated records through a Kafka listener
// with franz-go, as an application would (idempotent, acks all, no
// compression, random values), and prints records/s and MB/s as JSON: the
// Kafka counterpart of `produce --count N --size B --stats json`.
//
//	go run ./scripts/kafkabench -b 127.0.0.1:9092 -t bench --count 200000 --size 1024
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
	flag.Parse()
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
