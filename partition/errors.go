package partition

import (
	"errors"
	"fmt"
)

// Sentinel errors. Typed errors below wrap one of these, so callers can use
// errors.Is for the kind and errors.As for the fields.
var (
	// ErrClosed: the partition is closed (broker shutting down, topic deleted).
	ErrClosed = errors.New("partition closed")
	// ErrNotLeader: this replica is not the leader; see *NotLeaderError.
	ErrNotLeader = errors.New("not the leader for this partition")
	// ErrFencedEpoch: the request names an older leader epoch.
	ErrFencedEpoch = errors.New("fenced leader epoch")
	// ErrUnknownEpoch: the request names a newer leader epoch than this replica knows.
	ErrUnknownEpoch = errors.New("unknown leader epoch")
	// ErrOffsetMismatch: a conditional append's expected offset differs from the LEO.
	ErrOffsetMismatch = errors.New("expected offset does not match the log end offset")
	// ErrOffsetOutOfRange: a read outside the log; see *OutOfRangeError.
	ErrOffsetOutOfRange = errors.New("offset out of range")
	// ErrInvalidBatch: the batch is malformed (wraps the batch package's reason).
	ErrInvalidBatch = errors.New("invalid record batch")
	// ErrRecordTooLarge: a record exceeds max.record.bytes.
	ErrRecordTooLarge = errors.New("record too large")
	// ErrStorage: the log failed a write; the request was not appended.
	ErrStorage = errors.New("storage error")
	// ErrNotEnoughReplicas: the ISR is smaller than min.insync.replicas.
	ErrNotEnoughReplicas = errors.New("not enough in-sync replicas")
	// ErrTimeout: acks=all timed out waiting for replication; the batch was
	// appended on the leader and may yet be committed or truncated.
	ErrTimeout = errors.New("timed out waiting for replication")
	// ErrOutOfOrderSequence: an idempotent producer's batch does not follow
	// its previous one; see *SequenceError. Nothing was appended.
	ErrOutOfOrderSequence = errors.New("out of order sequence")
	// ErrProducerFenced: a batch of an older producer epoch than the
	// partition has seen for its producer id; see *FencedError.
	ErrProducerFenced = errors.New("producer fenced")
)

// NotLeaderError says which replica leads, when known.
type NotLeaderError struct {
	LeaderID    int32 // -1 when unknown
	LeaderEpoch int32
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID < 0 {
		return fmt.Sprintf("%v (no leader known, epoch %d)", ErrNotLeader, e.LeaderEpoch)
	}
	return fmt.Sprintf("%v (leader is broker %d, epoch %d)", ErrNotLeader, e.LeaderID, e.LeaderEpoch)
}
func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// EpochError is a request whose leader epoch is not the partition's.
type EpochError struct {
	Requested, Current int32
}

func (e *EpochError) Error() string {
	if e.Requested < e.Current {
		return fmt.Sprintf("%v: request epoch %d, current %d", ErrFencedEpoch, e.Requested, e.Current)
	}
	return fmt.Sprintf("%v: request epoch %d, current %d", ErrUnknownEpoch, e.Requested, e.Current)
}
func (e *EpochError) Unwrap() error {
	if e.Requested < e.Current {
		return ErrFencedEpoch
	}
	return ErrUnknownEpoch
}

// OffsetMismatchError carries the actual next offset of a failed
// conditional append.
type OffsetMismatchError struct {
	Expected, Actual int64
}

func (e *OffsetMismatchError) Error() string {
	return fmt.Sprintf("%v: expected %d, log end offset is %d", ErrOffsetMismatch, e.Expected, e.Actual)
}
func (e *OffsetMismatchError) Unwrap() error { return ErrOffsetMismatch }

// OutOfRangeError names the valid range of a read.
type OutOfRangeError struct {
	Offset         int64
	LogStartOffset int64
	HighWatermark  int64
}

func (e *OutOfRangeError) Error() string {
	return fmt.Sprintf("%v: offset %d is outside [%d, %d] (log start offset, high watermark)",
		ErrOffsetOutOfRange, e.Offset, e.LogStartOffset, e.HighWatermark)
}
func (e *OutOfRangeError) Unwrap() error { return ErrOffsetOutOfRange }

// SequenceError is an idempotent producer's batch whose base sequence is not
// the one the partition expects.
type SequenceError struct {
	ProducerID int64
	Epoch      int16
	Got        int32 // the batch's base sequence
	Expected   int32
	// Unknown: the partition has no state for the producer id (never seen,
	// or expired after being idle), so only sequence 0 is accepted.
	Unknown bool
	// NewEpoch: the batch starts an epoch newer than the partition has
	// seen, which must start at sequence 0.
	NewEpoch bool
}

func (e *SequenceError) Error() string {
	switch {
	case e.Unknown:
		return fmt.Sprintf("%v: the partition has no state for producer id %d (new, or expired after being idle), so its first batch must have sequence 0, not %d",
			ErrOutOfOrderSequence, e.ProducerID, e.Got)
	case e.NewEpoch:
		return fmt.Sprintf("%v: producer id %d starts epoch %d at sequence %d; a new epoch must start at sequence 0",
			ErrOutOfOrderSequence, e.ProducerID, e.Epoch, e.Got)
	}
	return fmt.Sprintf("%v: producer id %d epoch %d sent sequence %d, expected sequence %d (a batch before it is missing)",
		ErrOutOfOrderSequence, e.ProducerID, e.Epoch, e.Got, e.Expected)
}
func (e *SequenceError) Unwrap() error { return ErrOutOfOrderSequence }

// FencedError is a batch of an older producer epoch than the partition has
// seen for its producer id: a newer instance of the producer exists.
type FencedError struct {
	ProducerID     int64
	Epoch, Current int16
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("%v: producer id %d sent epoch %d, but epoch %d of it has written to this partition", ErrProducerFenced, e.ProducerID, e.Epoch, e.Current)
}
func (e *FencedError) Unwrap() error { return ErrProducerFenced }
