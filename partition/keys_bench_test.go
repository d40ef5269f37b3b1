package partition

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/wal"
)

// BenchmarkKeyedAppend measures what the key index costs the append path:
// 16 producers append batches of 100 records of 100 bytes, each record
// keyed (100,000 distinct keys), without fsync so that the loop's own work
// shows, on a partition without the key index, with it, and with it and an
// expectation on one key of each batch (met: each producer owns its keys
// and knows their last offsets).
func BenchmarkKeyedAppend(b *testing.B) {
	for _, mode := range []string{"no-index", "index", "index+expectation"} {
		b.Run(mode, func(b *testing.B) {
			p, err := Open(Config{Dir: b.TempDir(), Topic: "bench", WAL: wal.Options{UnsafeNoFsync: true}, KeyIndex: mode != "no-index"})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.Close() })
			if err := p.BecomeLeader(1, LeaderState{Epoch: 0, ISR: []int32{1}, MinISR: 1, Solo: true}); err != nil {
				b.Fatal(err)
			}
			const producers, records = 16, 100
			per := b.N/producers + 1
			val := make([]byte, 100)
			var wg sync.WaitGroup
			b.ResetTimer()
			for w := range producers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					last := map[string]int64{}
					bl := batch.NewBuilder(batch.None)
					for i := range per {
						bl.Reset()
						for r := range records {
							key := fmt.Appendf(nil, "w%d-k%d", w, (i*records+r)%(100_000/producers))
							bl.Add(&batch.Record{Timestamp: int64(r), Key: key, Value: val})
						}
						raw, err := bl.Build(nil)
						if err != nil {
							b.Error(err)
							return
						}
						req := AppendRequest{Batch: raw, LeaderEpoch: -1, ExpectedOffset: -1}
						k := fmt.Sprintf("w%d-k%d", w, (i*records)%(100_000/producers))
						if mode == "index+expectation" {
							off, ok := last[k]
							if !ok {
								off = -1
							}
							req.KeyExpectations = []KeyExpectation{{Key: []byte(k), Offset: off}}
						}
						res, err := p.Append(context.Background(), req)
						if err != nil {
							b.Error(err)
							return
						}
						for r := range records {
							last[fmt.Sprintf("w%d-k%d", w, (i*records+r)%(100_000/producers))] = res.BaseOffset + int64(r)
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(per*producers*records)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
