package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"

	twal "github.com/tidwall/wal"
)

// TruncateTo removes every entry with LastOffset >= offset; an entry that
// straddles offset is removed whole. It returns the new NextOffset: the
// LastOffset+1 of the last entry kept, or, when no entry is kept,
// min(offset, the old StartOffset) (so TruncateTo on an empty log can move
// its end down). An offset at or beyond NextOffset changes nothing.
//
// It uses tidwall's TruncateBack, which rewrites the segment that keeps the
// last entry (a sealed one, if the cut is in or at the start of a sealed
// segment: that segment becomes the tail again), then fsyncs the directory.
// Until it is done, readers see the log as it was (reading the old files
// through open handles); they are excluded only while the handles are
// swapped at the end.
//
// A cut inside a known-damaged sealed segment returns ErrCorrupt and changes
// nothing, unless the cut is exactly at the first damaged entry (then the
// damage is cut away). tidwall loads the segment it keeps whole and refuses
// one whose framing is damaged: that also returns ErrCorrupt and changes
// nothing. Any other failure breaks the Log.
func (l *Log) TruncateTo(offset int64) (next int64, err error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.usable(); err != nil {
		return 0, err
	}
	start, end := l.segs[0].base, l.segs[len(l.segs)-1].next
	if offset >= end {
		return end, nil
	}
	if offset <= start {
		next = min(offset, start)
		return next, l.clear(next)
	}
	cut, err := l.findEntry(offset)
	if err != nil {
		return end, err
	}
	k := cut.segIdx
	if cut.id == l.segs[k].id {
		if k == 0 {
			return start, l.clear(start) // the cut entry is the first one
		}
		k-- // the cut entry opens its segment: the previous one is kept whole
	}
	keep := l.segs[k]
	if k != cut.segIdx && keep.valid < keep.size {
		return end, &CorruptError{Path: keep.path, Pos: keep.valid, Offset: offset, Reason: "cannot truncate into a damaged segment"}
	}
	affected := append([]*segment(nil), l.segs[k:]...)
	if err := prepareRewrite(affected); err != nil {
		return end, err
	}
	if err := l.tidwallDo(func() error { return l.tw.TruncateBack(cut.id - 1) }); err != nil {
		return end, fmt.Errorf("truncate to offset %d: %w", offset, err)
	}
	err = l.finishRewrite(affected, func() {
		if k == cut.segIdx {
			keep.count = cut.id - keep.id
			keep.next = cut.base
			keep.size, keep.valid = cut.pos, cut.pos
			keep.maxTS = cut.tsBefore
			n := 0
			for n < len(keep.points) && keep.points[n].id < cut.id {
				n++
			}
			keep.points = keep.points[:n]
		}
		keep.sealed = false
		l.segs = l.segs[:k+1]
	})
	if err != nil {
		return 0, err
	}
	if fi, err := os.Stat(keep.path); err != nil || fi.Size() != keep.size {
		return 0, l.fail(fmt.Errorf("truncate to offset %d: %s does not have the expected %d bytes (%v)", offset, keep.path, keep.size, err))
	}
	return cut.base, nil
}

// Reset removes every entry; the empty log then has StartOffset() ==
// NextOffset() == next, also after Close and Open. For a follower whose
// leader's log starts beyond its own end.
func (l *Log) Reset(next int64) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if next < 0 {
		return fmt.Errorf("%w: reset to %d", ErrOffsetOutOfRange, next)
	}
	return l.clear(next)
}

// clear empties the log so that it starts at next. wmu must be held.
func (l *Log) clear(next int64) error {
	// Record the start first: while entries exist the file is ignored, so
	// a crash at any later point leaves a consistent log.
	if err := writeStartFile(l.dir, next); err != nil {
		return err
	}
	affected := append([]*segment(nil), l.segs...)
	if err := prepareRewrite(affected); err != nil {
		return err
	}
	first := l.segs[0]
	if err := l.tidwallDo(func() error { return l.tw.TruncateBack(first.id - 1) }); err != nil {
		return fmt.Errorf("reset to offset %d: %w", next, err)
	}
	return l.finishRewrite(affected, func() {
		first.base, first.next, first.maxTS = next, next, math.MinInt64
		first.count, first.size, first.valid, first.points, first.sealed = 0, 0, 0, nil, false
		l.segs = []*segment{first}
	})
}

// DeleteSegmentsBefore deletes the sealed segments whose NextOffset <=
// offset (whole segments, oldest first, never the tail) and returns the
// bytes removed. The retention policy is the caller's.
//
// It uses tidwall's TruncateFront to the first entry of the first kept
// segment, which copies that segment to a new file (read, write, fsync,
// rename): its cost is that of rewriting one segment (about 57 ms for
// 16 MiB on the development machine). The start offset is recorded first,
// so an emptied log keeps its NextOffset. If tidwall refuses because the
// kept segment's framing is damaged, it returns ErrCorrupt and changes
// nothing; any other failure breaks the Log.
func (l *Log) DeleteSegmentsBefore(offset int64) (removedBytes int64, err error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.usable(); err != nil {
		return 0, err
	}
	n := 0
	for n < len(l.segs)-1 && l.segs[n].next <= offset {
		n++
	}
	if n == 0 {
		return 0, nil
	}
	keep := l.segs[n]
	if err := writeStartFile(l.dir, keep.base); err != nil {
		return 0, err
	}
	affected := append([]*segment(nil), l.segs[:n+1]...)
	if err := prepareRewrite(affected[:n]); err != nil {
		return 0, err
	}
	if _, err := keep.file(); err != nil {
		return 0, fmt.Errorf("wal: %w", err)
	}
	if err := l.tidwallDo(func() error { return l.tw.TruncateFront(keep.id) }); err != nil {
		return 0, fmt.Errorf("delete segments before offset %d: %w", offset, err)
	}
	err = l.finishRewrite(affected, func() { l.segs = append([]*segment(nil), l.segs[n:]...) })
	if err != nil {
		return 0, err
	}
	for _, s := range affected[:n] {
		removedBytes += s.size
	}
	return removedBytes, nil
}

// prepareRewrite gets the segments ready for tidwall to rewrite or remove
// their files: it opens their read handles, so that readers that already
// found them keep reading the old files while the paths change, and it
// deletes their sidecars (an index of the old contents).
func prepareRewrite(segs []*segment) error {
	for _, s := range segs {
		if _, err := s.file(); err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		if err := os.Remove(sidecarPath(s.path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("wal: %w", err)
		}
	}
	return nil
}

// tidwallDo runs a tidwall truncation. If it fails, the Log breaks,
// unless tidwall refused before changing anything (it still holds the same
// entries and does not report itself corrupt; tidwall loads a sealed
// segment whole first, and refuses one whose framing is damaged): then the
// error is returned and the Log stays usable. wmu must be held.
func (l *Log) tidwallDo(op func() error) error {
	first, err1 := l.tw.FirstIndex()
	last, err2 := l.tw.LastIndex()
	if err := errors.Join(err1, err2); err != nil {
		return l.fail(err)
	}
	err := op()
	if err == nil {
		return nil
	}
	f, err1 := l.tw.FirstIndex()
	la, err2 := l.tw.LastIndex()
	if err1 != nil || err2 != nil || f != first || la != last {
		return l.fail(err)
	}
	if errors.Is(err, twal.ErrCorrupt) {
		return fmt.Errorf("%w: %s: tidwall refused a damaged segment: %w", ErrCorrupt, l.dir, err)
	}
	return fmt.Errorf("wal: %w", err)
}

// finishRewrite completes a truncation after tidwall's part: it makes
// tidwall's renames and removals durable, applies update to the index
// (under imu), then drops the read handles of the old files once no reader
// uses them. Until update runs, readers see the old index and read the old
// files through handles opened by prepareRewrite. wmu must be held.
func (l *Log) finishRewrite(segs []*segment, update func()) error {
	if err := syncDir(l.dir); err != nil {
		return l.fail(err)
	}
	l.imu.Lock()
	update()
	l.imu.Unlock()
	l.rmu.Lock()
	defer l.rmu.Unlock()
	for _, s := range segs {
		_ = s.closeFile()
	}
	return nil
}

// cutPoint is the entry that contains an offset: where TruncateTo cuts.
type cutPoint struct {
	segIdx   int
	pos      int64
	id       uint64
	base     int64
	tsBefore int64 // largest MaxTimestamp of the segment's entries before it
}

// findEntry finds the entry that contains offset, StartOffset() < offset <
// NextOffset(). wmu must be held.
func (l *Log) findEntry(offset int64) (cutPoint, error) {
	sp, ok, err := l.locate(offset, math.MaxInt64)
	if err != nil {
		return cutPoint{}, err
	}
	if !ok {
		return cutPoint{}, fmt.Errorf("wal: no entry contains offset %d", offset)
	}
	segIdx := 0
	for l.segs[segIdx] != sp.seg {
		segIdx++
	}
	f, err := sp.seg.file()
	if err != nil {
		return cutPoint{}, fmt.Errorf("wal: %w", err)
	}
	c := getCursor()
	defer putCursor(c)
	c.reset(f, sp.seg.path)
	pos, id, expect, ts := sp.pos, sp.id, sp.offset, sp.tsMax
	for pos < sp.end {
		_, h, flen, reason, err := c.entry(pos, sp.end, expect)
		if err != nil {
			return cutPoint{}, err
		}
		if reason != "" {
			if expect == offset {
				// The damaged entry is the first to go: cut there.
				return cutPoint{segIdx: segIdx, pos: pos, id: id, base: expect, tsBefore: ts}, nil
			}
			return cutPoint{}, &CorruptError{Path: sp.seg.path, Pos: pos, Offset: expect, Reason: reason}
		}
		if h.last >= offset {
			return cutPoint{segIdx: segIdx, pos: pos, id: id, base: h.base, tsBefore: ts}, nil
		}
		ts = max(ts, h.maxTS)
		pos += flen
		id++
		expect = h.last + 1
	}
	if expect == offset && sp.end < sp.seg.size {
		// The cut is where the damage of a damaged segment starts.
		return cutPoint{segIdx: segIdx, pos: pos, id: id, base: expect, tsBefore: ts}, nil
	}
	return cutPoint{}, &CorruptError{Path: sp.seg.path, Pos: pos, Offset: offset, Reason: "entry unreadable: damaged segment"}
}
