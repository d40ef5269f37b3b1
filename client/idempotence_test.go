package client_test

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/client/internal/fakebroker"
	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/proto/skeinv1"
)

// produceNumbered produces records "0".."n-1" to topic and waits; it
// returns each record's error and offset.
func produceNumbered(t *testing.T, p *client.Producer, topic string, n int) ([]error, []int64) {
	t.Helper()
	ctx := ctxT(t)
	errs := make([]error, n)
	offs := make([]int64, n)
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		p.Produce(ctx, &client.Record{Topic: topic, Value: []byte(strconv.Itoa(i))}, func(r *client.Record, err error) {
			errs[i], offs[i] = err, r.Offset
			wg.Done()
		})
	}
	wg.Wait()
	return errs, offs
}

// countCopies maps each stored value to how many times the log holds it,
// and checks that first appearances keep produce order.
func countCopies(t *testing.T, fc *fakebroker.Cluster, topic string) map[int]int {
	t.Helper()
	copies := map[int]int{}
	last := -1
	for _, r := range fc.Records(topic, 0) {
		v, err := strconv.Atoi(string(r.Value))
		if err != nil {
			t.Fatalf("offset %d holds %q", r.Offset, r.Value)
		}
		if copies[v] == 0 {
			if v < last {
				t.Fatalf("record %d stored after record %d", v, last)
			}
			last = v
		}
		copies[v]++
	}
	return copies
}

// The broker appends a request and the answer is lost (its stream breaks):
// the idempotent producer's retry is recognised, so every record is stored
// exactly once, in order, at the offset its callback reports. The same run
// without idempotence stores duplicates, so the scenario does exercise
// retries of appended batches.
func TestIdempotentLostAnswers(t *testing.T) {
	for _, idem := range []bool{true, false} {
		t.Run("idempotent="+strconv.FormatBool(idem), func(t *testing.T) {
			fc := newCluster(t, 1)
			fc.CreateTopic("lost", 1)
			var n atomic.Int64
			fc.SetProduceHook(func(int32, *skeinv1.ProduceRequest) fakebroker.Action {
				return fakebroker.Action{LoseAnswer: n.Add(1)%7 == 0, Delay: 100 * time.Microsecond}
			})
			c := newClient(t, fc)
			p := newProducer(t, c, client.BatchMaxBytes(256), client.Linger(0), client.Idempotent(idem))
			if fc.InitProducerCalls() != 0 {
				t.Fatal("InitProducer before anything was produced")
			}
			const total = 500
			errs, offs := produceNumbered(t, p, "lost", total)
			for i, err := range errs {
				if err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
			}
			copies := countCopies(t, fc, "lost")
			dups := 0
			for i := range total {
				if copies[i] == 0 {
					t.Fatalf("record %d lost", i)
				}
				dups += copies[i] - 1
			}
			if !idem {
				if dups == 0 {
					t.Fatal("no duplicate without idempotence: the test does not retry appended batches")
				}
				if fc.InitProducerCalls() != 0 {
					t.Fatal("InitProducer called by a producer that is not idempotent")
				}
				return
			}
			if dups != 0 {
				t.Fatalf("%d duplicates with the idempotent producer", dups)
			}
			if fc.Duplicates() == 0 {
				t.Fatal("no retry was answered as a duplicate")
			}
			recs := fc.Records("lost", 0)
			for i, off := range offs {
				if string(recs[off].Value) != strconv.Itoa(i) {
					t.Fatalf("record %d acknowledged at %d, which holds %q", i, off, recs[off].Value)
				}
			}
			// Sequences are dense and start at 0; one InitProducer.
			for i, r := range recs {
				if r.Producer != 1000 || r.ProducerEpoch != 0 || r.Sequence != int32(i) {
					t.Fatalf("offset %d: producer %d epoch %d sequence %d", i, r.Producer, r.ProducerEpoch, r.Sequence)
				}
			}
			if got := fc.InitProducerCalls(); got != 1 {
				t.Fatalf("%d InitProducer calls, want 1", got)
			}
			if id, epoch := p.ProducerID(); id != 1000 || epoch != 0 {
				t.Fatalf("ProducerID() = %d, %d", id, epoch)
			}
		})
	}
}

// A request that times out (broker TIMED_OUT, or no answer in time) is
// retried by the idempotent producer; without idempotence it fails.
func TestIdempotentRetriesTimeouts(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("slow", 1)
	hang := make(chan struct{})
	defer close(hang)
	var n atomic.Int64
	fc.SetProduceHook(func(int32, *skeinv1.ProduceRequest) fakebroker.Action {
		switch n.Add(1) {
		case 1:
			return fakebroker.Action{Block: hang} // no answer: the client's timeout
		case 2:
			return fakebroker.Action{Fail: &skeinv1.ErrorDetail{Code: uint32(codes.DeadlineExceeded), Reason: skeinv1.ErrorReason_TIMED_OUT, Message: "replication timed out"}}
		}
		return fakebroker.Action{}
	})
	c := newClient(t, fc)
	p := newProducer(t, c, client.ProduceRequestTimeout(100*time.Millisecond))
	ctx := ctxT(t)
	if err := p.ProduceSync(ctx, &client.Record{Topic: "slow", Value: []byte("a")}); err != nil {
		t.Fatalf("timed-out request not retried: %v", err)
	}
	if recs := fc.Records("slow", 0); len(recs) != 1 || n.Load() != 3 {
		t.Fatalf("%d records after %d requests", len(recs), n.Load())
	}
}

// One batch fails for good while later ones are in flight: those come
// back OUT_OF_ORDER_SEQUENCE (the broker misses the failed batch), and the
// producer bumps its epoch, renumbers them from 0 and resends them, in
// order, once each.
func TestIdempotentGapResetsSequences(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("gap", 1)
	var n atomic.Int64
	fc.SetProduceHook(func(int32, *skeinv1.ProduceRequest) fakebroker.Action {
		if n.Add(1) == 3 {
			// Held long enough for the next batches to queue behind it.
			return fakebroker.Action{Delay: 30 * time.Millisecond, Fail: &skeinv1.ErrorDetail{
				Code: uint32(codes.InvalidArgument), Reason: skeinv1.ErrorReason_INVALID_RECORD, Message: "refused for the test"}}
		}
		return fakebroker.Action{}
	})
	c := newClient(t, fc)
	p := newProducer(t, c, client.BatchMaxBytes(128), client.Linger(0))
	const total = 200
	errs, offs := produceNumbered(t, p, "gap", total)
	refused := map[int]bool{}
	for i, err := range errs {
		if err != nil {
			if !errors.Is(err, client.ErrInvalidRecord) {
				t.Fatalf("record %d: %v", i, err)
			}
			refused[i] = true
		}
	}
	if len(refused) == 0 || len(refused) > 10 {
		t.Fatalf("%d records refused, want one batch", len(refused))
	}
	copies := countCopies(t, fc, "gap")
	for i := range total {
		if want := map[bool]int{true: 0, false: 1}[refused[i]]; copies[i] != want {
			t.Fatalf("record %d stored %d times, want %d", i, copies[i], want)
		}
	}
	recs := fc.Records("gap", 0)
	for i, off := range offs {
		if !refused[i] && string(recs[off].Value) != strconv.Itoa(i) {
			t.Fatalf("record %d acknowledged at %d, which holds %q", i, off, recs[off].Value)
		}
	}
	// Before the gap epoch 0, after it epoch 1 from sequence 0.
	bumped := false
	for _, r := range recs {
		if r.ProducerEpoch == 1 && !bumped {
			bumped = true
			if r.Sequence != 0 {
				t.Fatalf("epoch 1 starts at sequence %d", r.Sequence)
			}
		}
		if bumped && r.ProducerEpoch != 1 {
			t.Fatalf("epoch %d after epoch 1", r.ProducerEpoch)
		}
	}
	if !bumped {
		t.Fatal("no batch was sent under a new epoch: the gap did not make later batches out of order")
	}
	if got := fc.InitProducerCalls(); got != 1 {
		t.Fatalf("%d InitProducer calls: the epoch bump is local", got)
	}
}

// An OUT_OF_ORDER_SEQUENCE answer to the oldest batch (the partition lost
// the producer's state) resets the sequences; the batch is sent again.
func TestIdempotentOutOfOrderAnswerResets(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("ooo", 1)
	var n atomic.Int64
	fc.SetProduceHook(func(int32, *skeinv1.ProduceRequest) fakebroker.Action {
		if n.Add(1) == 2 {
			return fakebroker.Action{Fail: &skeinv1.ErrorDetail{Code: uint32(codes.FailedPrecondition), Reason: skeinv1.ErrorReason_OUT_OF_ORDER_SEQUENCE, Message: "expected sequence 0"}}
		}
		return fakebroker.Action{}
	})
	c := newClient(t, fc)
	p := newProducer(t, c)
	ctx := ctxT(t)
	for i := range 3 {
		if err := p.ProduceSync(ctx, &client.Record{Topic: "ooo", Value: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	recs := fc.Records("ooo", 0)
	if len(recs) != 3 || recs[1].ProducerEpoch != 1 || recs[1].Sequence != 0 || recs[2].Sequence != 1 {
		t.Fatalf("records %+v", recs)
	}
}

// PRODUCER_FENCED is fatal: the batch and everything pending fail with
// it, and so does everything produced later.
func TestIdempotentFencedIsFatal(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("fence", 2)
	var n atomic.Int64
	release := make(chan struct{})
	fc.SetProduceHook(func(int32, *skeinv1.ProduceRequest) fakebroker.Action {
		if n.Add(1) == 2 {
			return fakebroker.Action{Block: release, Fail: &skeinv1.ErrorDetail{Code: uint32(codes.FailedPrecondition), Reason: skeinv1.ErrorReason_PRODUCER_FENCED, Message: "epoch 0 is fenced by epoch 1"}}
		}
		return fakebroker.Action{}
	})
	c := newClient(t, fc)
	p := newProducer(t, c, client.RecordPartitioner(client.ExplicitPartitioner(client.DefaultPartitioner())), client.BatchMaxBytes(128), client.Linger(0))
	ctx := ctxT(t)
	if err := p.ProduceSync(ctx, &client.Record{Topic: "fence", Partition: 0, Value: []byte("ok")}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := range 20 {
		wg.Add(1)
		p.Produce(ctx, &client.Record{Topic: "fence", Partition: int32(i % 2), Value: []byte(strconv.Itoa(i))}, func(_ *client.Record, err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			wg.Done()
		})
	}
	waitFor(t, 5*time.Second, "the fenced request to arrive", func() bool { return n.Load() >= 2 })
	close(release)
	wg.Wait()
	fenced := 0
	for _, err := range errs {
		if errors.Is(err, client.ErrProducerFenced) {
			fenced++
			if !strings.Contains(err.Error(), "fenced") {
				t.Fatalf("unclear error: %v", err)
			}
		}
	}
	if fenced == 0 {
		t.Fatalf("no record failed as fenced: %v", errs)
	}
	err := p.ProduceSync(ctx, &client.Record{Topic: "fence", Partition: 1, Value: []byte("later")})
	if !errors.Is(err, client.ErrProducerFenced) {
		t.Fatalf("produce after fencing: %v", err)
	}
	if _, err := p.ProduceIf(ctx, "fence", 0, 0, &client.Record{Value: []byte("later")}); !errors.Is(err, client.ErrProducerFenced) {
		t.Fatalf("ProduceIf after fencing: %v", err)
	}
}

// A conditional append whose answer was lost is retried; the retry is a
// duplicate, so ProduceIf reports the original offset instead of a
// mismatch. Without idempotence the retry fails with a mismatch that says
// the records may be there.
func TestProduceIfRetryAfterLostAnswer(t *testing.T) {
	for _, idem := range []bool{true, false} {
		t.Run("idempotent="+strconv.FormatBool(idem), func(t *testing.T) {
			fc := newCluster(t, 1)
			fc.CreateTopic("cond", 1)
			var lost atomic.Bool
			fc.SetProduceHook(func(_ int32, req *skeinv1.ProduceRequest) fakebroker.Action {
				if req.ExpectedOffset != nil && req.GetExpectedOffset() == 1 && lost.CompareAndSwap(false, true) {
					return fakebroker.Action{LoseAnswer: true}
				}
				return fakebroker.Action{}
			})
			c := newClient(t, fc)
			p := newProducer(t, c, client.Idempotent(idem))
			ctx := ctxT(t)
			if _, err := p.ProduceIf(ctx, "cond", 0, 0, &client.Record{Value: []byte("a")}); err != nil {
				t.Fatal(err)
			}
			r := &client.Record{Value: []byte("b")}
			base, err := p.ProduceIf(ctx, "cond", 0, 1, r)
			if idem {
				if err != nil || base != 1 || r.Offset != 1 || r.Partition != 0 {
					t.Fatalf("retried conditional append: base %d, %+v, %v", base, r, err)
				}
			} else {
				if !errors.Is(err, client.ErrOffsetMismatch) || !errors.Is(err, client.ErrMaybeAppended) || !strings.Contains(err.Error(), "may have appended") {
					t.Fatalf("without idempotence: %v", err)
				}
			}
			if recs := fc.Records("cond", 0); len(recs) != 2 || string(recs[1].Value) != "b" {
				t.Fatalf("log %+v", recs)
			}
		})
	}
}

// A conditional append that loses the race gives its sequence back: the
// next batch needs no reset, and the log's sequences stay dense.
func TestProduceIfMismatchLeavesNoGap(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("race", 1)
	c := newClient(t, fc)
	p := newProducer(t, c)
	ctx := ctxT(t)
	if _, err := p.ProduceIf(ctx, "race", 0, 0, &client.Record{Value: []byte("0")}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, err := p.ProduceIf(ctx, "race", 0, 0, &client.Record{Value: []byte("stale")})
		var ce *client.Error
		if !errors.Is(err, client.ErrOffsetMismatch) || !errors.As(err, &ce) || ce.NextOffset != 1 {
			t.Fatalf("stale conditional append: %v", err)
		}
	}
	if err := p.ProduceSync(ctx, &client.Record{Topic: "race", Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ProduceIf(ctx, "race", 0, 2, &client.Record{Value: []byte("2")}); err != nil {
		t.Fatal(err)
	}
	for i, r := range fc.Records("race", 0) {
		if r.ProducerEpoch != 0 || r.Sequence != int32(i) || string(r.Value) != strconv.Itoa(i) {
			t.Fatalf("offset %d: epoch %d sequence %d %q", i, r.ProducerEpoch, r.Sequence, r.Value)
		}
	}
}

// ProduceIf is ordered after what was produced before it, and ProduceIf
// from many goroutines is safe.
func TestProduceIfOrderedAfterProduce(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("mixed", 1)
	c := newClient(t, fc)
	p := newProducer(t, c, client.Linger(time.Hour))
	ctx := ctxT(t)
	for i := range 3 {
		p.Produce(ctx, &client.Record{Topic: "mixed", Value: []byte(strconv.Itoa(i))}, nil)
	}
	// The lingering batch is sent first, so the log ends at 3 when the
	// conditional append is checked.
	if base, err := p.ProduceIf(ctx, "mixed", 0, 3, &client.Record{Value: []byte("3")}); err != nil || base != 3 {
		t.Fatalf("%d %v", base, err)
	}
	var wins atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.ProduceIf(ctx, "mixed", 0, 4, &client.Record{Value: []byte("4")})
			if err == nil {
				wins.Add(1)
			} else if !errors.Is(err, client.ErrOffsetMismatch) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || len(fc.Records("mixed", 0)) != 5 {
		t.Fatalf("%d winners, %d records", wins.Load(), len(fc.Records("mixed", 0)))
	}
}

// With acks=none the producer is not idempotent: batches carry no
// producer id.
func TestAcksNoneIsNotIdempotent(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("fire", 1)
	c := newClient(t, fc)
	p := newProducer(t, c, client.RequiredAcks(client.AcksNone))
	ctx := ctxT(t)
	if err := p.ProduceSync(ctx, &client.Record{Topic: "fire", Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the record", func() bool { return len(fc.Records("fire", 0)) == 1 })
	if r := fc.Records("fire", 0)[0]; r.Producer != batch.NoProducerID || fc.InitProducerCalls() != 0 {
		t.Fatalf("producer id %d, %d InitProducer calls", r.Producer, fc.InitProducerCalls())
	}
	if _, err := c.NewProducer(client.RequiredAcks(client.AcksNone), client.Idempotent(true)); err == nil {
		t.Fatal("an idempotent producer with acks=none was accepted")
	}
}

// InitProducer failures that may pass (no controller yet, a restarting
// broker) are retried; a broker without InitProducer stops the producer
// with an error that says what to do.
func TestInitProducerFailures(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("init", 1)
	var n atomic.Int64
	fc.SetInitProducerHook(func() *skeinv1.ErrorDetail {
		switch n.Add(1) {
		case 1:
			return &skeinv1.ErrorDetail{Code: uint32(codes.Unavailable), Reason: skeinv1.ErrorReason_UNAVAILABLE, Message: "no controller"}
		case 2:
			return &skeinv1.ErrorDetail{Code: uint32(codes.DeadlineExceeded), Reason: skeinv1.ErrorReason_TIMED_OUT, Message: "controller slow"}
		case 3:
			return &skeinv1.ErrorDetail{Code: uint32(codes.Unknown), Message: "something odd"}
		}
		return nil
	})
	c := newClient(t, fc)
	p := newProducer(t, c)
	ctx := ctxT(t)
	if err := p.ProduceSync(ctx, &client.Record{Topic: "init", Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if fc.InitProducerCalls() != 4 {
		t.Fatalf("%d InitProducer calls, want 4", fc.InitProducerCalls())
	}

	fc.SetInitProducerHook(func() *skeinv1.ErrorDetail {
		return &skeinv1.ErrorDetail{Code: uint32(codes.Unimplemented), Message: "unknown method InitProducer"}
	})
	p2 := newProducer(t, c)
	err := p2.ProduceSync(ctx, &client.Record{Topic: "init", Value: []byte("y")})
	if err == nil || !strings.Contains(err.Error(), "Idempotent(false)") {
		t.Fatalf("old broker: %v", err)
	}
	if err := p2.ProduceSync(ctx, &client.Record{Topic: "init", Value: []byte("z")}); err == nil {
		t.Fatal("a producer without an id produced")
	}
	p3 := newProducer(t, c, client.Idempotent(false))
	if err := p3.ProduceSync(ctx, &client.Record{Topic: "init", Value: []byte("w")}); err != nil {
		t.Fatal(err)
	}
}

// A produce error says whether the records may be in the log: a failure
// after an attempt that got no answer matches ErrMaybeAppended; one where
// every attempt got the broker's definite refusal does not (the
// fault-injection checker counts those as failed and flags any that is
// read later).
func TestProduceErrorsSayWhetherAppended(t *testing.T) {
	cases := []struct {
		name  string
		first fakebroker.Action // the first attempt
		then  fakebroker.Action // every later attempt
		maybe bool
	}{
		{"refused every time", fakebroker.Action{Fail: notEnoughReplicas()}, fakebroker.Action{Fail: notEnoughReplicas()}, false},
		{"answer lost then refused", fakebroker.Action{LoseAnswer: true}, fakebroker.Action{Fail: notEnoughReplicas()}, true},
		{"dropped unsent then refused", fakebroker.Action{Drop: true}, fakebroker.Action{Fail: notEnoughReplicas()}, true},
		{"too large", fakebroker.Action{Fail: &skeinv1.ErrorDetail{Code: uint32(codes.InvalidArgument), Reason: skeinv1.ErrorReason_RECORD_TOO_LARGE, Message: "too large", LeaderId: -1}}, fakebroker.Action{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fc := newCluster(t, 1)
			fc.CreateTopic("t", 1)
			var n atomic.Int32
			fc.SetProduceHook(func(_ int32, req *skeinv1.ProduceRequest) fakebroker.Action {
				if n.Add(1) == 1 {
					return tc.first
				}
				return tc.then
			})
			c := newClient(t, fc)
			p := newProducer(t, c, client.DeliveryTimeout(500*time.Millisecond), client.ProduceRetryBackoff(20*time.Millisecond))
			err := p.ProduceSync(ctxT(t), &client.Record{Topic: "t", Value: []byte("v")})
			if err == nil {
				t.Fatal("produce succeeded")
			}
			if got := errors.Is(err, client.ErrMaybeAppended); got != tc.maybe {
				t.Fatalf("errors.Is(err, ErrMaybeAppended) = %v, want %v: %v", got, tc.maybe, err)
			}
		})
	}
}

func notEnoughReplicas() *skeinv1.ErrorDetail {
	return &skeinv1.ErrorDetail{Code: uint32(codes.Unavailable), Reason: skeinv1.ErrorReason_NOT_ENOUGH_REPLICAS, Message: "isr 1 < 2", LeaderId: -1, LeaderEpoch: -1, NextOffset: -1}
}
