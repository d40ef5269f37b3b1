package replication

import (
	"slices"
	"testing"
	"time"
)

func TestHighWatermark(t *testing.T) {
	pos := map[int32]*followerPos{2: {leo: 7}, 3: {leo: 5}, 4: {leo: -1}}
	cases := []struct {
		name    string
		isr     []int32
		leo, hw int64
		want    int64
	}{
		{"leader alone", []int32{1}, 10, 3, 10},
		{"min of ISR", []int32{1, 2, 3}, 10, 3, 5},
		{"follower ahead of nothing", []int32{1, 2}, 6, 3, 6},
		{"unknown member holds it", []int32{1, 2, 4}, 10, 3, 3},
		{"never backwards", []int32{1, 3}, 10, 6, 6},
		{"outside ISR does not count", []int32{1, 2}, 10, 0, 7},
	}
	for _, c := range cases {
		if got := highWatermark(1, c.leo, c.hw, c.isr, pos); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

func TestObserveFetchCaughtUp(t *testing.T) {
	t0 := time.Unix(1000, 0)
	f := &followerPos{leo: -1}
	observeFetch(f, 5, 10, t0) // behind
	if !f.caughtUp.IsZero() {
		t.Fatal("behind follower marked caught up")
	}
	observeFetch(f, 10, 12, t0.Add(time.Second)) // reached what the leader had at the previous fetch
	if !f.caughtUp.Equal(t0) {
		t.Fatalf("caught up at %v, want the previous fetch time", f.caughtUp)
	}
	observeFetch(f, 12, 12, t0.Add(2*time.Second))
	if !f.caughtUp.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("fully caught up at %v", f.caughtUp)
	}
}

func TestShrinkAndExpand(t *testing.T) {
	now := time.Unix(1000, 0)
	lag := 10 * time.Second
	pos := map[int32]*followerPos{
		2: {leo: 100, caughtUp: now.Add(-time.Second)},
		3: {leo: 50, caughtUp: now.Add(-11 * time.Second)},  // lagging too long
		4: {leo: 100, caughtUp: now.Add(-20 * time.Second)}, // at the end: never lagging
	}
	if got := shrinkISR(1, []int32{1, 2, 3, 4}, pos, 100, now, lag); !slices.Equal(got, []int32{1, 2, 4}) {
		t.Fatalf("shrink: %v", got)
	}
	if got := shrinkISR(1, []int32{1, 2, 4}, pos, 100, now, lag); got != nil {
		t.Fatalf("nobody lags, got %v", got)
	}
	if got := shrinkISR(1, []int32{1, 5}, pos, 100, now, lag); !slices.Equal(got, []int32{1}) {
		t.Fatalf("unknown member: %v", got)
	}
	// Expansion: 3 rejoins once it reaches the HW and the leadership start.
	if got := expandISR([]int32{1, 2}, []int32{1, 2, 3}, pos, 60, 0); got != nil {
		t.Fatalf("3 at 50 < HW 60 joined: %v", got)
	}
	if got := expandISR([]int32{1, 2}, []int32{3, 1, 2}, pos, 50, 0); !slices.Equal(got, []int32{3, 1, 2}) {
		t.Fatalf("expand: %v", got)
	}
	if got := expandISR([]int32{1, 2}, []int32{1, 2, 3}, pos, 50, 80); got != nil {
		t.Fatalf("3 below the leadership start joined: %v", got)
	}
}

func TestTruncationPoint(t *testing.T) {
	cases := []struct {
		leo, leaderEnd, ownEnd int64
		epoch                  int32
		want                   int64
	}{
		{100, 120, 100, 3, 100}, // leader has more of the same epoch: keep all
		{100, 80, 100, 3, 80},   // leader's epoch ended earlier: cut to it
		{100, 90, 70, 2, 70},    // leader answered an older epoch; ours ended at 70
		{100, -1, 100, -1, -1},  // leader has nothing that old: back to the HW
	}
	for _, c := range cases {
		if got := truncationPoint(c.leo, c.leaderEnd, c.ownEnd, c.epoch); got != c.want {
			t.Errorf("%+v: %d", c, got)
		}
	}
}

func TestLostCommitted(t *testing.T) {
	for _, c := range []struct {
		inISR      bool
		offset, hw int64
		want       bool
	}{
		{true, 10, 10, false}, {true, 9, 10, true}, {false, 0, 10, false}, {true, 0, 0, false},
	} {
		if got := lostCommitted(c.inISR, c.offset, c.hw); got != c.want {
			t.Errorf("lostCommitted(%v, %d, %d) = %v", c.inISR, c.offset, c.hw, got)
		}
	}
	now := time.Unix(100, 0)
	pos := map[int32]*followerPos{2: {leo: 5, caughtUp: now, lost: true}, 3: {leo: 10, caughtUp: now}}
	if got := shrinkISR(1, []int32{1, 2, 3}, pos, 10, now, time.Hour); !slices.Equal(got, []int32{1, 3}) {
		t.Fatalf("a follower that lost data stays in the ISR: %v", got)
	}
}
