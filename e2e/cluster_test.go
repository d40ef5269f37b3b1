package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
)

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
		client.RecordPartitioner(client.ManualPartitioner()))
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
	c := proctest.StartCluster(t, 3, "--replica-lag-time", "2s")
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "two", client.TopicConfig{Partitions: 1, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	leader := c.Leader(cl, "two", 0, -1, 20*time.Second)
	for _, id := range c.IDs {
		if id != leader {
			c.Brokers[id].Kill()
		}
	}
	lc, err := client.New(client.Brokers(c.Brokers[leader].Addr), client.RequestTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	p, err := lc.NewProducer(client.DeliveryTimeout(4*time.Second), client.RecordPartitioner(client.ManualPartitioner()))
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
	c := proctest.StartCluster(t, 3, "--replica-lag-time", "3s")
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "roll", client.TopicConfig{Partitions: 3, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	l := startLoad(t, cl, "roll", 0, 1000)
	for _, id := range c.IDs {
		time.Sleep(500 * time.Millisecond)
		if code := c.Brokers[id].Term(); code != 0 {
			t.Fatalf("broker %d exited %d after SIGTERM", id, code)
		}
		if !strings.Contains(c.Brokers[id].Logs(), "leaderships handed off") {
			t.Fatalf("broker %d did not hand off its leaderships:\n%s", id, c.Brokers[id].Logs())
		}
		c.Restart(id)
		c.WaitHealthy(60 * time.Second)
	}
	l.finish()
	if len(l.failed) > 0 {
		t.Fatalf("%d of %d records failed during the rolling restart, first: %v", len(l.failed), l.sent, l.failed[0])
	}
	checkLog(t, proctest.ReadAll(t, cl, "roll", 0), l.acked)
	t.Logf("%d records through a rolling restart of 3 brokers, none failed", len(l.acked))
}
