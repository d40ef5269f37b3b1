package broker

// This file applies each topic's retention to the local replicas, at the
// interval the retention.check.interval setting gives.

import (
	"errors"
	"time"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/partition"
)

// retentionLoop applies each topic's retention to every local replica.
func (b *Broker) retentionLoop() {
	defer b.bg.Done()
	t := time.NewTimer(b.dyn.retentionInterval())
	defer t.Stop()
	for {
		select {
		case <-b.stopping:
			return
		case <-b.dyn.retentionReset: // the interval changed at run time
			t.Reset(b.dyn.retentionInterval())
		case <-t.C:
			b.applyRetention()
			t.Reset(b.dyn.retentionInterval())
		}
	}
}

func (b *Broker) applyRetention() {
	type target struct {
		p   *partition.Partition
		cfg cluster.TopicConfig
	}
	b.mu.RLock()
	reps := make(map[tp]target, len(b.replicas))
	for k, r := range b.replicas {
		reps[k] = target{r.p, r.cfg} // r.cfg changes under b.mu
	}
	b.mu.RUnlock()
	for k, r := range reps {
		if !r.cfg.Deletes() {
			continue // cleanup.policy compact: the cleaner keeps each key's latest record
		}
		pol := partition.Retention{MaxBytes: r.cfg.RetentionBytes}
		if r.cfg.RetentionMs > 0 {
			pol.MaxAge = time.Duration(r.cfg.RetentionMs) * time.Millisecond
		}
		freed, err := r.p.ApplyRetention(pol)
		if err != nil && !errors.Is(err, partition.ErrClosed) {
			b.log.Warn("retention failed", "partition", k.String(), "err", err)
		}
		if freed > 0 {
			b.log.Info("retention deleted segments", "partition", k.String(), "bytes", freed)
		}
	}
}
