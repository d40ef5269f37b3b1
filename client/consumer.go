package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/proto/skeinv1"
)

// Consumer reads assigned partitions. Each assigned partition has a fetch
// goroutine holding one Fetch stream against the partition's leader; it
// decodes whole batches into a bounded per-partition buffer, which Next and
// Poll drain, taking partitions in turn. A broken stream, NotLeader or
// Unavailable make the fetcher refresh metadata, back off and reopen the
// stream at the next offset it has not yet buffered, so records are neither
// skipped nor repeated. An offset out of range is returned as an error,
// never silently reset.
//
// Next and Poll may be called from one goroutine at a time; Assign,
// Positions and Close are safe from any.
type Consumer struct {
	c   *Client
	cfg consumerConfig
	log *slog.Logger

	ctx    context.Context // cancelled by Close: stops the fetchers
	cancel context.CancelFunc
	wg     sync.WaitGroup // fetchers

	mu     sync.Mutex // guards parts and closed
	parts  []*partConsumer
	closed bool

	notify chan struct{} // cap 1: a fetcher buffered something

	// State of Next and Poll (one caller at a time).
	nextMu  sync.Mutex
	cur     []Record // the batch being handed out
	curPC   *partConsumer
	rr      int          // round-robin position over parts
	pending *pendingItem // an item tryFill took that fill must handle
}

// partConsumer is one assigned partition.
type partConsumer struct {
	topic     string
	partition int32
	ch        chan fetchItem

	// For Positions; written by Next (pos) and the fetcher (the others).
	pos      atomic.Int64 // the next offset Next will return
	hw       atomic.Int64
	logStart atomic.Int64
	caughtUp atomic.Bool

	done bool // Next has seen its end (StopAtEnd) or error; Next's goroutine only
}

// fetchItem is what a fetcher hands to Next: records, and/or the end of the
// partition (StopAtEnd), or an error that ends the partition.
type fetchItem struct {
	recs   []Record
	atEnd  bool
	err    error
	nextAt int64 // the fetch position after recs
}

// NewConsumer returns a consumer reading through c, configured by opts;
// Assign partitions to it. Client.Close closes it too.
func (c *Client) NewConsumer(opts ...ConsumerOpt) (*Consumer, error) {
	cfg := defaultConsumerConfig()
	for _, o := range opts {
		o.applyConsumer(&cfg)
	}
	if cfg.retryBackoff == 0 {
		cfg.retryBackoff = c.cfg.retryBackoff
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &Consumer{c: c, cfg: cfg, log: c.log, ctx: ctx, cancel: cancel, notify: make(chan struct{}, 1)}
	if err := c.register(k); err != nil {
		cancel()
		return nil, err
	}
	return k, nil
}

// Assign starts reading partitions of topic (all of them when partitions is
// nil) from start. It resolves the start offsets (ListOffsets) before it
// returns, so an unknown topic or partition is reported here. Assigning a
// partition twice is an error.
func (k *Consumer) Assign(ctx context.Context, topic string, partitions []int32, start Offset) error {
	tm, err := k.topicMeta(ctx, topic)
	if err != nil {
		return err
	}
	n := len(tm.parts)
	if partitions == nil {
		for i := 0; i < n; i++ {
			partitions = append(partitions, int32(i))
		}
	}
	seen := make(map[int32]bool)
	for _, p := range partitions {
		if p < 0 || int(p) >= n {
			return unknownPartition(topic, p, n)
		}
		if seen[p] {
			return fmt.Errorf("partition %d of %q listed twice", p, topic)
		}
		seen[p] = true
	}
	k.mu.Lock()
	for _, pc := range k.parts {
		if pc.topic == topic && seen[pc.partition] {
			k.mu.Unlock()
			return fmt.Errorf("partition %d of %q is already assigned", pc.partition, topic)
		}
	}
	k.mu.Unlock()

	starts := make([]int64, len(partitions))
	for i, p := range partitions {
		if starts[i], err = k.resolve(ctx, topic, p, start); err != nil {
			return err
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return ErrClosed
	}
	for i, p := range partitions {
		pc := &partConsumer{topic: topic, partition: p, ch: make(chan fetchItem, k.cfg.bufferedBatches)}
		pc.pos.Store(starts[i])
		pc.hw.Store(-1)
		pc.logStart.Store(-1)
		k.parts = append(k.parts, pc)
		k.wg.Add(1)
		go k.fetch(pc, starts[i])
	}
	return nil
}

func (k *Consumer) topicMeta(ctx context.Context, topic string) (*topicMeta, error) {
	for i := 0; ; i++ {
		tm, gen := k.c.meta.topic(topic)
		if tm != nil && len(tm.parts) > 0 {
			return tm, nil
		}
		if i == 2 {
			return nil, unknownTopic(topic)
		}
		if err := k.c.refresh(ctx, gen); err != nil {
			return nil, fmt.Errorf("metadata for topic %q: %w", topic, err)
		}
	}
}

// resolve turns a start Offset into an absolute offset. At(n) needs no
// request: an offset outside the log fails the partition's first fetch.
func (k *Consumer) resolve(ctx context.Context, topic string, p int32, o Offset) (int64, error) {
	if o.kind == offsetAt {
		return o.n, nil
	}
	lo, err := k.c.ListOffsets(ctx, topic, p, o)
	return lo.Offset, err
}

// PartitionPosition is where a consumer stands in one partition.
type PartitionPosition struct {
	// Topic and Partition name the assigned partition.
	Topic     string
	Partition int32
	// Offset is the next offset Next will return.
	Offset int64
	// HighWatermark and LogStartOffset are the latest the fetcher saw; -1
	// before the first answer.
	HighWatermark  int64
	LogStartOffset int64
	// CaughtUp: the fetcher has reached the high watermark at least once.
	CaughtUp bool
}

// Lag is how many committed records remain to be read; -1 when unknown.
func (p PartitionPosition) Lag() int64 {
	if p.HighWatermark < 0 {
		return -1
	}
	return max(p.HighWatermark-p.Offset, 0)
}

// Positions returns the position of every assigned partition, in assignment
// order.
func (k *Consumer) Positions() []PartitionPosition {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]PartitionPosition, 0, len(k.parts))
	for _, pc := range k.parts {
		out = append(out, PartitionPosition{
			Topic:          pc.topic,
			Partition:      pc.partition,
			Offset:         pc.pos.Load(),
			HighWatermark:  pc.hw.Load(),
			LogStartOffset: pc.logStart.Load(),
			CaughtUp:       pc.caughtUp.Load(),
		})
	}
	return out
}

// Next returns the next record of any assigned partition, waiting for one
// until ctx is done. Records of one partition come in offset order;
// partitions take turns batch by batch. It returns io.EOF when every
// partition has ended: with StopAtEnd, once each has been read to the high
// watermark it had when its fetch caught up; without, only when every
// partition has failed. An error of one partition (such as
// ErrOffsetOutOfRange or ErrUnknownTopic) is returned once and ends that
// partition; the others go on.
func (k *Consumer) Next(ctx context.Context) (*Record, error) {
	k.nextMu.Lock()
	defer k.nextMu.Unlock()
	for {
		if len(k.cur) > 0 {
			r := &k.cur[0]
			k.cur = k.cur[1:]
			k.curPC.pos.Store(r.Offset + 1)
			return r, nil
		}
		if err := k.fill(ctx); err != nil {
			return nil, err
		}
	}
}

// Poll returns every record buffered now (at least one), waiting for some
// until ctx is done; otherwise as Next. The records returned are consumed:
// positions move past them.
func (k *Consumer) Poll(ctx context.Context) ([]*Record, error) {
	k.nextMu.Lock()
	defer k.nextMu.Unlock()
	for len(k.cur) == 0 {
		if err := k.fill(ctx); err != nil {
			return nil, err
		}
	}
	var out []*Record
	for {
		for i := range k.cur {
			out = append(out, &k.cur[i])
		}
		k.curPC.pos.Store(k.cur[len(k.cur)-1].Offset + 1)
		k.cur = nil
		if !k.tryFill() {
			return out, nil
		}
	}
}

// tryFill loads the next buffered batch into cur without waiting. It
// reports false when nothing is buffered or when an item must be returned
// by fill (an error, the end).
func (k *Consumer) tryFill() bool {
	parts := k.snapshotParts()
	start := k.rr
	for i := range parts {
		pc := parts[(start+i)%len(parts)]
		if pc.done {
			continue
		}
		select {
		case it := <-pc.ch:
			k.rr = (start + i + 1) % len(parts)
			if it.err != nil || it.atEnd {
				// fill handles the end of a partition and errors.
				k.pending = &pendingItem{pc, it}
				return false
			}
			k.cur, k.curPC = it.recs, pc
			return true
		default:
		}
	}
	return false
}

// pendingItem is an item tryFill took but fill must handle.
type pendingItem struct {
	pc *partConsumer
	it fetchItem
}

func (k *Consumer) snapshotParts() []*partConsumer {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.parts
}

// fill loads the next buffered batch into cur, waiting for one. It returns
// an error of a partition, io.EOF at the end, or ctx's error.
func (k *Consumer) fill(ctx context.Context) error {
	for {
		if pi := k.pending; pi != nil {
			k.pending = nil
			if done, err := k.handle(pi.pc, pi.it); done {
				return err
			}
			if len(k.cur) > 0 {
				return nil
			}
		}
		parts := k.snapshotParts()
		active, progressed := 0, false
		start := k.rr
		for i := range parts {
			pc := parts[(start+i)%len(parts)]
			if pc.done {
				continue
			}
			select {
			case it := <-pc.ch:
				progressed = true
				k.rr = (start + i + 1) % len(parts)
				if done, err := k.handle(pc, it); done {
					return err
				}
				if len(k.cur) > 0 {
					return nil
				}
			default:
			}
			if !pc.done {
				active++
			}
		}
		if active == 0 && (len(parts) > 0 || k.cfg.stopAtEnd) {
			return io.EOF
		}
		if progressed {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-k.ctx.Done():
			return ErrClosed
		case <-k.notify:
		}
	}
}

// handle takes one item of a partition: records go to cur; the end or an
// error end the partition. It reports whether fill must return err.
func (k *Consumer) handle(pc *partConsumer, it fetchItem) (bool, error) {
	if len(it.recs) > 0 {
		k.cur, k.curPC = it.recs, pc
	}
	if it.err != nil {
		pc.done = true
		return true, it.err
	}
	if it.atEnd {
		pc.done = true
	}
	return false, nil
}

// Close stops the fetchers and waits for them. It is idempotent.
func (k *Consumer) Close() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	k.mu.Unlock()
	k.cancel()
	k.wg.Wait()
	k.c.unregister(k)
	return nil
}

// ---- fetcher ------------------------------------------------------------------

// fetch is the goroutine of one partition: it keeps a Fetch stream open at
// the partition's leader, starting at pos, and buffers what it reads.
func (k *Consumer) fetch(pc *partConsumer, pos int64) {
	defer k.wg.Done()
	failures := 0
	for {
		var err error
		pos, err = k.stream(pc, pos, &failures)
		if err == nil || k.ctx.Err() != nil {
			return // ended (StopAtEnd) or closed
		}
		if !IsRetriable(err) {
			if errors.Is(err, ErrUnknownTopic) || errors.Is(err, ErrUnknownPartition) {
				// The topic may have been recreated or the metadata may
				// be stale: refresh, and give up only if it is still gone.
				if rerr := k.c.refresh(k.ctx, k.c.meta.snap.Load().gen); rerr == nil {
					if _, lerr := k.c.meta.leader(pc.topic, pc.partition); lerr == nil || !lerr.permanent {
						failures++
						if !k.sleep(backoff(k.cfg.retryBackoff, failures)) {
							return
						}
						continue
					}
				}
			}
			k.deliver(pc, fetchItem{err: fmt.Errorf("fetch %s/%d at offset %d: %w", pc.topic, pc.partition, pos, err)})
			return
		}
		failures++
		k.log.Debug("skein: fetch stream broke; reopening", "topic", pc.topic, "partition", pc.partition, "offset", pos, "err", err)
		if !k.c.meta.applyHint(pc.topic, pc.partition, err) {
			k.c.refreshAsync(k.c.meta.snap.Load().gen)
		}
		if !k.sleep(retryWait(k.cfg.retryBackoff, failures, err)) {
			return
		}
	}
}

func (k *Consumer) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-k.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// deliver buffers an item for Next, waiting for room; false if closed.
func (k *Consumer) deliver(pc *partConsumer, it fetchItem) bool {
	select {
	case pc.ch <- it:
	case <-k.ctx.Done():
		return false
	}
	select {
	case k.notify <- struct{}{}:
	default:
	}
	return true
}

// stream runs one Fetch stream from pos. It returns the position reached
// and nil when the partition ended (StopAtEnd) or the consumer closed, or
// the error that broke the stream.
func (k *Consumer) stream(pc *partConsumer, pos int64, failures *int) (int64, error) {
	l, err := k.c.leader(k.ctx, pc.topic, pc.partition)
	if err != nil {
		if k.ctx.Err() != nil {
			return pos, nil
		}
		return pos, err
	}
	cl, err := k.c.conn(l.addr)
	if err != nil {
		return pos, err
	}
	ctx, cancel := context.WithCancel(k.ctx)
	defer cancel()
	st, err := cl.Fetch(ctx, &skeinv1.FetchRequest{
		Topic:       pc.topic,
		Partition:   pc.partition,
		Offset:      pos,
		MaxBytes:    k.cfg.fetchMaxBytes,
		MaxWaitMs:   int32(min(k.cfg.fetchMaxWait.Milliseconds(), 1<<31-1)),
		LeaderEpoch: l.epoch,
	})
	if err != nil {
		return pos, fromRPC(err)
	}
	// A stream silent for longer than a few heartbeats is dead (a
	// half-open connection): cancel it, and Recv fails.
	silence := max(3*k.cfg.fetchMaxWait, 5*time.Second)
	var silent atomic.Bool
	watchdog := time.AfterFunc(silence, func() { silent.Store(true); cancel() })
	defer watchdog.Stop()
	for {
		resp, err := st.Recv()
		if err != nil {
			if k.ctx.Err() != nil {
				return pos, nil
			}
			if silent.Load() {
				return pos, transportError(l.addr, fmt.Errorf("fetch stream silent for %v", silence))
			}
			if err == io.EOF {
				return pos, transportError(l.addr, fmt.Errorf("fetch stream ended by the broker"))
			}
			return pos, fromRPC(err)
		}
		watchdog.Reset(silence)
		*failures = 0
		pc.hw.Store(resp.GetHighWatermark())
		pc.logStart.Store(resp.GetLogStartOffset())
		it := fetchItem{}
		if b := resp.GetBatches(); len(b) > 0 {
			it.recs, pos, err = decodeBatches(pc.topic, pc.partition, b, pos)
			if err != nil {
				return pos, fmt.Errorf("decode fetched batches of %s/%d: %w", pc.topic, pc.partition, err)
			}
		}
		if resp.GetCaughtUp() && pos >= resp.GetHighWatermark() {
			pc.caughtUp.Store(true)
			it.atEnd = k.cfg.stopAtEnd
		}
		it.nextAt = pos
		if len(it.recs) > 0 || it.atEnd {
			if !k.deliver(pc, it) {
				return pos, nil
			}
		}
		if it.atEnd {
			return pos, nil
		}
	}
}

// decodeBatches decodes whole batches, keeping the records at or after pos,
// and returns them with the position after the last batch.
func decodeBatches(topic string, partition int32, buf []byte, pos int64) ([]Record, int64, error) {
	var recs []Record
	var scratch []batch.Record
	for {
		v, rest, err := batch.Next(buf)
		if err != nil {
			return recs, pos, err
		}
		if v == nil {
			return recs, pos, nil
		}
		buf = rest
		if v.NextOffset() <= pos {
			continue
		}
		scratch, err = v.Records(scratch[:0])
		if err != nil {
			return recs, pos, err
		}
		epoch := v.LeaderEpoch()
		for i := range scratch {
			br := &scratch[i]
			if br.Offset > v.LastOffset() {
				return recs, pos, fmt.Errorf("%w: record offset %d beyond the batch's last offset %d", batch.ErrInvalid, br.Offset, v.LastOffset())
			}
			if br.Offset < pos {
				continue
			}
			r := Record{
				Topic:       topic,
				Partition:   partition,
				Offset:      br.Offset,
				Timestamp:   time.UnixMilli(br.Timestamp),
				Key:         br.Key,
				Value:       br.Value,
				LeaderEpoch: epoch,
			}
			if len(br.Headers) > 0 {
				r.Headers = make([]Header, len(br.Headers))
				for j, h := range br.Headers {
					r.Headers[j] = Header{Key: h.Key, Value: h.Value}
				}
			}
			recs = append(recs, r)
		}
		pos = v.NextOffset()
	}
}
