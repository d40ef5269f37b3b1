package partition

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/wal"
)

func benchPartition(b *testing.B, noFsync bool) *Partition {
	b.Helper()
	p, err := Open(Config{Dir: b.TempDir(), Topic: "bench", WAL: wal.Options{UnsafeNoFsync: noFsync}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	if err := p.BecomeLeader(1, LeaderState{Epoch: 0, ISR: []int32{1}, MinISR: 1, Solo: true}); err != nil {
		b.Fatal(err)
	}
	return p
}

func benchBatch(b *testing.B, records, size int) []byte {
	bl := batch.NewBuilder(batch.None)
	val := make([]byte, size)
	for i := range records {
		bl.Add(&batch.Record{Timestamp: int64(i), Value: val})
	}
	out, err := bl.Build(nil)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkAppend measures acknowledged appends (fsync before the answer)
// with several producers in parallel, each with one batch in flight, so
// group commit has something to group.
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct{ records, size, producers int }{
		{1, 100, 1}, {1, 100, 16}, {100, 100, 16}, {16, 1024, 16}, {64, 1024, 4},
	} {
		b.Run(fmt.Sprintf("records=%d/size=%d/producers=%d", c.records, c.size, c.producers), func(b *testing.B) {
			p := benchPartition(b, false)
			raw := benchBatch(b, c.records, c.size)
			b.SetBytes(int64(c.records * c.size))
			var wg sync.WaitGroup
			per := b.N/c.producers + 1
			b.ResetTimer()
			for range c.producers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range per {
						req := AppendRequest{Batch: append([]byte(nil), raw...), LeaderEpoch: -1, ExpectedOffset: -1}
						if _, err := p.Append(context.Background(), req); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(per*c.producers*c.records)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkRead measures sequential committed reads of 1 MiB.
func BenchmarkRead(b *testing.B) {
	p := benchPartition(b, true)
	raw := benchBatch(b, 64, 1024)
	for range 2000 { // ~130 MB
		if _, err := p.Append(context.Background(), AppendRequest{Batch: append([]byte(nil), raw...), LeaderEpoch: -1, ExpectedOffset: -1}); err != nil {
			b.Fatal(err)
		}
	}
	end := p.State().HighWatermark
	buf := make([]byte, 0, 2<<20)
	var off int64
	var n int64
	b.ResetTimer()
	for b.Loop() {
		res, err := p.Read(buf[:0], off, 1<<20, ReadCommitted)
		if err != nil {
			b.Fatal(err)
		}
		n += int64(len(res.Batches))
		off = res.NextOffset
		if off >= end {
			off = 0
		}
	}
	b.SetBytes(n / int64(max(1, b.N)))
}

// BenchmarkAppendIdempotent compares appends of batches from 16 producers
// without and with producer ids (the sequence checks and the producer
// table), without fsync so that the append loop's own work shows. Both
// stamp each batch's producer fields (and so recompute its CRC), as a
// client does.
func BenchmarkAppendIdempotent(b *testing.B) {
	const producers, records, size = 16, 100, 100
	for _, idem := range []bool{false, true} {
		b.Run(fmt.Sprintf("idempotent=%v", idem), func(b *testing.B) {
			p := benchPartition(b, true)
			raw := benchBatch(b, records, size)
			b.SetBytes(records * size)
			var wg sync.WaitGroup
			per := b.N/producers + 1
			b.ResetTimer()
			for g := range producers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range per {
						req := AppendRequest{Batch: append([]byte(nil), raw...), LeaderEpoch: -1, ExpectedOffset: -1, Acks: AcksLeader}
						if idem {
							batch.SetProducerFields(batch.View(req.Batch), int64(g), 0, int32(i*records))
						} else {
							batch.SetProducerFields(batch.View(req.Batch), batch.NoProducerID, 0, batch.NoSequence)
						}
						if _, err := p.Append(context.Background(), req); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(per*producers*records)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
