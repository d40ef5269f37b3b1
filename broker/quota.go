package broker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skeinlog/skein/cluster"
)

// Client quotas are enforced per broker, as Kafka does: each broker
// measures the rates of the traffic it serves, per quota bucket (the
// entity whose quota applies, see cluster.QuotaIndex.Resolve), over a
// window of samples, and throttles a caller over its quota for the time
// that brings its rate back to the quota.

const (
	// quotaSampleLen and quotaSamples make the window rates are measured
	// over: Kafka's quota.window.size.seconds and quota.window.num.
	quotaSampleLen = time.Second
	quotaSamples   = 11
	// maxThrottle bounds one throttle: the whole window.
	maxThrottle = quotaSamples * quotaSampleLen
	// quotaBucketIdle is how long a bucket without traffic is kept.
	quotaBucketIdle = 10 * time.Minute
	// maxQuotaBuckets bounds the buckets (and metric series): callers that
	// would make more share one overflow bucket per kind.
	maxQuotaBuckets = 10000
)

// throttleTime is how long a caller whose rate over window is rate must
// wait so that its rate falls to quota: the t with rate·window/(window+t)
// = quota. Zero at or under the quota; at most maxThrottle. Pure.
func throttleTime(rate, quota float64, window time.Duration) time.Duration {
	if quota <= 0 || rate <= quota || window <= 0 {
		return 0
	}
	t := time.Duration((rate - quota) / quota * float64(window))
	if t < 0 || t > maxThrottle { // t < 0: overflowed
		return maxThrottle
	}
	return t.Round(time.Millisecond)
}

// rateSample is one sample of a windowed rate.
type rateSample struct {
	start time.Time
	total float64
}

// windowedRate is a rate over the last few samples (Kafka's SampledStat):
// the total of the samples not older than the window, over the time since
// the oldest began, at least one sample long.
type windowedRate struct {
	samples [quotaSamples]rateSample
	cur     int
}

// record adds v at now, starting a new sample when the current one is a
// sample long.
func (w *windowedRate) record(now time.Time, v float64) {
	s := &w.samples[w.cur]
	if s.start.IsZero() || now.Sub(s.start) >= quotaSampleLen {
		w.cur = (w.cur + 1) % quotaSamples
		s = &w.samples[w.cur]
		*s = rateSample{start: now}
	}
	s.total += v
}

// rate returns the rate at now and the window it was measured over.
func (w *windowedRate) rate(now time.Time) (float64, time.Duration) {
	var total float64
	oldest := now
	for _, s := range w.samples {
		if s.start.IsZero() || now.Sub(s.start) >= quotaSamples*quotaSampleLen {
			continue
		}
		total += s.total
		if s.start.Before(oldest) {
			oldest = s.start
		}
	}
	window := max(now.Sub(oldest), quotaSampleLen)
	return total / window.Seconds(), window
}

// quotaKey names a bucket: one kind of one entity.
type quotaKey struct {
	kind   cluster.QuotaKind
	entity cluster.QuotaEntity
}

// quotaBucket is one bucket's rate and what it was throttled.
type quotaBucket struct {
	rate      windowedRate
	limit     float64
	throttled time.Duration // in all
	last      time.Time
}

// quotaOverflow is the client id of the bucket callers share once there
// are maxQuotaBuckets.
const quotaOverflow = "<overflow>"

// quotaManager is the broker's quota buckets.
type quotaManager struct {
	index   atomic.Pointer[cluster.QuotaIndex]
	now     func() time.Time
	mu      sync.Mutex // guards buckets and swept
	buckets map[quotaKey]*quotaBucket
	swept   time.Time
}

func newQuotaManager(now func() time.Time) *quotaManager {
	q := &quotaManager{now: now, buckets: map[quotaKey]*quotaBucket{}}
	q.setQuotas(nil)
	return q
}

// setQuotas makes quotas current (from a new metadata snapshot).
func (q *quotaManager) setQuotas(quotas []cluster.Quota) {
	ix := cluster.NewQuotaIndex(quotas)
	q.index.Store(&ix)
}

// record counts amount (bytes, or 1 for a request) of kind for a caller
// and returns how long to throttle it; 0 when no quota applies or the
// caller is within it.
func (q *quotaManager) record(user, clientID string, kind cluster.QuotaKind, amount float64) time.Duration {
	entity, limit, ok := q.index.Load().Resolve(user, clientID, kind)
	if !ok {
		return 0
	}
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.bucket(quotaKey{kind, entity}, now)
	b.limit, b.last = limit, now
	b.rate.record(now, amount)
	r, w := b.rate.rate(now)
	t := throttleTime(r, limit, w)
	b.throttled += t
	return t
}

// Throttle is record for the Kafka listener (kafka.Throttler).
func (q *quotaManager) Throttle(user, clientID string, kind cluster.QuotaKind, amount float64) time.Duration {
	return q.record(user, clientID, kind, amount)
}

// bucket returns k's bucket, creating it (or, past maxQuotaBuckets, the
// overflow bucket of k's kind). Called with mu held.
func (q *quotaManager) bucket(k quotaKey, now time.Time) *quotaBucket {
	if b, ok := q.buckets[k]; ok {
		return b
	}
	if len(q.buckets) >= maxQuotaBuckets {
		q.sweep(now)
	}
	if len(q.buckets) >= maxQuotaBuckets {
		k = quotaKey{kind: k.kind, entity: cluster.QuotaEntity{ClientID: quotaOverflow}}
		if b, ok := q.buckets[k]; ok {
			return b
		}
	}
	b := &quotaBucket{}
	q.buckets[k] = b
	return b
}

// sweep drops buckets idle for quotaBucketIdle, at most once a minute.
// Called with mu held.
func (q *quotaManager) sweep(now time.Time) {
	if now.Sub(q.swept) < time.Minute {
		return
	}
	q.swept = now
	for k, b := range q.buckets {
		if now.Sub(b.last) >= quotaBucketIdle {
			delete(q.buckets, k)
		}
	}
}

var (
	quotaRateDesc = prometheus.NewDesc("skein_quota_rate",
		"A quota bucket's rate over the quota window: bytes/s (produce, fetch) or requests/s (request).",
		[]string{"kind", "user", "client_id"}, nil)
	quotaLimitDesc = prometheus.NewDesc("skein_quota_limit",
		"The quota a bucket is held to, in the unit of skein_quota_rate.",
		[]string{"kind", "user", "client_id"}, nil)
	quotaThrottleDesc = prometheus.NewDesc("skein_quota_throttle_seconds_total",
		"Time callers of a quota bucket were throttled for, in all.",
		[]string{"kind", "user", "client_id"}, nil)
)

// Describe implements prometheus.Collector.
func (q *quotaManager) Describe(ch chan<- *prometheus.Desc) {
	ch <- quotaRateDesc
	ch <- quotaLimitDesc
	ch <- quotaThrottleDesc
}

// Collect implements prometheus.Collector: one series per bucket.
func (q *quotaManager) Collect(ch chan<- prometheus.Metric) {
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sweep(now)
	for k, b := range q.buckets {
		labels := []string{k.kind.String(), k.entity.User, k.entity.ClientID}
		r, _ := b.rate.rate(now)
		ch <- prometheus.MustNewConstMetric(quotaRateDesc, prometheus.GaugeValue, r, labels...)
		ch <- prometheus.MustNewConstMetric(quotaLimitDesc, prometheus.GaugeValue, b.limit, labels...)
		ch <- prometheus.MustNewConstMetric(quotaThrottleDesc, prometheus.CounterValue, b.throttled.Seconds(), labels...)
	}
}
