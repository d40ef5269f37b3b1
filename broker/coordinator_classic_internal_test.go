package broker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/skeinlog/skein/group"
)

// A classic join or sync waiting on a shard whose leadership ends answers
// NOT_COORDINATOR at once (the client finds the new coordinator) instead
// of waiting out its timeout.
func TestClassicWaitersLeaveADroppedShard(t *testing.T) {
	c := &coordinator{shards: map[int32]*shard{}}
	sh := &shard{part: 3, classic: map[string]*group.Classic{}, groups: map[string]*group.Group{}}
	c.shards[3] = sh
	done := make(chan error, 1)
	go func() {
		sh.mu.Lock()
		defer sh.mu.Unlock()
		done <- sh.await(context.Background(), time.Minute, func() bool { return false })
	}()
	time.Sleep(20 * time.Millisecond)
	c.drop(sh)
	select {
	case err := <-done:
		var nc *notCoordinatorError
		if !errors.As(err, &nc) {
			t.Fatalf("waiter answered %v, want not coordinator", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter still waits after its shard was dropped")
	}
	if _, ok := c.shards[3]; ok {
		t.Fatal("the shard is still registered")
	}
	// A wait that starts after the drop gives up at once too.
	sh.mu.Lock()
	err := sh.await(context.Background(), time.Minute, func() bool { return false })
	sh.mu.Unlock()
	var nc *notCoordinatorError
	if !errors.As(err, &nc) {
		t.Fatalf("late waiter: %v", err)
	}
}
