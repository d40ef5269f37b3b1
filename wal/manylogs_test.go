package wal

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// benchFullEnv set to anything runs the memory benchmarks at the sizes
// docs/storage.md quotes (minutes); unset, they run small (CI runs every
// benchmark briefly).
const benchFullEnv = "SKEIN_BENCH_FULL"

// rssBytes is the process's resident set size (Linux; 0 elsewhere).
func rssBytes() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// writeSpread writes total bytes to every log, round robin, groupBytes per
// Append of entries of entryBytes each: the way a broker writes many
// partitions at once.
func writeSpread(tb testing.TB, logs []*Log, total, groupBytes, entryBytes int) {
	tb.Helper()
	data := make([]byte, entryBytes)
	es := make([]Entry, 0, max(1, groupBytes/entryBytes))
	for written := 0; written < total; written += groupBytes {
		for _, l := range logs {
			es = es[:0]
			next := l.NextOffset()
			for range cap(es) {
				es = append(es, Entry{BaseOffset: next, LastOffset: next, MaxTimestamp: next, Data: data})
				next++
			}
			if err := l.Append(es...); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// BenchmarkManyLogs reports the memory that open logs keep once each has
// been written past its first segment with spread writes (16 KiB entries,
// groups of 16 KiB and of 1 MiB): heap in use per log after a full GC, and
// the process's RSS. One run per op; -benchtime=1x.
func BenchmarkManyLogs(b *testing.B) {
	segs, n := []int{16 << 20, 4 << 20}, 64
	if os.Getenv(benchFullEnv) == "" {
		segs, n = []int{256 << 10}, 4 // stays compiled and working, in a second
	}
	for _, seg := range segs {
		for _, group := range []int{16 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("segment=%s/group=%s", sizeName(seg), sizeName(group)), func(b *testing.B) {
				for b.Loop() {
					dir := b.TempDir()
					before := heapInUse()
					logs := make([]*Log, n)
					for i := range logs {
						l, err := Open(filepath.Join(dir, strconv.Itoa(i)), Options{SegmentBytes: seg, UnsafeNoFsync: true})
						if err != nil {
							b.Fatal(err)
						}
						logs[i] = l
					}
					writeSpread(b, logs, seg+seg/2, group, 16<<10)
					heap := heapInUse() - before
					b.ReportMetric(float64(heap)/float64(n)/(1<<20), "heap-MiB/log")
					b.ReportMetric(float64(rssBytes())/(1<<20), "rss-MiB")
					for _, l := range logs {
						must(b, l.Close())
					}
				}
			})
		}
	}
}

// TestLargeGroupNotKept: a log does not keep the buffers of a large Append
// once it returns; before, each log written with a large group held a copy
// of it (tidwall's batch) for as long as it stayed open.
func TestLargeGroupNotKept(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{SegmentBytes: 1 << 20, UnsafeNoFsync: true})
	before := heapInUse()
	writeSpread(t, []*Log{l}, 8<<20, 8<<20, 64<<10) // one Append of 8 MiB
	// What stays is tidwall's copy of the tail (at most one 1 MiB segment,
	// grown by append) and the index.
	if grew := heapInUse() - before; grew > 3<<20 {
		t.Fatalf("the log holds %d bytes of heap after one 8 MiB Append with 1 MiB segments, want < 3 MiB", grew)
	}
}
