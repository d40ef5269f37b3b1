package broker

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// registerBudgets adds the budget gauges, read at scrape time.
func (m *metrics) registerBudgets(b *Broker) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "skein_inflight_bytes", Help: "Fetch and produce bytes the broker holds in flight now.",
		}, func() float64 { return float64(b.inflight.inUse()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "skein_inflight_bytes_limit", Help: "The in-flight byte budget (--max-inflight-bytes).",
		}, func() float64 { return float64(b.inflight.total) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "skein_data_dir_free_bytes", Help: "Free space on the data directory's file system (-1: unknown); /readyz fails below two segments, at least 64 MiB.",
		}, func() float64 {
			if free, ok := b.cfg.DiskFree(b.cfg.DataDir); ok {
				return float64(free)
			}
			return -1
		}),
	)
}

// refusedRequest counts a request refused by a budget or limit.
func (m *metrics) refusedRequest(err error) {
	var be *budgetError
	if errors.As(err, &be) {
		m.refused.WithLabelValues(be.reason).Inc()
	}
}
