package broker

import (
	"context"
	"errors"
	"net"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"

	"github.com/skeinlog/skein/group"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// groupsServer implements the Groups gRPC service over the coordinator.
type groupsServer struct {
	pb.UnimplementedGroupsServer
	b *Broker
}

func (s *groupsServer) FindCoordinator(ctx context.Context, req *pb.FindCoordinatorRequest) (*pb.FindCoordinatorResponse, error) {
	leader, part, err := s.b.groups.FindCoordinator(ctx, req.Group)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.FindCoordinatorResponse{BrokerId: leader, Partition: part}
	if bi, ok := s.b.snapshot().Broker(leader); ok {
		resp.Addr = clientAddr(bi, s.b.external(ctx))
	}
	return resp, nil
}

func toTPs(in []*pb.TopicPartitions) []group.TopicPartition {
	var out []group.TopicPartition
	for _, t := range in {
		for _, p := range t.GetPartitions() {
			out = append(out, group.TopicPartition{Topic: t.GetTopic(), Partition: p})
		}
	}
	return out
}

func fromTPs(in []group.TopicPartition) []*pb.TopicPartitions {
	var out []*pb.TopicPartitions
	for _, tp := range in {
		if n := len(out); n > 0 && out[n-1].Topic == tp.Topic {
			out[n-1].Partitions = append(out[n-1].Partitions, tp.Partition)
			continue
		}
		out = append(out, &pb.TopicPartitions{Topic: tp.Topic, Partitions: []int32{tp.Partition}})
	}
	return out
}

func (s *groupsServer) Heartbeat(ctx context.Context, req *pb.GroupHeartbeatRequest) (*pb.GroupHeartbeatResponse, error) {
	host := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		host, _, _ = net.SplitHostPort(p.Addr.String())
	}
	res, err := s.b.groups.Heartbeat(ctx, req.Group, group.HeartbeatRequest{
		MemberID: req.MemberId, MemberEpoch: req.MemberEpoch, Topics: req.Topics, Regex: req.TopicRegex,
		ClientID: req.ClientId, Host: host, Rack: req.Rack, Owned: toTPs(req.Owned),
		SessionTimeout: time.Duration(req.SessionTimeoutMs) * time.Millisecond,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GroupHeartbeatResponse{MemberId: res.MemberID, MemberEpoch: res.Epoch,
		Assignment: fromTPs(res.Assignment), HeartbeatIntervalMs: int32(res.Interval.Milliseconds())}, nil
}

func (s *groupsServer) CommitOffsets(ctx context.Context, req *pb.CommitOffsetsRequest) (*pb.CommitOffsetsResponse, error) {
	offs := make([]group.Entry, len(req.Offsets))
	for i, o := range req.Offsets {
		offs[i] = group.Entry{Topic: o.GetTopic(), Partition: o.GetPartition(), Offset: o.GetOffset(), Metadata: o.GetMetadata()}
	}
	ref := group.MemberRef{MemberID: req.MemberId, Generation: req.MemberEpoch}
	if err := s.b.groups.Commit(ctx, req.Group, ref, offs); err != nil {
		return nil, toStatus(err)
	}
	return &pb.CommitOffsetsResponse{}, nil
}

func (s *groupsServer) FetchOffsets(ctx context.Context, req *pb.FetchOffsetsRequest) (*pb.FetchOffsetsResponse, error) {
	offs, err := s.b.groups.Fetch(ctx, req.Group, toTPs(req.Partitions))
	if err != nil {
		return nil, toStatus(err)
	}
	tps := make([]group.TopicPartition, 0, len(offs))
	for tp := range offs {
		tps = append(tps, tp)
	}
	sortedTPs(tps)
	resp := &pb.FetchOffsetsResponse{}
	for _, tp := range tps {
		v := offs[tp]
		resp.Offsets = append(resp.Offsets, &pb.CommittedOffset{Topic: tp.Topic, Partition: tp.Partition,
			Offset: v.Offset, Metadata: v.Metadata, CommitTimeMs: v.TimeMs})
	}
	return resp, nil
}

func (s *groupsServer) ListGroups(ctx context.Context, req *pb.ListGroupsRequest) (*pb.ListGroupsResponse, error) {
	list, err := s.b.groups.List(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.ListGroupsResponse{}
	for _, g := range list {
		resp.Groups = append(resp.Groups, &pb.GroupSummary{Group: g.Group, State: g.State, Members: int32(g.Members), Coordinator: s.b.self.ID})
	}
	return resp, nil
}

func (s *groupsServer) DescribeGroup(ctx context.Context, req *pb.DescribeGroupRequest) (*pb.DescribeGroupResponse, error) {
	d, err := s.b.groups.Describe(ctx, req.Group)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.DescribeGroupResponse{Group: d.Group, State: d.State, Coordinator: d.Coordinator, GroupEpoch: d.Epoch}
	for _, m := range d.Members {
		resp.Members = append(resp.Members, &pb.GroupMember{MemberId: m.ID, MemberEpoch: m.Epoch, ClientId: m.ClientID,
			Host: m.Host, Rack: m.Rack, Topics: m.Topics, TopicRegex: m.Regex, Assigned: fromTPs(m.Assigned)})
	}
	for _, p := range d.Partitions {
		resp.Partitions = append(resp.Partitions, &pb.PartitionLag{Topic: p.Topic, Partition: p.Partition,
			CommittedOffset: p.Committed, LogEndOffset: p.LogEnd, Lag: p.Lag, MemberId: p.Member})
	}
	return resp, nil
}

func (s *groupsServer) DeleteGroup(ctx context.Context, req *pb.DeleteGroupRequest) (*pb.DeleteGroupResponse, error) {
	if err := s.b.groups.Delete(ctx, req.Group); err != nil {
		return nil, toStatus(err)
	}
	return &pb.DeleteGroupResponse{}, nil
}

// groupErrorDetail fills d for the coordinator's errors; false for others.
func groupErrorDetail(err error, d *pb.ErrorDetail) bool {
	set := func(c codes.Code, r pb.ErrorReason) { d.Code, d.Reason = uint32(c), r }
	var nc *notCoordinatorError
	switch {
	case errors.As(err, &nc):
		set(codes.FailedPrecondition, pb.ErrorReason_NOT_COORDINATOR)
		d.LeaderId = nc.LeaderID
	case errors.Is(err, group.ErrFenced), errors.Is(err, group.ErrUnknownMember), errors.Is(err, group.ErrIllegalGeneration),
		errors.Is(err, group.ErrRebalanceInProgress), errors.Is(err, group.ErrFencedInstance):
		set(codes.FailedPrecondition, pb.ErrorReason_FENCED_MEMBER_EPOCH)
	case errors.Is(err, group.ErrNotConsumerGroup):
		set(codes.NotFound, pb.ErrorReason_UNKNOWN_GROUP)
	case errors.Is(err, group.ErrInconsistentProtocol), errors.Is(err, group.ErrGroupFull),
		errors.Is(err, group.ErrInvalidSessionTimeout), errors.Is(err, group.ErrMemberIDRequired):
		set(codes.FailedPrecondition, pb.ErrorReason_INVALID_REQUEST)
	case errors.Is(err, group.ErrNotEmpty):
		set(codes.FailedPrecondition, pb.ErrorReason_GROUP_NOT_EMPTY)
	case errors.Is(err, group.ErrInvalid):
		set(codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST)
	case errors.Is(err, errUnknownGroup):
		set(codes.NotFound, pb.ErrorReason_UNKNOWN_GROUP)
	case errors.Is(err, errInvalidGroup):
		set(codes.InvalidArgument, pb.ErrorReason_INVALID_GROUP)
	default:
		return false
	}
	return true
}
