package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/skeinlog/skein/segment"
)

// Kind is what a journal record does to its partition.
type Kind uint8

const (
	// KindAppend: one entry written at the end of the partition's log.
	KindAppend Kind = 1
	// KindTruncate: TruncateTo(Offset), e.g. a follower cutting a divergent
	// suffix or a damaged tail.
	KindTruncate Kind = 2
	// KindReset: Reset(Offset), the log emptied to start at Offset.
	KindReset Kind = 3
	// KindStart: retention moved the log start to Offset (whole segments
	// before it deleted).
	KindStart Kind = 4
	// KindDrop: the partition was deleted; earlier records of the name
	// belong to it, later ones to a partition created again under it.
	KindDrop Kind = 5
)

func (k Kind) String() string {
	switch k {
	case KindAppend:
		return "append"
	case KindTruncate:
		return "truncate"
	case KindReset:
		return "reset"
	case KindStart:
		return "start"
	case KindDrop:
		return "drop"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// record is one decoded journal record.
type record struct {
	kind   Kind
	name   string
	offset int64         // Truncate, Reset, Start
	entry  segment.Entry // Append; Data aliases the record bytes
}

// Record layout, little-endian, framed inside a journal entry:
//
//	CRC-32C of the rest   4
//	kind                  1
//	name length           2
//	name                  ...
//	Append: BaseOffset 8, LastOffset 8, MaxTimestamp 8, payload
//	Truncate, Reset, Start: offset 8
//	Drop: nothing
const (
	recordHeaderLen = 4 + 1 + 2
	maxNameLen      = 1<<16 - 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errBadRecord = errors.New("bad journal record")

// appendRecord appends r's encoding to dst.
func appendRecord(dst []byte, r record) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(r.kind))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(r.name)))
	dst = append(dst, r.name...)
	switch r.kind {
	case KindAppend:
		dst = binary.LittleEndian.AppendUint64(dst, uint64(r.entry.BaseOffset))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(r.entry.LastOffset))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(r.entry.MaxTimestamp))
		dst = append(dst, r.entry.Data...)
	case KindTruncate, KindReset, KindStart:
		dst = binary.LittleEndian.AppendUint64(dst, uint64(r.offset))
	}
	binary.LittleEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

// A journal entry (one tidwall entry, one group commit) is a sequence of
// records, each framed by its length (uint32, little-endian).
const frameLenBytes = 4

// appendFramed appends r's encoding, framed, to dst.
func appendFramed(dst []byte, r record) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = appendRecord(dst, r)
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start-frameLenBytes))
	return dst
}

// decodeEntry decodes the records of one journal entry, calling fn for
// each in order. At the first frame or record that fails its checks it
// returns the error, after calling fn for the records before it. Entry
// data aliases b.
func decodeEntry(b []byte, fn func(record)) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty entry", errBadRecord)
	}
	for len(b) > 0 {
		if len(b) < frameLenBytes {
			return fmt.Errorf("%w: %d bytes left for a frame", errBadRecord, len(b))
		}
		n := binary.LittleEndian.Uint32(b)
		if uint64(n) > uint64(len(b)-frameLenBytes) {
			return fmt.Errorf("%w: frame of %d bytes, %d left", errBadRecord, n, len(b)-frameLenBytes)
		}
		r, err := decodeRecord(b[frameLenBytes : frameLenBytes+n])
		if err != nil {
			return err
		}
		fn(r)
		b = b[frameLenBytes+n:]
	}
	return nil
}

// decodeRecord checks and decodes b. Entry data aliases b.
func decodeRecord(b []byte) (r record, err error) {
	if len(b) < recordHeaderLen {
		return r, fmt.Errorf("%w: %d bytes", errBadRecord, len(b))
	}
	if binary.LittleEndian.Uint32(b) != crc32.Checksum(b[4:], castagnoli) {
		return r, fmt.Errorf("%w: checksum mismatch", errBadRecord)
	}
	r.kind = Kind(b[4])
	n := int(binary.LittleEndian.Uint16(b[5:]))
	rest := b[recordHeaderLen:]
	if n == 0 || n > len(rest) {
		return r, fmt.Errorf("%w: bad name length %d", errBadRecord, n)
	}
	r.name, rest = string(rest[:n]), rest[n:]
	switch r.kind {
	case KindAppend:
		if len(rest) < 24 {
			return r, fmt.Errorf("%w: short append", errBadRecord)
		}
		e := segment.Entry{
			BaseOffset:   int64(binary.LittleEndian.Uint64(rest)),
			LastOffset:   int64(binary.LittleEndian.Uint64(rest[8:])),
			MaxTimestamp: int64(binary.LittleEndian.Uint64(rest[16:])),
			Data:         rest[24:],
		}
		if e.BaseOffset < 0 || e.LastOffset < e.BaseOffset {
			return r, fmt.Errorf("%w: bad offsets [%d, %d]", errBadRecord, e.BaseOffset, e.LastOffset)
		}
		r.entry = e
	case KindTruncate, KindReset, KindStart:
		if len(rest) != 8 {
			return r, fmt.Errorf("%w: %s record of %d bytes", errBadRecord, r.kind, len(rest))
		}
		if r.offset = int64(binary.LittleEndian.Uint64(rest)); r.offset < 0 {
			return r, fmt.Errorf("%w: negative offset", errBadRecord)
		}
	case KindDrop:
		if len(rest) != 0 {
			return r, fmt.Errorf("%w: drop record with a body", errBadRecord)
		}
	default:
		return r, fmt.Errorf("%w: unknown kind %d", errBadRecord, r.kind)
	}
	return r, nil
}
