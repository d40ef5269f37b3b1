package broker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

func newClient(t testing.TB, addrs []string) *client.Client {
	t.Helper()
	c, err := client.New(client.Brokers(addrs...), client.RequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// replicaBytes returns a replica's log bytes below upTo, from LocalLog on
// its inter-broker address.
func replicaBytes(t testing.TB, addr, topic string, part int32, upTo int64) []byte {
	t.Helper()
	conn := dialConn(t, addr)
	ic := pb.NewInternalClient(conn)
	var out []byte
	for off := int64(0); off < upTo; {
		r, err := ic.LocalLog(context.Background(), &pb.LocalLogRequest{Topic: topic, Partition: part, FromOffset: off, MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Batches) == 0 {
			t.Fatalf("replica at %s ends at %d, below %d", addr, r.LogEndOffset, upTo)
		}
		for rest := r.Batches; len(rest) > 0; {
			v, next, err := batch.Next(rest)
			if err != nil {
				t.Fatal(err)
			}
			if v.BaseOffset() >= upTo {
				return out
			}
			out = append(out, v...)
			off = v.NextOffset()
			rest = next
		}
	}
	return out
}

// Kill the leader of a partition under acks=all load: a new leader from the
// ISR takes over, producers continue, nothing acknowledged is lost; the old
// leader restarts, truncates, catches up and rejoins the ISR; every replica
// is byte-identical below the high watermark.
func TestClusterFailover(t *testing.T) { brokertest.ForEachEngine(t, testClusterFailover) }

func testClusterFailover(t *testing.T, engine brokertest.Option) {
	if testing.Short() {
		t.Skip("three brokers with gossip and Raft")
	}
	cl := brokertest.NewCluster(t, 3, engine)
	c := newClient(t, cl.Addrs())
	ctx := cl.Context(60 * time.Second)
	if _, err := c.CreateTopic(ctx, "orders", client.TopicConfig{Partitions: 3, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	leader := cl.WaitLeader("orders", 0, 20*time.Second)
	p, err := c.NewProducer(client.Linger(time.Millisecond), client.DeliveryTimeout(60*time.Second), client.RecordPartitioner(client.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[string]int64{}
	var failed int
	produce := func(n, from int) {
		var wg sync.WaitGroup
		for i := from; i < from+n; i++ {
			wg.Add(1)
			v := fmt.Sprintf("v%06d", i)
			p.Produce(ctx, &client.Record{Topic: "orders", Partition: 0, Value: []byte(v)}, func(r *client.Record, err error) {
				defer wg.Done()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed++
					return
				}
				if r.Partition != 0 {
					t.Errorf("record for partition 0 landed in %d", r.Partition)
				}
				acked[v] = r.Offset
			})
		}
		wg.Wait()
	}
	produce(500, 0)
	// Kill the leader in the middle of a second wave.
	done := make(chan struct{})
	go func() { produce(1500, 500); close(done) }()
	time.Sleep(50 * time.Millisecond)
	cl.Kill(leader)
	newLeader := cl.WaitLeader("orders", 0, 20*time.Second)
	if newLeader == leader {
		t.Fatalf("leader %d still leads after being killed", leader)
	}
	<-done
	if failed > 0 {
		t.Fatalf("%d records failed across the failover", failed)
	}
	// Every acknowledged record is readable at its offset.
	k, err := c.NewConsumer(client.StopAtEnd())
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Assign(ctx, "orders", []int32{0}, client.Beginning()); err != nil {
		t.Fatal(err)
	}
	at := map[int64]string{}
	next := int64(0)
	for {
		r, err := k.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.Offset != next {
			t.Fatalf("offset %d after %d: not dense", r.Offset, next-1)
		}
		next++
		at[r.Offset] = string(r.Value)
	}
	for v, off := range acked {
		if at[off] != v {
			for id := int32(1); id <= 3; id++ {
				if b := cl.Broker(id); b.Partition("orders", 0) != nil {
					t.Logf("broker %d: %+v", id, b.Partition("orders", 0).State())
				}
			}
			t.Logf("consumer read %d records; %d acked", next, len(acked))
			t.Fatalf("acknowledged %s at offset %d, read %q there", v, off, at[off])
		}
	}
	// The old leader comes back, catches up and rejoins the ISR.
	cl.Restart(leader)
	cl.WaitFor("ISR of 3 again", 30*time.Second, func() bool {
		for _, pm := range cl.Broker(newLeader).Metadata().Topics["orders"].Partitions {
			if len(pm.ISR) != 3 {
				return false
			}
		}
		return true
	})
	hw := cl.Broker(newLeader).Partition("orders", 0).State().HighWatermark
	want := replicaBytes(t, cl.Broker(newLeader).PeerAddr(), "orders", 0, hw)
	for id := int32(1); id <= 3; id++ {
		cl.WaitFor("replica caught up", 10*time.Second, func() bool {
			return cl.Broker(id).Partition("orders", 0).State().LogEndOffset >= hw
		})
		if got := replicaBytes(t, cl.Broker(id).PeerAddr(), "orders", 0, hw); !bytes.Equal(got, want) {
			t.Fatalf("replica %d differs from the leader below the HW %d", id, hw)
		}
	}
	t.Logf("%d records acknowledged, leader %d -> %d, HW %d", len(acked), leader, newLeader, hw)
}

// With two of three replicas down, acks=all fails; it never succeeds.
func TestClusterAcksAllNeedsMinISR(t *testing.T) {
	if testing.Short() {
		t.Skip("three brokers with gossip and Raft")
	}
	cl := brokertest.NewCluster(t, 3)
	c := newClient(t, cl.Addrs())
	ctx := cl.Context(60 * time.Second)
	if _, err := c.CreateTopic(ctx, "safe", client.TopicConfig{Partitions: 1, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	leader := cl.WaitLeader("safe", 0, 20*time.Second)
	var others []int32
	for id := int32(1); id <= 3; id++ {
		if id != leader {
			others = append(others, id)
		}
	}
	cl.Kill(others[0])
	cl.Kill(others[1])
	// Whether the controller quorum survived (it needs two of its three
	// voters) decides whether the ISR shrinks and the leader refuses up
	// front (NOT_ENOUGH_REPLICAS) or appends and times out waiting for
	// replication (TIMED_OUT, indeterminate): acks=all never succeeds.
	conn := dial(t, cl.Broker(leader).Addr())
	deadline := time.Now().Add(8 * time.Second)
	reasons := map[pb.ErrorReason]int{}
	for time.Now().Before(deadline) {
		r, err := conn.Produce(context.Background(), &pb.ProduceRequest{Topic: "safe", LeaderEpoch: -1, TimeoutMs: 500, Batch: mkBatch(t, "x")})
		if err == nil {
			t.Fatalf("acks=all succeeded at offset %d with two of three replicas down", r.BaseOffset)
		}
		_, d := detail(t, err)
		if d == nil || d.Reason != pb.ErrorReason_NOT_ENOUGH_REPLICAS && d.Reason != pb.ErrorReason_TIMED_OUT {
			t.Fatalf("unexpected error: %v", err)
		}
		reasons[d.Reason]++
	}
	t.Logf("refusals: %v", reasons)
}

// A client on the external listener is told every broker's external
// address; a client on the internal one, the internal addresses. The
// external listener may be bound to one address or, as in a container, to
// every interface.
func TestExternalListener(t *testing.T) {
	for _, bind := range []string{"127.0.0.1:0", "0.0.0.0:0"} {
		t.Run(bind, func(t *testing.T) {
			b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) {
				c.ExternalAddr = bind
				c.ExternalAdvertiseAddr = "outside.example:19420"
			}))
			in := dial(t, b.Addr())
			md, err := in.Metadata(context.Background(), &pb.MetadataRequest{})
			if err != nil || md.Brokers[0].Addr != b.Addr() {
				t.Fatalf("internal: %v %v", md, err)
			}
			_, port, _ := net.SplitHostPort(b.ExternalListenAddr())
			out := dial(t, net.JoinHostPort("127.0.0.1", port))
			md, err = out.Metadata(context.Background(), &pb.MetadataRequest{})
			if err != nil || md.Brokers[0].Addr != "outside.example:19420" {
				t.Fatalf("external: %v %v", md, err)
			}
		})
	}
}

// Cut a follower off the leader in-process: the leader shrinks the ISR
// through the controller and acks=all continues with two replicas; heal, and
// the follower catches up, rejoins the ISR and matches the leader byte for
// byte. Then a lossy, slow link: replication still converges.
func TestClusterFollowerCutAndLossyLinks(t *testing.T) {
	brokertest.ForEachEngine(t, testClusterFollowerCutAndLossyLinks)
}

func testClusterFollowerCutAndLossyLinks(t *testing.T, engine brokertest.Option) {
	if testing.Short() {
		t.Skip("three brokers with gossip and Raft")
	}
	cl := brokertest.NewCluster(t, 3, engine)
	c := newClient(t, cl.Addrs())
	ctx := cl.Context(90 * time.Second)
	if _, err := c.CreateTopic(ctx, "cut", client.TopicConfig{Partitions: 1, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	leader := cl.WaitLeader("cut", 0, 20*time.Second)
	// Cut a follower that is not the controller: the cut covers requests
	// to the controller too, and the leader must reach it to shrink the ISR.
	ctrl, err := c.DescribeCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var follower int32
	for id := int32(1); id <= 3; id++ {
		if id != leader && id != ctrl.ControllerID {
			follower = id
			break
		}
	}
	lc := dial(t, cl.Broker(leader).Addr())
	send := func(v string) {
		t.Helper()
		if _, err := lc.Produce(ctx, &pb.ProduceRequest{Topic: "cut", LeaderEpoch: -1, TimeoutMs: 20000, Batch: mkBatch(t, v)}); err != nil {
			t.Fatalf("produce %s: %v", v, err)
		}
	}
	isr := func() []int32 { return cl.Broker(leader).Metadata().Topics["cut"].Partitions[0].ISR }
	send("before")
	t.Logf("leader %d, follower cut %d, controller %d", leader, follower, ctrl.ControllerID)
	cl.Cut(leader, follower)
	send("during") // waits for the ISR to shrink (replica lag 2 s), then commits with 2
	cl.WaitFor("the cut follower out of the ISR", 5*time.Second, func() bool {
		return len(isr()) == 2 && !slices.Contains(isr(), follower)
	})
	cl.Heal()
	cl.WaitFor("ISR of 3 after the heal", 30*time.Second, func() bool { return len(isr()) == 3 })
	// Lossy and slow links everywhere: replication still converges.
	for a := int32(1); a <= 3; a++ {
		for b := a + 1; b <= 3; b++ {
			cl.Drop(a, b, 0.3)
			cl.Delay(a, b, 2*time.Millisecond)
		}
	}
	for i := range 50 {
		send(fmt.Sprint("lossy", i))
	}
	cl.Heal()
	hw := cl.Broker(leader).Partition("cut", 0).State().HighWatermark
	want := replicaBytes(t, cl.Broker(leader).PeerAddr(), "cut", 0, hw)
	for id := int32(1); id <= 3; id++ {
		cl.WaitFor("caught up", 20*time.Second, func() bool { return cl.Broker(id).Partition("cut", 0).State().LogEndOffset >= hw })
		if got := replicaBytes(t, cl.Broker(id).PeerAddr(), "cut", 0, hw); !bytes.Equal(got, want) {
			t.Fatalf("replica %d differs below the HW %d", id, hw)
		}
	}
}
