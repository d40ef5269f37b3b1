package client

import (
	"errors"
	"fmt"
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
// Idempotence seam (not enabled yet): seal is where a batch gets its
// producer id, epoch and base sequence (today -1, 0, -1), and classify is
// where OUT_OF_ORDER_SEQUENCE and duplicate answers would be told apart.
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

	wire []byte // the encoded batch, once sealed
	// Producer id, epoch and base sequence stamped at seal time; -1, 0, -1
	// until the idempotent producer (issue 4) assigns them.
	producerID    int64
	producerEpoch int16
	baseSequence  int32

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

func newPartProducer(p *Producer, topic string, partition int32) *partProducer {
	return &partProducer{
		p:         p,
		topic:     topic,
		partition: partition,
		wake:      make(chan struct{}, 1),
		results:   make(chan sendResult, p.cfg.maxInFlight),
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

// run is the partition's loop.
func (pp *partProducer) run() {
	defer pp.p.loops.Done()
	pp.timer = time.NewTimer(time.Hour)
	defer pp.timer.Stop()
	for {
		next, metaWait := pp.step(time.Now())
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
		case <-metaWait:
		case <-pp.p.quit:
			pp.abort()
			return
		}
	}
}

// step does all the work possible now: expires old batches, ends a finished
// backoff, seals and sends ready batches. It returns when the loop must be
// woken next (zero: only by an event) and a metadata refresh to wait for.
func (pp *partProducer) step(now time.Time) (next time.Time, metaWait <-chan struct{}) {
	at := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
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

// seal encodes a batch, once. This is where the idempotent producer will
// assign the batch's sequence.
func (pp *partProducer) seal(b *pbatch) error {
	if b.wire != nil {
		return nil
	}
	b.b.SetProducer(b.producerID, b.producerEpoch, b.baseSequence)
	w, err := b.b.Build(make([]byte, 0, b.b.Size()))
	b.b.Reset()
	pp.p.builders.Put(b.b)
	b.b = nil
	if err != nil {
		return err
	}
	b.wire = w
	return nil
}

// send puts a sealed batch on the leader's stream.
func (pp *partProducer) send(s *sink, ps *pstream, b *pbatch, l leaderInfo) {
	cfg := &pp.p.cfg
	req := &skeinv1.ProduceRequest{
		Topic:       pp.topic,
		Partition:   pp.partition,
		Acks:        cfg.acks.proto(),
		TimeoutMs:   int32(min(cfg.requestTimeout.Milliseconds(), 1<<31-1)),
		LeaderEpoch: l.epoch,
		Batch:       b.wire,
	}
	b.sentGen = l.gen
	b.res = nil
	b.tries++
	pp.inflight = append(pp.inflight, b)
	results := pp.results
	s.send(ps, req, cfg.acks == AcksNone, func(resp *skeinv1.ProduceResponse, err error) {
		results <- sendResult{b: b, resp: resp, err: err}
	})
}

// retriable is the producer's classification of a failed answer.
func (pp *partProducer) retriable(err error) bool {
	return IsRetriable(err) // an idempotent producer will add isTimeout(err)
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
		if err != nil && pp.retriable(err) {
			pp.retrying = true
			break
		}
		pp.inflight[0] = nil
		pp.inflight = pp.inflight[1:]
		if err != nil {
			pp.complete(b, -1, fmt.Errorf("produce to %s/%d: %w", pp.topic, pp.partition, err))
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
			if len(back) > 0 {
				pp.p.log.Warn("skein: a batch was appended after an earlier one of its partition failed; the retry will land after it",
					"topic", pp.topic, "partition", pp.partition, "offset", b.res.base())
			}
			pp.complete(b, b.res.base(), nil)
		case pp.retriable(err):
			if cause == nil {
				cause, gen = err, b.sentGen
			}
			b.lastErr = err
			b.res = nil
			back = append(back, b)
		default:
			pp.complete(b, -1, fmt.Errorf("produce to %s/%d: %w", pp.topic, pp.partition, err))
		}
	}
	clear(pp.inflight)
	pp.inflight = pp.inflight[:0]
	if len(back) == 0 {
		pp.retrying = false
		return
	}
	pp.failures++
	pp.retryAt = now.Add(backoff(pp.p.cfg.retryBackoff, pp.failures))
	if pp.p.c.meta.applyHint(pp.topic, pp.partition, cause) {
		pp.metaWait = nil
	} else {
		pp.metaWait = pp.p.c.refreshAsync(gen)
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
	c := completion{recs: b.recs, base: base, partition: pp.partition, err: err, bytes: b.bytes}
	b.recs = nil
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
