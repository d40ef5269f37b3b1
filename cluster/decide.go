package cluster

import (
	"errors"
	"fmt"
	"slices"
)

// The controller's decisions are pure functions of the metadata and of
// which brokers may hold leadership ("usable": registered and not fenced).
// Gossip never feeds them directly: a broker becomes unusable only when the
// controller has confirmed its death and committed the fence.

// usableFunc reports whether a broker may lead or be in an ISR.
type usableFunc func(id int32) bool

// usableIn is the usable function of a snapshot: registered and not fenced.
func usableIn(s *Snapshot) usableFunc {
	return func(id int32) bool {
		b, ok := s.Broker(id)
		return ok && !b.Fenced
	}
}

// forEachPartition visits partitions in a deterministic order.
func forEachPartition(s *Snapshot, fn func(t Topic, pm PartitionMeta)) {
	for _, name := range s.TopicNames() {
		t := s.Topics[name]
		for _, pm := range t.Partitions {
			fn(t, pm)
		}
	}
}

func change(t Topic, pm PartitionMeta, leader int32, leaderEpoch int32, isr []int32) PartitionChange {
	return PartitionChange{Topic: t.Name, TopicID: t.ID, Partition: pm.Partition, FromEpoch: pm.PartitionEpoch,
		Leader: leader, LeaderEpoch: leaderEpoch, ISR: isr}
}

// reassign gives every partition whose leader is unusable a new leader from
// its ISR (the first usable one in replica order), and drops unusable
// followers from ISRs. A partition whose ISR has no usable member goes
// offline (leader -1) and keeps its ISR, so that the last in-sync replica —
// the only one with every committed record — leads again when it returns.
// No unclean election: a replica outside the ISR never leads.
func reassign(s *Snapshot, usable usableFunc) []PartitionChange {
	var out []PartitionChange
	forEachPartition(s, func(t Topic, pm PartitionMeta) {
		live := slices.DeleteFunc(slices.Clone(pm.ISR), func(id int32) bool { return !usable(id) })
		if pm.Leader >= 0 && usable(pm.Leader) {
			if len(live) < len(pm.ISR) && slices.Contains(live, pm.Leader) {
				out = append(out, change(t, pm, pm.Leader, pm.LeaderEpoch, live))
			}
			return
		}
		for _, r := range pm.Replicas {
			if slices.Contains(live, r) {
				out = append(out, change(t, pm, r, pm.LeaderEpoch+1, live))
				return
			}
		}
		if pm.Leader != -1 {
			out = append(out, change(t, pm, -1, pm.LeaderEpoch+1, pm.ISR))
		}
	})
	return out
}

// shutdownMoves hands the partitions led by a stopping broker to another
// usable ISR member and takes the broker out of every ISR it shares with
// others. Partitions where it is the only in-sync replica stay with it (it
// returns "remaining"); moving them would make them unavailable now rather
// than later.
func shutdownMoves(s *Snapshot, id int32, usable usableFunc) (changes []PartitionChange, remaining int) {
	forEachPartition(s, func(t Topic, pm PartitionMeta) {
		if !slices.Contains(pm.ISR, id) && pm.Leader != id {
			return
		}
		others := slices.DeleteFunc(slices.Clone(pm.ISR), func(r int32) bool { return r == id || !usable(r) })
		if len(others) == 0 {
			if pm.Leader == id {
				remaining++
			}
			return
		}
		if pm.Leader != id {
			changes = append(changes, change(t, pm, pm.Leader, pm.LeaderEpoch, others))
			return
		}
		for _, r := range pm.Replicas {
			if slices.Contains(others, r) {
				changes = append(changes, change(t, pm, r, pm.LeaderEpoch+1, others))
				return
			}
		}
	})
	return changes, remaining
}

// storageLost takes a broker whose storage changed (wiped, or found
// damaged) out of every ISR it is in, and moves its leaderships to the
// first usable remaining ISR member (or offline, leader -1, when none is
// usable). A partition where it is the only ISR member is left alone: no
// other replica has the committed records, so taking it out would only
// make the partition unavailable for good.
func storageLost(s *Snapshot, id int32, usable usableFunc) []PartitionChange {
	var out []PartitionChange
	forEachPartition(s, func(t Topic, pm PartitionMeta) {
		if !slices.Contains(pm.ISR, id) {
			return
		}
		others := slices.DeleteFunc(slices.Clone(pm.ISR), func(r int32) bool { return r == id })
		if len(others) == 0 {
			return
		}
		if pm.Leader != id {
			out = append(out, change(t, pm, pm.Leader, pm.LeaderEpoch, others))
			return
		}
		for _, r := range pm.Replicas {
			if slices.Contains(others, r) && usable(r) {
				out = append(out, change(t, pm, r, pm.LeaderEpoch+1, others))
				return
			}
		}
		out = append(out, change(t, pm, -1, pm.LeaderEpoch+1, others))
	})
	return out
}

// preferredLeaders moves leadership back to each partition's first replica
// when it is usable and in sync, so leaders stay spread after failures.
func preferredLeaders(s *Snapshot, usable usableFunc) []PartitionChange {
	var out []PartitionChange
	forEachPartition(s, func(t Topic, pm PartitionMeta) {
		if len(pm.Replicas) == 0 {
			return
		}
		pref := pm.Replicas[0]
		if pm.Leader != pref && usable(pref) && slices.Contains(pm.ISR, pref) && pm.Leader >= 0 {
			out = append(out, change(t, pm, pref, pm.LeaderEpoch+1, pm.ISR))
		}
	})
	return out
}

// AlterRequest is a leader's ISR change request.
type AlterRequest struct {
	Topic          string
	Partition      int32
	LeaderID       int32
	LeaderEpoch    int32
	PartitionEpoch int32
	NewISR         []int32
}

// Errors of ISR change requests.
var (
	ErrStaleLeader   = errors.New("the request's leader or leader epoch is not current")
	ErrStaleEpoch    = errors.New("the request's partition epoch is not current")
	ErrInvalidISR    = errors.New("invalid ISR")
	ErrNotController = errors.New("this broker is not the controller")
)

// alterPartition validates an ISR change against the metadata.
func alterPartition(s *Snapshot, req AlterRequest, usable usableFunc) (PartitionChange, error) {
	t, ok := s.Topics[req.Topic]
	if !ok {
		return PartitionChange{}, fmt.Errorf("%w: %q", ErrUnknownTopic, req.Topic)
	}
	if req.Partition < 0 || int(req.Partition) >= len(t.Partitions) {
		return PartitionChange{}, fmt.Errorf("%w: partition %d of %q", ErrInvalidISR, req.Partition, req.Topic)
	}
	pm := t.Partitions[req.Partition]
	if pm.Leader != req.LeaderID || pm.LeaderEpoch != req.LeaderEpoch {
		return PartitionChange{}, fmt.Errorf("%w: %s-%d is led by %d in epoch %d, not %d in epoch %d",
			ErrStaleLeader, req.Topic, req.Partition, pm.Leader, pm.LeaderEpoch, req.LeaderID, req.LeaderEpoch)
	}
	if pm.PartitionEpoch != req.PartitionEpoch {
		return PartitionChange{}, fmt.Errorf("%w: %s-%d is at partition epoch %d, the request at %d",
			ErrStaleEpoch, req.Topic, req.Partition, pm.PartitionEpoch, req.PartitionEpoch)
	}
	seen := map[int32]bool{}
	for _, id := range req.NewISR {
		if seen[id] || !slices.Contains(pm.Replicas, id) {
			return PartitionChange{}, fmt.Errorf("%w: %v is not a set of replicas of %v", ErrInvalidISR, req.NewISR, pm.Replicas)
		}
		seen[id] = true
		if !slices.Contains(pm.ISR, id) && !usable(id) {
			return PartitionChange{}, fmt.Errorf("%w: broker %d is fenced and cannot join the ISR", ErrInvalidISR, id)
		}
	}
	if !seen[req.LeaderID] {
		return PartitionChange{}, fmt.Errorf("%w: the leader must stay in its ISR", ErrInvalidISR)
	}
	return change(t, pm, pm.Leader, pm.LeaderEpoch, slices.Clone(req.NewISR)), nil
}
