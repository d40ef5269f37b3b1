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
