package wal

import (
	"bytes"
	"slices"
)

// badFrame describes the first frame of a segment that failed the checks.
type badFrame struct {
	pos    int64  // byte position of the frame in the file
	id     uint64 // its tidwall index
	reason string
	hdr    []byte // the start of the frame's data (up to a header), for reports
}

// scanSegment rebuilds s's index by reading its file from the start up to
// size bytes, checking every frame: tidwall framing, length, CRC, version,
// offsets, and contiguity with expect (the offset the first entry must
// start at, or -1 for any) and between entries. If wantCount > 0 (a sealed
// segment, whose entry count the next segment's name gives) it also checks
// the count. It stops at the first bad frame and returns it; s then indexes
// the good prefix. err is an I/O error.
func scanSegment(s *segment, size, expect int64, wantCount uint64, interval int64) (*badFrame, error) {
	s.count, s.points, s.size, s.valid = 0, nil, 0, 0
	if expect >= 0 {
		s.base, s.next = expect, expect
	}
	f, err := s.file()
	if err != nil {
		return nil, err
	}
	c := getCursor()
	defer putCursor(c)
	c.reset(f, s.path)
	var pos int64
	id := s.id
	for pos < size {
		if wantCount > 0 && s.count == wantCount {
			return &badFrame{pos: pos, id: id, reason: "bytes after the segment's last entry"}, nil
		}
		data, h, flen, reason, err := c.entry(pos, size, expect)
		if err != nil {
			return nil, err
		}
		if reason != "" {
			return &badFrame{pos: pos, id: id, reason: reason, hdr: slices.Clone(data[:min(len(data), frameHeaderLen)])}, nil
		}
		s.add(h, id, pos, flen, interval)
		pos += flen
		id++
		expect = h.last + 1
	}
	if wantCount > 0 && s.count < wantCount {
		return &badFrame{pos: pos, id: id, reason: "segment ends before its last entry"}, nil
	}
	return nil, nil
}

// headerOffset returns the BaseOffset in the header at the start of frame
// data if it decodes and equals expect, else -1. The frame may have failed
// its CRC: this is for reports, never for reads.
func headerOffset(data []byte, expect int64) int64 {
	if expect < 0 || len(data) < frameHeaderLen {
		return -1
	}
	h, reason := decodeHeader(data)
	if reason != "" || h.base != expect {
		return -1
	}
	return h.base
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	return len(bytes.Trim(b, "\x00")) == 0
}
