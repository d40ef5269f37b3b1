package batch

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Header is one record header. Keys repeat freely, as in Kafka.
type Header struct {
	Key   string
	Value []byte
}

// Record is one decoded record. Key and Value are nil for null, which is
// distinct from empty.
type Record struct {
	Offset    int64
	Timestamp int64 // unix milliseconds
	Key       []byte
	Value     []byte
	Headers   []Header
}

// Size is what a record counts against max.record.bytes.
func (r *Record) Size() int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// Builder accumulates records into one batch. It is not safe for concurrent
// use; reuse it with Reset to avoid allocations.
type Builder struct {
	codec   Compression
	recs    []byte // encoded records, uncompressed
	count   int32
	firstTS int64
	maxTS   int64
	pid     int64
	pepoch  int16
	baseSeq int32
	scratch [binary.MaxVarintLen64]byte
}

// NewBuilder returns a builder for batches compressed with codec.
func NewBuilder(codec Compression) *Builder {
	b := &Builder{codec: codec}
	b.Reset()
	return b
}

// Reset empties the builder, keeping its buffers and codec.
func (b *Builder) Reset() {
	b.recs = b.recs[:0]
	b.count = 0
	b.firstTS = 0
	b.maxTS = math.MinInt64
	b.pid = NoProducerID
	b.pepoch = 0
	b.baseSeq = NoSequence
}

// SetCompression changes the codec for the next Build.
func (b *Builder) SetCompression(c Compression) { b.codec = c }

// SetProducer marks the batch as sent by an idempotent producer.
func (b *Builder) SetProducer(id int64, epoch int16, baseSequence int32) {
	b.pid, b.pepoch, b.baseSeq = id, epoch, baseSequence
}

// Len is the number of records added.
func (b *Builder) Len() int { return int(b.count) }

// Size estimates the encoded size of the batch before compression.
func (b *Builder) Size() int { return HeaderSize + len(b.recs) }

// EncodedRecordSize is the bytes a record adds to an uncompressed batch, at
// most; producers use it to cut batches.
func EncodedRecordSize(r *Record) int {
	n := 1 + 3*binary.MaxVarintLen64 + len(r.Key) + len(r.Value) + 2*binary.MaxVarintLen64
	for _, h := range r.Headers {
		n += 2*binary.MaxVarintLen64 + len(h.Key) + len(h.Value)
	}
	return n
}

// Add appends a record. Its Offset is ignored: records get consecutive
// offset deltas in the order added.
func (b *Builder) Add(r *Record) {
	if b.count == 0 {
		b.firstTS = r.Timestamp
	}
	if r.Timestamp > b.maxTS {
		b.maxTS = r.Timestamp
	}
	// Encode the body after a reserved length slot, then move it into place.
	start := len(b.recs)
	body := b.recs
	body = append(body, 0) // attributes
	body = binary.AppendVarint(body, r.Timestamp-b.firstTS)
	body = binary.AppendVarint(body, int64(b.count))
	body = appendLenBytes(body, r.Key)
	body = appendLenBytes(body, r.Value)
	body = binary.AppendUvarint(body, uint64(len(r.Headers)))
	for i := range r.Headers {
		body = binary.AppendVarint(body, int64(len(r.Headers[i].Key)))
		body = append(body, r.Headers[i].Key...)
		body = appendLenBytes(body, r.Headers[i].Value)
	}
	l := len(body) - start
	n := binary.PutVarint(b.scratch[:], int64(l))
	body = append(body, b.scratch[:n]...) // grow by n
	copy(body[start+n:], body[start:start+l])
	copy(body[start:], b.scratch[:n])
	b.recs = body
	b.count++
}

func appendLenBytes(dst, p []byte) []byte {
	if p == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(p)))
	return append(dst, p...)
}

// Build encodes the batch into a new slice (appended to dst) with base
// offset 0 and leader epoch -1; the broker stamps both. It returns an error
// for an empty builder or a compression failure.
func (b *Builder) Build(dst []byte) ([]byte, error) {
	if b.count == 0 {
		return dst, fmt.Errorf("%w: no records", ErrInvalid)
	}
	start := len(dst)
	dst = append(dst, make([]byte, HeaderSize)...)
	codec := b.codec
	var err error
	dst, err = compress(codec, dst, b.recs)
	if err != nil {
		return dst[:start], err
	}
	if codec != None && len(dst)-start-HeaderSize >= len(b.recs) {
		// Compression did not pay: store the records raw.
		codec = None
		dst = append(dst[:start+HeaderSize], b.recs...)
	}
	v := View(dst[start:])
	if len(v)-lengthFieldEnd > MaxBatchBytes {
		return dst[:start], fmt.Errorf("%w: batch of %d bytes", ErrTooLarge, len(v))
	}
	le := binary.LittleEndian
	le.PutUint64(v[offBaseOffset:], 0)
	le.PutUint32(v[offLength:], uint32(len(v)-lengthFieldEnd))
	le.PutUint32(v[offLeaderEpoch:], math.MaxUint32) // -1
	v[offMagic] = Magic
	le.PutUint16(v[offAttributes:], uint16(codec)&compressionMask)
	le.PutUint32(v[offLastOffsetDelta:], uint32(b.count-1))
	le.PutUint64(v[offFirstTimestamp:], uint64(b.firstTS))
	le.PutUint64(v[offMaxTimestamp:], uint64(b.maxTS))
	le.PutUint64(v[offProducerID:], uint64(b.pid))
	le.PutUint16(v[offProducerEpoch:], uint16(b.pepoch))
	le.PutUint32(v[offBaseSequence:], uint32(b.baseSeq))
	le.PutUint32(v[offRecordCount:], uint32(b.count))
	le.PutUint32(v[offCRC:], CRC32C(v[crcStart:]))
	return dst, nil
}

// SetProducerFields rewrites the producer id, epoch and base sequence of an
// encoded batch and refreshes its CRC. The client uses it when a batch built
// before the producer id was known is sent, or re-sequenced after a reset.
func SetProducerFields(v View, id int64, epoch int16, baseSequence int32) {
	le := binary.LittleEndian
	le.PutUint64(v[offProducerID:], uint64(id))
	le.PutUint16(v[offProducerEpoch:], uint16(epoch))
	le.PutUint32(v[offBaseSequence:], uint32(baseSequence))
	le.PutUint32(v[offCRC:], CRC32C(v[crcStart:]))
}

// Records decodes the batch's records, appending them to dst. It decompresses
// as needed; keys, values and header values alias v or the decompressed
// buffer. It checks the CRC and record framing but not the limits of
// Validate.
func (v View) Records(dst []Record) ([]Record, error) {
	if len(v) < HeaderSize {
		return dst, ErrShort
	}
	if v.MagicByte() != Magic {
		return dst, fmt.Errorf("%w: magic %d", ErrInvalid, v.MagicByte())
	}
	if !v.VerifyCRC() {
		return dst, ErrCRC
	}
	recs, err := decompress(v.Compression(), v[HeaderSize:], MaxBatchBytes)
	if err != nil {
		return dst, err
	}
	base, first := v.BaseOffset(), v.FirstTimestamp()
	err = walk(recs, func(r *rawRecord) error {
		rec := Record{
			Offset:    base + r.offsetDelta,
			Timestamp: first + r.tsDelta,
			Key:       r.key,
			Value:     r.value,
		}
		if r.nHeaders > 0 {
			rec.Headers = make([]Header, 0, r.nHeaders)
			h := r.headers
			_, n := binary.Uvarint(h)
			h = h[n:]
			for i := 0; i < r.nHeaders; i++ {
				k, rest, _ := lenBytes(h)
				val, rest2, _ := lenBytes(rest)
				h = rest2
				rec.Headers = append(rec.Headers, Header{Key: string(k), Value: val})
			}
		}
		dst = append(dst, rec)
		return nil
	})
	return dst, err
}
