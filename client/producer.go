package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/proto/skeinv1"
)

// Producer is an asynchronous, batching producer. Records are grouped per
// partition into batches bounded by Linger and BatchMaxBytes; each partition
// keeps up to MaxInFlightPerPartition requests in flight on the produce
// stream of its leader's connection, and retries retriable failures without
// reordering the partition's batches. It is idempotent by default (see
// Idempotent): a retry never writes a record twice.
//
// Goroutines: one loop per partition produced to (it owns that partition's
// batches from the moment they are sent), one receiver per broker stream,
// and one goroutine that runs callbacks. Callbacks therefore run serially,
// and for records of one partition in the order they were produced; a slow
// callback delays all others and, by holding buffer space, Produce.
//
// A Producer is safe for concurrent use.
type Producer struct {
	c   *Client
	cfg producerConfig
	log *slog.Logger

	// life serialises Close against Produce: Produce holds it shared from
	// its closed check until its record is queued.
	life    sync.RWMutex
	closing bool          // guarded by life
	closeCh chan struct{} // closed when Close begins: wakes blocked Produce calls
	quit    chan struct{} // closed once Close has flushed: stops the partition loops
	once    sync.Once

	topicsMu sync.RWMutex // guards topics
	topics   map[string]*topicProducer

	sinksMu sync.Mutex // guards sinks
	sinks   map[string]*sink

	bufMu       sync.Mutex // guards the fields below
	buffered    int64      // bytes of records produced and not yet completed
	outstanding int64      // records produced and not yet completed
	bufFreed    chan struct{}
	idle        []chan struct{} // Flush waiters, closed when outstanding is 0

	flushing atomic.Int32 // > 0 while Flush or Close runs: no lingering

	loops sync.WaitGroup // partition loops
	cbs   callbackQueue
	cbsWG sync.WaitGroup
	cbMu  sync.Mutex // held while callbacks run: keeps them serial

	builders sync.Pool

	// The idempotent producer's identity (see idempotence.go).
	idMu      sync.Mutex    // guards the fields below
	pid       int64         // producer id, -1 while unknown
	pepoch    int16         // its epoch
	bumpID    int64         // with bumpEpoch: the pair InitProducer must move on from; -1: ask for a new id
	bumpEpoch int16         //
	idWait    chan struct{} // closed when the InitProducer goroutine ends; nil when none runs
	idErr     error         // the last InitProducer failure
	fatal     error         // set once: the producer cannot continue (fenced, ...)
	idWG      sync.WaitGroup
}

// topicProducer is the per-topic state: the topic's partitioner and its
// partitions' pipelines.
type topicProducer struct {
	name  string
	mu    sync.Mutex // guards the fields below; serialises the partitioner
	tp    TopicPartitioner
	parts map[int32]*partProducer
}

// NewProducer returns a producer that sends through c, configured by opts.
// It connects lazily, so it fails only on invalid options or a closed
// client. Client.Close closes it too.
func (c *Client) NewProducer(opts ...ProducerOpt) (*Producer, error) {
	cfg := defaultProducerConfig()
	for _, o := range opts {
		o.applyProducer(&cfg)
	}
	if cfg.requestTimeout == 0 {
		cfg.requestTimeout = c.cfg.requestTimeout
	}
	if cfg.retryBackoff == 0 {
		cfg.retryBackoff = c.cfg.retryBackoff
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Producer{
		c:        c,
		cfg:      cfg,
		log:      c.log,
		closeCh:  make(chan struct{}),
		quit:     make(chan struct{}),
		topics:   make(map[string]*topicProducer),
		sinks:    make(map[string]*sink),
		bufFreed: make(chan struct{}),
		pid:      noProducer,
		bumpID:   noProducer,
	}
	p.builders.New = func() any { return batch.NewBuilder(batch.Compression(cfg.compression)) }
	p.cbs.init()
	if err := c.register(p); err != nil {
		return nil, err
	}
	p.cbsWG.Add(1)
	go p.runCallbacks()
	return p, nil
}

// pendingRec is a produced record waiting for its answer.
type pendingRec struct {
	r  *Record
	cb func(*Record, error)
}

// Produce queues r for its topic and returns; cb (which may be nil) is
// called with r and the outcome once the record is acknowledged, fails or
// times out. On success r.Partition and r.Offset are set (Offset is -1 with
// AcksNone); a zero r.Timestamp is set to the time of the call.
//
// Produce blocks, until ctx is done, only to learn a new topic's metadata
// and while the producer's buffer is full (MaxBufferedBytes); if ctx ends
// first, cb gets ctx's error and the record is not sent. Once queued, the
// record is bounded by DeliveryTimeout, not by ctx.
//
// Records of an unknown topic or partition, and records larger than the
// batch size or the topic's max record bytes, fail at once through cb.
//
// Callbacks run on the producer's callback goroutine and must not wait for
// the producer: Flush from a callback, or Produce with a context that can
// wait on a full buffer, would wait for itself.
func (p *Producer) Produce(ctx context.Context, r *Record, cb func(*Record, error)) {
	if cb == nil {
		cb = func(*Record, error) {}
	}
	p.begin()
	p.life.RLock()
	defer p.life.RUnlock()
	if p.closing {
		p.failNow(r, cb, ErrClosed)
		return
	}
	if err := p.fatalErr(); err != nil {
		p.failNow(r, cb, err)
		return
	}
	if r.Timestamp.IsZero() {
		r.Timestamp = time.Now()
	}
	r.Offset = -1
	var br batch.Record
	r.toBatch(&br)
	enc := batch.EncodedRecordSize(&br)
	if batch.HeaderSize+enc > p.cfg.batchMaxBytes {
		p.failNow(r, cb, &Error{code: codes.InvalidArgument, reason: skeinv1.ErrorReason_RECORD_TOO_LARGE, LeaderID: -1,
			Message: fmt.Sprintf("record of %d bytes does not fit in a batch of at most %d bytes (BatchMaxBytes)", r.size(), p.cfg.batchMaxBytes)})
		return
	}
	tm, err := p.topicMeta(ctx, r.Topic)
	if err != nil {
		p.failNow(r, cb, err)
		return
	}
	if max := tm.info.Config.MaxRecordBytes; max > 0 && r.size() > int(max) {
		p.failNow(r, cb, &Error{code: codes.InvalidArgument, reason: skeinv1.ErrorReason_RECORD_TOO_LARGE, LeaderID: -1,
			Message: fmt.Sprintf("record of %d bytes (key+value+headers) is over the max record bytes %d of topic %q", r.size(), max, r.Topic)})
		return
	}
	size := int64(enc)
	if err := p.acquire(ctx, size); err != nil {
		p.failNow(r, cb, err)
		return
	}
	t := p.topic(r.Topic)
	n := len(tm.parts)
	t.mu.Lock()
	part := t.tp.Partition(r, n)
	if bp, ok := t.tp.(BatchAwarePartitioner); ok && (part < 0 || part >= n || !t.hasRoom(int32(part), enc, p.cfg.batchMaxBytes)) {
		bp.OnNewBatch()
		part = t.tp.Partition(r, n)
	}
	if part < 0 || part >= n {
		t.mu.Unlock()
		p.release(size, 0)
		p.failNow(r, cb, unknownPartition(r.Topic, int32(part), n))
		return
	}
	r.Partition = int32(part)
	t.part(p, int32(part)).add(pendingRec{r, cb}, &br, enc, size)
	t.mu.Unlock()
}

// topicMeta returns a topic's metadata, fetching it (within ctx and the
// producer's life) when the cache does not have it.
func (p *Producer) topicMeta(ctx context.Context, topic string) (*topicMeta, error) {
	if tm, _ := p.c.meta.topic(topic); tm != nil && len(tm.parts) > 0 {
		// A steady producer may never meet an error that refreshes the
		// metadata: refresh it in the background once it is MetadataMaxAge
		// old, so partitions added to a topic start to receive records.
		p.c.maybeRefreshStale()
		return tm, nil
	}
	if topic == "" {
		return nil, &Error{code: codes.InvalidArgument, reason: skeinv1.ErrorReason_INVALID_TOPIC, Message: "record without a topic", LeaderID: -1}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(closeContext{p.closeCh}, cancel)
	defer stop()
	for i := 0; i < 2; i++ {
		tm, gen := p.c.meta.topic(topic)
		if tm != nil && len(tm.parts) > 0 {
			return tm, nil
		}
		if err := p.c.refresh(ctx, gen); err != nil {
			if p.isClosing() {
				return nil, ErrClosed
			}
			return nil, fmt.Errorf("metadata for topic %q: %w", topic, err)
		}
	}
	if tm, _ := p.c.meta.topic(topic); tm != nil && len(tm.parts) > 0 {
		return tm, nil
	}
	return nil, unknownTopic(topic)
}

// closeContext adapts a channel to the part of context.Context that
// context.AfterFunc watches.
type closeContext struct{ ch chan struct{} }

func (closeContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c closeContext) Done() <-chan struct{}     { return c.ch }
func (c closeContext) Err() error                { return closedErr(c.ch) }
func (closeContext) Value(any) any               { return nil }
func closedErr(ch chan struct{}) error {
	select {
	case <-ch:
		return ErrClosed
	default:
		return nil
	}
}

func (p *Producer) isClosing() bool { return closedErr(p.closeCh) != nil }

func (p *Producer) topic(name string) *topicProducer {
	p.topicsMu.RLock()
	t := p.topics[name]
	p.topicsMu.RUnlock()
	if t != nil {
		return t
	}
	p.topicsMu.Lock()
	defer p.topicsMu.Unlock()
	if t = p.topics[name]; t == nil {
		t = &topicProducer{name: name, tp: p.cfg.partitioner.ForTopic(name), parts: make(map[int32]*partProducer)}
		p.topics[name] = t
	}
	return t
}

// hasRoom reports whether partition has an open batch with room for a
// record of enc bytes, that is, whether the record would join a batch
// rather than start one; t.mu must be held.
func (t *topicProducer) hasRoom(partition int32, enc, maxBytes int) bool {
	pp := t.parts[partition]
	if pp == nil {
		return false
	}
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.open != nil && pp.open.b.Size()+enc <= maxBytes
}

// part returns the partition's pipeline, starting it on first use; t.mu
// must be held, and p.life held shared (so Close cannot be waiting for the
// loops yet).
func (t *topicProducer) part(p *Producer, partition int32) *partProducer {
	pp := t.parts[partition]
	if pp == nil {
		pp = newPartProducer(p, t.name, partition)
		t.parts[partition] = pp
		p.loops.Add(1)
		go pp.run()
	}
	return pp
}

// begin counts a record as outstanding until its callback has run.
func (p *Producer) begin() {
	p.bufMu.Lock()
	p.outstanding++
	p.bufMu.Unlock()
}

// acquire takes size bytes of buffer, waiting while the buffer is full. A
// record larger than the whole buffer is let in when the buffer is empty.
func (p *Producer) acquire(ctx context.Context, size int64) error {
	p.bufMu.Lock()
	for p.buffered > 0 && p.buffered+size > p.cfg.maxBufferedBytes {
		ch := p.bufFreed
		p.bufMu.Unlock()
		select {
		case <-ctx.Done():
			return fmt.Errorf("producer buffer full (%d bytes): %w", p.cfg.maxBufferedBytes, ctx.Err())
		case <-p.closeCh:
			return ErrClosed
		case <-ch:
		}
		p.bufMu.Lock()
	}
	p.buffered += size
	p.bufMu.Unlock()
	return nil
}

// release gives back buffer bytes and completes records.
func (p *Producer) release(size int64, records int) {
	p.bufMu.Lock()
	defer p.bufMu.Unlock()
	if size > 0 {
		p.buffered -= size
		close(p.bufFreed)
		p.bufFreed = make(chan struct{})
	}
	if records > 0 {
		p.outstanding -= int64(records)
		if p.outstanding == 0 {
			for _, ch := range p.idle {
				close(ch)
			}
			p.idle = nil
		}
	}
}

// failNow fails a record that was never queued. Once the callback
// goroutine has stopped (after Close), the callback runs here, still
// serialised with every other callback.
func (p *Producer) failNow(r *Record, cb func(*Record, error), err error) {
	c := completion{recs: []pendingRec{{r, cb}}, base: -1, partition: -1, err: err}
	if !p.cbs.push(c) {
		p.runCompletion(&c)
	}
}

// ProduceSync produces recs and waits for all of their callbacks. It
// returns nil when every record was acknowledged, else the errors of the
// failed records joined, each naming the record's index and partition. ctx
// bounds the queueing of the records, as in Produce.
func (p *Producer) ProduceSync(ctx context.Context, recs ...*Record) error {
	var wg sync.WaitGroup
	errs := make([]error, len(recs))
	wg.Add(len(recs))
	for i, r := range recs {
		p.Produce(ctx, r, func(r *Record, err error) {
			if err != nil {
				errs[i] = fmt.Errorf("record %d (topic %q, partition %d): %w", i, r.Topic, r.Partition, err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Flush sends every buffered record at once (ignoring Linger) and waits
// until all records produced so far have completed (their callbacks have
// returned), or ctx is done.
func (p *Producer) Flush(ctx context.Context) error {
	p.flushing.Add(1)
	defer p.flushing.Add(-1)
	p.bufMu.Lock()
	if p.outstanding == 0 {
		p.bufMu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	p.idle = append(p.idle, ch)
	p.bufMu.Unlock()
	p.wakeAll()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Producer) wakeAll() {
	p.topicsMu.RLock()
	defer p.topicsMu.RUnlock()
	for _, t := range p.topics {
		t.mu.Lock()
		for _, pp := range t.parts {
			pp.signal()
		}
		t.mu.Unlock()
	}
}

// Close stops accepting records (Produce fails them with ErrClosed), sends
// and waits for everything buffered (each record still bounded by
// DeliveryTimeout), then stops the producer's goroutines. It is idempotent.
func (p *Producer) Close() error {
	p.once.Do(func() {
		close(p.closeCh)
		p.life.Lock()
		p.closing = true
		p.life.Unlock()

		p.Flush(context.Background())

		close(p.quit)
		p.loops.Wait()
		p.idWG.Wait()
		p.sinksMu.Lock()
		sinks := p.sinks
		p.sinks = nil
		p.sinksMu.Unlock()
		for _, s := range sinks {
			s.close()
		}
		p.cbs.close()
		p.cbsWG.Wait()
		p.c.unregister(p)
	})
	return nil
}

// sink returns the produce stream manager of a broker address.
func (p *Producer) sink(addr string) *sink {
	p.sinksMu.Lock()
	defer p.sinksMu.Unlock()
	s := p.sinks[addr]
	if s == nil {
		s = newSink(p, addr)
		if p.sinks != nil {
			p.sinks[addr] = s
		}
	}
	return s
}

// ---- callbacks ------------------------------------------------------------------

// completion is the outcome of a batch (or of one record that failed before
// it was queued).
type completion struct {
	recs      []pendingRec
	base      int64 // offset of recs[0]; -1 when unknown
	epoch     int32 // leader epoch the batch was appended in; -1 when unknown
	partition int32 // -1: leave Record.Partition as it is
	err       error
	bytes     int64 // buffer bytes to release
	extra     int   // outstanding units besides recs (a ProduceIf batch: 1)
}

// callbackQueue is an unbounded FIFO of completions; the records it holds
// are bounded by the producer's buffer.
type callbackQueue struct {
	mu     sync.Mutex // guards the fields below
	items  []completion
	closed bool
	ready  chan struct{} // cap 1
}

func (q *callbackQueue) init() { q.ready = make(chan struct{}, 1) }

// push queues c; it reports false, queueing nothing, once the queue is
// closed.
func (q *callbackQueue) push(c completion) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, c)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

func (q *callbackQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take returns the queued completions, waiting for some; nil once the queue
// is closed and empty.
func (q *callbackQueue) take(buf []completion) []completion {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			buf = append(buf[:0], q.items...)
			clear(q.items)
			q.items = q.items[:0]
			q.mu.Unlock()
			return buf
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil
		}
		<-q.ready
	}
}

func (p *Producer) runCallbacks() {
	defer p.cbsWG.Done()
	var buf []completion
	for {
		buf = p.cbs.take(buf)
		if buf == nil {
			return
		}
		for i := range buf {
			p.runCompletion(&buf[i])
			buf[i] = completion{}
		}
	}
}

// runCompletion runs the callbacks of one completion and releases its
// records.
func (p *Producer) runCompletion(c *completion) {
	p.cbMu.Lock()
	defer p.cbMu.Unlock()
	for j, pr := range c.recs {
		if c.partition >= 0 {
			pr.r.Partition = c.partition
		}
		if c.err == nil && c.base >= 0 {
			pr.r.Offset, pr.r.LeaderEpoch = c.base+int64(j), c.epoch
		} else {
			pr.r.Offset, pr.r.LeaderEpoch = -1, -1
		}
		pr.cb(pr.r, c.err)
	}
	p.release(c.bytes, len(c.recs)+c.extra)
}
