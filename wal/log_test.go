package wal

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestOptionsDefaultsAndValidation(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.SegmentBytes != 16<<20 || o.IndexIntervalBytes != 4096 || o.Logger == nil || o.UnsafeNoFsync {
		t.Fatalf("defaults: %+v", o)
	}
	if d := DefaultOptions(); d.SegmentBytes != o.SegmentBytes || d.IndexIntervalBytes != o.IndexIntervalBytes {
		t.Fatalf("DefaultOptions() = %+v", d)
	}
	for _, bad := range []Options{{SegmentBytes: -1}, {IndexIntervalBytes: -1}} {
		if _, err := Open(t.TempDir(), bad); err == nil {
			t.Errorf("Open with %+v: no error", bad)
		}
	}
}

func TestAppendReadReopen(t *testing.T) {
	dir := t.TempDir()
	opts := smallOpts(t)
	l := openLog(t, dir, opts)
	if l.NextOffset() != 0 || l.StartOffset() != 0 || l.Size() != 0 || l.Repair() != nil {
		t.Fatalf("new log: next %d start %d size %d repair %v", l.NextOffset(), l.StartOffset(), l.Size(), l.Repair())
	}
	r := rand.New(rand.NewPCG(1, 2))
	var m model
	for range 60 {
		es := m.gen(r, 1+r.IntN(8), 300, 0)
		if err := l.Append(es...); err != nil {
			t.Fatal(err)
		}
		m.appended(es)
	}
	checkAgainst(t, l, &m)
	if len(l.Segments()) < 5 {
		t.Fatalf("want several segments, got %d", len(l.Segments()))
	}
	// Read returns the payloads back to back.
	out, next, err := l.Read([]byte("prefix"), m.entries[3].BaseOffset, 1<<30, 1<<62)
	if err != nil || next != m.next() {
		t.Fatalf("Read: next %d err %v", next, err)
	}
	want := []byte("prefix")
	for _, e := range m.entries[3:] {
		want = append(want, e.Data...)
	}
	if !slices.Equal(out, want) {
		t.Fatal("Read payloads differ")
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.ReadEntries(0, 1, 10, func(Entry) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
	if err := l.Append(m.gen(r, 1, 10, 0)...); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after Close: %v", err)
	}
	l2 := openLog(t, dir, opts)
	if l2.Repair() != nil {
		t.Fatalf("clean reopen repaired: %+v", l2.Repair())
	}
	checkAgainst(t, l2, &m)
	es := m.gen(r, 3, 100, 0)
	if err := l2.Append(es...); err != nil {
		t.Fatal(err)
	}
	m.appended(es)
	checkAgainst(t, l2, &m)
}

func TestAppendValidation(t *testing.T) {
	l := openLog(t, t.TempDir(), smallOpts(t))
	if err := l.Append(); err != nil {
		t.Fatalf("empty Append: %v", err)
	}
	if err := l.Append(Entry{BaseOffset: 0, LastOffset: 4, Data: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	for name, es := range map[string][]Entry{
		"gap":            {{BaseOffset: 6, LastOffset: 6}},
		"overlap":        {{BaseOffset: 4, LastOffset: 6}},
		"last < base":    {{BaseOffset: 5, LastOffset: 4}},
		"gap inside":     {{BaseOffset: 5, LastOffset: 5}, {BaseOffset: 7, LastOffset: 7}},
		"overlap inside": {{BaseOffset: 5, LastOffset: 6}, {BaseOffset: 6, LastOffset: 7}},
		"max offset":     {{BaseOffset: 5, LastOffset: math.MaxInt64}},
	} {
		if err := l.Append(es...); !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("%s: err = %v, want ErrOutOfOrder", name, err)
		}
	}
	if l.NextOffset() != 5 || l.Size() != int64(1+frameHeaderLen+1) {
		t.Fatalf("rejected appends changed the log: next %d size %d", l.NextOffset(), l.Size())
	}
}

func TestReadEntriesBounds(t *testing.T) {
	l := openLog(t, t.TempDir(), smallOpts(t))
	// Entries [10,14] [15,15] [16,19] ... with 100-byte payloads, after a Reset to 10.
	if err := l.Reset(10); err != nil {
		t.Fatal(err)
	}
	var m model
	m.start = 10
	for i := range 40 {
		e := Entry{BaseOffset: m.next(), LastOffset: m.next() + int64(i%4), MaxTimestamp: int64(i), Data: payload(m.next(), 0, 100)}
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
		m.appended([]Entry{e})
	}
	collect := func(offset int64, maxBytes int, limit int64) ([]Entry, int64, error) {
		var got []Entry
		next, err := l.ReadEntries(offset, maxBytes, limit, func(e Entry) error {
			e.Data = slices.Clone(e.Data)
			got = append(got, e)
			return nil
		})
		return got, next, err
	}
	es := m.entries
	for _, tc := range []struct {
		name             string
		offset           int64
		maxBytes         int
		limit            int64
		from, to         int // want es[from:to]
		wantNext         int64
		wantOutOfRange   bool
		wantNoneAtOffset bool
	}{
		{name: "all", offset: 10, maxBytes: 1 << 20, limit: 1 << 62, from: 0, to: 40},
		{name: "inside an entry starts with it", offset: es[1].BaseOffset + 1, maxBytes: 1 << 20, limit: 1 << 62, from: 1, to: 40},
		{name: "maxBytes stops once reached", offset: 10, maxBytes: 250, limit: 1 << 62, from: 0, to: 3},
		{name: "maxBytes exactly reached", offset: 10, maxBytes: 200, limit: 1 << 62, from: 0, to: 2},
		{name: "at least one entry", offset: 10, maxBytes: 1, limit: 1 << 62, from: 0, to: 1},
		{name: "at least one with maxBytes 0", offset: es[5].BaseOffset, maxBytes: 0, limit: 1 << 62, from: 5, to: 6},
		{name: "limit at an entry start", offset: 10, maxBytes: 1 << 20, limit: es[7].BaseOffset, from: 0, to: 7},
		{name: "limit inside an entry passes it whole", offset: 10, maxBytes: 1 << 20, limit: es[7].BaseOffset + 1, from: 0, to: 8},
		{name: "offset at limit", offset: es[7].BaseOffset, maxBytes: 1 << 20, limit: es[7].BaseOffset, wantNoneAtOffset: true},
		{name: "offset at end", offset: m.next(), maxBytes: 1 << 20, limit: 1 << 62, wantNoneAtOffset: true},
		{name: "offset beyond end", offset: m.next() + 100, maxBytes: 1 << 20, limit: 1 << 62, wantNoneAtOffset: true},
		{name: "below start", offset: 9, maxBytes: 1 << 20, limit: 1 << 62, wantOutOfRange: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, next, err := collect(tc.offset, tc.maxBytes, tc.limit)
			switch {
			case tc.wantOutOfRange:
				if !errors.Is(err, ErrOffsetOutOfRange) || len(got) != 0 {
					t.Fatalf("err %v, %d entries", err, len(got))
				}
				return
			case err != nil:
				t.Fatal(err)
			case tc.wantNoneAtOffset:
				if len(got) != 0 || next != tc.offset {
					t.Fatalf("got %d entries, next %d", len(got), next)
				}
				return
			}
			sameEntries(t, got, es[tc.from:tc.to])
			if want := es[tc.to-1].LastOffset + 1; next != want {
				t.Fatalf("next = %d, want %d", next, want)
			}
		})
	}

	t.Run("fn error stops the read", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		next, err := l.ReadEntries(10, 1<<20, 1<<62, func(e Entry) error {
			if n == 2 {
				return stop
			}
			n++
			return nil
		})
		if err != stop || next != es[1].LastOffset+1 {
			t.Fatalf("next %d err %v", next, err)
		}
	})
}

func TestOffsetForTimestamp(t *testing.T) {
	dir := t.TempDir()
	opts := smallOpts(t)
	l := openLog(t, dir, opts)
	if off, err := l.OffsetForTimestamp(0); err != nil || off != 0 {
		t.Fatalf("empty log: %d %v", off, err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	var m model
	for range 80 {
		es := m.gen(r, 1+r.IntN(4), 200, 0)
		for i := range es {
			es[i].MaxTimestamp = r.Int64N(1000) - 100 // not monotonic, some negative
		}
		if err := l.Append(es...); err != nil {
			t.Fatal(err)
		}
		m.appended(es)
	}
	naive := func(ts int64) int64 {
		for _, e := range m.entries {
			if e.MaxTimestamp >= ts {
				return e.BaseOffset
			}
		}
		return m.next()
	}
	check := func(l *Log) {
		t.Helper()
		for _, ts := range []int64{math.MinInt64, -101, -100, 0, 1, 250, 500, 898, 899, 900, 1000, math.MaxInt64} {
			if got, err := l.OffsetForTimestamp(ts); err != nil || got != naive(ts) {
				t.Fatalf("OffsetForTimestamp(%d) = %d, %v; want %d", ts, got, err, naive(ts))
			}
		}
		for range 300 {
			ts := r.Int64N(1100) - 150
			if got, err := l.OffsetForTimestamp(ts); err != nil || got != naive(ts) {
				t.Fatalf("OffsetForTimestamp(%d) = %d, %v; want %d", ts, got, err, naive(ts))
			}
		}
	}
	check(l)
	l.Close()
	l = openLog(t, dir, opts) // sealed segments' time index from sidecars
	check(l)
	// After retention the first entries are gone: answers come from what is left.
	segs := l.Segments()
	if _, err := l.DeleteSegmentsBefore(segs[2].BaseOffset); err != nil {
		t.Fatal(err)
	}
	m.entries = m.entries[slices.IndexFunc(m.entries, func(e Entry) bool { return e.BaseOffset == segs[2].BaseOffset }):]
	check(l)
	// And after truncation into the middle of a segment.
	off := m.entries[len(m.entries)/2].BaseOffset + 1
	if got, err := l.TruncateTo(off); err != nil || got != m.truncate(off) {
		t.Fatalf("TruncateTo(%d) = %d, %v", off, got, err)
	}
	check(l)
}

func TestTruncateTo(t *testing.T) {
	opts := smallOpts(t)
	build := func(t *testing.T) (*Log, *model, string) {
		dir := t.TempDir()
		l := openLog(t, dir, opts)
		r := rand.New(rand.NewPCG(5, 6))
		m := &model{}
		for range 40 {
			es := m.gen(r, 1+r.IntN(4), 300, 0)
			if err := l.Append(es...); err != nil {
				t.Fatal(err)
			}
			m.appended(es)
		}
		if len(l.Segments()) < 4 {
			t.Fatalf("want at least 4 segments, got %d", len(l.Segments()))
		}
		return l, m, dir
	}
	segStart := func(l *Log, i int) int64 { return l.Segments()[i].BaseOffset }
	for _, tc := range []struct {
		name   string
		offset func(l *Log, m *model) int64
	}{
		{"inside an entry of the tail", func(l *Log, m *model) int64 { return m.entries[len(m.entries)-2].BaseOffset + 1 }},
		{"at an entry boundary", func(l *Log, m *model) int64 { return m.entries[len(m.entries)-3].BaseOffset }},
		{"at the start of the tail segment", func(l *Log, m *model) int64 { return segStart(l, len(l.Segments())-1) }},
		{"at the start of a sealed segment", func(l *Log, m *model) int64 { return segStart(l, 2) }},
		{"inside a sealed segment", func(l *Log, m *model) int64 { return segStart(l, 1) + 3 }},
		{"inside the first entry", func(l *Log, m *model) int64 { return m.entries[0].BaseOffset + 1 }},
		{"at the start", func(l *Log, m *model) int64 { return 0 }},
		{"at the end", func(l *Log, m *model) int64 { return m.next() }},
		{"beyond the end", func(l *Log, m *model) int64 { return m.next() + 10 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, m, dir := build(t)
			off := tc.offset(l, m)
			want := m.truncate(off)
			got, err := l.TruncateTo(off)
			if err != nil || got != want {
				t.Fatalf("TruncateTo(%d) = %d, %v; want %d", off, got, err, want)
			}
			checkAgainst(t, l, m)
			r := rand.New(rand.NewPCG(7, 8))
			for range 10 { // appending after a truncation keeps the roll model right
				es := m.gen(r, 1+r.IntN(3), 300, 1)
				if err := l.Append(es...); err != nil {
					t.Fatal(err)
				}
				m.appended(es)
			}
			checkAgainst(t, l, m)
			if n := l.modelMisses.Load(); n != 0 {
				t.Fatalf("%d roll mispredictions", n)
			}
			l.Close()
			checkAgainst(t, openLog(t, dir, opts), m)
		})
	}
	t.Run("below start of a log", func(t *testing.T) {
		dir := t.TempDir()
		l := openLog(t, dir, opts)
		if err := l.Reset(100); err != nil {
			t.Fatal(err)
		}
		if err := l.Append(Entry{BaseOffset: 100, LastOffset: 109, Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		if got, err := l.TruncateTo(50); err != nil || got != 50 {
			t.Fatalf("TruncateTo(50) = %d, %v", got, err)
		}
		if l.StartOffset() != 50 || l.NextOffset() != 50 {
			t.Fatalf("start %d next %d", l.StartOffset(), l.NextOffset())
		}
		l.Close()
		l = openLog(t, dir, opts)
		if l.StartOffset() != 50 || l.NextOffset() != 50 {
			t.Fatalf("after reopen: start %d next %d", l.StartOffset(), l.NextOffset())
		}
		if _, err := l.ReadEntries(49, 1, 100, func(Entry) error { return nil }); !errors.Is(err, ErrOffsetOutOfRange) {
			t.Fatalf("read below start: %v", err)
		}
	})
}

func TestResetAndEmptyReopen(t *testing.T) {
	dir := t.TempDir()
	opts := smallOpts(t)
	l := openLog(t, dir, opts)
	r := rand.New(rand.NewPCG(9, 10))
	var m model
	for range 30 {
		es := m.gen(r, 3, 300, 0)
		if err := l.Append(es...); err != nil {
			t.Fatal(err)
		}
		m.appended(es)
	}
	if err := l.Reset(-1); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("Reset(-1): %v", err)
	}
	if err := l.Reset(5000); err != nil {
		t.Fatal(err)
	}
	m = model{start: 5000}
	checkAgainst(t, l, &m)
	if len(l.Segments()) != 1 {
		t.Fatalf("after Reset: %d segments", len(l.Segments()))
	}
	if _, err := l.ReadEntries(4999, 1, 1<<62, func(Entry) error { return nil }); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below start: %v", err)
	}
	l.Close()
	l = openLog(t, dir, opts)
	checkAgainst(t, l, &m)
	es := m.gen(r, 5, 300, 0)
	if err := l.Append(es...); err != nil {
		t.Fatal(err)
	}
	m.appended(es)
	checkAgainst(t, l, &m)
	l.Close()
	l = openLog(t, dir, opts) // entries exist: the start file is ignored
	checkAgainst(t, l, &m)

	// Emptied by TruncateTo: reopen keeps NextOffset.
	off := m.startOffset() + 1
	want := m.truncate(off)
	if got, err := l.TruncateTo(off); err != nil || got != want || got != 5000 {
		t.Fatalf("TruncateTo = %d, %v; want %d", got, err, want)
	}
	l.Close()
	l = openLog(t, dir, opts)
	checkAgainst(t, l, &m)
}

func TestDeleteSegmentsBefore(t *testing.T) {
	dir := t.TempDir()
	opts := smallOpts(t)
	l := openLog(t, dir, opts)
	r := rand.New(rand.NewPCG(11, 12))
	var m model
	for range 50 {
		es := m.gen(r, 2, 300, 0)
		if err := l.Append(es...); err != nil {
			t.Fatal(err)
		}
		m.appended(es)
	}
	segs := l.Segments()
	if n, err := l.DeleteSegmentsBefore(segs[0].NextOffset - 1); err != nil || n != 0 {
		t.Fatalf("nothing to delete: %d %v", n, err)
	}
	// Delete the first three segments.
	cut := segs[3].BaseOffset
	n, err := l.DeleteSegmentsBefore(cut + 1)
	if err != nil || n != segs[0].Bytes+segs[1].Bytes+segs[2].Bytes {
		t.Fatalf("DeleteSegmentsBefore = %d, %v", n, err)
	}
	m.entries = m.entries[slices.IndexFunc(m.entries, func(e Entry) bool { return e.BaseOffset == cut }):]
	checkAgainst(t, l, &m)
	if _, err := l.ReadEntries(cut-1, 1, 1<<62, func(Entry) error { return nil }); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below start: %v", err)
	}
	for _, s := range segs[:3] {
		if _, err := os.Stat(sidecarPath(s.Path)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("sidecar of deleted segment %s: %v", s.Path, err)
		}
	}
	// Never the tail, even with an offset beyond the end.
	segs = l.Segments()
	if _, err := l.DeleteSegmentsBefore(math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	after := l.Segments()
	if len(after) != 1 || after[0].Path != segs[len(segs)-1].Path || after[0].Sealed {
		t.Fatalf("after deleting everything deletable: %+v", after)
	}
	m.entries = m.entries[slices.IndexFunc(m.entries, func(e Entry) bool { return e.BaseOffset == after[0].BaseOffset }):]
	checkAgainst(t, l, &m)
	l.Close()
	l = openLog(t, dir, opts)
	checkAgainst(t, l, &m)
}

func TestDeleteSegmentsBeforeEmptiesLog(t *testing.T) {
	dir := t.TempDir()
	opts := smallOpts(t)
	opts.SegmentBytes = 1000
	l := openLog(t, dir, opts)
	// One entry that fills a segment: tidwall rolls right after it, leaving an empty tail.
	if err := l.Append(Entry{BaseOffset: 0, LastOffset: 9, Data: make([]byte, 1000)}); err != nil {
		t.Fatal(err)
	}
	segs := l.Segments()
	if len(segs) != 2 || segs[1].BaseOffset != 10 || segs[1].Bytes != 0 {
		t.Fatalf("segments: %+v", segs)
	}
	if n, err := l.DeleteSegmentsBefore(10); err != nil || n != segs[0].Bytes {
		t.Fatalf("DeleteSegmentsBefore = %d, %v", n, err)
	}
	m := model{start: 10}
	checkAgainst(t, l, &m)
	l.Close()
	l = openLog(t, dir, opts)
	checkAgainst(t, l, &m)
	if err := l.Append(Entry{BaseOffset: 10, LastOffset: 10, Data: []byte("a")}); err != nil {
		t.Fatal(err)
	}
}

// TestRandomOpsAgainstModel runs random appends, truncations, resets,
// retention and reopens against the naive model (STYLE H15).
func TestRandomOpsAgainstModel(t *testing.T) {
	for seed := range uint64(6) {
		t.Run("", func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 99))
			dir := t.TempDir()
			opts := smallOpts(t)
			opts.SegmentBytes = 500 + r.IntN(3000)
			opts.IndexIntervalBytes = 1 + r.IntN(600)
			l := openLog(t, dir, opts)
			var m model
			for step := range 300 {
				switch op := r.IntN(20); {
				case op < 12:
					es := m.gen(r, 1+r.IntN(10), 400, step)
					if err := l.Append(es...); err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
					m.appended(es)
				case op < 15:
					off := m.startOffset() - 3 + r.Int64N(m.next()-m.startOffset()+6)
					off = max(off, 0)
					want := m.truncate(off)
					if got, err := l.TruncateTo(off); err != nil || got != want {
						t.Fatalf("step %d: TruncateTo(%d) = %d, %v; want %d", step, off, got, err, want)
					}
				case op < 17:
					segs := l.Segments()
					off := segs[r.IntN(len(segs))].NextOffset
					var want int64
					n := 0
					for n < len(segs)-1 && segs[n].NextOffset <= off {
						want += segs[n].Bytes
						n++
					}
					if n > 0 {
						keep := segs[n].BaseOffset
						m.entries = slices.DeleteFunc(m.entries, func(e Entry) bool { return e.BaseOffset < keep })
						m.start = keep
					}
					if got, err := l.DeleteSegmentsBefore(off); err != nil || got != want {
						t.Fatalf("step %d: DeleteSegmentsBefore(%d) = %d, %v; want %d", step, off, got, err, want)
					}
				case op < 18:
					next := m.next() + r.Int64N(100) - 20
					next = max(next, 0)
					if err := l.Reset(next); err != nil {
						t.Fatal(err)
					}
					m = model{start: next}
				default:
					if err := l.Close(); err != nil {
						t.Fatal(err)
					}
					l = openLog(t, dir, opts)
					if l.Repair() != nil {
						t.Fatalf("step %d: clean reopen repaired %+v", step, l.Repair())
					}
				}
				checkAgainst(t, l, &m)
			}
			if n := l.modelMisses.Load(); n != 0 {
				t.Fatalf("%d roll mispredictions", n)
			}
			if err := l.Verify(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSidecars(t *testing.T) {
	opts := smallOpts(t)
	src := t.TempDir()
	l := openLog(t, src, opts)
	r := rand.New(rand.NewPCG(13, 14))
	var m model
	for range 40 {
		es := m.gen(r, 2, 300, 0)
		if err := l.Append(es...); err != nil {
			t.Fatal(err)
		}
		m.appended(es)
	}
	segs := l.Segments()
	l.Close()
	for _, s := range segs[:len(segs)-1] {
		if _, err := os.Stat(sidecarPath(s.Path)); err != nil {
			t.Fatalf("sealed segment without sidecar: %v", err)
		}
	}
	if _, err := os.Stat(sidecarPath(segs[len(segs)-1].Path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tail has a sidecar: %v", err)
	}
	side := func(dir string, i int) string { return sidecarPath(filepath.Join(dir, filepath.Base(segs[i].Path))) }

	for _, tc := range []struct {
		name   string
		mutate func(t *testing.T, dir string)
	}{
		{"missing", func(t *testing.T, dir string) { must(t, os.Remove(side(dir, 1))) }},
		{"bit flip", func(t *testing.T, dir string) { flipBit(t, side(dir, 1), 60) }},
		{"torn", func(t *testing.T, dir string) { must(t, os.Truncate(side(dir, 1), 70)) }},
		{"empty", func(t *testing.T, dir string) { must(t, os.Truncate(side(dir, 1), 0)) }},
		{"stale: another segment's", func(t *testing.T, dir string) {
			b, err := os.ReadFile(side(dir, 2))
			must(t, err)
			must(t, os.WriteFile(side(dir, 1), b, 0o640))
		}},
		{"stale: segment size changed", func(t *testing.T, dir string) {
			// A sidecar written for a longer version of segment 1 (as if
			// the segment had been truncated and the sidecar survived).
			s := &segment{id: 0}
			b, err := os.ReadFile(side(dir, 1))
			must(t, err)
			fi, err := os.Stat(filepath.Join(dir, filepath.Base(segs[1].Path)))
			must(t, err)
			s.id = idOf(t, segs[1].Path)
			count := idOf(t, segs[2].Path) - s.id
			must(t, decodeSidecar(s, b, fi.Size(), count))
			s.size += 100
			must(t, os.WriteFile(side(dir, 1), encodeSidecar(s), 0o640))
		}},
		{"orphan", func(t *testing.T, dir string) {
			must(t, os.WriteFile(filepath.Join(dir, segmentName(999999)+".idx"), []byte("junk"), 0o640))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			tc.mutate(t, dir)
			l := openLog(t, dir, opts)
			if l.Repair() != nil {
				t.Fatalf("repaired: %+v", l.Repair())
			}
			checkAgainst(t, l, &m)
			if err := l.Verify(); err != nil {
				t.Fatal(err)
			}
			l.Close()
			// Rebuilt and valid again; orphans removed.
			d, err := listDir(dir)
			must(t, err)
			for id, p := range d.sidecars {
				if _, ok := d.sizes[id]; !ok {
					t.Fatalf("orphan sidecar %s left", p)
				}
				b, err := os.ReadFile(p)
				must(t, err)
				s := &segment{id: id}
				next := d.segments[slices.Index(d.segments, id)+1]
				if err := decodeSidecar(s, b, d.sizes[id], next-id); err != nil {
					t.Fatalf("sidecar %s after reopen: %v", p, err)
				}
			}
			if len(d.sidecars) != len(d.segments)-1 {
				t.Fatalf("%d sidecars for %d segments", len(d.sidecars), len(d.segments))
			}
		})
	}
}

func idOf(t *testing.T, path string) uint64 {
	id, ok := parseSegmentID(filepath.Base(path))
	if !ok {
		t.Fatalf("not a segment: %s", path)
	}
	return id
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func flipBit(t testing.TB, path string, pos int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, pos)
	must(t, err)
	b[0] ^= 0x10
	_, err = f.WriteAt(b, pos)
	must(t, err)
}
