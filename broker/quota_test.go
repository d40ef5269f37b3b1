package broker

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skeinlog/skein/cluster"
)

func TestThrottleTime(t *testing.T) {
	cases := []struct {
		rate, quota float64
		window      time.Duration
		want        time.Duration
	}{
		{rate: 50, quota: 100, window: 10 * time.Second, want: 0},
		{rate: 100, quota: 100, window: 10 * time.Second, want: 0},
		// Twice the quota over 10 s: another 10 s brings it to the quota.
		{rate: 200, quota: 100, window: 10 * time.Second, want: 10 * time.Second},
		{rate: 110, quota: 100, window: 10 * time.Second, want: time.Second},
		{rate: 150, quota: 100, window: time.Second, want: 500 * time.Millisecond},
		// Never longer than the window of samples.
		{rate: 1e6, quota: 1, window: 10 * time.Second, want: maxThrottle},
		{rate: math.MaxFloat64, quota: 1e-300, window: time.Second, want: maxThrottle},
		{rate: 100, quota: 0, window: time.Second, want: 0},
		{rate: 100, quota: 10, window: 0, want: 0},
	}
	for _, c := range cases {
		if got := throttleTime(c.rate, c.quota, c.window); got != c.want {
			t.Errorf("throttleTime(%v, %v, %v) = %v, want %v", c.rate, c.quota, c.window, got, c.want)
		}
		// After waiting the throttle time, the rate over the longer window
		// is at the quota (when not capped).
		if got := throttleTime(c.rate, c.quota, c.window); got > 0 && got < maxThrottle {
			after := c.rate * c.window.Seconds() / (c.window + got).Seconds()
			if math.Abs(after-c.quota) > c.quota*0.01 {
				t.Errorf("rate after throttling %v: %v, want %v", got, after, c.quota)
			}
		}
	}
}

func TestWindowedRate(t *testing.T) {
	var w windowedRate
	t0 := time.Unix(1000, 0)
	w.record(t0, 500)
	// A young window counts as one sample long.
	if r, win := w.rate(t0.Add(100 * time.Millisecond)); r != 500 || win != time.Second {
		t.Fatalf("rate %v over %v, want 500 over 1s", r, win)
	}
	for i := 1; i <= 20; i++ {
		w.record(t0.Add(time.Duration(i)*time.Second), 500)
	}
	// 500 a second for 20 s: the window holds the last samples only.
	r, win := w.rate(t0.Add(20*time.Second + 500*time.Millisecond))
	if math.Abs(r-500*float64(quotaSamples)/win.Seconds()) > 1 || win > quotaSamples*quotaSampleLen {
		t.Fatalf("rate %v over %v", r, win)
	}
	if r < 450 || r > 550 {
		t.Fatalf("steady 500/s measured as %v", r)
	}
	// Long idle: everything expired.
	if r, _ := w.rate(t0.Add(time.Hour)); r != 0 {
		t.Fatalf("rate after an hour idle %v", r)
	}
}

// A producer sending as fast as its throttles let it is held to its quota
// within a few percent over 30 s; another client id is not throttled.
func TestQuotaHoldsAGreedyProducerToItsRate(t *testing.T) {
	now := time.Unix(5000, 0)
	q := newQuotaManager(func() time.Time { return now })
	const quota = 1 << 20
	q.setQuotas([]cluster.Quota{{Entity: cluster.QuotaEntity{ClientID: "greedy"}, Limits: cluster.QuotaLimits{ProduceBytesPerSec: quota}}})
	start := now
	var sent float64
	for now.Sub(start) < 30*time.Second {
		const req = 64 << 10
		sent += req
		d := q.record("", "greedy", cluster.QuotaProduce, req)
		now = now.Add(d + 5*time.Millisecond) // the request's own time
		if d := q.record("", "other", cluster.QuotaProduce, 1<<30); d != 0 {
			t.Fatalf("a client id without a quota throttled %v", d)
		}
	}
	rate := sent / now.Sub(start).Seconds()
	if rate < 0.9*quota || rate > 1.15*quota {
		t.Fatalf("greedy producer held to %.0f B/s, quota %d", rate, quota)
	}
}

func TestQuotaBucketsAreBoundedAndMeasured(t *testing.T) {
	now := time.Unix(5000, 0)
	q := newQuotaManager(func() time.Time { return now })
	q.setQuotas([]cluster.Quota{{Entity: cluster.QuotaEntity{DefaultClient: true}, Limits: cluster.QuotaLimits{RequestsPerSec: 1}}})
	for i := range maxQuotaBuckets + 50 {
		q.record("", "c"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+time.Duration(i).String(), cluster.QuotaRequest, 1)
	}
	if n := len(q.buckets); n != maxQuotaBuckets+1 {
		t.Fatalf("%d buckets, want %d and one overflow", n, maxQuotaBuckets)
	}
	now = now.Add(quotaBucketIdle + time.Minute)
	q.record("", "late", cluster.QuotaRequest, 1)
	reg := prometheus.NewRegistry()
	reg.MustRegister(q)
	n, err := testutil.GatherAndCount(reg, "skein_quota_rate")
	if err != nil || n != 1 {
		t.Fatalf("%d rate series after the idle buckets expired (err %v), want 1", n, err)
	}
	want := `
# HELP skein_quota_limit The quota a bucket is held to, in the unit of skein_quota_rate.
# TYPE skein_quota_limit gauge
skein_quota_limit{client_id="late",kind="request",user=""} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "skein_quota_limit"); err != nil {
		t.Fatal(err)
	}
}
