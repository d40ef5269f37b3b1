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
		if r := p.unrecovered; r != nil {
			// An earlier failed append could not even be cut back (no
			// space): try again before anything else.
			if err := p.recoverAppend(r.leo, r.epochs); err != nil {
				return fmt.Errorf("%w: cutting the log back to %d after a failed replicated append: %v; retrying later", ErrStorage, r.leo, err)
			}
			p.unrecovered = nil
			p.log2.Info("log cut back after the failed replicated append; fetching again", "log_end", r.leo)
		}
		var entries []wal.Entry
		type epochStart struct {
			epoch int32
			start int64
		}
		var newEpochs []epochStart
		latest := p.LatestEpoch()
		for rest := batches; len(rest) > 0; {
			v, r, err := batch.Next(rest)
			if err != nil {
				return fmt.Errorf("%w: replicated batch at offset %d: %v", ErrInvalidBatch, next, err)
			}
			if v.MagicByte() != batch.Magic || !v.VerifyCRC() || v.RecordCount() < 1 || v.LastOffsetDelta() != v.RecordCount()-1 {
				return fmt.Errorf("%w: replicated batch at offset %d fails its checks", ErrInvalidBatch, v.BaseOffset())
			}
			if v.BaseOffset() != next {
				return fmt.Errorf("%w: replicated batch starts at %d, log ends at %d", ErrInvalidBatch, v.BaseOffset(), next)
			}
			if e := v.LeaderEpoch(); e > latest {
				newEpochs = append(newEpochs, epochStart{e, next})
				latest = e
			} else if e < latest {
				return fmt.Errorf("%w: replicated batch at %d has epoch %d, older than %d", ErrInvalidBatch, next, e, latest)
			}
			entries = append(entries, wal.Entry{BaseOffset: next, LastOffset: v.LastOffset(), MaxTimestamp: v.MaxTimestamp(), Data: v})
			next = v.NextOffset()
			rest = r
		}
		if len(entries) == 0 {
			leo = next
			return nil
		}
		if len(newEpochs) > 0 {
			p.mu.Lock()
			for _, e := range newEpochs {
				p.epochs.assign(e.epoch, e.start)
			}
			err := p.saveEpochs()
			p.mu.Unlock()
			if err != nil {
				return fmt.Errorf("%w: save leader epochs: %v", ErrStorage, err)
			}
		}
		if err := p.log.Append(entries...); err != nil {
			if errors.Is(err, errDamagedLog) {
				// The lazily opened log was found damaged: its owner
				// reopens the partition (OnDamage).
				return fmt.Errorf("%w: %v", ErrStorage, err)
			}
			// A follower has reported nothing of this append to the leader:
			// cut the log back to where it was (reopening it repairs a
			// partial write) and let the follower fetch the batches again
			// later (out of space, an I/O error). Only if that fails does
			// the partition stop.
			prev := entries[0].BaseOffset
			p.log2.Error("replicated append failed; cutting the log back and retrying later", "err", err, "log_end", prev)
			rerr := p.recoverAppend(prev, len(newEpochs) > 0)
			if rerr == nil {
				return fmt.Errorf("%w: replicated append at offset %d: %v; nothing was appended", ErrStorage, prev, err)
			}
			if errors.Is(rerr, syscall.ENOSPC) {
				// Cutting the log back rewrites its tail segment, which
				// needs space too. Nothing of this append was reported
				// to the leader: keep the partition out of service and
				// cut it back at the next replicated append.
				p.log2.Error("cannot cut the log back yet (disk full); retrying at the next fetch", "err", rerr, "log_end", prev)
				p.unrecovered = &unrecoveredAppend{leo: prev, epochs: len(newEpochs) > 0}
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
		// The leader checked these batches' sequences: record them so that
		// this replica deduplicates the same way if it becomes the leader.
		now, bytes := p.cfg.Now().UnixMilli(), 0
		for _, e := range entries {
			p.producers.replay(batch.View(e.Data), now)
			bytes += len(e.Data)
		}
		p.afterAppend(bytes, next)
		p.mu.Lock()
		p.leo, p.written, leo = next, next, next
		p.broadcastLocked()
		p.mu.Unlock()
		return nil
	})
	return leo, err
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

// unrecoveredAppend is a failed replicated append whose log could not be
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
