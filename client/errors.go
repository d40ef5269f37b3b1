package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/proto/skeinv1"
)

// Errors returned by the client are *Error values, or wrap one, or wrap one
// of the client's own sentinels below; match them with errors.Is, and use
// errors.As to read the fields of an *Error (the leader hint of
// ErrNotLeader, the actual next offset of ErrOffsetMismatch, the valid range
// of ErrOffsetOutOfRange).
//
// The sentinels fall in four classes (see docs/client.md for the table):
//
//   - Retriable (IsRetriable reports true): the cluster is moving or
//     briefly short of replicas, and the same request may succeed later.
//     The producer, the consumer and the admin calls retry them by
//     themselves, with metadata refreshes and backoff, so you see one only
//     once a timeout ran out (wrapped in ErrDeliveryTimeout, or with the
//     context's error).
//   - Indefinite: ErrTimedOut, and every produce error that matches
//     ErrMaybeAppended: the request may or may not have been applied. The
//     idempotent producer retries them (a retry cannot append twice).
//   - Fatal to the request: the request itself is wrong or lost a race
//     (ErrOffsetMismatch, ErrRecordTooLarge, ErrUnknownTopic, ...). Sending
//     it again unchanged fails again; nothing was applied.
//   - Fatal to the producer: ErrProducerFenced. Every pending and later
//     record of that producer fails with it; make a new producer.
//
// ErrClosed and ErrDeliveryTimeout come from the client itself.
var (
	// ErrNotLeader: the broker does not lead the partition. Retriable.
	ErrNotLeader = errors.New("not the partition leader")
	// ErrFencedLeaderEpoch: the request named an older leader epoch than the
	// broker's. Retriable after a metadata refresh.
	ErrFencedLeaderEpoch = errors.New("fenced leader epoch")
	// ErrUnknownLeaderEpoch: the request named a leader epoch newer than the
	// broker knows. Retriable.
	ErrUnknownLeaderEpoch = errors.New("unknown leader epoch")
	// ErrNotEnoughReplicas: fewer in-sync replicas than min.insync.replicas,
	// so an acks=all write was refused. Retriable.
	ErrNotEnoughReplicas = errors.New("not enough in-sync replicas")
	// ErrUnavailable: the broker cannot serve now (starting, shutting down,
	// no controller), or the connection to it failed. Retriable.
	ErrUnavailable = errors.New("unavailable")

	// ErrTimedOut: the request timed out; a write may or may not have been
	// applied. Indefinite: the idempotent producer retries it.
	ErrTimedOut = errors.New("timed out")
	// ErrMaybeAppended: a produce failed after an attempt that got no
	// definite answer (a timeout, a lost connection), so its records may
	// have been appended, and may be read later. A produce error that does
	// not match it is the broker's word that nothing was appended.
	ErrMaybeAppended = errors.New("records may have been appended")

	// ErrOffsetMismatch: a conditional append found another next offset;
	// *Error.NextOffset holds it. Fatal to the request.
	ErrOffsetMismatch = errors.New("offset mismatch")
	// ErrKeyOffsetMismatch: a per-key conditional append (ProduceIfKeys)
	// found a key's last offset other than expected; *Error.KeyOffsets
	// holds each failing key's actual last offset. Fatal to the request.
	ErrKeyOffsetMismatch = errors.New("key offset mismatch")
	// ErrOffsetOutOfRange: the offset is outside [LogStartOffset,
	// HighWatermark] of the *Error. Fatal to the request.
	ErrOffsetOutOfRange = errors.New("offset out of range")
	// ErrUnknownTopic: the topic does not exist. Fatal to the request.
	ErrUnknownTopic = errors.New("unknown topic")
	// ErrUnknownPartition: the partition does not exist. Fatal to the
	// request.
	ErrUnknownPartition = errors.New("unknown partition")
	// ErrInvalidRecord: the broker rejected the batch as malformed. Fatal to
	// the request.
	ErrInvalidRecord = errors.New("invalid record")
	// ErrRecordTooLarge: a record is over the topic's max record bytes (or
	// the producer's batch size). Fatal to the request.
	ErrRecordTooLarge = errors.New("record too large")
	// ErrInvalidTopic: the topic name or configuration is invalid. Fatal to
	// the request.
	ErrInvalidTopic = errors.New("invalid topic")
	// ErrTopicExists: CreateTopic found the topic already there. Fatal to
	// the request.
	ErrTopicExists = errors.New("topic already exists")
	// ErrInvalidRequest: the broker rejected the request as malformed. Fatal
	// to the request.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrOutOfOrderSequence: an idempotent producer's batch did not follow
	// its previous one on the partition (a batch before it failed, or the
	// partition forgot the producer). Nothing was appended. The producer
	// handles it by bumping its epoch and resending from sequence 0; you
	// see it only when the batch's delivery timeout ran out first.
	ErrOutOfOrderSequence = errors.New("out of order sequence")

	// ErrProducerFenced: a newer epoch of the producer's id has written to
	// the partition, so this producer instance is a zombie. Fatal to the
	// producer: every pending and later record of it fails with it.
	ErrProducerFenced = errors.New("producer fenced")

	// ErrClosed: the client, producer or consumer is closed.
	ErrClosed = errors.New("skein client closed")
	// ErrDeliveryTimeout: the producer gave up on a record after its
	// delivery timeout. The error also wraps the last error seen for the
	// record, if any.
	ErrDeliveryTimeout = errors.New("delivery timeout")
	// ErrNotAuthorized: the broker's ACLs do not allow the principal the
	// request's operation on its topic, group or the cluster (the message
	// names all three); nothing was changed. Not retriable.
	ErrNotAuthorized = errors.New("not authorized")
	// ErrAuthentication: the user name or password was refused, or a
	// password was sent without TLS to a broker that is not on this host.
	ErrAuthentication = errors.New("authentication failed")
)

// reasonSentinels maps each reason to the sentinel it matches.
var reasonSentinels = map[skeinv1.ErrorReason]error{
	skeinv1.ErrorReason_NOT_LEADER:            ErrNotLeader,
	skeinv1.ErrorReason_FENCED_LEADER_EPOCH:   ErrFencedLeaderEpoch,
	skeinv1.ErrorReason_UNKNOWN_LEADER_EPOCH:  ErrUnknownLeaderEpoch,
	skeinv1.ErrorReason_OFFSET_MISMATCH:       ErrOffsetMismatch,
	skeinv1.ErrorReason_KEY_OFFSET_MISMATCH:   ErrKeyOffsetMismatch,
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

// Error is a failure reported by a broker, or by the client's own checks,
// or a failure on the way to a broker (a refused or broken connection, no
// answer in time, a gRPC status without Skein's detail).
//
// It matches its class's sentinel with errors.Is (Kind returns it). A
// failure on the way has no Skein class of its own: it matches
// ErrUnavailable when the broker could not be reached or the connection
// broke, and ErrTimedOut and context.DeadlineExceeded when no answer came in
// time. Use errors.As to read the fields that go with some classes.
type Error struct {
	// Message says what failed, in the words of the broker or the client.
	Message string
	// LeaderID, LeaderAddr and LeaderEpoch: with ErrNotLeader, the
	// partition's leader when the broker knows it (LeaderID -1 else).
	LeaderID    int32
	LeaderAddr  string
	LeaderEpoch int32
	// NextOffset: with ErrOffsetMismatch, the partition's actual next
	// offset.
	NextOffset int64
	// KeyOffsets: with ErrKeyOffsetMismatch, each failing key and its
	// actual last offset (-1: the key has no record).
	KeyOffsets []KeyExpectation
	// LogStartOffset and HighWatermark: with ErrOffsetOutOfRange, the
	// partition's readable range.
	LogStartOffset int64
	HighWatermark  int64
	// RetryAfter: the broker refused the request for now (a budget is used
	// up) and asks to wait at least this long before sending it again.
	// The client's retries wait at least this long. 0 when not given.
	RetryAfter time.Duration

	code   codes.Code          // the gRPC status code
	reason skeinv1.ErrorReason // unspecified for failures on the way
}

// Error renders the class, the message and the class's details, e.g.
// "offset mismatch: ... (next offset is 7)".
func (e *Error) Error() string {
	var b strings.Builder
	if e.reason != skeinv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		b.WriteString(strings.ToLower(strings.ReplaceAll(e.reason.String(), "_", " ")))
	} else {
		b.WriteString(e.code.String())
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	switch e.reason {
	case skeinv1.ErrorReason_NOT_LEADER:
		if e.LeaderAddr != "" {
			fmt.Fprintf(&b, " (leader is broker %d at %s, epoch %d)", e.LeaderID, e.LeaderAddr, e.LeaderEpoch)
		}
	case skeinv1.ErrorReason_OFFSET_MISMATCH:
		fmt.Fprintf(&b, " (next offset is %d)", e.NextOffset)
	case skeinv1.ErrorReason_KEY_OFFSET_MISMATCH:
		writeKeyOffsets(&b, e.KeyOffsets)
	case skeinv1.ErrorReason_OFFSET_OUT_OF_RANGE:
		fmt.Fprintf(&b, " (valid offsets are %d to %d)", e.LogStartOffset, e.HighWatermark)
	}
	return b.String()
}

// Kind returns the sentinel error of e's class (ErrNotLeader,
// ErrOffsetMismatch, ...) as the broker or the client's checks named it, or
// nil for a failure on the way to a broker, which has no class of its own
// (see the type's doc for what it matches).
func (e *Error) Kind() error { return reasonSentinels[e.reason] }

// Is matches the sentinel of e's class, and for a failure on the way to a
// broker the sentinels and context errors its status code stands for (see
// the type's doc).
func (e *Error) Is(target error) bool {
	if e.reason != skeinv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return reasonSentinels[e.reason] == target
	}
	switch e.code {
	case codes.Unavailable:
		return target == ErrUnavailable
	case codes.DeadlineExceeded:
		return target == ErrTimedOut || target == context.DeadlineExceeded
	case codes.Canceled:
		return target == context.Canceled
	case codes.AlreadyExists:
		return target == ErrTopicExists
	case codes.PermissionDenied:
		return target == ErrNotAuthorized
	case codes.Unauthenticated:
		return target == ErrAuthentication
	}
	return false
}

// Retriable reports whether the request may be sent again unchanged; see
// IsRetriable.
func (e *Error) Retriable() bool { return IsRetriable(e) }

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
	var kos []KeyExpectation
	for _, k := range d.GetKeyOffsets() {
		kos = append(kos, KeyExpectation{Key: k.GetKey(), Offset: k.GetOffset()})
	}
	return &Error{
		KeyOffsets:     kos,
		code:           code,
		reason:         d.GetReason(),
		Message:        d.GetMessage(),
		LeaderID:       d.GetLeaderId(),
		LeaderAddr:     d.GetLeaderAddr(),
		LeaderEpoch:    d.GetLeaderEpoch(),
		NextOffset:     d.GetNextOffset(),
		LogStartOffset: d.GetLogStartOffset(),
		HighWatermark:  d.GetHighWatermark(),
		RetryAfter:     time.Duration(max(0, min(d.GetRetryAfterMs(), maxRetryAfter.Milliseconds()))) * time.Millisecond,
	}
}

// maxRetryAfter bounds the wait a broker can ask of the client.
const maxRetryAfter = time.Minute

// retryAfter is the wait err asks for before a retry (0 if none).
func retryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
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
		return &Error{code: codes.Unknown, Message: err.Error()}
	}
	for _, d := range st.Details() {
		if ed, ok := d.(*skeinv1.ErrorDetail); ok {
			e := errorFromDetail(ed)
			if e.Message == "" {
				e.Message = st.Message()
			}
			if ed.GetCode() == 0 {
				e.code = st.Code()
			}
			return e
		}
	}
	if st.Code() == codes.Unavailable {
		if code, msg, ok := tlsFailure(st.Message()); ok {
			return &Error{code: code, Message: msg, LeaderID: -1}
		}
	}
	return &Error{code: st.Code(), Message: st.Message(), LeaderID: -1}
}

// tlsFailure explains a connection failure that TLS settings cause. A
// handshake the certificates decided (an untrusted or expired broker
// certificate, a client certificate required or refused, TLS to a
// plaintext port) cannot succeed by retrying: it becomes Unauthenticated,
// so callers fail at once instead of retrying until a timeout. A broker
// that closes the connection before answering may be serving TLS to a
// plaintext client, or restarting: that stays Unavailable, with a hint.
func tlsFailure(msg string) (codes.Code, string, bool) {
	switch {
	case strings.Contains(msg, "x509: certificate signed by unknown authority"):
		return codes.Unauthenticated, msg + " (the broker's certificate is not signed by the CA this client trusts: check --tls-ca-file)", true
	case strings.Contains(msg, "x509: certificate has expired or is not yet valid"):
		return codes.Unauthenticated, msg + " (the broker's certificate is outside its validity: renew it, or check the clocks)", true
	case strings.Contains(msg, "x509: certificate is valid for"):
		return codes.Unauthenticated, msg + " (the broker's certificate does not name the address dialled: use a name it holds, or --tls-server-name)", true
	case strings.Contains(msg, "remote error: tls: certificate required"):
		return codes.Unauthenticated, msg + " (the broker requires a client certificate: give --tls-cert-file and --tls-key-file)", true
	case strings.Contains(msg, "remote error: tls: bad certificate"), strings.Contains(msg, "remote error: tls: unknown certificate authority"),
		strings.Contains(msg, "remote error: tls: expired certificate"):
		return codes.Unauthenticated, msg + " (the broker refused this client's certificate: it must be valid now and signed by the broker's CA)", true
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return codes.Unauthenticated, msg + " (the broker does not speak TLS on this port: drop --tls-ca-file, or turn TLS on at the broker)", true
	case strings.Contains(msg, "error reading server preface: EOF"):
		return codes.Unavailable, msg + " (the broker closed the connection at once: if it serves TLS, give --tls-ca-file)", true
	}
	return 0, "", false
}

// IsRetriable reports whether a request that failed with err can be sent
// again unchanged, after a metadata refresh and a backoff: NotLeader,
// FencedLeaderEpoch, UnknownLeaderEpoch, NotEnoughReplicas, Unavailable,
// NotCoordinator, and
// transport failures (code Unavailable, a broken stream). TimedOut is not: the
// write may have been appended, so only an idempotent producer may resend it
// (and does). OutOfOrderSequence is not either: the idempotent producer
// resends such a batch only after resetting its sequences.
func IsRetriable(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.reason {
	case skeinv1.ErrorReason_NOT_LEADER,
		skeinv1.ErrorReason_FENCED_LEADER_EPOCH,
		skeinv1.ErrorReason_UNKNOWN_LEADER_EPOCH,
		skeinv1.ErrorReason_NOT_ENOUGH_REPLICAS,
		skeinv1.ErrorReason_UNAVAILABLE,
		skeinv1.ErrorReason_NOT_COORDINATOR:
		return true
	case skeinv1.ErrorReason_ERROR_REASON_UNSPECIFIED:
		return e.code == codes.Unavailable
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
	return e.reason == skeinv1.ErrorReason_TIMED_OUT ||
		(e.reason == skeinv1.ErrorReason_ERROR_REASON_UNSPECIFIED && e.code == codes.DeadlineExceeded)
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
	return &Error{code: codes.Unavailable, Message: msg, LeaderID: -1}
}
