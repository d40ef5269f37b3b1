package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"testing"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func smallOpts(t testing.TB) Options {
	return Options{SegmentBytes: 2048, IndexIntervalBytes: 256,
		Logger: slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
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

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// payload is deterministic content for an entry.
func payload(base int64, gen, size int) []byte {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(base))
	binary.LittleEndian.PutUint64(seed[8:], uint64(gen))
	b := make([]byte, size)
	_, _ = rand.NewChaCha8(seed).Read(b)
	return b
}

// model is the reference: the entries the log should hold.
type model struct {
	entries []Entry
	start   int64
}

func (m *model) next() int64 {
	if len(m.entries) == 0 {
		return m.start
	}
	return m.entries[len(m.entries)-1].LastOffset + 1
}

func (m *model) first() int64 {
	if len(m.entries) == 0 {
		return m.start
	}
	return m.entries[0].BaseOffset
}

// truncate applies TruncateTo(offset) to the model.
func (m *model) truncate(offset int64) int64 {
	if offset >= m.next() {
		return m.next()
	}
	i := 0
	for i < len(m.entries) && m.entries[i].LastOffset < offset {
		i++
	}
	if i == 0 {
		m.start = min(offset, m.first())
		m.entries = nil
		return m.start
	}
	m.entries = m.entries[:i]
	return m.next()
}

// offsetForTimestamp is the running-maximum rule.
func (m *model) offsetForTimestamp(ts int64) int64 {
	run := int64(math.MinInt64)
	for _, e := range m.entries {
		if run = max(run, e.MaxTimestamp); run >= ts {
			return e.BaseOffset
		}
	}
	return m.next()
}

// checkAll reads the whole log and compares it with the model.
func checkAll(t testing.TB, l *Log, m *model) {
	t.Helper()
	if l.NextOffset() != m.next() || l.StartOffset() != m.first() {
		t.Fatalf("log holds [%d, %d), model [%d, %d)", l.StartOffset(), l.NextOffset(), m.first(), m.next())
	}
	i := 0
	next, err := l.ReadEntries(m.first(), math.MaxInt, math.MaxInt64, func(e Entry) error {
		if i >= len(m.entries) {
			return errors.New("more entries than the model")
		}
		w := m.entries[i]
		if e.BaseOffset != w.BaseOffset || e.LastOffset != w.LastOffset || e.MaxTimestamp != w.MaxTimestamp || !bytes.Equal(e.Data, w.Data) {
			t.Fatalf("entry %d: got [%d, %d] ts %d (%d bytes), want [%d, %d] ts %d (%d bytes)", i,
				e.BaseOffset, e.LastOffset, e.MaxTimestamp, len(e.Data), w.BaseOffset, w.LastOffset, w.MaxTimestamp, len(w.Data))
		}
		i++
		return nil
	})
	must(t, err)
	if i != len(m.entries) || next != m.next() {
		t.Fatalf("read %d entries up to %d, model has %d up to %d", i, next, len(m.entries), m.next())
	}
}

// appendN writes n random entries (1..4 offsets, up to maxSize bytes) in
// one Write and adds them to the model.
func appendN(t testing.TB, l *Log, m *model, rng *rand.Rand, n, maxSize, gen int) {
	t.Helper()
	es := make([]Entry, n)
	next := m.next()
	for i := range es {
		span := rng.Int64N(4)
		es[i] = Entry{BaseOffset: next, LastOffset: next + span, MaxTimestamp: rng.Int64N(1000), Data: payload(next, gen, rng.IntN(maxSize)+1)}
		next += span + 1
	}
	must(t, l.Write(es...))
	m.entries = append(m.entries, es...)
}

// crash drops l as a killed process would: handles closed, nothing
// flushed; the files stay as the page cache has them.
func crash(l *Log) {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	_ = l.closeFiles()
	l.closed = true
}
