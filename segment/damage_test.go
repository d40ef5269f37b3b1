package segment

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// written builds a flushed log of several segments and returns the model.
func written(t *testing.T, dir string, opts Options) *model {
	t.Helper()
	l, err := Open(dir, opts)
	must(t, err)
	m := &model{}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 30 {
		appendN(t, l, m, rng, 2, 300, 0)
	}
	must(t, l.Close())
	return m
}

// damageTail changes the last segment file and returns its path and size
// before the change.
func damageTail(t *testing.T, l []SegmentInfo, fn func(b []byte) []byte) {
	t.Helper()
	p := l[len(l)-1].Path
	b, err := os.ReadFile(p)
	must(t, err)
	must(t, os.WriteFile(p, fn(b), 0o640))
}

// TestTailRepair: Open cuts a damaged tail after its last good frame and
// says what it cut; everything before is intact.
func TestTailRepair(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		damage       func(b []byte) []byte
		lost         int // entries lost from the end
	}{
		{"torn last frame", "torn frame", func(b []byte) []byte { return b[:len(b)-5] }, 1},
		{"torn length", "torn frame", func(b []byte) []byte { return append(b, 7, 0) }, 0},
		{"zero-filled pages", "zero-filled tail", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, 0},
		{"flipped payload bit", "checksum mismatch", func(b []byte) []byte { b[len(b)-3] ^= 0x10; return b }, 1},
		{"garbage length", "bad frame length", func(b []byte) []byte { return append(b, 0xff, 0xff, 0xff, 0xff, 1, 2, 3) }, 0},
		{"frame that parses but repeats offsets", "offset discontinuity", func(b []byte) []byte {
			return appendFrame(b, Entry{BaseOffset: 0, LastOffset: 0, Data: []byte("phantom")})
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := smallOpts(t)
			m := written(t, dir, opts)
			l := openLog(t, dir, opts)
			segs := l.Segments()
			must(t, l.Close())
			damageTail(t, segs, tc.damage)
			l = openLog(t, dir, opts)
			r := l.Repair()
			if r == nil || r.Reason != tc.reason {
				t.Fatalf("repair %+v, want reason %q", r, tc.reason)
			}
			m.entries = m.entries[:len(m.entries)-tc.lost]
			if r.FirstDroppedOffset != m.next() {
				t.Fatalf("repair says the log now ends at %d, model %d", r.FirstDroppedOffset, m.next())
			}
			checkAll(t, l, m)
			must(t, l.Verify())
			// The repaired log takes writes where it ends.
			appendN(t, l, m, rand.New(rand.NewPCG(9, 9)), 3, 100, 1)
			must(t, l.Close())
			l = openLog(t, dir, opts)
			if l.Repair() != nil {
				t.Fatalf("second Open repaired again: %+v", l.Repair())
			}
			checkAll(t, l, m)
		})
	}
}

// TestSealedDamage: a flipped bit in a sealed, flushed segment is not cut
// (it would drop durable entries): reads that reach it and Verify report
// it with its offset; reads before it work; TruncateTo below it removes it.
func TestSealedDamage(t *testing.T) {
	for _, sidecar := range []bool{true, false} {
		dir := t.TempDir()
		opts := smallOpts(t)
		m := written(t, dir, opts)
		l := openLog(t, dir, opts)
		segs := l.Segments()
		must(t, l.Close())
		victim := segs[1]
		b, err := os.ReadFile(victim.Path)
		must(t, err)
		b[len(b)/2] ^= 1
		must(t, os.WriteFile(victim.Path, b, 0o640))
		if !sidecar {
			must(t, os.Remove(sidecarPath(victim.Path)))
		}
		l = openLog(t, dir, opts)
		if l.Repair() != nil {
			t.Fatalf("sidecar=%v: Open cut a sealed segment: %+v", sidecar, l.Repair())
		}
		var ce *CorruptError
		if err := l.Verify(); !errors.As(err, &ce) || ce.Path != victim.Path {
			t.Fatalf("sidecar=%v: Verify: %v", sidecar, err)
		}
		// Reading from the start stops before the damage; reading at it fails.
		next, err := l.ReadEntries(0, math.MaxInt, math.MaxInt64, func(Entry) error { return nil })
		must(t, err)
		if next < victim.BaseOffset || next >= victim.NextOffset {
			t.Fatalf("sidecar=%v: read from 0 stopped at %d, damage is in [%d, %d)", sidecar, next, victim.BaseOffset, victim.NextOffset)
		}
		if _, err := l.ReadEntries(next, 1, math.MaxInt64, func(Entry) error { return nil }); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("sidecar=%v: read at the damage (%d): %v", sidecar, next, err)
		}
		// Entries past the damaged segment are still served.
		if _, err := l.ReadEntries(segs[2].BaseOffset, 1, math.MaxInt64, func(Entry) error { return nil }); err != nil {
			t.Fatalf("sidecar=%v: read after the damaged segment: %v", sidecar, err)
		}
		// A replay's TruncateTo at the damage heals the log.
		got, err := l.TruncateTo(next)
		must(t, err)
		m.truncate(next)
		if got != m.next() {
			t.Fatalf("sidecar=%v: TruncateTo(%d) = %d, want %d", sidecar, next, got, m.next())
		}
		checkAll(t, l, m)
		must(t, l.Verify())
		must(t, l.Close())
	}
}

// FuzzDecodeFrame: no input makes the decoder panic or accept a frame
// whose checksum does not match, and every encoded frame decodes.
func FuzzDecodeFrame(f *testing.F) {
	f.Add(appendFrame(nil, Entry{BaseOffset: 5, LastOffset: 9, MaxTimestamp: 7, Data: []byte("hello")}))
	f.Add(make([]byte, frameHeaderLen))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= 4 {
			if flen, reason := frameSize(b); reason == "" && flen <= int64(len(b)) {
				h, p, reason := decodeFrame(b[:flen])
				if reason == "" {
					again := appendFrame(nil, Entry{BaseOffset: h.base, LastOffset: h.last, MaxTimestamp: h.maxTS, Data: p})
					if string(again) != string(b[:flen]) {
						t.Fatalf("accepted frame does not re-encode to itself")
					}
				}
			}
		}
		e := Entry{BaseOffset: int64(len(b)), LastOffset: int64(len(b)) + 3, MaxTimestamp: -1, Data: b}
		h, p, reason := decodeFrame(appendFrame(nil, e))
		if reason != "" || h.base != e.BaseOffset || h.last != e.LastOffset || h.maxTS != e.MaxTimestamp || string(p) != string(b) {
			t.Fatalf("round trip: %q %+v", reason, h)
		}
	})
}

// FuzzOpenTail: whatever bytes follow a good tail, Open neither fails nor
// keeps a byte of them unless they are valid frames that continue the log.
func FuzzOpenTail(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 100))
	f.Add(appendFrame(nil, Entry{BaseOffset: 3, LastOffset: 3, Data: []byte("x")}))
	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := t.TempDir()
		l, err := Open(dir, Options{})
		must(t, err)
		must(t, l.Write(Entry{BaseOffset: 0, LastOffset: 2, Data: []byte("abc")}))
		path := l.Segments()[0].Path
		must(t, l.Close())
		fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		must(t, err)
		_, err = fh.Write(tail)
		must(t, err)
		must(t, fh.Close())
		l, err = Open(dir, Options{})
		must(t, err)
		defer l.Close()
		must(t, l.Verify())
		if l.NextOffset() < 3 {
			t.Fatalf("lost the good entry: next %d", l.NextOffset())
		}
		if l.NextOffset() > 3 && l.Repair() == nil && len(tail) == 0 {
			t.Fatal("offsets from nowhere")
		}
	})
}
