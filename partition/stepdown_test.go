package partition

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// A leader whose group commit is still being written when it becomes a
// follower must not acknowledge that group later. The chaos suite (seeds
// 102 and 103) caught this: the write finished after BecomeFollower had
// failed the waiting acknowledgements, the group's ack went to wait for the
// HW anyway, the follower truncated the batch by epoch, and the HW it then
// learned from the new leader — whose log holds another record at that
// offset — completed the ack as a success: an acknowledged record lost.
func TestNoAckForAGroupWrittenAcrossAStepDown(t *testing.T) {
	g := &gateLog{memLog: newMemLog(), entered: make(chan struct{}), release: make(chan struct{})}
	old := openTest(t, t.TempDir(), func(string) (Log, error) { return g, nil })
	release := openGate(t, g)
	if err := old.BecomeLeader(1, LeaderState{Epoch: 1, ISR: []int32{1, 2, 3}, MinISR: 2}); err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		r   AppendResult
		err error
	}
	done := make(chan outcome, 1)
	old.Enqueue(AppendRequest{Batch: mkBatch(t, 1, "old"), LeaderEpoch: -1, ExpectedOffset: -1, Acks: AcksAll},
		func(r AppendResult, err error) { done <- outcome{r, err} })
	<-g.entered // the group is being written
	// The controller moves the leadership to broker 2 (epoch 2), whose log
	// ends before this batch.
	if err := old.BecomeFollower(2, 2); err != nil {
		t.Fatal(err)
	}
	release()

	// The new leader appends another record at offset 0 and commits it.
	nl := openTest(t, t.TempDir(), func(string) (Log, error) { return newMemLog(), nil })
	leader(t, nl, 2)
	if _, err := nl.Append(context.Background(), AppendRequest{Batch: mkBatch(t, 2, "new"), LeaderEpoch: -1, ExpectedOffset: -1}); err != nil {
		t.Fatal(err)
	}
	res, err := nl.Read(nil, 0, 1<<20, ReadUncommitted)
	if err != nil {
		t.Fatal(err)
	}

	// The old leader, now a follower, does what the replication layer does:
	// truncate the suffix the new leader does not have, copy its log, take
	// its HW.
	if _, err := old.TruncateTo(0); err != nil {
		t.Fatal(err)
	}
	if _, err := old.AppendReplicated(res.Batches); err != nil {
		t.Fatal(err)
	}
	old.SetHighWatermark(1)

	select {
	case o := <-done:
		if o.err == nil {
			t.Fatalf("the batch written across the step-down was acknowledged at offset %d (epoch %d); the log there holds the new leader's record", o.r.BaseOffset, o.r.LeaderEpoch)
		}
		if !errors.Is(o.err, ErrTimeout) || !errors.Is(o.err, ErrNotLeader) {
			t.Fatalf("want an indeterminate NotLeader failure, got %v", o.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the batch written across the step-down got no answer")
	}
	if recs := readAll(t, old, 0, ReadUncommitted); len(recs) != 1 || string(recs[0].Value) != "new" {
		t.Fatalf("follower log: %v", recs)
	}
}

// A clean hand-off waits for a group still being written, not only for the
// acknowledgements already waiting: WaitCommitted must not return while
// the LEO is about to grow.
func TestWaitCommittedWaitsForTheGroupBeingWritten(t *testing.T) {
	g := &gateLog{memLog: newMemLog(), entered: make(chan struct{}), release: make(chan struct{})}
	p := openTest(t, t.TempDir(), func(string) (Log, error) { return g, nil })
	release := openGate(t, g)
	if err := p.BecomeLeader(1, LeaderState{Epoch: 1, ISR: []int32{1, 2}, MinISR: 2}); err != nil {
		t.Fatal(err)
	}
	acked := make(chan error, 1)
	p.Enqueue(AppendRequest{Batch: mkBatch(t, 1, "v"), LeaderEpoch: -1, ExpectedOffset: -1, Acks: AcksAll},
		func(_ AppendResult, err error) { acked <- err })
	<-g.entered
	p.BeginHandoff()
	waited := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		waited <- p.WaitCommitted(ctx)
	}()
	select {
	case err := <-waited:
		t.Fatalf("WaitCommitted returned (%v) while a group was being written", err)
	case <-time.After(50 * time.Millisecond):
	}
	release()
	select {
	case err := <-waited:
		t.Fatalf("WaitCommitted returned (%v) before the group was replicated", err)
	case <-time.After(50 * time.Millisecond):
	}
	p.SetHighWatermark(1) // the follower fetched it
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
}

// openGate returns a func that opens g's gate once; the test's cleanup opens
// it too, before the partition closes (Close waits for the write).
func openGate(t *testing.T, g *gateLog) func() {
	var once sync.Once
	open := func() { once.Do(func() { close(g.release) }) }
	t.Cleanup(open)
	return open
}
