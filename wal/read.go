package wal

import (
	"fmt"
	"math"
	"sort"
)

// spot is where a read starts: a snapshot, taken under imu, of an index
// point and of its segment's bounds.
type spot struct {
	seg    *segment
	pos    int64  // byte position of the frame to read first
	id     uint64 // its tidwall index
	offset int64  // its BaseOffset
	tsMax  int64  // largest MaxTimestamp in the segment before it
	end    int64  // bytes readers may read (valid prefix of a damaged segment)
	next   int64  // the segment's next offset
}

// locate finds the index point to start reading offset from. ok is false
// when there is nothing to read: offset >= min(limit, NextOffset()).
func (l *Log) locate(offset, limit int64) (sp spot, ok bool, err error) {
	l.imu.RLock()
	defer l.imu.RUnlock()
	segs := l.segs
	if start := segs[0].base; offset < start {
		return sp, false, fmt.Errorf("%w: offset %d is below the log start %d", ErrOffsetOutOfRange, offset, start)
	}
	if offset >= min(limit, segs[len(segs)-1].next) {
		return sp, false, nil
	}
	s := segs[sort.Search(len(segs), func(i int) bool { return segs[i].next > offset })]
	j := sort.Search(len(s.points), func(j int) bool { return s.points[j].offset > offset }) - 1
	if j < 0 {
		return sp, false, &CorruptError{Path: s.path, Pos: 0, Offset: offset, Reason: "entry unreadable: damaged segment"}
	}
	p := s.points[j]
	return spot{seg: s, pos: p.pos, id: p.id, offset: p.offset, tsMax: p.tsBefore, end: s.valid, next: s.next}, true, nil
}

// ReadEntries calls fn for consecutive entries, starting with the one that
// contains offset, and returns the offset after the last entry passed to fn
// (offset if none).
//
//   - It never passes an entry whose BaseOffset >= limit; an entry that
//     straddles limit is passed whole.
//   - It stops once the payload bytes passed reach maxBytes, so it passes
//     at most one entry beyond maxBytes, and always at least one entry when
//     one is available (also when maxBytes <= 0).
//   - offset < StartOffset() returns ErrOffsetOutOfRange; offset >=
//     min(limit, NextOffset()) passes nothing and returns no error.
//   - Every entry's checksum and offsets are verified. Damage returns a
//     *CorruptError (ErrCorrupt) with the offset and file, unless entries
//     were already passed: then the read stops before the damage without an
//     error, and a read from the returned offset reports it.
//   - If fn returns an error, ReadEntries returns it as is, with the offset
//     after the last entry fn accepted.
//
// Entry.Data aliases a read buffer: it is valid only during fn. fn runs
// while the Log is read-locked: it must not call the Log's writer methods
// (Append, TruncateTo, Reset, DeleteSegmentsBefore, Close), nor start
// another read on it, or it may deadlock. It is safe to call from many
// goroutines at once, and it never waits for an Append's write or fsync.
func (l *Log) ReadEntries(offset int64, maxBytes int, limit int64, fn func(Entry) error) (next int64, err error) {
	l.rmu.RLock()
	defer l.rmu.RUnlock()
	if err := l.usable(); err != nil {
		return offset, err
	}
	c := getCursor()
	defer putCursor(c)
	next = offset
	passed, bytes := 0, 0
	for {
		sp, ok, err := l.locate(next, limit)
		if err != nil || !ok {
			if passed > 0 && err != nil {
				err = nil // report the damage from the next read's start
			}
			return next, err
		}
		f, err := sp.seg.file()
		if err != nil {
			return next, fmt.Errorf("wal: %w", err)
		}
		c.reset(f, sp.seg.path)
		pos, expect := sp.pos, sp.offset
		for pos < sp.end {
			data, h, flen, reason, err := c.entry(pos, sp.end, expect)
			if err != nil {
				return next, err
			}
			if reason != "" {
				if passed > 0 {
					return next, nil
				}
				return next, &CorruptError{Path: sp.seg.path, Pos: pos, Offset: expect, Reason: reason}
			}
			pos += flen
			expect = h.last + 1
			if h.last < next {
				continue // before the entry that contains offset
			}
			if h.base >= limit {
				return next, nil
			}
			payload := data[frameHeaderLen:]
			if err := fn(Entry{BaseOffset: h.base, LastOffset: h.last, MaxTimestamp: h.maxTS, Data: payload}); err != nil {
				return next, err
			}
			next = h.last + 1
			passed++
			bytes += len(payload)
			if bytes >= maxBytes {
				return next, nil
			}
		}
		if expect != sp.next || next != sp.next {
			// Only a damaged segment ends its readable bytes early.
			if passed > 0 {
				return next, nil
			}
			return next, &CorruptError{Path: sp.seg.path, Pos: pos, Offset: max(next, expect), Reason: "entry unreadable: damaged segment"}
		}
	}
}

// Read is ReadEntries that appends the entries' payloads back to back to
// dst and returns the extended slice.
func (l *Log) Read(dst []byte, offset int64, maxBytes int, limit int64) (out []byte, next int64, err error) {
	next, err = l.ReadEntries(offset, maxBytes, limit, func(e Entry) error {
		dst = append(dst, e.Data...)
		return nil
	})
	return dst, next, err
}

// OffsetForTimestamp returns the BaseOffset of the first entry whose
// MaxTimestamp >= ts, or NextOffset() if there is none. Entries' max
// timestamps need not increase: like Kafka's time index it works on the
// running maximum, so it returns the first entry at which the running
// maximum reaches ts. It reads at most one index interval of one segment.
func (l *Log) OffsetForTimestamp(ts int64) (int64, error) {
	l.rmu.RLock()
	defer l.rmu.RUnlock()
	if err := l.usable(); err != nil {
		return 0, err
	}
	sp, stop, ok := l.locateTS(ts)
	if !ok {
		return l.NextOffset(), nil
	}
	f, err := sp.seg.file()
	if err != nil {
		return 0, fmt.Errorf("wal: %w", err)
	}
	c := getCursor()
	defer putCursor(c)
	c.reset(f, sp.seg.path)
	pos, expect := sp.pos, sp.offset
	for pos < stop {
		_, h, flen, reason, err := c.entry(pos, sp.end, expect)
		if err != nil {
			return 0, err
		}
		if reason != "" {
			return 0, &CorruptError{Path: sp.seg.path, Pos: pos, Offset: expect, Reason: reason}
		}
		if h.maxTS >= ts {
			return h.base, nil
		}
		pos += flen
		expect = h.last + 1
	}
	return 0, &CorruptError{Path: sp.seg.path, Pos: pos, Offset: expect, Reason: "time index does not match the segment"}
}

// locateTS finds the first segment whose max timestamp reaches ts and, in
// it, the index interval [sp.pos, stop) that holds the first entry that
// reaches ts.
func (l *Log) locateTS(ts int64) (sp spot, stop int64, ok bool) {
	l.imu.RLock()
	defer l.imu.RUnlock()
	for _, s := range l.segs {
		if s.count == 0 || s.maxTS < ts {
			continue
		}
		k := sort.Search(len(s.points), func(k int) bool { return s.points[k].tsBefore >= ts })
		// points[0].tsBefore is MinInt64, so k == 0 only for ts == MinInt64.
		k = max(k, 1)
		p := s.points[k-1]
		stop = s.valid
		if k < len(s.points) {
			stop = s.points[k].pos
		}
		return spot{seg: s, pos: p.pos, id: p.id, offset: p.offset, tsMax: p.tsBefore, end: s.valid, next: s.next}, stop, true
	}
	return sp, 0, false
}

// Verify reads every segment and checks every entry's framing, checksum and
// offsets, and each sealed segment's entry count. It returns the first
// damage found as a *CorruptError (ErrCorrupt), or nil. Use it on an
// unclean start: Open checks only the tail, and reads check only what they
// read. It runs concurrently with appends (up to what was published when
// it reached each segment) and holds truncation off while it runs.
func (l *Log) Verify() error {
	l.rmu.RLock()
	defer l.rmu.RUnlock()
	if err := l.usable(); err != nil {
		return err
	}
	l.imu.RLock()
	segs := append([]*segment(nil), l.segs...)
	sizes, bases := make([]int64, len(segs)), make([]int64, len(segs))
	for i, s := range segs {
		sizes[i], bases[i] = s.size, s.base
	}
	l.imu.RUnlock()
	expect := int64(-1)
	for i, s := range segs {
		var want uint64
		if i < len(segs)-1 {
			want = segs[i+1].id - s.id
		}
		f, err := s.file()
		if err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		chk := &segment{id: s.id, path: s.path, base: bases[i], next: bases[i], maxTS: math.MinInt64, rf: f}
		bad, err := scanSegment(chk, sizes[i], expect, want, math.MaxInt64)
		if err != nil {
			return err
		}
		if bad != nil {
			return &CorruptError{Path: s.path, Pos: bad.pos, Offset: chk.next, Reason: bad.reason}
		}
		if chk.count > 0 {
			expect = chk.next
		}
	}
	return nil
}
