package partition

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/wal"
)

// BenchmarkClean measures the log cleaner's throughput on one partition:
// a log of batches of 100 records of 100 bytes over 10,000 keys (64 MiB
// in 4 MiB segments with SKEIN_BENCH_FULL set, 4 MiB in 256 KiB segments
// otherwise), each iteration one pass over a freshly written copy, without
// an I/O budget and with fsync (of each rewritten segment). MB/s is log
// bytes cleaned (the cleanable log's size before the pass) per second.
func BenchmarkClean(b *testing.B) {
	total, seg := int64(4<<20), 256<<10
	if os.Getenv("SKEIN_BENCH_FULL") != "" {
		total, seg = 64<<20, 4<<20
	}
	const keys, perBatch = 10_000, 100
	val := make([]byte, 100)
	var cleaned, after int64
	var took time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p, err := Open(Config{Dir: b.TempDir(), Topic: "bench", Compacted: true,
			WAL: wal.Options{SegmentBytes: seg, UnsafeNoFsync: true}})
		if err != nil {
			b.Fatal(err)
		}
		if err := p.BecomeLeader(1, LeaderState{Epoch: 0, ISR: []int32{1}, MinISR: 1, Solo: true}); err != nil {
			b.Fatal(err)
		}
		bl := batch.NewBuilder(batch.None)
		for n := 0; p.State().SizeBytes < total; n++ {
			bl.Reset()
			for r := 0; r < perBatch; r++ {
				bl.Add(&batch.Record{Timestamp: int64(r), Key: fmt.Appendf(nil, "key-%d", (n*perBatch+r)%keys), Value: val})
			}
			raw, err := bl.Build(nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := p.Append(context.Background(), AppendRequest{Batch: raw, LeaderEpoch: -1, ExpectedOffset: -1}); err != nil {
				b.Fatal(err)
			}
		}
		// The pass's own writes are fsynced, as in a broker: UnsafeNoFsync
		// only skips the appends' fsyncs above (wal.CompactSegment always
		// fsyncs what it writes).
		b.StartTimer()
		start := time.Now()
		res, err := p.Clean(CleanOptions{DeleteRetention: time.Hour})
		took += time.Since(start)
		b.StopTimer()
		if err != nil || !res.Ran {
			b.Fatalf("pass: %+v %v", res, err)
		}
		for _, s := range cleanable(p.log.Segments(), res.CleanableOffset) {
			after += s.Bytes
		}
		cleaned += res.BytesBefore // every segment holds superseded records: all are rewritten
		p.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(cleaned)/(1<<20)/took.Seconds(), "MB/s")
	b.ReportMetric(float64(after)/float64(max(cleaned, 1)), "size-after/before")
}
