package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// The coordinator is the leader of the group's offsets partition; killing
// it moves the group, with its committed offsets, to the new leader.
func TestGroupCoordinatorFailover(t *testing.T) {
	cl := brokertest.NewCluster(t, 3, brokertest.WithConfig(func(c *broker.Config) { c.Groups.OffsetsPartitions = 3 }))
	ctx := cl.Context(60 * time.Second)
	// Ask the last broker (not the controller: the first bootstrapped).
	c3 := dialConn(t, cl.Broker(3).Addr())
	createTopic(t, pb.NewSkeinClient(c3), "orders", 3)
	for p := range int32(3) {
		cl.WaitLeader("orders", p, 10*time.Second)
		produce(t, dial(t, cl.Broker(cl.WaitLeader("orders", p, 10*time.Second)).Addr()), "orders", p, "a", "b", "c", "d")
	}
	fc, err := pb.NewGroupsClient(c3).FindCoordinator(ctx, &pb.FindCoordinatorRequest{Group: "billing"})
	if err != nil {
		t.Fatal(err)
	}
	md, err := pb.NewSkeinClient(c3).DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "__consumer_offsets"})
	if err != nil || md.Topic.Config.ReplicationFactor != 3 || md.Topic.Config.MinInsyncReplicas != 2 || len(md.Partitions) != 3 {
		t.Fatalf("offsets topic: %v %v", md, err)
	}
	coord := fc.BrokerId
	other := coord%3 + 1
	og := pb.NewGroupsClient(dialConn(t, cl.Broker(other).Addr()))
	_, err = og.CommitOffsets(ctx, commitReq("billing", "", 0, "orders", 0, 1))
	wantReason(t, "commit at another broker", err, codes.FailedPrecondition, pb.ErrorReason_NOT_COORDINATOR, fmt.Sprintf("broker %d", coord))
	if _, d := detail(t, err); d.LeaderId != coord {
		t.Fatalf("coordinator hint %d, want %d", d.LeaderId, coord)
	}
	g := pb.NewGroupsClient(dialConn(t, fc.Addr))
	hb, err := g.Heartbeat(ctx, &pb.GroupHeartbeatRequest{Group: "billing", Topics: []string{"orders"}})
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(3) {
		if _, err := g.CommitOffsets(ctx, commitReq("billing", hb.MemberId, hb.MemberEpoch, "orders", p, int64(p+1))); err != nil {
			t.Fatal(err)
		}
	}
	cl.Kill(coord)
	cl.WaitLeader("__consumer_offsets", fc.Partition, 30*time.Second)
	fc2, err := og.FindCoordinator(ctx, &pb.FindCoordinatorRequest{Group: "billing"})
	if err != nil || fc2.BrokerId == coord {
		t.Fatalf("after kill: %v %v", fc2, err)
	}
	g2 := pb.NewGroupsClient(dialConn(t, fc2.Addr))
	var got map[string]int64
	cl.WaitFor("offsets at the new coordinator", 20*time.Second, func() bool {
		r, err := g2.FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: "billing"})
		if err != nil {
			return false
		}
		got = map[string]int64{}
		for _, o := range r.Offsets {
			got[fmt.Sprintf("%s-%d", o.Topic, o.Partition)] = o.Offset
		}
		return true
	})
	if fmt.Sprint(got) != "map[orders-0:1 orders-1:2 orders-2:3]" {
		t.Fatalf("after failover: %v", got)
	}
	// The member is unknown to the new coordinator: its commits are fenced
	// until it rejoins.
	_, err = g2.CommitOffsets(ctx, commitReq("billing", hb.MemberId, hb.MemberEpoch, "orders", 0, 4))
	wantReason(t, "commit after failover", err, codes.FailedPrecondition, pb.ErrorReason_FENCED_MEMBER_EPOCH, hb.MemberId)
}

// Members that name their rack are given the partitions whose replicas sit
// on brokers of that rack (each broker is a rack here; replication factor
// 1, so each partition is led and read in one rack), and the group stays
// balanced.
func TestGroupRackAwareAssignment(t *testing.T) {
	cl := brokertest.NewCluster(t, 3, brokertest.WithConfig(func(c *broker.Config) {
		c.Groups.OffsetsPartitions = 1
		c.Rack = fmt.Sprintf("rack-%d", c.NodeID)
	}))
	ctx := cl.Context(60 * time.Second)
	sc := pb.NewSkeinClient(dialConn(t, cl.Broker(1).Addr()))
	if _, err := sc.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "orders", Partitions: 6, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	md, err := sc.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	rackOf := map[int32]string{} // partition -> the rack of its only replica
	for _, p := range md.Partitions {
		rackOf[p.Partition] = fmt.Sprintf("rack-%d", p.Replicas[0])
	}
	fc, err := pb.NewGroupsClient(dialConn(t, cl.Broker(1).Addr())).FindCoordinator(ctx, &pb.FindCoordinatorRequest{Group: "racked"})
	if err != nil {
		t.Fatal(err)
	}
	g := pb.NewGroupsClient(dialConn(t, fc.Addr))
	type member struct {
		rack, id string
		epoch    int32
		owned    []*pb.TopicPartitions
	}
	ms := []*member{{rack: "rack-1"}, {rack: "rack-2"}, {rack: "rack-3"}}
	// Heartbeat each member in turn, each reporting what it was given, until
	// the assignment settles.
	for round := 0; round < 10; round++ {
		for _, m := range ms {
			req := &pb.GroupHeartbeatRequest{Group: "racked", MemberId: m.id, MemberEpoch: m.epoch, Rack: m.rack, Owned: m.owned}
			if m.epoch == 0 {
				req.Topics = []string{"orders"}
			}
			hb, err := g.Heartbeat(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			m.id, m.epoch, m.owned = hb.MemberId, hb.MemberEpoch, hb.Assignment
		}
	}
	for _, m := range ms {
		var got []int32
		for _, tp := range m.owned {
			got = append(got, tp.Partitions...)
		}
		if len(got) != 2 {
			t.Errorf("member in %s owns partitions %v, want 2 of 6", m.rack, got)
		}
		for _, p := range got {
			if rackOf[p] != m.rack {
				t.Errorf("member in %s owns partition %d, whose replica is in %s", m.rack, p, rackOf[p])
			}
		}
	}
	d, err := g.DescribeGroup(ctx, &pb.DescribeGroupRequest{Group: "racked"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range d.Members {
		if m.Rack == "" {
			t.Errorf("describe: member %s has no rack", m.MemberId)
		}
	}
}

// A coordinator that can no longer commit to its offsets partition (here
// its followers are gone; in the fault suite it was cut off while another
// broker took over the group) does not answer offset fetches from what it
// remembers: those could be older than a commit the new coordinator
// acknowledged. The fetch fails, and the client asks again.
func TestOffsetFetchNeedsACommittableCoordinator(t *testing.T) {
	cl := brokertest.NewCluster(t, 3, brokertest.WithConfig(func(c *broker.Config) { c.Groups.OffsetsPartitions = 1 }))
	ctx := cl.Context(60 * time.Second)
	c1 := dialConn(t, cl.Broker(1).Addr())
	createTopic(t, pb.NewSkeinClient(c1), "orders", 1)
	produce(t, dial(t, cl.Broker(cl.WaitLeader("orders", 0, 10*time.Second)).Addr()), "orders", 0, "a", "b", "c", "d", "e", "f", "g", "h")
	fc, err := pb.NewGroupsClient(c1).FindCoordinator(ctx, &pb.FindCoordinatorRequest{Group: "billing"})
	if err != nil {
		t.Fatal(err)
	}
	cl.WaitFor("full ISR of the offsets partition", 20*time.Second, func() bool {
		md, err := pb.NewSkeinClient(c1).DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "__consumer_offsets"})
		return err == nil && len(md.Partitions) == 1 && len(md.Partitions[0].Isr) == 3
	})
	g := pb.NewGroupsClient(dialConn(t, fc.Addr))
	hb, err := g.Heartbeat(ctx, &pb.GroupHeartbeatRequest{Group: "billing", Topics: []string{"orders"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.CommitOffsets(ctx, commitReq("billing", hb.MemberId, hb.MemberEpoch, "orders", 0, 7)); err != nil {
		t.Fatal(err)
	}
	if r, err := g.FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: "billing"}); err != nil || len(r.Offsets) != 1 || r.Offsets[0].Offset != 7 {
		t.Fatalf("fetch with the ISR up: %v %v", r, err)
	}
	for id := int32(1); id <= 3; id++ {
		if id != fc.BrokerId {
			cl.Kill(id)
		}
	}
	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if r, err := g.FetchOffsets(fctx, &pb.FetchOffsetsRequest{Group: "billing"}); err == nil {
		t.Fatalf("a coordinator that cannot commit answered a fetch from memory: %v", r)
	}
}
