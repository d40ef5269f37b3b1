package partition

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/wal"
)

// AppendReplicated appends batches copied from the leader, as they are
// (already stamped with offsets and epochs), and returns the new LEO. They
// must start exactly at the LEO and be contiguous. The batches are fsynced
// before it returns, so the LEO it returns is what this replica may report
// to the leader. Only a follower takes replicated appends.
func (p *Partition) AppendReplicated(batches []byte) (int64, error) {
	var leo int64
	err := p.do(func() error {
		p.mu.Lock()
		role, next, failed := p.role, p.leo, p.failed
		p.mu.Unlock()
		if failed != nil {
			return fmt.Errorf("%w: the log failed earlier: %v", ErrStorage, failed)
		}
		if role == RoleLeader {
			return fmt.Errorf("%w: a leader does not take replicated batches", ErrNotLeader)
		}
		if err := p.retryRecovery(); err != nil {
			return err
		}
		plan, err := planReplicated(batches, next, p.LatestEpoch())
		if err != nil {
			return err
		}
		if len(plan.entries) == 0 {
			leo = next
			return nil
		}
		if len(plan.newEpochs) > 0 {
			p.mu.Lock()
			for _, e := range plan.newEpochs {
				p.epochs.assign(e.epoch, e.start)
			}
			err := p.saveEpochs()
			p.mu.Unlock()
			if err != nil {
				return fmt.Errorf("%w: save leader epochs: %v", ErrStorage, err)
			}
		}
		if err := p.log.Append(plan.entries...); err != nil {
			return p.replicatedAppendFailed(err, plan)
		}
		// The leader checked these batches' sequences: record them so that
		// this replica deduplicates the same way if it becomes the leader.
		if err := p.indexReplicated(plan.entries); err != nil {
			return p.replicatedAppendFailed(err, plan)
		}
		now, bytes := p.cfg.Now().UnixMilli(), 0
		for _, e := range plan.entries {
			p.producers.replay(batch.View(e.Data), now)
			bytes += len(e.Data)
		}
		p.afterAppend(bytes, plan.next)
		p.mu.Lock()
		p.leo, p.written, leo = plan.next, plan.next, plan.next
		p.broadcastLocked()
		p.mu.Unlock()
		return nil
	})
	return leo, err
}

// epochStart is the first offset of a leader epoch.
type epochStart struct {
	epoch int32
	start int64
}

// replicatedPlan is what a replicated append writes: the entries, the
// leader epochs that start in them, and the LEO after them.
type replicatedPlan struct {
	entries   []wal.Entry
	newEpochs []epochStart
	next      int64
}

// planReplicated checks batches copied from the leader against a log that
// ends at next with latest as its latest epoch: each batch parses, passes
// its CRC and header checks, starts where the one before it ended (the
// first at next), and has an epoch no older than the one before it (an
// epoch that is newer starts there). Any failure refuses the whole copy.
// Pure.
func planReplicated(batches []byte, next int64, latest int32) (replicatedPlan, error) {
	plan := replicatedPlan{next: next}
	for rest := batches; len(rest) > 0; {
		v, r, err := batch.Next(rest)
		if err != nil {
			return replicatedPlan{next: next}, fmt.Errorf("%w: replicated batch at offset %d: %v", ErrInvalidBatch, plan.next, err)
		}
		// A compacted leader's batches may hold fewer records than
		// offsets (even none): the cleaner keeps their offsets' place.
		if _, err := batch.CheckStored(v); err != nil {
			return replicatedPlan{next: next}, fmt.Errorf("%w: replicated batch at offset %d fails its checks: %v", ErrInvalidBatch, v.BaseOffset(), err)
		}
		if v.BaseOffset() != plan.next {
			return replicatedPlan{next: next}, fmt.Errorf("%w: replicated batch starts at %d, log ends at %d", ErrInvalidBatch, v.BaseOffset(), plan.next)
		}
		if e := v.LeaderEpoch(); e > latest {
			plan.newEpochs = append(plan.newEpochs, epochStart{e, plan.next})
			latest = e
		} else if e < latest {
			return replicatedPlan{next: next}, fmt.Errorf("%w: replicated batch at %d has epoch %d, older than %d", ErrInvalidBatch, plan.next, e, latest)
		}
		plan.entries = append(plan.entries, wal.Entry{BaseOffset: plan.next, LastOffset: v.LastOffset(), MaxTimestamp: v.MaxTimestamp(), Data: v})
		plan.next = v.NextOffset()
		rest = r
	}
	return plan, nil
}

// retryRecovery cuts the log back if an earlier failed append (a leader's
// group or a replicated one) could not be cut back (no space), before
// anything else is appended. Loop only.
func (p *Partition) retryRecovery() error {
	r := p.unrecovered
	if r == nil {
		return nil
	}
	if err := p.recoverAppend(r.leo, r.epochs); err != nil {
		return fmt.Errorf("%w: cutting the log back to %d after a failed append: %v; retrying later", ErrStorage, r.leo, err)
	}
	p.unrecovered = nil
	p.log2.Info("log cut back after the failed append; taking writes again", "log_end", r.leo)
	return nil
}

// replicatedAppendFailed handles a failed replicated append. A follower has
// reported nothing of it to the leader, so the log is cut back to where it
// was (reopening it repairs a partial write) and the follower fetches the
// batches again later (out of space, an I/O error). If the cut itself
// needs space that is not there, it is retried at the next append; if it
// fails otherwise, the partition stops. Loop only.
func (p *Partition) replicatedAppendFailed(err error, plan replicatedPlan) error {
	if errors.Is(err, errDamagedLog) {
		// The lazily opened log was found damaged: its owner reopens the
		// partition (OnDamage).
		return fmt.Errorf("%w: %v", ErrStorage, err)
	}
	prev, epochs := plan.entries[0].BaseOffset, len(plan.newEpochs) > 0
	p.log2.Error("replicated append failed; cutting the log back and retrying later", "err", err, "log_end", prev)
	rerr := p.recoverAppend(prev, epochs)
	if rerr == nil {
		return fmt.Errorf("%w: replicated append at offset %d: %v; nothing was appended", ErrStorage, prev, err)
	}
	if errors.Is(rerr, syscall.ENOSPC) {
		// Cutting the log back rewrites its tail segment, which needs
		// space too. Nothing of this append was reported to the leader:
		// keep the partition out of service and cut it back at the next
		// replicated append.
		p.log2.Error("cannot cut the log back yet (disk full); retrying at the next fetch", "err", rerr, "log_end", prev)
		p.unrecovered = &unrecoveredAppend{leo: prev, epochs: epochs}
		return fmt.Errorf("%w: replicated append at offset %d: %v; nothing was reported, and the log is cut back once there is space", ErrStorage, prev, err)
	}
	p.log2.Error("log recovery after a failed replicated append failed", "err", rerr)
	p.mu.Lock()
	p.failed = err
	p.broadcastLocked()
	p.mu.Unlock()
	if p.cfg.OnFatal != nil {
		p.cfg.OnFatal(fmt.Errorf("partition %s-%d: replicated append: %w", p.cfg.Topic, p.cfg.Partition, err))
	}
	return fmt.Errorf("%w: %v", ErrStorage, err)
}

// Reset empties the log and restarts it at offset next, for a follower whose
// leader no longer holds the records below next (deleted by retention).
// Everything below next is committed, so the HW moves to next.
func (p *Partition) Reset(next int64) error {
	return p.do(func() error {
		p.mu.Lock()
		role := p.role
		p.mu.Unlock()
		if role == RoleLeader {
			return fmt.Errorf("%w: a leader does not reset its log", ErrNotLeader)
		}
		if err := p.log.Reset(next); err != nil {
			return fmt.Errorf("%w: reset to %d: %v", ErrStorage, next, err)
		}
		p.clearProducers()
		p.resetKeys(next)
		p.mu.Lock()
		defer p.mu.Unlock()
		p.leo, p.written, p.logStart, p.hw = next, next, next, next
		p.epochs.entries = nil
		if err := p.saveEpochs(); err != nil {
			return fmt.Errorf("%w: save leader epochs: %v", ErrStorage, err)
		}
		p.broadcastLocked()
		return nil
	})
}

// unrecoveredAppend is a failed append whose log could not be
// cut back yet: the log must end at leo again (and lose the epochs the
// append added, if epochs) before it takes anything else.
type unrecoveredAppend struct {
	leo    int64
	epochs bool
}

// recoverAppend cuts the log back to leo after a failed replicated append
// (reopening it repairs a partial write) and, if the append added leader
// epochs, drops them.
func (p *Partition) recoverAppend(leo int64, epochs bool) error {
	if err := p.reopenAt(leo); err != nil {
		return err
	}
	if !epochs {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.epochs.truncateAfter(leo) {
		return p.saveEpochs()
	}
	return nil
}
