package segment

import (
	"fmt"
	"sort"
)

// spot is where a read starts: a snapshot, taken under imu, of an index
// point and its segment's bounds.
type spot struct {
	seg    *seg
	pos    int64 // byte position of the frame to read first
	offset int64 // its BaseOffset
	tsMax  int64 // largest MaxTimestamp in the segment before it
	end    int64 // bytes readers may read (valid prefix)
	next   int64 // the segment's next offset
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
	return spot{seg: s, pos: p.pos, offset: p.offset, tsMax: p.tsBefore, end: s.valid, next: s.next}, true, nil
}

// ReadEntries calls fn for consecutive entries, starting with the one that
// contains offset, and returns the offset after the last entry passed.
//
//   - It never passes an entry whose BaseOffset >= limit; one that
//     straddles limit is passed whole.
//   - It stops once the payload bytes passed reach maxBytes, and always
//     passes at least one entry when one is available.
//   - offset < StartOffset() returns ErrOffsetOutOfRange; offset >=
//     min(limit, NextOffset()) passes nothing and returns nil.
//   - Every entry's checksum and offsets are verified. Damage returns a
//     *CorruptError, unless entries were already passed: then the read
//     stops before it, and a read from the returned offset reports it.
//   - An error from fn is returned as is.
//
// Entry.Data aliases a read buffer valid only during fn; fn must not call
// the Log's writer methods. Reads pread the files through the page cache
// (a 64 KiB pooled window per read in progress) and never wait for a Write.
func (l *Log) ReadEntries(offset int64, maxBytes int, limit int64, fn func(Entry) error) (next int64, err error) {
	l.rmu.RLock()
	defer l.rmu.RUnlock()
	if err := l.usable(); err != nil {
		return offset, err
	}
	next = offset
	passed, bytes := 0, 0
	for {
		sp, ok, err := l.locate(next, limit)
		if err != nil || !ok {
			if passed > 0 {
				err = nil // reported by the read from next
			}
			return next, err
		}
		f, err := sp.seg.file()
		if err != nil {
			return next, fmt.Errorf("segment: %w", err)
		}
		c := getCursor(f, sp.seg.path)
		pos, expect := sp.pos, sp.offset
		for pos < sp.end {
			payload, h, flen, reason, err := c.entry(pos, sp.end, expect)
			if err != nil || reason != "" {
				putCursor(c)
				if err == nil && passed == 0 {
					err = &CorruptError{Path: sp.seg.path, Pos: pos, Offset: expect, Reason: reason}
				}
				return next, err
			}
			pos += flen
			expect = h.last + 1
			if h.last < next {
				continue // before the entry that contains offset
			}
			if h.base >= limit {
				putCursor(c)
				return next, nil
			}
			if err := fn(Entry{BaseOffset: h.base, LastOffset: h.last, MaxTimestamp: h.maxTS, Data: payload}); err != nil {
				putCursor(c)
				return next, err
			}
			next, passed, bytes = h.last+1, passed+1, bytes+len(payload)
			if bytes >= maxBytes {
				putCursor(c)
				return next, nil
			}
		}
		putCursor(c)
		if expect != sp.next || next != sp.next {
			if passed > 0 {
				return next, nil
			}
			return next, &CorruptError{Path: sp.seg.path, Pos: pos, Offset: max(next, expect), Reason: "entry unreadable: damaged segment"}
		}
	}
}

// Read is ReadEntries that appends the payloads back to back to dst.
func (l *Log) Read(dst []byte, offset int64, maxBytes int, limit int64) (out []byte, next int64, err error) {
	next, err = l.ReadEntries(offset, maxBytes, limit, func(e Entry) error {
		dst = append(dst, e.Data...)
		return nil
	})
	return dst, next, err
}

// OffsetForTimestamp returns the BaseOffset of the first entry at which
// the running maximum of MaxTimestamp reaches ts (Kafka's time index), or
// NextOffset() if none does. It reads at most one index interval.
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
		return 0, fmt.Errorf("segment: %w", err)
	}
	c := getCursor(f, sp.seg.path)
	defer putCursor(c)
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
// it, the index interval [sp.pos, stop) holding the first entry that does.
func (l *Log) locateTS(ts int64) (sp spot, stop int64, ok bool) {
	l.imu.RLock()
	defer l.imu.RUnlock()
	for _, s := range l.segs {
		if len(s.points) == 0 || s.maxTS < ts {
			continue
		}
		k := max(sort.Search(len(s.points), func(k int) bool { return s.points[k].tsBefore >= ts }), 1)
		p := s.points[k-1]
		stop = s.valid
		if k < len(s.points) {
			stop = s.points[k].pos
		}
		return spot{seg: s, pos: p.pos, offset: p.offset, tsMax: p.tsBefore, end: s.valid, next: s.next}, stop, true
	}
	return sp, 0, false
}

// Verify reads every segment and checks every frame and that offsets are
// dense across segments. It returns the first damage as a *CorruptError.
// Open checks only the tail and segments without a sidecar; reads check
// what they read.
func (l *Log) Verify() error {
	l.rmu.RLock()
	defer l.rmu.RUnlock()
	if err := l.usable(); err != nil {
		return err
	}
	l.imu.RLock()
	segs := append([]*seg(nil), l.segs...)
	sizes := make([]int64, len(segs))
	for i, s := range segs {
		sizes[i] = s.size
	}
	l.imu.RUnlock()
	for i, s := range segs {
		f, err := s.file()
		if err != nil {
			return fmt.Errorf("segment: %w", err)
		}
		chk := &seg{path: s.path, base: s.base, rf: f}
		bad, err := chk.scan(sizes[i], -1, 1<<62)
		if err != nil {
			return err
		}
		if bad != nil {
			return &CorruptError{Path: s.path, Pos: bad.pos, Offset: chk.next, Reason: bad.reason}
		}
		if i+1 < len(segs) && chk.next != segs[i+1].base {
			return &CorruptError{Path: s.path, Pos: sizes[i], Offset: chk.next, Reason: "segment ends before the next one starts"}
		}
	}
	return nil
}
