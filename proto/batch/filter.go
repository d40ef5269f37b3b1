package batch

import (
	"encoding/binary"
	"fmt"
)

// Filter returns a copy of the batch holding only the records keep
// accepts (offset, key, value and timestamp; key and value nil when null),
// for the log cleaner of compacted topics. Every kept record keeps its
// offset and timestamp; the header keeps the base offset, last offset
// delta, timestamps, leader epoch and producer fields, so the batch still
// covers the same offsets and replays the same producer state. The record
// count becomes the number kept, which may be 0 (an empty batch, that only
// holds its offsets' place). It returns nil when keep accepts every record.
//
// Such a batch has gaps between its offset deltas: Validate (for what
// producers send) refuses it, while Records, Keys and the replication
// checks (CheckStored) accept it.
func (v View) Filter(keep func(offset int64, key, value []byte, ts int64) bool) (out []byte, removed int, err error) {
	if _, err := CheckStored(v); err != nil {
		return nil, 0, err
	}
	recs, err := decompress(v.Compression(), v[HeaderSize:], MaxBatchBytes)
	if err != nil {
		return nil, 0, err
	}
	base, first := v.BaseOffset(), v.FirstTimestamp()
	kept := make([]byte, 0, len(recs))
	var n int32
	err = walk(recs, func(r *rawRecord) error {
		if keep(base+r.offsetDelta, r.key, r.value, first+r.tsDelta) {
			kept = append(kept, r.raw...)
			n++
		} else {
			removed++
		}
		return nil
	})
	if err != nil || removed == 0 {
		return nil, 0, err
	}
	out = append(make([]byte, 0, HeaderSize+len(kept)), v[:HeaderSize]...)
	codec := v.Compression()
	if out, err = compress(codec, out, kept); err != nil {
		return nil, 0, err
	}
	if codec != None && len(out)-HeaderSize >= len(kept) {
		codec = None
		out = append(out[:HeaderSize], kept...)
	}
	le := binary.LittleEndian
	le.PutUint32(out[offLength:], uint32(len(out)-lengthFieldEnd))
	le.PutUint16(out[offAttributes:], uint16(v.Attributes())&^compressionMask|uint16(codec))
	le.PutUint32(out[offRecordCount:], uint32(n))
	le.PutUint32(out[offCRC:], CRC32C(out[crcStart:]))
	return out, removed, nil
}

// CheckStored checks the header of a batch as the log stores it: magic,
// CRC, and a record count that fits its offsets (at most last offset delta
// + 1; fewer, even none, once the cleaner of a compacted topic removed
// records). It returns the batch alone (buf may hold more after it).
func CheckStored(buf []byte) (View, error) {
	v, _, err := nextChecked(buf)
	if err != nil {
		return nil, err
	}
	if c, d := v.RecordCount(), v.LastOffsetDelta(); c < 0 || d < 0 || c > d+1 {
		return nil, fmt.Errorf("%w: record count %d with last offset delta %d", ErrInvalid, c, d)
	}
	return v, nil
}

// nextChecked is Next for a batch that must be there, with its magic and
// CRC checked; rest is what follows it.
func nextChecked(buf []byte) (v View, rest []byte, err error) {
	v, rest, err = Next(buf)
	if err != nil {
		return nil, nil, err
	}
	if v == nil {
		return nil, nil, fmt.Errorf("%w: empty batch", ErrInvalid)
	}
	if v.MagicByte() != Magic {
		return nil, nil, fmt.Errorf("%w: magic %d, want %d", ErrInvalid, v.MagicByte(), Magic)
	}
	if !v.VerifyCRC() {
		return nil, nil, ErrCRC
	}
	return v, rest, nil
}
