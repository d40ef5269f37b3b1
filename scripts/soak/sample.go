package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/skeinlog/skein/client"
)

// sample is one second of the soak.
type sample struct {
	at       time.Duration // since the start
	phase    string
	rss      int64 // bytes
	fds      int
	ready    bool // /readyz answered 200
	serving  bool // a probe produce succeeded within the last 5 s
	acked    int64
	consumed int64
	failed   int64
	probeMs  float64 // the last probe's latency
	abusive  int64   // abusive requests made so far
	inflight int64   // the broker's skein_inflight_bytes; -1 unknown
}

// notServingAfter is how long without a successful probe counts as not
// serving.
const notServingAfter = 5 * time.Second

// sampleEverySecond samples the broker until ctx ends, probing it with a
// one-record produce (5 s timeout) in the background.
func (e *env) sampleEverySecond(ctx context.Context) []sample {
	var lastOK atomic.Int64 // Unix ns of the last successful probe
	var probeNs atomic.Int64
	lastOK.Store(time.Now().UnixNano())
	go e.probe(ctx, &lastOK, &probeNs)
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var out []sample
	for {
		select {
		case <-ctx.Done():
			return out
		case <-tick.C:
		}
		s := sample{
			at: time.Since(start).Round(time.Second), phase: *e.phase.Load(), rss: e.b.rss(), fds: e.b.fds(),
			ready: readyz(e.b.httpAddr), serving: time.Since(time.Unix(0, lastOK.Load())) < notServingAfter,
			acked: e.acked.Load(), consumed: e.consumed.Load(), failed: e.failed.Load(),
			probeMs: float64(probeNs.Load()) / 1e6, abusive: e.abuse.Load(), inflight: metricValue(e.b.httpAddr, "skein_inflight_bytes"),
		}
		out = append(out, s)
		if !s.serving {
			fmt.Fprintf(os.Stderr, "soak: %v NOT SERVING (phase %s)\n", s.at, s.phase)
		}
	}
}

func (e *env) probe(ctx context.Context, lastOK, latency *atomic.Int64) {
	p, err := e.admin.NewProducer(client.Linger(0))
	if err != nil {
		return
	}
	defer p.Close()
	for ctx.Err() == nil {
		began := time.Now()
		pctx, cancel := context.WithTimeout(ctx, notServingAfter)
		err := p.ProduceSync(pctx, &client.Record{Topic: "probe", Value: []byte("probe")})
		cancel()
		if err == nil {
			lastOK.Store(time.Now().UnixNano())
			latency.Store(int64(time.Since(began)))
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second - min(time.Since(began), time.Second)):
		}
	}
}

// metricValue reads one unlabelled metric from the broker's /metrics, or
// -1.
func metricValue(addr, name string) int64 {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return -1
			}
			return int64(f)
		}
	}
	return -1
}

func readyz(addr string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// writeCSV writes the samples to dir/soak.csv.
func writeCSV(dir string, ss []sample) error {
	f, err := os.Create(filepath.Join(dir, "soak.csv"))
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"seconds", "phase", "rss_bytes", "open_fds", "ready", "serving", "acked_total", "consumed_total", "failed_total", "probe_ms", "abusive_requests_total", "inflight_bytes"})
	for _, s := range ss {
		w.Write([]string{
			strconv.Itoa(int(s.at.Seconds())), s.phase, strconv.FormatInt(s.rss, 10), strconv.Itoa(s.fds),
			strconv.FormatBool(s.ready), strconv.FormatBool(s.serving), strconv.FormatInt(s.acked, 10),
			strconv.FormatInt(s.consumed, 10), strconv.FormatInt(s.failed, 10), strconv.FormatFloat(s.probeMs, 'f', 1, 64),
			strconv.FormatInt(s.abusive, 10), strconv.FormatInt(s.inflight, 10),
		})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
