package broker

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/partition"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// keyExpectations converts a produce request's key expectations; the
// partition checks them (see partition.KeyExpectation).
func keyExpectations(req *pb.ProduceRequest) []partition.KeyExpectation {
	if len(req.KeyExpectations) == 0 {
		return nil
	}
	out := make([]partition.KeyExpectation, len(req.KeyExpectations))
	for i, e := range req.KeyExpectations {
		out[i] = partition.KeyExpectation{Key: e.GetKey(), Offset: e.GetOffset()}
	}
	return out
}

// GetKey answers a key's latest committed record from the leader's key
// index.
func (s *server) GetKey(ctx context.Context, req *pb.GetKeyRequest) (*pb.GetKeyResponse, error) {
	if n := len(req.Key); n == 0 || n > partition.MaxKeyBytes {
		return nil, toStatus(invalid("key of %d bytes: keys are 1 to %d bytes", n, partition.MaxKeyBytes))
	}
	if req.LeaderEpoch < -1 {
		return nil, toStatus(invalid("leader_epoch %d: -1 (any) or a known epoch", req.LeaderEpoch))
	}
	r, err := s.b.leaderReplica(req.Topic, req.Partition)
	if err != nil {
		return nil, s.b.status(ctx, err)
	}
	if st := r.p.State(); req.LeaderEpoch >= 0 && req.LeaderEpoch != st.LeaderEpoch {
		return nil, s.b.status(ctx, &partition.EpochError{Requested: req.LeaderEpoch, Current: st.LeaderEpoch})
	}
	if !r.p.HWReady() {
		return nil, toStatus(fmt.Errorf("%w: the leader is catching up its high watermark after an election; retry", errNotReady))
	}
	kr, err := r.p.Latest(req.Key)
	if err != nil {
		return nil, s.b.status(ctx, err)
	}
	resp := &pb.GetKeyResponse{Found: kr.Found, Offset: -1, HighWatermark: kr.HighWatermark}
	if kr.Found {
		rec := kr.Record
		resp.Offset, resp.TimestampMs, resp.Value, resp.ValueNull = rec.Offset, rec.Timestamp, rec.Value, rec.Value == nil
		for _, h := range rec.Headers {
			resp.Headers = append(resp.Headers, &pb.RecordHeader{Key: h.Key, Value: h.Value})
		}
	}
	return resp, nil
}

// keyErrorDetail fills d for the per-key errors of a partition and reports
// whether err was one of them.
func keyErrorDetail(err error, d *pb.ErrorDetail) bool {
	var km *partition.KeyMismatchError
	switch {
	case errors.As(err, &km):
		d.Code, d.Reason = uint32(codes.Aborted), pb.ErrorReason_KEY_OFFSET_MISMATCH
		for _, k := range km.Keys {
			d.KeyOffsets = append(d.KeyOffsets, &pb.KeyOffset{Key: k.Key, Offset: k.Actual})
		}
	case errors.Is(err, partition.ErrNoKeyIndex):
		d.Code, d.Reason = uint32(codes.FailedPrecondition), pb.ErrorReason_INVALID_REQUEST
	case errors.Is(err, partition.ErrInvalidExpectation):
		d.Code, d.Reason = uint32(codes.InvalidArgument), pb.ErrorReason_INVALID_REQUEST
	default:
		return false
	}
	return true
}
