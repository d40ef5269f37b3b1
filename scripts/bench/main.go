// Command bench runs Skein's performance workloads with the CLIs' own bench
// mode against real broker processes and prints one table. Every
// acknowledgement is after fsync.
//
//	go run ./scripts/bench                 all workloads (a few minutes)
//	go run ./scripts/bench -only single-100B,cluster-sync
//	go run ./scripts/bench -start-gb 10    the restart workload with 10 GB
//	go run ./scripts/bench -only spread-16KiB,rss-2000 -engines wal,journal
//
// The workloads marked per engine run on each --storage-engine of
// -engines, three times, the engines interleaved (run 1 on each engine,
// then run 2 ...), each run on a fresh broker; the row shows the median
// run and its note every run.
//
// Brokers run on 127.0.0.1 ports 19500-19599 with data under -dir (default
// a temporary directory, removed at the end).
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

type result struct {
	name, what                     string
	recsPerSec, mbPerSec           float64
	p50, p99, p999                 float64
	note                           string
	hasRate, hasLatency, hasResult bool
}

var (
	bin     string
	dataDir string
	quick   bool
	engines []string
)

func main() {
	only := flag.String("only", "", "comma-separated workloads to run (default all)")
	dir := flag.String("dir", "", "data directory (default: a temporary one, removed after)")
	flag.BoolVar(&quick, "quick", false, "smaller counts: a smoke run, not a measurement")
	startGB := flag.Float64("start-gb", 2, "GB of data in 1,000 partitions for the restart workload")
	engineList := flag.String("engines", "wal,journal", "storage engines the per-engine workloads run on, interleaved")
	flag.Parse()
	engines = strings.Split(*engineList, ",")
	var err error
	if *dir == "" {
		if dataDir, err = os.MkdirTemp("", "skein-bench"); err != nil {
			fatal(err)
		}
		defer os.RemoveAll(dataDir)
	} else {
		dataDir = *dir
	}
	bin = filepath.Join(dataDir, "bin")
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/...")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fatal(fmt.Errorf("build: %w", err))
	}
	workloads := []struct {
		name string
		fn   func() []result
	}{
		{"single-100B", single100B},
		{"single-1KiB", single1KiB},
		{"single-json", singleJSON},
		{"consume-catchup", consumeCatchup},
		{"idle-1000", idle1000},
		{"restart-1000", func() []result { return restart1000(*startGB) }},
		{"cluster-1KiB", cluster1KiB},
		{"cluster-sync", clusterSync},
		{"engines-1KiB", enginesSingle1KiB},
		{"engines-cluster", enginesCluster1KiB},
		{"spread-16KiB", spread16KiB},
		{"rss-2000", rss2000},
	}
	want := map[string]bool{}
	for _, w := range strings.Split(*only, ",") {
		if w != "" {
			want[w] = true
		}
	}
	var results []result
	for _, w := range workloads {
		if len(want) > 0 && !want[w.name] {
			continue
		}
		fmt.Fprintf(os.Stderr, "== %s\n", w.name)
		results = append(results, w.fn()...)
	}
	printTable(results)
}

// running lists the brokers started, so a failure stops them too.
var running []*broker

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	for _, b := range running {
		b.cmd.Process.Kill()
	}
	if dataDir != "" && strings.Contains(dataDir, "skein-bench") {
		os.RemoveAll(dataDir)
	}
	os.Exit(1)
}

// ---- processes --------------------------------------------------------------

type broker struct {
	id   int
	dir  string
	port int
	cmd  *exec.Cmd
	done chan error
}

func (b *broker) addr() string { return fmt.Sprintf("127.0.0.1:%d", b.port) }
func (b *broker) http() string { return fmt.Sprintf("127.0.0.1:%d", b.port+3) }

// startBroker runs broker id with ports base..base+4; join is a gossip
// address or "".
func startBroker(id, base int, dir, join string, extra ...string) *broker {
	b := &broker{id: id, dir: dir, port: base, done: make(chan error, 1)}
	args := []string{"--node-id", strconv.Itoa(id), "--data-dir", dir,
		"--addr", b.addr(), "--gossip-addr", fmt.Sprintf("127.0.0.1:%d", base+1),
		"--raft-addr", fmt.Sprintf("127.0.0.1:%d", base+2), "--http-addr", b.http(),
		"--peer-addr", fmt.Sprintf("127.0.0.1:%d", base+4), "--log-level", "warn", "--kafka-addr", ""}
	if join != "" {
		args = append(args, "--join", join)
	}
	args = append(args, extra...)
	b.cmd = exec.Command(filepath.Join(bin, "broker"), args...)
	logf, err := os.Create(dir + ".log")
	if err != nil {
		fatal(err)
	}
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	if err := b.cmd.Start(); err != nil {
		fatal(err)
	}
	running = append(running, b)
	go func() { b.done <- b.cmd.Wait(); logf.Close() }()
	return b
}

// waitReady polls the health check; it returns how long the broker took.
func (b *broker) waitReady(since time.Time) time.Duration {
	for time.Since(since) < 5*time.Minute {
		if exec.Command(filepath.Join(bin, "broker"), "healthcheck", "--addr", b.addr(), "--timeout", "500ms").Run() == nil {
			return time.Since(since)
		}
		select {
		case err := <-b.done:
			fatal(fmt.Errorf("broker %d exited during start: %v (see %s.log)", b.id, err, b.dir))
		case <-time.After(20 * time.Millisecond):
		}
	}
	fatal(fmt.Errorf("broker %d not ready", b.id))
	return 0
}

func (b *broker) stop() {
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		b.cmd.Process.Kill()
		<-b.done
	}
}

// rss is the broker's resident memory in MB; cpu its CPU seconds.
func (b *broker) rss() float64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.cmd.Process.Pid))
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}

func (b *broker) cpu() float64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", b.cmd.Process.Pid))
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // clock ticks (USER_HZ = 100)
}

// metric reads one value from /metrics.
func (b *broker) metric(name string) float64 {
	out, err := exec.Command("curl", "-s", "http://"+b.http()+"/metrics").Output()
	if err != nil {
		return -1
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return -1
}

func single(name string, extra ...string) *broker {
	b := startBroker(1, 19500, filepath.Join(dataDir, name), "", extra...)
	b.waitReady(time.Now())
	return b
}

func cluster(name string, extra ...string) []*broker {
	var bs []*broker
	for id := 1; id <= 3; id++ {
		join := ""
		if id > 1 {
			join = "127.0.0.1:19511" // broker 1's gossip port
		}
		b := startBroker(id, 19500+10*id, filepath.Join(dataDir, fmt.Sprintf("%s-%d", name, id)), join, extra...)
		bs = append(bs, b)
		if id == 1 {
			b.waitReady(time.Now()) // it bootstraps the quorum the others join
		}
	}
	for _, b := range bs {
		b.waitReady(time.Now())
	}
	return bs
}

func brokersOf(bs []*broker) string {
	var a []string
	for _, b := range bs {
		a = append(a, b.addr())
	}
	return strings.Join(a, ",")
}

func cli(name string, brokers string, args ...string) []byte {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, name), append(args, "--brokers", brokers)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		fatal(fmt.Errorf("%s %v: %v\n%s", name, args, err, errb.String()))
	}
	return out.Bytes()
}

func createTopic(brokers, topic string, args ...string) {
	cli("broker", brokers, append([]string{"topic", "create", topic}, args...)...)
}

type produceStats struct {
	Records       int64   `json:"records"`
	Failed        int64   `json:"failed"`
	Bytes         int64   `json:"bytes"`
	RecordsPerSec float64 `json:"records_per_sec"`
	MBPerSec      float64 `json:"mb_per_sec"`
	LatencyMs     struct {
		P50, P99, P999, Max float64
	} `json:"latency_ms"`
}

func produce(brokers, topic string, args ...string) produceStats {
	out := cli("produce", brokers, append([]string{"-t", topic, "--stats", "json"}, args...)...)
	var s produceStats
	if err := json.Unmarshal(out, &s); err != nil {
		fatal(fmt.Errorf("produce stats: %v: %s", err, out))
	}
	if s.Failed > 0 {
		fatal(fmt.Errorf("produce: %d records failed", s.Failed))
	}
	return s
}

func count(full, small int) string {
	if quick {
		return strconv.Itoa(small)
	}
	return strconv.Itoa(full)
}

func fromProduce(name, what string, s produceStats, note string) result {
	return result{name: name, what: what, recsPerSec: s.RecordsPerSec, mbPerSec: s.MBPerSec,
		p50: s.LatencyMs.P50, p99: s.LatencyMs.P99, p999: s.LatencyMs.P999, note: note,
		hasRate: true, hasLatency: true, hasResult: true}
}

// median runs fn three times (once in -quick) and returns the run with
// the median throughput, and every run's MB/s for the row's note: the
// machine is shared, so the spread is part of the figure.
func median(fn func() produceStats) (produceStats, string) {
	n := 3
	if quick {
		n = 1
	}
	runs := make([]produceStats, n)
	var all []string
	for i := range runs {
		runs[i] = fn()
		all = append(all, fmt.Sprintf("%.1f", runs[i].MBPerSec))
	}
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b produceStats) int { return cmp.Compare(a.MBPerSec, b.MBPerSec) })
	return sorted[n/2], "runs " + strings.Join(all, " / ") + " MB/s"
}

// ---- workloads --------------------------------------------------------------

func single100B() []result {
	b := single("single-100B")
	defer b.stop()
	createTopic(b.addr(), "t")
	s, runs := median(func() produceStats { return produce(b.addr(), "t", "--count", count(2000000, 100000), "--size", "100") })
	return []result{fromProduce("1 broker, 1 partition, 100 B, one producer", "produce", s, "target >= 500,000 records/s; "+runs)}
}

func single1KiB() []result {
	b := single("single-1KiB")
	defer b.stop()
	createTopic(b.addr(), "t")
	s, runs := median(func() produceStats { return produce(b.addr(), "t", "--count", count(300000, 20000), "--size", "1024") })
	return []result{fromProduce("1 broker, 1 partition, 1 KiB, one producer", "produce", s, "target >= 100 MB/s; "+runs)}
}

func singleJSON() []result {
	b := single("single-json")
	defer b.stop()
	var out []result
	for _, codec := range []string{"none", "lz4", "zstd", "snappy"} {
		createTopic(b.addr(), "j-"+codec)
		s, runs := median(func() produceStats {
			return produce(b.addr(), "j-"+codec, "--count", count(300000, 20000), "--size", "1024", "--payload", "json", "--compression", codec)
		})
		size := dirSize(filepath.Join(dataDir, "single-json", "topics", "j-"+codec))
		out = append(out, fromProduce("1 broker, JSON-like 1 KiB, --compression "+codec, "produce", s,
			fmt.Sprintf("MB/s of uncompressed records; %.0f MB on disk; %s", float64(size)/1e6, runs)))
	}
	return out
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func consumeCatchup() []result {
	b := single("consume")
	defer b.stop()
	createTopic(b.addr(), "t")
	n := count(2000000, 50000) // 2 GB of 1 KiB records
	produce(b.addr(), "t", "--count", n, "--size", "1024")
	// Cold cache when we may drop it (root on Linux), else warm.
	cache := "page cache warm"
	if os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0) == nil {
		cache = "page cache dropped first"
	}
	out := cli("consume", b.addr(), "-t", "t", "-o", "beginning", "-e", "-f", "", "--stats", "json")
	var s struct {
		Records       int64   `json:"records"`
		Bytes         int64   `json:"bytes"`
		RecordsPerSec float64 `json:"records_per_sec"`
		MBPerSec      float64 `json:"mb_per_sec"`
	}
	if i := bytes.LastIndexByte(bytes.TrimSpace(out), '\n'); i >= 0 {
		out = out[i+1:]
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &s); err != nil {
		fatal(fmt.Errorf("consume stats: %v: %s", err, out))
	}
	return []result{{name: fmt.Sprintf("consumer from the start of a %.1f GB partition", float64(s.Bytes)/1e9), what: "consume",
		recsPerSec: s.RecordsPerSec, mbPerSec: s.MBPerSec, note: "target >= 300 MB/s; " + cache, hasRate: true, hasResult: true}}
}

func idle1000() []result {
	b := single("idle")
	defer b.stop()
	createTopic(b.addr(), "t", "--partitions", "1000")
	time.Sleep(2 * time.Second)
	cpu0 := b.cpu()
	time.Sleep(10 * time.Second)
	cpu := (b.cpu() - cpu0) / 10
	return []result{{name: "1,000 partitions on one broker, idle", what: "idle", hasResult: true,
		note: fmt.Sprintf("RSS %.0f MB, %.0f goroutines, %.1f%% of a core (target RSS <= 500 MB, no busy goroutine)",
			b.rss(), b.metric("go_goroutines"), 100*cpu)}}
}

func restart1000(gb float64) []result {
	name := "restart"
	b := single(name)
	createTopic(b.addr(), "t", "--partitions", "1000")
	records := int(gb * 1e9 / 1024)
	if quick {
		records = 20000
	}
	produce(b.addr(), "t", "--count", strconv.Itoa(records), "--size", "1024", "--batch-bytes", "65536")
	size := dirSize(filepath.Join(dataDir, name))
	b.stop()
	// Cold cache when we may drop it (root on Linux), so that the disk
	// bytes read below are the log reads a start causes.
	cache := ""
	if os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0) == nil {
		cache = ", page cache dropped first"
	}
	start := time.Now()
	b = startBroker(1, 19500, filepath.Join(dataDir, name), "")
	took := b.waitReady(start)
	rss := b.rss()
	read0 := b.readBytes()
	time.Sleep(30 * time.Second)
	read30 := b.readBytes() - read0
	b.stop()
	return []result{{name: fmt.Sprintf("broker start with %.1f GB in 1,000 partitions", float64(size)/1e9), what: "restart", hasResult: true,
		note: fmt.Sprintf("ready in %.2f s, RSS %.0f MB after start, %.0f MB read from disk by then and %.0f MB in the next 30 s%s (target <= 5 s for 10 GB)",
			took.Seconds(), rss, float64(read0)/1e6, float64(read30)/1e6, cache)}}
}

// readBytes is how many bytes the broker caused to be read from storage
// (read_bytes in /proc/<pid>/io: page cache hits do not count).
func (b *broker) readBytes() int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/io", b.cmd.Process.Pid))
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "read_bytes: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return -1
}

func cluster1KiB() []result {
	bs := cluster("c1k")
	defer func() {
		for _, b := range bs {
			b.stop()
		}
	}()
	addrs := brokersOf(bs)
	createTopic(addrs, "t", "--partitions", "6", "--replication-factor", "3", "--min-insync", "2")
	s, runs := median(func() produceStats { return produce(addrs, "t", "--count", count(300000, 20000), "--size", "1024") })
	return []result{fromProduce("3 brokers, RF 3, acks=all, min.insync 2, 1 KiB", "produce", s, "target >= 60 MB/s; 6 partitions; "+runs)}
}

func clusterSync() []result {
	bs := cluster("csync")
	defer func() {
		for _, b := range bs {
			b.stop()
		}
	}()
	addrs := brokersOf(bs)
	createTopic(addrs, "t", "--partitions", "1", "--replication-factor", "3", "--min-insync", "2")
	s := produce(addrs, "t", "--count", count(3000, 300), "--size", "1024", "--rate", "200", "--linger", "0s")
	return []result{fromProduce("same, one record in flight", "produce", s, "target p50 <= 1.5 ms, p99 <= 5 ms")}
}

// ---- output -----------------------------------------------------------------

func printTable(rs []result) {
	host, _ := os.Hostname()
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	var uname syscall.Utsname
	syscall.Uname(&uname)
	rel := func(a [65]int8) string {
		var b []byte
		for _, c := range a {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		return string(b)
	}
	fmt.Printf("Skein bench, %s, %s: %d cores (%s), Linux %s, %s\n\n", time.Now().Format("2006-01-02 15:04 MST"),
		host, runtime.NumCPU(), model, rel(uname.Release), runtime.Version())
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\trecords/s\tMB/s\tp50 ms\tp99 ms\tp999 ms\tnotes")
	for _, r := range rs {
		cols := []string{r.name, "-", "-", "-", "-", "-", r.note}
		if r.hasRate {
			cols[1], cols[2] = fmt.Sprintf("%.0f", r.recsPerSec), fmt.Sprintf("%.1f", r.mbPerSec)
		}
		if r.hasLatency {
			cols[3], cols[4], cols[5] = fmt.Sprintf("%.2f", r.p50), fmt.Sprintf("%.2f", r.p99), fmt.Sprintf("%.2f", r.p999)
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	tw.Flush()
}
