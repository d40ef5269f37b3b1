package broker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/group"
	"github.com/skeinlog/skein/internal/groupname"
	"github.com/skeinlog/skein/partition"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// Group coordinator errors.
var (
	errUnknownGroup = errors.New("unknown group")
	errInvalidGroup = errors.New("invalid group name")
)

// notCoordinatorError: this broker does not lead the group's offsets
// partition. LeaderID names the one that does (-1 unknown).
type notCoordinatorError struct {
	Group    string
	LeaderID int32
}

func (e *notCoordinatorError) Error() string {
	if e.LeaderID < 0 {
		return fmt.Sprintf("no coordinator for group %q yet (its offsets partition has no leader, or the offsets topic does not exist: FindCoordinator creates it)", e.Group)
	}
	return fmt.Sprintf("this broker does not coordinate group %q; broker %d does", e.Group, e.LeaderID)
}

// coordinator serves the consumer groups whose __consumer_offsets
// partitions this broker leads: one shard per led partition, loaded from
// the partition's log when first needed in a leadership and dropped when
// the leadership ends. Its loop (run) expires members and writes
// snapshots.
type coordinator struct {
	b   *Broker
	cfg GroupsConfig

	mu     sync.Mutex // guards shards
	shards map[int32]*shard

	hwMu      sync.Mutex // guards knownHW and hwRefresh
	knownHW   map[group.TopicPartition]int64
	hwRefresh time.Time // when the lag metrics' high watermarks were last refreshed

	metrics *groupMetrics
}

// shard is the state of one offsets partition while this broker leads it
// in one leader epoch.
type shard struct {
	part    int32
	p       *partition.Partition
	epoch   int32
	ready   chan struct{} // closed once loaded (or failed: loadErr)
	loadErr error

	mu       sync.Mutex // guards the fields below
	store    *group.Store
	groups   map[string]*group.Group   // KIP-848 groups with members
	classic  map[string]*group.Classic // classic groups with members
	wake     chan struct{}             // closed when a classic group changes
	dropped  bool                      // the leadership ended: waiters give up
	snapAt   time.Time
	snapping bool
}

func newCoordinator(b *Broker) *coordinator {
	c := &coordinator{b: b, cfg: b.cfg.Groups, shards: map[int32]*shard{}, knownHW: map[group.TopicPartition]int64{}}
	c.metrics = newGroupMetrics(c)
	return c
}

func checkGroup(name string) error {
	if err := groupname.Check(name); err != nil {
		return fmt.Errorf("%w: %v", errInvalidGroup, err)
	}
	return nil
}

// offsetsTopic returns the offsets topic's metadata, if it exists.
func (c *coordinator) offsetsTopic() (cluster.Topic, bool) {
	t, ok := c.b.snapshot().Topics[group.OffsetsTopic]
	return t, ok
}

// shardOf returns the loaded shard of a group, or NOT_COORDINATOR.
func (c *coordinator) shardOf(ctx context.Context, name string) (*shard, error) {
	if err := checkGroup(name); err != nil {
		return nil, err
	}
	t, ok := c.offsetsTopic()
	if !ok {
		return nil, &notCoordinatorError{Group: name, LeaderID: -1}
	}
	part := group.Partition(name, t.Config.Partitions)
	sh, err := c.shardAt(ctx, part)
	var nc *notCoordinatorError
	if errors.As(err, &nc) {
		nc.Group = name
	}
	return sh, err
}

// shardAt returns the loaded shard of an offsets partition, loading it when
// this broker leads the partition in an epoch it has not loaded.
func (c *coordinator) shardAt(ctx context.Context, part int32) (*shard, error) {
	t, ok := c.offsetsTopic()
	if !ok || int(part) >= len(t.Partitions) {
		return nil, &notCoordinatorError{LeaderID: -1}
	}
	r := c.b.localReplica(group.OffsetsTopic, part)
	if r == nil || r.p.Role() != partition.RoleLeader {
		return nil, &notCoordinatorError{LeaderID: t.Partitions[part].Leader}
	}
	epoch := r.p.State().LeaderEpoch
	c.mu.Lock()
	sh := c.shards[part]
	if sh == nil || sh.p != r.p || sh.epoch != epoch {
		sh = &shard{part: part, p: r.p, epoch: epoch, ready: make(chan struct{}),
			store: group.NewStore(), groups: map[string]*group.Group{}, classic: map[string]*group.Classic{}, snapAt: time.Now()}
		c.shards[part] = sh
		c.b.bg.Add(1)
		go c.load(sh)
	}
	c.mu.Unlock()
	select {
	case <-sh.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if sh.loadErr != nil {
		return nil, sh.loadErr
	}
	return sh, nil
}

// load rebuilds a shard by reading its partition from the log start to the
// end it had when this broker took the leadership (everything after that
// is written by this shard), once that is committed.
func (c *coordinator) load(sh *shard) {
	defer c.b.bg.Done()
	defer close(sh.ready)
	start := time.Now()
	fail := func(err error) {
		sh.loadErr = fmt.Errorf("%w: loading the offsets of __consumer_offsets-%d: %v", errNotReady, sh.part, err)
		c.mu.Lock()
		if c.shards[sh.part] == sh {
			delete(c.shards, sh.part)
		}
		c.mu.Unlock()
	}
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for !sh.p.HWReady() {
		w := sh.p.Watch()
		if sh.p.Role() != partition.RoleLeader {
			fail(errors.New("lost the leadership"))
			return
		}
		select {
		case <-w:
		case <-deadline.C:
			fail(errors.New("the high watermark did not catch up within 30 s"))
			return
		case <-c.b.stopping:
			fail(errShuttingDown)
			return
		}
	}
	end := sh.p.LeaderStart()
	n, err := readOffsets(sh.p, end, func(r group.Record, at int64) { sh.store.Apply(r, at) })
	if err != nil {
		fail(err)
		return
	}
	c.b.log.Info("group coordinator loaded", "partition", sh.part, "epoch", sh.epoch, "records", n,
		"groups", len(sh.store.Groups()), "took", time.Since(start).Round(time.Millisecond))
}

// readOffsets applies every offsets record of p below end, in log order.
func readOffsets(p *partition.Partition, end int64, apply func(group.Record, int64)) (int, error) {
	off := p.State().LogStartOffset
	var buf []byte
	var recs []batch.Record
	n := 0
	for off < end {
		res, err := p.Read(buf[:0], off, 4<<20, partition.ReadUncommitted)
		if err != nil {
			return n, err
		}
		if res.NextOffset <= off {
			break
		}
		rest := res.Batches
		for len(rest) > 0 {
			var v batch.View
			if v, rest, err = batch.Next(rest); err != nil {
				return n, err
			}
			if recs, err = v.Records(recs[:0]); err != nil {
				return n, err
			}
			for _, br := range recs {
				if br.Offset >= end {
					continue
				}
				r, err := group.Decode(br.Value)
				if err != nil {
					continue // not ours to fail on: skip what cannot be read
				}
				apply(r, br.Offset)
				n++
			}
		}
		buf, off = res.Batches, res.NextOffset
	}
	return n, nil
}

// append writes records to the shard's partition with acks=all and returns
// the first one's offset once they are committed.
func (c *coordinator) append(ctx context.Context, sh *shard, recs []group.Record) (int64, error) {
	bld := batch.NewBuilder(batch.None)
	now := time.Now().UnixMilli()
	for _, r := range recs {
		bld.Add(&batch.Record{Timestamp: now, Key: r.Key(), Value: r.Encode()})
	}
	buf, err := bld.Build(nil)
	if err != nil {
		return 0, err
	}
	res, err := sh.p.Append(ctx, partition.AppendRequest{Batch: buf, LeaderEpoch: sh.epoch, ExpectedOffset: -1,
		Acks: partition.AcksAll, Timeout: 30 * time.Second})
	var nl *partition.NotLeaderError
	var ee *partition.EpochError
	if errors.As(err, &nl) || errors.As(err, &ee) || errors.Is(err, partition.ErrNotLeader) {
		c.drop(sh)
		return 0, &notCoordinatorError{LeaderID: -1}
	}
	return res.BaseOffset, err
}

// drop forgets a shard whose leadership ended.
func (c *coordinator) drop(sh *shard) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shards[sh.part] == sh {
		delete(c.shards, sh.part)
	}
	sh.mu.Lock()
	sh.dropped = true
	sh.changed() // classic joins and syncs waiting here answer NOT_COORDINATOR
	sh.mu.Unlock()
}

// run expires members, drops shards this broker no longer leads and
// writes snapshots, until the broker stops.
func (c *coordinator) run() {
	defer c.b.bg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.b.stopping:
			return
		case now := <-t.C:
			c.tick(now)
		}
	}
}

func (c *coordinator) tick(now time.Time) {
	c.maybeRefreshHW(now)
	c.mu.Lock()
	shards := make([]*shard, 0, len(c.shards))
	for _, sh := range c.shards {
		shards = append(shards, sh)
	}
	c.mu.Unlock()
	for _, sh := range shards {
		select {
		case <-sh.ready:
		default:
			continue
		}
		if sh.loadErr != nil {
			continue
		}
		if sh.p.Role() != partition.RoleLeader || sh.p.State().LeaderEpoch != sh.epoch {
			c.drop(sh)
			continue
		}
		sh.mu.Lock()
		for name, g := range sh.groups {
			before := g.Epoch
			if gone := g.Expire(now); len(gone) > 0 {
				c.b.log.Info("group members expired", "group", name, "members", gone)
			}
			c.metrics.rebalanced(name, before, g.Epoch)
			if g.Len() == 0 {
				delete(sh.groups, name)
			}
		}
		c.tickClassic(sh, now)
		snap := !sh.snapping && (sh.store.SinceSnapshot() >= c.cfg.SnapshotEvery ||
			sh.store.SinceSnapshot() > 0 && now.Sub(sh.snapAt) >= c.cfg.SnapshotInterval)
		var rec group.Record
		if snap {
			sh.snapping, rec = true, sh.store.Snapshot()
		}
		sh.mu.Unlock()
		if snap {
			c.b.bg.Add(1)
			go c.writeSnapshot(sh, rec)
		}
	}
}

// maybeRefreshHW re-reads, every 5 s and in the background, the high
// watermarks of the partitions the loaded groups committed, so the lag
// metric follows producers.
func (c *coordinator) maybeRefreshHW(now time.Time) {
	c.hwMu.Lock()
	due := now.Sub(c.hwRefresh) >= 5*time.Second
	if due {
		c.hwRefresh = now
	}
	c.hwMu.Unlock()
	if !due {
		return
	}
	tps := map[group.TopicPartition]bool{}
	c.mu.Lock()
	for _, sh := range c.shards {
		if sh.loaded() {
			sh.mu.Lock()
			for _, g := range sh.store.Groups() {
				for tp := range sh.store.Offsets(g) {
					tps[tp] = true
				}
			}
			sh.mu.Unlock()
		}
	}
	c.mu.Unlock()
	if len(tps) == 0 {
		return
	}
	c.b.bg.Add(1)
	go func() {
		defer c.b.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		for tp := range tps {
			if ctx.Err() != nil {
				return
			}
			c.logEnd(ctx, tp, 1<<62) // forces a fresh read
		}
	}()
}

// loaded reports whether the shard finished loading successfully.
func (sh *shard) loaded() bool {
	select {
	case <-sh.ready:
		return sh.loadErr == nil
	default:
		return false
	}
}

// writeSnapshot appends a snapshot record; applying it to the store resets
// the count of records since the last one.
func (c *coordinator) writeSnapshot(sh *shard, rec group.Record) {
	defer c.b.bg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	at, err := c.append(ctx, sh, []group.Record{rec})
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.snapping = false
	sh.snapAt = time.Now()
	if err != nil {
		c.b.log.Warn("offsets snapshot failed", "partition", sh.part, "err", err)
		return
	}
	sh.store.Apply(rec, at)
	c.b.log.Debug("offsets snapshot written", "partition", sh.part, "offset", at, "entries", len(rec.Entries))
}

// logEnd returns the high watermark of a partition: from the cache when it
// is at least min (HWs once seen stay valid: committed data is never
// taken back), else from the partition's leader.
func (c *coordinator) logEnd(ctx context.Context, tp group.TopicPartition, atLeast int64) (int64, error) {
	c.hwMu.Lock()
	hw, ok := c.knownHW[tp]
	c.hwMu.Unlock()
	if ok && hw >= atLeast {
		return hw, nil
	}
	_, pm, r, err := c.b.lookup(tp.Topic, tp.Partition)
	if err != nil {
		return -1, err
	}
	if r != nil && r.p.Role() == partition.RoleLeader {
		hw = r.p.State().HighWatermark
	} else {
		ic, err := c.b.peers.internal(pm.Leader)
		if err != nil {
			return -1, err
		}
		ll, err := ic.LocalLog(ctx, &pb.LocalLogRequest{Topic: tp.Topic, Partition: tp.Partition})
		if err != nil {
			return -1, err
		}
		hw = ll.HighWatermark
	}
	c.hwMu.Lock()
	if hw > c.knownHW[tp] {
		c.knownHW[tp] = hw
	}
	c.hwMu.Unlock()
	return hw, nil
}

// topics is the cluster's user topics and their partition counts.
func (c *coordinator) topics() map[string]int32 {
	snap := c.b.snapshot()
	out := make(map[string]int32, len(snap.Topics))
	for name, t := range snap.Topics {
		if !isInternalTopic(name) {
			out[name] = t.Config.Partitions
		}
	}
	return out
}

// fetchRacks returns the rack of the broker that serves tp's fetches (its
// leader; none without a leader or a rack), for the rack-aware assignment:
// consumers read from leaders, so a member in the leader's rack reads
// within its rack.
func (c *coordinator) fetchRacks(tp group.TopicPartition) []string {
	snap := c.b.snapshot()
	t, ok := snap.Topics[tp.Topic]
	if !ok || tp.Partition < 0 || int(tp.Partition) >= len(t.Partitions) {
		return nil
	}
	leader := t.Partitions[tp.Partition].Leader
	for _, bi := range snap.Brokers {
		if bi.ID == leader && bi.Rack != "" {
			return []string{bi.Rack}
		}
	}
	return nil
}

func isInternalTopic(name string) bool { return len(name) >= 2 && name[:2] == "__" }

// sortedTPs sorts topic partitions by topic, then partition.
func sortedTPs(s []group.TopicPartition) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].Topic != s[j].Topic {
			return s[i].Topic < s[j].Topic
		}
		return s[i].Partition < s[j].Partition
	})
}
