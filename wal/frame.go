package wal

import (
	"encoding/binary"
	"hash/crc32"
	"math"
)

// Entry frame: the data of one tidwall entry.
//
//	offset size field
//	 0      4   CRC-32C (Castagnoli) over bytes [4, end)
//	 4      1   version (1)
//	 5      8   BaseOffset
//	13      8   LastOffset - BaseOffset
//	21      8   MaxTimestamp
//	29      ... payload
//
// Little-endian. tidwall stores it as uvarint(len) followed by the frame.
const (
	frameVersion   = 1
	frameHeaderLen = 29
	maxVarintLen   = binary.MaxVarintLen64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameHeader is the decoded fixed part of a frame.
type frameHeader struct {
	base, last, maxTS int64
}

// appendFrame appends e's frame to dst.
func appendFrame(dst []byte, e Entry) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, frameVersion)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(e.BaseOffset))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(e.LastOffset-e.BaseOffset))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(e.MaxTimestamp))
	dst = append(dst, e.Data...)
	binary.LittleEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

// decodeFrame checks a frame and returns its header and payload (aliasing
// b). reason is "" for a good frame, otherwise what is wrong with it.
func decodeFrame(b []byte) (h frameHeader, payload []byte, reason string) {
	if len(b) < frameHeaderLen {
		return h, nil, "short frame"
	}
	if binary.LittleEndian.Uint32(b) != crc32.Checksum(b[4:], castagnoli) {
		return h, nil, "checksum mismatch"
	}
	h, reason = decodeHeader(b)
	if reason != "" {
		return h, nil, reason
	}
	return h, b[frameHeaderLen:], ""
}

// decodeHeader decodes the fixed part of a frame without checking its CRC.
// len(b) must be at least frameHeaderLen.
func decodeHeader(b []byte) (h frameHeader, reason string) {
	if b[4] != frameVersion {
		return h, "unknown frame version"
	}
	base := int64(binary.LittleEndian.Uint64(b[5:]))
	delta := int64(binary.LittleEndian.Uint64(b[13:]))
	if base < 0 || delta < 0 || base > math.MaxInt64-1-delta {
		return h, "bad offsets"
	}
	h = frameHeader{base: base, last: base + delta, maxTS: int64(binary.LittleEndian.Uint64(b[21:]))}
	return h, ""
}

// uvarintLen is the length of x as a uvarint.
func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
