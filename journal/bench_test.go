package journal

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinlog/skein/segment"
	"github.com/skeinlog/skein/wal"
)

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// benchFull says whether to run the benchmarks at the sizes
// docs/storage.md quotes (minutes each, SKEIN_BENCH_FULL set) or small (CI
// runs every benchmark briefly, to keep them compiled and working).
func benchFull() bool { return os.Getenv("SKEIN_BENCH_FULL") != "" }

// appender is one partition's log under either engine.
type appender func(base int64, data []byte) error

// spread runs 8 writers, each appending 16 KiB entries (one per call, fsync
// before it returns) round robin over its share of the partitions, until
// total bytes are written. It returns the elapsed time.
func spread(b *testing.B, logs []appender, total, writers int) time.Duration {
	data := make([]byte, 16<<10)
	writers = min(writers, len(logs)) // each writer owns its partitions
	per := total / writers / len(data)
	next := make([]int64, len(logs))
	var wg sync.WaitGroup
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			k := w
			for range per {
				if err := logs[k](next[k], data); err != nil {
					b.Error(err)
					return
				}
				next[k]++
				if k += writers; k >= len(logs) {
					k = w
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkSpreadWrites: 8 writers append 16 KiB entries, each fsynced
// before the call returns, spread over 1,000 partitions: the journal (one
// fsync per group across partitions, segments written without fsync)
// against one tidwall log per partition (the wal package: one fsync per
// partition append). Reports MB/s, fsyncs/s and records per fsync (journal
// only), and the heap the open logs keep. -benchtime=1x.
var (
	checkpointEvery = DefaultCheckpointInterval
	benchWriters    = 64
)

func BenchmarkSpreadWrites(b *testing.B) {
	parts, total := 1000, 512<<20
	if !benchFull() {
		parts, total = 16, 4<<20
	}
	for _, journals := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("engine=journal/journals=%d", journals), func(b *testing.B) {
			for b.Loop() {
				benchJournals(b, parts, total, journals)
			}
		})
	}
	b.Run("engine=wal-per-partition", func(b *testing.B) {
		for b.Loop() {
			dir := b.TempDir()
			before := heapInUse()
			logs := make([]appender, parts)
			var ws []*wal.Log
			for i := range logs {
				l, err := wal.Open(filepath.Join(dir, strconv.Itoa(i)), wal.Options{})
				must(b, err)
				ws = append(ws, l)
				logs[i] = func(base int64, data []byte) error {
					return l.Append(wal.Entry{BaseOffset: base, LastOffset: base, Data: data})
				}
			}
			took := spread(b, logs, total, benchWriters)
			b.ReportMetric(float64(total)/took.Seconds()/1e6, "MB/s")
			b.ReportMetric(float64(heapInUse()-before)/(1<<20), "heap-MiB")
			for _, l := range ws {
				must(b, l.Close())
			}
		}
	})
}

// BenchmarkManyPartitions: 2,000 partitions each written past one segment
// (1.5 MiB with 1 MiB segments, 16 KiB entries, 64 writers round robin)
// through the journal, then each read from its start, 1 MiB per read.
// Reports the heap and the process RSS after writing and after reading.
// The journal does not fsync here (UnsafeNoFsync): memory, not the disk,
// is measured. -benchtime=1x.
func BenchmarkManyPartitions(b *testing.B) {
	parts := 2000
	if !benchFull() {
		parts = 16
	}
	for b.Loop() {
		dir := b.TempDir()
		before := heapInUse()
		j, _, err := Open(filepath.Join(dir, "journal"), Options{CheckpointInterval: time.Second, UnsafeNoFsync: true})
		must(b, err)
		_, err = j.Replay(func(string) (*segment.Log, error) { return nil, fmt.Errorf("nothing to replay") })
		must(b, err)
		logs := make([]appender, parts)
		var ps []*Partition
		for i := range logs {
			l, err := segment.Open(filepath.Join(dir, "p", strconv.Itoa(i)), segment.Options{SegmentBytes: 1 << 20})
			must(b, err)
			p, err := j.Attach(strconv.Itoa(i), l)
			must(b, err)
			ps = append(ps, p)
			logs[i] = func(base int64, data []byte) error {
				return p.Append(segment.Entry{BaseOffset: base, LastOffset: base, Data: data})
			}
		}
		spread(b, logs, parts*3<<19, 64)
		b.ReportMetric(float64(heapInUse()-before)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(rssBytes())/(1<<20), "rss-MiB")
		for _, p := range ps {
			l := p.Log()
			for off := l.StartOffset(); off < l.NextOffset(); {
				off, err = l.ReadEntries(off, 1<<20, math.MaxInt64, func(segment.Entry) error { return nil })
				must(b, err)
			}
		}
		b.ReportMetric(float64(rssBytes())/(1<<20), "rss-after-read-MiB")
		b.ReportMetric(float64(j.Stats().Checkpoints), "checkpoints")
		must(b, j.Close())
		for _, p := range ps {
			must(b, p.Detach())
			must(b, p.Log().Close())
		}
	}
}

// rssBytes is the process's resident set size (Linux; 0 elsewhere).
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// benchJournals runs spread over parts partitions through a Set of n
// journals (each with its own committer and fsync).
func benchJournals(b *testing.B, parts, total, n int) {
	dir := b.TempDir()
	before := heapInUse()
	set, _, err := OpenSet(filepath.Join(dir, "journal"), n, Options{CheckpointInterval: checkpointEvery})
	must(b, err)
	_, err = set.Replay(func(string) (*segment.Log, error) { return nil, fmt.Errorf("nothing to replay") })
	must(b, err)
	logs := make([]appender, parts)
	var ps []*Partition
	for i := range logs {
		l, err := segment.Open(filepath.Join(dir, "p", strconv.Itoa(i)), segment.Options{})
		must(b, err)
		p, err := set.Attach(strconv.Itoa(i), l)
		must(b, err)
		ps = append(ps, p)
		logs[i] = func(base int64, data []byte) error {
			return p.Append(segment.Entry{BaseOffset: base, LastOffset: base, Data: data})
		}
	}
	took := spread(b, logs, total, benchWriters)
	st := set.Stats()
	b.ReportMetric(float64(total)/took.Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(st.Fsyncs)/took.Seconds(), "fsyncs/s")
	b.ReportMetric(float64(st.Records)/float64(st.Fsyncs), "records/fsync")
	b.ReportMetric(float64(heapInUse()-before)/(1<<20), "heap-MiB")
	must(b, set.Close())
	for _, p := range ps {
		must(b, p.Detach())
		must(b, p.Log().Close())
	}
}
