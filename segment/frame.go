package segment

import (
	"encoding/binary"
	"hash/crc32"
	"math"
)

// Frame: one entry in a segment file, little-endian.
//
//	offset size field
//	 0      4   n: length of the rest of the frame (frameHeaderLen-4+payload)
//	 4      4   CRC-32C (Castagnoli) over bytes [8, 4+n)
//	 8      1   version (1)
//	 9      8   BaseOffset
//	17      8   LastOffset - BaseOffset
//	25      8   MaxTimestamp (unix ms)
//	33      ... payload
const (
	frameVersion   = 1
	frameHeaderLen = 33
	// maxFrameLen bounds n, so a damaged length cannot make a reader
	// allocate gigabytes: it is reported as "bad frame length".
	maxFrameLen = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is the decoded fixed part of a frame.
type header struct {
	base, last, maxTS int64
}

// frameLen is the bytes e takes in a segment file.
func frameLen(e Entry) int64 { return int64(frameHeaderLen + len(e.Data)) }

// appendFrame appends e's frame to dst.
func appendFrame(dst []byte, e Entry) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(frameHeaderLen-4+len(e.Data)))
	dst = append(dst, 0, 0, 0, 0, frameVersion)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(e.BaseOffset))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(e.LastOffset-e.BaseOffset))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(e.MaxTimestamp))
	dst = append(dst, e.Data...)
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+8:], castagnoli))
	return dst
}

// frameSize reads the length prefix at the start of b (at least 4 bytes)
// and returns the whole frame's length, or a reason it cannot be a frame.
func frameSize(b []byte) (flen int64, reason string) {
	n := binary.LittleEndian.Uint32(b)
	switch {
	case n == 0:
		return 0, "zero-filled tail"
	case n < frameHeaderLen-4 || n > maxFrameLen:
		return 0, "bad frame length"
	}
	return 4 + int64(n), ""
}

// decodeFrame checks a whole frame (as long as frameSize said) and returns
// its header and payload (aliasing b), or the reason it is bad.
func decodeFrame(b []byte) (h header, payload []byte, reason string) {
	if len(b) < frameHeaderLen {
		return h, nil, "short frame"
	}
	if flen, r := frameSize(b); r != "" || flen != int64(len(b)) {
		return h, nil, "bad frame length"
	}
	if binary.LittleEndian.Uint32(b[4:]) != crc32.Checksum(b[8:], castagnoli) {
		return h, nil, "checksum mismatch"
	}
	if b[8] != frameVersion {
		return h, nil, "unknown frame version"
	}
	base := int64(binary.LittleEndian.Uint64(b[9:]))
	delta := int64(binary.LittleEndian.Uint64(b[17:]))
	if base < 0 || delta < 0 || base > math.MaxInt64-1-delta {
		return h, nil, "bad offsets"
	}
	h = header{base: base, last: base + delta, maxTS: int64(binary.LittleEndian.Uint64(b[25:]))}
	return h, b[frameHeaderLen:], ""
}
