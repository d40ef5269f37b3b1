package replication

import (
	"slices"
	"time"
)

// followerPos is what a leader knows of one follower.
type followerPos struct {
	// leo is the follower's fsynced log end offset, from its last fetch;
	// -1 until it fetches in this leadership.
	leo int64
	// caughtUp is the last time the follower had everything the leader had.
	caughtUp time.Time
	// lastFetch and leoAtLastFetch: the leader's log end when it answered
	// the follower's previous fetch. A follower that reaches it has caught
	// up to that moment (Kafka's lastFetchLeaderLogEndOffset).
	lastFetch      time.Time
	leoAtLastFetch int64
	// lost: the follower, in the ISR, fetched below the high watermark: it
	// no longer holds records counted as committed (its disk was damaged or
	// replaced). It leaves the ISR at once, whatever the lag time.
	lost bool
}

// lostCommitted reports whether a follower's fetch at offset shows that it
// lost committed records: it is in the ISR (it had every record below the
// HW when it joined, and an ISR member never truncates below the HW) and
// fetches below the HW.
func lostCommitted(inISR bool, offset, hw int64) bool {
	return inISR && offset < hw
}

// highWatermark is the smallest log end offset among isr, where the
// leader's own is leaderLEO. A member with no known position holds the HW
// where it is (current). The result never goes below current.
func highWatermark(self int32, leaderLEO, current int64, isr []int32, pos map[int32]*followerPos) int64 {
	hw := leaderLEO
	for _, id := range isr {
		if id == self {
			continue
		}
		f, ok := pos[id]
		if !ok || f.leo < 0 {
			return current
		}
		hw = min(hw, f.leo)
	}
	return max(hw, current)
}

// observeFetch updates a follower's position for a fetch at offset, at
// time now, when the leader's log ends at leaderLEO.
func observeFetch(f *followerPos, offset, leaderLEO int64, now time.Time) {
	f.leo = offset
	switch {
	case offset >= leaderLEO:
		f.caughtUp = now
	case !f.lastFetch.IsZero() && offset >= f.leoAtLastFetch:
		f.caughtUp = f.lastFetch
	}
	f.lastFetch, f.leoAtLastFetch = now, leaderLEO
}

// shrinkISR returns the ISR without followers that have not caught up with
// the leader within lag, or nil if nobody leaves. The leader never leaves.
func shrinkISR(self int32, isr []int32, pos map[int32]*followerPos, leaderLEO int64, now time.Time, lag time.Duration) []int32 {
	var out []int32
	changed := false
	for _, id := range isr {
		if id != self {
			f := pos[id]
			if f == nil || f.lost || (f.leo < leaderLEO && now.Sub(f.caughtUp) > lag) {
				changed = true
				continue
			}
		}
		out = append(out, id)
	}
	if !changed {
		return nil
	}
	return out
}

// expandISR returns the ISR with the replicas that have caught up (their
// log end reaches the HW and the start of this leadership), or nil if
// nobody joins. Order follows replicas.
func expandISR(isr, replicas []int32, pos map[int32]*followerPos, hw, leaderStart int64) []int32 {
	var joining []int32
	for _, id := range replicas {
		if slices.Contains(isr, id) {
			continue
		}
		if f := pos[id]; f != nil && f.leo >= 0 && f.leo >= hw && f.leo >= leaderStart {
			joining = append(joining, id)
		}
	}
	if len(joining) == 0 {
		return nil
	}
	var out []int32
	for _, id := range replicas {
		if slices.Contains(isr, id) || slices.Contains(joining, id) {
			out = append(out, id)
		}
	}
	return out
}

// truncationPoint is where a follower cuts its log after asking the leader
// for the end of its latest epoch (KIP-279): the leader answered
// (leaderEpoch, leaderEnd); ownEnd is the end of leaderEpoch in the
// follower's own history; leo is the follower's log end. It returns -1 when
// the leader has no epoch at or below the follower's: then the follower
// keeps only what it knows is committed, its high watermark.
func truncationPoint(leo, leaderEnd, ownEnd int64, leaderEpoch int32) int64 {
	if leaderEpoch < 0 || leaderEnd < 0 {
		return -1
	}
	return min(leo, leaderEnd, ownEnd)
}
