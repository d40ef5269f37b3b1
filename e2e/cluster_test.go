package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// procCluster is n broker processes on 127.0.0.1: broker 1 bootstraps, the
// others join it.
type procCluster struct {
	t       testing.TB
	brokers map[int32]*brokerProc
	ids     []int32
	extra   []string
}

func startProcCluster(t testing.TB, n int, extra ...string) *procCluster {
	t.Helper()
	c := &procCluster{t: t, brokers: map[int32]*brokerProc{}, extra: extra}
	for i := 1; i <= n; i++ {
		id := int32(i)
		args := append([]string{"--node-id", strconv.Itoa(i)}, extra...)
		if i > 1 {
			args = append(args, "--join", c.brokers[1].GossipAddr)
		}
		c.brokers[id] = startBroker(t, t.TempDir(), "", args...)
		c.ids = append(c.ids, id)
	}
	c.waitHealthy(30 * time.Second)
	return c
}

func (c *procCluster) addrs() []string {
	var out []string
	for _, id := range c.ids {
		out = append(out, c.brokers[id].Addr)
	}
	return out
}

func (c *procCluster) client() *client.Client {
	c.t.Helper()
	cl, err := client.New(client.WithBrokers(c.addrs()...), client.WithRequestTimeout(10*time.Second))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// restart starts a stopped broker again, joining the others.
func (c *procCluster) restart(id int32) {
	c.t.Helper()
	args := append([]string{"--node-id", strconv.Itoa(int(id))}, c.extra...)
	for _, o := range c.ids {
		if o != id && c.brokers[o].Running() {
			args = append(args, "--join", c.brokers[o].GossipAddr)
			break
		}
	}
	c.brokers[id].Restart(args...)
}

// waitHealthy waits until every running broker is registered and unfenced
// and every partition has a leader and a full ISR.
func (c *procCluster) waitHealthy(d time.Duration) {
	c.t.Helper()
	cl, err := client.New(client.WithBrokers(c.addrs()...), client.WithRequestTimeout(2*time.Second))
	if err != nil {
		c.t.Fatal(err)
	}
	defer cl.Close()
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		desc, err := cl.DescribeCluster(ctx)
		cancel()
		if err == nil {
			ok := len(desc.Problems) == 0 && desc.ControllerID >= 0
			alive := 0
			for _, m := range desc.Members {
				if m.GossipState == "alive" && !m.Fenced {
					alive++
				}
			}
			if ok && alive == len(c.ids) {
				return
			}
			last = fmt.Sprintf("%d alive, %d problems: %+v", alive, len(desc.Problems), desc.Problems)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("cluster not healthy within %v: %s", d, last)
}

// leader returns the partition's leader according to the metadata of any
// running broker, waiting until one is known that is running.
func (c *procCluster) leader(cl *client.Client, topic string, part int32, notThis int32, d time.Duration) int32 {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		md, err := cl.Metadata(ctx, topic)
		cancel()
		if err == nil && len(md.Topics) == 1 {
			l := md.Topics[0].Partitions[part].Leader
			if l >= 0 && l != notThis && c.brokers[l].Running() {
				return l
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("no new leader for %s/%d within %v", topic, part, d)
	return -1
}

// replicaLog returns a broker's local copy of a partition below upTo.
func replicaLog(t testing.TB, addr, topic string, part int32, upTo int64) []byte {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ic := pb.NewInternalClient(conn)
	var out []byte
	for off := int64(0); off < upTo; {
		r, err := ic.LocalLog(context.Background(), &pb.LocalLogRequest{Topic: topic, Partition: part, FromOffset: off, MaxBytes: 4 << 20})
		if err != nil {
			t.Fatalf("local log of %s: %v", addr, err)
		}
		if len(r.Batches) == 0 {
			t.Fatalf("replica %s ends at %d, below %d", addr, r.LogEndOffset, upTo)
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

// readAll reads a partition from the beginning to its end.
func readAll(t testing.TB, cl *client.Client, topic string, part int32) []*client.Record {
	t.Helper()
	k, err := cl.NewConsumer(client.StopAtEnd())
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := k.Assign(ctx, topic, []int32{part}, client.Beginning()); err != nil {
		t.Fatal(err)
	}
	var out []*client.Record
	for {
		r, err := k.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
}

// checkLog verifies a partition's records against what was acknowledged:
// dense offsets, every acknowledged value at its acknowledged offset, and
// each value at one offset only. It returns the log length.
func checkLog(t testing.TB, recs []*client.Record, acked map[string]int64) int64 {
	t.Helper()
	seen := map[string]int64{}
	for i, r := range recs {
		if r.Offset != int64(i) {
			t.Fatalf("offset %d at position %d: not dense", r.Offset, i)
		}
		v := string(r.Value)
		if prev, dup := seen[v]; dup {
			t.Fatalf("duplicate: %q at offsets %d and %d", v, prev, r.Offset)
		}
		seen[v] = r.Offset
	}
	lost := 0
	for v, off := range acked {
		if got, ok := seen[v]; !ok || got != off {
			lost++
			if lost < 5 {
				t.Errorf("acknowledged %q at offset %d; read at %d (present %v)", v, off, got, ok)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged records lost or moved", lost, len(acked))
	}
	return int64(len(recs))
}

// load produces unique records to one partition until stopped, recording
// the acknowledged offset of each.
type load struct {
	mu     sync.Mutex
	acked  map[string]int64
	failed []error
	sent   int
	stop   chan struct{}
	done   chan struct{}
}

func startLoad(t testing.TB, cl *client.Client, topic string, part int32, rate int) *load {
	t.Helper()
	p, err := cl.NewProducer(client.Linger(2*time.Millisecond), client.DeliveryTimeout(90*time.Second),
		client.WithPartitioner(client.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	l := &load{acked: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				p.Flush(context.Background())
				p.Close()
				return
			case <-tick.C:
			}
			v := fmt.Sprintf("r%07d", i)
			l.mu.Lock()
			l.sent++
			l.mu.Unlock()
			p.Produce(context.Background(), &client.Record{Topic: topic, Partition: part, Value: []byte(v)}, func(r *client.Record, err error) {
				l.mu.Lock()
				defer l.mu.Unlock()
				if err != nil {
					l.failed = append(l.failed, fmt.Errorf("%s: %w", v, err))
					return
				}
				l.acked[v] = r.Offset
			})
		}
	}()
	return l
}

func (l *load) finish() {
	close(l.stop)
	<-l.done
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// No committed test calls count yet (the leader-chase test will); this
// keeps staticcheck's unused check quiet until then.

// With two of three replicas down, acks=all fails rather than succeeds.
func TestClusterTwoOfThreeDown(t *testing.T) {
	c := startProcCluster(t, 3, "--replica-lag-time", "2s")
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "two", client.TopicConfig{Partitions: 1, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	leader := c.leader(cl, "two", 0, -1, 20*time.Second)
	for _, id := range c.ids {
		if id != leader {
			c.brokers[id].Kill()
		}
	}
	lc, err := client.New(client.WithBrokers(c.brokers[leader].Addr), client.WithRequestTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	p, err := lc.NewProducer(client.DeliveryTimeout(4*time.Second), client.WithPartitioner(client.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 5 {
		err := p.ProduceSync(ctx, &client.Record{Topic: "two", Partition: 0, Value: []byte(fmt.Sprint("x", i))})
		if err == nil {
			t.Fatalf("acks=all succeeded with two of three replicas down (attempt %d)", i)
		}
		t.Logf("attempt %d refused: %v", i, err)
	}
}

// SIGTERM hands leadership off before the broker exits: a clean restart of
// every broker in turn causes no failed produce.
func TestClusterRollingRestart(t *testing.T) {
	c := startProcCluster(t, 3, "--replica-lag-time", "3s")
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "roll", client.TopicConfig{Partitions: 3, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	l := startLoad(t, cl, "roll", 0, 1000)
	for _, id := range c.ids {
		time.Sleep(500 * time.Millisecond)
		if code := c.brokers[id].Term(); code != 0 {
			t.Fatalf("broker %d exited %d after SIGTERM", id, code)
		}
		if !strings.Contains(c.brokers[id].logs.String(), "leaderships handed off") {
			t.Fatalf("broker %d did not hand off its leaderships:\n%s", id, c.brokers[id].logs.String())
		}
		c.restart(id)
		c.waitHealthy(60 * time.Second)
	}
	l.finish()
	if len(l.failed) > 0 {
		t.Fatalf("%d of %d records failed during the rolling restart, first: %v", len(l.failed), l.sent, l.failed[0])
	}
	checkLog(t, readAll(t, cl, "roll", 0), l.acked)
	t.Logf("%d records through a rolling restart of 3 brokers, none failed", len(l.acked))
}
