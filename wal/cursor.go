package wal

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"
)

// readChunk is how much a cursor reads ahead with one pread.
const readChunk = 64 << 10

// cursor reads tidwall frames from one segment file with pread (ReadAt)
// through a read-ahead window. It never goes through tidwall.
type cursor struct {
	f    *os.File
	path string
	buf  []byte // window; len(buf) is its capacity for reads
	wpos int64  // file position of buf[0]
	wlen int    // valid bytes in the window
}

var cursorPool = sync.Pool{New: func() any { return &cursor{buf: make([]byte, readChunk)} }}

func getCursor() *cursor { return cursorPool.Get().(*cursor) }

func putCursor(c *cursor) {
	c.f = nil
	if len(c.buf) > readChunk {
		c.buf = make([]byte, readChunk) // do not keep a buffer grown for one huge entry
	}
	cursorPool.Put(c)
}

// reset points the cursor at a segment file.
func (c *cursor) reset(f *os.File, path string) {
	c.f, c.path, c.wpos, c.wlen = f, path, 0, 0
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
		return fmt.Errorf("wal: read %s at byte %d: %w", c.path, pos, err)
	}
	return nil
}

// frame reads the tidwall frame at pos, which must end at or before limit,
// and returns its data (our frame; valid until the next call) and its total
// length. A frame that tidwall's framing cannot account for is reported as
// a reason ("torn frame", "bad frame length"), not an error; err is an I/O
// error (including a file shorter than limit).
func (c *cursor) frame(pos, limit int64) (data []byte, flen int64, reason string, err error) {
	if err := c.fill(pos, min(maxVarintLen, limit-pos), limit); err != nil {
		return nil, 0, "", err
	}
	off := int(pos - c.wpos)
	size, n := binary.Uvarint(c.buf[off:c.wlen])
	if n < 0 {
		return nil, 0, "bad frame length", nil
	}
	if n == 0 || size > uint64(limit-pos-int64(n)) {
		return nil, 0, "torn frame", nil
	}
	flen = int64(n) + int64(size)
	if err := c.fill(pos, flen, limit); err != nil {
		return nil, 0, "", err
	}
	off = int(pos - c.wpos)
	return c.buf[off+n : off+int(flen)], flen, "", nil
}

// entry reads the frame at pos (ending by limit) and checks it: tidwall
// framing, length, CRC, version, offsets, and that it starts at expect
// (unless expect < 0). It returns the frame data (header and payload; valid
// until the next call), its decoded header and its total length. A bad
// frame is reported as a reason; err is an I/O error.
func (c *cursor) entry(pos, limit, expect int64) (data []byte, h frameHeader, flen int64, reason string, err error) {
	data, flen, reason, err = c.frame(pos, limit)
	if err != nil || reason != "" {
		return data, h, flen, reason, err
	}
	h, _, reason = decodeFrame(data)
	if reason == "" && expect >= 0 && h.base != expect {
		reason = "offset discontinuity"
	}
	return data, h, flen, reason, nil
}
