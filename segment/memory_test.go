package segment

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
)

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// writeSpread writes total bytes to every log round robin, in Writes of
// groupBytes of 16 KiB entries, flushing every log after each round.
func writeSpread(tb testing.TB, logs []*Log, total, groupBytes int) {
	tb.Helper()
	data := make([]byte, 16<<10)
	es := make([]Entry, max(1, groupBytes/len(data)))
	for written := 0; written < total; written += groupBytes {
		for _, l := range logs {
			next := l.NextOffset()
			for i := range es {
				es[i] = Entry{BaseOffset: next, LastOffset: next, MaxTimestamp: next, Data: data}
				next++
			}
			must(tb, l.Write(es...))
		}
		for _, l := range logs {
			_, err := l.Flush()
			must(tb, err)
		}
	}
}

// TestMemoryPerLog: what an open, written log keeps on the heap is its
// index and small fixed state, not its data: 32 logs × 6 MiB written cost
// well under 64 KiB each beyond the index.
func TestMemoryPerLog(t *testing.T) {
	const n, total = 32, 6 << 20
	dir := t.TempDir()
	before := heapInUse()
	logs := make([]*Log, n)
	for i := range logs {
		logs[i] = openLog(t, filepath.Join(dir, strconv.Itoa(i)), Options{SegmentBytes: 4 << 20})
	}
	writeSpread(t, logs, total, 64<<10)
	perLog := (heapInUse() - before) / n
	index := int64(total/DefaultIndexIntervalBytes+2) * pointBytes * 2 // spare capacity of append
	if perLog > index+64<<10 {
		t.Fatalf("an open log written with %d bytes holds %d heap bytes; its index is at most %d", total, perLog, index)
	}
	// Reading every log from the start adds nothing that stays.
	before = heapInUse()
	for _, l := range logs {
		off := int64(0)
		for off < l.NextOffset() {
			var err error
			off, err = l.ReadEntries(off, 1<<20, math.MaxInt64, func(Entry) error { return nil })
			must(t, err)
		}
	}
	if grew := heapInUse() - before; grew > 1<<20 {
		t.Fatalf("reading %d logs from the start left %d bytes on the heap", n, grew)
	}
	t.Logf("heap per written log: %d bytes (index bound %d)", perLog, index)
}

// BenchmarkManyLogs: the segment store's counterpart of the wal package's
// BenchmarkManyLogs: 64 logs each written 1.5 segments, spread writes of
// 16 KiB entries. Reports heap per log after a full GC. -benchtime=1x.
func BenchmarkManyLogs(b *testing.B) {
	seg, n := int64(16<<20), 64
	if os.Getenv("SKEIN_BENCH_FULL") == "" {
		seg, n = 256<<10, 4 // stays compiled and working, in a second; docs/storage.md quotes the full run
	}
	{
		b.Run(fmt.Sprintf("segment=%dKiB", seg>>10), func(b *testing.B) {
			for b.Loop() {
				dir := b.TempDir()
				before := heapInUse()
				logs := make([]*Log, n)
				for i := range logs {
					l, err := Open(filepath.Join(dir, strconv.Itoa(i)), Options{SegmentBytes: seg})
					if err != nil {
						b.Fatal(err)
					}
					logs[i] = l
				}
				writeSpread(b, logs, int(seg+seg/2), 1<<20)
				b.ReportMetric(float64(heapInUse()-before)/float64(n)/(1<<10), "heap-KiB/log")
				for _, l := range logs {
					must(b, l.Close())
				}
			}
		})
	}
}
