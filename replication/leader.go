package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/skeinlog/skein/partition"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// Transport carries a follower's requests to the leader of a partition.
// The broker implements it over gRPC; tests can cut, delay or drop links.
type Transport interface {
	ReplicaFetch(ctx context.Context, leader int32, req *pb.ReplicaFetchRequest) (*pb.ReplicaFetchResponse, error)
	OffsetForLeaderEpoch(ctx context.Context, leader int32, req *pb.OffsetForLeaderEpochRequest) (*pb.OffsetForLeaderEpochResponse, error)
}

// ISRChanger takes a leader's ISR change to the controller.
type ISRChanger interface {
	AlterPartition(ctx context.Context, req *pb.AlterPartitionRequest) (*pb.AlterPartitionResponse, error)
}

// Config configures the leaders and followers of one broker.
type Config struct {
	Self int32
	// LagTime is replica.lag.time.max: a follower that has not caught up
	// with the leader for this long leaves the ISR (default 10 s).
	LagTime time.Duration
	// FetchWait bounds a follower's long-poll (default 500 ms).
	FetchWait time.Duration
	// FetchMaxBytes bounds one fetch (default 4 MiB).
	FetchMaxBytes int
	// RetryBackoff is a follower's pause after an error (default 100 ms,
	// doubling to 2 s).
	RetryBackoff time.Duration
	Transport    Transport
	Controller   ISRChanger
	Logger       *slog.Logger
	Now          func() time.Time
	// Trace, when set, is told as appends pass the replication steps (see
	// partition.Step); for latency breakdowns in benchmarks.
	Trace partition.Tracer
	// Throttle, when set, is the byte budget of the followers catching up
	// in a reassignment.
	Throttle *Throttle
	// OnISRChange, when set, is told how many replicas joined and left an
	// ISR at each committed change a leader made.
	OnISRChange func(joined, left int)
}

func (c *Config) fill() {
	if c.LagTime <= 0 {
		c.LagTime = 10 * time.Second
	}
	if c.FetchWait <= 0 {
		c.FetchWait = 500 * time.Millisecond
	}
	if c.FetchMaxBytes <= 0 {
		c.FetchMaxBytes = 4 << 20
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 100 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Assignment is a partition's leadership as committed in the metadata.
type Assignment struct {
	Topic          string
	Partition      int32
	LeaderEpoch    int32
	PartitionEpoch int32
	Replicas       []int32
	ISR            []int32
}

// Leader tracks the followers of one partition this broker leads and moves
// its high watermark. It owns no goroutine except while an ISR change is on
// its way to the controller; Tick runs on the caller's.
type Leader struct {
	cfg Config
	p   *partition.Partition
	log *slog.Logger

	mu       sync.Mutex // guards the fields below
	a        Assignment
	pos      map[int32]*followerPos
	altering bool      // an AlterPartition is in flight
	proposed []int32   // its ISR, while in flight
	backoff  time.Time // no new ISR change before this (after a refusal)
	stopped  bool
	wg       sync.WaitGroup // the in-flight AlterPartition
	cancel   context.CancelFunc
	ctx      context.Context
}

// NewLeader starts tracking a partition this broker now leads.
func NewLeader(cfg Config, p *partition.Partition, a Assignment) *Leader {
	cfg.fill()
	ctx, cancel := context.WithCancel(context.Background())
	l := &Leader{
		cfg: cfg, p: p, a: a, ctx: ctx, cancel: cancel,
		log: cfg.Logger.With("topic", a.Topic, "partition", a.Partition, "role", "leader"),
		pos: map[int32]*followerPos{},
	}
	now := cfg.Now()
	for _, id := range a.Replicas {
		if id != cfg.Self {
			// Followers in the ISR get a full lag period to show up.
			l.pos[id] = &followerPos{leo: -1, caughtUp: now}
		}
	}
	l.mu.Lock()
	l.soloLocked()
	l.mu.Unlock()
	return l
}

// soloLocked lets the HW follow the leader's LEO when the leader is alone
// in its maximal ISR. l.mu held.
func (l *Leader) soloLocked() {
	isr := l.maximalISRLocked()
	l.p.SetSolo(len(isr) == 1 && isr[0] == l.cfg.Self)
}

// Update applies a newer committed assignment with the same leader epoch
// (an ISR change).
func (l *Leader) Update(a Assignment) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.LeaderEpoch != l.a.LeaderEpoch || a.PartitionEpoch < l.a.PartitionEpoch {
		return
	}
	for _, id := range l.a.ISR {
		if !slices.Contains(a.ISR, id) && id != l.cfg.Self {
			// Out of the ISR (fenced, or shrunk): it must fetch again
			// before it can count as caught up.
			l.pos[id] = &followerPos{leo: -1}
		}
	}
	l.a = a
	for _, id := range a.Replicas {
		if _, ok := l.pos[id]; !ok && id != l.cfg.Self {
			l.pos[id] = &followerPos{leo: -1, caughtUp: l.cfg.Now()}
		}
	}
	l.p.UpdateISR(len(a.ISR))
	l.soloLocked()
	l.advanceLocked()
}

// Epoch is the leader epoch tracked.
func (l *Leader) Epoch() int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.a.LeaderEpoch
}

// Stop ends the tracking and waits for an in-flight ISR change.
func (l *Leader) Stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	l.cancel()
	l.wg.Wait()
}

// maximalISRLocked is the committed ISR plus replicas a pending change adds:
// the set the HW must wait for. l.mu held.
func (l *Leader) maximalISRLocked() []int32 {
	isr := slices.Clone(l.a.ISR)
	if l.altering {
		for _, id := range l.proposed {
			if !slices.Contains(isr, id) {
				isr = append(isr, id)
			}
		}
	}
	return isr
}

// advanceLocked recomputes the HW from the followers' positions. l.mu held.
func (l *Leader) advanceLocked() {
	_, hw, leo := l.p.Offsets()
	if next := highWatermark(l.cfg.Self, leo, hw, l.maximalISRLocked(), l.pos); next > hw {
		l.p.SetHighWatermark(next)
	}
}

// HandleFetch serves a follower's ReplicaFetch: it records the follower's
// position, moves the HW, waits (up to max_wait_ms) for data past the
// follower's end, and returns it.
func (l *Leader) HandleFetch(ctx context.Context, req *pb.ReplicaFetchRequest) (*pb.ReplicaFetchResponse, error) {
	l.mu.Lock()
	a := l.a
	if !slices.Contains(a.Replicas, req.ReplicaId) || req.ReplicaId == l.cfg.Self {
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: broker %d is not a follower of %s-%d (replicas %v)", partition.ErrNotLeader, req.ReplicaId, a.Topic, a.Partition, a.Replicas)
	}
	if req.LeaderEpoch != a.LeaderEpoch {
		l.mu.Unlock()
		return nil, &partition.EpochError{Requested: req.LeaderEpoch, Current: a.LeaderEpoch}
	}
	start, _, leo := l.p.Offsets()
	// An offset no log can end at is a malformed request, not a position:
	// it must not touch the follower's state (a negative one would look
	// like a lost log and drop the follower from the ISR).
	if written := l.p.WrittenEnd(); req.FetchOffset > written || req.FetchOffset < 0 {
		l.mu.Unlock()
		return nil, &partition.OutOfRangeError{Offset: req.FetchOffset, LogStartOffset: start, HighWatermark: written}
	}
	f := l.pos[req.ReplicaId]
	if _, hw, _ := l.p.Offsets(); !f.lost && lostCommitted(slices.Contains(l.a.ISR, req.ReplicaId), req.FetchOffset, hw) {
		f.lost = true
		l.log.Warn("an in-sync follower fetches below the high watermark: it lost committed records; dropping it from the ISR",
			"follower", req.ReplicaId, "fetch_offset", req.FetchOffset, "hw", hw)
		l.shrinkLocked(true)
	}
	l.cfg.trace(partition.StepReported, req.ReplicaId, func() int64 { return req.FetchOffset })
	observeFetch(f, req.FetchOffset, leo, l.cfg.Now())
	l.advanceLocked()
	l.maybeExpandLocked()
	l.mu.Unlock()

	if req.FetchOffset < start {
		_, hw, _ := l.p.Offsets()
		return nil, &partition.OutOfRangeError{Offset: req.FetchOffset, LogStartOffset: start, HighWatermark: hw}
	}
	// Long-poll until there is something past the follower's end.
	wait := time.Duration(req.MaxWaitMs) * time.Millisecond
	if wait <= 0 || wait > l.cfg.FetchWait {
		wait = l.cfg.FetchWait
	}
	maxBytes := int(req.MaxBytes)
	if maxBytes <= 0 || maxBytes > l.cfg.FetchMaxBytes {
		maxBytes = l.cfg.FetchMaxBytes
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		watch := l.p.Watch()
		res, err := l.p.Read(nil, req.FetchOffset, maxBytes, partition.ReadUncommitted)
		if err != nil {
			return nil, err
		}
		if len(res.Batches) > 0 || l.p.Role() != partition.RoleLeader {
			l.cfg.trace(partition.StepServed, req.ReplicaId, func() int64 { return batchesEnd(res.Batches, req.FetchOffset) })
			return &pb.ReplicaFetchResponse{Batches: res.Batches, HighWatermark: res.HighWatermark,
				LogStartOffset: res.LogStartOffset, LogEndOffset: res.LogEndOffset}, nil
		}
		select {
		case <-watch:
			// The leader's own fsync may be what the HW waited for: the
			// followers can be ahead of it (they copy written, unsynced
			// batches), so recompute it now rather than at their next fetch.
			l.mu.Lock()
			l.advanceLocked()
			l.mu.Unlock()
			// An HW move alone is worth telling the follower about too.
			if _, hw, _ := l.p.Offsets(); hw != res.HighWatermark {
				return &pb.ReplicaFetchResponse{HighWatermark: hw, LogStartOffset: res.LogStartOffset, LogEndOffset: res.LogEndOffset}, nil
			}
		case <-timer.C:
			return &pb.ReplicaFetchResponse{HighWatermark: res.HighWatermark, LogStartOffset: res.LogStartOffset, LogEndOffset: res.LogEndOffset}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-l.ctx.Done():
			return nil, fmt.Errorf("%w: leadership of %s-%d ended", partition.ErrNotLeader, a.Topic, a.Partition)
		}
	}
}

// Tick checks for followers that fell out of sync. The broker calls it
// periodically (every LagTime/2 or more often).
func (l *Leader) Tick() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.shrinkLocked(false)
}

// shrinkLocked proposes an ISR without the followers that fell out of sync
// or lost data; now skips the backoff after a refused change. l.mu held.
func (l *Leader) shrinkLocked(now bool) {
	if l.altering || l.stopped || !now && l.cfg.Now().Before(l.backoff) {
		return
	}
	_, _, leo := l.p.Offsets()
	if isr := shrinkISR(l.cfg.Self, l.a.ISR, l.pos, leo, l.cfg.Now(), l.cfg.LagTime); isr != nil {
		l.log.Warn("followers fell behind; shrinking the ISR", "isr", l.a.ISR, "new_isr", isr, "lag_time", l.cfg.LagTime)
		l.alterLocked(isr)
	}
}

// maybeExpandLocked asks to add caught-up replicas to the ISR. l.mu held.
func (l *Leader) maybeExpandLocked() {
	if l.altering || l.stopped || l.cfg.Now().Before(l.backoff) {
		return
	}
	_, hw, _ := l.p.Offsets()
	if isr := expandISR(l.a.ISR, l.a.Replicas, l.pos, hw, l.p.LeaderStart()); isr != nil {
		l.log.Info("followers caught up; expanding the ISR", "isr", l.a.ISR, "new_isr", isr)
		l.alterLocked(isr)
	}
}

// alterLocked sends an ISR change to the controller in the background.
// l.mu held.
func (l *Leader) alterLocked(isr []int32) {
	if l.cfg.Controller == nil {
		return
	}
	l.altering, l.proposed = true, isr
	// A joining replica counts toward the HW from now on.
	l.soloLocked()
	req := &pb.AlterPartitionRequest{
		Topic: l.a.Topic, Partition: l.a.Partition, LeaderId: l.cfg.Self,
		LeaderEpoch: l.a.LeaderEpoch, PartitionEpoch: l.a.PartitionEpoch, NewIsr: isr,
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
		resp, err := l.cfg.Controller.AlterPartition(ctx, req)
		cancel()
		l.mu.Lock()
		defer l.mu.Unlock()
		l.altering, l.proposed = false, nil
		defer l.soloLocked()
		if err == nil && resp.Error != nil {
			err = errors.New(resp.Error.Message)
		}
		if err != nil {
			if l.ctx.Err() == nil {
				l.log.Warn("ISR change refused or failed; will retry", "new_isr", isr, "err", err)
			}
			l.backoff = l.cfg.Now().Add(time.Second)
			return
		}
		if pm := resp.Partition; pm != nil && resp.PartitionEpoch > l.a.PartitionEpoch && pm.LeaderEpoch == l.a.LeaderEpoch {
			for _, id := range l.a.ISR {
				if f := l.pos[id]; f != nil && !slices.Contains(pm.Isr, id) {
					f.lost = false // out of the ISR: it rejoins once caught up
				}
			}
			if l.cfg.OnISRChange != nil {
				l.cfg.OnISRChange(countMissing(pm.Isr, l.a.ISR), countMissing(l.a.ISR, pm.Isr))
			}
			l.a.ISR, l.a.PartitionEpoch = slices.Clone(pm.Isr), resp.PartitionEpoch
			l.log.Info("ISR changed", "isr", l.a.ISR, "partition_epoch", l.a.PartitionEpoch)
			l.p.UpdateISR(len(l.a.ISR))
			l.advanceLocked()
		}
	}()
}

// countMissing counts the members of a not in b.
func countMissing(a, b []int32) int {
	n := 0
	for _, id := range a {
		if !slices.Contains(b, id) {
			n++
		}
	}
	return n
}

// FollowerState is what a leader knows of one follower.
type FollowerState struct {
	ID int32
	// LEO is its log end offset at its last fetch; -1: not fetched yet.
	LEO int64
	// CaughtUp is the last time it had everything the leader had.
	CaughtUp time.Time
}

// Followers reports the followers' positions.
func (l *Leader) Followers() []FollowerState {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]FollowerState, 0, len(l.pos))
	for _, id := range l.a.Replicas {
		if f, ok := l.pos[id]; ok {
			out = append(out, FollowerState{ID: id, LEO: f.leo, CaughtUp: f.caughtUp})
		}
	}
	return out
}
