package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/group"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

func produceN(t *testing.T, ctx context.Context, addr, topic string, n int, prefix string) {
	t.Helper()
	prod := kafkaClient(t, addr, kgo.DefaultProduceTopic(topic))
	for i := 0; i < n; i++ {
		prod.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(prefix + fmt.Sprint(i))}, nil)
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// Two franz-go consumers of the classic protocol (JoinGroup/SyncGroup,
// the leader assigning with franz-go's default balancers) share a topic:
// every record is consumed once, the group is described alike through
// kadm and the native Groups API, and when one member leaves the other
// takes its partitions.
func TestKafkaClassicGroup(t *testing.T) {
	b := brokertest.Start(t)
	ctx := ctxFor(t, 90*time.Second)
	adm := kadm.NewClient(kafkaClient(t, b.KafkaAddr()))
	if _, err := adm.CreateTopic(ctx, 4, 1, nil, "c"); err != nil {
		t.Fatal(err)
	}
	const n = 400
	produceN(t, ctx, b.KafkaAddr(), "c", n, "")
	seen := make(chan string, 4*n)
	var consumers []*kgo.Client
	for i := 0; i < 2; i++ {
		consumers = append(consumers, groupMember(t, ctx, b.KafkaAddr(), seen, kgo.ConsumerGroup("classic"), kgo.ConsumeTopics("c"),
			kgo.SessionTimeout(6*time.Second)))
	}
	got := map[string]int{}
	collect(t, ctx, seen, got, n)
	// Both members hold partitions, as kadm and the native API describe.
	waitFor(t, 20*time.Second, "two members sharing four partitions", func() bool {
		dg, err := adm.DescribeGroups(ctx, "classic")
		if err != nil {
			return false
		}
		d := dg["classic"]
		if d.Protocol == "uniform" {
			t.Fatal("the group uses the consumer (KIP-848) protocol, not the classic one")
		}
		if d.State != "Stable" || d.ProtocolType != "consumer" || d.Protocol != "cooperative-sticky" || len(d.Members) != 2 {
			return false
		}
		total := 0
		for _, m := range d.Members {
			a, ok := m.Assigned.AsConsumer()
			if !ok || len(a.Topics) != 1 || len(a.Topics[0].Partitions) != 2 {
				return false
			}
			total += len(a.Topics[0].Partitions)
		}
		return total == 4
	})
	conn, err := grpc.NewClient(b.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	groups := pb.NewGroupsClient(conn)
	waitFor(t, 20*time.Second, "the native API to see the commits", func() bool {
		gr, err := groups.DescribeGroup(ctx, &pb.DescribeGroupRequest{Group: "classic"})
		if err != nil || len(gr.Members) != 2 || len(gr.Partitions) != 4 {
			return false
		}
		sum := int64(0)
		for _, p := range gr.Partitions {
			sum += p.CommittedOffset
		}
		return sum == n
	})
	// One leaves: the other owns all four partitions and reads new records.
	consumers[0].Close()
	produceN(t, ctx, b.KafkaAddr(), "c", 40, "after-")
	collect(t, ctx, seen, got, n+40)
	waitFor(t, 20*time.Second, "one member with all partitions", func() bool {
		gr, err := groups.DescribeGroup(ctx, &pb.DescribeGroupRequest{Group: "classic"})
		return err == nil && len(gr.Members) == 1 && len(gr.Members[0].Assigned) == 1 && len(gr.Members[0].Assigned[0].Partitions) == 4
	})
	for v, c := range got {
		if c != 1 {
			t.Errorf("record %s consumed %d times", v, c)
		}
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Classic group requests that break Kafka's rules are answered with its
// error codes and change nothing.
func TestKafkaClassicGroupBadInput(t *testing.T) {
	b := brokertest.Start(t)
	ctx := ctxFor(t, 60*time.Second)
	cl := kafkaClient(t, b.KafkaAddr())
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "bad"); err != nil {
		t.Fatal(err)
	}
	produceN(t, ctx, b.KafkaAddr(), "bad", 10, "")
	join := func(member string, mutate func(*kmsg.JoinGroupRequest)) *kmsg.JoinGroupResponse {
		t.Helper()
		req := kmsg.NewPtrJoinGroupRequest()
		req.Group, req.MemberID, req.ProtocolType = "bg", member, "consumer"
		req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 10000, 10000
		md := kmsg.NewConsumerMemberMetadata()
		md.Topics = []string{"bad"}
		p := kmsg.NewJoinGroupRequestProtocol()
		p.Name, p.Metadata = "range", md.AppendTo(nil)
		req.Protocols = append(req.Protocols, p)
		if mutate != nil {
			mutate(req)
		}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	expect := func(what string, got int16, want *kerr.Error) {
		t.Helper()
		if got != want.Code {
			t.Errorf("%s: error %v, want %v", what, kerr.ErrorForCode(got), want)
		}
	}
	first := join("", nil)
	expect("first join without an id", first.ErrorCode, kerr.MemberIDRequired)
	if first.MemberID == "" {
		t.Fatal("MEMBER_ID_REQUIRED without a member id")
	}
	r := join(first.MemberID, nil)
	expect("join with the given id", r.ErrorCode, nil0)
	id, gen := r.MemberID, r.Generation
	if r.LeaderID != id || gen != 1 || len(r.Members) != 1 {
		t.Fatalf("join: %+v", r)
	}
	expect("unknown member", join("stranger", nil).ErrorCode, kerr.UnknownMemberID)
	expect("empty protocol type", join("", func(q *kmsg.JoinGroupRequest) { q.ProtocolType = "" }).ErrorCode, kerr.InconsistentGroupProtocol)
	expect("other protocol type", join("", func(q *kmsg.JoinGroupRequest) { q.ProtocolType = "connect"; q.Version = 3 }).ErrorCode, kerr.InconsistentGroupProtocol)
	expect("session timeout", join("", func(q *kmsg.JoinGroupRequest) { q.SessionTimeoutMillis = 10 }).ErrorCode, kerr.InvalidSessionTimeout)

	sync := func(member string, gen int32, assign map[string][]byte) *kmsg.SyncGroupResponse {
		t.Helper()
		req := kmsg.NewPtrSyncGroupRequest()
		req.Group, req.MemberID, req.Generation = "bg", member, gen
		for m, a := range assign {
			ga := kmsg.NewSyncGroupRequestGroupAssignment()
			ga.MemberID, ga.MemberAssignment = m, a
			req.GroupAssignment = append(req.GroupAssignment, ga)
		}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	expect("sync of an old generation", sync(id, gen-1, nil).ErrorCode, kerr.IllegalGeneration)
	expect("sync of an unknown member", sync("stranger", gen, nil).ErrorCode, kerr.UnknownMemberID)
	expect("oversized assignment", sync(id, gen, map[string][]byte{id: make([]byte, group.MaxAssignmentBytes+1)}).ErrorCode, kerr.InvalidRequest)
	as := kmsg.NewConsumerMemberAssignment()
	at := kmsg.NewConsumerMemberAssignmentTopic()
	at.Topic, at.Partitions = "bad", []int32{0, 1}
	as.Topics = append(as.Topics, at)
	sr := sync(id, gen, map[string][]byte{id: as.AppendTo(nil)})
	expect("leader sync", sr.ErrorCode, nil0)
	if len(sr.MemberAssignment) == 0 {
		t.Fatal("no assignment")
	}

	hb := func(group, member string, gen int32) int16 {
		req := kmsg.NewPtrHeartbeatRequest()
		req.Group, req.MemberID, req.Generation = group, member, gen
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.ErrorCode
	}
	expect("heartbeat", hb("bg", id, gen), nil0)
	expect("heartbeat, wrong generation", hb("bg", id, gen+5), kerr.IllegalGeneration)
	expect("heartbeat, unknown member", hb("bg", "stranger", gen), kerr.UnknownMemberID)
	expect("heartbeat, unknown group", hb("nogroup", id, gen), kerr.UnknownMemberID)

	commit := func(member string, gen int32, off int64) int16 {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.MemberID, req.Generation = "bg", member, gen
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = "bad"
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = 0, off
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	expect("commit", commit(id, gen, 3), nil0)
	expect("commit, old generation", commit(id, gen-1, 1), kerr.IllegalGeneration)
	expect("commit, unknown member", commit("stranger", gen, 1), kerr.UnknownMemberID)
	expect("administrative commit with members", commit("", -1, 1), kerr.UnknownMemberID)
	ghost := kmsg.NewPtrOffsetCommitRequest()
	ghost.Group, ghost.MemberID, ghost.Generation = "ghostgroup", "ghost", 3
	gt := kmsg.NewOffsetCommitRequestTopic()
	gt.Topic = "bad"
	gp := kmsg.NewOffsetCommitRequestTopicPartition()
	gp.Partition, gp.Offset = 0, 1
	gt.Partitions = append(gt.Partitions, gp)
	ghost.Topics = append(ghost.Topics, gt)
	if gr, err := ghost.RequestWith(ctx, cl); err != nil || gr.Topics[0].Partitions[0].ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("commit of a member of a group without members: %v %+v", err, gr)
	}
	offs, err := adm.FetchOffsets(ctx, "bg")
	if o, _ := offs.Lookup("bad", 0); err != nil || o.At != 3 {
		t.Fatalf("committed offset %v (%v): a refused commit changed it", o.At, err)
	}

	// The other protocol cannot join while classic members hold the group.
	cg := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	cg.Group, cg.MemberEpoch, cg.SubscribedTopicNames, cg.RebalanceTimeoutMillis = "bg", 0, []string{"bad"}, 10000
	cgr, err := cg.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	expect("consumer-protocol heartbeat into a classic group", cgr.ErrorCode, kerr.GroupIDNotFound)

	// Nothing above moved the group.
	dg, err := adm.DescribeGroups(ctx, "bg")
	if err != nil || dg["bg"].State != "Stable" || len(dg["bg"].Members) != 1 || dg["bg"].Members[0].MemberID != id {
		t.Fatalf("group after bad input: %+v %v", dg["bg"], err)
	}
	expect("heartbeat after bad input", hb("bg", id, gen), nil0)

	// Leave: unknown member refused, the member leaves, the group empties.
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Group = "bg"
	for _, m := range []string{"stranger", id} {
		lm := kmsg.NewLeaveGroupRequestMember()
		lm.MemberID = m
		leave.Members = append(leave.Members, lm)
	}
	lr, err := leave.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	expect("leave, unknown member", lr.Members[0].ErrorCode, kerr.UnknownMemberID)
	expect("leave", lr.Members[1].ErrorCode, nil0)
	expect("administrative commit without members", commit("", -1, 2), nil0)
	dg, _ = adm.DescribeGroups(ctx, "bg", "never")
	if dg["bg"].State != "Empty" || dg["never"].State != "Dead" {
		t.Fatalf("after leaving: %q, unknown group: %q", dg["bg"].State, dg["never"].State)
	}

	// A KIP-848 group refuses classic joins while it has members.
	kc := kafkaClient(t, b.KafkaAddr(), kgo.ConsumerGroup("kip848"), kgo.ConsumeTopics("bad"), kgo.ServerSideBalancer(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for n := 0; n < 10; {
		n += kc.PollFetches(ctx).NumRecords()
	}
	jr := join("", func(q *kmsg.JoinGroupRequest) { q.Group = "kip848"; q.Version = 3 })
	expect("classic join into a consumer-protocol group", jr.ErrorCode, kerr.InconsistentGroupProtocol)

	// An id handed out to a classic member does not hold the group: a
	// consumer-protocol member may take it, and the classic one is then
	// refused.
	pendingJoin := join("", func(q *kmsg.JoinGroupRequest) { q.Group = "mixed" })
	expect("classic first join", pendingJoin.ErrorCode, kerr.MemberIDRequired)
	cg.Group = "mixed"
	cgr, err = cg.RequestWith(ctx, cl)
	if err != nil || cgr.ErrorCode != 0 || cgr.MemberID == nil {
		t.Fatalf("consumer-protocol join of a group with a pending classic id: %v %v", err, kerr.ErrorForCode(cgr.ErrorCode))
	}
	jr = join(pendingJoin.MemberID, func(q *kmsg.JoinGroupRequest) { q.Group = "mixed" })
	expect("classic join after a consumer-protocol member took the group", jr.ErrorCode, kerr.InconsistentGroupProtocol)
	dg, _ = adm.DescribeGroups(ctx, "mixed")
	if dg["mixed"].Protocol != "uniform" || len(dg["mixed"].Members) != 1 {
		t.Fatalf("mixed group: %+v", dg["mixed"])
	}
}

var nil0 = &kerr.Error{Message: "NONE", Code: 0}
