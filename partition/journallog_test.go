package partition

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/skeinlog/skein/journal"
	"github.com/skeinlog/skein/segment"
	"github.com/skeinlog/skein/wal"
)

// journalLog runs a partition on the journal + segment engine: a segment
// log attached to a journal shared by every partition of the test, with
// errors and reports translated to the wal package's, which partition
// knows. It shows that the partition's behaviour holds on that engine
// before the broker is switched to it.
type journalLog struct {
	p *journal.Partition
	l *segment.Log

	mu   sync.Mutex
	last journal.Ticket
}

// openJournalKind returns an OpenLog for a test: one journal for the test,
// one attached segment log per partition directory.
func openJournalKind(t *testing.T) func(string) (Log, error) {
	j, _, err := journal.Open(filepath.Join(t.TempDir(), "journal"), journal.Options{UnsafeNoFsync: true, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Replay(func(name string) (*segment.Log, error) { return nil, fmt.Errorf("nothing to replay: %s", name) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return func(dir string) (Log, error) {
		l, err := segment.Open(dir, segment.Options{SegmentBytes: 4096})
		if err != nil {
			return nil, walErr(err)
		}
		p, err := j.Attach(dir, l)
		if err != nil {
			_ = l.Close()
			return nil, err
		}
		return &journalLog{p: p, l: l}, nil
	}
}

// walErr translates the segment package's errors into the wal package's.
func walErr(err error) error {
	var ce *segment.CorruptError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return &wal.CorruptError{Path: ce.Path, Pos: ce.Pos, Offset: ce.Offset, Reason: ce.Reason}
	case errors.Is(err, segment.ErrCorrupt):
		return fmt.Errorf("%w: %v", wal.ErrCorrupt, err)
	case errors.Is(err, segment.ErrOffsetOutOfRange):
		return fmt.Errorf("%w: %v", wal.ErrOffsetOutOfRange, err)
	case errors.Is(err, segment.ErrOutOfOrder):
		return fmt.Errorf("%w: %v", wal.ErrOutOfOrder, err)
	case errors.Is(err, segment.ErrClosed), errors.Is(err, journal.ErrClosed):
		return fmt.Errorf("%w: %v", wal.ErrClosed, err)
	case errors.Is(err, segment.ErrBroken), errors.Is(err, journal.ErrBroken):
		return fmt.Errorf("%w: %v", wal.ErrBroken, err)
	}
	return err
}

func segEntries(es []wal.Entry) []segment.Entry {
	out := make([]segment.Entry, len(es))
	for i, e := range es {
		out[i] = segment.Entry{BaseOffset: e.BaseOffset, LastOffset: e.LastOffset, MaxTimestamp: e.MaxTimestamp, Data: e.Data}
	}
	return out
}

func (g *journalLog) Write(entries ...wal.Entry) error {
	t, err := g.p.Write(segEntries(entries)...)
	if err != nil {
		return walErr(err)
	}
	g.mu.Lock()
	g.last = t
	g.mu.Unlock()
	return nil
}

func (g *journalLog) Sync() error {
	g.mu.Lock()
	t := g.last
	g.mu.Unlock()
	return walErr(t.Wait())
}

func (g *journalLog) Append(entries ...wal.Entry) error {
	if err := g.Write(entries...); err != nil {
		return err
	}
	return g.Sync()
}

func (g *journalLog) NextOffset() int64  { return g.l.NextOffset() }
func (g *journalLog) StartOffset() int64 { return g.l.StartOffset() }
func (g *journalLog) Size() int64        { return g.l.Size() }

func (g *journalLog) ReadEntries(offset int64, maxBytes int, limit int64, fn func(wal.Entry) error) (int64, error) {
	var fnErr error
	next, err := g.l.ReadEntries(offset, maxBytes, limit, func(e segment.Entry) error {
		fnErr = fn(wal.Entry{BaseOffset: e.BaseOffset, LastOffset: e.LastOffset, MaxTimestamp: e.MaxTimestamp, Data: e.Data})
		return fnErr
	})
	if err != nil && err == fnErr {
		return next, err
	}
	return next, walErr(err)
}

func (g *journalLog) Read(dst []byte, offset int64, maxBytes int, limit int64) ([]byte, int64, error) {
	out, next, err := g.l.Read(dst, offset, maxBytes, limit)
	return out, next, walErr(err)
}

func (g *journalLog) OffsetForTimestamp(ts int64) (int64, error) {
	o, err := g.l.OffsetForTimestamp(ts)
	return o, walErr(err)
}

func (g *journalLog) TruncateTo(offset int64) (int64, error) {
	n, err := g.p.TruncateTo(offset)
	return n, walErr(err)
}

func (g *journalLog) Reset(next int64) error { return walErr(g.p.Reset(next)) }

func (g *journalLog) Segments() []wal.SegmentInfo {
	var out []wal.SegmentInfo
	for _, s := range g.l.Segments() {
		out = append(out, wal.SegmentInfo{Path: s.Path, BaseOffset: s.BaseOffset, NextOffset: s.NextOffset, MaxTimestamp: s.MaxTimestamp, Bytes: s.Bytes, Sealed: s.Sealed})
	}
	return out
}

func (g *journalLog) DeleteSegmentsBefore(offset int64) (int64, error) {
	n, err := g.p.DeleteSegmentsBefore(offset)
	return n, walErr(err)
}

func (g *journalLog) Verify() error { return walErr(g.l.Verify()) }

func (g *journalLog) Repair() *wal.RepairReport {
	r := g.l.Repair()
	if r == nil {
		return nil
	}
	return &wal.RepairReport{Segment: r.Segment, DroppedBytes: r.DroppedBytes, FirstDroppedOffset: r.FirstDroppedOffset, Reason: r.Reason}
}

func (g *journalLog) Close() error {
	err := g.p.Detach()
	if cerr := g.l.Close(); err == nil {
		err = cerr
	}
	return walErr(err)
}

var _ Log = (*journalLog)(nil)
