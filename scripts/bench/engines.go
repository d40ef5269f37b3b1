package main

// Workloads that compare the storage engines (--storage-engine), each run
// on a fresh broker, the engines interleaved.

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// engineRun is one run of a per-engine workload.
type engineRun struct {
	s     produceStats
	extra string // what the run measured beyond produce's figures
}

// perEngine runs fn three times (once in -quick) on every engine of
// -engines, interleaved, and returns a row per engine: the median run by
// MB/s, every run's MB/s (and extra) in the note.
func perEngine(label, target string, fn func(engine string, run int) engineRun) []result {
	n := 3
	if quick {
		n = 1
	}
	runs := map[string][]engineRun{}
	for i := range n {
		for _, e := range engines {
			r := fn(e, i)
			fmt.Fprintf(os.Stderr, "   %s run %d: %.1f MB/s %s\n", e, i+1, r.s.MBPerSec, r.extra)
			runs[e] = append(runs[e], r)
		}
	}
	var out []result
	for _, e := range engines {
		rs := runs[e]
		var all []string
		for _, r := range rs {
			all = append(all, strings.TrimSpace(fmt.Sprintf("%.1f MB/s %s", r.s.MBPerSec, r.extra)))
		}
		sorted := slices.Clone(rs)
		slices.SortFunc(sorted, func(a, b engineRun) int { return int(a.s.MBPerSec*100 - b.s.MBPerSec*100) })
		mid := sorted[len(sorted)/2]
		out = append(out, fromProduce(fmt.Sprintf("%s [%s]", label, e), "produce", mid.s,
			fmt.Sprintf("runs: %s; %s", strings.Join(all, "; "), target)))
	}
	return out
}

// engineArgs are the broker flags of an -engines entry: the engine, then
// any further flags after colons ("journal:--journals=4").
func engineArgs(spec string, extra ...string) []string {
	f := strings.Split(spec, ":")
	return append(append([]string{"--storage-engine", f[0]}, f[1:]...), extra...)
}

func engineName(spec string) string { return strings.Split(spec, ":")[0] }

func enginesSingle1KiB() []result {
	return perEngine("1 broker, 1 partition, 1 KiB, one producer", "target >= 200 MB/s", func(e string, run int) engineRun {
		b := single(fmt.Sprintf("e1k-%d-%d", slices.Index(engines, e), run), engineArgs(e)...)
		defer b.stop()
		createTopic(b.addr(), "t")
		return engineRun{s: produce(b.addr(), "t", "--count", count(300000, 20000), "--size", "1024")}
	})
}

func enginesCluster1KiB() []result {
	return perEngine("3 brokers, RF 3, acks=all, min.insync 2, 1 KiB", "target >= 100 MB/s; 6 partitions", func(e string, run int) engineRun {
		bs := cluster(fmt.Sprintf("ec-%d-%d", slices.Index(engines, e), run), engineArgs(e)...)
		defer func() {
			for _, b := range bs {
				b.stop()
			}
		}()
		addrs := brokersOf(bs)
		createTopic(addrs, "t", "--partitions", "6", "--replication-factor", "3", "--min-insync", "2")
		return engineRun{s: produce(addrs, "t", "--count", count(300000, 20000), "--size", "1024")}
	})
}

// fsyncs is how many fsyncs the broker's storage made: the journals'
// group commits, or for the wal engine the partitions' (one each).
func (b *broker) fsyncs(engine string) float64 {
	if engineName(engine) == "journal" {
		return b.metric("skein_journal_fsyncs_total")
	}
	return b.metric("skein_group_commit_seconds_count")
}

// produceMany runs producers produce processes at once, each with
// records/producers of the records, and sums them: MB/s over the wall
// time, the median of their p50s and the largest p99.
func produceMany(addr, topic string, producers, records int, args ...string) produceStats {
	var mu sync.Mutex
	var all []produceStats
	var wg sync.WaitGroup
	start := time.Now()
	for range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := produce(addr, topic, append([]string{"--count", strconv.Itoa(records / producers)}, args...)...)
			mu.Lock()
			all = append(all, s)
			mu.Unlock()
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	var t produceStats
	var p50s []float64
	for _, s := range all {
		t.Records += s.Records
		t.Bytes += s.Bytes
		p50s = append(p50s, s.LatencyMs.P50)
		t.LatencyMs.P99 = max(t.LatencyMs.P99, s.LatencyMs.P99)
		t.LatencyMs.P999 = max(t.LatencyMs.P999, s.LatencyMs.P999)
	}
	slices.Sort(p50s)
	t.LatencyMs.P50 = p50s[len(p50s)/2]
	t.RecordsPerSec = float64(t.Records) / secs
	t.MBPerSec = float64(t.Bytes) / secs / 1e6
	return t
}

// spread16KiB: 8 producers, 16 KiB batches (the Java client's default
// batch.size), 1 KiB records over 1,000 partitions of one broker.
func spread16KiB() []result {
	return perEngine("1 broker, 1,000 partitions, 8 producers, 16 KiB batches of 1 KiB", "target >= 150 MB/s; p50/p99: median p50 and largest p99 of the 8", func(e string, run int) engineRun {
		b := single(fmt.Sprintf("spread-%d-%d", slices.Index(engines, e), run), engineArgs(e)...)
		defer b.stop()
		createTopic(b.addr(), "t", "--partitions", "1000")
		f0, t0 := b.fsyncs(e), time.Now()
		s := produceMany(b.addr(), "t", 8, atoi(count(400000, 40000)), "--size", "1024", "--batch-bytes", "16384")
		fs := (b.fsyncs(e) - f0) / time.Since(t0).Seconds()
		return engineRun{s: s, extra: fmt.Sprintf("(%.0f fsyncs/s, RSS %.0f MB)", fs, b.rss())}
	})
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// rss2000: write at least one segment (512 KiB segments here) to each of
// 2,000 partitions, RSS after; then a consumer reads every partition from
// the beginning, RSS sampled while it reads.
func rss2000() []result {
	return perEngine("1 broker, 2,000 partitions written 1.5 segments each on average (512 KiB segments)", "RSS target < 1 GiB", func(e string, run int) engineRun {
		b := single(fmt.Sprintf("rss-%d-%d", slices.Index(engines, e), run), engineArgs(e, "--segment-bytes", strconv.Itoa(512<<10))...)
		defer b.stop()
		createTopic(b.addr(), "t", "--partitions", "2000")
		recs := 2000 * 768 // 768 KiB of 1 KiB records per partition on average
		if quick {
			recs = 40000
		}
		s := produceMany(b.addr(), "t", 8, recs, "--size", "1024", "--batch-bytes", "65536")
		written := b.rss()
		peak := b.rssWhile(func() {
			cli("consume", b.addr(), "-t", "t", "-o", "beginning", "-e", "-f", "", "--stats", "json")
		})
		return engineRun{s: s, extra: fmt.Sprintf("(RSS %.0f MB after writing %.1f GB, peak %.0f MB while a consumer reads every partition from the start)",
			written, float64(dirSize(b.dir))/1e9, peak)}
	})
}

// rssWhile runs fn and returns the largest RSS sampled meanwhile (MB).
func (b *broker) rssWhile(fn func()) float64 {
	done := make(chan struct{})
	peak := b.rss()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
				peak = max(peak, b.rss())
			}
		}
	}()
	fn()
	close(done)
	wg.Wait()
	return peak
}
