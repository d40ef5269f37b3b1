package batch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// Layout constants; see the package doc.
const (
	HeaderSize = 61
	Magic      = 1

	offBaseOffset      = 0
	offLength          = 8
	offLeaderEpoch     = 12
	offMagic           = 16
	offCRC             = 17
	offAttributes      = 21
	offLastOffsetDelta = 23
	offFirstTimestamp  = 27
	offMaxTimestamp    = 35
	offProducerID      = 43
	offProducerEpoch   = 51
	offBaseSequence    = 53
	offRecordCount     = 57

	// lengthFieldEnd is where the bytes counted by the length field start.
	lengthFieldEnd = offLength + 4
	crcStart       = offAttributes

	compressionMask = 0x07

	// NoProducerID marks a batch from a producer that is not idempotent.
	NoProducerID = -1
	// NoSequence is the base sequence of a batch without a producer id.
	NoSequence = -1
)

// MaxBatchBytes bounds any single batch this package decodes or builds.
const MaxBatchBytes = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors. Validation errors wrap ErrInvalid or ErrTooLarge so callers can map
// them to a status without string matching.
var (
	// ErrInvalid: the bytes are not a well-formed batch.
	ErrInvalid = errors.New("invalid record batch")
	// ErrCRC: the batch's checksum does not match its contents.
	ErrCRC = fmt.Errorf("%w: CRC mismatch", ErrInvalid)
	// ErrTooLarge: a record or the batch exceeds a configured limit.
	ErrTooLarge = errors.New("record too large")
	// ErrShort: the buffer ends inside a batch (a partial read).
	ErrShort = fmt.Errorf("%w: truncated", ErrInvalid)
)

// CRC32C returns the Castagnoli checksum of b, the one used by batches and
// the write-ahead log.
func CRC32C(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// View is a read-mostly view of one encoded batch. It must be at least
// HeaderSize long; use Next or Validate to obtain one safely.
type View []byte

func le16(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) }
func le32(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) }
func le64(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) }

func (v View) BaseOffset() int64  { return le64(v[offBaseOffset:]) }
func (v View) Length() int32      { return le32(v[offLength:]) }
func (v View) LeaderEpoch() int32 { return le32(v[offLeaderEpoch:]) }
func (v View) MagicByte() byte    { return v[offMagic] }
func (v View) CRC() uint32        { return binary.LittleEndian.Uint32(v[offCRC:]) }
func (v View) Attributes() int16  { return le16(v[offAttributes:]) }
func (v View) LastOffsetDelta() int32 {
	return le32(v[offLastOffsetDelta:])
}
func (v View) FirstTimestamp() int64 { return le64(v[offFirstTimestamp:]) }
func (v View) MaxTimestamp() int64   { return le64(v[offMaxTimestamp:]) }
func (v View) ProducerID() int64     { return le64(v[offProducerID:]) }
func (v View) ProducerEpoch() int16  { return le16(v[offProducerEpoch:]) }
func (v View) BaseSequence() int32   { return le32(v[offBaseSequence:]) }
func (v View) RecordCount() int32    { return le32(v[offRecordCount:]) }

// Compression is the codec of the records section.
func (v View) Compression() Compression { return Compression(v.Attributes() & compressionMask) }

// LastOffset is the offset of the batch's last record.
func (v View) LastOffset() int64 { return v.BaseOffset() + int64(v.LastOffsetDelta()) }

// NextOffset is the offset after the batch's last record.
func (v View) NextOffset() int64 { return v.LastOffset() + 1 }

// LastSequence is the sequence number of the batch's last record.
func (v View) LastSequence() int32 {
	if v.BaseSequence() < 0 {
		return NoSequence
	}
	return int32((int64(v.BaseSequence()) + int64(v.LastOffsetDelta())) % (math.MaxInt32 + 1))
}

// SetBaseOffset stamps the base offset; the CRC does not cover it.
func (v View) SetBaseOffset(o int64) { binary.LittleEndian.PutUint64(v[offBaseOffset:], uint64(o)) }

// SetLeaderEpoch stamps the leader epoch; the CRC does not cover it.
func (v View) SetLeaderEpoch(e int32) { binary.LittleEndian.PutUint32(v[offLeaderEpoch:], uint32(e)) }

// VerifyCRC reports whether the stored checksum matches the contents.
func (v View) VerifyCRC() bool { return CRC32C(v[crcStart:]) == v.CRC() }

// Next splits the first batch off buf. It checks only that the length field
// is sane and the whole batch is present; rest is what follows it. At the
// end of a buffer that ends mid-batch (a fetch cut at max bytes) it returns
// ErrShort.
func Next(buf []byte) (v View, rest []byte, err error) {
	if len(buf) < HeaderSize {
		if len(buf) == 0 {
			return nil, nil, nil
		}
		return nil, buf, ErrShort
	}
	n := int64(le32(buf[offLength:]))
	total := n + lengthFieldEnd
	if n < HeaderSize-lengthFieldEnd || total > MaxBatchBytes {
		return nil, buf, fmt.Errorf("%w: batch length %d out of range", ErrInvalid, n)
	}
	if int64(len(buf)) < total {
		return nil, buf, ErrShort
	}
	return View(buf[:total]), buf[total:], nil
}

// Info summarises a validated batch.
type Info struct {
	Records         int
	FirstTimestamp  int64
	MaxTimestamp    int64
	ProducerID      int64
	ProducerEpoch   int16
	BaseSequence    int32
	Compression     Compression
	UncompressedLen int
}

// Limits bound what Validate accepts.
type Limits struct {
	// MaxRecordBytes bounds one record's key + value + headers.
	MaxRecordBytes int
	// MaxUncompressedBytes bounds the decompressed records section.
	MaxUncompressedBytes int
}

// Validate checks that buf is exactly one well-formed batch within lim: the
// length, magic and CRC; the counts; every record's framing, offset delta and
// size; the timestamps; and, for a compressed batch, that it decompresses to
// exactly the records it claims. It never panics on any input.
func Validate(buf []byte, lim Limits) (Info, error) {
	var info Info
	v, err := checkHeader(buf)
	if err != nil {
		return info, err
	}
	codec := v.Compression()
	maxUncompressed := lim.MaxUncompressedBytes
	if maxUncompressed <= 0 || maxUncompressed > MaxBatchBytes {
		maxUncompressed = MaxBatchBytes
	}
	recs, err := decompress(codec, v[HeaderSize:], maxUncompressed)
	if err != nil {
		return info, err
	}
	if err := checkRecords(v, recs, lim); err != nil {
		return info, err
	}
	info = Info{
		Records:         int(v.RecordCount()),
		FirstTimestamp:  v.FirstTimestamp(),
		MaxTimestamp:    v.MaxTimestamp(),
		ProducerID:      v.ProducerID(),
		ProducerEpoch:   v.ProducerEpoch(),
		BaseSequence:    v.BaseSequence(),
		Compression:     codec,
		UncompressedLen: len(recs),
	}
	return info, nil
}

// checkHeader checks that buf is exactly one batch whose header is sound:
// magic, CRC, record count and last offset delta, attributes, and a
// producer id, epoch and sequence that belong together.
func checkHeader(buf []byte) (View, error) {
	v, rest, err := nextChecked(buf)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the batch", ErrInvalid, len(rest))
	}
	count := v.RecordCount()
	if count < 1 {
		return nil, fmt.Errorf("%w: record count %d", ErrInvalid, count)
	}
	if v.LastOffsetDelta() != count-1 {
		return nil, fmt.Errorf("%w: last offset delta %d with %d records", ErrInvalid, v.LastOffsetDelta(), count)
	}
	if v.Attributes()&^compressionMask != 0 {
		return nil, fmt.Errorf("%w: unknown attribute bits %#x", ErrInvalid, v.Attributes())
	}
	pid, seq := v.ProducerID(), v.BaseSequence()
	if pid < NoProducerID || (pid == NoProducerID) != (seq == NoSequence) || seq < NoSequence || v.ProducerEpoch() < 0 && pid != NoProducerID {
		return nil, fmt.Errorf("%w: producer id %d, epoch %d, sequence %d", ErrInvalid, pid, v.ProducerEpoch(), seq)
	}
	return v, nil
}

// checkRecords walks the batch's (uncompressed) records: dense offset
// deltas, each record within the size limit, as many as the header counts,
// and the header's max timestamp the records' own.
func checkRecords(v View, recs []byte, lim Limits) error {
	count, first, maxTS := v.RecordCount(), v.FirstTimestamp(), v.MaxTimestamp()
	seenMax := int64(math.MinInt64)
	var n int32
	err := walk(recs, func(r *rawRecord) error {
		if r.offsetDelta != int64(n) {
			return fmt.Errorf("%w: record %d has offset delta %d", ErrInvalid, n, r.offsetDelta)
		}
		if lim.MaxRecordBytes > 0 && r.size > lim.MaxRecordBytes {
			return fmt.Errorf("%w: record %d is %d bytes (key+value+headers), the topic's max.record.bytes is %d", ErrTooLarge, n, r.size, lim.MaxRecordBytes)
		}
		seenMax = max(seenMax, first+r.tsDelta)
		n++
		if n > count {
			return fmt.Errorf("%w: more records than the count %d", ErrInvalid, count)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n != count {
		return fmt.Errorf("%w: %d records, header says %d", ErrInvalid, n, count)
	}
	if seenMax != maxTS {
		return fmt.Errorf("%w: max timestamp %d, records say %d", ErrInvalid, maxTS, seenMax)
	}
	return nil
}

// rawRecord is one record's parsed framing.
type rawRecord struct {
	tsDelta     int64
	offsetDelta int64
	key, value  []byte // nil when null
	headers     []byte // the encoded headers, count first
	nHeaders    int
	size        int    // key + value + header keys and values
	raw         []byte // the whole record, its length prefix included
}

// walk parses every record of an uncompressed records section.
func walk(b []byte, fn func(*rawRecord) error) error {
	var r rawRecord
	for len(b) > 0 {
		l, n := binary.Varint(b)
		if n <= 0 || l < 1 || l > int64(len(b)-n) {
			return fmt.Errorf("%w: bad record length", ErrInvalid)
		}
		rec := b[n : n+int(l)]
		r.raw = b[:n+int(l)]
		b = b[n+int(l):]
		if err := parseRecord(rec, &r); err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	return nil
}

func parseRecord(rec []byte, r *rawRecord) error {
	// attributes
	if len(rec) < 1 {
		return fmt.Errorf("%w: empty record", ErrInvalid)
	}
	rec = rec[1:]
	var ok bool
	if r.tsDelta, rec, ok = varint(rec); !ok {
		return fmt.Errorf("%w: bad timestamp delta", ErrInvalid)
	}
	if r.offsetDelta, rec, ok = varint(rec); !ok {
		return fmt.Errorf("%w: bad offset delta", ErrInvalid)
	}
	if r.key, rec, ok = lenBytes(rec); !ok {
		return fmt.Errorf("%w: bad key", ErrInvalid)
	}
	if r.value, rec, ok = lenBytes(rec); !ok {
		return fmt.Errorf("%w: bad value", ErrInvalid)
	}
	nh, n := binary.Uvarint(rec)
	if n <= 0 || nh > uint64(len(rec)) {
		return fmt.Errorf("%w: bad header count", ErrInvalid)
	}
	r.headers = rec
	r.nHeaders = int(nh)
	rec = rec[n:]
	size := len(r.key) + len(r.value)
	for i := uint64(0); i < nh; i++ {
		var k, hv []byte
		if k, rec, ok = lenBytes(rec); !ok || k == nil {
			return fmt.Errorf("%w: bad header key", ErrInvalid)
		}
		if hv, rec, ok = lenBytes(rec); !ok {
			return fmt.Errorf("%w: bad header value", ErrInvalid)
		}
		size += len(k) + len(hv)
	}
	if len(rec) != 0 {
		return fmt.Errorf("%w: %d stray bytes in a record", ErrInvalid, len(rec))
	}
	r.size = size
	return nil
}

func varint(b []byte) (int64, []byte, bool) {
	v, n := binary.Varint(b)
	if n <= 0 {
		return 0, b, false
	}
	return v, b[n:], true
}

// lenBytes reads a varint length (-1: null) and that many bytes.
func lenBytes(b []byte) ([]byte, []byte, bool) {
	l, n := binary.Varint(b)
	if n <= 0 || l < -1 || l > int64(len(b)-n) {
		return nil, b, false
	}
	b = b[n:]
	if l == -1 {
		return nil, b, true
	}
	return b[:l:l], b[l:], true
}
