package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/skeinlog/skein/client"
)

// maxFailuresShown caps the failures listed one by one.
const maxFailuresShown = 20

// stats collects the outcome of every record. Callbacks run on the
// producer's one callback goroutine, but the summary reads from another:
// mu guards everything.
type stats struct {
	topic string
	start time.Time

	sent atomic.Int64 // records handed to the producer

	mu       sync.Mutex
	end      time.Time
	acked    int64
	failed   int64
	bytes    int64
	hist     *hdrhistogram.Histogram // ack latency, microseconds
	parts    map[int32]*partStats
	failures []string
	report   *bufio.Writer // --report output, or nil
	reportMu *sync.Mutex   // shared with whoever else writes stdout
}

type partStats struct {
	First   int64 `json:"first_offset"`
	Last    int64 `json:"last_offset"`
	Records int64 `json:"records"`
}

func newStats(topic string) *stats {
	return &stats{
		topic: topic,
		start: time.Now(),
		hist:  hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 3),
		parts: map[int32]*partStats{},
	}
}

// done records the outcome of record r, produced at start; what names it in
// error messages.
func (s *stats) done(r *client.Record, start time.Time, what string, err error) {
	lat := time.Since(start)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failed++
		if len(s.failures) < maxFailuresShown {
			where := "no partition"
			if r.Partition >= 0 {
				where = fmt.Sprintf("partition %d", r.Partition)
			}
			s.failures = append(s.failures, fmt.Sprintf("%s (%s): %v", what, where, err))
		}
		return
	}
	s.acked++
	s.bytes += int64(recordSize(r))
	s.hist.RecordValue(max(lat.Microseconds(), 1))
	ps := s.parts[r.Partition]
	if ps == nil {
		ps = &partStats{First: r.Offset, Last: r.Offset}
		s.parts[r.Partition] = ps
	}
	ps.Records++
	if r.Offset >= 0 {
		ps.First = min(ps.First, r.Offset)
		ps.Last = max(ps.Last, r.Offset)
	}
	if s.report != nil {
		s.reportMu.Lock()
		fmt.Fprintf(s.report, "%d %d %s\n", r.Partition, r.Offset, what)
		s.reportMu.Unlock()
	}
}

func (s *stats) finish() {
	s.mu.Lock()
	s.end = time.Now()
	s.mu.Unlock()
}

// summary is the --stats json object; the human summary prints the same.
type summary struct {
	Topic         string      `json:"topic"`
	Records       int64       `json:"records"`
	Failed        int64       `json:"failed"`
	Bytes         int64       `json:"bytes"`
	Seconds       float64     `json:"seconds"`
	RecordsPerSec float64     `json:"records_per_sec"`
	MBPerSec      float64     `json:"mb_per_sec"`
	LatencyMs     latency     `json:"latency_ms"`
	Partitions    []partEntry `json:"partitions"`
	Interrupted   bool        `json:"interrupted,omitempty"`
	// The idempotent producer's id and epoch; -1 when it is off (or sent
	// nothing).
	Idempotent    bool  `json:"idempotent"`
	ProducerID    int64 `json:"producer_id"`
	ProducerEpoch int16 `json:"producer_epoch"`
	// --expect-offset
	ExpectedOffset *int64 `json:"expected_offset,omitempty"`
	NextOffset     *int64 `json:"next_offset,omitempty"`
	// --expect-key-offset: the key's last offset (after the append, or the
	// actual one on a mismatch; -1: none)
	KeyOffset *int64 `json:"key_offset,omitempty"`
}

type latency struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

type partEntry struct {
	Partition int32 `json:"partition"`
	partStats
}

func (s *stats) summary() summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	end := s.end
	if end.IsZero() {
		end = time.Now()
	}
	secs := end.Sub(s.start).Seconds()
	sum := summary{Topic: s.topic, Records: s.acked, Failed: s.failed, Bytes: s.bytes, Seconds: secs, Partitions: []partEntry{}}
	if secs > 0 {
		sum.RecordsPerSec = float64(s.acked) / secs
		sum.MBPerSec = float64(s.bytes) / 1e6 / secs
	}
	if s.acked > 0 {
		ms := func(us int64) float64 { return float64(us) / 1000 }
		sum.LatencyMs = latency{
			P50:  ms(s.hist.ValueAtQuantile(50)),
			P99:  ms(s.hist.ValueAtQuantile(99)),
			P999: ms(s.hist.ValueAtQuantile(99.9)),
			Max:  ms(s.hist.Max()),
		}
	}
	for p, ps := range s.parts {
		sum.Partitions = append(sum.Partitions, partEntry{p, *ps})
	}
	sort.Slice(sum.Partitions, func(i, j int) bool { return sum.Partitions[i].Partition < sum.Partitions[j].Partition })
	return sum
}

// print writes the summary: JSON on stdout, or text on stderr.
func (s *stats) print(asJSON bool, stdout, stderr io.Writer, sum summary) {
	if asJSON {
		b, _ := json.Marshal(sum)
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		fmt.Fprintf(stderr, "%s (%d bytes) to %s in %.3f s: %.1f records/s, %.2f MB/s\n",
			plural(sum.Records, "record"), sum.Bytes, sum.Topic, sum.Seconds, sum.RecordsPerSec, sum.MBPerSec)
		if sum.Records > 0 {
			fmt.Fprintf(stderr, "ack latency: p50 %.3f ms, p99 %.3f ms, p999 %.3f ms, max %.3f ms\n",
				sum.LatencyMs.P50, sum.LatencyMs.P99, sum.LatencyMs.P999, sum.LatencyMs.Max)
		}
		if sum.ProducerID >= 0 {
			fmt.Fprintf(stderr, "idempotent producer id %d, epoch %d\n", sum.ProducerID, sum.ProducerEpoch)
		}
		for _, p := range sum.Partitions {
			if p.First < 0 {
				fmt.Fprintf(stderr, "partition %d: %s (offsets unknown with acks=none)\n", p.Partition, plural(p.Records, "record"))
			} else {
				fmt.Fprintf(stderr, "partition %d: offsets %d-%d (%s)\n", p.Partition, p.First, p.Last, plural(p.Records, "record"))
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed > 0 {
		fmt.Fprintf(stderr, "%s failed:\n", plural(s.failed, "record"))
		for _, f := range s.failures {
			fmt.Fprintf(stderr, "  %s\n", f)
		}
		if s.failed > int64(len(s.failures)) {
			fmt.Fprintf(stderr, "  ... and %d more\n", s.failed-int64(len(s.failures)))
		}
	}
}

func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
