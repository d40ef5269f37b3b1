package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"sync"
)

// point is one entry of a segment's sparse index.
type point struct {
	offset   int64  // BaseOffset of the entry
	pos      int64  // byte position of its tidwall frame in the segment file
	id       uint64 // its tidwall entry index
	tsBefore int64  // largest MaxTimestamp of this segment's entries before it; math.MinInt64 if none
}

// pointBytes is the in-memory and on-disk size of a point.
const pointBytes = 32

// segment is one tidwall segment file and its index.
//
// id and path never change. The fields from base to valid are guarded by
// Log.imu: the writer (Append and the truncations) changes them under
// imu.Lock, readers look at them under imu.RLock. Once a segment is sealed
// only truncation changes them. rf is guarded by fmu.
type segment struct {
	id   uint64 // tidwall index of its first entry; the file is named %020d of it
	path string

	base   int64   // BaseOffset of the first entry; == next when empty
	next   int64   // LastOffset+1 of the last entry
	maxTS  int64   // largest MaxTimestamp; math.MinInt64 when empty
	count  uint64  // entries
	size   int64   // bytes of the file that readers may read (published after each Append)
	points []point // sparse index, ascending
	sealed bool    // false for the tail
	// valid is the length of the checked prefix of a damaged sealed
	// segment; entries past it are unreadable (ErrCorrupt). == size normally.
	valid int64

	fmu sync.Mutex
	rf  *os.File // read-only handle, opened on first read
}

func newSegment(dir string, id uint64, next int64) *segment {
	return &segment{
		id:    id,
		path:  filepath.Join(dir, segmentName(id)),
		base:  next,
		next:  next,
		maxTS: math.MinInt64,
	}
}

func segmentName(id uint64) string { return fmt.Sprintf("%020d", id) }

func sidecarPath(segPath string) string { return segPath + ".idx" }

// add indexes the entry at pos (frame length flen, tidwall index id) at the
// end of s. The caller owns s or holds Log.imu for writing.
func (s *segment) add(h frameHeader, id uint64, pos, flen int64, interval int64) {
	switch {
	case s.count == 0:
		s.base = h.base
		s.points = append(s.points, point{offset: h.base, pos: pos, id: id, tsBefore: math.MinInt64})
	case pos-s.points[len(s.points)-1].pos >= interval:
		s.points = append(s.points, point{offset: h.base, pos: pos, id: id, tsBefore: s.maxTS})
	}
	s.count++
	s.next = h.last + 1
	s.maxTS = max(s.maxTS, h.maxTS)
	s.size = pos + flen
	s.valid = s.size
}

// file returns the segment's read handle, opening it if needed.
func (s *segment) file() (*os.File, error) {
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
func (s *segment) closeFile() error {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.rf == nil {
		return nil
	}
	err := s.rf.Close()
	s.rf = nil
	return err
}

// Sidecar file (%020d.idx beside the segment): a cache of a sealed
// segment's index, so Open need not scan sealed segments. Not fsynced;
// checked on load and rebuilt from the segment when missing or invalid.
//
//	magic "SKIX", version u8, segment id u64, segment bytes i64, count u64,
//	base i64, next i64, maxTS i64, npoints u32,
//	npoints × (offset i64, pos i64, id u64, tsBefore i64),
//	CRC-32C u32 of everything before it
const (
	sidecarMagic     = "SKIX"
	sidecarVersion   = 1
	sidecarHeaderLen = 4 + 1 + 8 + 8 + 8 + 8 + 8 + 8 + 4
)

func encodeSidecar(s *segment) []byte {
	b := make([]byte, 0, sidecarHeaderLen+len(s.points)*pointBytes+4)
	b = append(b, sidecarMagic...)
	b = append(b, sidecarVersion)
	b = binary.LittleEndian.AppendUint64(b, s.id)
	b = binary.LittleEndian.AppendUint64(b, uint64(s.size))
	b = binary.LittleEndian.AppendUint64(b, s.count)
	b = binary.LittleEndian.AppendUint64(b, uint64(s.base))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.next))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.maxTS))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.points)))
	for _, p := range s.points {
		b = binary.LittleEndian.AppendUint64(b, uint64(p.offset))
		b = binary.LittleEndian.AppendUint64(b, uint64(p.pos))
		b = binary.LittleEndian.AppendUint64(b, p.id)
		b = binary.LittleEndian.AppendUint64(b, uint64(p.tsBefore))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var errBadSidecar = errors.New("invalid sidecar")

// decodeSidecar fills s (id and path set) from sidecar bytes b, given the
// segment file's size and its entry count (from the next segment's name).
// It checks everything it can without reading the segment.
func decodeSidecar(s *segment, b []byte, fileSize int64, count uint64) error {
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
	u64 := func(off int) uint64 { return binary.LittleEndian.Uint64(body[off:]) }
	id, size, n := u64(5), int64(u64(13)), u64(21)
	base, next, maxTS := int64(u64(29)), int64(u64(37)), int64(u64(45))
	np := int(binary.LittleEndian.Uint32(body[53:]))
	switch {
	case id != s.id:
		return fmt.Errorf("%w: for segment %d", errBadSidecar, id)
	case size != fileSize:
		return fmt.Errorf("%w: stale: segment has %d bytes, sidecar says %d", errBadSidecar, fileSize, size)
	case n != count:
		return fmt.Errorf("%w: stale: segment has %d entries, sidecar says %d", errBadSidecar, count, n)
	case n == 0 || np == 0 || uint64(np) > n || base < 0 || next <= base:
		return fmt.Errorf("%w: bad header", errBadSidecar)
	case len(body) != sidecarHeaderLen+np*pointBytes:
		return fmt.Errorf("%w: %d points do not fit %d bytes", errBadSidecar, np, len(b))
	}
	pts := make([]point, np)
	for i := range pts {
		off := sidecarHeaderLen + i*pointBytes
		p := point{offset: int64(u64(off)), pos: int64(u64(off + 8)), id: u64(off + 16), tsBefore: int64(u64(off + 24))}
		if i == 0 {
			if p.offset != base || p.pos != 0 || p.id != s.id || p.tsBefore != math.MinInt64 {
				return fmt.Errorf("%w: bad first point", errBadSidecar)
			}
		} else {
			q := pts[i-1]
			if p.offset <= q.offset || p.pos <= q.pos || p.id <= q.id || p.tsBefore < q.tsBefore {
				return fmt.Errorf("%w: points out of order", errBadSidecar)
			}
		}
		if p.offset >= next || p.pos >= size || p.id-s.id >= n || p.tsBefore > maxTS {
			return fmt.Errorf("%w: point out of range", errBadSidecar)
		}
		pts[i] = p
	}
	s.base, s.next, s.maxTS, s.count, s.size, s.valid, s.points = base, next, maxTS, n, size, size, pts
	return nil
}
