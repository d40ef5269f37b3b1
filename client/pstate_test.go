package client

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/proto/skeinv1"
)

// ph drives a pstate in a table case: batches are real encoded batches, so
// that renumbering can be checked on the wire.
type ph struct {
	t   *testing.T
	s   *pstate
	now time.Time
	all []*pbatch // every batch made, in order
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// testBackoff is attempt × 10 ms: deterministic, and growing.
func testBackoff(n int) time.Duration { return time.Duration(n) * 10 * time.Millisecond }

func newPH(t *testing.T, maxInFlight int, idempotent bool) *ph {
	cfg := producerConfig{maxInFlight: maxInFlight, idempotent: idempotent}
	s := newPState("t/0", &cfg, testBackoff)
	if idempotent {
		s.adopt(5, 0, nil)
	}
	return &ph{t: t, s: s, now: t0}
}

// batch makes a sealed batch of n records, numbered when the partition
// numbers; expected >= 0 makes it conditional.
func (h *ph) batch(n int, expected int64) *pbatch {
	bl := batch.NewBuilder(batch.None)
	for i := 0; i < n; i++ {
		bl.Add(&batch.Record{Value: []byte("v")})
	}
	b := &pbatch{seq: uint64(len(h.all)), count: n, producerID: batch.NoProducerID, baseSequence: batch.NoSequence, expected: expected}
	if h.s.numbers() {
		h.s.number(b)
	}
	bl.SetProducer(b.producerID, b.producerEpoch, b.baseSequence)
	w, err := bl.Build(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	b.wire = w
	if expected >= 0 {
		b.notify = make(chan condResult, 1)
	}
	h.all = append(h.all, b)
	return b
}

// send makes and sends n batches of 3 records on stream "a".
func (h *ph) send(n int) []*pbatch {
	var out []*pbatch
	for i := 0; i < n; i++ {
		if g, _ := h.s.gate(h.now); g != gateOpen {
			h.t.Fatalf("gate %v before send %d", g, i)
		}
		b := h.batch(3, -1)
		h.s.sent(b, "a", 1)
		out = append(out, b)
	}
	return out
}

func (h *ph) ok(b *pbatch, base int64) effects {
	return h.s.answer(b, answer{base: base, epoch: 1}, h.now)
}

func (h *ph) fail(b *pbatch, err error) effects {
	return h.s.answer(b, answer{base: -1, epoch: -1, err: err}, h.now)
}

func (h *ph) wantGate(want gate, until time.Time) {
	h.t.Helper()
	if g, u := h.s.gate(h.now); g != want || !u.Equal(until) {
		h.t.Fatalf("gate %v until %v, want %v until %v", g, u, want, until)
	}
}

// wantDone checks the finished batches, in order, and whether each failed.
func (h *ph) wantDone(ef effects, want []*pbatch, failed ...bool) {
	h.t.Helper()
	if len(ef.done) != len(want) {
		h.t.Fatalf("%d done, want %d: %+v", len(ef.done), len(want), ef.done)
	}
	for i, o := range ef.done {
		if o.b != want[i] || (o.err != nil) != (i < len(failed) && failed[i]) {
			h.t.Fatalf("done[%d] = batch %d err %v, want batch %d failed %v", i, o.b.seq, o.err, want[i].seq, i < len(failed) && failed[i])
		}
	}
}

func (h *ph) wantRequeue(ef effects, want ...*pbatch) {
	h.t.Helper()
	if len(ef.requeue) != len(want) {
		h.t.Fatalf("requeued %d, want %d", len(ef.requeue), len(want))
	}
	for i, b := range ef.requeue {
		if b != want[i] {
			h.t.Fatalf("requeue[%d] = batch %d, want %d", i, b.seq, want[i].seq)
		}
	}
}

func brokerErr(reason skeinv1.ErrorReason) error {
	return errorFromDetail(&skeinv1.ErrorDetail{Code: uint32(codes.FailedPrecondition), Reason: reason})
}

var (
	errNotLeader   = brokerErr(skeinv1.ErrorReason_NOT_LEADER)
	errOutOfOrder  = brokerErr(skeinv1.ErrorReason_OUT_OF_ORDER_SEQUENCE)
	errFenced      = brokerErr(skeinv1.ErrorReason_PRODUCER_FENCED)
	errMismatch    = brokerErr(skeinv1.ErrorReason_OFFSET_MISMATCH)
	errTimeout     = &Error{code: codes.DeadlineExceeded, Message: "no answer", LeaderID: -1}
	errLostConnect = transportError("b1:9420", errors.New("reset"))
)

// TestPState has one case per rule of the partition producer's state
// machine (see pstate's doc).
func TestPState(t *testing.T) {
	cases := []struct {
		name        string
		maxInFlight int
		idempotent  bool
		run         func(h *ph)
	}{
		{"at most maxInFlight batches await answers", 2, true, func(h *ph) {
			b := h.send(2)
			h.wantGate(gateFull, time.Time{})
			h.wantDone(h.ok(b[0], 0), b[:1])
			h.wantGate(gateOpen, time.Time{})
		}},
		{"batches complete in send order whatever the answer order", 5, true, func(h *ph) {
			b := h.send(3)
			h.wantDone(h.ok(b[1], 3), nil)
			h.wantDone(h.ok(b[0], 0), b[:2])
			h.wantDone(h.ok(b[2], 6), b[2:])
		}},
		{"a retriable answer drains the pipeline, then its batches go back in order", 5, true, func(h *ph) {
			b := h.send(3)
			h.wantDone(h.fail(b[0], errNotLeader), nil)
			h.wantGate(gateDrain, time.Time{})
			h.wantDone(h.fail(b[2], errTimeout), nil)
			ef := h.fail(b[1], errLostConnect)
			h.wantDone(ef, nil)
			h.wantRequeue(ef, b...)
			if !ef.refresh || !errors.Is(ef.cause, ErrNotLeader) || ef.causeGen != 1 {
				h.t.Fatalf("refresh %v cause %v gen %d", ef.refresh, ef.cause, ef.causeGen)
			}
			if b[0].uncertain || !b[1].uncertain || !b[2].uncertain {
				h.t.Fatal("only the lost connection and the timeout leave their batch uncertain")
			}
			h.wantGate(gateBackoff, t0.Add(10*time.Millisecond))
			h.now = t0.Add(10 * time.Millisecond)
			h.wantGate(gateResume, time.Time{})
			h.s.resume()
			h.wantGate(gateOpen, time.Time{})
		}},
		{"the backoff grows with consecutive failures and a success resets it", 5, true, func(h *ph) {
			b := h.send(1)
			h.fail(b[0], errNotLeader)
			h.s.resume()
			h.s.sent(b[0], "a", 2)
			h.fail(b[0], errNotLeader)
			h.wantGate(gateBackoff, t0.Add(20*time.Millisecond))
			h.s.resume()
			h.s.sent(b[0], "a", 3)
			h.ok(b[0], 0)
			if h.s.failures != 0 {
				h.t.Fatalf("failures %d after a success", h.s.failures)
			}
		}},
		{"without idempotence a batch appended after a retried one is reported", 5, false, func(h *ph) {
			b := h.send(2)
			h.fail(b[0], errNotLeader)
			ef := h.ok(b[1], 7)
			h.wantDone(ef, b[1:])
			h.wantRequeue(ef, b[0])
			if len(ef.reordered) != 1 || ef.reordered[0].b != b[1] {
				h.t.Fatalf("reordered %+v", ef.reordered)
			}
		}},
		{"without idempotence a timeout fails its batch", 5, false, func(h *ph) {
			b := h.send(1)
			ef := h.fail(b[0], errTimeout)
			h.wantDone(ef, b, true)
			h.wantRequeue(ef)
			if !errors.Is(ef.done[0].err, ErrTimedOut) {
				h.t.Fatalf("err %v", ef.done[0].err)
			}
		}},
		{"a conditional append is retried after a timeout even without idempotence", 5, false, func(h *ph) {
			b := h.batch(1, 4)
			h.s.sent(b, "a", 1)
			h.wantRequeue(h.fail(b, errTimeout), b)
		}},
		{"a partition switches streams only with nothing in flight", 5, true, func(h *ph) {
			b := h.send(1)
			if h.s.canUse("b") || !h.s.canUse("a") {
				h.t.Fatal("another stream usable with a batch in flight")
			}
			h.ok(b[0], 0)
			if !h.s.canUse("b") {
				h.t.Fatal("stream not switchable once idle")
			}
		}},
		{"out-of-order sequence resets the epoch and renumbers from 0, at once", 5, true, func(h *ph) {
			b := h.send(2) // sequences 0 and 3
			h.fail(b[0], errOutOfOrder)
			ef := h.fail(b[1], errOutOfOrder)
			h.wantRequeue(ef, b...)
			if ef.refresh {
				h.t.Fatal("a sequence gap is not the leader's failure: no refresh")
			}
			h.wantGate(gateResume, time.Time{})
			h.s.resume()
			if need, wait := h.s.needsIdentity(); !need || wait {
				h.t.Fatalf("need %v wait %v", need, wait)
			}
			if !h.s.adopt(5, 1, ef.requeue) {
				h.t.Fatal("adopt after a gap is a reset")
			}
			for i, want := range []int32{0, 3} {
				v := batch.View(b[i].wire)
				if b[i].producerEpoch != 1 || b[i].baseSequence != want || v.ProducerEpoch() != 1 || v.BaseSequence() != want || !v.VerifyCRC() {
					h.t.Fatalf("batch %d: epoch %d seq %d, wire epoch %d seq %d crc %v", i, b[i].producerEpoch, b[i].baseSequence, v.ProducerEpoch(), v.BaseSequence(), v.VerifyCRC())
				}
			}
			if h.s.sequence != 6 {
				h.t.Fatalf("next sequence %d", h.s.sequence)
			}
		}},
		{"a reset waits for every answer in flight", 5, true, func(h *ph) {
			h.send(1)
			h.s.reset = true
			if need, wait := h.s.needsIdentity(); !need || !wait {
				h.t.Fatalf("need %v wait %v", need, wait)
			}
		}},
		{"the first batch waits for a producer identity", 5, true, func(h *ph) {
			h.s.pid = noProducer
			if need, _ := h.s.needsIdentity(); !need || h.s.numbers() {
				h.t.Fatal("no identity yet, yet no need")
			}
			if h.s.adopt(9, 0, nil) {
				h.t.Fatal("the first identity is not a reset")
			}
			if b := h.batch(2, -1); b.producerID != 9 || b.baseSequence != 0 {
				h.t.Fatalf("batch %d/%d", b.producerID, b.baseSequence)
			}
		}},
		{"a failure for good of the last numbered batch gives its sequences back", 5, true, func(h *ph) {
			h.send(1) // sequences 0..2
			b := h.batch(2, 3)
			h.s.sent(b, "a", 1) // 3..4
			h.ok(h.all[0], 0)
			h.wantDone(h.fail(b, errMismatch), []*pbatch{b}, true)
			if h.s.sequence != 3 || h.s.reset {
				h.t.Fatalf("sequence %d reset %v, want 3 and no reset", h.s.sequence, h.s.reset)
			}
		}},
		{"a failure for good before later batches leads to a reset", 5, true, func(h *ph) {
			c := h.batch(2, 0)
			h.s.sent(c, "a", 1)
			b := h.send(1)
			h.wantDone(h.fail(c, errMismatch), []*pbatch{c}, true)
			if h.s.sequence != 5 {
				h.t.Fatalf("sequence %d: later batches are numbered, nothing given back", h.s.sequence)
			}
			h.wantRequeue(h.fail(b[0], errOutOfOrder), b[0])
			if !h.s.reset {
				h.t.Fatal("no reset after the gap")
			}
		}},
		{"producer fenced is fatal to the producer", 5, true, func(h *ph) {
			b := h.send(2)
			ef := h.fail(b[0], errFenced)
			if ef.fatal == nil || !errors.Is(ef.done[0].err, ErrProducerFenced) {
				h.t.Fatalf("fatal %v, done %+v", ef.fatal, ef.done)
			}
			ef = h.fail(b[1], errNotLeader)
			h.wantDone(ef, b[1:], true)
			if !errors.Is(ef.done[0].err, ErrProducerFenced) {
				h.t.Fatalf("a later failure does not name the fencing: %v", ef.done[0].err)
			}
		}},
		{"an unknown leader backs off, and fails the head only when still unknown after a refresh", 5, true, func(h *ph) {
			if fail, at := h.s.noLeader(h.now, 3, true); fail || !at.Equal(t0.Add(10*time.Millisecond)) {
				h.t.Fatalf("first lookup: fail %v at %v", fail, at)
			}
			h.wantGate(gateBackoff, t0.Add(10*time.Millisecond))
			h.s.resume()
			if fail, _ := h.s.noLeader(h.now, 3, true); fail {
				h.t.Fatal("failed without a newer metadata generation")
			}
			h.s.resume()
			if fail, _ := h.s.noLeader(h.now, 4, false); fail {
				h.t.Fatal("failed while the partition exists")
			}
			h.s.resume()
			if fail, _ := h.s.noLeader(h.now, 5, true); !fail {
				h.t.Fatal("not failed after a refresh found no such partition")
			}
		}},
		{"a stream that cannot be opened waits for the answers in flight, then backs off", 5, true, func(h *ph) {
			b := h.send(1)
			if wait, _ := h.s.streamDown(h.now); !wait {
				h.t.Fatal("retry started with a batch in flight")
			}
			h.ok(b[0], 0)
			if wait, at := h.s.streamDown(h.now); wait || !at.Equal(t0.Add(10*time.Millisecond)) {
				h.t.Fatalf("wait %v at %v", wait, at)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(newPH(t, c.maxInFlight, c.idempotent)) })
	}
}
