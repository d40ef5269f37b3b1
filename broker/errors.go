package broker

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/partition"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// Broker-level errors.
var (
	errUnknownPartition = errors.New("unknown partition")
	errInvalidRequest   = errors.New("invalid request")
	// errUnknownProducerID: a batch names a producer id the controller
	// never allocated (FAILED_PRECONDITION, nothing appended).
	errUnknownProducerID = errors.New("unknown producer id")
	errShuttingDown      = errors.New("broker is shutting down")
	errNotReady          = errors.New("partition is not open on this broker yet")
)

// errorDetail maps any error a handler meets to the ErrorDetail the client
// sees. It is the one place where errors become codes.
func errorDetail(err error) *pb.ErrorDetail {
	d := &pb.ErrorDetail{Message: err.Error(), LeaderId: -1, LeaderEpoch: -1, NextOffset: -1, LogStartOffset: -1, HighWatermark: -1}
	set := func(c codes.Code, r pb.ErrorReason) {
		d.Code, d.Reason = uint32(c), r
	}
	var be *budgetError
	if groupErrorDetail(err, d) || keyErrorDetail(err, d) || partitionErrorDetail(err, d) {
		return d
	}
	switch {
	case errors.As(err, &be):
		// Reason UNAVAILABLE: every client retries it, after the hint.
		set(codes.ResourceExhausted, pb.ErrorReason_UNAVAILABLE)
		d.RetryAfterMs = max(1, be.retryAfter.Milliseconds())
	case errors.Is(err, errNoHandles):
		set(codes.ResourceExhausted, pb.ErrorReason_ERROR_REASON_UNSPECIFIED)
	case errors.Is(err, partition.ErrNotEnoughReplicas):
		set(codes.Unavailable, pb.ErrorReason_NOT_ENOUGH_REPLICAS)
	case errors.Is(err, partition.ErrStorage), errors.Is(err, partition.ErrClosed),
		errors.Is(err, errShuttingDown), errors.Is(err, errNotReady), errors.Is(err, errNoProducerIDs):
		set(codes.Unavailable, pb.ErrorReason_UNAVAILABLE)
	case errors.Is(err, cluster.ErrInvalidReassign):
		set(codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST)
	case errors.Is(err, cluster.ErrReassignRunning), errors.Is(err, cluster.ErrNoReassign):
		set(codes.FailedPrecondition, pb.ErrorReason_INVALID_REQUEST)
	case errors.Is(err, cluster.ErrUnknownBroker):
		set(codes.NotFound, pb.ErrorReason_INVALID_REQUEST)
	case errors.Is(err, cluster.ErrInvalidTopic):
		set(codes.InvalidArgument, pb.ErrorReason_INVALID_TOPIC)
	case errors.Is(err, cluster.ErrInvalidConfig), errors.Is(err, errInvalidRequest):
		set(codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST)
	case errors.Is(err, cluster.ErrTopicExists):
		set(codes.AlreadyExists, pb.ErrorReason_TOPIC_EXISTS)
	case errors.Is(err, cluster.ErrUnknownTopic):
		set(codes.NotFound, pb.ErrorReason_UNKNOWN_TOPIC)
	case errors.Is(err, cluster.ErrNotController), errors.Is(err, cluster.ErrConcurrentChange):
		set(codes.Unavailable, pb.ErrorReason_UNAVAILABLE)
	case errors.Is(err, cluster.ErrStaleLeader), errors.Is(err, cluster.ErrStaleEpoch), errors.Is(err, cluster.ErrInvalidISR),
		errors.Is(err, errUnknownProducerID):
		set(codes.FailedPrecondition, pb.ErrorReason_INVALID_REQUEST)
	case errors.Is(err, errUnknownPartition):
		set(codes.NotFound, pb.ErrorReason_UNKNOWN_PARTITION)
	case errors.Is(err, context.Canceled):
		set(codes.Canceled, pb.ErrorReason_ERROR_REASON_UNSPECIFIED)
	case errors.Is(err, context.DeadlineExceeded):
		set(codes.DeadlineExceeded, pb.ErrorReason_TIMED_OUT)
	default:
		if s, ok := status.FromError(err); ok {
			d.Code = uint32(s.Code())
			d.Message = s.Message()
		} else {
			set(codes.Internal, pb.ErrorReason_ERROR_REASON_UNSPECIFIED)
		}
	}
	return d
}

// partitionErrorDetail fills d for the errors of a partition (offsets,
// leadership and epochs, the idempotent producer, batches) and reports
// whether err was one of them.
func partitionErrorDetail(err error, d *pb.ErrorDetail) bool {
	set := func(c codes.Code, r pb.ErrorReason) {
		d.Code, d.Reason = uint32(c), r
	}
	var (
		nl  *partition.NotLeaderError
		om  *partition.OffsetMismatchError
		oor *partition.OutOfRangeError
		ee  *partition.EpochError
	)
	switch {
	case errors.As(err, &om):
		set(codes.Aborted, pb.ErrorReason_OFFSET_MISMATCH)
		d.NextOffset = om.Actual
	case errors.As(err, &oor):
		set(codes.OutOfRange, pb.ErrorReason_OFFSET_OUT_OF_RANGE)
		d.LogStartOffset, d.HighWatermark = oor.LogStartOffset, oor.HighWatermark
	case errors.Is(err, partition.ErrTimeout):
		set(codes.DeadlineExceeded, pb.ErrorReason_TIMED_OUT)
	case errors.As(err, &nl):
		set(codes.FailedPrecondition, pb.ErrorReason_NOT_LEADER)
		d.LeaderId, d.LeaderEpoch = nl.LeaderID, nl.LeaderEpoch
	case errors.Is(err, partition.ErrNotLeader):
		set(codes.FailedPrecondition, pb.ErrorReason_NOT_LEADER)
	case errors.As(err, &ee):
		if errors.Is(err, partition.ErrFencedEpoch) {
			set(codes.FailedPrecondition, pb.ErrorReason_FENCED_LEADER_EPOCH)
		} else {
			set(codes.FailedPrecondition, pb.ErrorReason_UNKNOWN_LEADER_EPOCH)
		}
		d.LeaderEpoch = ee.Current
	case errors.Is(err, partition.ErrOutOfOrderSequence):
		set(codes.FailedPrecondition, pb.ErrorReason_OUT_OF_ORDER_SEQUENCE)
	case errors.Is(err, partition.ErrProducerFenced):
		set(codes.FailedPrecondition, pb.ErrorReason_PRODUCER_FENCED)
	case errors.Is(err, partition.ErrRecordTooLarge):
		set(codes.InvalidArgument, pb.ErrorReason_RECORD_TOO_LARGE)
	case errors.Is(err, partition.ErrInvalidBatch):
		set(codes.InvalidArgument, pb.ErrorReason_INVALID_RECORD)
	default:
		return false
	}
	return true
}

// isUnavailable reports a transport-level failure reaching a peer.
func isUnavailable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// toStatus is errorDetail as a gRPC status for unary RPCs and streams that
// end with an error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	return detailStatus(errorDetail(err))
}

// detailStatus is the gRPC status carrying d.
func detailStatus(d *pb.ErrorDetail) error {
	st := status.New(codes.Code(d.Code), d.Message)
	if withDetail, derr := st.WithDetails(d); derr == nil {
		st = withDetail
	}
	return st.Err()
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInvalidRequest, fmt.Sprintf(format, args...))
}
