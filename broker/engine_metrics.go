package broker

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// journalCollector reports the journal engine's work and memory at scrape
// time; nothing for the wal engine.
type journalCollector struct {
	b *Broker

	mu sync.Mutex
	// The last sample the rates were computed from, and the rates.
	at               time.Time
	fsyncs, records  int64
	fsyncRate, perFs float64
}

var (
	descJFsyncs      = prometheus.NewDesc("skein_journal_fsyncs_total", "Journal group commits, one fsync each.", nil, nil)
	descJRecords     = prometheus.NewDesc("skein_journal_records_total", "Journal records (one per batch appended, truncation, reset, retention move or deletion) made durable.", nil, nil)
	descJBytes       = prometheus.NewDesc("skein_journal_bytes_total", "Journal record bytes made durable.", nil, nil)
	descJCheckpoints = prometheus.NewDesc("skein_journal_checkpoints_total", "Journal checkpoints: partitions' segment files flushed and the journal truncated in front.", nil, nil)
	descJNoSpace     = prometheus.NewDesc("skein_journal_nospace_total", "Journal groups the file system refused for want of space (cut back; their appends failed, nothing of them written).", nil, nil)
	descJFsyncRate   = prometheus.NewDesc("skein_journal_fsyncs_per_second", "Journal fsyncs per second between the last two scrapes (at least 1 s apart).", nil, nil)
	descJPerFsync    = prometheus.NewDesc("skein_journal_records_per_fsync", "Journal records per fsync between the last two scrapes (at least 1 s apart): how well appends to different partitions share an fsync.", nil, nil)
	descMemBudget    = prometheus.NewDesc("skein_storage_memory_budget_bytes", "Memory the storage engine may hold, by part: journal_tail (the journals' in-memory tail segments), journal_pending (appends waiting for the next group commit).", []string{"part"}, nil)
	descMemUsed      = prometheus.NewDesc("skein_storage_memory_used_bytes", "Memory the storage engine holds now, by part (see skein_storage_memory_budget_bytes).", []string{"part"}, nil)
)

func (c *journalCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descJFsyncs, descJRecords, descJBytes, descJCheckpoints, descJNoSpace, descJFsyncRate, descJPerFsync, descMemBudget, descMemUsed} {
		ch <- d
	}
}

func (c *journalCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.b.engine
	if e == nil {
		return
	}
	st := e.journals.Stats()
	c.mu.Lock()
	now := time.Now()
	if d := now.Sub(c.at); d >= time.Second {
		if !c.at.IsZero() {
			df, dr := st.Fsyncs-c.fsyncs, st.Records-c.records
			c.fsyncRate = float64(df) / d.Seconds()
			c.perFs = 0
			if df > 0 {
				c.perFs = float64(dr) / float64(df)
			}
		}
		c.at, c.fsyncs, c.records = now, st.Fsyncs, st.Records
	}
	rate, per := c.fsyncRate, c.perFs
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descJFsyncs, prometheus.CounterValue, float64(st.Fsyncs))
	ch <- prometheus.MustNewConstMetric(descJRecords, prometheus.CounterValue, float64(st.Records))
	ch <- prometheus.MustNewConstMetric(descJBytes, prometheus.CounterValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(descJCheckpoints, prometheus.CounterValue, float64(st.Checkpoints))
	ch <- prometheus.MustNewConstMetric(descJNoSpace, prometheus.CounterValue, float64(st.NoSpace))
	ch <- prometheus.MustNewConstMetric(descJFsyncRate, prometheus.GaugeValue, rate)
	ch <- prometheus.MustNewConstMetric(descJPerFsync, prometheus.GaugeValue, per)
	n, o := float64(e.journals.Len()), e.journals.Options()
	ch <- prometheus.MustNewConstMetric(descMemBudget, prometheus.GaugeValue, n*float64(o.SegmentBytes), "journal_tail")
	ch <- prometheus.MustNewConstMetric(descMemBudget, prometheus.GaugeValue, n*float64(o.MaxPendingBytes), "journal_pending")
	ch <- prometheus.MustNewConstMetric(descMemUsed, prometheus.GaugeValue, float64(st.TailBytes), "journal_tail")
	ch <- prometheus.MustNewConstMetric(descMemUsed, prometheus.GaugeValue, float64(st.PendingBytes), "journal_pending")
}
