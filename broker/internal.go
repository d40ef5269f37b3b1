package broker

import (
	"context"
	"fmt"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/partition"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// internalServer implements the broker-to-broker service.
type internalServer struct {
	pb.UnimplementedInternalServer
	b *Broker
}

// localReplica is the replica of a partition on this broker, or nil.
func (b *Broker) localReplica(topic string, part int32) *replica {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.replicas[tp{topic, part}]
}

func (s *internalServer) ReplicaFetch(ctx context.Context, req *pb.ReplicaFetchRequest) (*pb.ReplicaFetchResponse, error) {
	r := s.b.localReplica(req.Topic, req.Partition)
	if r == nil || r.leader == nil {
		_, err := s.b.leaderReplica(req.Topic, req.Partition)
		if err == nil {
			err = errNotReady
		}
		return &pb.ReplicaFetchResponse{Error: errorDetail(err)}, nil
	}
	resp, err := r.leader.HandleFetch(ctx, req)
	if err != nil {
		return &pb.ReplicaFetchResponse{Error: errorDetail(err)}, nil
	}
	return resp, nil
}

func (s *internalServer) OffsetForLeaderEpoch(ctx context.Context, req *pb.OffsetForLeaderEpochRequest) (*pb.OffsetForLeaderEpochResponse, error) {
	r := s.b.localReplica(req.Topic, req.Partition)
	if r == nil {
		return &pb.OffsetForLeaderEpochResponse{LeaderEpoch: -1, EndOffset: -1, Error: errorDetail(errNotReady)}, nil
	}
	st := r.p.State()
	if st.Role != partition.RoleLeader {
		return &pb.OffsetForLeaderEpochResponse{LeaderEpoch: -1, EndOffset: -1,
			Error: errorDetail(&partition.NotLeaderError{LeaderID: st.LeaderID, LeaderEpoch: st.LeaderEpoch})}, nil
	}
	if req.CurrentLeaderEpoch != st.LeaderEpoch {
		return &pb.OffsetForLeaderEpochResponse{LeaderEpoch: -1, EndOffset: -1,
			Error: errorDetail(&partition.EpochError{Requested: req.CurrentLeaderEpoch, Current: st.LeaderEpoch})}, nil
	}
	e, end := r.p.EndOffsetForEpoch(req.LeaderEpoch)
	return &pb.OffsetForLeaderEpochResponse{LeaderEpoch: e, EndOffset: end}, nil
}

func (s *internalServer) AlterPartition(ctx context.Context, req *pb.AlterPartitionRequest) (*pb.AlterPartitionResponse, error) {
	if !s.b.ctrl.IsController() {
		return nil, toStatus(&cluster.NotControllerError{LeaderID: s.b.ctrl.ControllerID()})
	}
	return s.b.alterPartitionLocal(ctx, req), nil
}

// alterPartitionLocal serves an ISR change on the controller.
func (b *Broker) alterPartitionLocal(ctx context.Context, req *pb.AlterPartitionRequest) *pb.AlterPartitionResponse {
	pm, err := b.ctrl.AlterPartition(ctx, cluster.AlterRequest{
		Topic: req.Topic, Partition: req.Partition, LeaderID: req.LeaderId,
		LeaderEpoch: req.LeaderEpoch, PartitionEpoch: req.PartitionEpoch, NewISR: req.NewIsr,
	})
	if err != nil {
		return &pb.AlterPartitionResponse{Error: errorDetail(err)}
	}
	return &pb.AlterPartitionResponse{PartitionEpoch: pm.PartitionEpoch, Partition: &pb.PartitionMetadata{
		Partition: pm.Partition, Leader: pm.Leader, LeaderEpoch: pm.LeaderEpoch, Replicas: pm.Replicas, Isr: pm.ISR, PartitionEpoch: pm.PartitionEpoch,
	}}
}

func (s *internalServer) ControlledShutdown(ctx context.Context, req *pb.ControlledShutdownRequest) (*pb.ControlledShutdownResponse, error) {
	if !s.b.ctrl.IsController() {
		return nil, toStatus(&cluster.NotControllerError{LeaderID: s.b.ctrl.ControllerID()})
	}
	n, err := s.b.ctrl.ControlledShutdown(ctx, req.BrokerId)
	if err != nil {
		return &pb.ControlledShutdownResponse{Error: errorDetail(err)}, nil
	}
	return &pb.ControlledShutdownResponse{RemainingLeaderships: int32(n)}, nil
}

// Identify tells the controller who serves this inter-broker listener.
func (s *internalServer) Identify(ctx context.Context, req *pb.IdentifyRequest) (*pb.IdentifyResponse, error) {
	return &pb.IdentifyResponse{BrokerId: s.b.self.ID, StorageId: s.b.currentStorageID(), GossipAddr: s.b.ctrl.GossipAddr()}, nil
}

func (s *internalServer) LocalLog(ctx context.Context, req *pb.LocalLogRequest) (*pb.LocalLogResponse, error) {
	r := s.b.localReplica(req.Topic, req.Partition)
	if r == nil {
		return nil, toStatus(fmt.Errorf("%w: this broker holds no replica of %s-%d (or is still opening it)", errNotReady, req.Topic, req.Partition))
	}
	st := r.p.State()
	resp := &pb.LocalLogResponse{NextOffset: req.FromOffset, HighWatermark: st.HighWatermark, LogStartOffset: st.LogStartOffset,
		LogEndOffset: st.LogEndOffset, LeaderEpoch: st.LeaderEpoch, Role: st.Role.String()}
	if req.MaxBytes > 0 && req.FromOffset < st.LogEndOffset {
		res, err := r.p.Read(nil, max(req.FromOffset, st.LogStartOffset), int(min(req.MaxBytes, maxFetchMaxBytes)), partition.ReadUncommitted)
		if err != nil {
			resp.Error = errorDetail(err)
			return resp, nil
		}
		resp.Batches, resp.NextOffset = res.Batches, res.NextOffset
	}
	return resp, nil
}
