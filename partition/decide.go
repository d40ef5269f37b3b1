package partition

import (
	"fmt"
	"maps"
)

// This file holds the append path's decisions as pure functions of the
// partition's state and the requests: no log, no goroutines, no clock
// (the time is an input). The append loop (append.go) copies the state
// under p.mu, asks planGroup what to do, and only then does the I/O.

// appendState is what the checks of an append read, copied under p.mu.
type appendState struct {
	failed   error // fatal storage failure: no more writes
	role     Role
	handoff  bool  // leadership is being handed off: no new appends
	leaderID int32 // -1 unknown
	epoch    int32 // current leader epoch
	isrSize  int
	minISR   int
	leo      int64 // the next offset to assign
	logStart int64
	nowMs    int64 // the time stamped on producer state
}

// appendable checks that req may be appended in state s: the replica's
// storage is healthy, it leads and is not handing off, the request names
// the current epoch (or none), and an acks=all request has enough in-sync
// replicas.
func (s *appendState) appendable(req *AppendRequest) error {
	switch {
	case s.failed != nil:
		return fmt.Errorf("%w: the log failed earlier and takes no writes: %v", ErrStorage, s.failed)
	case s.role != RoleLeader:
		return &NotLeaderError{LeaderID: s.leaderID, LeaderEpoch: s.epoch}
	case s.handoff:
		return &NotLeaderError{LeaderID: -1, LeaderEpoch: s.epoch}
	case req.LeaderEpoch >= 0 && req.LeaderEpoch != s.epoch:
		return &EpochError{Requested: req.LeaderEpoch, Current: s.epoch}
	case req.Acks == AcksAll && s.isrSize < s.minISR:
		return fmt.Errorf("%w: the ISR has %d replicas, min.insync.replicas is %d", ErrNotEnoughReplicas, s.isrSize, s.minISR)
	}
	return nil
}

// groupPlan is what a group commit does: the batches to write (their
// results set, at dense offsets from the state's LEO, in queue order), the
// retries answered with their original offsets, the requests refused and
// why, and the producer-table changes to apply once the write is durable.
type groupPlan struct {
	epoch      int32
	accepted   []*op
	dups       []*op
	refused    []*op
	refusedErr []error
	staged     map[int64]producerEntry
	next       int64 // the LEO once the accepted batches are written
}

// planGroup checks each append of a group in queue order against the state
// left by the requests before it, those of the same group included:
// leadership and epoch, then the idempotent producer's sequence and epoch
// (a duplicate is not written and is answered with the original offsets;
// a gap or a fenced epoch is refused), then the expected offset of a
// conditional append, then the key expectations of a per-key conditional
// append against keys (the last offset of each key some append of the
// group expects, before the group) as the group's earlier accepted
// batches move them: all of a batch's expectations hold or it is refused.
// A refused request takes no offset and changes no producer state.
// producers and keys are read, never written.
func planGroup(s appendState, producers *producerState, keys map[string]int64, group []*op) groupPlan {
	plan := groupPlan{epoch: s.epoch, next: s.leo}
	cur := maps.Clone(keys)
	for _, o := range group {
		if err := s.appendable(&o.req); err != nil {
			plan.refuse(o, err)
			continue
		}
		var pe producerEntry
		var known bool
		if o.prod.ID >= 0 {
			pe, known = producers.get(plan.staged, o.prod.ID)
			dup, isDup, err := checkSequence(pe, known, o.prod)
			if err != nil {
				plan.refuse(o, err)
				continue
			}
			if isDup {
				o.result = AppendResult{BaseOffset: dup.BaseOffset, LastOffset: dup.LastOffset, LogStartOffset: s.logStart, Duplicate: true, LeaderEpoch: -1}
				plan.dups = append(plan.dups, o)
				continue
			}
		}
		if o.req.ExpectedOffset >= 0 && o.req.ExpectedOffset != plan.next {
			plan.refuse(o, &OffsetMismatchError{Expected: o.req.ExpectedOffset, Actual: plan.next})
			continue
		}
		if err := keyMismatches(o.req.KeyExpectations, cur); err != nil {
			plan.refuse(o, err)
			continue
		}
		advanceKeys(cur, o.keys, plan.next)
		o.result = AppendResult{BaseOffset: plan.next, LastOffset: plan.next + int64(o.count) - 1, LogStartOffset: s.logStart, LeaderEpoch: s.epoch}
		if o.prod.ID >= 0 {
			if plan.staged == nil {
				plan.staged = make(map[int64]producerEntry)
			}
			plan.staged[o.prod.ID] = apply(pe, known, o.prod, o.result.BaseOffset, o.result.LastOffset, s.nowMs)
		}
		plan.next += int64(o.count)
		plan.accepted = append(plan.accepted, o)
	}
	return plan
}

func (g *groupPlan) refuse(o *op, err error) {
	g.refused = append(g.refused, o)
	g.refusedErr = append(g.refusedErr, err)
}
