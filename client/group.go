package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/skeinlog/skein/proto/skeinv1"
)

// GroupConsumer is a member of a consumer group: the group's coordinator
// (a broker) assigns it a share of the partitions of the topics it
// subscribes to, and it reads them from the group's committed offsets.
//
// One goroutine heartbeats to the coordinator and applies the assignment it
// returns: new partitions start fetching at once (from the committed
// offset, or ResetOffset when there is none), partitions to give up stop
// fetching at once and are released from inside the next Poll or Next
// call: after OnRevoked, their positions are committed and the next
// heartbeat tells the coordinator, which only then gives them to their new
// owner. Partitions that stay are never paused.
//
// Delivery is at least once. Poll and Next consider every record they
// returned before the current call processed; automatic commits (the
// default) store those positions every CommitInterval, before a partition
// is released, and in Close. After a crash (or a member fenced for missing
// its session timeout), a partition's new owner starts from the last
// commit, so the records returned after it — at most a commit interval's
// worth, plus what the crashed caller had not finished — are delivered
// again. A record is never skipped: positions only move past records that
// were returned.
//
// Poll and Next may be called from one goroutine at a time; Commit,
// CommitRecords, Assignment and Close are safe from any.
type GroupConsumer struct {
	c      *Client
	group  string
	topics []string
	cfg    consumerConfig
	gcfg   groupConfig
	log    *slog.Logger

	ctx    context.Context // cancelled by Close: stops the heartbeat loop
	cancel context.CancelFunc
	loop   sync.WaitGroup // the heartbeat loop
	pumps  sync.WaitGroup // one per partition started
	items  chan groupItem
	wake   chan struct{} // cap 1: the heartbeat loop has news for Poll
	beat   chan struct{} // cap 1: Poll released partitions: heartbeat now

	mu       sync.Mutex // guards the fields below
	memberID string
	epoch    int32
	coord    string // the coordinator's address; "" to find
	parts    map[TopicPartition]*groupPart
	assigned []TopicPartition // started; OnAssigned not yet called
	revoked  []*groupPart     // stopped (still in parts); to commit and release in Poll
	settled  bool             // the coordinator's assignment is final
	failure  error            // ends Poll: the group cannot go on
	closed   bool

	commitMu sync.Mutex // serialises commits, so offsets never go back

	// Poll's state (one caller at a time).
	pollMu     sync.Mutex
	cur        []*Record // records Next has yet to hand out
	lastCommit time.Time
}

// groupPart is one partition the member owns.
type groupPart struct {
	tp       TopicPartition
	k        *Consumer
	stop     context.CancelFunc
	run      func()        // starts the pump, once the partition is registered
	done     chan struct{} // the pump ended
	atEnd    bool          // StopAtEnd: read to its end (Poll's goroutine)
	lost     bool          // fenced: released without a commit (guarded by mu)
	revoking bool          // stopped, waiting for Poll to release it (guarded by mu)
	ret      int64         // next offset after the records returned (guarded by mu)
	proc     int64         // next offset after the records processed (guarded by mu)
	commit   int64         // the committed position (guarded by commitMu)
}

// groupItem is what a partition's pump hands to Poll.
type groupItem struct {
	gp    *groupPart
	recs  []*Record
	atEnd bool
	err   error
}

// NewGroupConsumer joins group, subscribed to topics (or to TopicRegex),
// and returns the member; it starts heartbeating at once. Consumer options
// (FetchMaxBytes, StopAtEnd, ...) and the group options (ResetOffset,
// AutoCommit, CommitInterval, SessionTimeout, TopicRegex, GroupClientID,
// OnAssigned, OnRevoked) configure it. With StopAtEnd, Poll and Next
// return io.EOF once the member's assignment is settled and every partition
// it owns has been read to its end. Client.Close closes it too.
func (c *Client) NewGroupConsumer(group string, topics []string, opts ...ConsumerOpt) (*GroupConsumer, error) {
	cfg := defaultConsumerConfig()
	for _, o := range opts {
		o.applyConsumer(&cfg)
	}
	gcfg := *cfg.grp()
	if cfg.retryBackoff == 0 {
		cfg.retryBackoff = c.cfg.retryBackoff
	}
	if err := CheckGroupName(group); err != nil {
		return nil, err
	}
	if (len(topics) == 0) == (gcfg.regex == "") {
		return nil, fmt.Errorf("skein group consumer: subscribe to a list of topics or to a TopicRegex (one of them)")
	}
	for _, t := range topics {
		if err := checkTopicName(t); err != nil {
			return nil, err
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := gcfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &GroupConsumer{c: c, group: group, topics: topics, cfg: cfg, gcfg: gcfg, log: c.log.With("group", group),
		ctx: ctx, cancel: cancel, items: make(chan groupItem), wake: make(chan struct{}, 1), beat: make(chan struct{}, 1),
		parts: map[TopicPartition]*groupPart{}, lastCommit: time.Now()}
	if err := c.register(g); err != nil {
		cancel()
		return nil, err
	}
	g.loop.Add(1)
	go g.run()
	return g, nil
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Assignment returns the partitions the member owns now, sorted.
func (g *GroupConsumer) Assignment() []TopicPartition {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]TopicPartition, 0, len(g.parts))
	for tp := range g.parts {
		out = append(out, tp)
	}
	sortTPs(out)
	return out
}

func sortTPs(s []TopicPartition) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].Topic != s[j].Topic {
			return s[i].Topic < s[j].Topic
		}
		return s[i].Partition < s[j].Partition
	})
}

// Poll returns the records buffered now (at least one), waiting for some
// until ctx is done. Records returned by earlier calls count as processed.
// It returns io.EOF at the end (StopAtEnd), ErrClosed after Close, the
// error of a partition that failed (the others go on), or the error that
// stopped the member.
func (g *GroupConsumer) Poll(ctx context.Context) ([]*Record, error) {
	g.pollMu.Lock()
	defer g.pollMu.Unlock()
	g.processed()
	if len(g.cur) > 0 {
		out := g.cur
		g.cur = nil
		g.returned(out)
		return out, nil
	}
	recs, err := g.wait(ctx)
	if err == nil {
		g.returned(recs)
	}
	return recs, err
}

// Next returns one record; otherwise as Poll.
func (g *GroupConsumer) Next(ctx context.Context) (*Record, error) {
	g.pollMu.Lock()
	defer g.pollMu.Unlock()
	g.processed()
	if len(g.cur) == 0 {
		recs, err := g.wait(ctx)
		if err != nil {
			return nil, err
		}
		g.cur = recs
	}
	r := g.cur[0]
	g.cur = g.cur[1:]
	g.returned([]*Record{r})
	return r, nil
}

// processed marks every record returned so far as processed. pollMu held.
func (g *GroupConsumer) processed() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, gp := range g.parts {
		gp.proc = gp.ret
	}
}

// returned moves the positions past recs. pollMu held.
func (g *GroupConsumer) returned(recs []*Record) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range recs {
		if gp := g.parts[TopicPartition{r.Topic, r.Partition}]; gp != nil && r.Offset+1 > gp.ret {
			gp.ret = r.Offset + 1
		}
	}
}

// wait runs the group's chores and waits for records. pollMu held; the
// records are not yet marked returned (Next hands them out one by one).
func (g *GroupConsumer) wait(ctx context.Context) ([]*Record, error) {
	for {
		if err := g.chores(ctx); err != nil {
			return nil, err
		}
		if g.ended() {
			return nil, io.EOF
		}
		select {
		case it := <-g.items:
			recs, err := g.take(it)
			if err != nil || len(recs) > 0 {
				return recs, err
			}
		case <-g.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-g.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// take handles one pump item: records of a partition still owned, the end
// of a partition, or its error (an offset no longer in the log restarts
// the partition at ResetOffset).
func (g *GroupConsumer) take(it groupItem) ([]*Record, error) {
	g.mu.Lock()
	owned := g.parts[it.gp.tp] == it.gp && !it.gp.revoking
	g.mu.Unlock()
	switch {
	case !owned:
		return nil, nil
	case it.atEnd:
		it.gp.atEnd = true
		return nil, nil
	case it.err != nil && errors.Is(it.err, ErrOffsetOutOfRange):
		g.log.Warn("skein: committed offset no longer in the log; restarting at the reset offset", "partition", it.gp.tp, "reset", g.gcfg.reset, "err", it.err)
		g.restart(it.gp)
		return nil, nil
	case it.err != nil:
		return nil, fmt.Errorf("group %q: %w", g.group, it.err)
	}
	return it.recs, nil
}

// ended: StopAtEnd, the assignment is settled and every partition owned
// was read to its end.
func (g *GroupConsumer) ended() bool {
	if !g.cfg.stopAtEnd {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.settled || len(g.assigned) > 0 || len(g.revoked) > 0 {
		return false
	}
	for _, gp := range g.parts {
		if !gp.atEnd {
			return false
		}
	}
	return true
}

// chores runs, on Poll's goroutine: OnAssigned for new partitions, the
// release of revoked ones (OnRevoked, commit, tell the coordinator), and
// the automatic commit when its interval has passed.
func (g *GroupConsumer) chores(ctx context.Context) error {
	g.mu.Lock()
	assigned, revoked, failure := g.assigned, g.revoked, g.failure
	g.assigned, g.revoked = nil, nil
	g.mu.Unlock()
	if failure != nil {
		return failure
	}
	if len(assigned) > 0 && g.gcfg.onAssigned != nil {
		g.gcfg.onAssigned(assigned)
	}
	if len(revoked) > 0 {
		tps := make([]TopicPartition, 0, len(revoked))
		var keep []*groupPart
		for _, gp := range revoked {
			tps = append(tps, gp.tp)
			if !gp.lost {
				keep = append(keep, gp)
			}
		}
		sortTPs(tps)
		if g.gcfg.onRevoked != nil {
			g.gcfg.onRevoked(tps)
		}
		if !g.gcfg.noAutoCommit && len(keep) > 0 {
			if err := g.commitParts(ctx, keep, func(gp *groupPart) int64 { return gp.proc }); err != nil {
				g.log.Warn("skein: commit before releasing partitions failed; they will be read again from the last commit", "partitions", tps, "err", err)
			}
		}
		g.mu.Lock()
		g.releasedLocked(revoked)
		g.mu.Unlock()
		signal(g.beat)
	}
	if !g.gcfg.noAutoCommit && time.Since(g.lastCommit) >= g.gcfg.commitInterval {
		g.lastCommit = time.Now()
		if err := g.commitOwned(ctx, func(gp *groupPart) int64 { return gp.proc }); err != nil && !errors.Is(err, ErrClosed) {
			g.log.Warn("skein: automatic commit failed", "err", err)
		}
	}
	return nil
}

// releasedLocked forgets partitions Poll has finished giving up. g.mu held.
func (g *GroupConsumer) releasedLocked(gps []*groupPart) {
	for _, gp := range gps {
		if g.parts[gp.tp] == gp && gp.revoking {
			delete(g.parts, gp.tp)
		}
	}
}

// Commit stores the positions of every record returned so far by Poll and
// Next, for the partitions the member owns. It waits until the coordinator
// has committed them (replicated to the offsets partition's in-sync
// replicas). A member fenced by the coordinator gets ErrFencedMemberEpoch:
// nothing was stored, and its partitions will be read again from the last
// commit by whoever owns them next.
func (g *GroupConsumer) Commit(ctx context.Context) error {
	return g.commitOwned(ctx, func(gp *groupPart) int64 { return gp.ret })
}

// CommitRecords stores, for each partition among recs, the position after
// the highest of its records (only forward: a position at or below the
// committed one is skipped). Partitions the member does not own, or lost
// when the coordinator fenced it (even once it has rejoined and got them
// back), fail the whole commit with ErrFencedMemberEpoch: nothing is stored.
func (g *GroupConsumer) CommitRecords(ctx context.Context, recs ...*Record) error {
	want := map[TopicPartition]int64{}
	for _, r := range recs {
		tp := TopicPartition{r.Topic, r.Partition}
		want[tp] = max(want[tp], r.Offset+1)
	}
	g.mu.Lock()
	var gps []*groupPart
	for tp := range want {
		gp := g.parts[tp]
		if gp == nil {
			g.mu.Unlock()
			return fencedError("partition %s is not owned by this member of group %q", tp, g.group)
		}
		gps = append(gps, gp)
	}
	g.mu.Unlock()
	return g.commitParts(ctx, gps, func(gp *groupPart) int64 { return want[gp.tp] })
}

func (g *GroupConsumer) commitOwned(ctx context.Context, pos func(*groupPart) int64) error {
	g.mu.Lock()
	gps := make([]*groupPart, 0, len(g.parts))
	for _, gp := range g.parts {
		if !gp.lost {
			gps = append(gps, gp)
		}
	}
	g.mu.Unlock()
	return g.commitParts(ctx, gps, pos)
}

// commitParts commits pos(gp) for each partition where it moved forward.
func (g *GroupConsumer) commitParts(ctx context.Context, gps []*groupPart, pos func(*groupPart) int64) error {
	g.commitMu.Lock()
	defer g.commitMu.Unlock()
	req := &skeinv1.CommitOffsetsRequest{Group: g.group}
	var moved []*groupPart
	var offs []int64
	g.mu.Lock()
	req.MemberId, req.MemberEpoch = g.memberID, g.epoch
	for _, gp := range gps {
		if gp.lost {
			// Lost to a fencing: the member that read it is gone, and the
			// member id now is a new one's, which may own the partition
			// again from a later commit. Committing this position under
			// it would move the group's offset back.
			g.mu.Unlock()
			return fencedError("partition %s of group %q was lost when the member was fenced; its records will be read again from the last commit", gp.tp, g.group)
		}
		if p := pos(gp); p > gp.commit {
			req.Offsets = append(req.Offsets, &skeinv1.OffsetCommit{Topic: gp.tp.Topic, Partition: gp.tp.Partition, Offset: p})
			moved, offs = append(moved, gp), append(offs, p)
		}
	}
	g.mu.Unlock()
	if len(moved) == 0 {
		return nil
	}
	if req.MemberId == "" {
		return fencedError("not a member of group %q now (rejoining)", g.group)
	}
	err := g.coordCall(ctx, "commit offsets", func(ctx context.Context, gc skeinv1.GroupsClient) error {
		_, err := gc.CommitOffsets(ctx, req)
		return err
	})
	if err != nil {
		return err
	}
	for i, gp := range moved {
		gp.commit = offs[i]
	}
	return nil
}
