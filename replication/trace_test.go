package replication

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/skeinlog/skein/partition"
	"github.com/skeinlog/skein/wal"
)

// The steps of one acks=all append come in the order the durability
// contract needs: every follower has fsynced the record before the leader
// learns of it, and the leader's HW passes it only after it learned that
// from every follower and fsynced the record itself.
func TestTraceShowsTheOrderOfAnAck(t *testing.T) {
	type key struct {
		node, replica int32
		step          partition.Step
	}
	var mu sync.Mutex
	seen := map[key]time.Time{}
	tracer := func(node int32) partition.Tracer {
		return func(s partition.Step, replica int32, off int64) {
			if off != 1 {
				return
			}
			if replica < 0 {
				replica = node
			}
			mu.Lock()
			defer mu.Unlock()
			if _, ok := seen[key{node, replica, s}]; !ok {
				seen[key{node, replica, s}] = time.Now()
			}
		}
	}
	h := newHub()
	nodes := map[int32]*node{}
	for id := int32(1); id <= 3; id++ {
		p, err := partition.Open(partition.Config{Dir: t.TempDir(), Topic: "t", WAL: wal.Options{UnsafeNoFsync: true}, Trace: tracer(id)})
		if err != nil {
			t.Fatal(err)
		}
		h.parts[id] = p
		nodes[id] = &node{id: id, p: p}
		defer nodes[id].stop()
	}
	reps := []int32{1, 2, 3}
	withTrace := func(id int32) Config { c := cfgFor(h, id); c.Trace = tracer(id); return c }
	if err := nodes[1].p.BecomeLeader(1, partition.LeaderState{Epoch: 0, ISR: reps, MinISR: 2}); err != nil {
		t.Fatal(err)
	}
	h.isr = reps
	nodes[1].l = NewLeader(withTrace(1), nodes[1].p, Assignment{Topic: "t", Replicas: reps, ISR: reps})
	h.leaders[1] = nodes[1].l
	for _, id := range []int32{2, 3} {
		if err := nodes[id].p.BecomeFollower(1, 0); err != nil {
			t.Fatal(err)
		}
		nodes[id].f = StartFollower(withTrace(id), nodes[id].p, Assignment{Topic: "t", Replicas: reps}, 1)
	}
	if _, err := nodes[1].p.Append(context.Background(), partition.AppendRequest{Batch: rec(t, "x"), ExpectedOffset: -1, Acks: partition.AcksAll}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	at := func(node, replica int32, s partition.Step) time.Time {
		t.Helper()
		v, ok := seen[key{node, replica, s}]
		if !ok {
			t.Fatalf("no %v step of replica %d traced on broker %d", s, replica, node)
		}
		return v
	}
	hw := at(1, 1, partition.StepHighWatermark)
	if at(1, 1, partition.StepSynced).After(hw) {
		t.Error("the HW passed the record before the leader fsynced it")
	}
	for _, f := range []int32{2, 3} {
		order := []time.Time{at(1, 1, partition.StepWritten), at(1, f, partition.StepServed), at(f, f, partition.StepFetched),
			at(f, f, partition.StepReplicated), at(1, f, partition.StepReported), hw}
		for i := 1; i < len(order); i++ {
			if order[i].Before(order[i-1]) {
				t.Errorf("follower %d: step %d of the way came before step %d", f, i, i-1)
			}
		}
	}
}
