package wal

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// shrink is the rewrite the compaction tests use: every entry whose base
// offset is even loses the second half of its payload.
func shrink(e Entry) ([]byte, error) {
	if e.BaseOffset%2 != 0 || len(e.Data) < 2 {
		return nil, nil
	}
	return slices.Clone(e.Data[:len(e.Data)/2]), nil
}

// shrunk is what shrink makes of the model's entries in segments (by base).
func shrunk(m *model, bases map[int64]bool, segs []SegmentInfo) []Entry {
	out := make([]Entry, len(m.entries))
	for i, e := range m.entries {
		out[i] = e
		for _, s := range segs {
			if bases[s.BaseOffset] && e.BaseOffset >= s.BaseOffset && e.BaseOffset < s.NextOffset {
				if d, _ := shrink(e); d != nil {
					out[i].Data = d
				}
			}
		}
	}
	return out
}

func fillLog(t *testing.T, l *Log, m *model, n int) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < n; i += 10 {
		es := m.gen(r, 10, 200, 0)
		if err := l.Append(es...); err != nil {
			t.Fatal(err)
		}
		m.appended(es)
	}
}

func TestCompactSegment(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, smallOpts(t))
	m := &model{}
	fillLog(t, l, m, 300)
	segs := l.Segments()
	if len(segs) < 4 {
		t.Fatalf("want several segments, have %d", len(segs))
	}
	bases := map[int64]bool{}
	var saved int64
	for _, s := range segs[:len(segs)-1] {
		before, after, err := l.CompactSegment(s.BaseOffset, shrink)
		if err != nil {
			t.Fatalf("CompactSegment(%d): %v", s.BaseOffset, err)
		}
		if before != s.Bytes || after >= before {
			t.Fatalf("CompactSegment(%d): %d -> %d bytes (segment had %d)", s.BaseOffset, before, after, s.Bytes)
		}
		saved += before - after
		bases[s.BaseOffset] = true
	}
	want := shrunk(m, bases, segs)
	m2 := &model{entries: want}
	checkAgainst(t, l, m2)
	if err := l.Verify(); err != nil {
		t.Fatal(err)
	}
	// The tail, an unknown base and a no-op rewrite.
	tail := segs[len(segs)-1]
	if _, _, err := l.CompactSegment(tail.BaseOffset, shrink); err == nil {
		t.Fatal("compacting the tail succeeded")
	}
	if _, _, err := l.CompactSegment(segs[0].BaseOffset+1, shrink); err == nil || !strings.Contains(err.Error(), "no sealed segment") {
		t.Fatalf("unknown base: %v", err)
	}
	b, a, err := l.CompactSegment(segs[0].BaseOffset, func(Entry) ([]byte, error) { return nil, nil })
	if err != nil || a != b {
		t.Fatalf("no-op compaction: %d -> %d, %v", b, a, err)
	}
	// A failing rewrite changes nothing.
	boom := errors.New("boom")
	if _, _, err := l.CompactSegment(segs[1].BaseOffset, func(Entry) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("failing rewrite: %v", err)
	}
	checkAgainst(t, l, m2)
	if ms, _ := filepath.Glob(filepath.Join(dir, "*"+tmpSuffix)); len(ms) > 0 {
		t.Fatalf("temp files left: %v", ms)
	}

	// Appends, timestamp lookups, retention and truncation still work.
	r := rand.New(rand.NewPCG(3, 4))
	es := m2.gen(r, 20, 200, 1)
	if err := l.Append(es...); err != nil {
		t.Fatal(err)
	}
	m2.appended(es)
	checkAgainst(t, l, m2)
	if _, err := l.OffsetForTimestamp(0); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, smallOpts(t))
	checkAgainst(t, l, m2)
	if err := l.Verify(); err != nil {
		t.Fatal(err)
	}
	cut := segs[2].BaseOffset + 1
	if _, err := l.TruncateTo(cut); err != nil {
		t.Fatal(err)
	}
	m2.truncate(cut)
	checkAgainst(t, l, m2)
	if _, err := l.DeleteSegmentsBefore(segs[1].BaseOffset); err != nil {
		t.Fatal(err)
	}
	for len(m2.entries) > 0 && m2.entries[0].BaseOffset < segs[1].BaseOffset {
		m2.entries = m2.entries[1:]
	}
	checkAgainst(t, l, m2)
}

// TestCompactSegmentRaces: a segment truncated away while it was being
// compacted is left alone (ErrSegmentChanged).
func TestCompactSegmentRaces(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, smallOpts(t))
	m := &model{}
	fillLog(t, l, m, 200)
	segs := l.Segments()
	target := segs[len(segs)-2]
	_, _, err := l.CompactSegment(target.BaseOffset, func(e Entry) ([]byte, error) {
		if e.BaseOffset == target.BaseOffset {
			// Runs while the new file is built: truncate into the segment.
			go func() { _, _ = l.TruncateTo(target.BaseOffset + 1) }()
			for l.NextOffset() > target.NextOffset {
				runtime.Gosched() // wait for the truncation
			}
		}
		return shrink(e)
	})
	if !errors.Is(err, ErrSegmentChanged) {
		t.Fatalf("compaction of a truncated segment: %v", err)
	}
	m.truncate(target.BaseOffset + 1)
	checkAgainst(t, l, m)
}

// TestCompactCrash stops CompactSegment at each step (a panic in the hook
// stands for the process dying there, the files as they are) and opens the
// directory again: every segment holds either all its old entries or all
// its new ones, never a mix, and the log is whole.
func TestCompactCrash(t *testing.T) {
	steps := []string{"built", "sidecar-removed", "renamed", "synced", "done"}
	r := rand.New(rand.NewPCG(5, 6))
	for round := 0; round < 2*len(steps); round++ {
		step := steps[round%len(steps)]
		if round >= len(steps) {
			step = steps[r.IntN(len(steps))]
		}
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			l, err := Open(dir, smallOpts(t))
			if err != nil {
				t.Fatal(err)
			}
			m := &model{}
			fillLog(t, l, m, 200)
			segs := l.Segments()
			target := segs[r.IntN(len(segs)-1)]
			compactHook = func(s string) {
				if s == step {
					panic("crash at " + s)
				}
			}
			func() {
				defer func() { _ = recover() }()
				_, _, _ = l.CompactSegment(target.BaseOffset, shrink)
			}()
			compactHook = nil
			// The crashed Log is abandoned, as a dead process's would be.
			l2 := openLog(t, dir, smallOpts(t))
			old := m.entries
			compacted := shrunk(m, map[int64]bool{target.BaseOffset: true}, segs)
			got := readAll(t, l2, l2.StartOffset())
			if len(got) != len(old) {
				t.Fatalf("after a crash at %s: %d entries, want %d", step, len(got), len(old))
			}
			var sawOld, sawNew bool
			for i, g := range got {
				isOld, isNew := bytes.Equal(g.Data, old[i].Data), bytes.Equal(g.Data, compacted[i].Data)
				if !isOld && !isNew {
					t.Fatalf("after a crash at %s: entry %d at %d is neither old nor new", step, i, g.BaseOffset)
				}
				if g.BaseOffset != old[i].BaseOffset || g.LastOffset != old[i].LastOffset || g.MaxTimestamp != old[i].MaxTimestamp {
					t.Fatalf("after a crash at %s: entry %d moved", step, i)
				}
				if !bytes.Equal(old[i].Data, compacted[i].Data) {
					sawOld = sawOld || isOld
					sawNew = sawNew || isNew
				}
			}
			if sawOld && sawNew {
				t.Fatalf("after a crash at %s: the segment mixes old and new entries", step)
			}
			if step == "built" || step == "sidecar-removed" {
				if sawNew {
					t.Fatalf("crash at %s (before the rename) shows the new segment", step)
				}
			} else if sawOld {
				t.Fatalf("crash at %s (after the rename) shows the old segment", step)
			}
			if err := l2.Verify(); err != nil {
				t.Fatal(err)
			}
			checkFiles(t, l2)
			if ms, _ := filepath.Glob(filepath.Join(dir, "*"+tmpSuffix)); len(ms) > 0 {
				t.Fatalf("temp files left after reopening: %v", ms)
			}
			// And it compacts again to the same result.
			if _, _, err := l2.CompactSegment(target.BaseOffset, shrink); err != nil {
				t.Fatal(err)
			}
		})
	}
}
