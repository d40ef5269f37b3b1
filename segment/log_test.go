package segment

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestModel runs random writes, flushes, truncations, retention, resets,
// clean reopens and crashes (the Log dropped without Close: the files stay
// as the page cache has them) against the reference model.
func TestModel(t *testing.T) {
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, 1))
		dir := t.TempDir()
		opts := smallOpts(t)
		l := openLog(t, dir, opts)
		m := &model{}
		for step := range 300 {
			switch op := rng.IntN(20); {
			case op < 10:
				appendN(t, l, m, rng, rng.IntN(5)+1, 600, step)
			case op < 12:
				durable, err := l.Flush()
				must(t, err)
				if durable != m.next() {
					t.Fatalf("seed %d step %d: Flush made %d durable, the log ends at %d", seed, step, durable, m.next())
				}
			case op < 14:
				at := m.first() + rng.Int64N(m.next()-m.first()+3) - 1
				got, err := l.TruncateTo(max(at, 0))
				must(t, err)
				if want := m.truncate(max(at, 0)); got != want {
					t.Fatalf("seed %d step %d: TruncateTo(%d) = %d, model %d", seed, step, at, got, want)
				}
			case op < 16:
				at := m.first() + rng.Int64N(m.next()-m.first()+1)
				checkRetention(t, l, m, at)
			case op == 16:
				next := m.next() + rng.Int64N(10) - 3
				must(t, l.Reset(max(next, 0)))
				m.entries, m.start = nil, max(next, 0)
			case op == 17:
				must(t, l.Close())
				l = openLog(t, dir, opts)
			case op == 18:
				crash(l) // nothing flushed, nothing lost
				l = openLog(t, dir, opts)
				if r := l.Repair(); r != nil {
					t.Fatalf("seed %d step %d: repair after a process crash: %+v", seed, step, r)
				}
			default:
				ts := rng.Int64N(1100)
				got, err := l.OffsetForTimestamp(ts)
				must(t, err)
				if want := m.offsetForTimestamp(ts); got != want {
					t.Fatalf("seed %d step %d: OffsetForTimestamp(%d) = %d, model %d", seed, step, ts, got, want)
				}
			}
			checkAll(t, l, m)
		}
		must(t, l.Verify())
	}
}

// checkRetention runs DeleteSegmentsBefore(at) and checks that it removed
// exactly the sealed segments that end at or before at.
func checkRetention(t *testing.T, l *Log, m *model, at int64) {
	t.Helper()
	segs := l.Segments()
	var want int64
	newStart := segs[0].BaseOffset
	for _, s := range segs[:len(segs)-1] {
		if s.NextOffset > at {
			break
		}
		want += s.Bytes
		newStart = s.NextOffset
	}
	removed, err := l.DeleteSegmentsBefore(at)
	must(t, err)
	if removed != want {
		t.Fatalf("DeleteSegmentsBefore(%d) removed %d bytes, want %d", at, removed, want)
	}
	for len(m.entries) > 0 && m.entries[0].BaseOffset < newStart {
		m.entries = m.entries[1:]
	}
	if len(m.entries) == 0 {
		m.start = newStart
	}
}

func TestWriteChecks(t *testing.T) {
	l := openLog(t, t.TempDir(), smallOpts(t))
	must(t, l.Write(Entry{BaseOffset: 0, LastOffset: 2, Data: []byte("a")}))
	for name, es := range map[string][]Entry{
		"gap":         {{BaseOffset: 4, LastOffset: 4}},
		"overlap":     {{BaseOffset: 2, LastOffset: 3}},
		"backwards":   {{BaseOffset: 3, LastOffset: 2}},
		"second gap":  {{BaseOffset: 3, LastOffset: 3}, {BaseOffset: 5, LastOffset: 5}},
		"max offset":  {{BaseOffset: 3, LastOffset: math.MaxInt64}},
		"empty batch": nil,
	} {
		err := l.Write(es...)
		if es == nil {
			must(t, err)
			continue
		}
		if !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("%s: err %v, want ErrOutOfOrder", name, err)
		}
		if l.NextOffset() != 3 || l.Size() != frameHeaderLen+1 {
			t.Fatalf("%s: the refused write changed the log: next %d, size %d", name, l.NextOffset(), l.Size())
		}
	}
	if _, err := l.ReadEntries(-1, 1, 10, func(Entry) error { return nil }); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below the start: %v", err)
	}
	if err := l.Reset(-1); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("Reset(-1): %v", err)
	}
}

// TestRollAndSidecars: segments roll at SegmentBytes; a sealed segment gets
// a sidecar only once Flush has fsynced it, and Open trusts the sidecar
// instead of reading the segment.
func TestRollAndSidecars(t *testing.T) {
	dir := t.TempDir()
	opts := smallOpts(t)
	l := openLog(t, dir, opts)
	m := &model{}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		appendN(t, l, m, rng, 3, 300, 0)
	}
	segs := l.Segments()
	if len(segs) < 4 {
		t.Fatalf("%d segments for %d bytes with %d-byte segments", len(segs), l.Size(), opts.SegmentBytes)
	}
	for _, s := range segs {
		if s.Bytes > opts.SegmentBytes {
			t.Fatalf("segment %s has %d bytes, more than %d", s.Path, s.Bytes, opts.SegmentBytes)
		}
		if _, err := os.Stat(sidecarPath(s.Path)); err == nil {
			t.Fatalf("sidecar of %s before any Flush", s.Path)
		}
	}
	_, err := l.Flush()
	must(t, err)
	for _, s := range segs[:len(segs)-1] {
		if _, err := os.Stat(sidecarPath(s.Path)); err != nil {
			t.Fatalf("no sidecar for the flushed sealed segment %s: %v", s.Path, err)
		}
	}
	must(t, l.Close())
	// Make a sealed segment unreadable: Open must not need it.
	must(t, os.Chmod(segs[1].Path, 0))
	l = openLog(t, dir, opts)
	if l.NextOffset() != m.next() || len(l.Segments()) != len(segs) {
		t.Fatalf("reopened log ends at %d with %d segments, want %d and %d", l.NextOffset(), len(l.Segments()), m.next(), len(segs))
	}
	must(t, os.Chmod(segs[1].Path, 0o640))
	checkAll(t, l, m)
}

func TestResetSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	opts := smallOpts(t)
	l := openLog(t, dir, opts)
	m := &model{}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10 {
		appendN(t, l, m, rng, 3, 300, 0)
	}
	_, err := l.Flush()
	must(t, err)
	crash(l)
	// A crash right after the marker was written: Open finishes the Reset.
	must(t, writeFileAtomic(filepath.Join(dir, resetFileName), encodeReset(500)))
	l = openLog(t, dir, opts)
	if l.StartOffset() != 500 || l.NextOffset() != 500 || len(l.Segments()) != 1 {
		t.Fatalf("after an interrupted Reset(500): [%d, %d) in %d segments", l.StartOffset(), l.NextOffset(), len(l.Segments()))
	}
	if _, err := os.Stat(filepath.Join(dir, resetFileName)); err == nil {
		t.Fatal("reset marker left behind")
	}
	// A damaged marker is refused, not guessed at.
	must(t, l.Close())
	must(t, os.WriteFile(filepath.Join(dir, resetFileName), []byte("SKRS garbage...."), 0o640))
	if _, err := Open(dir, opts); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with a damaged reset marker: %v, want ErrCorrupt", err)
	}
}
