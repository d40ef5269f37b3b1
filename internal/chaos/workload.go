package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinlog/skein/client"
)

// History is the run's history, appended by every worker.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
	procs atomic.Int64
}

// NewHistory starts a history whose times count from now.
func NewHistory() *History { return &History{start: time.Now()} }

// Proc returns a fresh process id.
func (h *History) Proc() int { return int(h.procs.Add(1)) }

// Since is the run time of t.
func (h *History) Since(t time.Time) time.Duration { return t.Sub(h.start) }

// Add appends op, stamping its index and time.
func (h *History) Add(op Op) {
	h.mu.Lock()
	op.Index = len(h.ops)
	op.Time = time.Since(h.start)
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Ops returns a copy of the history so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// WorkloadConfig sizes the workload. The rate is bounded for a 2-core
// machine that also runs three brokers.
type WorkloadConfig struct {
	Topic      string
	Partitions int
	// Rate is records per second over all asynchronous producers.
	Rate int
	// Producers is the number of idempotent producers, each with up to 5
	// requests in flight per partition.
	Producers int
	// ValueSize is each record's size in bytes.
	ValueSize int
	// MaxPending bounds each producer's records awaiting an answer; the
	// producer waits (and the history shows the unavailability) beyond it.
	MaxPending int
	// GroupMembers is the number of consumer group members sharing the
	// topic (each replaced by a new instance now and then); 0 for none.
	GroupMembers int
	// KeyWriters is the number of per-key conditional writers of
	// KeyTopics (key-indexed topics of Partitions partitions; each update
	// goes to one drawn at random), contending for Keys keys; 0 for none.
	KeyWriters int
	KeyTopics  []string
	Keys       int
}

func (c *WorkloadConfig) defaults() {
	if c.Partitions <= 0 {
		c.Partitions = 3
	}
	if c.Rate <= 0 {
		c.Rate = 300
	}
	if c.Producers <= 0 {
		c.Producers = 2
	}
	if c.ValueSize <= 0 {
		c.ValueSize = 100
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 2000
	}
	c.Keys = keyCount(c.Keys)
}

// Workload drives the cluster through the real Go client and records the
// history: idempotent producers with requests in flight, one sequential
// conditional writer per partition, one following consumer per partition,
// one high-watermark poller per partition, and the consumer group's
// members and the per-key conditional writers of the key topic.
type Workload struct {
	cfg   WorkloadConfig
	cl    *client.Client
	h     *History
	rng   *rand.Rand
	rngMu sync.Mutex

	stopSend chan struct{} // closes: producers and writers stop
	stopRead chan struct{} // closes: consumers and pollers stop
	sendWG   sync.WaitGroup
	readWG   sync.WaitGroup

	// producer indexes: every producer instance (a replacement after a
	// fatal error too) gets its own, so values stay unique.
	nextProducer atomic.Int64
	// readTo[p]: the offset after the last record consumer p read.
	readTo []atomic.Int64
	group  *groupWorkload // nil without group members
	errs   chan error
}

// StartWorkload starts every worker against cl.
func StartWorkload(cl *client.Client, h *History, seed uint64, cfg WorkloadConfig) *Workload {
	cfg.defaults()
	w := &Workload{cfg: cfg, cl: cl, h: h, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)),
		stopSend: make(chan struct{}), stopRead: make(chan struct{}),
		readTo: make([]atomic.Int64, cfg.Partitions), errs: make(chan error, 16)}
	for i := 0; i < cfg.Producers; i++ {
		w.sendWG.Add(1)
		go w.producer(i)
	}
	for p := 0; p < cfg.Partitions; p++ {
		w.sendWG.Add(1)
		go w.conditionalWriter(int32(p))
		w.readWG.Add(2)
		go w.consumer(int32(p))
		go w.hwPoller(int32(p))
	}
	for range cfg.KeyWriters {
		w.sendWG.Add(1)
		go w.keyWriterSlot()
	}
	if cfg.GroupMembers > 0 {
		w.group = w.startGroup()
	}
	return w
}

func (w *Workload) intn(n int) int {
	w.rngMu.Lock()
	defer w.rngMu.Unlock()
	return w.rng.IntN(n)
}

// classify turns a produce error into the history's outcome: Fail only
// when the broker said nothing was appended.
func classify(err error) OpType {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, client.ErrMaybeAppended), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled), errors.Is(err, client.ErrClosed):
		return Info
	}
	var e *client.Error
	if errors.As(err, &e) && e.Kind() != nil {
		return Fail
	}
	// Anything else (a transport error the client did not classify) is
	// indeterminate.
	return Info
}

// producer sends records round-robin over the partitions at its share of
// the rate, with up to MaxPending awaiting answers.
func (w *Workload) producer(slot int) {
	defer w.sendWG.Done()
	interval := time.Second * time.Duration(w.cfg.Producers) / time.Duration(w.cfg.Rate)
	for {
		idx := int(w.nextProducer.Add(1))
		fatal := w.runProducer(idx, interval, slot)
		if fatal == nil {
			return
		}
		// A fenced or otherwise dead producer is replaced by a new
		// instance with a new index.
		select {
		case <-w.stopSend:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (w *Workload) runProducer(idx int, interval time.Duration, slot int) error {
	p, err := w.cl.NewProducer(client.Linger(2*time.Millisecond), client.MaxInFlightPerPartition(5),
		client.DeliveryTimeout(20*time.Second), client.ProduceRequestTimeout(5*time.Second),
		client.RecordPartitioner(client.ManualPartitioner()))
	if err != nil {
		return err
	}
	pending := make(chan struct{}, w.cfg.MaxPending)
	var fatal atomic.Pointer[error]
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		p.Flush(ctx)
		cancel()
		p.Close()
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	part := slot % w.cfg.Partitions
	for seq := uint32(0); ; seq++ {
		select {
		case <-w.stopSend:
			return nil
		case <-tick.C:
		}
		if e := fatal.Load(); e != nil {
			return *e
		}
		select {
		case pending <- struct{}{}:
		case <-w.stopSend:
			return nil
		}
		v := ValueID(idx, seq)
		partition := int32(part)
		part = (part + 1) % w.cfg.Partitions
		proc := w.h.Proc()
		w.h.Add(Op{Process: proc, Type: Invoke, F: FSend, Partition: partition, Value: v, Producer: idx})
		rec := &client.Record{Topic: w.cfg.Topic, Partition: partition, Value: EncodeValue(v, w.cfg.ValueSize)}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		p.Produce(ctx, rec, func(r *client.Record, err error) {
			cancel()
			<-pending
			op := Op{Process: proc, Type: classify(err), F: FSend, Partition: partition, Value: v, Producer: idx, Offset: -1}
			if err == nil {
				op.Offset = r.Offset
				if e := r.LeaderEpoch; e >= 0 {
					op.AckEpoch = &e
				}
			} else {
				op.Err = err.Error()
				if errors.Is(err, client.ErrProducerFenced) {
					fatal.CompareAndSwap(nil, &err)
				}
			}
			w.h.Add(op)
		})
	}
}

// conditionalWriter appends one record at a time to its partition with an
// expected offset: the offset-mismatch refusals are definite failures
// (G5: they must never be read), and the successes check conditional
// append under faults.
func (w *Workload) conditionalWriter(partition int32) {
	defer w.sendWG.Done()
	idx := int(w.nextProducer.Add(1))
	p, err := w.cl.NewProducer(client.DeliveryTimeout(10*time.Second), client.ProduceRequestTimeout(5*time.Second),
		client.RecordPartitioner(client.ManualPartitioner()))
	if err != nil {
		w.report(err)
		return
	}
	defer p.Close()
	expected := int64(0)
	for seq := uint32(0); ; seq++ {
		select {
		case <-w.stopSend:
			return
		case <-time.After(time.Duration(50+w.intn(100)) * time.Millisecond):
		}
		v := ValueID(idx, seq)
		proc := w.h.Proc()
		w.h.Add(Op{Process: proc, Type: Invoke, F: FSend, Partition: partition, Value: v, Producer: idx})
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		rec := &client.Record{Value: EncodeValue(v, w.cfg.ValueSize)}
		off, err := p.ProduceIf(ctx, w.cfg.Topic, partition, expected, rec)
		cancel()
		op := Op{Process: proc, Type: classify(err), F: FSend, Partition: partition, Value: v, Producer: idx, Offset: -1}
		var ce *client.Error
		switch {
		case err == nil:
			op.Offset = off
			if e := rec.LeaderEpoch; e >= 0 {
				op.AckEpoch = &e
			}
			expected = off + 1
		case errors.As(err, &ce) && errors.Is(err, client.ErrOffsetMismatch):
			op.Err = err.Error()
			expected = ce.NextOffset
		default:
			op.Err = err.Error()
		}
		w.h.Add(op)
		if errors.Is(err, client.ErrProducerFenced) {
			return
		}
	}
}

// consumer reads its partition forward from the start, following new
// records, under one process: its reads must be dense and increasing (G7).
func (w *Workload) consumer(partition int32) {
	defer w.readWG.Done()
	proc := w.h.Proc()
	next := int64(0)
	for {
		select {
		case <-w.stopRead:
			return
		default:
		}
		n, err := w.consume(proc, partition, next)
		next = n
		if err != nil {
			select {
			case <-w.stopRead:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

func (w *Workload) consume(proc int, partition int32, from int64) (int64, error) {
	k, err := w.cl.NewConsumer(client.FetchMaxWait(500 * time.Millisecond))
	if err != nil {
		return from, err
	}
	defer k.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := context.AfterFunc(chanContext(w.stopRead), cancel)
	defer stop()
	if err := k.Assign(ctx, w.cfg.Topic, []int32{partition}, client.At(from)); err != nil {
		return from, err
	}
	for {
		r, err := k.Next(ctx)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return from, err
		}
		op := Op{Process: proc, Type: OK, F: FRead, Partition: partition, Offset: r.Offset, Epoch: r.LeaderEpoch}
		if v, derr := DecodeValue(r.Value); derr != nil {
			op.Corrupt, op.Err = true, derr.Error()
		} else {
			op.Value = v
		}
		w.h.Add(op)
		from = r.Offset + 1
		w.readTo[partition].Store(from)
	}
}

// hwPoller asks for the partition's high watermark every 200 ms.
func (w *Workload) hwPoller(partition int32) {
	defer w.readWG.Done()
	proc := w.h.Proc()
	for {
		select {
		case <-w.stopRead:
			return
		case <-time.After(200 * time.Millisecond):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		lo, err := w.cl.ListOffsets(ctx, w.cfg.Topic, partition, client.End())
		cancel()
		if err == nil {
			w.h.Add(Op{Process: proc, Type: OK, F: FHW, Partition: partition, Offset: lo.HighWatermark})
		}
	}
}

func (w *Workload) report(err error) {
	select {
	case w.errs <- err:
	default:
	}
}

// StopSending stops the producers and writers and waits for every answer.
func (w *Workload) StopSending() {
	close(w.stopSend)
	w.sendWG.Wait()
}

// Drain waits until every consumer, and the consumer group, has read up to
// hw[partition] (or the time is up), then stops the consumers, the group's
// members and the pollers. It returns the partitions whose consumer or
// group fell short.
func (w *Workload) Drain(hw map[int32]int64, d time.Duration) []string {
	deadline := time.Now().Add(d)
	groupDone := make(chan struct{})
	go func() {
		defer close(groupDone)
		if w.group != nil {
			w.group.drain(hw, deadline)
		}
	}()
	for time.Now().Before(deadline) {
		behind := 0
		for p, want := range hw {
			if w.readTo[p].Load() < want {
				behind++
			}
		}
		if behind == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(w.stopRead)
	w.readWG.Wait()
	<-groupDone
	var short []string
	for p, want := range hw {
		if got := w.readTo[p].Load(); got < want {
			short = append(short, fmt.Sprintf("partition %d: consumer read to %d of %d", p, got, want))
		}
		if w.group == nil {
			continue
		}
		if got := w.group.readTo[p].Load(); got < want {
			short = append(short, fmt.Sprintf("partition %d: group %s read to %d of %d", p, groupName, got, want))
		}
	}
	return short
}

// chanContext is a context done when ch closes.
type chanContext chan struct{}

func (c chanContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c chanContext) Done() <-chan struct{}       { return c }
func (c chanContext) Err() error {
	select {
	case <-c:
		return context.Canceled
	default:
		return nil
	}
}
func (c chanContext) Value(any) any { return nil }
