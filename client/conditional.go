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
// (see the package example). Writers coordinate without any lock.
//
// ProduceIf is synchronous and independent of the asynchronous pipeline:
// it is not ordered with records queued by Produce. It retries retriable
// failures (and timeouts, which the expected offset makes safe: a first
// attempt that did land makes the retry fail with a mismatch, whose error
// then says so) until ctx is done or DeliveryTimeout has passed. It waits
// for acks=leader at least, even if the producer uses AcksNone.
func (p *Producer) ProduceIf(ctx context.Context, topic string, partition int32, expectedOffset int64, recs ...*Record) (int64, error) {
	if len(recs) == 0 {
		return -1, fmt.Errorf("conditional append to %s/%d: no records", topic, partition)
	}
	if p.isClosing() {
		return -1, ErrClosed
	}
	b := batch.NewBuilder(p.cfg.compression)
	var br batch.Record
	now := time.Now()
	for _, r := range recs {
		if r.Timestamp.IsZero() {
			r.Timestamp = now
		}
		r.toBatch(&br)
		b.Add(&br)
	}
	if b.Size() > batch.MaxBatchBytes {
		return -1, &Error{Code: codes.InvalidArgument, Reason: skeinv1.ErrorReason_RECORD_TOO_LARGE, LeaderID: -1,
			Message: fmt.Sprintf("conditional append of %d records is %d bytes, over the %d-byte batch limit", len(recs), b.Size(), batch.MaxBatchBytes)}
	}
	wire, err := b.Build(nil)
	if err != nil {
		return -1, fmt.Errorf("conditional append to %s/%d: %w", topic, partition, err)
	}
	acks := p.cfg.acks
	if acks == AcksNone {
		acks = AcksLeader
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.deliveryTimeout)
	defer cancel()
	stop := context.AfterFunc(closeContext{p.closeCh}, cancel)
	defer stop()

	uncertain := false // an earlier attempt may have been appended
	for attempt := 1; ; attempt++ {
		l, err := p.c.leader(ctx, topic, partition)
		if err != nil {
			return -1, fmt.Errorf("conditional append to %s/%d: %w", topic, partition, err)
		}
		req := &skeinv1.ProduceRequest{
			Topic:          topic,
			Partition:      partition,
			Acks:           acks.proto(),
			TimeoutMs:      int32(min(p.cfg.requestTimeout.Milliseconds(), 1<<31-1)),
			LeaderEpoch:    l.epoch,
			ExpectedOffset: &expectedOffset,
			Batch:          wire,
		}
		var base int64
		err = func() error {
			cl, err := p.c.conn(l.addr)
			if err != nil {
				return err
			}
			actx, acancel := context.WithTimeout(ctx, p.cfg.requestTimeout)
			defer acancel()
			resp, err := cl.Produce(actx, req)
			if err != nil {
				return fromRPC(err)
			}
			if d := resp.GetError(); d != nil {
				return errorFromDetail(d)
			}
			base = resp.GetBaseOffset()
			return nil
		}()
		if err == nil {
			for i, r := range recs {
				r.Partition, r.Offset = partition, base+int64(i)
			}
			return base, nil
		}
		if errors.Is(err, ErrOffsetMismatch) {
			if uncertain {
				return -1, fmt.Errorf("conditional append to %s/%d: %w (an earlier attempt timed out and may have appended these records at offset %d)", topic, partition, err, expectedOffset)
			}
			return -1, fmt.Errorf("conditional append to %s/%d at offset %d: %w", topic, partition, expectedOffset, err)
		}
		if ctx.Err() != nil {
			if p.isClosing() {
				return -1, ErrClosed
			}
			return -1, fmt.Errorf("conditional append to %s/%d: %w (last error: %w)", topic, partition, ctx.Err(), err)
		}
		timeout := isTimeout(err)
		if !IsRetriable(err) && !timeout {
			return -1, fmt.Errorf("conditional append to %s/%d: %w", topic, partition, err)
		}
		if timeout || isTransport(err) {
			uncertain = true
		}
		if !p.c.meta.applyHint(topic, partition, err) {
			p.c.refreshAsync(l.gen)
		}
		t := time.NewTimer(backoff(p.cfg.retryBackoff, attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			if p.isClosing() {
				return -1, ErrClosed
			}
			return -1, fmt.Errorf("conditional append to %s/%d: %w (last error: %w)", topic, partition, ctx.Err(), err)
		case <-t.C:
		}
	}
}
