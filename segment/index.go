package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
)

// point is one entry of a segment's sparse index: the offset index and the
// time index in one (tsBefore is the running maximum timestamp before it).
type point struct {
	offset   int64 // BaseOffset of the entry
	pos      int64 // byte position of its frame in the file
	tsBefore int64 // largest MaxTimestamp of the segment's entries before it; math.MinInt64 if none
}

const pointBytes = 24

// seg is one segment file and its index. path and base's file name never
// change. The fields from next to valid are guarded by Log.imu.
type seg struct {
	path string
	base int64 // BaseOffset of the first entry; the file is named %020d of it

	next   int64 // LastOffset+1 of the last entry (== base when empty)
	maxTS  int64 // largest MaxTimestamp; math.MinInt64 when empty
	size   int64 // bytes readers may read
	valid  int64 // checked prefix of a damaged segment; == size normally
	points []point
	sealed bool

	fmu sync.Mutex
	rf  *os.File // read handle, opened on first read
}

func newSeg(dir string, base int64) *seg {
	return &seg{path: filepath.Join(dir, segmentName(base)), base: base, next: base, maxTS: math.MinInt64}
}

func segmentName(base int64) string { return fmt.Sprintf("%020d%s", base, segSuffix) }

func sidecarPath(segPath string) string { return segPath[:len(segPath)-len(segSuffix)] + idxSuffix }

// add indexes the entry at pos (frame length flen). The caller owns s or
// holds Log.imu for writing.
func (s *seg) add(h header, pos, flen, interval int64) {
	if len(s.points) == 0 || pos-s.points[len(s.points)-1].pos >= interval {
		s.points = append(s.points, point{offset: h.base, pos: pos, tsBefore: s.maxTS})
	}
	s.next = h.last + 1
	s.maxTS = max(s.maxTS, h.maxTS)
	s.size = pos + flen
	s.valid = s.size
}

// file returns the segment's read handle, opening it if needed.
func (s *seg) file() (*os.File, error) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.rf == nil {
		f, err := os.Open(s.path)
		if err != nil {
			return nil, err
		}
		s.rf = f
	}
	return s.rf, nil
}

// closeFile closes the read handle; the next read opens the file again.
func (s *seg) closeFile() error {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.rf == nil {
		return nil
	}
	err := s.rf.Close()
	s.rf = nil
	return err
}

// Sidecar (%020d.idx): the index of a sealed segment whose file was
// fsynced, written after that fsync, so Open need not read the segment.
// Not fsynced itself; checked on load, rebuilt from the segment when
// missing or invalid.
//
//	magic "SKSI", version u8, base i64, size i64, next i64, maxTS i64,
//	npoints u32, npoints × (offset i64, pos i64, tsBefore i64), CRC-32C u32
const (
	sidecarMagic     = "SKSI"
	sidecarVersion   = 1
	sidecarHeaderLen = 4 + 1 + 8*4 + 4
)

var errBadSidecar = errors.New("invalid sidecar")

func encodeSidecar(s *seg) []byte {
	b := make([]byte, 0, sidecarHeaderLen+len(s.points)*pointBytes+4)
	b = append(b, sidecarMagic...)
	b = append(b, sidecarVersion)
	for _, v := range []int64{s.base, s.size, s.next, s.maxTS} {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.points)))
	for _, p := range s.points {
		b = binary.LittleEndian.AppendUint64(b, uint64(p.offset))
		b = binary.LittleEndian.AppendUint64(b, uint64(p.pos))
		b = binary.LittleEndian.AppendUint64(b, uint64(p.tsBefore))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeSidecar fills s (path and base set) from sidecar bytes, given the
// segment file's size. It checks all it can without reading the segment.
func decodeSidecar(s *seg, b []byte, fileSize int64) error {
	if len(b) < sidecarHeaderLen+4 {
		return fmt.Errorf("%w: %d bytes", errBadSidecar, len(b))
	}
	body := b[:len(b)-4]
	if binary.LittleEndian.Uint32(b[len(b)-4:]) != crc32.Checksum(body, castagnoli) {
		return fmt.Errorf("%w: checksum mismatch", errBadSidecar)
	}
	if string(b[:4]) != sidecarMagic || b[4] != sidecarVersion {
		return fmt.Errorf("%w: bad magic or version", errBadSidecar)
	}
	i64 := func(off int) int64 { return int64(binary.LittleEndian.Uint64(body[off:])) }
	base, size, next, maxTS := i64(5), i64(13), i64(21), i64(29)
	np := int(binary.LittleEndian.Uint32(body[37:]))
	switch {
	case base != s.base:
		return fmt.Errorf("%w: for segment %d", errBadSidecar, base)
	case size != fileSize:
		return fmt.Errorf("%w: stale: segment has %d bytes, sidecar says %d", errBadSidecar, fileSize, size)
	case np == 0 || next <= base || size <= 0:
		return fmt.Errorf("%w: bad header", errBadSidecar)
	case len(body) != sidecarHeaderLen+np*pointBytes:
		return fmt.Errorf("%w: %d points do not fit %d bytes", errBadSidecar, np, len(b))
	}
	pts := make([]point, np)
	for i := range pts {
		off := sidecarHeaderLen + i*pointBytes
		p := point{offset: i64(off), pos: i64(off + 8), tsBefore: i64(off + 16)}
		if i == 0 && (p.offset != base || p.pos != 0 || p.tsBefore != math.MinInt64) {
			return fmt.Errorf("%w: bad first point", errBadSidecar)
		}
		if q := pts[max(i-1, 0)]; i > 0 && (p.offset <= q.offset || p.pos <= q.pos || p.tsBefore < q.tsBefore) {
			return fmt.Errorf("%w: points out of order", errBadSidecar)
		}
		if p.offset >= next || p.pos >= size || p.tsBefore > maxTS {
			return fmt.Errorf("%w: point out of range", errBadSidecar)
		}
		pts[i] = p
	}
	s.next, s.maxTS, s.size, s.valid, s.points = next, maxTS, size, size, pts
	return nil
}

// readChunk is how much a cursor reads ahead with one pread.
const readChunk = 64 << 10

// cursor reads frames from one segment file with pread through a
// read-ahead window.
type cursor struct {
	f    *os.File
	path string
	buf  []byte
	wpos int64 // file position of buf[0]
	wlen int   // valid bytes in the window
}

var cursorPool = sync.Pool{New: func() any { return &cursor{buf: make([]byte, readChunk)} }}

func getCursor(f *os.File, path string) *cursor {
	c := cursorPool.Get().(*cursor)
	c.f, c.path, c.wpos, c.wlen = f, path, 0, 0
	return c
}

func putCursor(c *cursor) {
	c.f = nil
	if len(c.buf) > readChunk {
		c.buf = make([]byte, readChunk) // do not keep a buffer grown for one huge entry
	}
	cursorPool.Put(c)
}

// fill makes the window cover [pos, pos+need), reading ahead up to limit.
func (c *cursor) fill(pos, need, limit int64) error {
	if pos >= c.wpos && pos+need <= c.wpos+int64(c.wlen) {
		return nil
	}
	n := min(max(need, readChunk), limit-pos)
	if n > int64(len(c.buf)) {
		c.buf = make([]byte, n)
	}
	c.wpos, c.wlen = pos, 0
	got, err := c.f.ReadAt(c.buf[:n], pos)
	c.wlen = got
	if int64(got) < need {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("segment: read %s at byte %d: %w", c.path, pos, err)
	}
	return nil
}

// entry reads and checks the frame at pos, which must end by limit, and
// that it starts at expect (unless expect < 0). It returns the frame's
// payload (valid until the next call), header and length. A bad frame is
// reported as a reason; err is an I/O error.
func (c *cursor) entry(pos, limit, expect int64) (payload []byte, h header, flen int64, reason string, err error) {
	if limit-pos < 4 {
		return nil, h, 0, "torn frame", nil
	}
	if err := c.fill(pos, 4, limit); err != nil {
		return nil, h, 0, "", err
	}
	flen, reason = frameSize(c.buf[pos-c.wpos:])
	if reason == "" && flen > limit-pos {
		reason = "torn frame"
	}
	if reason != "" {
		return nil, h, 0, reason, nil
	}
	if err := c.fill(pos, flen, limit); err != nil {
		return nil, h, 0, "", err
	}
	off := pos - c.wpos
	h, payload, reason = decodeFrame(c.buf[off : off+flen])
	if reason == "" && expect >= 0 && h.base != expect {
		reason = "offset discontinuity"
	}
	return payload, h, flen, reason, nil
}

// badFrame is the first frame of a segment that failed the checks.
type badFrame struct {
	pos    int64
	reason string
}

// scan rebuilds s's index by reading its file up to size bytes, checking
// every frame and that offsets follow each other from expect (-1: any).
// It stops at the first bad frame and returns it; s then indexes the good
// prefix. err is an I/O error.
func (s *seg) scan(size, expect, interval int64) (*badFrame, error) {
	s.points, s.size, s.valid, s.maxTS = nil, 0, 0, math.MinInt64
	s.next = s.base
	if expect < 0 {
		expect = s.base
	}
	f, err := s.file()
	if err != nil {
		return nil, err
	}
	c := getCursor(f, s.path)
	defer putCursor(c)
	var pos int64
	for pos < size {
		_, h, flen, reason, err := c.entry(pos, size, expect)
		if err != nil {
			return nil, err
		}
		if reason != "" {
			if reason == "bad frame length" && allZero(c, pos, size) {
				reason = "zero-filled tail"
			}
			return &badFrame{pos: pos, reason: reason}, nil
		}
		s.add(h, pos, flen, interval)
		pos += flen
		expect = h.last + 1
	}
	return nil, nil
}

// allZero reports whether the file holds only zeros in [pos, min(size,
// pos+64 KiB)): the usual shape of a tail whose last pages never reached
// the disk.
func allZero(c *cursor, pos, size int64) bool {
	n := min(size-pos, readChunk)
	if c.fill(pos, n, size) != nil {
		return false
	}
	for _, b := range c.buf[pos-c.wpos : pos-c.wpos+n] {
		if b != 0 {
			return false
		}
	}
	return true
}
