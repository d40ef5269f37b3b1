package partition

import (
	"errors"
	"fmt"
	"sync"

	"github.com/skeinlog/skein/journal"
	"github.com/skeinlog/skein/segment"
	"github.com/skeinlog/skein/wal"
)

// Journaler is where a JournalLog's writes become durable: a
// *journal.Journal or a *journal.Set, replayed before partitions open.
type Journaler interface {
	Attach(name string, seg *segment.Log) (*journal.Partition, error)
}

// JournalLog is a partition's log on the journal engine: segment files of
// its own, written without fsync, attached to a journal shared by many
// partitions whose group commit makes a write durable. Sync waits for the
// group that holds the last write. Errors are translated to the wal
// package's, which the partition knows.
type JournalLog struct {
	p *journal.Partition
	l *segment.Log
	// replayDamage is what the journal's replay found wrong with this
	// partition (records it had to drop); reported by Repair.
	replayDamage string

	mu   sync.Mutex
	last journal.Ticket
}

// OpenJournalLog opens the segment log in dir and attaches it to j under
// name (stable across restarts: replay finds the partition by it).
// replayDamage, if not empty, is what replay reported for the partition:
// Repair returns it, so the partition counts as damaged.
func OpenJournalLog(j Journaler, name, dir string, opts segment.Options, replayDamage string) (*JournalLog, error) {
	l, err := segment.Open(dir, opts)
	if err != nil {
		return nil, walErr(err)
	}
	p, err := j.Attach(name, l)
	if err != nil {
		_ = l.Close()
		return nil, walErr(err)
	}
	return &JournalLog{p: p, l: l, replayDamage: replayDamage}, nil
}

// walErr translates the segment and journal packages' errors into the wal
// package's.
func walErr(err error) error {
	var ce *segment.CorruptError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return &wal.CorruptError{Path: ce.Path, Pos: ce.Pos, Offset: ce.Offset, Reason: ce.Reason}
	case errors.Is(err, segment.ErrCorrupt):
		return fmt.Errorf("%w: %w", wal.ErrCorrupt, err)
	case errors.Is(err, segment.ErrOffsetOutOfRange):
		return fmt.Errorf("%w: %w", wal.ErrOffsetOutOfRange, err)
	case errors.Is(err, segment.ErrOutOfOrder):
		return fmt.Errorf("%w: %w", wal.ErrOutOfOrder, err)
	case errors.Is(err, segment.ErrClosed), errors.Is(err, journal.ErrClosed):
		return fmt.Errorf("%w: %w", wal.ErrClosed, err)
	case errors.Is(err, segment.ErrBroken), errors.Is(err, journal.ErrBroken):
		return fmt.Errorf("%w: %w", wal.ErrBroken, err)
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

// Write writes entries to the segments (readable at once) and to the
// journal's next group, and returns once that group is written to the
// journal file (Sync waits for its fsync). A group refused for want of
// space fails here, before the partition lets followers copy the entries:
// the partition can then cut them back (as on the wal engine, whose
// writes fail before they are shown) without a follower keeping them.
func (g *JournalLog) Write(entries ...wal.Entry) error {
	t, err := g.p.Write(segEntries(entries)...)
	if err == nil {
		err = t.Written()
	}
	if err != nil {
		return walErr(err)
	}
	g.mu.Lock()
	g.last = t
	g.mu.Unlock()
	return nil
}

// Sync returns once the journal group of the last Write is fsynced.
func (g *JournalLog) Sync() error {
	g.mu.Lock()
	t := g.last
	g.mu.Unlock()
	return walErr(t.Wait())
}

// Append is Write then Sync.
func (g *JournalLog) Append(entries ...wal.Entry) error {
	if err := g.Write(entries...); err != nil {
		return err
	}
	return g.Sync()
}

func (g *JournalLog) NextOffset() int64  { return g.l.NextOffset() }
func (g *JournalLog) StartOffset() int64 { return g.l.StartOffset() }
func (g *JournalLog) Size() int64        { return g.l.Size() }

func (g *JournalLog) ReadEntries(offset int64, maxBytes int, limit int64, fn func(wal.Entry) error) (int64, error) {
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

func (g *JournalLog) Read(dst []byte, offset int64, maxBytes int, limit int64) ([]byte, int64, error) {
	out, next, err := g.l.Read(dst, offset, maxBytes, limit)
	return out, next, walErr(err)
}

func (g *JournalLog) OffsetForTimestamp(ts int64) (int64, error) {
	o, err := g.l.OffsetForTimestamp(ts)
	return o, walErr(err)
}

// TruncateTo cuts the log and records the cut in the journal, so a replay
// never brings the cut records back.
func (g *JournalLog) TruncateTo(offset int64) (int64, error) {
	n, err := g.p.TruncateTo(offset)
	return n, walErr(err)
}

// Reset empties the log to start at next, recorded in the journal.
func (g *JournalLog) Reset(next int64) error { return walErr(g.p.Reset(next)) }

func (g *JournalLog) Segments() []wal.SegmentInfo {
	var out []wal.SegmentInfo
	for _, s := range g.l.Segments() {
		out = append(out, wal.SegmentInfo{Path: s.Path, BaseOffset: s.BaseOffset, NextOffset: s.NextOffset, MaxTimestamp: s.MaxTimestamp, Bytes: s.Bytes, Sealed: s.Sealed})
	}
	return out
}

// DeleteSegmentsBefore applies retention, recorded in the journal.
func (g *JournalLog) DeleteSegmentsBefore(offset int64) (int64, error) {
	n, err := g.p.DeleteSegmentsBefore(offset)
	return n, walErr(err)
}

// Verify checks every segment (see segment.Log.Verify).
func (g *JournalLog) Verify() error { return walErr(g.l.Verify()) }

// Repair reports what was cut from the log when it opened: a torn segment
// tail, or records the journal's replay had to drop.
func (g *JournalLog) Repair() *wal.RepairReport {
	r := g.l.Repair()
	switch {
	case r != nil:
		return &wal.RepairReport{Segment: r.Segment, DroppedBytes: r.DroppedBytes, FirstDroppedOffset: r.FirstDroppedOffset, Reason: r.Reason}
	case g.replayDamage != "":
		return &wal.RepairReport{Segment: "journal replay", FirstDroppedOffset: g.l.NextOffset(), Reason: g.replayDamage}
	}
	return nil
}

// Close flushes the segments, detaches them from the journal and closes
// them.
func (g *JournalLog) Close() error {
	err := g.p.Detach()
	if cerr := g.l.Close(); err == nil {
		err = cerr
	}
	return walErr(err)
}

var _ Log = (*JournalLog)(nil)
