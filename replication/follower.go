package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/skeinlog/skein/partition"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// Follower copies one partition from its leader. It owns one goroutine,
// from StartFollower to Stop.
type Follower struct {
	cfg    Config
	p      *partition.Partition
	a      Assignment
	leader int32
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
}

// StartFollower starts following leader for the assignment's epoch. The
// partition must already be a follower of that epoch.
func StartFollower(cfg Config, p *partition.Partition, a Assignment, leader int32) *Follower {
	cfg.fill()
	ctx, cancel := context.WithCancel(context.Background())
	f := &Follower{
		cfg: cfg, p: p, a: a, leader: leader, cancel: cancel, done: make(chan struct{}),
		log: cfg.Logger.With("topic", a.Topic, "partition", a.Partition, "role", "follower", "leader", leader, "epoch", a.LeaderEpoch),
	}
	go f.run(ctx)
	return f
}

// Leader and Epoch say whom the follower follows.
func (f *Follower) Leader() int32 { return f.leader }
func (f *Follower) Epoch() int32  { return f.a.LeaderEpoch }

// Stop ends the follower and waits for its goroutine.
func (f *Follower) Stop() {
	f.cancel()
	<-f.done
}

func (f *Follower) run(ctx context.Context) {
	defer close(f.done)
	backoff := f.cfg.RetryBackoff
	pause := func() bool {
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(2*backoff, 2*time.Second)
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for ctx.Err() == nil {
		// A log found damaged reports no position: the leader takes the
		// fetch offset as the follower's position (ISR, HW), and the
		// owner reopens the replica, which cuts its log at the damage.
		if err := f.p.Usable(); err != nil {
			f.log.Debug("the replica's log is not usable; its owner reopens it", "err", err)
			if !pause() {
				return
			}
			continue
		}
		if err := f.truncate(ctx); err != nil {
			if ctx.Err() == nil {
				f.log.Debug("truncation by epoch failed; retrying", "err", err)
			}
			if !pause() {
				return
			}
			continue
		}
		backoff = f.cfg.RetryBackoff
		err := f.fetchLoop(ctx)
		if ctx.Err() != nil {
			return
		}
		f.log.Debug("fetching stopped; retrying", "err", err)
		if !pause() {
			return
		}
	}
}

// truncate cuts any suffix the leader does not have (KIP-101/279).
func (f *Follower) truncate(ctx context.Context) error {
	if err := f.p.Settle(); err != nil {
		return err
	}
	latest := f.p.LatestEpoch()
	if latest < 0 {
		return nil // an empty history has nothing to diverge
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := f.cfg.Transport.OffsetForLeaderEpoch(cctx, f.leader, &pb.OffsetForLeaderEpochRequest{
		Topic: f.a.Topic, Partition: f.a.Partition, ReplicaId: f.cfg.Self,
		CurrentLeaderEpoch: f.a.LeaderEpoch, LeaderEpoch: latest,
	})
	if err != nil {
		return err
	}
	if resp.Error != nil {
		return errors.New(resp.Error.Message)
	}
	_, hw, leo := f.p.Offsets()
	_, ownEnd := f.p.EndOffsetForEpoch(resp.LeaderEpoch)
	to := truncationPoint(leo, resp.EndOffset, ownEnd, resp.LeaderEpoch)
	if to < 0 {
		to = hw
	}
	if to < leo {
		f.log.Info("truncating a suffix the leader does not have", "from", leo, "to", to, "leader_epoch_end", resp.EndOffset, "epoch", resp.LeaderEpoch)
		if _, err := f.p.TruncateTo(max(to, hw)); err != nil {
			return err
		}
	}
	return nil
}

// fetchLoop copies batches until an error that needs a new truncation or
// new metadata.
func (f *Follower) fetchLoop(ctx context.Context) error {
	for {
		_, _, leo := f.p.Offsets()
		maxBytes := f.cfg.FetchMaxBytes
		throttled, rate := f.cfg.Throttle.throttled(f.a.Topic, f.a.Partition)
		if throttled {
			maxBytes = f.cfg.Throttle.fetchBytes(rate, maxBytes)
		}
		cctx, cancel := context.WithTimeout(ctx, f.cfg.FetchWait+10*time.Second)
		resp, err := f.cfg.Transport.ReplicaFetch(cctx, f.leader, &pb.ReplicaFetchRequest{
			Topic: f.a.Topic, Partition: f.a.Partition, ReplicaId: f.cfg.Self,
			LeaderEpoch: f.a.LeaderEpoch, FetchOffset: leo,
			MaxBytes: int32(maxBytes), MaxWaitMs: int32(f.cfg.FetchWait / time.Millisecond),
		})
		cancel()
		if err != nil {
			return err
		}
		if e := resp.Error; e != nil {
			if e.Reason == pb.ErrorReason_OFFSET_OUT_OF_RANGE && e.LogStartOffset > leo {
				// The leader deleted what we lack: start over at its log start.
				f.log.Warn("leader's log starts past ours; resetting", "our_end", leo, "leader_start", e.LogStartOffset)
				if err := f.p.Reset(e.LogStartOffset); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("leader %d: %s (%s)", f.leader, e.Message, e.Reason)
		}
		if len(resp.Batches) > 0 {
			f.cfg.trace(partition.StepFetched, f.cfg.Self, func() int64 { return batchesEnd(resp.Batches, leo) })
			if leo, err = f.p.AppendReplicated(resp.Batches); err != nil {
				return err
			}
			f.cfg.trace(partition.StepReplicated, f.cfg.Self, func() int64 { return leo })
		}
		f.p.SetHighWatermark(min(resp.HighWatermark, leo))
		if throttled && len(resp.Batches) > 0 {
			if err := sleepCtx(ctx, f.cfg.Throttle.spend(len(resp.Batches), f.cfg.Now())); err != nil {
				return err
			}
		}
	}
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
