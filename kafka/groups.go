package kafka

import (
	"context"
	"net"
	"sort"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc/peer"

	"github.com/skeinlog/skein/group"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// Consumer groups over Kafka's protocol are the broker's groups, with
// committed offsets shared with the native Groups API: KIP-848 groups,
// where the coordinator assigns partitions (ConsumerGroupHeartbeat), and
// classic groups with client-side assignors (classic.go).

const coordinatorKeyGroup = 0

// ownedMemo remembers the partitions each member last said it owns: a
// KIP-848 heartbeat leaves them out (null) when they have not changed,
// while the broker's heartbeat takes what it is given as the whole set.
// Per connection, so bounded by what the connection sent.
type ownedMemo struct {
	mu sync.Mutex // guards m
	m  map[string][]*pb.TopicPartitions
}

func (o *ownedMemo) resolve(key string, sent []*pb.TopicPartitions, null bool) []*pb.TopicPartitions {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[string][]*pb.TopicPartitions{}
	}
	if null {
		return o.m[key]
	}
	if len(o.m) > 1024 {
		clear(o.m)
	}
	o.m[key] = sent
	return sent
}

// withPeer puts the client's address where the broker's handlers look for
// it (the member's host).
func (c *conn) withPeer(ctx context.Context) context.Context {
	addr, err := net.ResolveTCPAddr("tcp", c.remote)
	if err != nil {
		return ctx
	}
	return peer.NewContext(ctx, &peer.Peer{Addr: addr})
}

// topicIDs maps topic names to Kafka topic ids and back.
func (c *conn) topicIDs() (map[string][16]byte, map[[16]byte]string) {
	byName, byID := map[string][16]byte{}, map[[16]byte]string{}
	if md, err := c.s.be.Metadata(c.ctx); err == nil {
		for _, t := range md.Topics {
			id := topicID(t.TopicId)
			byName[t.Name], byID[id] = id, t.Name
		}
	}
	return byName, byID
}

func (c *conn) consumerGroupHeartbeat(req *kmsg.ConsumerGroupHeartbeatRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
	byName, byID := c.topicIDs()
	epoch := req.MemberEpoch
	if epoch == -2 { // a static member's leave: Skein has no static members
		epoch = -1
	}
	var owned []*pb.TopicPartitions
	for _, t := range req.Topics {
		if name, ok := byID[t.TopicID]; ok {
			owned = append(owned, &pb.TopicPartitions{Topic: name, Partitions: t.Partitions})
		}
	}
	owned = c.owned.resolve(req.Group+"\x00"+req.MemberID, owned, req.Topics == nil && epoch != 0)
	q := &pb.GroupHeartbeatRequest{Group: req.Group, MemberId: req.MemberID, MemberEpoch: epoch,
		Topics: req.SubscribedTopicNames, Owned: owned, SessionTimeoutMs: 0}
	if req.SubscribedTopicRegex != nil {
		q.TopicRegex = *req.SubscribedTopicRegex
	}
	if req.RackID != nil {
		q.Rack = *req.RackID
	}
	if req.InstanceID != nil {
		q.ClientId = *req.InstanceID
	}
	r, err := c.s.be.GroupHeartbeat(c.withPeer(c.ctx), q)
	if err != nil {
		resp.ErrorCode, resp.ErrorMessage = errorCode(err), errorMessage(err)
		return resp
	}
	resp.MemberID, resp.MemberEpoch = kmsg.StringPtr(r.MemberId), r.MemberEpoch
	resp.HeartbeatIntervalMillis = r.HeartbeatIntervalMs
	if epoch >= 0 {
		a := kmsg.NewConsumerGroupHeartbeatResponseAssignment()
		for _, tp := range r.Assignment {
			id, ok := byName[tp.Topic]
			if !ok {
				continue
			}
			t := kmsg.NewConsumerGroupHeartbeatResponseAssignmentTopic()
			t.TopicID, t.Partitions = id, append([]int32{}, tp.Partitions...)
			a.Topics = append(a.Topics, t)
		}
		resp.Assignment = &a
	}
	return resp
}

// findCoordinator names the coordinating broker of each group by its Kafka
// address.
func (c *conn) findCoordinator(req *kmsg.FindCoordinatorRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	keys := req.CoordinatorKeys
	if req.Version < 4 {
		keys = []string{req.CoordinatorKey}
	}
	addrs := map[int32]string{}
	if md, err := c.s.be.Metadata(c.ctx); err == nil {
		for _, b := range md.Brokers {
			addrs[b.Id] = b.Addr
		}
	}
	for _, key := range keys {
		co := kmsg.NewFindCoordinatorResponseCoordinator()
		co.Key, co.NodeID, co.Port = key, -1, -1
		var err error
		if req.CoordinatorType != coordinatorKeyGroup {
			err = badRequest("coordinator type %d: only groups (0) have coordinators; transactions are not supported", req.CoordinatorType)
		} else {
			var r *pb.FindCoordinatorResponse
			if r, err = c.s.be.FindCoordinator(c.ctx, &pb.FindCoordinatorRequest{Group: key}); err == nil {
				host, port, perr := splitHostPort(addrs[r.BrokerId])
				if perr != nil {
					co.ErrorCode = kerr.CoordinatorNotAvailable.Code
					co.ErrorMessage = kmsg.StringPtr("the coordinating broker has no Kafka listener")
				} else {
					co.NodeID, co.Host, co.Port = r.BrokerId, host, port
				}
			}
		}
		if err != nil {
			co.ErrorCode, co.ErrorMessage = errorCode(err), errorMessage(err)
		}
		resp.Coordinators = append(resp.Coordinators, co)
	}
	if req.Version < 4 && len(resp.Coordinators) == 1 {
		co := resp.Coordinators[0]
		resp.ErrorCode, resp.ErrorMessage, resp.NodeID, resp.Host, resp.Port = co.ErrorCode, co.ErrorMessage, co.NodeID, co.Host, co.Port
	}
	return resp
}

func (c *conn) offsetCommit(req *kmsg.OffsetCommitRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	ref := group.MemberRef{MemberID: req.MemberID, InstanceID: deref(req.InstanceID), Generation: req.Generation}
	var offs []group.Entry
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			offs = append(offs, group.Entry{Topic: t.Topic, Partition: p.Partition, Offset: p.Offset, Metadata: deref(p.Metadata)})
		}
	}
	code := groupCode(c.s.be.Commit(c.ctx, req.Group, ref, offs))
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// fetchGroupOffsets is one group's OffsetFetch: topics nil means all.
func (c *conn) fetchGroupOffsets(group string, topics []kmsg.OffsetFetchRequestTopic) ([]kmsg.OffsetFetchResponseTopic, error) {
	q := &pb.FetchOffsetsRequest{Group: group}
	for _, t := range topics {
		q.Partitions = append(q.Partitions, &pb.TopicPartitions{Topic: t.Topic, Partitions: t.Partitions})
	}
	r, err := c.s.be.FetchOffsets(c.ctx, q)
	if errorCode(err) == kerr.GroupIDNotFound.Code {
		// Kafka answers an unknown group with no offsets, not an error.
		r, err = &pb.FetchOffsetsResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	got := map[string]map[int32]*pb.CommittedOffset{}
	var names []string
	for _, o := range r.Offsets {
		if got[o.Topic] == nil {
			got[o.Topic] = map[int32]*pb.CommittedOffset{}
			names = append(names, o.Topic)
		}
		got[o.Topic][o.Partition] = o
	}
	if topics == nil {
		sort.Strings(names)
		for _, n := range names {
			t := kmsg.NewOffsetFetchRequestTopic()
			t.Topic = n
			for p := range got[n] {
				t.Partitions = append(t.Partitions, p)
			}
			sort.Slice(t.Partitions, func(i, j int) bool { return t.Partitions[i] < t.Partitions[j] })
			topics = append(topics, t)
		}
	}
	var out []kmsg.OffsetFetchResponseTopic
	for _, t := range topics {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch = p, -1, -1
			if o := got[t.Topic][p]; o != nil {
				rp.Offset, rp.Metadata = o.Offset, kmsg.StringPtr(o.Metadata)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		out = append(out, rt)
	}
	return out, nil
}

func (c *conn) offsetFetch(req *kmsg.OffsetFetchRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version < 8 {
		topics, err := c.fetchGroupOffsets(req.Group, req.Topics)
		resp.ErrorCode = errorCode(err)
		resp.Topics = append(resp.Topics, topics...)
		return resp
	}
	for _, g := range req.Groups {
		rg := kmsg.NewOffsetFetchResponseGroup()
		rg.Group = g.Group
		var topics []kmsg.OffsetFetchRequestTopic
		if g.Topics != nil {
			topics = []kmsg.OffsetFetchRequestTopic{}
			for _, t := range g.Topics {
				rt := kmsg.NewOffsetFetchRequestTopic()
				rt.Topic, rt.Partitions = t.Topic, t.Partitions
				topics = append(topics, rt)
			}
		}
		got, err := c.fetchGroupOffsets(g.Group, topics)
		rg.ErrorCode = errorCode(err)
		for _, t := range got {
			gt := kmsg.NewOffsetFetchResponseGroupTopic()
			gt.Topic = t.Topic
			for _, p := range t.Partitions {
				gp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
				gp.Partition, gp.Offset, gp.LeaderEpoch, gp.Metadata, gp.ErrorCode = p.Partition, p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode
				gt.Partitions = append(gt.Partitions, gp)
			}
			rg.Topics = append(rg.Topics, gt)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

func (c *conn) listGroups(req *kmsg.ListGroupsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	r, err := c.s.be.ListGroups(c.ctx, &pb.ListGroupsRequest{})
	if err != nil {
		resp.ErrorCode = errorCode(err)
		return resp
	}
	for _, g := range r.Groups {
		rg := kmsg.NewListGroupsResponseGroup()
		rg.Group, rg.ProtocolType, rg.GroupState, rg.GroupType = g.Group, "consumer", g.State, "consumer"
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

func (c *conn) deleteGroups(req *kmsg.DeleteGroupsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, g := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = g
		_, err := c.s.be.DeleteGroup(c.ctx, &pb.DeleteGroupRequest{Group: g})
		rg.ErrorCode = errorCode(err)
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}
