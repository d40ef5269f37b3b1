package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/proto/skeinv1"
)

// Sentinel errors. Errors returned by the client are *Error values (or wrap
// one) that match these with errors.Is; use errors.As to read the fields of
// the *Error, such as the leader hint of ErrNotLeader or the actual next offset
// of ErrOffsetMismatch.
var (
	// ErrNotLeader: the broker does not lead the partition. Retriable.
	ErrNotLeader = errors.New("not the partition leader")
	// ErrFencedLeaderEpoch: the request named an older leader epoch. Retriable
	// after a metadata refresh.
	ErrFencedLeaderEpoch = errors.New("fenced leader epoch")
	// ErrUnknownLeaderEpoch: the request named a leader epoch newer than the
	// broker knows. Retriable.
	ErrUnknownLeaderEpoch = errors.New("unknown leader epoch")
	// ErrOffsetMismatch: a conditional append found another next offset;
	// *Error.NextOffset holds it.
	ErrOffsetMismatch = errors.New("offset mismatch")
	// ErrNotEnoughReplicas: fewer in-sync replicas than min.insync.replicas.
	// Retriable.
	ErrNotEnoughReplicas = errors.New("not enough in-sync replicas")
	// ErrOffsetOutOfRange: the offset is outside [LogStartOffset,
	// HighWatermark] of the *Error.
	ErrOffsetOutOfRange = errors.New("offset out of range")
	// ErrUnknownTopic: the topic does not exist.
	ErrUnknownTopic = errors.New("unknown topic")
	// ErrUnknownPartition: the partition does not exist.
	ErrUnknownPartition = errors.New("unknown partition")
	// ErrInvalidRecord: the broker rejected the batch as malformed.
	ErrInvalidRecord = errors.New("invalid record")
	// ErrRecordTooLarge: a record is over the topic's max record bytes (or the
	// producer's batch size).
	ErrRecordTooLarge = errors.New("record too large")
	// ErrInvalidTopic: the topic name or configuration is invalid.
	ErrInvalidTopic = errors.New("invalid topic")
	// ErrTopicExists: CreateTopic found the topic already there.
	ErrTopicExists = errors.New("topic already exists")
	// ErrUnavailable: the broker cannot serve now, or the connection failed.
	// Retriable.
	ErrUnavailable = errors.New("unavailable")
	// ErrTimedOut: the request timed out; a write may or may not have been
	// appended. Retriable only for an idempotent producer.
	ErrTimedOut = errors.New("timed out")
	// ErrInvalidRequest: the broker rejected the request as malformed.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrOutOfOrderSequence: an idempotent producer's batch did not follow
	// its previous one on the partition (a batch before it failed, or the
	// partition forgot the producer). The producer handles it by bumping
	// its epoch and resending from sequence 0; callers see it only from
	// requests of their own.
	ErrOutOfOrderSequence = errors.New("out of order sequence")
	// ErrProducerFenced: a newer epoch of the producer's id has written to
	// the partition, so this producer instance is a zombie. Fatal: every
	// pending and later record of the producer fails with it.
	ErrProducerFenced = errors.New("producer fenced")

	// ErrMaybeAppended: a produce failed after an attempt that got no
	// definite answer (a timeout, a lost connection), so its records may
	// have been appended, and may be read later. A produce error that does
	// not match it is the broker's word that nothing was appended.
	ErrMaybeAppended = errors.New("records may have been appended")

	// ErrClosed: the client, producer or consumer is closed.
	ErrClosed = errors.New("skein client closed")
	// ErrDeliveryTimeout: the producer gave up on a record after its delivery
	// timeout. The error also wraps the last error seen for the record, if
	// any.
	ErrDeliveryTimeout = errors.New("delivery timeout")
)

// reasonSentinels maps each reason to the sentinel it matches.
var reasonSentinels = map[skeinv1.ErrorReason]error{
	skeinv1.ErrorReason_NOT_LEADER:            ErrNotLeader,
	skeinv1.ErrorReason_FENCED_LEADER_EPOCH:   ErrFencedLeaderEpoch,
	skeinv1.ErrorReason_UNKNOWN_LEADER_EPOCH:  ErrUnknownLeaderEpoch,
	skeinv1.ErrorReason_OFFSET_MISMATCH:       ErrOffsetMismatch,
	skeinv1.ErrorReason_NOT_ENOUGH_REPLICAS:   ErrNotEnoughReplicas,
	skeinv1.ErrorReason_OFFSET_OUT_OF_RANGE:   ErrOffsetOutOfRange,
	skeinv1.ErrorReason_UNKNOWN_TOPIC:         ErrUnknownTopic,
	skeinv1.ErrorReason_UNKNOWN_PARTITION:     ErrUnknownPartition,
	skeinv1.ErrorReason_INVALID_RECORD:        ErrInvalidRecord,
	skeinv1.ErrorReason_RECORD_TOO_LARGE:      ErrRecordTooLarge,
	skeinv1.ErrorReason_INVALID_TOPIC:         ErrInvalidTopic,
	skeinv1.ErrorReason_TOPIC_EXISTS:          ErrTopicExists,
	skeinv1.ErrorReason_UNAVAILABLE:           ErrUnavailable,
	skeinv1.ErrorReason_TIMED_OUT:             ErrTimedOut,
	skeinv1.ErrorReason_INVALID_REQUEST:       ErrInvalidRequest,
	skeinv1.ErrorReason_OUT_OF_ORDER_SEQUENCE: ErrOutOfOrderSequence,
	skeinv1.ErrorReason_PRODUCER_FENCED:       ErrProducerFenced,
}

// Error is a failure reported by a broker, or a transport failure on the way
// to one (Reason unspecified, Code Unavailable, DeadlineExceeded, ...). It
// matches the sentinel of its Reason with errors.Is; when the Reason is
// unspecified, Code Unavailable matches ErrUnavailable, DeadlineExceeded
// matches ErrTimedOut and context.DeadlineExceeded, Canceled matches
// context.Canceled and AlreadyExists matches ErrTopicExists.
type Error struct {
	Code    codes.Code
	Reason  skeinv1.ErrorReason
	Message string
	// NotLeader: the leader, when the broker knows it (LeaderID -1 else).
	LeaderID    int32
	LeaderAddr  string
	LeaderEpoch int32
	// OffsetMismatch: the partition's actual next offset.
	NextOffset int64
	// OffsetOutOfRange: the valid range.
	LogStartOffset int64
	HighWatermark  int64
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Reason != skeinv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		b.WriteString(strings.ToLower(strings.ReplaceAll(e.Reason.String(), "_", " ")))
	} else {
		b.WriteString(e.Code.String())
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	switch e.Reason {
	case skeinv1.ErrorReason_NOT_LEADER:
		if e.LeaderAddr != "" {
			fmt.Fprintf(&b, " (leader is broker %d at %s, epoch %d)", e.LeaderID, e.LeaderAddr, e.LeaderEpoch)
		}
	case skeinv1.ErrorReason_OFFSET_MISMATCH:
		fmt.Fprintf(&b, " (next offset is %d)", e.NextOffset)
	case skeinv1.ErrorReason_OFFSET_OUT_OF_RANGE:
		fmt.Fprintf(&b, " (valid offsets are %d to %d)", e.LogStartOffset, e.HighWatermark)
	}
	return b.String()
}

// Is matches the sentinel of e's Reason (see the type's doc).
func (e *Error) Is(target error) bool {
	if e.Reason != skeinv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return reasonSentinels[e.Reason] == target
	}
	switch e.Code {
	case codes.Unavailable:
		return target == ErrUnavailable
	case codes.DeadlineExceeded:
		return target == ErrTimedOut || target == context.DeadlineExceeded
	case codes.Canceled:
		return target == context.Canceled
	case codes.AlreadyExists:
		return target == ErrTopicExists
	}
	return false
}

// errorFromDetail is the one decoding of an ErrorDetail into a Go error, used
// for unary status details and for ProduceResponse.error alike. It returns
// nil for a nil detail.
func errorFromDetail(d *skeinv1.ErrorDetail) *Error {
	if d == nil {
		return nil
	}
	code := codes.Code(d.GetCode())
	if code == codes.OK {
		// A detail always describes a failure; a broker that left the code
		// unset still failed the request.
		code = codes.Unknown
	}
	return &Error{
		Code:           code,
		Reason:         d.GetReason(),
		Message:        d.GetMessage(),
		LeaderID:       d.GetLeaderId(),
		LeaderAddr:     d.GetLeaderAddr(),
		LeaderEpoch:    d.GetLeaderEpoch(),
		NextOffset:     d.GetNextOffset(),
		LogStartOffset: d.GetLogStartOffset(),
		HighWatermark:  d.GetHighWatermark(),
	}
}

// Detail is the one encoding of an *Error into the wire ErrorDetail; the
// inverse of the decoding the client applies to answers.
func (e *Error) Detail() *skeinv1.ErrorDetail {
	return &skeinv1.ErrorDetail{
		Code:           uint32(e.Code),
		Message:        e.Message,
		Reason:         e.Reason,
		LeaderId:       e.LeaderID,
		LeaderAddr:     e.LeaderAddr,
		LeaderEpoch:    e.LeaderEpoch,
		NextOffset:     e.NextOffset,
		LogStartOffset: e.LogStartOffset,
		HighWatermark:  e.HighWatermark,
	}
}

// GRPCStatus renders e as a gRPC status carrying its ErrorDetail, the form a
// broker returns from a unary RPC. status.FromError and status.Code use it.
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(e.Code, e.Message)
	if ds, err := st.WithDetails(e.Detail()); err == nil {
		return ds
	}
	return st
}

// fromRPC converts an error returned by a gRPC call into the client's error
// form: a *Error decoded from the status's ErrorDetail when present, else a
// *Error holding the status code and message (a transport failure or a
// status without details). Context errors of the caller stay what they are so
// errors.Is(err, context.Canceled) keeps working; io.EOF passes through.
func fromRPC(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if _, ok := status.FromError(err); !ok {
			return err
		}
	}
	st, ok := status.FromError(err)
	if !ok {
		return &Error{Code: codes.Unknown, Message: err.Error()}
	}
	for _, d := range st.Details() {
		if ed, ok := d.(*skeinv1.ErrorDetail); ok {
			e := errorFromDetail(ed)
			if e.Message == "" {
				e.Message = st.Message()
			}
			if ed.GetCode() == 0 {
				e.Code = st.Code()
			}
			return e
		}
	}
	return &Error{Code: st.Code(), Message: st.Message(), LeaderID: -1}
}

// IsRetriable reports whether a request that failed with err can be sent
// again unchanged, after a metadata refresh and a backoff: NotLeader,
// FencedLeaderEpoch, UnknownLeaderEpoch, NotEnoughReplicas, Unavailable, and
// transport failures (code Unavailable, a broken stream). TimedOut is not: the
// write may have been appended, so only an idempotent producer may resend it
// (and does). OutOfOrderSequence is not either: the idempotent producer
// resends such a batch only after resetting its sequences.
func IsRetriable(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Reason {
	case skeinv1.ErrorReason_NOT_LEADER,
		skeinv1.ErrorReason_FENCED_LEADER_EPOCH,
		skeinv1.ErrorReason_UNKNOWN_LEADER_EPOCH,
		skeinv1.ErrorReason_NOT_ENOUGH_REPLICAS,
		skeinv1.ErrorReason_UNAVAILABLE:
		return true
	case skeinv1.ErrorReason_ERROR_REASON_UNSPECIFIED:
		return e.Code == codes.Unavailable
	}
	return false
}

// isTimeout reports whether err says a write's outcome is unknown because it
// timed out (broker TIMED_OUT, or a deadline on the way).
func isTimeout(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Reason == skeinv1.ErrorReason_TIMED_OUT ||
		(e.Reason == skeinv1.ErrorReason_ERROR_REASON_UNSPECIFIED && e.Code == codes.DeadlineExceeded)
}

// transportError builds the error for a connection or stream failure: code
// Unavailable, so it is retriable.
func transportError(addr string, err error) *Error {
	msg := "connection to " + addr + " failed"
	if err != nil {
		if st, ok := status.FromError(err); ok {
			msg += ": " + st.Message()
		} else {
			msg += ": " + err.Error()
		}
	}
	return &Error{Code: codes.Unavailable, Message: msg, LeaderID: -1}
}
