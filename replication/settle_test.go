package replication

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinlog/skein/partition"
	"github.com/skeinlog/skein/wal"
)

// gatedLog holds the next leader write, once armed, until released.
type gatedLog struct {
	partition.Log
	armed            atomic.Bool
	entered, release chan struct{}
}

func (g *gatedLog) Write(entries ...wal.Entry) error {
	if g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.release
	}
	return g.Log.Write(entries...)
}

// Regression (found by the fault suite, seed 106 of the long mixed tier):
// a leader's group write was still in progress when the replica became a
// follower. The follower compared its log end with the new leader's before
// the write moved it, so it truncated nothing, then kept the old
// leadership's batch and fetched the new leader's records after it: the
// replica diverged below the HW. A new follower now waits for the write
// and cuts it.
func TestOldLeadersLastWriteIsTruncatedAfterItLands(t *testing.T) {
	h := newHub()
	g := &gatedLog{entered: make(chan struct{}), release: make(chan struct{})}
	p1, err := partition.Open(partition.Config{Dir: t.TempDir(), Topic: "t", OpenLog: func(dir string) (partition.Log, error) {
		l, err := wal.Open(dir, wal.Options{UnsafeNoFsync: true})
		g.Log = l
		return g, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	h.parts[1] = p1
	n1 := &node{id: 1, p: p1}
	n2 := openNode(t, h, 2, t.TempDir())
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(g.release) }) }
	defer n1.stop()
	defer n2.stop()
	defer release() // first: a failed test must not leave the write held
	reps := []int32{1, 2}
	lead(t, h, n1, 0, reps, reps, 1)
	follow(t, h, n2, 1, 0, reps)
	ctx := context.Background()
	for i := range 5 {
		if _, err := n1.p.Append(ctx, partition.AppendRequest{Batch: rec(t, fmt.Sprint("c", i)), LeaderEpoch: 0, ExpectedOffset: -1, Acks: partition.AcksAll}); err != nil {
			t.Fatal(err)
		}
	}
	// Cut 1 off; its next write starts and is held in the log.
	h.mu.Lock()
	h.cut[[2]int32{1, 2}] = true
	h.mu.Unlock()
	g.armed.Store(true)
	written := make(chan error, 1)
	n1.p.Enqueue(partition.AppendRequest{Batch: rec(t, "stale"), LeaderEpoch: 0, ExpectedOffset: -1, Acks: partition.AcksLeader},
		func(_ partition.AppendResult, err error) { written <- err })
	<-g.entered
	// 2 leads epoch 1 and takes writes at the same offsets.
	takeOver(t, h, n1, n2, reps)
	// Heal; 1 follows 2 while its write is still held, then the write lands.
	h.mu.Lock()
	delete(h.cut, [2]int32{1, 2})
	h.mu.Unlock()
	follow(t, h, n1, 2, 1, reps)
	time.Sleep(100 * time.Millisecond) // time for a follower that did not wait to compare and fetch
	h.mu.Lock()
	early := h.fetches[1]
	h.mu.Unlock()
	if len(early) > 0 {
		// It compared its log end before the write moved it; whether it
		// then diverges depends on when the write lands.
		t.Fatalf("the new follower fetched (offsets %v) while its old leadership's write was in progress", early)
	}
	release()
	if err := <-written; err == nil {
		t.Fatal("the held write was acknowledged after the leadership moved")
	}
	_, _, newLEO := n2.p.Offsets()
	eventually(t, "old leader converges", func() bool {
		_, _, leo := n1.p.Offsets()
		return leo == newLEO
	})
	if !bytes.Equal(logBytes(t, n1.p, newLEO), logBytes(t, n2.p, newLEO)) {
		t.Fatal("the old leader's log differs from the new leader's: its last write was kept")
	}
}
