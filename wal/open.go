package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	twal "github.com/tidwall/wal"
)

// open does the work of Open: clean up, open tidwall (cutting a torn tail if
// tidwall refuses it), load the index, repair a bad tail, and find where an
// empty log starts.
func (l *Log) open() error {
	d, err := listDir(l.dir)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	for _, p := range d.temps { // a crash left them before their rename: they never took effect
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("wal: remove leftover temp file: %w", err)
		}
	}

	var torn *tornCut
	l.tw, err = l.openTidwall()
	if errors.Is(err, twal.ErrCorrupt) {
		// tidwall refuses a tail whose last frame is incomplete.
		if torn, err = cutTornTail(l.dir); err != nil {
			return err
		}
		if torn == nil {
			return fmt.Errorf("wal: open %s: tidwall: %w (not a torn tail)", l.dir, twal.ErrCorrupt)
		}
		l.tw, err = l.openTidwall()
	}
	if err != nil {
		return fmt.Errorf("wal: open %s: %w", l.dir, err)
	}
	// tidwall may have created the first segment or finished a truncation
	// (renamed .START/.END files) without syncing the directory; Open may
	// have created the directory itself.
	if err := syncDir(l.dir); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(l.dir)); err != nil {
		return err
	}

	segs, bad, err := l.loadIndex()
	l.segs = segs
	if err != nil {
		return err
	}
	tail := segs[len(segs)-1]
	if bad != nil || torn != nil {
		if err := l.repairTail(tail, bad, torn); err != nil {
			return err
		}
	}

	if len(segs) == 1 && tail.count == 0 {
		start, ok, err := readStartFile(l.dir)
		if err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		if !ok && tail.id > 1 {
			l.log.Warn("wal: empty log without a valid start offset file; starting at 0")
		}
		tail.base, tail.next = start, start
	}

	first, err1 := l.tw.FirstIndex()
	last, err2 := l.tw.LastIndex()
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("wal: open %s: %w", l.dir, err)
	}
	if first != segs[0].id || last != tail.id+tail.count-1 {
		return fmt.Errorf("wal: open %s: tidwall holds entries %d..%d, the index %d..%d", l.dir, first, last, segs[0].id, tail.id+tail.count-1)
	}
	return nil
}

// loadIndex builds the index of every segment in l.dir: sealed segments
// from their sidecars (scanning those whose sidecar is missing or invalid,
// and writing it again), the tail by scanning it. It returns the tail's
// first bad frame, if any; the tail's index then covers the good prefix.
// Damage in a sealed segment is not repaired: the segment is marked so that
// reads past its good prefix return ErrCorrupt.
func (l *Log) loadIndex() (segs []*segment, tailBad *badFrame, err error) {
	d, err := listDir(l.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("wal: %w", err)
	}
	if len(d.pending) > 0 || len(d.segments) == 0 {
		return nil, nil, fmt.Errorf("wal: %s: unexpected segment files after tidwall opened it: %v", l.dir, d.pending)
	}
	for id, p := range d.sidecars {
		if _, ok := d.sizes[id]; !ok || id == d.segments[len(d.segments)-1] {
			_ = os.Remove(p) // orphan, or the tail's (stale once the tail grows)
			delete(d.sidecars, id)
		}
	}

	prevNext := int64(-1) // where the next segment must start; -1 if unknown
	for i, id := range d.segments {
		s := newSegment(l.dir, id, 0)
		segs = append(segs, s)
		size := d.sizes[id]
		if i == len(d.segments)-1 {
			if tailBad, err = scanSegment(s, size, prevNext, 0, l.interval); err != nil {
				return segs, nil, fmt.Errorf("wal: scan %s: %w", s.path, err)
			}
			break
		}
		s.sealed = true
		count := d.segments[i+1] - id
		err := l.loadSidecar(s, d.sidecars[id], size, count)
		if err == nil && prevNext >= 0 && s.base != prevNext {
			err = fmt.Errorf("segment starts at %d, the previous one ends at %d", s.base, prevNext)
		}
		if err == nil {
			prevNext = s.next
			continue
		}
		if d.sidecars[id] != "" {
			l.log.Info("wal: rebuilding index sidecar", "segment", s.path, "reason", err)
		}
		bad, err := scanSegment(s, size, prevNext, count, l.interval)
		if err != nil {
			return segs, nil, fmt.Errorf("wal: scan %s: %w", s.path, err)
		}
		s.size = size
		if bad != nil {
			l.log.Error("wal: damaged sealed segment: entries past the damage are unreadable (ErrCorrupt); the log is not repaired below its tail",
				"segment", s.path, "byte", bad.pos, "reason", bad.reason, "readable_entries", s.count)
			prevNext = -1
			continue
		}
		prevNext = s.next
		if err := os.WriteFile(sidecarPath(s.path), encodeSidecar(s), 0o640); err != nil {
			l.log.Warn("wal: cannot write index sidecar", "segment", s.path, "err", err)
		}
	}

	// Give damaged segments (and an empty tail after one) offset ranges that
	// join their neighbours, so lookups land in them and report the damage.
	for i := len(segs) - 2; i >= 0; i-- {
		if s, f := segs[i], segs[i+1]; s.valid < s.size && f.count > 0 && f.base > s.next {
			s.next = f.base
		}
	}
	for i, s := range segs {
		if s.count == 0 && i > 0 {
			s.base, s.next = segs[i-1].next, max(s.next, segs[i-1].next)
		}
	}
	return segs, tailBad, nil
}

// loadSidecar fills s from its sidecar file.
func (l *Log) loadSidecar(s *segment, path string, size int64, count uint64) error {
	if path == "" {
		return errors.New("no sidecar")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return decodeSidecar(s, b, size, count)
}

// tornCut is what cutTornTail removed.
type tornCut struct {
	path    string
	pos     int64  // where the file now ends
	dropped int64  // bytes removed
	head    []byte // the first bytes removed (up to a varint and a frame header)
	zero    bool   // the removed bytes were all zero
}

// cutTornTail truncates the tail segment after its last complete tidwall
// frame, if its last frame is incomplete, and makes that durable. It
// returns nil if the tail is not torn.
func cutTornTail(dir string) (*tornCut, error) {
	d, err := listDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	if len(d.pending) > 0 || len(d.segments) == 0 {
		return nil, nil
	}
	path := filepath.Join(dir, segmentName(d.segments[len(d.segments)-1]))
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	pos := 0
	for pos < len(data) {
		size, n := binary.Uvarint(data[pos:])
		if n <= 0 || size > uint64(len(data)-pos-n) {
			break
		}
		pos += n + int(size)
	}
	if pos == len(data) {
		return nil, nil
	}
	cut := &tornCut{
		path:    path,
		pos:     int64(pos),
		dropped: int64(len(data) - pos),
		head:    append([]byte(nil), data[pos:min(len(data), pos+maxVarintLen+frameHeaderLen)]...),
		zero:    allZero(data[pos:]),
	}
	if err := truncateFile(path, cut.pos); err != nil {
		return nil, err
	}
	return cut, nil
}

// truncateFile cuts path to size bytes and makes it durable.
func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("wal: repair: %w", err)
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wal: repair %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// repairTail cuts the tail after its last good entry (bad is the first bad
// one, torn what cutTornTail already removed) and records the report.
// tidwall is reopened so that its view matches the file.
func (l *Log) repairTail(tail *segment, bad *badFrame, torn *tornCut) error {
	rep := &RepairReport{Segment: tail.path, FirstDroppedOffset: -1}
	// Where the first dropped entry should start, to tell whether its
	// header is believable.
	expect := tail.next
	if tail.count == 0 && tail == l.segs[0] {
		start, ok, err := readStartFile(l.dir)
		if expect = -1; err == nil && ok {
			expect = start
		}
	}
	if torn != nil {
		rep.DroppedBytes = torn.dropped
		rep.Reason = "torn frame"
		if torn.zero {
			rep.Reason = "zero-filled tail"
		}
		if size, n := binary.Uvarint(torn.head); n > 0 && size >= frameHeaderLen && len(torn.head) >= n+frameHeaderLen {
			rep.FirstDroppedOffset = headerOffset(torn.head[n:], expect)
		}
	}
	if bad != nil {
		f, err := tail.file()
		if err != nil {
			return fmt.Errorf("wal: repair: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("wal: repair: %w", err)
		}
		dropped := make([]byte, fi.Size()-bad.pos)
		if _, err := f.ReadAt(dropped, bad.pos); err != nil && err != io.EOF {
			return fmt.Errorf("wal: repair: %w", err)
		}
		last, err := l.tw.LastIndex()
		if err != nil {
			return fmt.Errorf("wal: repair: %w", err)
		}
		rep.DroppedEntries = int(last - bad.id + 1)
		rep.DroppedBytes += int64(len(dropped))
		rep.FirstDroppedOffset = headerOffset(bad.hdr, expect)
		rep.Reason = bad.reason
		if allZero(dropped) && (torn == nil || torn.zero) {
			rep.Reason = "zero-filled tail"
		}
		if err := l.tw.Close(); err != nil {
			return fmt.Errorf("wal: repair: %w", err)
		}
		l.tw = nil
		if err := tail.closeFile(); err != nil {
			return fmt.Errorf("wal: repair: %w", err)
		}
		if err := truncateFile(tail.path, bad.pos); err != nil {
			return err
		}
		if l.tw, err = l.openTidwall(); err != nil {
			return fmt.Errorf("wal: reopen after repair: %w", err)
		}
	}
	l.repair = rep
	l.log.Warn("wal: repaired damaged tail",
		"segment", rep.Segment, "reason", rep.Reason, "dropped_entries", rep.DroppedEntries,
		"dropped_bytes", rep.DroppedBytes, "first_dropped_offset", rep.FirstDroppedOffset,
		"next_offset", tail.next)
	return nil
}
