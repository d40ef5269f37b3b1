package client

import (
	"time"

	"github.com/skeinlog/skein/proto/batch"
)

// AnyPartition in Record.Partition asks the ExplicitPartitioner to let its
// fallback partitioner choose. The default partitioner always chooses.
const AnyPartition int32 = -1

// Header is one record header. Keys may repeat.
type Header struct {
	// Key names the header; it need not be unique.
	Key string
	// Value is the header's value; nil (null) and empty are distinct.
	Value []byte
}

// Record is one record to produce or one consumed record.
//
// A nil Key (or Value) is a null key, distinct from an empty one: the
// distinction survives the round trip through the broker.
//
// When producing, the producer sets Partition, Offset and, if it is zero,
// Timestamp before the record's callback runs; do not modify a record between
// Produce and its callback. Consumed records alias the fetched buffer: copy
// Key, Value and header values to keep them after you drop the record.
type Record struct {
	// Topic is the record's topic; required when producing.
	Topic string
	// Partition: when producing, see Partitioner (the default partitioner
	// ignores it; ManualPartitioner and ExplicitPartitioner use it).
	Partition int32
	// Offset: set by the producer on success (-1 with acks=none or on
	// failure), or the consumed record's offset.
	Offset int64
	// Timestamp is the record's time, kept to the millisecond; when
	// producing, zero means the time of the Produce call.
	Timestamp time.Time
	// Key is the record's key (nil: null), which the default partitioner
	// hashes to choose the partition.
	Key []byte
	// Value is the record's payload (nil: null).
	Value []byte
	// Headers are the record's headers, in order.
	Headers []Header
	// LeaderEpoch is the epoch of the leader that appended the record: on
	// consumed records, and on produced ones once acknowledged (-1 for an
	// idempotent producer's retry answered as a duplicate, or with
	// acks=none).
	LeaderEpoch int32
}

// size is what the record counts against a topic's max record bytes: key,
// value, header keys and values.
func (r *Record) size() int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// toBatch converts r for the batch builder; the byte slices are shared.
func (r *Record) toBatch(dst *batch.Record) {
	dst.Timestamp = r.Timestamp.UnixMilli()
	dst.Key = r.Key
	dst.Value = r.Value
	dst.Headers = dst.Headers[:0]
	for _, h := range r.Headers {
		dst.Headers = append(dst.Headers, batch.Header{Key: h.Key, Value: h.Value})
	}
}
