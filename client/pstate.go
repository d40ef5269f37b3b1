package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/skeinlog/skein/proto/batch"
)

// pstate is the pure state machine of one partition's produce pipeline:
// the batches in flight, the retry gate, and the idempotent producer's
// numbering of the partition (producer id, epoch, next sequence). It does
// no I/O, starts no goroutine, reads no clock (time is passed in) and takes
// no lock: the partition's loop (partProducer) owns it, asks it what it may
// do next, tells it what happened, and carries out what it returns.
//
// Its rules, each a case of TestPState:
//   - At most maxInFlight batches await answers.
//   - Batches complete in the order they were sent, whatever the order of
//     the answers.
//   - A retriable answer for the oldest unanswered batch stops sending
//     until every answer in flight is in; then successes complete,
//     failures for good fail, and the retriable batches go back, in their
//     original order, to be sent before anything newer after a backoff
//     (in-order retries). Without idempotence, a batch appended after one
//     that goes back is reported (the retry lands after it).
//   - A partition switches streams only with nothing in flight.
//   - OUT_OF_ORDER_SEQUENCE for the oldest unanswered batch means that
//     batch and every later one of its epoch were not appended: the
//     partition must adopt a newer epoch and renumber them from sequence 0
//     (a reset) before sending more, once nothing is in flight, and it
//     retries at once, without a backoff or a metadata refresh.
//   - A batch that fails for good gives its sequences back when nothing
//     after it was numbered, so the next batch follows the last appended
//     one and no reset is needed; otherwise the next batch is refused as
//     out of order and the partition resets.
//   - PRODUCER_FENCED is fatal for the producer: no more retries, and
//     every later failure names the fencing.
//   - A leader still unknown after a metadata refresh fails the head batch
//     for good when the topic or partition is gone; otherwise the
//     partition backs off and waits for a refresh.
type pstate struct {
	name        string // "topic/partition", for messages
	maxInFlight int
	idempotent  bool
	backoff     func(attempt int) time.Duration

	inflight  []*pbatch // sent and not completed, oldest first
	stream    any       // the stream every batch in flight went on
	retrying  bool      // send nothing until the gate reopens
	retryAt   time.Time // end of the backoff
	failures  int       // consecutive retriable failures, for the backoff
	lookupGen uint64    // metadata generation of the last failed leader lookup
	fatal     error     // the producer's fatal error, once it has one

	// The idempotent producer's numbering: the id and epoch the batches
	// carry (-1 until known), the next sequence, and whether the batches
	// not yet answered must be renumbered under a newer epoch.
	pid      int64
	pepoch   int16
	sequence int32
	reset    bool
}

// answer is a broker's answer to one produce request, or the transport
// error that stands for it.
type answer struct {
	base  int64 // offset of the batch's first record; -1 when unknown
	epoch int32 // leader epoch the batch was appended in; -1 when unknown
	err   error
}

// outcome is a batch finished for good, successfully when err is nil.
type outcome struct {
	b    *pbatch
	base int64
	err  error
}

// effects is what an answer makes the loop do.
type effects struct {
	done []outcome // batches finished, in the order they were sent
	// requeue goes back to the head of the queue, in order, to be sent
	// again once the gate reopens, because of cause (from a batch routed
	// with metadata generation causeGen).
	requeue  []*pbatch
	cause    error
	causeGen uint64
	// refresh: learn the leader again before resending (every retriable
	// cause except a sequence gap).
	refresh bool
	// fatal is set when this answer made the producer fail for good.
	fatal error
	// reordered: without idempotence, batches appended after an earlier
	// one that goes back for a retry, which will land after them.
	reordered []outcome
}

func newPState(name string, cfg *producerConfig, backoff func(int) time.Duration) *pstate {
	return &pstate{name: name, maxInFlight: cfg.maxInFlight, idempotent: cfg.idempotent, backoff: backoff, pid: noProducer}
}

// gate says whether the head batch may be sent now.
type gate int8

const (
	gateOpen    gate = iota // send
	gateFull                // maxInFlight batches await answers
	gateDrain               // retrying: wait for every answer in flight
	gateBackoff             // retrying: wait until the time gate returns
	gateResume              // the backoff is over: call resume once metadata is fresh
)

func (s *pstate) gate(now time.Time) (gate, time.Time) {
	switch {
	case s.retrying && len(s.inflight) > 0:
		return gateDrain, time.Time{}
	case s.retrying && now.Before(s.retryAt):
		return gateBackoff, s.retryAt
	case s.retrying:
		return gateResume, time.Time{}
	case len(s.inflight) >= s.maxInFlight:
		return gateFull, time.Time{}
	}
	return gateOpen, time.Time{}
}

// resume ends a retry's wait.
func (s *pstate) resume() { s.retrying = false }

// needsIdentity reports whether the partition must adopt a producer
// identity (its first, or a newer epoch after a sequence gap) before it
// sends, and whether it must first wait for the answers in flight: the
// broker must never see two epochs of one partition mixed.
func (s *pstate) needsIdentity() (need, wait bool) {
	need = s.idempotent && (s.pid < 0 || s.reset)
	return need, need && len(s.inflight) > 0
}

// adopt gives the partition the identity (id, epoch) with sequences from 0,
// and renumbers the sealed batches at the head of queue: they were all
// unappended, since the oldest was refused as out of order and each must
// follow the one before. It reports whether this was a reset. Nothing may
// be in flight.
func (s *pstate) adopt(id int64, epoch int16, queue []*pbatch) bool {
	wasReset := s.reset
	s.pid, s.pepoch, s.sequence, s.reset = id, epoch, 0, false
	for _, b := range queue {
		if b.wire == nil {
			break // sealed batches come first; the rest are numbered at seal
		}
		s.number(b)
		batch.SetProducerFields(batch.View(b.wire), b.producerID, b.producerEpoch, b.baseSequence)
	}
	return wasReset
}

// numbers reports whether batches sealed now get sequences.
func (s *pstate) numbers() bool { return s.idempotent && s.pid >= 0 }

// number gives b (of b.count records) the partition's identity and its
// next sequences.
func (s *pstate) number(b *pbatch) {
	b.producerID, b.producerEpoch, b.baseSequence = s.pid, s.pepoch, s.sequence
	s.sequence = addSequence(s.sequence, b.count)
}

// unnumber gives back the sequences of b, the last batch numbered, which
// will never be sent.
func (s *pstate) unnumber(b *pbatch) { s.sequence = b.baseSequence }

// canUse reports whether a batch may go on stream: only the stream of the
// batches in flight, so that no request overtakes an earlier one that
// failed.
func (s *pstate) canUse(stream any) bool { return len(s.inflight) == 0 || s.stream == stream }

// sent records that b went on stream, routed with metadata generation gen.
func (s *pstate) sent(b *pbatch, stream any, gen uint64) {
	s.stream = stream
	b.sentGen = gen
	b.ans = nil
	b.tries++
	s.inflight = append(s.inflight, b)
}

// leaderFound clears the memory of failed leader lookups.
func (s *pstate) leaderFound() { s.lookupGen = 0 }

// noLeader handles an unknown leader for the head batch, looked up in
// metadata generation gen; permanent when the topic or partition is
// unknown. It reports true when the head batch must fail for good (still
// unknown after a refresh), else starts a retry and returns its end.
func (s *pstate) noLeader(now time.Time, gen uint64, permanent bool) (failHead bool, retryAt time.Time) {
	if permanent && s.lookupGen != 0 && gen > s.lookupGen {
		return true, time.Time{}
	}
	s.lookupGen = gen
	return false, s.startRetry(now)
}

// streamDown handles a leader whose stream cannot be opened: with answers
// in flight it waits for them (wait true); else it starts a retry and
// returns its end.
func (s *pstate) streamDown(now time.Time) (wait bool, retryAt time.Time) {
	if len(s.inflight) > 0 {
		return true, time.Time{}
	}
	return false, s.startRetry(now)
}

func (s *pstate) startRetry(now time.Time) time.Time {
	s.failures++
	s.retrying = true
	s.retryAt = now.Add(s.backoff(s.failures))
	return s.retryAt
}

// answer records a's answer to batch b (which is in flight) and returns
// what is finished, in order, and what goes back for a retry.
func (s *pstate) answer(b *pbatch, a answer, now time.Time) effects {
	b.ans = &a
	var ef effects
	for len(s.inflight) > 0 && !s.retrying {
		h := s.inflight[0]
		if h.ans == nil {
			return ef
		}
		if h.ans.err != nil && s.retriable(h, h.ans.err) {
			s.retrying = true
			break
		}
		s.inflight[0] = nil
		s.inflight = s.inflight[1:]
		if h.ans.err != nil {
			ef.done = append(ef.done, s.fail(h, h.ans.err, &ef))
			continue
		}
		s.failures = 0
		ef.done = append(ef.done, outcome{b: h, base: h.ans.base})
	}
	if !s.retrying {
		return ef
	}
	for _, h := range s.inflight {
		if h.ans == nil {
			return ef
		}
	}
	s.requeue(now, &ef)
	return ef
}

// requeue runs once every batch in flight of a retrying partition has its
// answer: successes complete, failures for good fail, and the retriable
// ones go back in their original order.
func (s *pstate) requeue(now time.Time, ef *effects) {
	for _, b := range s.inflight {
		err := b.ans.err
		switch {
		case err == nil:
			o := outcome{b: b, base: b.ans.base}
			if len(ef.requeue) > 0 && !s.idempotent {
				ef.reordered = append(ef.reordered, o)
			}
			ef.done = append(ef.done, o)
		case s.retriable(b, err):
			if ef.cause == nil {
				ef.cause, ef.causeGen = err, b.sentGen
				// The oldest unanswered batch was not appended, nor
				// anything after it: renumber them under a new epoch.
				s.reset = s.reset || errors.Is(err, ErrOutOfOrderSequence)
			}
			if isTimeout(err) || isTransport(err) {
				b.uncertain = true
			}
			b.lastErr = err
			b.ans = nil
			ef.requeue = append(ef.requeue, b)
		default:
			ef.done = append(ef.done, s.fail(b, err, ef))
		}
	}
	clear(s.inflight)
	s.inflight = s.inflight[:0]
	if len(ef.requeue) == 0 {
		s.retrying = false
		return
	}
	if errors.Is(ef.cause, ErrOutOfOrderSequence) {
		// Not a failure of the leader: an earlier batch failed for good
		// (a conditional append lost its race, say). Renumber and resend
		// at once; each reset lets the oldest batch through or fail for
		// good, so this cannot loop.
		s.retryAt = now
		return
	}
	ef.refresh = true
	s.startRetry(now)
	// A broker that asked for a longer wait (retry_after_ms) gets it.
	s.retryAt = later(s.retryAt, now.Add(retryAfter(ef.cause)))
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// retriable is the producer's classification of a failed answer: may the
// batch be sent again? Timeouts may, with idempotence (a batch that did
// land is answered as a duplicate) and for a conditional append (one that
// did land makes the retry fail with a mismatch); out-of-order sequences
// may, after a reset. Nothing may once the producer hit a fatal error.
func (s *pstate) retriable(b *pbatch, err error) bool {
	switch {
	case s.fatal != nil:
		return false
	case IsRetriable(err):
		return true
	case isTimeout(err):
		return s.idempotent || b.conditional()
	case errors.Is(err, ErrOutOfOrderSequence):
		return b.producerID >= 0
	}
	return false
}

// fail finishes a batch that failed for good.
func (s *pstate) fail(b *pbatch, err error, ef *effects) outcome {
	if errors.Is(err, ErrProducerFenced) && s.fatal == nil {
		s.fatal = fmt.Errorf("producer id %d epoch %d was fenced on %s by a newer epoch of the same id (another instance of this producer?): %w",
			b.producerID, b.producerEpoch, s.name, err)
		ef.fatal = s.fatal
	}
	if s.fatal != nil && !errors.Is(err, ErrProducerFenced) {
		err = fmt.Errorf("%w (this batch's last answer: %v)", s.fatal, err)
	}
	if b.producerID >= 0 && b.producerID == s.pid && b.producerEpoch == s.pepoch && definite(err) &&
		s.sequence == addSequence(b.baseSequence, b.count) {
		// The broker appended nothing and nothing after this batch was
		// numbered: its sequences are free for the next batch.
		s.sequence = b.baseSequence
	}
	if b.notify == nil {
		err = fmt.Errorf("produce to %s: %w", s.name, err)
	}
	return outcome{b: b, base: -1, err: err}
}

// drop empties the pipeline when the producer stops, returning what was in
// flight.
func (s *pstate) drop() []*pbatch {
	q := s.inflight
	s.inflight = nil
	return q
}
