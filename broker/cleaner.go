package broker

// This file is the log cleaner: one goroutine per broker that compacts the
// local replicas of compacted topics (cleanup.policy compact or
// compact,delete) in turn, within an I/O budget (see docs/compaction.md).
// Each replica is cleaned on its own, leader or follower alike.

import (
	"errors"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/partition"
)

// Cleaner defaults.
const (
	defaultCleanerIOBytesPerSec = 32 << 20
	defaultCleanerInterval      = 15 * time.Second
	// cleanerMinDirtyRatio: a replica is cleaned once at least half of its
	// cleanable log was written since its last pass (Kafka's
	// min.cleanable.dirty.ratio default), or when a tombstone comes of age.
	cleanerMinDirtyRatio = 0.5
)

// cleanerMetrics are the skein_cleaner_* figures.
type cleanerMetrics struct {
	passes       prometheus.Counter
	bytesRead    prometheus.Counter
	bytesCleaned prometheus.Counter
	bytesFreed   prometheus.Counter
	records      prometheus.Counter
	tombstones   prometheus.Counter
	errors       prometheus.Counter
}

func newCleanerMetrics(reg *prometheus.Registry) *cleanerMetrics {
	c := func(name, help string) prometheus.Counter {
		m := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		reg.MustRegister(m)
		return m
	}
	return &cleanerMetrics{
		passes:       c("skein_cleaner_passes_total", "Cleaning passes run over local replicas of compacted topics."),
		bytesRead:    c("skein_cleaner_bytes_read_total", "Log bytes the cleaner read (both passes over each replica)."),
		bytesCleaned: c("skein_cleaner_bytes_cleaned_total", "Bytes of the segments the cleaner rewrote, before the rewrite."),
		bytesFreed:   c("skein_cleaner_bytes_freed_total", "Bytes the cleaner's rewrites removed from the logs."),
		records:      c("skein_cleaner_records_removed_total", "Records the cleaner removed (superseded, keyless, and tombstones)."),
		tombstones:   c("skein_cleaner_tombstones_removed_total", "Tombstones the cleaner removed once past delete.retention.ms."),
		errors:       c("skein_cleaner_errors_total", "Cleaning passes that failed."),
	}
}

var descDirty = prometheus.NewDesc("skein_cleaner_dirty_ratio",
	"Share of a local replica's cleanable log (sealed segments below the high watermark) written since the cleaner's last pass; compacted topics only.",
	[]string{"topic", "partition"}, nil)

// cleanerLoop cleans the compacted replicas every CleanerInterval.
func (b *Broker) cleanerLoop() {
	defer b.bg.Done()
	if b.cfg.StorageEngine == EngineJournal {
		return // compaction is refused on this engine (checkCompactable)
	}
	t := time.NewTimer(b.cfg.CleanerInterval)
	defer t.Stop()
	budget := newThrottle(b.cfg.CleanerIOBytesPerSec, b.stopping)
	for {
		select {
		case <-b.stopping:
			return
		case <-t.C:
			b.cleanOnce(budget)
			t.Reset(b.cfg.CleanerInterval)
		}
	}
}

// cleanOnce runs a pass over every local replica of a compacted topic
// whose dirty ratio (or an aged tombstone) calls for it.
func (b *Broker) cleanOnce(budget *throttle) {
	type target struct {
		k   tp
		p   *partition.Partition
		cfg cluster.TopicConfig
	}
	var ts []target
	b.mu.RLock()
	for k, r := range b.replicas {
		if r.cfg.Compacted() {
			ts = append(ts, target{k, r.p, r.cfg})
		}
	}
	b.mu.RUnlock()
	sort.Slice(ts, func(i, j int) bool { return ts[i].k.String() < ts[j].k.String() })
	for _, t := range ts {
		select {
		case <-b.stopping:
			return
		default:
		}
		res, err := t.p.Clean(partition.CleanOptions{
			DeleteRetention: time.Duration(t.cfg.DeleteRetention()) * time.Millisecond,
			MinDirtyRatio:   cleanerMinDirtyRatio,
			Throttle:        budget.wait,
		})
		m := b.metrics.cleaner
		m.bytesRead.Add(float64(res.BytesRead))
		if err != nil {
			if !errors.Is(err, partition.ErrClosed) {
				m.errors.Inc()
				b.log.Warn("log cleaner failed", "partition", t.k.String(), "err", err)
			}
			continue
		}
		if !res.Ran {
			continue
		}
		m.passes.Inc()
		m.bytesCleaned.Add(float64(res.BytesBefore))
		m.bytesFreed.Add(float64(res.BytesBefore - res.BytesAfter))
		m.records.Add(float64(res.Removed))
		m.tombstones.Add(float64(res.Tombstones))
		if res.Segments > 0 {
			b.log.Info("log cleaner compacted", "partition", t.k.String(), "segments", res.Segments,
				"bytes_before", res.BytesBefore, "bytes_after", res.BytesAfter, "records_removed", res.Removed,
				"tombstones_removed", res.Tombstones, "up_to_offset", res.CleanableOffset)
		}
	}
}

// collectDirty reports the dirty ratio of a compacted replica.
func collectDirty(ch chan<- prometheus.Metric, k tp, r *replica, cfg cluster.TopicConfig) {
	if !cfg.Compacted() {
		return
	}
	ch <- prometheus.MustNewConstMetric(descDirty, prometheus.GaugeValue, r.p.DirtyRatio(), k.topic, strconv.Itoa(int(k.partition)))
}

// throttle paces the cleaner's I/O to a byte rate: wait sleeps as long as
// the bytes so far are ahead of the rate since the throttle started (a
// burst of at most one second's worth is allowed after an idle spell).
// Once the broker stops it no longer waits: the pass ends quickly and its
// reads fail on the closing partitions.
type throttle struct {
	rate  float64 // bytes per second; <= 0: unlimited
	stop  <-chan struct{}
	start time.Time
	used  float64
}

func newThrottle(bytesPerSec int64, stop <-chan struct{}) *throttle {
	return &throttle{rate: float64(bytesPerSec), stop: stop, start: time.Now()}
}

func (t *throttle) wait(n int) {
	if t.rate <= 0 || n <= 0 {
		return
	}
	now := time.Now()
	// Never bank more than one second of unused budget.
	if credit := now.Sub(t.start).Seconds()*t.rate - t.used; credit > t.rate {
		t.used += credit - t.rate
	}
	t.used += float64(n)
	ahead := time.Duration((t.used/t.rate - now.Sub(t.start).Seconds()) * float64(time.Second))
	if ahead <= 0 {
		return
	}
	tm := time.NewTimer(ahead)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-t.stop:
	}
}

// checkCompactable refuses a cleanup.policy with compaction on a broker
// whose storage engine cannot compact.
func (b *Broker) checkCompactable(policy *string) error {
	if policy == nil || b.cfg.StorageEngine != EngineJournal {
		return nil
	}
	p, err := cluster.NormalizeCleanupPolicy(*policy)
	if err != nil || p == "" {
		return nil // an invalid policy is refused by the metadata's checks
	}
	return invalid("cleanup.policy %s: this broker runs the journal storage engine, which does not compact yet; use a broker with --storage-engine wal (see docs/compaction.md)", p)
}
