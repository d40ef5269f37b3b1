package cluster

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type tlogWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

type testNode struct {
	c   *Controller
	cfg Config
}

func startNode(t *testing.T, id int32, dir string, join []string, gossip, raftAddr string) *testNode {
	t.Helper()
	w := &tlogWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	if gossip == "" {
		gossip = "127.0.0.1:0"
	}
	if raftAddr == "" {
		raftAddr = "127.0.0.1:0"
	}
	cfg := Config{
		Self: BrokerInfo{ID: id, Addr: "127.0.0.1:1" + string(rune('0'+id))}, DataDir: dir,
		GossipAddr: gossip, RaftAddr: raftAddr, Join: join, Local: true,
		ConfirmDeath: 200 * time.Millisecond, RebalanceInterval: -1,
		Logger: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	c, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &testNode{c: c, cfg: cfg}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func controllerOf(nodes map[int32]*testNode) *testNode {
	for _, n := range nodes {
		if n.c.IsController() {
			return n
		}
	}
	return nil
}

func TestClusterFormsAndFailsOver(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real gossip and Raft")
	}
	nodes := map[int32]*testNode{}
	nodes[1] = startNode(t, 1, t.TempDir(), nil, "", "")
	seed := []string{nodes[1].c.GossipAddr()}
	for id := int32(2); id <= 3; id++ {
		nodes[id] = startNode(t, id, t.TempDir(), seed, "", "")
	}
	defer func() {
		for _, n := range nodes {
			n.c.Close()
		}
	}()
	waitUntil(t, 20*time.Second, "three registered voters", func() bool {
		for _, n := range nodes {
			s := n.c.Snapshot()
			if len(s.Brokers) != 3 || len(n.c.Voters()) != 3 {
				return false
			}
		}
		return true
	})
	ctx := context.Background()
	ctrl := controllerOf(nodes)
	if ctrl == nil || ctrl.cfg.Self.ID != 1 {
		t.Fatalf("controller: %v", ctrl)
	}
	// A non-controller refuses writes and names the controller.
	if _, err := nodes[2].c.CreateTopic(ctx, TopicSpec{Name: "x"}); err == nil || !strings.Contains(err.Error(), "broker 1 is the controller") {
		t.Fatalf("create on a follower: %v", err)
	}
	top, err := ctrl.c.CreateTopic(ctx, TopicSpec{Name: "orders", Partitions: 6, ReplicationFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	leaders := map[int32]int{}
	for _, p := range top.Partitions {
		leaders[p.Leader]++
	}
	if leaders[1] != 2 || leaders[2] != 2 || leaders[3] != 2 {
		t.Fatalf("leaders not spread: %v", leaders)
	}
	waitUntil(t, 5*time.Second, "topic on every broker", func() bool {
		for _, n := range nodes {
			if _, ok := n.c.Snapshot().Topics["orders"]; !ok {
				return false
			}
		}
		return true
	})

	// Kill broker 3 (no leave): it is fenced, its partitions get new
	// leaders from their ISRs, and it leaves every ISR.
	dir3, gossip3, raft3 := nodes[3].cfg.DataDir, nodes[3].c.GossipAddr(), nodes[3].c.RaftAddr()
	nodes[3].c.Close()
	delete(nodes, 3)
	waitUntil(t, 20*time.Second, "broker 3 fenced and replaced", func() bool {
		s := nodes[1].c.Snapshot()
		b, _ := s.Broker(3)
		if !b.Fenced {
			return false
		}
		for _, p := range s.Topics["orders"].Partitions {
			if p.Leader == 3 || len(p.ISR) != 2 {
				return false
			}
		}
		return true
	})
	// It comes back on the same data and addresses: unfenced, and it may
	// lead again once an ISR takes it back (the leader's job, not tested here).
	nodes[3] = startNode(t, 3, dir3, seed, gossip3, raft3)
	waitUntil(t, 20*time.Second, "broker 3 unfenced", func() bool {
		b, _ := nodes[1].c.Snapshot().Broker(3)
		return !b.Fenced
	})
	// ISR change: only the current leader, with the current epochs.
	s := nodes[1].c.Snapshot()
	p0 := s.Topics["orders"].Partitions[0]
	ctrl = controllerOf(nodes)
	req := AlterRequest{Topic: "orders", Partition: 0, LeaderID: p0.Leader, LeaderEpoch: p0.LeaderEpoch, PartitionEpoch: p0.PartitionEpoch, NewISR: append(p0.ISR, 3)}
	pm, err := ctrl.c.AlterPartition(ctx, req)
	if err != nil || len(pm.ISR) != 3 {
		t.Fatalf("expand ISR: %+v %v", pm, err)
	}
	if _, err := ctrl.c.AlterPartition(ctx, req); err == nil {
		t.Fatal("a stale ISR change was applied")
	}
	// Controlled shutdown of the controller's own partitions' leader.
	remaining, err := ctrl.c.ControlledShutdown(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	s = ctrl.c.Snapshot()
	for _, p := range s.Topics["orders"].Partitions {
		if p.Leader == 2 && len(p.ISR) > 1 {
			t.Fatalf("partition %d still led by a stopping broker with ISR %v (remaining %d)", p.Partition, p.ISR, remaining)
		}
	}
	if first, err := ctrl.c.AllocateProducerIDs(ctx, 100); err != nil || first != 0 {
		t.Fatalf("producer ids: %d %v", first, err)
	}
	if first, _ := ctrl.c.AllocateProducerIDs(ctx, 100); first != 100 {
		t.Fatalf("second block starts at %d", first)
	}
}

func TestBootstrapExpect(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real gossip and Raft")
	}
	var nodes []*Controller
	// Start three with BootstrapExpect = 3 all joining the first.
	w := &tlogWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	mk := func(id int32, join []string) *Controller {
		c, err := Open(Config{Self: BrokerInfo{ID: id, Addr: "x:1"}, DataDir: t.TempDir(), GossipAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
			Join: join, BootstrapExpect: 3, Local: true, RebalanceInterval: -1,
			Logger: slog.New(slog.NewTextHandler(w, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := mk(5, nil)
	nodes = append(nodes, a, mk(3, []string{a.GossipAddr()}), mk(9, []string{a.GossipAddr()}))
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()
	waitUntil(t, 20*time.Second, "one controller among three voters", func() bool {
		leaders := 0
		for _, n := range nodes {
			if n.IsController() {
				leaders++
			}
			if len(n.Voters()) != 3 {
				return false
			}
		}
		return leaders == 1
	})
}

// A broker started with --bootstrap-expect that finds a quorum already
// running (it lost its data, or came late) never bootstraps a second one.
func TestBootstrapExpectJoinsExistingQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real gossip and Raft")
	}
	w := &tlogWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	mk := func(id int32, join []string, expect int) *Controller {
		c, err := Open(Config{Self: BrokerInfo{ID: id, Addr: "x:1"}, DataDir: t.TempDir(), GossipAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
			Join: join, BootstrapExpect: expect, Local: true, RebalanceInterval: -1,
			Logger: slog.New(slog.NewTextHandler(w, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// Brokers 2 and 3 form a quorum (2 bootstraps alone, 3 joins it).
	b2 := mk(2, nil, 0)
	b3 := mk(3, []string{b2.GossipAddr()}, 0)
	waitUntil(t, 20*time.Second, "two voters", func() bool { return len(b2.Voters()) == 2 && len(b3.Voters()) == 2 })
	// Broker 1, the lowest id, starts empty with --bootstrap-expect 3 and
	// sees three brokers: it must join, not bootstrap its own quorum.
	b1 := mk(1, []string{b2.GossipAddr()}, 3)
	waitUntil(t, 20*time.Second, "broker 1 added to the existing quorum", func() bool {
		v := b2.Voters()
		_, in := v[1]
		return in && len(b1.Voters()) == 3
	})
	if b1.IsController() && b2.IsController() || b1.IsController() && b3.IsController() {
		t.Fatal("two controllers")
	}
	if id := b1.ControllerID(); id != b2.ControllerID() {
		t.Fatalf("broker 1 follows controller %d, broker 2 says %d", id, b2.ControllerID())
	}
}
