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
// completes them in order, and retries.
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
	inflight []*pbatch
	retrying bool            // a retriable failure: send nothing until retryAt and metaWait
	retryAt  time.Time       // end of the backoff
	metaWait <-chan struct{} // the metadata refresh to wait for, or nil
	failures int             // consecutive retriable failures, for the backoff
	// stream carries every request in flight: a partition switches streams
	// (a new connection, another leader) only once nothing is in flight,
	// so that a request can never overtake an earlier one that failed.
	stream    *pstream
	lookupGen uint64 // metadata generation of the last failed leader lookup
	timer     *time.Timer
	// Completions are handed to the callback goroutine in batch order, even
	// when a retried batch completes after a later one.
	nextDone uint64                // seq of the next batch to hand over
	held     map[uint64]completion // completions waiting for an earlier batch
	// The idempotent producer's numbering of this partition: the
	// producer id and epoch its batches carry (-1 until known), the
	// sequence of the next batch sealed, and whether the batches not yet
	// answered must be renumbered under a newer epoch before more is sent.
	pid      int64
	pepoch   int16
	sequence int32
	reset    bool

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
	notify   chan<- condResult
	// uncertain: an attempt got no definite answer (timeout, lost
	// connection), so it may have been appended.
	uncertain bool

	tries   int
	lastErr error       // the last retriable error, for the delivery timeout's message
	sentGen uint64      // metadata generation the last send was routed with
	res     *sendResult // the answer, once it came
}

// sendResult is the answer to one produce request: a response (which may
// carry an error) or a transport error.
type sendResult struct {
	b    *pbatch
	resp *skeinv1.ProduceResponse
	err  error
}

// base is the offset of the batch's first record, -1 when unknown (acks=none).
func (r *sendResult) base() int64 {
	if r.resp == nil {
		return -1
	}
	return r.resp.GetBaseOffset()
}

func (r *sendResult) error() error {
	if r.err != nil {
		return r.err
	}
	if d := r.resp.GetError(); d != nil {
		return errorFromDetail(d)
	}
	return nil
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
		pid:       noProducer,
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

// step does all the work possible now: expires old batches, ends a finished
// backoff, seals and sends ready batches. It returns when the loop must be
// woken next (zero: only by an event) and a metadata refresh or producer
// id to wait for.
func (pp *partProducer) step(now time.Time) (next time.Time, wait <-chan struct{}) {
	at := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if err := pp.p.fatalErr(); err != nil {
		// Answers in flight still complete their batches.
		pp.failQueued(err)
		return next, nil
	}
	if exp, ok := pp.expire(now); ok {
		at(exp)
	}
	if pp.retrying {
		if len(pp.inflight) > 0 {
			return next, nil
		}
		if now.Before(pp.retryAt) {
			at(pp.retryAt)
			return next, nil
		}
		if pp.metaWait != nil {
			select {
			case <-pp.metaWait:
				pp.metaWait = nil
			default:
				return next, pp.metaWait
			}
		}
		pp.retrying = false
	}
	for len(pp.inflight) < pp.p.cfg.maxInFlight {
		b, lingerUntil := pp.ready(now)
		if b == nil {
			if !lingerUntil.IsZero() {
				at(lingerUntil)
			}
			break
		}
		if pp.p.cfg.idempotent && (pp.pid < 0 || pp.reset) {
			if len(pp.inflight) > 0 {
				break // a new epoch only once everything sent is answered
			}
			w, err := pp.adoptIdentity()
			if err != nil {
				pp.failQueued(err)
				return next, nil
			}
			if w != nil {
				if werr := pp.p.waitingErr(); werr != nil {
					pp.noteWaiting(werr)
				}
				return next, w
			}
		}
		l, lerr := pp.p.c.meta.leader(pp.topic, pp.partition)
		if lerr != nil {
			if lerr.permanent && pp.lookupGen != 0 && l.gen > pp.lookupGen {
				// Still unknown after a refresh: the topic or partition is
				// gone. Fail the head batch; the others follow in turn.
				pp.pop(b)
				pp.complete(b, -1, lerr.err)
				continue
			}
			pp.lookupGen = l.gen
			pp.noteWaiting(lerr.err)
			pp.failures++
			pp.retrying = true
			pp.retryAt = now.Add(backoff(pp.p.cfg.retryBackoff, pp.failures))
			pp.metaWait = pp.p.c.refreshAsync(l.gen)
			at(pp.retryAt)
			return next, nil
		}
		pp.lookupGen = 0
		s := pp.p.sink(l.addr)
		ps, err := s.stream()
		if err != nil {
			if len(pp.inflight) > 0 {
				break // their answers come first
			}
			pp.noteWaiting(err)
			pp.failures++
			pp.retrying = true
			pp.retryAt = now.Add(backoff(pp.p.cfg.retryBackoff, pp.failures))
			if !isTransport(err) && !errors.Is(err, ErrClosed) {
				pp.p.log.Warn("skein: cannot open produce stream", "addr", l.addr, "err", err)
			}
			// The leader may be gone: learn who leads now before retrying.
			pp.metaWait = pp.p.c.refreshAsync(l.gen)
			at(pp.retryAt)
			return next, nil
		}
		if len(pp.inflight) > 0 && ps != pp.stream {
			break // switch streams only when nothing is in flight
		}
		pp.pop(b)
		if err := pp.seal(b); err != nil {
			pp.complete(b, -1, fmt.Errorf("encode batch for %s/%d: %w", pp.topic, pp.partition, err))
			continue
		}
		pp.stream = ps
		pp.send(s, ps, b, l)
	}
	return next, nil
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
	numbered := pp.p.cfg.idempotent && pp.pid >= 0
	if numbered {
		pp.number(b)
	}
	b.b.SetProducer(b.producerID, b.producerEpoch, b.baseSequence)
	w, err := b.b.Build(make([]byte, 0, b.b.Size()))
	b.b.Reset()
	pp.p.builders.Put(b.b)
	b.b = nil
	if err != nil {
		if numbered {
			pp.sequence = b.baseSequence // never sent: the numbers are free
		}
		return err
	}
	b.wire = w
	return nil
}

// number gives b the partition's producer id and epoch and its next
// sequences. Loop only.
func (pp *partProducer) number(b *pbatch) {
	b.producerID, b.producerEpoch, b.baseSequence = pp.pid, pp.pepoch, pp.sequence
	pp.sequence = addSequence(pp.sequence, b.count)
}

// addSequence is seq advanced by n records; sequences wrap from MaxInt32
// to 0, as the broker's do.
func addSequence(seq int32, n int) int32 {
	return int32((int64(seq) + int64(n)) % (math.MaxInt32 + 1))
}

// adoptIdentity gives the partition the producer's id and epoch (the first
// time) or a newer pair (after a sequence gap), with sequences from 0, and
// renumbers the batches that were sealed under the old pair: they are all
// unappended, since the oldest of them was refused as out of order and
// each must follow the one before. It returns a channel to wait on while
// the producer id is being fetched. Loop only, with nothing in flight.
func (pp *partProducer) adoptIdentity() (<-chan struct{}, error) {
	var (
		id    int64
		epoch int16
		wait  <-chan struct{}
		err   error
	)
	if pp.pid < 0 {
		id, epoch, wait, err = pp.p.identity()
	} else {
		id, epoch, wait, err = pp.p.bumpFrom(pp.pid, pp.pepoch)
	}
	if err != nil || wait != nil {
		return wait, err
	}
	if pp.reset {
		pp.p.log.Debug("skein: resetting sequences after a gap", "topic", pp.topic, "partition", pp.partition,
			"producer_id", id, "epoch", epoch, "old_epoch", pp.pepoch)
	}
	pp.pid, pp.pepoch, pp.sequence, pp.reset = id, epoch, 0, false
	pp.mu.Lock()
	defer pp.mu.Unlock()
	for _, b := range pp.queue {
		if b.wire == nil {
			break // sealed batches come first; the rest are numbered at seal
		}
		pp.number(b)
		batch.SetProducerFields(batch.View(b.wire), b.producerID, b.producerEpoch, b.baseSequence)
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
	if b.expected >= 0 && acks == AcksNone {
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
	b.sentGen = l.gen
	b.res = nil
	b.tries++
	pp.inflight = append(pp.inflight, b)
	results := pp.results
	s.send(ps, req, acks == AcksNone, func(resp *skeinv1.ProduceResponse, err error) {
		results <- sendResult{b: b, resp: resp, err: err}
	})
}

// retriable is the producer's classification of a failed answer: may the
// batch be sent again? Timeouts may, with idempotence (a batch that did
// land is answered as a duplicate) and for a conditional append (one that
// did land makes the retry fail with a mismatch); out-of-order sequences
// may, after a reset (see adoptIdentity). Nothing may once the producer
// hit a fatal error.
func (pp *partProducer) retriable(b *pbatch, err error) bool {
	switch {
	case pp.p.fatalErr() != nil:
		return false
	case IsRetriable(err):
		return true
	case isTimeout(err):
		return pp.p.cfg.idempotent || b.expected >= 0
	case errors.Is(err, ErrOutOfOrderSequence):
		return b.producerID >= 0
	}
	return false
}

// fail completes a batch that failed for good.
func (pp *partProducer) fail(b *pbatch, err error) {
	if errors.Is(err, ErrProducerFenced) {
		pp.p.setFatal(fmt.Errorf("producer id %d epoch %d was fenced on %s/%d by a newer epoch of the same id (another instance of this producer?): %w",
			b.producerID, b.producerEpoch, pp.topic, pp.partition, err))
	}
	if fatal := pp.p.fatalErr(); fatal != nil && !errors.Is(err, ErrProducerFenced) {
		err = fmt.Errorf("%w (this batch's last answer: %v)", fatal, err)
	}
	if b.producerID >= 0 && b.producerID == pp.pid && b.producerEpoch == pp.pepoch && definite(err) &&
		pp.sequence == addSequence(b.baseSequence, b.count) {
		// The broker appended nothing and nothing after this batch was
		// numbered: its sequences are free for the next batch.
		pp.sequence = b.baseSequence
	}
	if b.notify == nil {
		err = fmt.Errorf("produce to %s/%d: %w", pp.topic, pp.partition, err)
	}
	pp.complete(b, -1, err)
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

// onResult records an answer and completes what can be completed in order.
func (pp *partProducer) onResult(r sendResult) {
	r.b.res = &r
	for len(pp.inflight) > 0 {
		b := pp.inflight[0]
		if b.res == nil {
			return
		}
		if pp.retrying {
			break
		}
		err := b.res.error()
		if err != nil && pp.retriable(b, err) {
			pp.retrying = true
			break
		}
		pp.inflight[0] = nil
		pp.inflight = pp.inflight[1:]
		if err != nil {
			pp.fail(b, err)
			continue
		}
		pp.failures = 0
		pp.complete(b, b.res.base(), nil)
	}
	if pp.retrying {
		for _, b := range pp.inflight {
			if b.res == nil {
				return
			}
		}
		pp.requeue(time.Now())
	}
}

// requeue runs once every in-flight request of a retrying partition has its
// answer: successes complete, non-retriable failures fail, and the retriable
// ones go back to the head of the queue in their original order.
func (pp *partProducer) requeue(now time.Time) {
	var back []*pbatch
	var cause error
	var gen uint64
	for _, b := range pp.inflight {
		err := b.res.error()
		switch {
		case err == nil:
			if len(back) > 0 && !pp.p.cfg.idempotent {
				pp.p.log.Warn("skein: a batch was appended after an earlier one of its partition failed; the retry will land after it",
					"topic", pp.topic, "partition", pp.partition, "offset", b.res.base())
			}
			pp.complete(b, b.res.base(), nil)
		case pp.retriable(b, err):
			if cause == nil {
				cause, gen = err, b.sentGen
				// The oldest unanswered batch was not appended, nor
				// anything after it: renumber them under a new epoch.
				pp.reset = pp.reset || errors.Is(err, ErrOutOfOrderSequence)
			}
			if isTimeout(err) || isTransport(err) {
				b.uncertain = true
			}
			b.lastErr = err
			b.res = nil
			back = append(back, b)
		default:
			pp.fail(b, err)
		}
	}
	clear(pp.inflight)
	pp.inflight = pp.inflight[:0]
	if len(back) == 0 {
		pp.retrying = false
		return
	}
	switch {
	case errors.Is(cause, ErrOutOfOrderSequence):
		// Not a failure of the leader: an earlier batch failed for good
		// (a conditional append lost its race, say). Renumber and resend
		// at once; each reset lets the oldest batch through or fail for
		// good, so this cannot loop.
		pp.retryAt, pp.metaWait = now, nil
	default:
		pp.failures++
		pp.retryAt = now.Add(backoff(pp.p.cfg.retryBackoff, pp.failures))
		if pp.p.c.meta.applyHint(pp.topic, pp.partition, cause) {
			pp.metaWait = nil
		} else {
			pp.metaWait = pp.p.c.refreshAsync(gen)
		}
	}
	pp.p.log.Debug("skein: retrying batches", "topic", pp.topic, "partition", pp.partition,
		"batches", len(back), "attempt", pp.failures, "err", cause)
	pp.mu.Lock()
	pp.queue = append(back, pp.queue...)
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
	if err == nil && b.res != nil && b.res.resp != nil {
		epoch = b.res.resp.GetLeaderEpoch()
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
	for _, b := range pp.inflight {
		pp.complete(b, -1, ErrClosed)
	}
	pp.inflight = nil
	pp.mu.Lock()
	q := pp.queue
	pp.queue, pp.open = nil, nil
	pp.mu.Unlock()
	for _, b := range q {
		pp.complete(b, -1, ErrClosed)
	}
}
