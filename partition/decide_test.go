package partition

import (
	"errors"
	"fmt"
	"testing"
)

// The append path's rules, one case per rule of the produce guarantees
// (G2/G7 dense offsets, G3 each record once, G5 a definite failure changes
// nothing, G10 one writer per epoch, G11 min.insync, the idempotent
// producer's sequence and epoch rules, conditional append), checked on
// planGroup alone: no log, no goroutines.

// leaderState is a healthy leader at epoch 3 with LEO 100.
func leaderState() appendState {
	return appendState{role: RoleLeader, leaderID: 1, epoch: 3, isrSize: 3, minISR: 2, leo: 100, logStart: 10, nowMs: 5000}
}

// req is an append of count records; prod is its producer (id -1: none).
func req(count int, prod producerBatch, mods ...func(*AppendRequest)) *op {
	o := &op{kind: opAppend, count: count, prod: prod, req: AppendRequest{LeaderEpoch: -1, ExpectedOffset: -1, Acks: AcksAll}}
	for _, m := range mods {
		m(&o.req)
	}
	return o
}

var noProducer = producerBatch{ID: -1}

func seq(id int64, epoch int16, first, last int32) producerBatch {
	return producerBatch{ID: id, Epoch: epoch, FirstSeq: first, LastSeq: last}
}

func withEpoch(e int32) func(*AppendRequest) { return func(r *AppendRequest) { r.LeaderEpoch = e } }
func expecting(n int64) func(*AppendRequest) { return func(r *AppendRequest) { r.ExpectedOffset = n } }
func acks(a Acks) func(*AppendRequest)       { return func(r *AppendRequest) { r.Acks = a } }
func state(f func(*appendState)) appendState { s := leaderState(); f(&s); return s }

// producers7 knows producer 7 at epoch 2, whose last batch was seqs 0..4 at
// offsets 90..94.
func producers7() *producerState {
	ps := newProducerState()
	ps.entries[7] = apply(producerEntry{}, false, seq(7, 2, 0, 4), 90, 94, 1000)
	return &ps
}

// outcome is what the plan did with one request: "ok@base-last",
// "dup@base-last", or the sentinel error it was refused with.
type outcome struct {
	ok, dup  bool
	base     int64
	last     int64
	sentinel error
}

func accepted(base, last int64) outcome { return outcome{ok: true, base: base, last: last} }
func duplicate(base, last int64) outcome {
	return outcome{dup: true, base: base, last: last}
}
func refusedWith(err error) outcome { return outcome{sentinel: err} }

func TestPlanGroupRules(t *testing.T) {
	errDisk := errors.New("input/output error")
	cases := []struct {
		name     string
		state    appendState
		group    []*op
		want     []outcome
		wantNext int64
	}{
		{"G7 accepted batches take dense offsets from the LEO in queue order", leaderState(),
			[]*op{req(3, noProducer), req(1, noProducer), req(2, noProducer)},
			[]outcome{accepted(100, 102), accepted(103, 103), accepted(104, 105)}, 106},
		{"G5 a refused batch takes no offset", leaderState(),
			[]*op{req(2, noProducer), req(2, noProducer, expecting(50)), req(1, noProducer)},
			[]outcome{accepted(100, 101), refusedWith(ErrOffsetMismatch), accepted(102, 102)}, 103},
		{"G10 a follower refuses appends", state(func(s *appendState) { s.role = RoleFollower; s.leaderID = 2 }),
			[]*op{req(1, noProducer)}, []outcome{refusedWith(ErrNotLeader)}, 100},
		{"G10 a leader handing off refuses appends", state(func(s *appendState) { s.handoff = true }),
			[]*op{req(1, noProducer)}, []outcome{refusedWith(ErrNotLeader)}, 100},
		{"G10 a request naming an older epoch is fenced", leaderState(),
			[]*op{req(1, noProducer, withEpoch(2))}, []outcome{refusedWith(ErrFencedEpoch)}, 100},
		{"G10 a request naming a newer epoch is refused as unknown", leaderState(),
			[]*op{req(1, noProducer, withEpoch(4))}, []outcome{refusedWith(ErrUnknownEpoch)}, 100},
		{"G10 a request naming the current epoch is accepted", leaderState(),
			[]*op{req(1, noProducer, withEpoch(3))}, []outcome{accepted(100, 100)}, 101},
		{"G11 acks=all is refused below min.insync", state(func(s *appendState) { s.isrSize = 1 }),
			[]*op{req(1, noProducer)}, []outcome{refusedWith(ErrNotEnoughReplicas)}, 100},
		{"G11 acks=leader does not need min.insync", state(func(s *appendState) { s.isrSize = 1 }),
			[]*op{req(1, noProducer, acks(AcksLeader))}, []outcome{accepted(100, 100)}, 101},
		{"a failed log takes no writes", state(func(s *appendState) { s.failed = errDisk }),
			[]*op{req(1, noProducer)}, []outcome{refusedWith(ErrStorage)}, 100},
		{"G3 a retry of an appended batch is answered with its original offsets", leaderState(),
			[]*op{req(5, seq(7, 2, 0, 4))}, []outcome{duplicate(90, 94)}, 100},
		{"G3 a retry within the same group is answered with the offsets just assigned", leaderState(),
			[]*op{req(2, seq(7, 2, 5, 6)), req(2, seq(7, 2, 5, 6))}, []outcome{accepted(100, 101), duplicate(100, 101)}, 102},
		{"idempotent: the next sequence is accepted", leaderState(),
			[]*op{req(2, seq(7, 2, 5, 6)), req(1, seq(7, 2, 7, 7))}, []outcome{accepted(100, 101), accepted(102, 102)}, 103},
		{"idempotent: a sequence gap is out of order", leaderState(),
			[]*op{req(1, seq(7, 2, 9, 9))}, []outcome{refusedWith(ErrOutOfOrderSequence)}, 100},
		{"idempotent: after a refused batch its successor is out of order too", leaderState(),
			[]*op{req(1, seq(7, 2, 5, 5), expecting(1)), req(1, seq(7, 2, 6, 6))},
			[]outcome{refusedWith(ErrOffsetMismatch), refusedWith(ErrOutOfOrderSequence)}, 100},
		{"idempotent: an older producer epoch is fenced", leaderState(),
			[]*op{req(1, seq(7, 1, 5, 5))}, []outcome{refusedWith(ErrProducerFenced)}, 100},
		{"idempotent: a newer producer epoch must start at sequence 0", leaderState(),
			[]*op{req(1, seq(7, 3, 5, 5)), req(1, seq(7, 3, 0, 0))}, []outcome{refusedWith(ErrOutOfOrderSequence), accepted(100, 100)}, 101},
		{"idempotent: an unknown producer must start at sequence 0", leaderState(),
			[]*op{req(1, seq(8, 0, 3, 3)), req(1, seq(8, 0, 0, 0))}, []outcome{refusedWith(ErrOutOfOrderSequence), accepted(100, 100)}, 101},
		{"conditional append at the LEO is accepted", leaderState(),
			[]*op{req(2, noProducer, expecting(100))}, []outcome{accepted(100, 101)}, 102},
		{"conditional append counts the batches before it in the group", leaderState(),
			[]*op{req(2, noProducer), req(1, noProducer, expecting(102)), req(1, noProducer, expecting(102))},
			[]outcome{accepted(100, 101), accepted(102, 102), refusedWith(ErrOffsetMismatch)}, 103},
		{"conditional append: a duplicate is answered before the expectation is checked", leaderState(),
			[]*op{req(5, seq(7, 2, 0, 4), expecting(100))}, []outcome{duplicate(90, 94)}, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ps := producers7()
			before := fmt.Sprint(ps.entries)
			plan := planGroup(c.state, ps, nil, c.group)
			for i, o := range c.group {
				if got := outcomeOf(plan, o); !sameOutcome(got, c.want[i]) {
					t.Errorf("request %d: got %+v, want %+v", i, got, c.want[i])
				}
			}
			if plan.next != c.wantNext {
				t.Errorf("next offset %d, want %d", plan.next, c.wantNext)
			}
			if after := fmt.Sprint(ps.entries); after != before {
				t.Errorf("planGroup changed the producer table: %s -> %s", before, after)
			}
			for _, o := range plan.accepted {
				if o.result.LeaderEpoch != c.state.epoch || o.result.LogStartOffset != c.state.logStart {
					t.Errorf("accepted result %+v: want epoch %d and log start %d", o.result, c.state.epoch, c.state.logStart)
				}
			}
		})
	}
}

func TestPlanGroupStagesProducerStateOfAcceptedBatchesOnly(t *testing.T) {
	ps := producers7()
	plan := planGroup(leaderState(), ps, nil, []*op{
		req(2, seq(7, 2, 5, 6)),
		req(1, seq(9, 0, 4, 4)), // unknown producer not at 0: refused
		req(1, seq(10, 0, 0, 0)),
	})
	if _, ok := plan.staged[9]; ok {
		t.Fatal("a refused batch staged producer state")
	}
	e7, e10 := plan.staged[7], plan.staged[10]
	if e7.last() != (batchMeta{FirstSeq: 5, LastSeq: 6, BaseOffset: 100, LastOffset: 101}) || e7.lastSeen != 5000 {
		t.Fatalf("producer 7 staged %+v", e7)
	}
	if e10.last() != (batchMeta{FirstSeq: 0, LastSeq: 0, BaseOffset: 102, LastOffset: 102}) {
		t.Fatalf("producer 10 staged %+v", e10)
	}
}

func outcomeOf(plan groupPlan, o *op) outcome {
	for _, a := range plan.accepted {
		if a == o {
			return accepted(o.result.BaseOffset, o.result.LastOffset)
		}
	}
	for _, d := range plan.dups {
		if d == o {
			return duplicate(o.result.BaseOffset, o.result.LastOffset)
		}
	}
	for i, r := range plan.refused {
		if r == o {
			return outcome{sentinel: plan.refusedErr[i]}
		}
	}
	return outcome{}
}

func sameOutcome(got, want outcome) bool {
	if want.sentinel != nil {
		return got.sentinel != nil && errors.Is(got.sentinel, want.sentinel)
	}
	return got.sentinel == nil && got.ok == want.ok && got.dup == want.dup && got.base == want.base && got.last == want.last
}
