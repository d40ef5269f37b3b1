package broker

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/replication"
)

var (
	descLagRecords = prometheus.NewDesc("skein_follower_lag_records_max",
		"The most records any follower of a partition this broker leads is behind its leader.", nil, nil)
	descLagSeconds = prometheus.NewDesc("skein_follower_lag_seconds_max",
		"The longest time any follower of a partition this broker leads has not been caught up.", nil, nil)
	descReassigning = prometheus.NewDesc("skein_reassigning_partitions",
		"Partitions being moved by a reassignment, as the metadata says.", nil, nil)
	descReassignBytesLeft = prometheus.NewDesc("skein_reassign_bytes_left",
		"Estimated bytes the new replicas of partitions this broker leads still lack (the leader's size times the share of records they lack).", nil, nil)
	descThrottle = prometheus.NewDesc("skein_replication_throttle_bytes_per_second",
		"The replication.throttle budget of this broker's catching-up replicas (0: none).", nil, nil)
)

// reassignMetrics counts ISR changes and reports replication lag and
// reassignment progress at scrape time.
type reassignMetrics struct {
	b       *Broker
	shrinks prometheus.Counter
	expands prometheus.Counter
}

func newReassignMetrics(b *Broker) *reassignMetrics {
	return &reassignMetrics{
		b: b,
		shrinks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skein_isr_shrinks_total", Help: "Replicas this broker, as leader, took out of an ISR.",
		}),
		expands: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skein_isr_expands_total", Help: "Replicas this broker, as leader, added to an ISR.",
		}),
	}
}

// isrChanged is replication.Config.OnISRChange.
func (m *reassignMetrics) isrChanged(joined, left int) {
	m.expands.Add(float64(joined))
	m.shrinks.Add(float64(left))
}

func (m *reassignMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.shrinks.Describe(ch)
	m.expands.Describe(ch)
	for _, d := range []*prometheus.Desc{descLagRecords, descLagSeconds, descReassigning, descReassignBytesLeft, descThrottle} {
		ch <- d
	}
}

func (m *reassignMetrics) Collect(ch chan<- prometheus.Metric) {
	m.shrinks.Collect(ch)
	m.expands.Collect(ch)
	b := m.b
	snap := b.ctrl.Snapshot()
	var lp leaderProgress
	b.mu.RLock()
	for k, r := range b.replicas {
		t, ok := snap.Topics[k.topic]
		if r.leader == nil || !ok || int(k.partition) >= len(t.Partitions) {
			continue
		}
		st := r.p.State()
		lp.add(t.Partitions[k.partition], st.LogStartOffset, st.LogEndOffset, st.SizeBytes, r.leader.Followers(), time.Now())
	}
	b.mu.RUnlock()
	moving := 0
	for _, t := range snap.Topics {
		for _, pm := range t.Partitions {
			if len(pm.Target) > 0 {
				moving++
			}
		}
	}
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	gauge(descLagRecords, float64(lp.lagRecords))
	gauge(descLagSeconds, lp.lagSeconds)
	gauge(descReassigning, float64(moving))
	gauge(descReassignBytesLeft, float64(lp.bytesLeft))
	gauge(descThrottle, float64(b.repl.Throttle.Rate()))
}

// leaderProgress sums up the followers of the partitions a broker leads.
type leaderProgress struct {
	lagRecords int64
	lagSeconds float64
	bytesLeft  int64
}

// add accounts one led partition: its log (start, end, size) and its
// followers. Pure.
func (lp *leaderProgress) add(pm cluster.PartitionMeta, start, leo, size int64, fs []replication.FollowerState, now time.Time) {
	for _, f := range fs {
		behind := leo - max(f.LEO, start)
		if f.LEO < 0 {
			behind = leo - start
		}
		lp.lagRecords = max(lp.lagRecords, behind)
		if behind > 0 && !f.CaughtUp.IsZero() {
			lp.lagSeconds = max(lp.lagSeconds, now.Sub(f.CaughtUp).Seconds())
		}
		if slices.Contains(pm.Target, f.ID) && !slices.Contains(pm.ISR, f.ID) && leo > start {
			lp.bytesLeft += int64(float64(size) * float64(behind) / float64(leo-start))
		}
	}
}
