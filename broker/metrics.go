package broker

import (
	"context"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/partition"
)

// metrics are the broker's Prometheus figures, on a registry of its own so
// several brokers can live in one test process.
type metrics struct {
	reg             *prometheus.Registry
	rpcs            *prometheus.CounterVec
	producedRecords prometheus.Counter
	producedBytes   prometheus.Counter
	produceErrors   *prometheus.CounterVec
	fetchedBytes    prometheus.Counter
	groupBatches    prometheus.Histogram
	groupBytes      prometheus.Histogram
	groupSeconds    prometheus.Histogram
	duplicates      prometheus.Counter
	refused         *prometheus.CounterVec
	requestSeconds  *prometheus.HistogramVec
	notReady        prometheus.Counter
	reassign        *reassignMetrics
	cleaner         *cleanerMetrics
}

func newMetrics(b *Broker) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_rpc_total", Help: "gRPC calls by method and status code.",
		}, []string{"method", "code"}),
		producedRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skein_produced_records_total", Help: "Records appended and acknowledged.",
		}),
		producedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skein_produced_bytes_total", Help: "Batch bytes appended and acknowledged.",
		}),
		produceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_produce_errors_total", Help: "Produce requests that failed, by reason.",
		}, []string{"reason"}),
		fetchedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skein_fetched_bytes_total", Help: "Batch bytes sent to consumers.",
		}),
		groupBatches: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "skein_group_commit_batches", Help: "Batches written per log append and fsync (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		groupBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "skein_group_commit_bytes", Help: "Bytes written per log append and fsync.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 10),
		}),
		groupSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "skein_group_commit_seconds", Help: "Time to write and fsync one group.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14),
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skein_produce_duplicates_total", Help: "Idempotent producers' retried batches that were already appended, answered with their original offsets.",
		}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "skein_request_seconds", Help: "Time from a request's arrival to its answer, by API (produce covers unary and streamed produces; long-polls include their wait).",
			Buckets: requestBuckets,
		}, []string{"api"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_refused_requests_total", Help: "Requests refused because a broker budget was used up or a limit was passed, by reason.",
		}, []string{"reason"}),
		notReady: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skein_readyz_not_ready_total", Help: "/readyz answers that said not ready.",
		}),
	}
	m.reg.MustRegister(m.rpcs, m.producedRecords, m.producedBytes, m.produceErrors, m.fetchedBytes,
		m.groupBatches, m.groupBytes, m.groupSeconds, m.duplicates,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&partitionCollector{b: b}, m.refused, m.requestSeconds, &clusterCollector{b: b}, m.notReady, &journalCollector{b: b})
	m.reassign = newReassignMetrics(b)
	m.cleaner = newCleanerMetrics(m.reg)
	m.reg.MustRegister(m.reassign)
	m.registerBudgets(b)
	// Every refusal reason exists from the start, at 0, so that rate()
	// and alerts on it work before the first refusal.
	for _, reason := range []string{refusedInflight, refusedHandles, refusedInflation} {
		m.refused.WithLabelValues(reason)
	}
	return m
}

// The reasons of skein_refused_requests_total.
const (
	refusedInflight  = "inflight_bytes" // the in-flight byte budget is used up
	refusedHandles   = "file_handles"   // too few file handles left to open a partition
	refusedInflation = "inflation"      // a compressed batch inflates past its limit
)

// GroupCommitted implements partition.Observer.
func (m *metrics) GroupCommitted(batches, records, bytes int, took time.Duration) {
	m.groupBatches.Observe(float64(batches))
	m.groupBytes.Observe(float64(bytes))
	m.groupSeconds.Observe(took.Seconds())
}

func (m *metrics) produced(records int64, bytes int) {
	m.producedRecords.Add(float64(records))
	m.producedBytes.Add(float64(bytes))
}

func (m *metrics) produceFailed(err error) {
	m.produceErrors.WithLabelValues(errorDetail(err).Reason.String()).Inc()
}

func (m *metrics) fetched(bytes int) { m.fetchedBytes.Add(float64(bytes)) }

func (m *metrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	began := time.Now()
	resp, err := handler(ctx, req)
	if api := apiName(info.FullMethod); api != "Produce" { // produce is timed per request in server.produce
		m.observeRequest(api, began)
	}
	m.rpcs.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return resp, err
}

func (m *metrics) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := handler(srv, ss)
	m.rpcs.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return err
}

// partitionCollector reports each local replica's offsets at scrape time.
type partitionCollector struct{ b *Broker }

var (
	descHW   = prometheus.NewDesc("skein_partition_high_watermark", "High watermark of a local replica.", []string{"topic", "partition"}, nil)
	descLEO  = prometheus.NewDesc("skein_partition_log_end_offset", "Log end offset of a local replica.", []string{"topic", "partition"}, nil)
	descLSO  = prometheus.NewDesc("skein_partition_log_start_offset", "Log start offset of a local replica.", []string{"topic", "partition"}, nil)
	descSize = prometheus.NewDesc("skein_partition_size_bytes", "Bytes in a local replica's log segments.", []string{"topic", "partition"}, nil)
	descLead = prometheus.NewDesc("skein_partition_leader", "1 if this broker leads the partition.", []string{"topic", "partition"}, nil)
	descKeys = prometheus.NewDesc("skein_partition_key_index_keys", "Keys in a local replica's key index (topics with the key index).", []string{"topic", "partition"}, nil)
	descKeyB = prometheus.NewDesc("skein_partition_key_index_bytes", "Heap bytes of a local replica's key index, about (topics with the key index).", []string{"topic", "partition"}, nil)
)

func (c *partitionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHW, descLEO, descLSO, descSize, descLead, descKeys, descKeyB, descDirty} {
		ch <- d
	}
}

func (c *partitionCollector) Collect(ch chan<- prometheus.Metric) {
	c.b.mu.RLock()
	reps := make(map[tp]*replica, len(c.b.replicas))
	cfgs := make(map[tp]cluster.TopicConfig, len(c.b.replicas))
	for k, r := range c.b.replicas {
		reps[k], cfgs[k] = r, r.cfg
	}
	c.b.mu.RUnlock()
	for k, r := range reps {
		st := r.p.State()
		labels := []string{k.topic, strconv.Itoa(int(k.partition))}
		lead := 0.0
		if st.Role == partition.RoleLeader {
			lead = 1
		}
		ch <- prometheus.MustNewConstMetric(descHW, prometheus.GaugeValue, float64(st.HighWatermark), labels...)
		ch <- prometheus.MustNewConstMetric(descLEO, prometheus.GaugeValue, float64(st.LogEndOffset), labels...)
		ch <- prometheus.MustNewConstMetric(descLSO, prometheus.GaugeValue, float64(st.LogStartOffset), labels...)
		ch <- prometheus.MustNewConstMetric(descSize, prometheus.GaugeValue, float64(st.SizeBytes), labels...)
		ch <- prometheus.MustNewConstMetric(descLead, prometheus.GaugeValue, lead, labels...)
		if ks := r.p.KeyIndexStats(); ks.Enabled {
			ch <- prometheus.MustNewConstMetric(descKeys, prometheus.GaugeValue, float64(ks.Keys), labels...)
			ch <- prometheus.MustNewConstMetric(descKeyB, prometheus.GaugeValue, float64(ks.Bytes), labels...)
		}
		collectDirty(ch, k, r, cfgs[k])
	}
}

// httpHandler serves /metrics, /healthz (the process is up), /readyz (it
// has opened its partitions and serves requests) and, with Config.Pprof,
// /debug/pprof.
func (b *Broker) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(b.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", b.serveReadyz)
	b.consoleHandler(mux)
	if !b.cfg.Pprof {
		return mux
	}
	mux.HandleFunc("/debug/pprof/", b.pprofGuard(pprof.Index))
	mux.HandleFunc("/debug/pprof/cmdline", b.pprofGuard(pprof.Cmdline))
	mux.HandleFunc("/debug/pprof/profile", b.pprofGuard(pprof.Profile))
	mux.HandleFunc("/debug/pprof/symbol", b.pprofGuard(pprof.Symbol))
	mux.HandleFunc("/debug/pprof/trace", b.pprofGuard(pprof.Trace))
	return mux
}

var (
	_ partition.Observer          = (*metrics)(nil)
	_ partition.DuplicateObserver = (*metrics)(nil)
)
