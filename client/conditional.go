package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/proto/skeinv1"
)

// ProduceIf appends recs to one partition as ONE batch, only if the
// partition's next offset (log end offset) is expectedOffset at that moment:
// a conditional append, checked by the leader under its append path. It
// returns the offset of the first record, and sets each record's Partition
// and Offset.
//
// On a mismatch nothing is appended and the error matches
// ErrOffsetMismatch; errors.As gives the *Error whose NextOffset is the
// partition's actual next offset. That is the optimistic-concurrency
// primitive: read the partition to its end, decide, append with the
// expected offset, and on a mismatch read the new records and decide again
// (see the package examples). Writers coordinate without any lock.
//
// The batch goes through the partition's pipeline, after every record
// produced to the partition before the call (the open batch is sent at
// once rather than lingering), and is retried like any batch until ctx is
// done or DeliveryTimeout has passed. With the idempotent producer (the
// default) it carries the producer id and a sequence, so a retry after a
// timeout or a lost connection whose first attempt did land returns that
// attempt's offsets, not a mismatch. Without it, timeouts are still retried
// (the expected offset makes that safe). Either way, a failure after an
// attempt with no answer matches ErrMaybeAppended: the records may be at
// the expected offset (the idempotent producer's deduplication does not
// survive a reset of its epoch), so read before deciding again. It
// waits for acks=leader at least, even if the producer uses AcksNone.
//
// If ctx ends first, ProduceIf returns ctx's error and the batch may still
// be appended. Like Flush, it must not be called from a Produce callback.
func (p *Producer) ProduceIf(ctx context.Context, topic string, partition int32, expectedOffset int64, recs ...*Record) (int64, error) {
	if expectedOffset < 0 {
		return -1, fmt.Errorf("conditional append to %s/%d: expected offset %d: offsets are 0 or more", topic, partition, expectedOffset)
	}
	return p.produceCond(ctx, topic, partition, condition{expected: expectedOffset}, recs)
}

// condition is what a conditional batch expects: the partition's next
// offset (expected >= 0), or the last offsets of keys.
type condition struct {
	expected int64
	keys     []KeyExpectation
}

// produceCond appends recs as one conditional batch (ProduceIf,
// ProduceIfKeys) and waits for its outcome.
func (p *Producer) produceCond(ctx context.Context, topic string, partition int32, cond condition, recs []*Record) (int64, error) {
	if len(recs) == 0 {
		return -1, fmt.Errorf("conditional append to %s/%d: no records", topic, partition)
	}
	if p.isClosing() {
		return -1, ErrClosed
	}
	if err := p.fatalErr(); err != nil {
		return -1, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(closeContext{p.closeCh}, cancel)
	defer stop()
	tm, err := p.topicMeta(ctx, topic)
	if err != nil {
		return -1, fmt.Errorf("conditional append to %s/%d: %w", topic, partition, err)
	}
	if partition == AnyPartition {
		if partition, err = p.keysPartition(topic, len(tm.parts), cond.keys, recs); err != nil {
			return -1, err
		}
	}
	if n := len(tm.parts); partition < 0 || int(partition) >= n {
		return -1, fmt.Errorf("conditional append: %w", unknownPartition(topic, partition, n))
	}
	pb, done, err := p.condBatch(recs, cond)
	if err != nil {
		return -1, err
	}
	p.begin()
	p.life.RLock()
	if p.closing {
		p.life.RUnlock()
		p.release(0, 1)
		pb.b.Reset()
		p.builders.Put(pb.b)
		return -1, ErrClosed
	}
	t := p.topic(topic)
	t.mu.Lock()
	t.part(p, partition).addConditional(pb)
	t.mu.Unlock()
	p.life.RUnlock()

	var res condResult
	select {
	case res = <-done:
	case <-ctx.Done():
		if p.isClosing() {
			return -1, ErrClosed
		}
		if cond.expected >= 0 {
			return -1, fmt.Errorf("conditional append to %s/%d: %w; the records may still be appended at offset %d", topic, partition, ctx.Err(), cond.expected)
		}
		return -1, fmt.Errorf("conditional append to %s/%d: %w; the records may still be appended", topic, partition, ctx.Err())
	}
	return condOutcome(topic, partition, cond, res, recs)
}

// condBatch builds the batch of a conditional append, and the channel its
// outcome comes on.
func (p *Producer) condBatch(recs []*Record, cond condition) (*pbatch, chan condResult, error) {
	b := p.builders.Get().(*batch.Builder)
	var br batch.Record
	now := time.Now()
	for _, r := range recs {
		if r.Timestamp.IsZero() {
			r.Timestamp = now
		}
		r.toBatch(&br)
		b.Add(&br)
	}
	if size := b.Size(); size > batch.MaxBatchBytes {
		b.Reset()
		p.builders.Put(b)
		return nil, nil, &Error{code: codes.InvalidArgument, reason: skeinv1.ErrorReason_RECORD_TOO_LARGE, LeaderID: -1,
			Message: fmt.Sprintf("conditional append of %d records is %d bytes, over the %d-byte batch limit", len(recs), size, batch.MaxBatchBytes)}
	}
	done := make(chan condResult, 1)
	return &pbatch{
		b:            b,
		full:         true,
		created:      now,
		producerID:   batch.NoProducerID,
		baseSequence: batch.NoSequence,
		expected:     cond.expected,
		keyExps:      cond.keys,
		notify:       done,
	}, done, nil
}

// condOutcome is ProduceIf's answer from the batch's outcome.
func condOutcome(topic string, partition int32, cond condition, res condResult, recs []*Record) (int64, error) {
	err := res.err
	switch {
	case err == nil:
		for i, r := range recs {
			r.Partition, r.Offset, r.LeaderEpoch = partition, res.base+int64(i), res.epoch
		}
		return res.base, nil
	case errors.Is(err, ErrOffsetMismatch) && res.uncertain:
		// The idempotent producer's deduplication does not survive a reset
		// of its epoch, so a mismatch after an unanswered attempt cannot
		// tell whether that attempt landed.
		return -1, fmt.Errorf("conditional append to %s/%d: %w (an earlier attempt timed out and may have appended these records at offset %d)", topic, partition, err, cond.expected)
	case errors.Is(err, ErrOffsetMismatch):
		return -1, fmt.Errorf("conditional append to %s/%d at offset %d: %w", topic, partition, cond.expected, err)
	case errors.Is(err, ErrKeyOffsetMismatch):
		return -1, fmt.Errorf("conditional append to %s/%d: %w", topic, partition, err)
	case errors.Is(err, ErrClosed):
		return -1, err
	}
	return -1, fmt.Errorf("conditional append to %s/%d: %w", topic, partition, err)
}
