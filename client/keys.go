package client

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/skeinlog/skein/proto/skeinv1"
)

// KeyExpectation is one condition of ProduceIfKeys: the key's last record
// in the partition is at Offset, or, with Offset -1, the key has no record.
// In an ErrKeyOffsetMismatch's *Error.KeyOffsets, Offset is the key's
// actual last offset.
type KeyExpectation struct {
	Key    []byte
	Offset int64
}

// NoRecord is the Offset of a KeyExpectation for a key without records.
const NoRecord int64 = -1

// ProduceIfKeys appends recs to one partition of a key-indexed topic as ONE
// batch, only if each expectation holds: the expected key's last record in
// the partition is at its Offset (NoRecord: the key has none). It is
// optimistic concurrency per key: writers of different keys of the same
// partition never conflict. Each expected key must be the key of one of
// recs. The partition is the one the producer's partitioner gives the
// expected keys (the default partitioner: the key's hash), which must agree
// for every keyed record; with ManualPartitioner or ExplicitPartitioner
// set Record.Partition.
//
// It returns the offset of the first record and sets each record's
// Partition and Offset. A key's new last offset is its record's Offset:
// the expectation of its next update.
//
// When an expectation fails nothing is appended and the error matches
// ErrKeyOffsetMismatch; errors.As gives the *Error whose KeyOffsets lists
// each failing key with its actual last offset (NoRecord: none): read the
// key's latest value (GetKey), decide again and retry. A topic without the
// key index fails with ErrInvalidRequest saying how to create one.
//
// Retries, the idempotent producer and ErrMaybeAppended work as for
// ProduceIf: with the idempotent producer (the default) a retry of an
// attempt that landed returns that attempt's offsets, not a mismatch, also
// across a leader failover.
func (p *Producer) ProduceIfKeys(ctx context.Context, topic string, expect []KeyExpectation, recs ...*Record) (int64, error) {
	if len(expect) == 0 {
		return -1, fmt.Errorf("conditional append to %s: no key expectations (use Produce for an unconditional append)", topic)
	}
	for _, e := range expect {
		if len(e.Key) == 0 || e.Offset < NoRecord {
			return -1, fmt.Errorf("conditional append to %s: expectation key %q offset %d: keys are not empty, offsets are -1 (no record) or more", topic, e.Key, e.Offset)
		}
	}
	return p.produceCond(ctx, topic, AnyPartition, condition{expected: -1, keys: expect}, recs)
}

// keysPartition is the partition of a ProduceIfKeys batch: the one the
// topic's partitioner gives its records, which must all agree.
func (p *Producer) keysPartition(topic string, n int, expect []KeyExpectation, recs []*Record) (int32, error) {
	if n <= 0 {
		return -1, fmt.Errorf("conditional append to %s: %w", topic, unknownPartition(topic, 0, n))
	}
	t := p.topic(topic)
	t.mu.Lock()
	defer t.mu.Unlock()
	part := t.tp.Partition(&Record{Topic: topic, Key: expect[0].Key, Partition: recs[0].Partition}, n)
	for _, r := range recs {
		if r.Key == nil {
			continue
		}
		if q := t.tp.Partition(r, n); q != part {
			return -1, fmt.Errorf("conditional append to %s: the records' keys go to partitions %d and %d; one batch goes to one partition", topic, part, q)
		}
	}
	return int32(part), nil
}

func writeKeyOffsets(b *strings.Builder, kos []KeyExpectation) {
	for i, k := range kos {
		sep := ", "
		if i == 0 {
			sep = " ("
		}
		if k.Offset < 0 {
			fmt.Fprintf(b, "%skey %q has no record", sep, k.Key)
		} else {
			fmt.Fprintf(b, "%skey %q is at %d", sep, k.Key, k.Offset)
		}
	}
	if len(kos) > 0 {
		b.WriteString(")")
	}
}

// KeyValue is a key's latest committed record (GetKey).
type KeyValue struct {
	// Found: the key has a committed record (that retention kept).
	Found bool
	// Record is the key's latest committed record when Found: its
	// Partition, Offset, Timestamp, Key, Value and Headers.
	Record Record
	// HighWatermark is the partition's high watermark at the lookup.
	HighWatermark int64
}

// GetKey returns the latest committed record of key in a key-indexed topic,
// answered by the partition's leader from its key index without a scan. The
// partition is the one the default partitioner gives the key (Kafka's
// murmur2 hash), or partition when it is not AnyPartition. A topic without
// the key index fails with ErrInvalidRequest.
func (c *Client) GetKey(ctx context.Context, topic string, partition int32, key []byte) (KeyValue, error) {
	if len(key) == 0 {
		return KeyValue{}, fmt.Errorf("get key of %s: the key is empty", topic)
	}
	if partition == AnyPartition {
		tm, gen := c.meta.topic(topic)
		if tm == nil || len(tm.parts) == 0 {
			if err := c.refresh(ctx, gen); err != nil {
				return KeyValue{}, fmt.Errorf("get key of %s: %w", topic, err)
			}
			if tm, _ = c.meta.topic(topic); tm == nil || len(tm.parts) == 0 {
				return KeyValue{}, fmt.Errorf("get key of %s: %w", topic, ErrUnknownTopic)
			}
		}
		partition = int32(KeyPartition(key, len(tm.parts)))
	}
	req := &skeinv1.GetKeyRequest{Topic: topic, Partition: partition, Key: key, LeaderEpoch: -1}
	var resp *skeinv1.GetKeyResponse
	err := c.callLeader(ctx, topic, partition, func(ctx context.Context, cl skeinv1.SkeinClient, _ int32) error {
		var err error
		resp, err = cl.GetKey(ctx, req)
		return err
	})
	if err != nil {
		return KeyValue{}, fmt.Errorf("get key %q of %s/%d: %w", key, topic, partition, err)
	}
	kv := KeyValue{Found: resp.GetFound(), HighWatermark: resp.GetHighWatermark()}
	if kv.Found {
		kv.Record = Record{Topic: topic, Partition: partition, Offset: resp.GetOffset(), Key: key,
			Timestamp: time.UnixMilli(resp.GetTimestampMs()), LeaderEpoch: -1}
		if !resp.GetValueNull() {
			kv.Record.Value = resp.GetValue()
			if kv.Record.Value == nil {
				kv.Record.Value = []byte{}
			}
		}
		for _, h := range resp.GetHeaders() {
			kv.Record.Headers = append(kv.Record.Headers, Header{Key: h.GetKey(), Value: h.GetValue()})
		}
	}
	return kv, nil
}
