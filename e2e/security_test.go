package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// internalAt is the inter-broker service as anyone who reaches addr can call it.
func internalAt(t *testing.T, addr string) pb.InternalClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewInternalClient(conn)
}

func wantUnimplemented(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("%s on a client port: %v, want UNIMPLEMENTED", what, err)
	}
}

// partitionState is the leader's own view of a partition (LocalLog on its
// inter-broker port, which the test may reach).
func partitionState(t *testing.T, peerAddr, topic string) *pb.LocalLogResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := internalAt(t, peerAddr).LocalLog(ctx, &pb.LocalLogRequest{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A client that forges a follower's fetch cannot advance the high
// watermark: with a follower of an RF 2, min-insync 2 partition stopped (and
// still in the ISR), a forged ReplicaFetch claiming to be that follower at
// the leader's log end, sent to the client port, is refused, the HW stays,
// and an acks=all produce is not acknowledged. The same request on the
// inter-broker port is accepted — that port trusts its callers, which is why
// it must stay on the brokers' private network — so the forgery is a real one.
func TestForgedFollowerFetchOnClientPort(t *testing.T) {
	c := proctest.StartCluster(t, 3, "--replica-lag-time", "60s")
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "ff", client.TopicConfig{Partitions: 1, ReplicationFactor: 2, MinInsyncReplicas: 2}); err != nil {
		t.Fatal(err)
	}
	leader := c.Leader(cl, "ff", 0, -1, 20*time.Second)
	md, err := cl.Metadata(ctx, "ff")
	if err != nil {
		t.Fatal(err)
	}
	pi := md.Topics[0].Partitions[0]
	follower := pi.Replicas[0]
	if follower == leader {
		follower = pi.Replicas[1]
	}
	p, err := cl.NewProducer(client.DeliveryTimeout(30*time.Second), client.RecordPartitioner(client.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.ProduceSync(ctx, &client.Record{Topic: "ff", Value: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	c.Brokers[follower].Kill()
	acked := make(chan error, 1)
	go func() { acked <- p.ProduceSync(ctx, &client.Record{Topic: "ff", Value: []byte("unreplicated")}) }()
	lpeer := c.Brokers[leader].PeerAddr
	var st *pb.LocalLogResponse
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st = partitionState(t, lpeer, "ff"); st.LogEndOffset > st.HighWatermark {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the produce never reached the leader's log: %+v", st)
		}
	}
	forged := &pb.ReplicaFetchRequest{Topic: "ff", Partition: 0, ReplicaId: follower, LeaderEpoch: st.LeaderEpoch,
		FetchOffset: st.LogEndOffset, MaxBytes: 1 << 20}
	for _, id := range c.IDs {
		if c.Brokers[id].Running() {
			_, err := internalAt(t, c.Brokers[id].Addr).ReplicaFetch(ctx, forged)
			wantUnimplemented(t, fmt.Sprintf("forged ReplicaFetch to broker %d", id), err)
		}
	}
	select {
	case err := <-acked:
		t.Fatalf("acks=all produce answered (%v) with its only follower stopped", err)
	case <-time.After(time.Second):
	}
	if after := partitionState(t, lpeer, "ff"); after.HighWatermark != st.HighWatermark {
		t.Fatalf("HW moved from %d to %d after forged fetches on the client ports", st.HighWatermark, after.HighWatermark)
	}
	// The control: the same request where brokers send it moves the HW.
	resp, err := internalAt(t, lpeer).ReplicaFetch(ctx, forged)
	if err != nil || resp.Error != nil {
		t.Fatalf("the forged fetch on the inter-broker port: %v %v", resp.GetError(), err)
	}
	if after := partitionState(t, lpeer, "ff"); after.HighWatermark != st.LogEndOffset {
		t.Fatalf("control: the fetch on the inter-broker port left the HW at %d, want %d", after.HighWatermark, st.LogEndOffset)
	}
}

// Forged ControlledShutdown and AlterPartition requests on the client ports
// of every broker (the controller's included) are refused and change
// nothing: no broker fenced, every leader and ISR as before, acks=all
// produce still works.
func TestForgedControllerRequestsOnClientPort(t *testing.T) {
	c := proctest.StartCluster(t, 3)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "fc", client.TopicConfig{Partitions: 3, ReplicationFactor: 3, MinInsyncReplicas: 2}); err != nil {
		t.Fatal(err)
	}
	c.WaitHealthy(30 * time.Second)
	before, err := cl.Metadata(ctx, "fc")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range c.IDs {
		ic := internalAt(t, c.Brokers[id].Addr)
		for _, victim := range c.IDs {
			_, err := ic.ControlledShutdown(ctx, &pb.ControlledShutdownRequest{BrokerId: victim})
			wantUnimplemented(t, fmt.Sprintf("ControlledShutdown of %d sent to %d", victim, id), err)
		}
		for _, pi := range before.Topics[0].Partitions {
			_, err := ic.AlterPartition(ctx, &pb.AlterPartitionRequest{Topic: "fc", Partition: pi.Partition, LeaderId: pi.Leader,
				LeaderEpoch: pi.LeaderEpoch, PartitionEpoch: 0, NewIsr: []int32{pi.Leader}})
			wantUnimplemented(t, fmt.Sprintf("AlterPartition of fc-%d sent to %d", pi.Partition, id), err)
		}
		_, err := ic.LocalLog(ctx, &pb.LocalLogRequest{Topic: "fc"})
		wantUnimplemented(t, fmt.Sprintf("LocalLog sent to %d", id), err)
		_, err = ic.OffsetForLeaderEpoch(ctx, &pb.OffsetForLeaderEpochRequest{Topic: "fc"})
		wantUnimplemented(t, fmt.Sprintf("OffsetForLeaderEpoch sent to %d", id), err)
	}
	time.Sleep(time.Second) // what a fence would take to reach the metadata
	desc, err := cl.DescribeCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range desc.Members {
		if m.Fenced {
			t.Errorf("broker %d fenced after forged requests", m.ID)
		}
	}
	after, err := cl.Metadata(ctx, "fc")
	if err != nil {
		t.Fatal(err)
	}
	for i, pi := range after.Topics[0].Partitions {
		b := before.Topics[0].Partitions[i]
		if pi.Leader != b.Leader || pi.LeaderEpoch != b.LeaderEpoch || !slices.Equal(pi.ISR, b.ISR) {
			t.Errorf("fc-%d changed: leader %d epoch %d ISR %v, was %d %d %v", i, pi.Leader, pi.LeaderEpoch, pi.ISR, b.Leader, b.LeaderEpoch, b.ISR)
		}
	}
	p, err := cl.NewProducer(client.DeliveryTimeout(10*time.Second), client.RecordPartitioner(client.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for part := range int32(3) {
		if err := p.ProduceSync(ctx, &client.Record{Topic: "fc", Partition: part, Value: []byte("still works")}); err != nil {
			t.Errorf("acks=all produce to fc-%d after the forged requests: %v", part, err)
		}
	}
}

// A produce naming a producer id the cluster never allocated is refused on
// every broker and appends nothing; a real (idempotent) producer's id keeps
// working when its partition's leader stops and another takes over.
func TestForgedProducerID(t *testing.T) {
	c := proctest.StartCluster(t, 3)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "fp", client.TopicConfig{Partitions: 1, ReplicationFactor: 3, MinInsyncReplicas: 2}); err != nil {
		t.Fatal(err)
	}
	p, err := cl.NewProducer(client.Idempotent(true), client.DeliveryTimeout(60*time.Second), client.RecordPartitioner(client.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.ProduceSync(ctx, &client.Record{Topic: "fp", Value: []byte("real 1")}); err != nil {
		t.Fatal(err)
	}
	leader := c.Leader(cl, "fp", 0, -1, 20*time.Second)
	before := partitionState(t, c.Brokers[leader].PeerAddr, "fp")
	bb := batch.NewBuilder(batch.None)
	bb.SetProducer(1<<40, 0, 0)
	bb.Add(&batch.Record{Timestamp: 1, Value: []byte("forged")})
	forged, err := bb.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(c.Brokers[leader].Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = pb.NewSkeinClient(conn).Produce(ctx, &pb.ProduceRequest{Topic: "fp", LeaderEpoch: -1, Batch: forged})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "InitProducer") {
		t.Fatalf("produce with a never-allocated producer id: %v, want FAILED_PRECONDITION naming InitProducer", err)
	}
	if after := partitionState(t, c.Brokers[leader].PeerAddr, "fp"); after.LogEndOffset != before.LogEndOffset {
		t.Fatalf("log end moved from %d to %d after a refused forged produce", before.LogEndOffset, after.LogEndOffset)
	}
	c.Brokers[leader].Kill()
	c.Leader(cl, "fp", 0, leader, 30*time.Second)
	if err := p.ProduceSync(ctx, &client.Record{Topic: "fp", Value: []byte("real 2")}); err != nil {
		t.Fatalf("the real producer after its leader died: %v", err)
	}
	c.Restart(leader)
	if err := p.ProduceSync(ctx, &client.Record{Topic: "fp", Value: []byte("real 3")}); err != nil {
		t.Fatalf("the real producer after the restart: %v", err)
	}
	recs := proctest.ReadAll(t, cl, "fp", 0)
	if len(recs) != 3 {
		t.Fatalf("read %d records, want the 3 real ones", len(recs))
	}
}
