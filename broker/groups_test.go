package broker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

func commitReq(group, member string, epoch int32, topic string, part int32, off int64) *pb.CommitOffsetsRequest {
	return &pb.CommitOffsetsRequest{Group: group, MemberId: member, MemberEpoch: epoch,
		Offsets: []*pb.OffsetCommit{{Topic: topic, Partition: part, Offset: off}}}
}

func wantReason(t *testing.T, what string, err error, code codes.Code, reason pb.ErrorReason, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	c, d := detail(t, err)
	if c != code || d == nil || d.Reason != reason || !strings.Contains(d.Message, msg) {
		t.Fatalf("%s: %v %v, want %v %v containing %q", what, c, d, code, reason, msg)
	}
}

func committed(t *testing.T, g pb.GroupsClient, group string) map[string]int64 {
	t.Helper()
	r, err := g.FetchOffsets(context.Background(), &pb.FetchOffsetsRequest{Group: group})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, o := range r.Offsets {
		out[fmt.Sprintf("%s-%d", o.Topic, o.Partition)] = o.Offset
	}
	return out
}

func TestGroupOffsetsSurviveRestart(t *testing.T) {
	b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) { c.Groups.OffsetsPartitions = 4 }))
	conn := dialConn(t, b.Addr())
	c, g := pb.NewSkeinClient(conn), pb.NewGroupsClient(conn)
	ctx := context.Background()
	createTopic(t, c, "orders", 2)
	produce(t, c, "orders", 0, "a", "b", "c")

	_, err := g.FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: "billing"})
	wantReason(t, "fetch before the offsets topic", err, codes.FailedPrecondition, pb.ErrorReason_NOT_COORDINATOR, "billing")
	fc, err := g.FindCoordinator(ctx, &pb.FindCoordinatorRequest{Group: "billing"})
	if err != nil || fc.BrokerId != b.ID() || fc.Addr != b.Addr() {
		t.Fatalf("FindCoordinator: %v %v", fc, err)
	}
	_, err = g.FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: "billing"})
	wantReason(t, "unknown group", err, codes.NotFound, pb.ErrorReason_UNKNOWN_GROUP, `"billing"`)

	// An administrative commit (no member) on an empty group.
	if _, err := g.CommitOffsets(ctx, commitReq("billing", "", 0, "orders", 0, 2)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what   string
		req    *pb.CommitOffsetsRequest
		code   codes.Code
		reason pb.ErrorReason
		msg    string
	}{
		{"beyond the log end", commitReq("billing", "", 0, "orders", 0, 4), codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST, "between 0 and 3"},
		{"no such partition", commitReq("billing", "", 0, "orders", 2, 0), codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST, "partitions 0 to 1"},
		{"no such topic", commitReq("billing", "", 0, "nope", 0, 0), codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST, `"nope"`},
		{"negative", commitReq("billing", "", 0, "orders", 0, -1), codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST, "0 or more"},
		{"bad group", commitReq("bad/name", "", 0, "orders", 0, 0), codes.InvalidArgument, pb.ErrorReason_INVALID_GROUP, "bad/name"},
		{"unknown member", commitReq("billing", "ghost", 3, "orders", 0, 1), codes.FailedPrecondition, pb.ErrorReason_FENCED_MEMBER_EPOCH, "ghost"},
		{"internal topic", commitReq("billing", "", 0, "__consumer_offsets", 0, 0), codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST, "__consumer_offsets"},
	} {
		_, err := g.CommitOffsets(ctx, tc.req)
		wantReason(t, tc.what, err, tc.code, tc.reason, tc.msg)
	}
	if got := committed(t, g, "billing"); fmt.Sprint(got) != "map[orders-0:2]" {
		t.Fatalf("refused commits changed offsets: %v", got)
	}
	// Users cannot produce to the internal topic; it is hidden from lists.
	_, err = c.Produce(ctx, &pb.ProduceRequest{Topic: "__consumer_offsets", Partition: 0, LeaderEpoch: -1, Batch: mkBatch(t, "x")})
	wantReason(t, "produce to offsets topic", err, codes.InvalidArgument, pb.ErrorReason_INVALID_TOPIC, "internal")
	lt, _ := c.ListTopics(ctx, &pb.ListTopicsRequest{})
	lti, _ := c.ListTopics(ctx, &pb.ListTopicsRequest{Internal: true})
	if len(lt.Topics) != 1 || len(lti.Topics) != 2 {
		t.Fatalf("topic list: %d, with internal: %d", len(lt.Topics), len(lti.Topics))
	}

	// A member joins, takes both partitions, commits; a stale epoch is fenced.
	hb, err := g.Heartbeat(ctx, &pb.GroupHeartbeatRequest{Group: "billing", Topics: []string{"orders"}, ClientId: "c1"})
	if err != nil || len(hb.Assignment) != 1 || len(hb.Assignment[0].Partitions) != 2 {
		t.Fatalf("join: %v %v", hb, err)
	}
	if _, err := g.CommitOffsets(ctx, commitReq("billing", hb.MemberId, hb.MemberEpoch, "orders", 0, 3)); err != nil {
		t.Fatal(err)
	}
	_, err = g.CommitOffsets(ctx, commitReq("billing", hb.MemberId, hb.MemberEpoch+3, "orders", 0, 1))
	wantReason(t, "stale epoch", err, codes.FailedPrecondition, pb.ErrorReason_FENCED_MEMBER_EPOCH, "epoch")
	_, err = g.CommitOffsets(ctx, commitReq("billing", "", 0, "orders", 0, 1))
	wantReason(t, "admin commit with members", err, codes.FailedPrecondition, pb.ErrorReason_GROUP_NOT_EMPTY, "c1")
	_, err = g.DeleteGroup(ctx, &pb.DeleteGroupRequest{Group: "billing"})
	wantReason(t, "delete with members", err, codes.FailedPrecondition, pb.ErrorReason_GROUP_NOT_EMPTY, hb.MemberId)
	d, err := g.DescribeGroup(ctx, &pb.DescribeGroupRequest{Group: "billing"})
	if err != nil || len(d.Members) != 1 || d.Members[0].ClientId != "c1" || d.Members[0].Host != "127.0.0.1" || len(d.Partitions) != 2 ||
		d.Partitions[0].CommittedOffset != 3 || d.Partitions[0].LogEndOffset != 3 || d.Partitions[0].Lag != 0 || d.Partitions[1].CommittedOffset != -1 {
		t.Fatalf("describe: %v %v", d, err)
	}
	for metricName, want := range map[string]string{
		`skein_group_committed_offset{group="billing",partition="0",topic="orders"}`: " 3",
		`skein_group_lag{group="billing",partition="0",topic="orders"}`:              " 0",
		`skein_group_members{group="billing"}`:                                       " 1",
	} {
		if got := metric(t, b.HTTPAddr(), metricName); !strings.HasSuffix(got, want) {
			t.Errorf("metric %s: %q, want value%s", metricName, got, want)
		}
	}
	if got := metric(t, b.HTTPAddr(), `skein_group_rebalances_total{group="billing"}`); got == "" {
		t.Error("no rebalance counter")
	}
	produce(t, c, "orders", 0, "d", "e")
	// The lag metric's high watermarks are refreshed every 5 s.
	lag := `skein_group_lag{group="billing",partition="0",topic="orders"}`
	for deadline := time.Now().Add(10 * time.Second); !strings.HasSuffix(metric(t, b.HTTPAddr(), lag), " 2"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("lag after producing 2: %q", metric(t, b.HTTPAddr(), lag))
		}
	}
	if _, err := g.Heartbeat(ctx, &pb.GroupHeartbeatRequest{Group: "billing", MemberId: hb.MemberId, MemberEpoch: -1}); err != nil {
		t.Fatal(err)
	}

	b.Restart()
	conn = dialConn(t, b.Addr())
	g = pb.NewGroupsClient(conn)
	if got := committed(t, g, "billing"); fmt.Sprint(got) != "map[orders-0:3]" {
		t.Fatalf("after restart: %v", got)
	}
	lg, err := g.ListGroups(ctx, &pb.ListGroupsRequest{})
	if err != nil || len(lg.Groups) != 1 || lg.Groups[0].Group != "billing" || lg.Groups[0].State != "Empty" {
		t.Fatalf("list: %v %v", lg, err)
	}
	if _, err := g.DeleteGroup(ctx, &pb.DeleteGroupRequest{Group: "billing"}); err != nil {
		t.Fatal(err)
	}
	_, err = g.FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: "billing"})
	wantReason(t, "deleted group", err, codes.NotFound, pb.ErrorReason_UNKNOWN_GROUP, "billing")
	b.Restart()
	g = pb.NewGroupsClient(dialConn(t, b.Addr()))
	_, err = g.FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: "billing"})
	wantReason(t, "deleted group after restart", err, codes.NotFound, pb.ErrorReason_UNKNOWN_GROUP, "billing")
}

// Snapshots bound what a restart replays, and commits keep their order
// across them.
func TestGroupOffsetsSnapshot(t *testing.T) {
	b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) {
		c.Groups.OffsetsPartitions = 1
		c.Groups.SnapshotEvery = 10
	}))
	conn := dialConn(t, b.Addr())
	c, g := pb.NewSkeinClient(conn), pb.NewGroupsClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	createTopic(t, c, "t", 1)
	for i := range 50 {
		produce(t, c, "t", 0, fmt.Sprint(i))
	}
	if _, err := g.FindCoordinator(ctx, &pb.FindCoordinatorRequest{Group: "g"}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := g.CommitOffsets(ctx, commitReq("g", "", 0, "t", 0, int64(i+1))); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			time.Sleep(300 * time.Millisecond) // let the coordinator's loop snapshot
		}
	}
	recs := fetchAll(t, c, "__consumer_offsets", 0, 0)
	snaps := 0
	for _, r := range recs {
		if strings.Contains(string(r.Value), `"snapshot"`) {
			snaps++
		}
	}
	if snaps == 0 {
		t.Fatalf("no snapshot among %d records", len(recs))
	}
	b.Restart()
	g = pb.NewGroupsClient(dialConn(t, b.Addr()))
	if got := committed(t, g, "g"); fmt.Sprint(got) != "map[t-0:50]" {
		t.Fatalf("after restart: %v", got)
	}
}
