package wal

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// checkSegmentFiles compares Segments() with the files tidwall actually
// wrote: the same names and sizes. Cheaper than checkFiles (no decoding).
func checkSegmentFiles(t *testing.T, l *Log) {
	t.Helper()
	d, err := listDir(l.dir)
	must(t, err)
	segs := l.Segments()
	if len(segs) != len(d.segments) {
		t.Fatalf("index has %d segments, directory %d", len(segs), len(d.segments))
	}
	for i, s := range segs {
		id := d.segments[i]
		if s.Path != filepath.Join(l.dir, segmentName(id)) || s.Bytes != d.sizes[id] {
			t.Fatalf("segment %d: index says %s with %d bytes, file %s has %d", i, s.Path, s.Bytes, segmentName(id), d.sizes[id])
		}
	}
}

// TestRollModelMatchesTidwall checks Append's prediction of tidwall's
// segment rolls against the files tidwall writes, over many random batch
// and entry sizes, including entries that land exactly on the segment size,
// entries larger than a segment, and tails already over the size (after a
// reopen with a smaller SegmentBytes or a truncation to a segment's end).
// If a tidwall upgrade changes the roll rule, this fails.
func TestRollModelMatchesTidwall(t *testing.T) {
	var exact, over, multi int // how often the interesting cases came up
	for seed := range uint64(10) {
		r := rand.New(rand.NewPCG(seed, 7))
		dir := t.TempDir()
		opts := smallOpts(t)
		opts.SegmentBytes = 200 + r.IntN(3000)
		opts.IndexIntervalBytes = 1 + r.IntN(1000)
		l := openLog(t, dir, opts)
		var m model
		for step := range 120 {
			segsBefore := len(l.Segments())
			tail := l.Segments()[segsBefore-1]
			if tail.Bytes > int64(opts.SegmentBytes) {
				over++
			}
			maxSize := []int{0, 10, 100, opts.SegmentBytes / 3, opts.SegmentBytes * 2}[r.IntN(5)]
			n := 1 + r.IntN(40)
			if maxSize > 100 {
				n = 1 + r.IntN(8)
			}
			es := m.gen(r, n, maxSize, step)
			if err := l.Append(es...); err != nil {
				t.Fatal(err)
			}
			m.appended(es)
			checkSegmentFiles(t, l)
			segs := l.Segments()
			if len(segs)-segsBefore > 1 {
				multi++
			}
			for _, s := range segs[segsBefore-1 : len(segs)-1] { // sealed by this batch
				if s.Bytes == int64(opts.SegmentBytes) {
					exact++
				}
			}
			switch r.IntN(30) {
			case 0: // reopen, sometimes with a smaller segment size
				must(t, l.Close())
				if r.IntN(2) == 0 {
					opts.SegmentBytes = max(64, opts.SegmentBytes/2)
				}
				l = openLog(t, dir, opts)
			case 1: // truncate to the end of a sealed segment: it becomes the tail
				if len(segs) > 2 {
					off := segs[len(segs)-2].BaseOffset
					if got, err := l.TruncateTo(off); err != nil || got != m.truncate(off) {
						t.Fatalf("TruncateTo(%d) = %d, %v", off, got, err)
					}
					checkSegmentFiles(t, l)
				}
			}
		}
		if n := l.modelMisses.Load(); n != 0 {
			t.Fatalf("seed %d: %d roll mispredictions", seed, n)
		}
		checkAgainst(t, l, &m)
	}
	t.Logf("segments sealed at exactly SegmentBytes: %d; tails over SegmentBytes before a batch: %d; batches spanning 2+ rolls: %d", exact, over, multi)
	if exact == 0 || over == 0 || multi == 0 {
		t.Fatal("the random cases did not cover exact fills, oversized tails and multi-roll batches")
	}
}

// TestRollMispredictionIsRepaired makes the model wrong on purpose: the
// stat check catches it and the index is rebuilt from the files.
func TestRollMispredictionIsRepaired(t *testing.T) {
	dir := t.TempDir()
	opts := smallOpts(t)
	l := openLog(t, dir, opts)
	l.rollSegmentBytes = int64(opts.SegmentBytes) - 300
	r := rand.New(rand.NewPCG(8, 8))
	var m model
	for range 60 {
		es := m.gen(r, 1+r.IntN(3), 200, 0)
		must(t, l.Append(es...))
		m.appended(es)
		if l.modelMisses.Load() > 0 { // after a detected miss the index is right again
			checkAgainst(t, l, &m)
		}
	}
	if l.modelMisses.Load() == 0 {
		t.Fatal("wrong model not detected")
	}
	l.rollSegmentBytes = int64(opts.SegmentBytes)
	es := m.gen(r, 30, 200, 0)
	must(t, l.Append(es...))
	m.appended(es)
	checkAgainst(t, l, &m)
	must(t, l.Close())
	checkAgainst(t, openLog(t, dir, opts), &m)
}

// TestRollWritesSidecar: with fsync on, a roll leaves the new (empty) tail
// file and the sealed segment's index sidecar.
func TestRollWritesSidecar(t *testing.T) {
	dir := t.TempDir()
	opts := smallOpts(t)
	opts.UnsafeNoFsync = false
	l := openLog(t, dir, opts)
	must(t, l.Append(Entry{BaseOffset: 0, LastOffset: 0, Data: make([]byte, opts.SegmentBytes)}))
	segs := l.Segments()
	if len(segs) != 2 || !segs[0].Sealed || segs[1].Bytes != 0 {
		t.Fatalf("segments %+v", segs)
	}
	if _, err := os.Stat(segs[1].Path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sidecarPath(segs[0].Path)); err != nil {
		t.Fatalf("no sidecar for the sealed segment: %v", err)
	}
}
