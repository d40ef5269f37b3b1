package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// crashFixture is a closed log spanning several segments, with at least
// four entries in its tail segment, and what it holds.
type crashFixture struct {
	dir  string
	opts Options
	m    model
	tail string // tail segment file name
	// frame boundaries of the tail file: ends[i] is where entry i of the
	// tail ends; tailFirst is the index in m.entries of its first entry.
	ends      []int64
	tailFirst int
}

func newCrashFixture(t *testing.T) *crashFixture {
	t.Helper()
	opts := smallOpts(t)
	opts.SegmentBytes = 4096
	opts.IndexIntervalBytes = 512
	f := &crashFixture{dir: t.TempDir(), opts: opts}
	l := openLog(t, f.dir, opts)
	r := rand.New(rand.NewPCG(21, 22))
	for {
		es := f.m.gen(r, 1, 150, 0)
		must(t, l.Append(es...))
		f.m.appended(es)
		segs := l.Segments()
		if len(segs) >= 3 && len(decodeFile(t, segs[len(segs)-1].Path)) >= 4 {
			break
		}
	}
	segs := l.Segments()
	f.tail = filepath.Base(segs[len(segs)-1].Path)
	must(t, l.Close())
	b, err := os.ReadFile(filepath.Join(f.dir, f.tail))
	must(t, err)
	var pos int64
	for pos < int64(len(b)) {
		n, k := binary.Uvarint(b[pos:])
		pos += int64(k) + int64(n)
		f.ends = append(f.ends, pos)
	}
	f.tailFirst = len(f.m.entries) - len(f.ends)
	return f
}

// tailStart is the byte where tail entry i starts.
func (f *crashFixture) tailStart(i int) int64 {
	if i == 0 {
		return 0
	}
	return f.ends[i-1]
}

// openDamaged copies the fixture, lets mutate damage the copy, opens it
// and checks that it holds exactly the first keep entries of the fixture.
func (f *crashFixture) openDamaged(t *testing.T, keep int, mutate func(dir, tail string)) *Log {
	t.Helper()
	dir := copyDir(t, f.dir)
	mutate(dir, filepath.Join(dir, f.tail))
	l := openLog(t, dir, f.opts)
	m := model{entries: f.m.entries[:keep]}
	checkAgainst(t, l, &m)
	if err := l.Verify(); err != nil {
		t.Fatalf("Verify after repair: %v", err)
	}
	return l
}

func appendBytes(t testing.TB, path string, b []byte) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = fh.Write(b)
	must(t, err)
	must(t, fh.Close())
}

func wantRepair(t *testing.T, l *Log, want RepairReport) {
	t.Helper()
	got := l.Repair()
	if got == nil {
		t.Fatalf("Repair() = nil, want %+v", want)
	}
	want.Segment = filepath.Join(l.dir, filepath.Base(want.Segment))
	if *got != want {
		t.Fatalf("Repair() = %+v, want %+v", *got, want)
	}
}

func TestTornTail(t *testing.T) {
	f := newCrashFixture(t)
	last := len(f.ends) - 1
	// Every cut inside the last entry, and every 5th byte of the whole tail.
	var cuts []int64
	for c := f.tailStart(last) + 1; c < f.ends[last]; c++ {
		cuts = append(cuts, c)
	}
	for c := int64(1); c < f.ends[last]; c += 5 {
		cuts = append(cuts, c)
	}
	for _, cut := range cuts {
		i := 0 // entries of the tail that survive the cut whole
		for i < len(f.ends) && f.ends[i] <= cut {
			i++
		}
		l := f.openDamaged(t, f.tailFirst+i, func(dir, tail string) { must(t, os.Truncate(tail, cut)) })
		if cut == f.tailStart(i) {
			if l.Repair() != nil {
				t.Fatalf("cut %d at a frame boundary: Repair() = %+v", cut, l.Repair())
			}
			continue
		}
		dropped := cut - f.tailStart(i)
		first := int64(-1)
		e := f.m.entries[f.tailFirst+i]
		if vl := int64(uvarintLen(uint64(f.ends[i] - f.tailStart(i)))); dropped >= vl+frameHeaderLen {
			first = e.BaseOffset // the header made it to disk
		}
		wantRepair(t, l, RepairReport{Segment: f.tail, DroppedBytes: dropped, FirstDroppedOffset: first, Reason: "torn frame"})
	}
}

func TestZeroFilledTail(t *testing.T) {
	f := newCrashFixture(t)
	l := f.openDamaged(t, len(f.m.entries), func(dir, tail string) { appendBytes(t, tail, make([]byte, 4096)) })
	wantRepair(t, l, RepairReport{Segment: f.tail, DroppedEntries: 4096, DroppedBytes: 4096, FirstDroppedOffset: -1, Reason: "zero-filled tail"})

	// Zeros after a torn frame (a crash mid-write on a file system that
	// extended the file first): tidwall sees a torn frame.
	cut := f.ends[len(f.ends)-1] - 3
	l = f.openDamaged(t, len(f.m.entries)-1, func(dir, tail string) {
		must(t, os.Truncate(tail, cut))
		appendBytes(t, tail, make([]byte, 100))
	})
	if r := l.Repair(); r == nil || r.DroppedBytes != cut+100-f.tailStart(len(f.ends)-1) {
		t.Fatalf("Repair() = %+v", r)
	}
}

func TestGarbageTail(t *testing.T) {
	f := newCrashFixture(t)
	next := f.m.next()
	last := f.m.entries[len(f.m.entries)-1]
	frames := func(es ...[]byte) []byte {
		var b []byte
		for _, e := range es {
			b = binary.AppendUvarint(b, uint64(len(e)))
			b = append(b, e...)
		}
		return b
	}
	r := rand.New(rand.NewPCG(1, 1))
	junk := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	valid := func(base, lastOff int64) []byte {
		return appendFrame(nil, Entry{BaseOffset: base, LastOffset: lastOff, MaxTimestamp: 1, Data: []byte("phantom")})
	}
	for _, tc := range []struct {
		name    string
		garbage []byte
		entries int
		first   int64
		reason  string
	}{
		{"random frames", frames(junk(40), junk(100), junk(7), junk(64), junk(300)), 5, -1, "checksum mismatch"},
		{"short frames", frames(junk(3), junk(28)), 2, -1, "short frame"},
		{"valid frame with a gap", frames(valid(next+5, next+9)), 1, -1, "offset discontinuity"},
		{"valid frame repeating the last entry", frames(valid(last.BaseOffset, last.LastOffset)), 1, -1, "offset discontinuity"},
		{"bad frame then a valid contiguous one", frames(junk(50), valid(next, next)), 2, -1, "checksum mismatch"},
		{"bad offsets", frames(func() []byte {
			b := valid(next, next)
			binary.LittleEndian.PutUint64(b[13:], 1<<63) // negative span
			binary.LittleEndian.PutUint32(b, crc(b[4:]))
			return b
		}()), 1, -1, "bad offsets"},
		{"unknown version", frames(func() []byte {
			b := valid(next, next)
			b[4] = 2
			binary.LittleEndian.PutUint32(b, crc(b[4:]))
			return b
		}()), 1, -1, "unknown frame version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := f.openDamaged(t, len(f.m.entries), func(dir, tail string) { appendBytes(t, tail, tc.garbage) })
			wantRepair(t, l, RepairReport{Segment: f.tail, DroppedEntries: tc.entries, DroppedBytes: int64(len(tc.garbage)), FirstDroppedOffset: tc.first, Reason: tc.reason})
		})
	}
}

func TestFlippedBitInTail(t *testing.T) {
	f := newCrashFixture(t)
	last := len(f.ends) - 1
	t.Run("payload of the last entry", func(t *testing.T) {
		l := f.openDamaged(t, len(f.m.entries)-1, func(dir, tail string) { flipBit(t, tail, f.ends[last]-1) })
		wantRepair(t, l, RepairReport{Segment: f.tail, DroppedEntries: 1, DroppedBytes: f.ends[last] - f.tailStart(last),
			FirstDroppedOffset: f.m.entries[len(f.m.entries)-1].BaseOffset, Reason: "checksum mismatch"})
	})
	t.Run("length of the last entry", func(t *testing.T) {
		l := f.openDamaged(t, len(f.m.entries)-1, func(dir, tail string) { flipBit(t, tail, f.tailStart(last)) })
		if l.Repair() == nil {
			t.Fatal("no repair")
		}
	})
	t.Run("first entry of the tail segment", func(t *testing.T) {
		l := f.openDamaged(t, f.tailFirst, func(dir, tail string) { flipBit(t, tail, f.ends[0]-1) })
		wantRepair(t, l, RepairReport{Segment: f.tail, DroppedEntries: len(f.ends), DroppedBytes: f.ends[last],
			FirstDroppedOffset: f.m.entries[f.tailFirst].BaseOffset, Reason: "checksum mismatch"})
		// The empty tail is still the tail: appends continue in it.
		m := model{entries: slices.Clone(f.m.entries[:f.tailFirst])}
		es := m.gen(rand.New(rand.NewPCG(1, 2)), 20, 300, 1)
		must(t, l.Append(es...))
		m.appended(es)
		checkAgainst(t, l, &m)
		if l.modelMisses.Load() != 0 {
			t.Fatal("roll misprediction")
		}
	})
	t.Run("only segment, emptied, keeps its start", func(t *testing.T) {
		dir := t.TempDir()
		l := openLog(t, dir, smallOpts(t))
		must(t, l.Reset(100))
		must(t, l.Append(Entry{BaseOffset: 100, LastOffset: 104, Data: []byte("hello")}, Entry{BaseOffset: 105, LastOffset: 105, Data: []byte("x")}))
		path := l.Segments()[0].Path
		must(t, l.Close())
		flipBit(t, path, 1+frameHeaderLen+2) // in the payload: the header still says 100
		l = openLog(t, dir, smallOpts(t))
		checkAgainst(t, l, &model{start: 100})
		wantRepair(t, l, RepairReport{Segment: path, DroppedEntries: 2, DroppedBytes: 2*(1+frameHeaderLen) + 6, FirstDroppedOffset: 100, Reason: "checksum mismatch"})
	})
}

func TestFlippedBitBelowTail(t *testing.T) {
	f := newCrashFixture(t)
	dir := copyDir(t, f.dir)
	segs := decodeFile(t, filepath.Join(dir, segmentName(1)))
	victim := segs[len(segs)/2] // an entry in the middle of the first segment
	b, err := os.ReadFile(filepath.Join(dir, segmentName(1)))
	must(t, err)
	// Find the victim's payload in the file and flip a bit in it.
	at := int64(indexOf(b, victim.Data))
	if at < 0 || len(victim.Data) == 0 {
		t.Skip("victim has no payload")
	}
	flipBit(t, filepath.Join(dir, segmentName(1)), at)

	l := openLog(t, dir, f.opts)
	if l.Repair() != nil {
		t.Fatalf("damage below the tail was repaired: %+v", l.Repair())
	}
	if l.NextOffset() != f.m.next() {
		t.Fatalf("NextOffset %d, want %d", l.NextOffset(), f.m.next())
	}
	_, err = l.ReadEntries(victim.BaseOffset, 1<<20, 1<<62, func(Entry) error { return nil })
	ce, ok := isCorrupt(err)
	if !ok || ce.Offset != victim.BaseOffset || ce.Path != filepath.Join(l.dir, segmentName(1)) || ce.Reason != "checksum mismatch" {
		t.Fatalf("read of the damaged entry: %v", err)
	}
	// Reading from the start stops before the damage, without an error.
	var got []Entry
	next, err := l.ReadEntries(0, 1<<20, 1<<62, func(e Entry) error {
		e.Data = slices.Clone(e.Data)
		got = append(got, e)
		return nil
	})
	if err != nil || next != victim.BaseOffset {
		t.Fatalf("read from start: next %d, %v", next, err)
	}
	sameEntries(t, got, f.m.entries[:slices.IndexFunc(f.m.entries, func(e Entry) bool { return e.BaseOffset == victim.BaseOffset })])
	// Later segments read fine.
	second := l.Segments()[1].BaseOffset
	i := slices.IndexFunc(f.m.entries, func(e Entry) bool { return e.BaseOffset == second })
	sameEntries(t, readAll(t, l, second), f.m.entries[i:])
	// Verify finds it.
	if ce, ok := isCorrupt(l.Verify()); !ok || ce.Offset != victim.BaseOffset {
		t.Fatalf("Verify: %v", l.Verify())
	}
	// TruncateTo below the damage works and removes it.
	if _, err := l.TruncateTo(victim.BaseOffset); err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(); err != nil {
		t.Fatalf("Verify after truncating the damage away: %v", err)
	}
}

// TestDamagedSealedSegmentWithoutSidecar: a sealed segment whose sidecar is
// gone and whose data is damaged is indexed up to the damage; reads past it
// report ErrCorrupt, the rest of the log still works.
func TestDamagedSealedSegmentWithoutSidecar(t *testing.T) {
	f := newCrashFixture(t)
	dir := copyDir(t, f.dir)
	seg := filepath.Join(dir, segmentName(1))
	must(t, os.Remove(sidecarPath(seg)))
	es := decodeFile(t, seg)
	victim := es[len(es)/2]
	b, err := os.ReadFile(seg)
	must(t, err)
	flipBit(t, seg, int64(indexOf(b, victim.Data)))

	l := openLog(t, dir, f.opts)
	if l.Repair() != nil || l.NextOffset() != f.m.next() || l.StartOffset() != 0 {
		t.Fatalf("repair %+v next %d start %d", l.Repair(), l.NextOffset(), l.StartOffset())
	}
	var got []Entry
	next, err := l.ReadEntries(0, 1<<30, 1<<62, func(e Entry) error {
		e.Data = slices.Clone(e.Data)
		got = append(got, e)
		return nil
	})
	if err != nil || next != victim.BaseOffset {
		t.Fatalf("read from start: next %d, %v", next, err)
	}
	sameEntries(t, got, f.m.entries[:slices.IndexFunc(f.m.entries, func(e Entry) bool { return e.BaseOffset == victim.BaseOffset })])
	for _, off := range []int64{victim.BaseOffset, victim.LastOffset + 1, es[len(es)-1].LastOffset} {
		if _, err := l.ReadEntries(off, 1, 1<<62, func(Entry) error { return nil }); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	second := l.Segments()[1].BaseOffset
	i := slices.IndexFunc(f.m.entries, func(e Entry) bool { return e.BaseOffset == second })
	sameEntries(t, readAll(t, l, second), f.m.entries[i:])
	if !errors.Is(l.Verify(), ErrCorrupt) {
		t.Fatal("Verify passed")
	}
	if _, err := os.Stat(sidecarPath(seg)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a sidecar was written for a damaged segment: %v", err)
	}
	// Retention can delete the damaged segment.
	if _, err := l.DeleteSegmentsBefore(second); err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(); err != nil {
		t.Fatal(err)
	}
}

func TestLeftoverTidwallFiles(t *testing.T) {
	f := newCrashFixture(t)
	tailID := idOf(t, f.tail)
	t.Run("END of the tail", func(t *testing.T) {
		// tidwall crashed in TruncateBack after writing the END file: Open
		// finishes the truncation.
		keep := f.tailFirst + 2
		l := f.openDamaged(t, keep, func(dir, tail string) {
			b, err := os.ReadFile(tail)
			must(t, err)
			must(t, os.WriteFile(tail+".END", b[:f.ends[1]], 0o640))
		})
		if l.Repair() != nil {
			t.Fatalf("Repair() = %+v", l.Repair())
		}
	})
	t.Run("END of a sealed segment", func(t *testing.T) {
		first := filepath.Join(f.dir, segmentName(1))
		es := decodeFile(t, first)
		b, err := os.ReadFile(first)
		must(t, err)
		end := int64(indexOf(b, es[2].Data) + len(es[2].Data))
		l := f.openDamaged(t, 3, func(dir, tail string) {
			must(t, os.WriteFile(filepath.Join(dir, segmentName(1)+".END"), b[:end], 0o640))
		})
		if len(l.Segments()) != 1 {
			t.Fatalf("segments: %+v", l.Segments())
		}
	})
	t.Run("START inside the tail", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(f.dir, f.tail))
		must(t, err)
		dir := copyDir(t, f.dir)
		must(t, os.WriteFile(filepath.Join(dir, segmentName(tailID+1)+".START"), b[f.ends[0]:], 0o640))
		l := openLog(t, dir, f.opts)
		m := model{entries: f.m.entries[f.tailFirst+1:]}
		checkAgainst(t, l, &m)
	})
	t.Run("TEMP files", func(t *testing.T) {
		l := f.openDamaged(t, len(f.m.entries), func(dir, tail string) {
			must(t, os.WriteFile(tail+".END.TEMP", []byte("half written"), 0o640))
			must(t, os.WriteFile(filepath.Join(dir, startFileName+tmpSuffix), []byte("half"), 0o640))
		})
		d, err := listDir(l.dir)
		must(t, err)
		if len(d.temps) != 0 {
			t.Fatalf("temp files left: %v", d.temps)
		}
	})
	t.Run("lost empty tail after a roll", func(t *testing.T) {
		// Power loss before the directory fsync that Append does after a
		// roll: the new, still empty segment file is gone.
		dir := t.TempDir()
		opts := f.opts
		l := openLog(t, dir, opts)
		must(t, l.Append(Entry{BaseOffset: 0, LastOffset: 0, Data: make([]byte, opts.SegmentBytes)}))
		segs := l.Segments()
		if len(segs) != 2 || segs[1].Bytes != 0 {
			t.Fatalf("segments %+v", segs)
		}
		must(t, l.Close())
		must(t, os.Remove(segs[1].Path))
		l = openLog(t, dir, opts)
		m := model{}
		m.entries = []Entry{{BaseOffset: 0, LastOffset: 0, Data: make([]byte, opts.SegmentBytes)}}
		checkAgainst(t, l, &m)
		es := m.gen(rand.New(rand.NewPCG(3, 3)), 5, 100, 0)
		must(t, l.Append(es...))
		m.appended(es)
		checkAgainst(t, l, &m)
		if l.modelMisses.Load() != 0 {
			t.Fatal("roll misprediction")
		}
	})
}

func indexOf(b, sub []byte) int { return bytes.Index(b, sub) }

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// framePositions returns where each tidwall frame of a segment file starts.
func framePositions(b []byte) []int {
	var pos []int
	for p := 0; p < len(b); {
		n, k := binary.Uvarint(b[p:])
		pos = append(pos, p)
		p += k + int(n)
	}
	return pos
}

// TestTidwallRefusesDamagedSegment: tidwall loads a sealed segment whole
// before truncating into it or from it, and refuses one whose framing is
// damaged. That refusal changes nothing, so the Log must report ErrCorrupt
// and stay usable (not broken), and cutting the damaged segment away must
// still work.
func TestTidwallRefusesDamagedSegment(t *testing.T) {
	f := newCrashFixture(t)
	dir := copyDir(t, f.dir)
	l := openLog(t, dir, f.opts)
	segs := l.Segments()
	must(t, l.Close())
	second := segs[1].Path
	b, err := os.ReadFile(second)
	must(t, err)
	es, _, _ := decodeAll(b)
	pos := framePositions(b)
	v := len(pos) - 2
	b[pos[v]], b[pos[v]+1] = 0xff, 0x7f // a length that runs past the end of the file
	must(t, os.WriteFile(second, b, 0o640))

	l = openLog(t, dir, f.opts) // the sidecar is valid: Open does not read the segment
	if l.Repair() != nil {
		t.Fatalf("Repair() = %+v", l.Repair())
	}
	if _, err := l.TruncateTo(es[1].BaseOffset); !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrBroken) {
		t.Fatalf("TruncateTo into the damaged segment: %v", err)
	}
	if _, err := l.DeleteSegmentsBefore(segs[1].BaseOffset); !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrBroken) {
		t.Fatalf("DeleteSegmentsBefore keeping the damaged segment: %v", err)
	}
	// Nothing changed and the log still works.
	if l.NextOffset() != f.m.next() || l.StartOffset() != 0 || len(l.Segments()) != len(segs) {
		t.Fatalf("next %d start %d segments %d", l.NextOffset(), l.StartOffset(), len(l.Segments()))
	}
	i := slices.IndexFunc(f.m.entries, func(e Entry) bool { return e.BaseOffset == segs[1].BaseOffset })
	var got []Entry
	_, err = l.ReadEntries(0, 1<<30, segs[1].BaseOffset, func(e Entry) error {
		e.Data = slices.Clone(e.Data)
		got = append(got, e)
		return nil
	})
	must(t, err)
	sameEntries(t, got, f.m.entries[:i])
	if !errors.Is(l.Verify(), ErrCorrupt) {
		t.Fatal("Verify passed")
	}
	next := l.NextOffset()
	must(t, l.Append(Entry{BaseOffset: next, LastOffset: next, Data: []byte("still works")}))
	// Cutting the damaged segment away works: tidwall only loads the kept one.
	if got, err := l.TruncateTo(segs[1].BaseOffset); err != nil || got != segs[1].BaseOffset {
		t.Fatalf("TruncateTo(%d) = %d, %v", segs[1].BaseOffset, got, err)
	}
	m := model{entries: f.m.entries[:i]}
	checkAgainst(t, l, &m)
	must(t, l.Verify())
}
