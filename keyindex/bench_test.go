package keyindex

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
)

// BenchmarkIndex: the memory per key of a committed index, and the cost of
// Add (with commits as the high watermark follows), Lookup, Save and Load,
// at 1 M keys (SKEIN_BENCH_FULL-sized runs are not needed: the table's
// cost per key does not depend on the count beyond its doubling).
func BenchmarkIndex(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			keys := make([][]byte, n)
			for i := range keys {
				keys[i] = binary.BigEndian.AppendUint64([]byte("acct-"), uint64(i))
			}
			var ix *Index
			for b.Loop() {
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				ix = New(0, nil)
				for i, k := range keys {
					ix.Add(k, int64(i))
					if i%1000 == 999 {
						ix.Commit(int64(i + 1))
					}
				}
				ix.Commit(int64(n))
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-B/key")
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/add")
			path := filepath.Join(b.TempDir(), "index")
			if err := ix.Save(path); err != nil {
				b.Fatal(err)
			}
			if _, err := Load(path, nil); err != nil {
				b.Fatal(err)
			}
		})
	}
}
