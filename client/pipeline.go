package client

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/proto/skeinv1"
)

// partProducer is one partition's produce pipeline. Produce appends records
// to the open batch (under mu); the loop goroutine (run) owns everything
// else: it seals batches when they are full, their linger has passed or a
// flush asks, sends them in order with at most maxInFlight awaiting answers,
// completes them in order, and retries. Every decision about the batches in
// flight, retries and sequences is the pure state machine's (pstate, which
// is table-tested); the loop does the I/O around it: leader lookups,
// streams, producer ids, metadata refreshes, timers and callbacks.
//
// Ordering: batches leave the queue in order and are sent in order on one
// stream, which the broker applies in order. When an answer is retriable,
// the loop stops sending, waits for every in-flight answer, puts the failed
// batches back at the head of the queue in their original order, refreshes
// metadata, backs off, and resends them before anything newer.
//
// Idempotence: seal gives a batch the partition's producer id, epoch and
// next sequences, once; a retry resends the same bytes, so the leader
// recognises a batch it already appended (a lost answer, a timeout) and
// answers with the original offsets, and timeouts and lost connections are
// retried like any retriable failure. When the oldest unanswered batch is
// refused with OUT_OF_ORDER_SEQUENCE, the leader did not append it, nor
// any later batch of the same epoch (each must follow the one before), so
// the partition adopts a newer epoch, renumbers those batches from 0 and
// resends them in order (KIP-360); see adoptIdentity. A batch that fails
// for good (say a conditional append's offset mismatch) gives its
// sequences back when nothing after it was numbered, so the common case
// needs no reset. PRODUCER_FENCED is fatal for the producer.
type partProducer struct {
	p         *Producer
	topic     string
	partition int32

	mu    sync.Mutex // guards the fields below
	queue []*pbatch  // batches not sent yet (or sent back for retry), oldest first
	open  *pbatch    // the batch Produce appends to, or nil; when set it is the last of queue

	wake    chan struct{}   // cap 1: a batch opened or filled, a flush began
	results chan sendResult // answers of in-flight requests; cap maxInFlight

	// Owned by the loop goroutine.
	st       *pstate         // in flight, retries, sequences: the decisions
	metaWait <-chan struct{} // the metadata refresh a retry waits for, or nil
	timer    *time.Timer
	// Completions are handed to the callback goroutine in batch order, even
	// when a retried batch completes after a later one.
	nextDone uint64                // seq of the next batch to hand over
	held     map[uint64]completion // completions waiting for an earlier batch

	nextSeq uint64 // guarded by mu: seq of the next batch opened
}

// pbatch is one batch of one partition.
type pbatch struct {
	seq     uint64 // order of the batch in its partition
	recs    []pendingRec
	bytes   int64          // buffer bytes held by recs
	b       *batch.Builder // the records, until sealed
	full    bool           // no more records fit: send without lingering
	created time.Time      // when its first record was added

	wire  []byte // the encoded batch, once sealed
	count int    // records in the batch, once sealed
	// Producer id, epoch and base sequence stamped at seal time (and
	// again if the partition resets its sequences); -1, 0, -1 when the
	// producer is not idempotent.
	producerID    int64
	producerEpoch int16
	baseSequence  int32

	// A ProduceIf batch: its expected offset (-1 for every other batch)
	// and where its outcome goes.
	expected int64
	// A ProduceIfKeys batch: its key expectations.
	keyExps []KeyExpectation
	notify  chan<- condResult
	// uncertain: an attempt got no definite answer (timeout, lost
	// connection), so it may have been appended.
	uncertain bool

	tries   int
	lastErr error   // the last retriable error, for the delivery timeout's message
	sentGen uint64  // metadata generation the last send was routed with
	ans     *answer // the answer to the last send, once it came
}

// sendResult is the answer to one produce request: a response (which may
// carry an error) or a transport error.
type sendResult struct {
	b    *pbatch
	resp *skeinv1.ProduceResponse
	err  error
}

// answer converts the result for the state machine.
func (r *sendResult) answer() answer {
	if r.err != nil {
		return answer{base: -1, epoch: -1, err: r.err}
	}
	if d := r.resp.GetError(); d != nil {
		return answer{base: -1, epoch: -1, err: errorFromDetail(d)}
	}
	if r.resp == nil { // acks=none
		return answer{base: -1, epoch: -1}
	}
	return answer{base: r.resp.GetBaseOffset(), epoch: r.resp.GetLeaderEpoch()}
}

// condResult is the outcome of a ProduceIf batch.
type condResult struct {
	base      int64
	epoch     int32
	err       error
	uncertain bool
}

func newPartProducer(p *Producer, topic string, partition int32) *partProducer {
	return &partProducer{
		p:         p,
		topic:     topic,
		partition: partition,
		wake:      make(chan struct{}, 1),
		results:   make(chan sendResult, p.cfg.maxInFlight),
		st: newPState(fmt.Sprintf("%s/%d", topic, partition), &p.cfg, func(n int) time.Duration {
			return backoff(p.cfg.retryBackoff, n)
		}),
	}
}

func (pp *partProducer) signal() {
	select {
	case pp.wake <- struct{}{}:
	default:
	}
}

// add appends a record to the open batch, opening a new one when it would
// not fit. br is r converted; enc its encoded size bound.
func (pp *partProducer) add(pr pendingRec, br *batch.Record, enc int, size int64) {
	pp.mu.Lock()
	wake := false
	if pp.open != nil && pp.open.b.Size()+enc > pp.p.cfg.batchMaxBytes {
		pp.open.full = true
		pp.open = nil
		wake = true
	}
	if pp.open == nil {
		b := &pbatch{
			seq:           pp.nextSeq,
			b:             pp.p.builders.Get().(*batch.Builder),
			created:       time.Now(),
			producerID:    batch.NoProducerID,
			baseSequence:  batch.NoSequence,
			producerEpoch: 0,
			expected:      -1,
		}
		pp.nextSeq++
		pp.queue = append(pp.queue, b)
		pp.open = b
		wake = true
	}
	b := pp.open
	b.b.Add(br)
	b.recs = append(b.recs, pr)
	b.bytes += size
	pp.mu.Unlock()
	if wake {
		pp.signal()
	}
}

// addConditional queues a ProduceIf batch: alone in its batch, after
// every record produced to the partition before it, and sent without
// lingering (the open batch is closed so that it goes too).
func (pp *partProducer) addConditional(b *pbatch) {
	pp.mu.Lock()
	if pp.open != nil {
		pp.open.full = true
		pp.open = nil
	}
	b.seq = pp.nextSeq
	pp.nextSeq++
	pp.queue = append(pp.queue, b)
	pp.mu.Unlock()
	pp.signal()
}

// run is the partition's loop.
func (pp *partProducer) run() {
	defer pp.p.loops.Done()
	pp.timer = time.NewTimer(time.Hour)
	defer pp.timer.Stop()
	for {
		next, wait := pp.step(time.Now())
		if next.IsZero() {
			pp.timer.Stop()
		} else {
			pp.timer.Reset(time.Until(next))
		}
		select {
		case <-pp.wake:
		case r := <-pp.results:
			pp.onResult(r)
		case <-pp.timer.C:
		case <-wait:
		case <-pp.p.quit:
			pp.abort()
			return
		}
	}
}

// wakeAt collects the earliest time the loop must wake.
type wakeAt struct{ t time.Time }

func (w *wakeAt) at(t time.Time) {
	if !t.IsZero() && (w.t.IsZero() || t.Before(w.t)) {
		w.t = t
	}
}

// step does all the work possible now: expires old batches, ends a finished
// backoff, seals and sends ready batches, as far as the state machine's gate
// lets it. It returns when the loop must be woken next (zero: only by an
// event) and a metadata refresh or producer id to wait for.
func (pp *partProducer) step(now time.Time) (time.Time, <-chan struct{}) {
	var w wakeAt
	if err := pp.p.fatalErr(); err != nil {
		// Answers in flight still complete their batches.
		pp.st.fatal = err
		pp.failQueued(err)
		return w.t, nil
	}
	if exp, ok := pp.expire(now); ok {
		w.at(exp)
	}
	for {
		g, until := pp.st.gate(now)
		switch g {
		case gateFull, gateDrain:
			return w.t, nil
		case gateBackoff:
			w.at(until)
			return w.t, nil
		case gateResume:
			if pp.metaWait != nil {
				select {
				case <-pp.metaWait:
				default:
					return w.t, pp.metaWait
				}
			}
			pp.metaWait = nil
			pp.st.resume()
		}
		b, lingerUntil := pp.ready(now)
		if b == nil {
			w.at(lingerUntil)
			return w.t, nil
		}
		if wait, stop := pp.sendHead(now, b, &w); stop {
			return w.t, wait
		}
	}
}

// sendHead sends the head batch b if it can go now: with the partition's
// producer identity, to the leader, on the stream of the batches in flight.
// It reports stop when the loop must wait (for wait, a time put in w, or an
// event) rather than try the next batch.
func (pp *partProducer) sendHead(now time.Time, b *pbatch, w *wakeAt) (wait <-chan struct{}, stop bool) {
	if need, drain := pp.st.needsIdentity(); drain {
		return nil, true // a new epoch only once everything sent is answered
	} else if need {
		if wait, err := pp.adoptIdentity(); err != nil || wait != nil {
			if err != nil {
				pp.failQueued(err)
			} else if werr := pp.p.waitingErr(); werr != nil {
				pp.noteWaiting(werr)
			}
			return wait, true
		}
	}
	l, lerr := pp.p.c.meta.leader(pp.topic, pp.partition)
	if lerr != nil {
		failHead, retryAt := pp.st.noLeader(now, l.gen, lerr.permanent)
		if failHead {
			// Still unknown after a refresh: the topic or partition is
			// gone. Fail the head batch; the others follow in turn.
			pp.pop(b)
			pp.complete(b, -1, lerr.err)
			return nil, false
		}
		pp.noteWaiting(lerr.err)
		pp.metaWait = pp.p.c.refreshAsync(l.gen)
		w.at(retryAt)
		return nil, true
	}
	pp.st.leaderFound()
	s := pp.p.sink(l.addr)
	if until := s.throttled(); now.Before(until) {
		// Over a quota on that broker: wait out the throttle time it
		// gave instead of queueing behind a stream it does not read.
		w.at(until)
		return nil, true
	}
	ps, err := s.stream()
	if err != nil {
		pp.streamDown(now, l, err, w)
		return nil, true
	}
	if !pp.st.canUse(ps) {
		return nil, true // switch streams only when nothing is in flight
	}
	pp.pop(b)
	if err := pp.seal(b); err != nil {
		pp.complete(b, -1, fmt.Errorf("encode batch for %s/%d: %w", pp.topic, pp.partition, err))
		return nil, false
	}
	pp.send(s, ps, b, l)
	return nil, false
}

// streamDown handles a leader whose stream cannot be opened.
func (pp *partProducer) streamDown(now time.Time, l leaderInfo, err error, w *wakeAt) {
	wait, retryAt := pp.st.streamDown(now)
	if wait {
		return // the answers in flight come first
	}
	pp.noteWaiting(err)
	if !isTransport(err) && !errors.Is(err, ErrClosed) {
		pp.p.log.Warn("skein: cannot open produce stream", "addr", l.addr, "err", err)
	}
	// The leader may be gone: learn who leads now before retrying.
	pp.metaWait = pp.p.c.refreshAsync(l.gen)
	w.at(retryAt)
}

// noteWaiting records why the queued batches are waiting, for their
// delivery timeout message.
func (pp *partProducer) noteWaiting(err error) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	for _, b := range pp.queue {
		b.lastErr = err
	}
}

// ready returns the head batch if it may be sent now, else when its linger
// ends (zero if there is nothing to send).
func (pp *partProducer) ready(now time.Time) (*pbatch, time.Time) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if len(pp.queue) == 0 {
		return nil, time.Time{}
	}
	b := pp.queue[0]
	if b != pp.open || b.full || pp.p.flushing.Load() > 0 {
		return b, time.Time{}
	}
	until := b.created.Add(pp.p.cfg.linger)
	if !now.Before(until) {
		return b, time.Time{}
	}
	return nil, until
}

// pop removes the head batch b from the queue, closing it to new records.
func (pp *partProducer) pop(b *pbatch) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.open == b {
		pp.open = nil
	}
	pp.queue[0] = nil
	pp.queue = pp.queue[1:]
}

// expire fails queued batches older than the delivery timeout, oldest first,
// and returns when the next one expires.
func (pp *partProducer) expire(now time.Time) (time.Time, bool) {
	dt := pp.p.cfg.deliveryTimeout
	var dead []*pbatch
	pp.mu.Lock()
	for len(pp.queue) > 0 && !now.Before(pp.queue[0].created.Add(dt)) {
		b := pp.queue[0]
		if pp.open == b {
			pp.open = nil
		}
		pp.queue[0] = nil
		pp.queue = pp.queue[1:]
		dead = append(dead, b)
	}
	var next time.Time
	ok := len(pp.queue) > 0
	if ok {
		next = pp.queue[0].created.Add(dt)
	}
	pp.mu.Unlock()
	for _, b := range dead {
		err := fmt.Errorf("%w: %d records for %s/%d not delivered within %v", ErrDeliveryTimeout, len(b.recs), pp.topic, pp.partition, dt)
		if b.lastErr != nil {
			err = fmt.Errorf("%w (last error: %w)", err, b.lastErr)
		}
		pp.complete(b, -1, err)
	}
	return next, ok
}

// seal encodes a batch, once, numbering it when the producer is
// idempotent: sequences are assigned in the order batches are sent.
func (pp *partProducer) seal(b *pbatch) error {
	if b.wire != nil {
		return nil
	}
	b.count = b.b.Len()
	numbered := pp.st.numbers()
	if numbered {
		pp.st.number(b)
	}
	b.b.SetProducer(b.producerID, b.producerEpoch, b.baseSequence)
	w, err := b.b.Build(make([]byte, 0, b.b.Size()))
	b.b.Reset()
	pp.p.builders.Put(b.b)
	b.b = nil
	if err != nil {
		if numbered {
			pp.st.unnumber(b) // never sent: the numbers are free
		}
		return err
	}
	b.wire = w
	return nil
}

// addSequence is seq advanced by n records; sequences wrap from MaxInt32
// to 0, as the broker's do.
func addSequence(seq int32, n int) int32 {
	return int32((int64(seq) + int64(n)) % (math.MaxInt32 + 1))
}

// adoptIdentity gives the partition the producer's id and epoch (the first
// time) or a newer pair (after a sequence gap), and has the state machine
// renumber the batches sealed under the old pair. It returns a channel to
// wait on while the producer id is being fetched. Loop only, with nothing
// in flight.
func (pp *partProducer) adoptIdentity() (<-chan struct{}, error) {
	var (
		id    int64
		epoch int16
		wait  <-chan struct{}
		err   error
	)
	if pp.st.pid < 0 {
		id, epoch, wait, err = pp.p.identity()
	} else {
		id, epoch, wait, err = pp.p.bumpFrom(pp.st.pid, pp.st.pepoch)
	}
	if err != nil || wait != nil {
		return wait, err
	}
	old := pp.st.pepoch
	pp.mu.Lock()
	reset := pp.st.adopt(id, epoch, pp.queue)
	pp.mu.Unlock()
	if reset {
		pp.p.log.Debug("skein: resetting sequences after a gap", "topic", pp.topic, "partition", pp.partition,
			"producer_id", id, "epoch", epoch, "old_epoch", old)
	}
	return nil, nil
}

// failQueued fails every batch not sent (or sent back for a retry).
func (pp *partProducer) failQueued(err error) {
	pp.mu.Lock()
	q := pp.queue
	pp.queue, pp.open = nil, nil
	pp.mu.Unlock()
	for _, b := range q {
		pp.complete(b, -1, err)
	}
}

// send puts a sealed batch on the leader's stream.
func (pp *partProducer) send(s *sink, ps *pstream, b *pbatch, l leaderInfo) {
	cfg := &pp.p.cfg
	acks := cfg.acks
	if b.conditional() && acks == AcksNone {
		acks = AcksLeader // ProduceIf waits for its answer
	}
	req := &skeinv1.ProduceRequest{
		Topic:       pp.topic,
		Partition:   pp.partition,
		Acks:        acks.proto(),
		TimeoutMs:   int32(min(cfg.requestTimeout.Milliseconds(), 1<<31-1)),
		LeaderEpoch: l.epoch,
		Batch:       b.wire,
	}
	if b.expected >= 0 {
		req.ExpectedOffset = &b.expected
	}
	for _, e := range b.keyExps {
		req.KeyExpectations = append(req.KeyExpectations, &skeinv1.KeyOffset{Key: e.Key, Offset: e.Offset})
	}
	pp.st.sent(b, ps, l.gen)
	results := pp.results
	s.send(ps, req, acks == AcksNone, func(resp *skeinv1.ProduceResponse, err error) {
		results <- sendResult{b: b, resp: resp, err: err}
	})
}

// definite reports whether err is the broker's word that it appended
// nothing: an answer with a reason, other than a timeout.
func definite(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	return e.reason != skeinv1.ErrorReason_ERROR_REASON_UNSPECIFIED && e.reason != skeinv1.ErrorReason_TIMED_OUT
}

// onResult hands an answer to the state machine and carries out what it
// decides: outcomes to the callbacks, retriable batches back to the head of
// the queue, a metadata refresh, a fatal error.
func (pp *partProducer) onResult(r sendResult) {
	pp.st.fatal = pp.p.fatalErr()
	ef := pp.st.answer(r.b, r.answer(), time.Now())
	if ef.fatal != nil {
		pp.p.setFatal(ef.fatal)
	}
	for _, o := range ef.reordered {
		pp.p.log.Warn("skein: a batch was appended after an earlier one of its partition failed; the retry will land after it",
			"topic", pp.topic, "partition", pp.partition, "offset", o.base)
	}
	for _, o := range ef.done {
		pp.complete(o.b, o.base, o.err)
	}
	if len(ef.requeue) == 0 {
		return
	}
	pp.metaWait = nil
	if ef.refresh && !pp.p.c.meta.applyHint(pp.topic, pp.partition, ef.cause) {
		pp.metaWait = pp.p.c.refreshAsync(ef.causeGen)
	}
	pp.p.log.Debug("skein: retrying batches", "topic", pp.topic, "partition", pp.partition,
		"batches", len(ef.requeue), "attempt", pp.st.failures, "err", ef.cause)
	pp.mu.Lock()
	pp.queue = append(ef.requeue, pp.queue...)
	pp.mu.Unlock()
}

// complete hands a batch's outcome to the callback goroutine.
func (pp *partProducer) complete(b *pbatch, base int64, err error) {
	if errors.Is(err, ErrUnknownTopic) || errors.Is(err, ErrUnknownPartition) {
		// The topic was deleted or shrank: let later records learn it.
		pp.p.c.refreshAsync(b.sentGen)
	}
	if b.b != nil {
		b.b.Reset()
		pp.p.builders.Put(b.b)
		b.b = nil
	}
	b.wire = nil
	if err != nil && b.tries > 0 && (b.uncertain || !definite(err)) && !errors.Is(err, ErrMaybeAppended) {
		// Some attempt got no definite answer: the records may be in the
		// log. Only the other failures are the broker's word that nothing
		// was appended.
		err = fmt.Errorf("%w (%w: an attempt got no definite answer)", err, ErrMaybeAppended)
	}
	epoch := int32(-1)
	if err == nil && b.ans != nil {
		epoch = b.ans.epoch
	}
	c := completion{recs: b.recs, base: base, epoch: epoch, partition: pp.partition, err: err, bytes: b.bytes}
	b.recs = nil
	if b.notify != nil {
		b.notify <- condResult{base: base, epoch: epoch, err: err, uncertain: b.uncertain}
		b.notify = nil
		c.extra = 1
	}
	if b.seq != pp.nextDone {
		if pp.held == nil {
			pp.held = make(map[uint64]completion)
		}
		pp.held[b.seq] = c
		return
	}
	pp.p.cbs.push(c)
	pp.nextDone++
	for {
		c, ok := pp.held[pp.nextDone]
		if !ok {
			return
		}
		delete(pp.held, pp.nextDone)
		pp.p.cbs.push(c)
		pp.nextDone++
	}
	// The loops stop before the callback queue closes, so these pushes
	// always succeed.
}

// abort fails everything left when the producer stops.
func (pp *partProducer) abort() {
	for _, b := range pp.st.drop() {
		pp.complete(b, -1, ErrClosed)
	}
	pp.mu.Lock()
	q := pp.queue
	pp.queue, pp.open = nil, nil
	pp.mu.Unlock()
	for _, b := range q {
		pp.complete(b, -1, ErrClosed)
	}
}

// conditional reports whether b is a ProduceIf or ProduceIfKeys batch.
func (b *pbatch) conditional() bool { return b.expected >= 0 || len(b.keyExps) > 0 }
