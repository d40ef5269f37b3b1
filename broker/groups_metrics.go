package broker

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// groupMetrics are the coordinator's Prometheus figures: members per group
// and rebalances (counted when a group's epoch moves), commit latency, and
// per group and partition the committed offset and lag (collected from the
// loaded shards when scraped).
type groupMetrics struct {
	c             *coordinator
	rebalances    *prometheus.CounterVec
	commitLatency prometheus.Histogram
	members       *prometheus.Desc
	committed     *prometheus.Desc
	lag           *prometheus.Desc
}

func newGroupMetrics(c *coordinator) *groupMetrics {
	m := &groupMetrics{
		c: c,
		rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_group_rebalances_total", Help: "Changes of a group's membership, subscriptions or topics that recomputed its assignment.",
		}, []string{"group"}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "skein_group_offset_commit_seconds", Help: "Time to commit offsets (acks=all on the offsets partition).",
			Buckets: prometheus.ExponentialBuckets(100e-6, 2, 16),
		}),
		members:   prometheus.NewDesc("skein_group_members", "Members of each group this broker coordinates.", []string{"group"}, nil),
		committed: prometheus.NewDesc("skein_group_committed_offset", "A group's committed offset of a partition.", []string{"group", "topic", "partition"}, nil),
		lag:       prometheus.NewDesc("skein_group_lag", "A partition's last known high watermark minus the group's committed offset.", []string{"group", "topic", "partition"}, nil),
	}
	c.b.metrics.reg.MustRegister(m.rebalances, m.commitLatency, m)
	return m
}

func (m *groupMetrics) rebalanced(group string, before, after int32) {
	if after != before {
		m.rebalances.WithLabelValues(group).Add(float64(after - before))
	}
}

func (m *groupMetrics) forget(group string) { m.rebalances.DeleteLabelValues(group) }

// Describe implements prometheus.Collector.
func (m *groupMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.members
	ch <- m.committed
	ch <- m.lag
}

// Collect implements prometheus.Collector, from the loaded shards and the
// high watermarks the coordinator has seen (no requests while scraping).
func (m *groupMetrics) Collect(ch chan<- prometheus.Metric) {
	c := m.c
	c.mu.Lock()
	shards := make([]*shard, 0, len(c.shards))
	for _, sh := range c.shards {
		shards = append(shards, sh)
	}
	c.mu.Unlock()
	c.hwMu.Lock()
	hws := make(map[string]int64, len(c.knownHW))
	for tp, hw := range c.knownHW {
		hws[tp.String()] = hw
	}
	c.hwMu.Unlock()
	for _, sh := range shards {
		select {
		case <-sh.ready:
		default:
			continue
		}
		sh.mu.Lock()
		for name, g := range sh.groups {
			ch <- prometheus.MustNewConstMetric(m.members, prometheus.GaugeValue, float64(g.Len()), name)
		}
		for _, name := range sh.store.Groups() {
			for tp, v := range sh.store.Offsets(name) {
				p := strconv.Itoa(int(tp.Partition))
				ch <- prometheus.MustNewConstMetric(m.committed, prometheus.GaugeValue, float64(v.Offset), name, tp.Topic, p)
				if hw, ok := hws[tp.String()]; ok {
					ch <- prometheus.MustNewConstMetric(m.lag, prometheus.GaugeValue, float64(max(0, hw-v.Offset)), name, tp.Topic, p)
				}
			}
		}
		sh.mu.Unlock()
	}
}
