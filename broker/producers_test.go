package broker_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

func initProducer(t testing.TB, c pb.SkeinClient, req *pb.InitProducerRequest) *pb.InitProducerResponse {
	t.Helper()
	r, err := c.InitProducer(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestInitProducer(t *testing.T) {
	b := brokertest.Start(t)
	c := dial(t, b.Addr())
	seen := map[int64]bool{}
	for range 5 {
		r := initProducer(t, c, &pb.InitProducerRequest{})
		if r.ProducerEpoch != 0 || r.ProducerId < 0 || seen[r.ProducerId] {
			t.Fatalf("new producer: %+v (seen %v)", r, seen)
		}
		seen[r.ProducerId] = true
	}
	// A bump names the id and the epoch it has.
	r := initProducer(t, c, &pb.InitProducerRequest{ProducerId: proto.Int64(3), ProducerEpoch: 7})
	if r.ProducerId != 3 || r.ProducerEpoch != 8 {
		t.Fatalf("bump: %+v", r)
	}
	// The last epoch moves on to a new id.
	r = initProducer(t, c, &pb.InitProducerRequest{ProducerId: proto.Int64(3), ProducerEpoch: math.MaxInt16})
	if r.ProducerId == 3 || seen[r.ProducerId] || r.ProducerEpoch != 0 {
		t.Fatalf("bump past the last epoch: %+v", r)
	}
	seen[r.ProducerId] = true
	for _, bad := range []*pb.InitProducerRequest{
		{ProducerId: proto.Int64(-1)},
		{ProducerId: proto.Int64(1), ProducerEpoch: -1},
		{ProducerId: proto.Int64(1), ProducerEpoch: math.MaxInt16 + 1},
		{ProducerEpoch: 4},
	} {
		_, err := c.InitProducer(context.Background(), bad)
		if code, d := detail(t, err); code != codes.InvalidArgument || d.GetReason() != pb.ErrorReason_INVALID_REQUEST {
			t.Fatalf("%v: %v", bad, err)
		}
	}
	// Across a restart no id comes back (the rest of the block is skipped).
	b.Restart()
	c = dial(t, b.Addr())
	for range 5 {
		r := initProducer(t, c, &pb.InitProducerRequest{})
		if seen[r.ProducerId] {
			t.Fatalf("producer id %d handed out again after a restart", r.ProducerId)
		}
		for id := range seen {
			if r.ProducerId < id {
				t.Fatalf("producer id %d after %d", r.ProducerId, id)
			}
		}
	}
}

func idemBatch(t testing.TB, pid int64, epoch int16, seq int32, values ...string) []byte {
	t.Helper()
	b := batch.NewBuilder(batch.None)
	b.SetProducer(pid, epoch, seq)
	for _, v := range values {
		b.Add(&batch.Record{Timestamp: 1, Value: []byte(v)})
	}
	out, err := b.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Dedup, sequence and fencing answers over the API, and the producer state
// across a restart.
func TestIdempotentProduce(t *testing.T) {
	b := brokertest.Start(t)
	c := dial(t, b.Addr())
	createTopic(t, c, "idem", 1)
	ctx := context.Background()
	id := initProducer(t, c, &pb.InitProducerRequest{}).ProducerId
	send := func(epoch int16, seq int32, expected *int64, values ...string) (*pb.ProduceResponse, error) {
		return c.Produce(ctx, &pb.ProduceRequest{Topic: "idem", LeaderEpoch: -1, ExpectedOffset: expected, Batch: idemBatch(t, id, epoch, seq, values...)})
	}
	if r, err := send(0, 0, nil, "a", "b"); err != nil || r.BaseOffset != 0 {
		t.Fatalf("%v %v", r, err)
	}
	if r, err := send(0, 2, proto.Int64(2), "c"); err != nil || r.BaseOffset != 2 {
		t.Fatalf("%v %v", r, err)
	}
	// Retries: the original offsets, even for the conditional one whose
	// expected offset is now stale.
	for range 2 {
		if r, err := send(0, 0, nil, "a", "b"); err != nil || r.BaseOffset != 0 {
			t.Fatalf("retry: %v %v", r, err)
		}
		if r, err := send(0, 2, proto.Int64(2), "c"); err != nil || r.BaseOffset != 2 {
			t.Fatalf("conditional retry: %v %v", r, err)
		}
	}
	_, err := send(0, 7, nil, "gap")
	if code, d := detail(t, err); code != codes.FailedPrecondition || d.GetReason() != pb.ErrorReason_OUT_OF_ORDER_SEQUENCE {
		t.Fatalf("gap: %v", err)
	}
	b.Restart()
	c = dial(t, b.Addr())
	if r, err := send(0, 2, nil, "c"); err != nil || r.BaseOffset != 2 {
		t.Fatalf("retry after a restart: %v %v", r, err)
	}
	if r, err := send(1, 0, nil, "d"); err != nil || r.BaseOffset != 3 {
		t.Fatalf("new epoch: %v %v", r, err)
	}
	_, err = send(0, 3, nil, "zombie")
	if code, d := detail(t, err); code != codes.FailedPrecondition || d.GetReason() != pb.ErrorReason_PRODUCER_FENCED {
		t.Fatalf("old epoch: %v", err)
	}
	if recs := fetchAll(t, c, "idem", 0, 0); len(recs) != 4 {
		t.Fatalf("%d records, want 4", len(recs))
	}
}

// In a cluster: any broker answers InitProducer (the controller allocates
// the ids; the others forward), and a new leader deduplicates a retry of a
// batch acknowledged by the leader it replaced, because followers record
// the producer state from the batches they replicate.
func TestClusterIdempotentFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("three brokers with gossip and Raft")
	}
	cl := brokertest.NewCluster(t, 3)
	ctx := cl.Context(60 * time.Second)
	ctrl := cl.Broker(1).Metadata().ControllerID
	seen := map[int64]int32{}
	for id := int32(1); id <= 3; id++ {
		for range 3 {
			r, err := dial(t, cl.Broker(id).Addr()).InitProducer(ctx, &pb.InitProducerRequest{})
			if err != nil {
				t.Fatalf("InitProducer on broker %d (controller %d): %v", id, ctrl, err)
			}
			if other, dup := seen[r.ProducerId]; dup {
				t.Fatalf("producer id %d from broker %d and broker %d", r.ProducerId, other, id)
			}
			seen[r.ProducerId] = id
		}
	}
	c := dial(t, cl.Addrs()[0])
	if _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "idem", Partitions: 1, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	leader := cl.WaitLeader("idem", 0, 20*time.Second)
	pid := initProducer(t, c, &pb.InitProducerRequest{}).ProducerId
	send := func(to int32, seq int32) (*pb.ProduceResponse, error) {
		return dial(t, cl.Broker(to).Addr()).Produce(ctx, &pb.ProduceRequest{Topic: "idem", LeaderEpoch: -1, Acks: pb.Acks_ACKS_ALL,
			Batch: idemBatch(t, pid, 0, seq, fmt.Sprint(seq), fmt.Sprint(seq))})
	}
	for seq := int32(0); seq < 10; seq += 2 {
		if r, err := send(leader, seq); err != nil || r.BaseOffset != int64(seq) {
			t.Fatalf("batch %d: %v %v", seq, r, err)
		}
	}
	cl.Kill(leader)
	next := cl.WaitLeader("idem", 0, 20*time.Second)
	if next == leader {
		t.Fatal("the killed broker still leads")
	}
	for _, seq := range []int32{8, 0} {
		if r, err := send(next, seq); err != nil || r.BaseOffset != int64(seq) {
			t.Fatalf("retry of batch %d on the new leader %d: %v %v; want the original offset", seq, next, r, err)
		}
	}
	_, err := send(next, 12)
	if code, d := detail(t, err); code != codes.FailedPrecondition || d.GetReason() != pb.ErrorReason_OUT_OF_ORDER_SEQUENCE {
		t.Fatalf("gap on the new leader: %v", err)
	}
	if r, err := send(next, 10); err != nil || r.BaseOffset != 10 {
		t.Fatalf("next batch on the new leader: %v %v", r, err)
	}
	if st := cl.Broker(next).Partition("idem", 0).State(); st.LogEndOffset != 12 {
		t.Fatalf("log ends at %d, want 12", st.LogEndOffset)
	}
}

// A producer id the controller never allocated is refused, for a produce
// and for an epoch bump, and nothing is appended; the ids InitProducer
// hands out keep working, also after a restart.
func TestUnallocatedProducerIDRefused(t *testing.T) {
	b := brokertest.Start(t)
	c := dial(t, b.Addr())
	createTopic(t, c, "pid", 1)
	ctx := context.Background()
	produce := func(pid int64, epoch int16, seq int32, v string) (*pb.ProduceResponse, error) {
		return c.Produce(ctx, &pb.ProduceRequest{Topic: "pid", LeaderEpoch: -1, Batch: idemBatch(t, pid, epoch, seq, v)})
	}
	real := initProducer(t, c, &pb.InitProducerRequest{})
	for _, forged := range []struct {
		pid   int64
		epoch int16
	}{{1 << 40, 0}, {real.ProducerId + 5000, 3}, {math.MaxInt64, 0}} {
		start := time.Now()
		_, err := produce(forged.pid, forged.epoch, 0, "forged")
		code, d := detail(t, err)
		if code != codes.FailedPrecondition || d.GetReason() != pb.ErrorReason_INVALID_REQUEST ||
			!strings.Contains(d.GetMessage(), "InitProducer") || !strings.Contains(d.GetMessage(), fmt.Sprint(forged.pid)) {
			t.Fatalf("produce with never-allocated producer id %d: %v", forged.pid, err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("refusal took %v", el)
		}
		_, err = c.InitProducer(ctx, &pb.InitProducerRequest{ProducerId: proto.Int64(forged.pid), ProducerEpoch: int32(forged.epoch)})
		if code, _ := detail(t, err); code != codes.FailedPrecondition {
			t.Fatalf("epoch bump of never-allocated producer id %d: %v", forged.pid, err)
		}
	}
	if r, err := produce(real.ProducerId, int16(real.ProducerEpoch), 0, "real"); err != nil || r.BaseOffset != 0 {
		t.Fatalf("the allocated producer id after refused forgeries: %v %v (offset 0 expected: nothing else appended)", r, err)
	}
	b.Restart()
	c = dial(t, b.Addr())
	if r, err := produce(real.ProducerId, int16(real.ProducerEpoch), 1, "after restart"); err != nil || r.BaseOffset != 1 {
		t.Fatalf("the allocated producer id after a restart: %v %v", r, err)
	}
	bumped := initProducer(t, c, &pb.InitProducerRequest{ProducerId: proto.Int64(real.ProducerId), ProducerEpoch: real.ProducerEpoch})
	if r, err := produce(bumped.ProducerId, int16(bumped.ProducerEpoch), 0, "bumped"); err != nil || r.BaseOffset != 2 {
		t.Fatalf("the bumped epoch: %v %v", r, err)
	}
}
