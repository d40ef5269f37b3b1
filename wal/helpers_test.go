package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// tWriter routes a logger into t.Log (STYLE H12).
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// smallOpts are options for tests: small segments and index intervals so
// that a few hundred entries span many segments and points.
func smallOpts(t testing.TB) Options {
	return Options{SegmentBytes: 2048, IndexIntervalBytes: 256, UnsafeNoFsync: true, Logger: testLogger(t)}
}

func openLog(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// payload is deterministic content for an entry, so tests can check what
// they read without keeping everything.
func payload(base int64, gen, size int) []byte {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(base))
	binary.LittleEndian.PutUint64(seed[8:], uint64(gen))
	b := make([]byte, size)
	_, _ = rand.NewChaCha8(seed).Read(b)
	return b
}

// model is the naive reference: the entries the log should hold.
type model struct {
	entries []Entry
	start   int64 // StartOffset when empty
}

func (m *model) next() int64 {
	if len(m.entries) == 0 {
		return m.start
	}
	return m.entries[len(m.entries)-1].LastOffset + 1
}

func (m *model) startOffset() int64 {
	if len(m.entries) == 0 {
		return m.start
	}
	return m.entries[0].BaseOffset
}

// gen makes n contiguous entries starting at m.next() with random record
// counts, timestamps and payload sizes up to maxSize.
func (m *model) gen(r *rand.Rand, n, maxSize, gen int) []Entry {
	next := m.next()
	out := make([]Entry, n)
	for i := range out {
		cnt := int64(1 + r.IntN(5))
		out[i] = Entry{
			BaseOffset:   next,
			LastOffset:   next + cnt - 1,
			MaxTimestamp: 1_700_000_000_000 + r.Int64N(100_000),
			Data:         payload(next, gen, r.IntN(maxSize+1)),
		}
		next += cnt
	}
	return out
}

func (m *model) appended(es []Entry) {
	for _, e := range es {
		e.Data = slices.Clone(e.Data)
		m.entries = append(m.entries, e)
	}
}

// truncate mirrors TruncateTo.
func (m *model) truncate(offset int64) int64 {
	if offset >= m.next() {
		return m.next()
	}
	start := m.startOffset()
	i := 0
	for i < len(m.entries) && m.entries[i].LastOffset < offset {
		i++
	}
	m.entries = m.entries[:i]
	if i == 0 {
		m.start = min(offset, start)
	}
	return m.next()
}

// readAll reads every entry from offset to the end, copying them.
func readAll(t testing.TB, l *Log, offset int64) []Entry {
	t.Helper()
	var out []Entry
	next, err := l.ReadEntries(offset, 1<<40, 1<<62, func(e Entry) error {
		e.Data = slices.Clone(e.Data)
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatalf("ReadEntries(%d): %v", offset, err)
	}
	if want := l.NextOffset(); next != want && !(len(out) == 0 && next == offset) {
		t.Fatalf("ReadEntries(%d) next = %d, want %d", offset, next, want)
	}
	return out
}

func sameEntries(t testing.TB, got, want []Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d (got %s, want %s)", len(got), len(want), span(got), span(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.BaseOffset != w.BaseOffset || g.LastOffset != w.LastOffset || g.MaxTimestamp != w.MaxTimestamp || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("entry %d: got [%d,%d] ts %d %d bytes, want [%d,%d] ts %d %d bytes (data equal: %v)", i,
				g.BaseOffset, g.LastOffset, g.MaxTimestamp, len(g.Data), w.BaseOffset, w.LastOffset, w.MaxTimestamp, len(w.Data), bytes.Equal(g.Data, w.Data))
		}
	}
}

func span(es []Entry) string {
	if len(es) == 0 {
		return "[]"
	}
	return fmt.Sprintf("[%d..%d]", es[0].BaseOffset, es[len(es)-1].LastOffset)
}

// checkAgainst checks every observable of l against m.
func checkAgainst(t testing.TB, l *Log, m *model) {
	t.Helper()
	if got, want := l.NextOffset(), m.next(); got != want {
		t.Fatalf("NextOffset = %d, want %d", got, want)
	}
	if got, want := l.StartOffset(), m.startOffset(); got != want {
		t.Fatalf("StartOffset = %d, want %d", got, want)
	}
	sameEntries(t, readAll(t, l, l.StartOffset()), m.entries)
	checkFiles(t, l)
}

// checkFiles checks Segments() against the files tidwall wrote: names,
// sizes, and each file's frames decoded independently of the index.
func checkFiles(t testing.TB, l *Log) {
	t.Helper()
	segs := l.Segments()
	d, err := listDir(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.segments) != len(segs) {
		t.Fatalf("%d segment files, Segments() has %d", len(d.segments), len(segs))
	}
	var total int64
	for i, s := range segs {
		if want := filepath.Join(l.dir, segmentName(d.segments[i])); s.Path != want {
			t.Fatalf("segment %d path %s, file %s", i, s.Path, want)
		}
		if s.Bytes != d.sizes[d.segments[i]] {
			t.Fatalf("segment %s: Segments() says %d bytes, file has %d", s.Path, s.Bytes, d.sizes[d.segments[i]])
		}
		if s.Sealed != (i < len(segs)-1) {
			t.Fatalf("segment %s: Sealed = %v", s.Path, s.Sealed)
		}
		total += s.Bytes
		es := decodeFile(t, s.Path)
		if len(es) == 0 {
			if s.BaseOffset != s.NextOffset || s.MaxTimestamp != math64Min {
				t.Fatalf("empty segment %s: %+v", s.Path, s)
			}
			continue
		}
		maxTS := int64(math64Min)
		for _, e := range es {
			maxTS = max(maxTS, e.MaxTimestamp)
		}
		if s.BaseOffset != es[0].BaseOffset || s.NextOffset != es[len(es)-1].LastOffset+1 || s.MaxTimestamp != maxTS {
			t.Fatalf("segment %s: Segments() says %+v, file holds [%d, %d) max ts %d", s.Path, s, es[0].BaseOffset, es[len(es)-1].LastOffset+1, maxTS)
		}
		if i > 0 && segs[i-1].NextOffset != s.BaseOffset {
			t.Fatalf("segment %s starts at %d, previous ends at %d", s.Path, s.BaseOffset, segs[i-1].NextOffset)
		}
	}
	if l.Size() != total {
		t.Fatalf("Size() = %d, segments total %d", l.Size(), total)
	}
}

const math64Min = -1 << 63

// decodeFile decodes a segment file on its own: tidwall frames, then ours.
func decodeFile(t testing.TB, path string) []Entry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	es, rest, reason := decodeAll(b)
	if reason != "" {
		t.Fatalf("%s: %s with %d bytes left", path, reason, len(rest))
	}
	return es
}

// decodeAll decodes back-to-back tidwall frames holding our frames, as far
// as they are good.
func decodeAll(b []byte) (es []Entry, rest []byte, reason string) {
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return es, b, "torn frame"
		}
		h, p, why := decodeFrame(b[k : k+int(n)])
		if why != "" {
			return es, b, why
		}
		es = append(es, Entry{BaseOffset: h.base, LastOffset: h.last, MaxTimestamp: h.maxTS, Data: p})
		b = b[k+int(n):]
	}
	return es, nil, ""
}

// copyDir copies a closed log's directory, for mutating a copy.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	des, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		in, err := os.Open(filepath.Join(src, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func isCorrupt(err error) (*CorruptError, bool) {
	var ce *CorruptError
	return ce, errors.As(err, &ce) && errors.Is(err, ErrCorrupt)
}
