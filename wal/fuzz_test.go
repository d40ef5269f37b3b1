package wal

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzFrame: the frame decoder never panics, and a frame it accepts
// re-encodes to the same bytes.
func FuzzFrame(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, frameHeaderLen))
	f.Add(appendFrame(nil, Entry{BaseOffset: 7, LastOffset: 9, MaxTimestamp: -5, Data: []byte("payload")}))
	f.Add(appendFrame(nil, Entry{BaseOffset: math.MaxInt64 - 1, LastOffset: math.MaxInt64 - 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, p, reason := decodeFrame(b)
		if reason != "" {
			return
		}
		if h.base < 0 || h.last < h.base || h.last == math.MaxInt64 {
			t.Fatalf("accepted bad offsets %+v", h)
		}
		again := appendFrame(nil, Entry{BaseOffset: h.base, LastOffset: h.last, MaxTimestamp: h.maxTS, Data: p})
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded frame differs")
		}
	})
}

// FuzzSidecar: the sidecar decoder never panics, and a sidecar it accepts
// re-encodes to the same bytes.
func FuzzSidecar(f *testing.F) {
	s := &segment{id: 5, base: 100, next: 130, maxTS: 9, count: 3, size: 400, points: []point{
		{offset: 100, pos: 0, id: 5, tsBefore: math.MinInt64}, {offset: 120, pos: 200, id: 6, tsBefore: 9}}}
	good := encodeSidecar(s)
	f.Add(good, int64(400), uint64(3))
	f.Add(good[:len(good)-1], int64(400), uint64(3))
	f.Add([]byte("SKIX"), int64(0), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, size int64, count uint64) {
		s := &segment{id: 5}
		if err := decodeSidecar(s, b, size, count); err != nil {
			return
		}
		if !bytes.Equal(encodeSidecar(s), b) {
			t.Fatal("re-encoded sidecar differs")
		}
	})
}

// FuzzOpenTail appends arbitrary bytes to a valid log's tail segment and
// opens it: Open never fails or panics, never returns an entry that was not
// written (an entry past the original end must come from the fuzzed bytes,
// whole and checksummed), keeps every entry before the damage, reports what
// it dropped, and leaves a log that verifies and takes appends.
func FuzzOpenTail(f *testing.F) {
	tmpl := f.TempDir()
	opts := Options{SegmentBytes: 1024, IndexIntervalBytes: 128, UnsafeNoFsync: true}
	l, err := Open(tmpl, opts)
	if err != nil {
		f.Fatal(err)
	}
	var m model
	r := rand.New(rand.NewPCG(4, 4))
	for len(l.Segments()) < 2 || l.Segments()[1].Bytes < 200 {
		es := m.gen(r, 1, 120, 0)
		if err := l.Append(es...); err != nil {
			f.Fatal(err)
		}
		m.appended(es)
	}
	tail := filepath.Base(l.Segments()[len(l.Segments())-1].Path)
	if err := l.Close(); err != nil {
		f.Fatal(err)
	}
	orig := m.next()

	frame := func(e Entry) []byte {
		fr := appendFrame(nil, e)
		return append(binary.AppendUvarint(nil, uint64(len(fr))), fr...)
	}
	contiguous := frame(Entry{BaseOffset: orig, LastOffset: orig + 2, MaxTimestamp: 3, Data: []byte("legit")})
	f.Add([]byte{})
	f.Add(make([]byte, 4096))
	f.Add(contiguous)
	f.Add(contiguous[:len(contiguous)-2])
	f.Add(append(slices.Clone(contiguous), 0, 0, 0))
	f.Add(frame(Entry{BaseOffset: orig + 1, LastOffset: orig + 1}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})

	f.Fuzz(func(t *testing.T, junk []byte) {
		dir := copyDir(t, tmpl)
		appendBytes(t, filepath.Join(dir, tail), junk)
		l, err := Open(dir, opts)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer l.Close()
		next := l.NextOffset()
		if next < orig {
			t.Fatalf("lost entries: next %d < %d", next, orig)
		}
		all := readAll(t, l, 0)
		sameEntries(t, all[:len(m.entries)], m.entries)
		for _, e := range all[len(m.entries):] {
			fr := appendFrame(nil, e)
			if !bytes.Contains(junk, fr) {
				t.Fatalf("entry [%d,%d] was never written", e.BaseOffset, e.LastOffset)
			}
		}
		kept := int64(0)
		for _, e := range all[len(m.entries):] {
			kept += int64(len(frame(e)))
		}
		switch rep := l.Repair(); {
		case kept == int64(len(junk)):
			if rep != nil {
				t.Fatalf("nothing dropped but Repair() = %+v", rep)
			}
		case rep == nil || rep.DroppedBytes != int64(len(junk))-kept:
			t.Fatalf("dropped %d bytes, Repair() = %+v", int64(len(junk))-kept, rep)
		}
		if err := l.Verify(); err != nil {
			t.Fatal(err)
		}
		if err := l.Append(Entry{BaseOffset: next, LastOffset: next, Data: []byte("after")}); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, l, next); len(got) != 1 || string(got[0].Data) != "after" {
			t.Fatalf("append after repair: %+v", got)
		}
		if _, err := os.Stat(filepath.Join(dir, tail)); err != nil {
			t.Fatal(err)
		}
	})
}
