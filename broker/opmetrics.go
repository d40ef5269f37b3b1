package broker

import (
	"path"
	"slices"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skeinlog/skein/cluster"
)

// The figures operators alert on: partitions under-replicated, below
// min.insync or offline, the controller quorum's state, the data
// directory's free space, and request latency per API.

var (
	descUnderReplicated = prometheus.NewDesc("skein_under_replicated_partitions",
		"Partitions this broker leads whose ISR is smaller than their replica set.", nil, nil)
	descBelowMinISR = prometheus.NewDesc("skein_below_min_isr_partitions",
		"Partitions this broker leads whose ISR is smaller than min.insync.replicas: acks=all produces fail.", nil, nil)
	descOffline = prometheus.NewDesc("skein_offline_partitions",
		"Partitions without a leader, as the controller sees them (0 on brokers that are not the controller).", nil, nil)
	descControllerActive = prometheus.NewDesc("skein_controller_active",
		"1 if this broker is the controller (the Raft leader).", nil, nil)
	descRaftTerm = prometheus.NewDesc("skein_controller_raft_term",
		"The controller quorum's current Raft term, as this broker knows it.", nil, nil)
	descRaftApplied = prometheus.NewDesc("skein_controller_applied_index",
		"The last controller log entry this broker has applied.", nil, nil)
	descLeaders = prometheus.NewDesc("skein_leader_partitions",
		"Partitions this broker leads.", nil, nil)
	descDiskFree = prometheus.NewDesc("skein_disk_free_bytes",
		"Bytes free for the broker on its data directory's file system.", nil, nil)
	descDiskTotal = prometheus.NewDesc("skein_disk_total_bytes",
		"Size of the data directory's file system.", nil, nil)
)

// clusterCollector reports the operator figures at scrape time, from the
// metadata this broker has applied.
type clusterCollector struct{ b *Broker }

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUnderReplicated, descBelowMinISR, descOffline, descControllerActive,
		descRaftTerm, descRaftApplied, descLeaders, descDiskFree, descDiskTotal} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	snap := b.snapshot()
	rs := b.ctrl.RaftState()
	h := partitionHealth(snap.Topics, b.self.ID, rs.Leader)
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	gauge(descUnderReplicated, float64(h.underReplicated))
	gauge(descBelowMinISR, float64(h.belowMinISR))
	gauge(descOffline, float64(h.offline))
	gauge(descLeaders, float64(h.leaders))
	active := 0.0
	if rs.Leader {
		active = 1
	}
	gauge(descControllerActive, active)
	gauge(descRaftTerm, float64(rs.Term))
	gauge(descRaftApplied, float64(rs.AppliedIndex))
	var st syscall.Statfs_t
	if err := syscall.Statfs(b.cfg.DataDir, &st); err == nil {
		gauge(descDiskFree, float64(st.Bavail)*float64(st.Bsize))
		gauge(descDiskTotal, float64(st.Blocks)*float64(st.Bsize))
	}
}

// partHealth counts partitions by state.
type partHealth struct {
	leaders, underReplicated, belowMinISR, offline int
}

// partitionHealth counts, among the partitions self leads, those
// under-replicated and those below min.insync; and, when self is the
// controller, the partitions without a leader. Pure.
func partitionHealth(topics map[string]cluster.Topic, self int32, controller bool) partHealth {
	var h partHealth
	for _, t := range topics {
		for _, pm := range t.Partitions {
			switch {
			case pm.Leader < 0:
				if controller {
					h.offline++
				}
			case pm.Leader == self:
				h.leaders++
				if underReplicated(pm) {
					h.underReplicated++
				}
				if len(pm.ISR) < int(t.Config.MinInsyncReplicas) {
					h.belowMinISR++
				}
			}
		}
	}
	return h
}

// underReplicated reports whether a replica the partition keeps is out of
// its ISR (while it moves, the replicas being added do not count until
// they have caught up, nor those being removed). Pure.
func underReplicated(pm cluster.PartitionMeta) bool {
	keep := pm.Replicas
	if len(pm.Target) > 0 {
		keep = slices.DeleteFunc(slices.Clone(pm.Origin), func(r int32) bool { return !slices.Contains(pm.Target, r) })
	}
	return slices.ContainsFunc(keep, func(r int32) bool { return !slices.Contains(pm.ISR, r) })
}

// apiName is the short name of a gRPC method for the latency histogram:
// "/skein.v1.Skein/CreateTopic" → "CreateTopic".
func apiName(fullMethod string) string { return path.Base(fullMethod) }

// requestBuckets span 100 µs to about 13 s.
var requestBuckets = prometheus.ExponentialBuckets(100e-6, 2, 18)

func (m *metrics) observeRequest(api string, began time.Time) {
	m.requestSeconds.WithLabelValues(api).Observe(time.Since(began).Seconds())
}
