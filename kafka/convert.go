package kafka

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/skeinlog/skein/proto/batch"
)

// Skein stores its own batch format and converts at this edge (see the
// package doc for why and what it costs). Both formats carry the same
// fields, so a batch converts without loss: base offset, leader epoch,
// producer id, epoch and base sequence, timestamps, and records with keys,
// values (null distinct from empty) and headers. The codec is kept: a
// batch produced with zstd is stored with zstd and fetched with zstd.

const (
	kafkaMagic        = 2
	kafkaHeaderSize   = 61 // bytes before the records
	kafkaCRCOffset    = 17
	kafkaCRCStart     = 21
	attrCodecMask     = 0x07
	attrTransactional = 0x10
	attrControl       = 0x20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// converter turns produced Kafka batches into Skein batches. One per
// connection: it is used by the goroutine reading requests only.
type converter struct {
	b     *batch.Builder
	rec   kmsg.Record
	limit int // decompressed records bytes
}

func newConverter(limit int) *converter {
	return &converter{b: batch.NewBuilder(batch.None), limit: limit}
}

// toSkein checks one produced Kafka record batch (v2, CRC-32C, framing,
// record count and offset deltas) and returns the Skein batch with the
// same records and producer fields, in a new slice.
func (cv *converter) toSkein(raw []byte) ([]byte, error) {
	if len(raw) < kafkaHeaderSize {
		if len(raw) > 16 && raw[16] != kafkaMagic {
			return nil, fmt.Errorf("%w: magic %d (Kafka before 0.11); produce record batch v2", errOldFormat, raw[16])
		}
		return nil, fmt.Errorf("%w: %d bytes, shorter than a batch header", errCorrupt, len(raw))
	}
	var kb kmsg.RecordBatch
	if err := kb.UnsafeReadFrom(raw); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	if kb.Magic != kafkaMagic {
		return nil, fmt.Errorf("%w: magic %d (Kafka before 0.11); produce record batch v2", errOldFormat, kb.Magic)
	}
	if int64(kb.Length) != int64(len(raw))-12 {
		return nil, fmt.Errorf("%w: batch length %d, %d bytes follow it (produce exactly one batch per partition)", errCorrupt, kb.Length, len(raw)-12)
	}
	if got := crc32.Checksum(raw[kafkaCRCStart:], castagnoli); got != uint32(kb.CRC) {
		return nil, fmt.Errorf("%w: CRC-32C %08x, the batch says %08x", errCorrupt, got, uint32(kb.CRC))
	}
	if kb.Attributes&(attrTransactional|attrControl) != 0 {
		return nil, fmt.Errorf("%w: transactional and control batches are not supported", errInvalidRecord)
	}
	if kb.NumRecords < 1 || kb.LastOffsetDelta != kb.NumRecords-1 {
		return nil, fmt.Errorf("%w: %d records with last offset delta %d", errInvalidRecord, kb.NumRecords, kb.LastOffsetDelta)
	}
	codec := batch.Compression(kb.Attributes & attrCodecMask)
	recs, err := kafkaDecompress(codec, kb.Records, cv.limit)
	if err != nil {
		return nil, err
	}
	cv.b.Reset()
	cv.b.SetCompression(codec)
	if kb.ProducerID >= 0 {
		cv.b.SetProducer(kb.ProducerID, kb.ProducerEpoch, kb.FirstSequence)
	}
	var r batch.Record
	for i := int32(0); i < kb.NumRecords; i++ {
		l, n := binary.Varint(recs)
		if n <= 0 || l < 0 || l > int64(len(recs)-n) {
			return nil, fmt.Errorf("%w: record %d framing", errCorrupt, i)
		}
		if err := cv.rec.UnsafeReadFrom(recs[:n+int(l)]); err != nil {
			return nil, fmt.Errorf("%w: record %d: %v", errCorrupt, i, err)
		}
		recs = recs[n+int(l):]
		if cv.rec.OffsetDelta != i {
			return nil, fmt.Errorf("%w: record %d has offset delta %d", errInvalidRecord, i, cv.rec.OffsetDelta)
		}
		r.Timestamp, r.Key, r.Value = kb.FirstTimestamp+cv.rec.TimestampDelta64, cv.rec.Key, cv.rec.Value
		r.Headers = r.Headers[:0]
		for _, h := range cv.rec.Headers {
			r.Headers = append(r.Headers, batch.Header{Key: h.Key, Value: h.Value})
		}
		cv.b.Add(&r)
	}
	if len(recs) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last record", errCorrupt, len(recs))
	}
	out, err := cv.b.Build(nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errInvalidRecord, err)
	}
	return out, nil
}

// appendKafka appends the Skein batches in buf, converted to Kafka record
// batches v2 with the same offsets, epoch, producer fields, timestamps,
// records and codec, and a valid CRC-32C.
func appendKafka(dst, buf []byte) ([]byte, error) {
	var recs []batch.Record
	var scratch []byte
	// One allocation each for the output and the records of a batch: the
	// Kafka form of a batch is about the size of the Skein one, so growing
	// them by appends would copy every byte several times.
	dst = slices.Grow(dst, len(buf)+len(buf)/8+64)
	body := make([]byte, 0, min(len(buf), 1<<20))
	for len(buf) > 0 {
		v, rest, err := batch.Next(buf)
		if err != nil {
			return dst, err
		}
		if v == nil {
			break
		}
		buf = rest
		if recs, err = v.Records(recs[:0]); err != nil {
			return dst, err
		}
		body = body[:0]
		first := v.FirstTimestamp()
		for i := range recs {
			kr := kmsg.Record{
				TimestampDelta64: recs[i].Timestamp - first,
				OffsetDelta:      int32(recs[i].Offset - v.BaseOffset()),
				Key:              recs[i].Key,
				Value:            recs[i].Value,
			}
			kr.TimestampDelta = int32(kr.TimestampDelta64)
			for _, h := range recs[i].Headers {
				kr.Headers = append(kr.Headers, kmsg.Header{Key: h.Key, Value: h.Value})
			}
			// Encode with a zero length (one byte), then prefix the real one.
			scratch = kr.AppendTo(scratch[:0])
			body = binary.AppendVarint(body, int64(len(scratch)-1))
			body = append(body, scratch[1:]...)
		}
		codec := v.Compression()
		kb := kmsg.RecordBatch{
			FirstOffset:          v.BaseOffset(),
			PartitionLeaderEpoch: v.LeaderEpoch(),
			Magic:                kafkaMagic,
			Attributes:           int16(codec),
			LastOffsetDelta:      v.LastOffsetDelta(),
			FirstTimestamp:       first,
			MaxTimestamp:         v.MaxTimestamp(),
			ProducerID:           v.ProducerID(),
			ProducerEpoch:        v.ProducerEpoch(),
			FirstSequence:        v.BaseSequence(),
			NumRecords:           v.RecordCount(),
		}
		if v.ProducerID() < 0 {
			kb.ProducerEpoch, kb.FirstSequence = -1, -1
		}
		start := len(dst)
		dst = kb.AppendTo(dst)
		if dst, err = kafkaCompress(dst, codec, body); err != nil {
			return dst[:start], err
		}
		b := dst[start:]
		binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
		binary.BigEndian.PutUint32(b[kafkaCRCOffset:], crc32.Checksum(b[kafkaCRCStart:], castagnoli))
	}
	return dst, nil
}
