package wal

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

func sizeName(n int) string {
	if n >= 1<<10 && n%(1<<10) == 0 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// fill appends total bytes of entries of size bytes each (no fsync).
func fill(b testing.TB, l *Log, total, size int) {
	b.Helper()
	data := make([]byte, size)
	es := make([]Entry, 0, 64)
	for written := 0; written < total; {
		es = es[:0]
		for range 64 {
			next := l.NextOffset() + int64(len(es))
			es = append(es, Entry{BaseOffset: next, LastOffset: next, MaxTimestamp: next, Data: data})
			written += size
		}
		if err := l.Append(es...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppend: one Append (one tidwall batch, one fsync) per op, with
// the default 16 MiB segments, so rolls (file create, fsyncs, sidecar) are
// included at their real rate.
func BenchmarkAppend(b *testing.B) {
	for _, fsync := range []bool{true, false} {
		for _, size := range []int{100, 16 << 10} {
			for _, n := range []int{1, 16, 128} {
				name := fmt.Sprintf("fsync=%v/entries=%d/payload=%s", fsync, n, sizeName(size))
				b.Run(name, func(b *testing.B) {
					l, err := Open(b.TempDir(), Options{UnsafeNoFsync: !fsync})
					if err != nil {
						b.Fatal(err)
					}
					defer l.Close()
					data := make([]byte, size)
					es := make([]Entry, n)
					var next int64
					b.SetBytes(int64(n * size))
					b.ReportAllocs()
					for b.Loop() {
						for i := range es {
							es[i] = Entry{BaseOffset: next, LastOffset: next, MaxTimestamp: next, Data: data}
							next++
						}
						if err := l.Append(es...); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
					b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
				})
			}
		}
	}
}

// BenchmarkReadEntriesSequential reads a 64 MiB log front to back, 1 MiB
// per call (from the page cache: this measures the read path, not the disk).
func BenchmarkReadEntriesSequential(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10} {
		b.Run("payload="+sizeName(size), func(b *testing.B) {
			l, err := Open(b.TempDir(), Options{UnsafeNoFsync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			fill(b, l, 64<<20, size)
			var off, bytes int64
			b.ReportAllocs()
			for b.Loop() {
				if off >= l.NextOffset() {
					off = 0
				}
				next, err := l.ReadEntries(off, 1<<20, math.MaxInt64, func(e Entry) error {
					bytes += int64(len(e.Data))
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				off = next
			}
			b.ReportMetric(float64(bytes)/b.Elapsed().Seconds()/1e6, "MB/s")
		})
	}
}

func percentile(d []time.Duration, p float64) float64 {
	slices.Sort(d)
	return float64(d[min(len(d)-1, int(float64(len(d))*p))].Microseconds())
}

// BenchmarkReadLatencyDuringAppends measures the latency of a small read
// near the tail while another goroutine appends with fsync as fast as it
// can. via=wal is this package's read path; via=tidwall reads the same
// entry through tidwall's Read, which waits for its mutex, held through
// every write and fsync.
func BenchmarkReadLatencyDuringAppends(b *testing.B) {
	for _, via := range []string{"wal", "tidwall"} {
		b.Run("via="+via, func(b *testing.B) {
			l, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			if err := l.Append(Entry{BaseOffset: 0, LastOffset: 0, Data: make([]byte, 1024)}); err != nil {
				b.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var appendLat []time.Duration
			wg.Go(func() {
				data := make([]byte, 1024)
				es := make([]Entry, 16)
				for {
					select {
					case <-stop:
						return
					default:
					}
					next := l.NextOffset()
					for i := range es {
						es[i] = Entry{BaseOffset: next + int64(i), LastOffset: next + int64(i), Data: data}
					}
					t0 := time.Now()
					if err := l.Append(es...); err != nil {
						b.Error(err)
						return
					}
					appendLat = append(appendLat, time.Since(t0))
				}
			})
			lat := make([]time.Duration, 0, 1<<16)
			for b.Loop() {
				t0 := time.Now()
				if via == "wal" {
					_, err = l.ReadEntries(0, 1024, math.MaxInt64, func(Entry) error { return nil })
				} else {
					_, err = l.tw.Read(1)
				}
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			close(stop)
			wg.Wait()
			b.ReportMetric(percentile(lat, 0.5), "read-p50-µs")
			b.ReportMetric(percentile(lat, 0.99), "read-p99-µs")
			b.ReportMetric(percentile(lat, 0.999), "read-p99.9-µs")
			b.ReportMetric(percentile(lat, 1), "read-max-µs")
			if len(appendLat) > 0 {
				b.ReportMetric(percentile(appendLat, 0.5), "append-p50-µs")
			}
		})
	}
}

// BenchmarkDeleteSegmentsBefore measures retention of one 16 MiB segment:
// tidwall's TruncateFront rewrites the first kept (16 MiB) segment.
func BenchmarkDeleteSegmentsBefore(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		l, err := Open(dir, Options{UnsafeNoFsync: true})
		if err != nil {
			b.Fatal(err)
		}
		fill(b, l, 40<<20, 16<<10)
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		if l, err = Open(dir, Options{}); err != nil {
			b.Fatal(err)
		}
		segs := l.Segments()
		b.StartTimer()
		n, err := l.DeleteSegmentsBefore(segs[1].BaseOffset)
		if err != nil || n != segs[0].Bytes {
			b.Fatal(n, err)
		}
		b.StopTimer()
		l.Close()
		os.RemoveAll(dir)
	}
}

// BenchmarkTruncateTo measures a cut in the middle of a sealed 16 MiB
// segment: tidwall's TruncateBack rewrites the kept part (8 MiB) and
// removes the later segments.
func BenchmarkTruncateTo(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		l, err := Open(dir, Options{UnsafeNoFsync: true})
		if err != nil {
			b.Fatal(err)
		}
		fill(b, l, 40<<20, 16<<10)
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		if l, err = Open(dir, Options{}); err != nil {
			b.Fatal(err)
		}
		s := l.Segments()[1]
		b.StartTimer()
		if _, err := l.TruncateTo((s.BaseOffset + s.NextOffset) / 2); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		l.Close()
		os.RemoveAll(dir)
	}
}

// BenchmarkOpen opens a 256 MiB log (16 segments of 16 MiB): with valid
// sidecars only the tail is read; without them every segment is scanned.
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	l, err := Open(dir, Options{UnsafeNoFsync: true})
	if err != nil {
		b.Fatal(err)
	}
	fill(b, l, 256<<20, 16<<10)
	segs := l.Segments()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	for _, sidecars := range []bool{true, false} {
		b.Run(fmt.Sprintf("sidecars=%v", sidecars), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if !sidecars {
					b.StopTimer()
					for _, s := range segs {
						_ = os.Remove(sidecarPath(s.Path))
					}
					b.StartTimer()
				}
				l, err := Open(dir, Options{})
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// indexBytes is the memory held by the sparse index.
func indexBytes(l *Log) (points int, bytes int64) {
	l.imu.RLock()
	defer l.imu.RUnlock()
	for _, s := range l.segs {
		points += len(s.points)
		bytes += int64(cap(s.points)) * pointBytes
	}
	return points, bytes
}

// BenchmarkMemory reports what an open log costs on the heap with the
// default options, for a 256 MiB log with a 10 MiB tail (after Open), and
// once appends have grown the tail to nearly 16 MiB (tidwall's tail buffer
// grows by append, with spare capacity).
func BenchmarkMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		l, err := Open(dir, Options{UnsafeNoFsync: true})
		if err != nil {
			b.Fatal(err)
		}
		fill(b, l, 256<<20+8<<20, 4<<10)
		must(b, l.Close())
		before := heapInUse()
		l, err = Open(dir, Options{UnsafeNoFsync: true})
		if err != nil {
			b.Fatal(err)
		}
		opened := heapInUse() - before
		points, ib := indexBytes(l)
		tail := l.Segments()[len(l.Segments())-1].Bytes
		fill(b, l, int(16<<20-tail-200<<10), 4<<10) // the tail nearly full, grown by appends
		full := l.Segments()[len(l.Segments())-1].Bytes
		appending := heapInUse() - before
		b.ReportMetric(float64(opened)/(1<<20), "open-heap-MiB")
		b.ReportMetric(float64(tail)/(1<<20), "tail-MiB")
		b.ReportMetric(float64(ib)/(1<<10), "index-KiB")
		b.ReportMetric(float64(ib)/float64(points), "B/point")
		b.ReportMetric(float64(full)/(1<<20), "full-tail-MiB")
		b.ReportMetric(float64(appending)/(1<<20), "full-tail-heap-MiB")
		must(b, l.Close())
	}
}

// TestMemoryCost checks the memory model in the package doc: an open log
// costs its tail segment (tidwall's copy, plus 16 bytes per tail entry for
// tidwall's positions) and 32 bytes per index point, one point per
// IndexIntervalBytes of log and one per segment.
func TestMemoryCost(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 1 << 20, IndexIntervalBytes: 4096, UnsafeNoFsync: true}
	l, err := Open(dir, opts)
	must(t, err)
	fill(t, l, 16<<20+300<<10, 1000)
	must(t, l.Close())

	before := heapInUse()
	l = openLog(t, dir, opts)
	opened := heapInUse() - before
	points, ib := indexBytes(l)
	segs := l.Segments()
	tail := segs[len(segs)-1]
	tailEntries := tail.NextOffset - tail.BaseOffset // one offset per entry here
	size := l.Size()
	t.Logf("log %d bytes in %d segments; tail %d bytes, %d entries; index %d points, %d bytes (%.1f B/point, %.2f%% of the log); heap of the open log %d bytes",
		size, len(segs), tail.Bytes, tailEntries, points, ib, float64(ib)/float64(points), 100*float64(ib)/float64(size), opened)

	if lo, hi := size/(4096+1100), size/4096+int64(len(segs)); int64(points) < lo || int64(points) > hi {
		t.Fatalf("%d index points for %d bytes, want %d..%d", points, size, lo, hi)
	}
	// Sealed segments' points have no spare capacity; the tail's may.
	if ib > int64(points)*pointBytes+tail.Bytes/4096*pointBytes*2+pointBytes {
		t.Fatalf("index holds %d bytes for %d points", ib, points)
	}
	if budget := tail.Bytes + 16*tailEntries + ib + 64<<10; opened > budget {
		t.Fatalf("open log uses %d heap bytes, model says at most %d", opened, budget)
	}
}
