package kafka

import (
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// statusErr is a broker error as the gRPC handlers return it.
func statusErr(r pb.ErrorReason) error {
	st, _ := status.New(codes.FailedPrecondition, r.String()).WithDetails(&pb.ErrorDetail{Reason: r, Message: r.String()})
	return st.Err()
}

func TestErrorCode(t *testing.T) {
	cases := []struct {
		err  error
		want *kerr.Error
	}{
		{statusErr(pb.ErrorReason_NOT_LEADER), kerr.NotLeaderForPartition},
		{statusErr(pb.ErrorReason_FENCED_LEADER_EPOCH), kerr.FencedLeaderEpoch},
		{statusErr(pb.ErrorReason_UNKNOWN_LEADER_EPOCH), kerr.UnknownLeaderEpoch},
		{statusErr(pb.ErrorReason_NOT_ENOUGH_REPLICAS), kerr.NotEnoughReplicas},
		{statusErr(pb.ErrorReason_OFFSET_OUT_OF_RANGE), kerr.OffsetOutOfRange},
		{statusErr(pb.ErrorReason_UNKNOWN_TOPIC), kerr.UnknownTopicOrPartition},
		{statusErr(pb.ErrorReason_UNKNOWN_PARTITION), kerr.UnknownTopicOrPartition},
		{statusErr(pb.ErrorReason_INVALID_RECORD), kerr.InvalidRecord},
		{statusErr(pb.ErrorReason_RECORD_TOO_LARGE), kerr.MessageTooLarge},
		{statusErr(pb.ErrorReason_INVALID_TOPIC), kerr.InvalidTopicException},
		{statusErr(pb.ErrorReason_TOPIC_EXISTS), kerr.TopicAlreadyExists},
		{statusErr(pb.ErrorReason_UNAVAILABLE), kerr.LeaderNotAvailable},
		{statusErr(pb.ErrorReason_TIMED_OUT), kerr.RequestTimedOut},
		{statusErr(pb.ErrorReason_INVALID_REQUEST), kerr.InvalidRequest},
		{statusErr(pb.ErrorReason_OFFSET_MISMATCH), kerr.InvalidRequest},
		{statusErr(pb.ErrorReason_OUT_OF_ORDER_SEQUENCE), kerr.OutOfOrderSequenceNumber},
		{statusErr(pb.ErrorReason_PRODUCER_FENCED), kerr.InvalidProducerEpoch},
		{statusErr(pb.ErrorReason_ERROR_REASON_UNSPECIFIED), kerr.UnknownServerError},
		{&detailError{&pb.ErrorDetail{Reason: pb.ErrorReason_OUT_OF_ORDER_SEQUENCE}}, kerr.OutOfOrderSequenceNumber},
		{&detailError{&pb.ErrorDetail{Reason: pb.ErrorReason_NOT_LEADER}}, kerr.NotLeaderForPartition},
		{fmt.Errorf("%w: crc", errCorrupt), kerr.CorruptMessage},
		{fmt.Errorf("%w: x", errInvalidRecord), kerr.InvalidRecord},
		{fmt.Errorf("%w: magic 1", errOldFormat), kerr.UnsupportedForMessageFormat},
		{fmt.Errorf("%w: big", errTooLarge), kerr.MessageTooLarge},
		{badRequest("x"), kerr.InvalidRequest},
		{configError("x"), kerr.InvalidConfig},
		{context.DeadlineExceeded, kerr.RequestTimedOut},
		{status.Error(codes.Internal, "no detail"), kerr.UnknownServerError},
		{fmt.Errorf("anything else"), kerr.UnknownServerError},
	}
	for _, tc := range cases {
		if got := errorCode(tc.err); got != tc.want.Code {
			t.Errorf("errorCode(%v) = %v, want %v", tc.err, kerr.ErrorForCode(got), tc.want)
		}
	}
	if errorCode(nil) != 0 {
		t.Error("nil is not 0")
	}
	// Every reason the broker has maps to something deliberate.
	for r := range pb.ErrorReason_name {
		if r != 0 && reasonCode(pb.ErrorReason(r)) == kerr.UnknownServerError.Code {
			t.Errorf("reason %v has no Kafka code", pb.ErrorReason(r))
		}
	}
}
