package segment

import (
	"fmt"
	"math"
	"os"
	"slices"
)

// TruncateTo removes every entry with LastOffset >= offset (an entry that
// straddles offset goes whole) and returns the new NextOffset: the
// LastOffset+1 of the last entry kept or, when none is kept, min(offset,
// the old StartOffset). An offset at or beyond NextOffset changes nothing.
//
// Later segment files are removed newest first and then the file holding
// the cut is shortened, so a crash at any point leaves a prefix of the log
// at least as long as the result. Like Write, the cut is durable after the
// next Flush (the journal records truncations so that a replay repeats
// them). It waits for reads in progress. A cut in damaged bytes returns
// ErrCorrupt and changes nothing, unless it is exactly where the damage
// starts.
func (l *Log) TruncateTo(offset int64) (next int64, err error) {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.usable(); err != nil {
		return 0, err
	}
	if offset < 0 {
		return 0, fmt.Errorf("%w: TruncateTo(%d)", ErrOffsetOutOfRange, offset)
	}
	if offset >= l.tailSeg().next {
		return l.tailSeg().next, nil
	}
	if offset <= l.StartOffset() {
		start := min(offset, l.StartOffset())
		return start, l.clear(start)
	}
	cut, err := l.findCut(offset)
	if err != nil {
		return 0, err
	}
	if cut.pos == 0 && cut.segIdx == 0 {
		return l.StartOffset(), l.clear(l.StartOffset())
	}
	if cut.pos == 0 {
		// The cut removes the whole segment: the one before becomes the tail.
		prev := l.segs[cut.segIdx-1]
		cut = cutPoint{segIdx: cut.segIdx - 1, pos: prev.size, base: prev.next, tsBefore: prev.maxTS}
	}
	return cut.base, l.cutAt(cut)
}

// cutPoint is the frame where TruncateTo cuts.
type cutPoint struct {
	segIdx   int
	pos      int64
	base     int64 // offset the frame starts at: the new NextOffset
	tsBefore int64 // largest MaxTimestamp of the segment's entries before it
}

// findCut finds the frame holding offset, StartOffset() < offset <
// NextOffset(). wmu must be held.
func (l *Log) findCut(offset int64) (cutPoint, error) {
	sp, ok, err := l.locate(offset, math.MaxInt64)
	if err != nil {
		return cutPoint{}, err
	}
	if !ok {
		return cutPoint{}, fmt.Errorf("segment: no entry holds offset %d", offset)
	}
	segIdx := slices.Index(l.segs, sp.seg)
	f, err := sp.seg.file()
	if err != nil {
		return cutPoint{}, fmt.Errorf("segment: %w", err)
	}
	c := getCursor(f, sp.seg.path)
	defer putCursor(c)
	pos, expect, ts := sp.pos, sp.offset, sp.tsMax
	for pos < sp.end {
		_, h, flen, reason, err := c.entry(pos, sp.end, expect)
		if err != nil {
			return cutPoint{}, err
		}
		if reason != "" {
			if expect == offset { // the damaged entry is the first to go
				return cutPoint{segIdx: segIdx, pos: pos, base: expect, tsBefore: ts}, nil
			}
			return cutPoint{}, &CorruptError{Path: sp.seg.path, Pos: pos, Offset: expect, Reason: reason}
		}
		if h.last >= offset {
			return cutPoint{segIdx: segIdx, pos: pos, base: h.base, tsBefore: ts}, nil
		}
		ts, pos, expect = max(ts, h.maxTS), pos+flen, h.last+1
	}
	if expect == offset && sp.end < sp.seg.size {
		return cutPoint{segIdx: segIdx, pos: pos, base: expect, tsBefore: ts}, nil
	}
	return cutPoint{}, &CorruptError{Path: sp.seg.path, Pos: pos, Offset: offset, Reason: "entry unreadable: damaged segment"}
}

// cutAt removes the segments after cut.segIdx and shortens that one to
// cut.pos, making it the tail. fmu and wmu must be held.
func (l *Log) cutAt(cut cutPoint) error {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	keep := l.segs[cut.segIdx]
	gone := l.segs[cut.segIdx+1:]
	// Sealed segments not flushed yet: their handles go, fsynced or not.
	l.dropUnflushed(func(s *seg) bool { return s == keep || slices.Contains(gone, s) })
	if err := l.wf.Close(); err != nil {
		return l.fail(err)
	}
	l.wf = nil
	for i := len(gone) - 1; i >= 0; i-- {
		s := gone[i]
		_ = s.closeFile()
		_ = os.Remove(sidecarPath(s.path))
		if err := os.Remove(s.path); err != nil {
			return l.fail(err)
		}
	}
	_ = os.Remove(sidecarPath(keep.path))
	wf, err := os.OpenFile(keep.path, os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		err = wf.Truncate(cut.pos)
	}
	if err != nil {
		return l.fail(fmt.Errorf("cut %s: %w", keep.path, err))
	}
	l.wf, l.tailDirty, l.dirDirty = wf, true, l.dirDirty || len(gone) > 0
	l.imu.Lock()
	defer l.imu.Unlock()
	l.segs = l.segs[:cut.segIdx+1]
	i := sortSearchPoints(keep.points, cut.pos)
	keep.points = keep.points[:i]
	keep.next, keep.maxTS, keep.size, keep.valid, keep.sealed = cut.base, cut.tsBefore, cut.pos, cut.pos, false
	return nil
}

// sortSearchPoints returns the number of points before byte pos.
func sortSearchPoints(pts []point, pos int64) int {
	i, _ := slices.BinarySearchFunc(pts, pos, func(p point, pos int64) int {
		switch {
		case p.pos < pos:
			return -1
		case p.pos > pos:
			return 1
		}
		return 0
	})
	return i
}

// dropUnflushed closes and forgets the pending fsyncs of segments that
// match. wmu must be held.
func (l *Log) dropUnflushed(match func(*seg) bool) {
	l.unflushed = slices.DeleteFunc(l.unflushed, func(u unflushed) bool {
		if match(u.s) {
			_ = u.f.Close()
			return true
		}
		return false
	})
}

// Reset removes every entry; the empty log then has StartOffset() ==
// NextOffset() == next, also after a crash and Open (it is durable when it
// returns). For a follower whose leader's log starts beyond its own end.
func (l *Log) Reset(next int64) error {
	if next < 0 {
		return fmt.Errorf("%w: Reset(%d)", ErrOffsetOutOfRange, next)
	}
	l.fmu.Lock()
	defer l.fmu.Unlock()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	return l.clear(next)
}

// clear empties the log so that it starts at next. fmu and wmu must be held.
func (l *Log) clear(next int64) error {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	l.dropUnflushed(func(*seg) bool { return true })
	if err := l.wf.Close(); err != nil {
		return l.fail(err)
	}
	l.wf = nil
	for _, s := range l.segs {
		_ = s.closeFile()
	}
	if err := l.clearFiles(next); err != nil {
		return l.fail(err)
	}
	s := newSeg(l.dir, next)
	wf, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return l.fail(err)
	}
	l.wf, l.tailDirty, l.dirDirty = wf, false, false
	l.imu.Lock()
	l.segs = []*seg{s}
	l.imu.Unlock()
	return nil
}

// DeleteSegmentsBefore deletes the sealed segments whose NextOffset <=
// offset (whole segments, oldest first, never the tail) and returns the
// bytes removed. Retention policy is the caller's. Removing the oldest
// files first keeps the log a contiguous suffix at every instant, so a
// crash midway leaves a valid log.
func (l *Log) DeleteSegmentsBefore(offset int64) (removed int64, err error) {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.usable(); err != nil {
		return 0, err
	}
	l.imu.RLock()
	n := 0
	for n < len(l.segs)-1 && l.segs[n].next <= offset {
		n++
	}
	gone := slices.Clone(l.segs[:n])
	l.imu.RUnlock()
	if n == 0 {
		return 0, nil
	}
	l.imu.Lock()
	l.segs = slices.Clone(l.segs[n:])
	l.imu.Unlock()
	l.rmu.Lock() // readers that found them finish first
	defer l.rmu.Unlock()
	l.dropUnflushed(func(s *seg) bool { return slices.Contains(gone, s) })
	for _, s := range gone {
		_ = s.closeFile()
		_ = os.Remove(sidecarPath(s.path))
		if err := os.Remove(s.path); err != nil {
			return removed, l.fail(err)
		}
		removed += s.size
	}
	l.dirDirty = true
	return removed, nil
}
