package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"google.golang.org/grpc/status"

	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// Errors found at the Kafka edge, before a request reaches the broker. Each
// wraps one of these sentinels so errorCode maps it without string matching.
var (
	// errCorrupt: a record batch's CRC-32C or framing does not check out.
	errCorrupt = errors.New("corrupt record batch")
	// errInvalidRecord: a well-formed batch Skein does not accept (a
	// transactional or control batch, offset deltas out of order).
	errInvalidRecord = errors.New("invalid record batch")
	// errOldFormat: a message set of magic 0 or 1 (Kafka before 0.11).
	errOldFormat = errors.New("unsupported record batch format")
	// errTooLarge: a batch that decompresses past the size limit.
	errTooLarge = errors.New("record batch too large")
	// errBadRequest: a request field Skein refuses (what to fix is in the
	// message).
	errBadRequest = errors.New("invalid request")
	// errInvalidConfig: a topic config Skein does not have.
	errInvalidConfig = errors.New("invalid config")
)

// errorCode is the one place where errors become Kafka error codes: the
// sentinels above, and the broker's own errors, which arrive as the gRPC
// status (with its ErrorDetail) a native client would get. nil is 0.
func errorCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errCorrupt):
		return kerr.CorruptMessage.Code
	case errors.Is(err, errInvalidRecord):
		return kerr.InvalidRecord.Code
	case errors.Is(err, errOldFormat):
		return kerr.UnsupportedForMessageFormat.Code
	case errors.Is(err, errTooLarge):
		return kerr.MessageTooLarge.Code
	case errors.Is(err, errBadRequest):
		return kerr.InvalidRequest.Code
	case errors.Is(err, errInvalidConfig):
		return kerr.InvalidConfig.Code
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return kerr.RequestTimedOut.Code
	}
	var ce *codeError
	if errors.As(err, &ce) {
		return ce.code
	}
	var de *detailError
	if errors.As(err, &de) {
		return reasonCode(de.d.Reason)
	}
	if d := detailOf(err); d != nil {
		return reasonCode(d.Reason)
	}
	return kerr.UnknownServerError.Code
}

// detailError is a failure the broker reported in a response message
// rather than as a status (a produce answer).
type detailError struct{ d *pb.ErrorDetail }

func (e *detailError) Error() string { return e.d.GetMessage() }

// reasonCode maps the broker's error reasons to the Kafka codes whose retry
// behaviour matches: NOT_LEADER makes a client refresh its metadata and go
// to the new leader, FENCED_LEADER_EPOCH the same, a timeout is retried by
// an idempotent producer without duplicating, and so on.
func reasonCode(r pb.ErrorReason) int16 {
	switch r {
	case pb.ErrorReason_NOT_LEADER:
		return kerr.NotLeaderForPartition.Code
	case pb.ErrorReason_FENCED_LEADER_EPOCH:
		return kerr.FencedLeaderEpoch.Code
	case pb.ErrorReason_UNKNOWN_LEADER_EPOCH:
		return kerr.UnknownLeaderEpoch.Code
	case pb.ErrorReason_NOT_ENOUGH_REPLICAS:
		return kerr.NotEnoughReplicas.Code
	case pb.ErrorReason_OFFSET_OUT_OF_RANGE:
		return kerr.OffsetOutOfRange.Code
	case pb.ErrorReason_UNKNOWN_TOPIC, pb.ErrorReason_UNKNOWN_PARTITION:
		return kerr.UnknownTopicOrPartition.Code
	case pb.ErrorReason_INVALID_RECORD:
		return kerr.InvalidRecord.Code
	case pb.ErrorReason_RECORD_TOO_LARGE:
		return kerr.MessageTooLarge.Code
	case pb.ErrorReason_INVALID_TOPIC:
		return kerr.InvalidTopicException.Code
	case pb.ErrorReason_TOPIC_EXISTS:
		return kerr.TopicAlreadyExists.Code
	case pb.ErrorReason_UNAVAILABLE:
		// Shutting down, starting, a partition still opening, a full disk:
		// retriable, and a metadata refresh finds a leader that serves.
		return kerr.LeaderNotAvailable.Code
	case pb.ErrorReason_TIMED_OUT:
		return kerr.RequestTimedOut.Code
	case pb.ErrorReason_OUT_OF_ORDER_SEQUENCE:
		return kerr.OutOfOrderSequenceNumber.Code
	case pb.ErrorReason_PRODUCER_FENCED:
		// What Kafka answers a non-transactional produce of an old epoch.
		return kerr.InvalidProducerEpoch.Code
	case pb.ErrorReason_NOT_COORDINATOR:
		return kerr.NotCoordinator.Code
	case pb.ErrorReason_UNKNOWN_GROUP:
		return kerr.GroupIDNotFound.Code
	case pb.ErrorReason_FENCED_MEMBER_EPOCH:
		return kerr.FencedMemberEpoch.Code
	case pb.ErrorReason_GROUP_NOT_EMPTY:
		return kerr.NonEmptyGroup.Code
	case pb.ErrorReason_INVALID_GROUP:
		return kerr.InvalidGroupID.Code
	case pb.ErrorReason_INVALID_REQUEST, pb.ErrorReason_OFFSET_MISMATCH, pb.ErrorReason_KEY_OFFSET_MISMATCH:
		return kerr.InvalidRequest.Code
	}
	return kerr.UnknownServerError.Code
}

// detailOf extracts the broker's ErrorDetail from a gRPC status error.
func detailOf(err error) *pb.ErrorDetail {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if ed, ok := d.(*pb.ErrorDetail); ok {
			return ed
		}
	}
	return nil
}

// errorMessage is the text for responses that carry one.
func errorMessage(err error) *string {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if st, ok := status.FromError(err); ok {
		msg = st.Message()
	}
	return &msg
}

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInvalidConfig, fmt.Sprintf(format, args...))
}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}
