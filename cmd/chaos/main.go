// Command chaos runs Skein's fault-injection suite: a three-broker cluster
// (four when replicas move) in network namespaces, a history-recording
// workload on the Go client (idempotent producers with requests in flight,
// conditional writers, following consumers, high-watermark polls, a
// consumer group, per-key conditional writers of a key-indexed topic), a seeded
// nemesis (kill -9, SIGTERM, SIGSTOP, power loss of every broker,
// partitions, storage damage, a full disk, replica moves during other
// faults), and a checker that counts every anomaly of RELIABILITY.md.
//
//	go run ./cmd/chaos                                # one 60 s run of the mix, seed 1
//	go run ./cmd/chaos -seed 7 -runs 10 -duration 5m  # the long tier
//	go run ./cmd/chaos -scenario none -runs 10 -duration 5m
//	go run ./cmd/chaos -seed 12 -scenario storage     # replay one run by its seed
//	go run ./cmd/chaos -secure -runs 2                # TLS, mutual TLS, ACLs, SCRAM clients
//
// Run N uses seed+N (and, with a list of scenarios, the N-th of the list,
// cycling). Each run prints its faults and a table; the last line
// is "N passed, N failed", and the exit status is 1 when any run failed. A
// failed run keeps its directory (-dir/seed-S-SCENARIO): the brokers' data
// and logs, history.json, final.json and results.json. It needs root: it
// creates network namespaces, iptables rules and a tmpfs, and removes them
// when it ends (-cleanup removes what a killed run left behind).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/skeinlog/skein/internal/chaos"
	"github.com/skeinlog/skein/internal/proctest"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are chaos's flags.
type options struct {
	seed                       uint64
	runs, rate, parts, members int
	keyWriters, keys           int
	compacted                  bool
	duration                   time.Duration
	scenarios                  []string
	dir, bin, engine           string
	jsonOut, cleanup, secure   bool
}

func run(args []string, stdout, stderr io.Writer) int {
	o, code, ok := parseOptions(args, stderr)
	if !ok {
		return code
	}
	if o.cleanup {
		for _, r := range proctest.CleanupStale() {
			fmt.Fprintln(stdout, "removed", r)
		}
		return 0
	}
	if err := prepare(&o, stderr); err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 1
	}
	proctest.SetBins(o.bin)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(stderr, "\nchaos: interrupted: stopping the brokers and removing the namespaces")
		chaos.Abort()
		os.Exit(130)
	}()
	return runAll(o, stdout, stderr)
}

// parseOptions parses and checks the flags; ok false means exit with code.
func parseOptions(args []string, stderr io.Writer) (o options, code int, ok bool) {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the first run (run N uses seed+N)")
	fs.IntVar(&o.runs, "runs", 1, "number of runs")
	fs.DurationVar(&o.duration, "duration", time.Minute, "fault phase of each run (set-up, heal and drain add about 30 s)")
	scenario := fs.String("scenario", "mix", "fault mix, or a comma-separated list that the runs cycle through: "+strings.Join(chaos.ScenarioNames(), ", "))
	fs.StringVar(&o.dir, "dir", "", "directory for the runs' data, logs and failed-run histories (default: a new temporary directory)")
	fs.StringVar(&o.bin, "bin", "", "directory with the broker binary (default: built from this module)")
	fs.IntVar(&o.rate, "rate", 300, "records per second over the asynchronous producers")
	fs.IntVar(&o.parts, "partitions", 3, "partitions of the test topic (replication factor 3, min.insync 2)")
	fs.IntVar(&o.members, "group-members", 2, "members of the consumer group that shares the test topic (each replaced now and then); 0 for no group")
	fs.IntVar(&o.keyWriters, "key-writers", 4, "per-key conditional writers (read a key with GetKey, append its next update with ProduceIfKeys, retry on a mismatch) of a key-indexed topic beside the test topic; 0 for none")
	fs.IntVar(&o.keys, "keys", 12, "keys the key writers contend for (the first three are hot)")
	fs.BoolVar(&o.compacted, "compacted", true, "the key writers also update a compacted key topic (cleanup.policy compact); the brokers run with --segment-bytes 32768 --cleaner-interval 1s so the cleaner works during a run (not with -storage-engine journal, which refuses compaction)")
	fs.StringVar(&o.engine, "storage-engine", "", "the brokers' --storage-engine: wal or journal (default: the broker's default)")
	fs.BoolVar(&o.secure, "secure", false, "run the brokers with TLS on every listener (mutual TLS between brokers), encrypted gossip and ACLs, certificates made by `broker certs create`, and the workload as a SCRAM user over TLS")
	fs.BoolVar(&o.jsonOut, "json", false, "print each run's report as a JSON line on stdout instead of the table")
	fs.BoolVar(&o.cleanup, "cleanup", false, "remove namespaces and bridges that killed runs left behind, and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: chaos [flags]\n\nRuns Skein's fault-injection suite (needs root).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, 0, false
		}
		return o, 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "chaos: unexpected argument %q\n", fs.Arg(0))
		return o, 2, false
	}
	o.scenarios = strings.Split(*scenario, ",")
	for _, sc := range o.scenarios {
		if _, ok := chaos.Scenarios[sc]; !ok {
			fmt.Fprintf(stderr, "chaos: unknown scenario %q: one of %s\n", sc, strings.Join(chaos.ScenarioNames(), ", "))
			return o, 2, false
		}
	}
	if o.engine != "" && o.engine != "wal" && o.engine != "journal" {
		fmt.Fprintf(stderr, "chaos: -storage-engine %q: wal or journal\n", o.engine)
		return o, 2, false
	}
	if o.runs < 1 || o.duration < 10*time.Second || o.rate < 1 || o.parts < 1 || o.members < 0 || o.keyWriters < 0 || o.keys < 1 {
		fmt.Fprintln(stderr, "chaos: -runs must be at least 1, -duration at least 10s, -rate, -partitions and -keys at least 1, -group-members and -key-writers at least 0")
		return o, 2, false
	}
	return o, 0, true
}

// prepare checks the machine (root, ip, iptables) and makes the run
// directory and the broker binary when they are not given.
func prepare(o *options, stderr io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, iptables, tmpfs)")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s (Debian: apt-get install iproute2 iptables)", tool)
		}
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "skein-chaos-")
		if err != nil {
			return err
		}
		o.dir = d
	}
	if o.bin == "" {
		d := filepath.Join(o.dir, "bin")
		fmt.Fprintf(stderr, "building the broker into %s\n", d)
		cmd := exec.Command("go", "build", "-trimpath", "-o", d+"/", "github.com/skeinlog/skein/cmd/broker")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
		o.bin = d
	}
	return nil
}

// runAll runs the seeded runs one after another and prints each report and
// the summary; it returns 1 if any run failed.
func runAll(o options, stdout, stderr io.Writer) int {
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
	}
	var reports []chaos.Report
	failed := 0
	for i := 0; i < o.runs; i++ {
		s, sc := o.seed+uint64(i), o.scenarios[i%len(o.scenarios)]
		runDir := filepath.Join(o.dir, fmt.Sprintf("seed-%d-%s", s, sc))
		// A replay starts from nothing: drop what an earlier run kept.
		os.RemoveAll(runDir)
		if err := os.MkdirAll(runDir, 0o755); err != nil {
			fmt.Fprintln(stderr, "chaos:", err)
			return 1
		}
		rep := chaos.Run(chaos.Config{Seed: s, Duration: o.duration, Scenario: sc, Dir: runDir,
			Rate: o.rate, Partitions: o.parts, GroupMembers: o.members,
			KeyWriters: o.keyWriters, Keys: o.keys, CompactedKeys: o.compacted, StorageEngine: o.engine, Secure: o.secure, Logf: logf})
		reports = append(reports, rep)
		if !rep.Pass {
			failed++
		}
		if o.jsonOut {
			b, _ := json.Marshal(rep)
			fmt.Fprintln(stdout, string(b))
		} else {
			printRun(stdout, rep, runDir)
		}
	}
	if o.runs > 1 && !o.jsonOut {
		printSummary(stdout, reports)
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", len(reports)-failed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

// printRun prints one run's table.
func printRun(w io.Writer, rep chaos.Report, dir string) {
	res := rep.Result
	verdict := "PASS"
	if !rep.Pass {
		verdict = "FAIL"
	}
	sec := ""
	if rep.Secure {
		sec = " secure"
	}
	fmt.Fprintf(w, "\nrun seed=%d scenario=%s%s duration=%v elapsed=%v: %s\n", rep.Seed, rep.Scenario, sec, rep.Duration, rep.Elapsed, verdict)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  faults\t%s\n", faultList(rep.Faults))
	fmt.Fprintf(tw, "  sends\t%d attempted, %d acked, %d failed, %d indeterminate\n", res.Attempted, res.Acked, res.Failed, res.Indeterminate)
	fmt.Fprintf(tw, "  read back\t%d records\n", res.Read)
	if res.GroupReads > 0 {
		fmt.Fprintf(tw, "  group\t%d records delivered (%d offsets more than once), %d commits acknowledged\n", res.GroupReads, res.GroupRedelivered, res.GroupCommits)
	}
	for _, k := range res.Keys {
		removed := ""
		if k.Compacted {
			removed = fmt.Sprintf(", %d records compacted away", k.Removed)
		}
		fmt.Fprintf(tw, "  %s\t%d updates attempted, %d acked, %d refused (mismatch, retried), %d indeterminate; %d GetKey reads; %d keys, longest chain %d%s\n",
			k.Topic, k.Attempted, k.Acked, k.Refused, k.Indeterminate, k.Reads, k.Keys, k.LongestChain, removed)
	}
	a := res.Anomalies
	fmt.Fprintf(tw, "  anomalies\tlost %d, lost-at-offset %d, inconsistent %d, duplicate %d, unexpected %d, aborted %d\n",
		a.Lost, a.LostAtOffset, a.Inconsistent, a.Duplicate, a.Unexpected, a.Aborted)
	fmt.Fprintf(tw, "\tproducer-reorder %d, consumer-skip %d, consumer-backward %d, replica-loss %d, replica-diverge %d, hw-regression %d, epoch-order %d, ack-epoch %d\n",
		a.ProducerReorder, a.ConsumerSkip, a.ConsumerBackward, a.ReplicaLoss, a.ReplicaDiverge, a.HWRegression, a.EpochOrder, a.AckEpoch)
	fmt.Fprintf(tw, "\tcommit-regression %d, group-undelivered %d\n", a.CommitRegression, a.GroupUndelivered)
	fmt.Fprintf(tw, "\tkey-lost-update %d, key-fork %d, key-aborted %d, key-unexpected %d, key-inconsistent %d, key-latest %d, key-compacted-latest %d\n",
		a.KeyLostUpdate, a.KeyFork, a.KeyAborted, a.KeyUnexpected, a.KeyInconsistent, a.KeyLatest, a.KeyCompactedLatest)
	fmt.Fprintf(tw, "  liveness\tlongest unavailability %v, writes back %v after the last heal, slowest recovery %v\n",
		res.MaxUnavailable.Round(10*time.Millisecond), res.RecoveredAfterHeal.Round(10*time.Millisecond), rep.SlowestRecovery.Round(100*time.Millisecond))
	if rep.UnexpectedExits > 0 {
		fmt.Fprintf(tw, "  broker exits\t%d unexpected\n", rep.UnexpectedExits)
	}
	tw.Flush()
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "  problem: %s\n", firstLines(p, 8))
	}
	names := make([]string, 0, len(res.Examples))
	for k := range res.Examples {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, e := range res.Examples[k] {
			fmt.Fprintf(w, "  %s: %s\n", k, e)
		}
	}
	if !rep.Pass {
		fmt.Fprintf(w, "  kept %s (history.json, final.json, results.json, broker logs); replay: go run ./cmd/chaos -seed %d -scenario %s -duration %v\n",
			dir, rep.Seed, rep.Scenario, rep.Duration)
	}
}

// printSummary totals the runs.
func printSummary(w io.Writer, reps []chaos.Report) {
	faults := map[string]int{}
	var attempted, acked, anomalies int
	var seeds []string
	for _, r := range reps {
		for k, v := range r.Faults {
			faults[k] += v
		}
		attempted += r.Result.Attempted
		acked += r.Result.Acked
		anomalies += r.Result.Anomalies.Total()
		seeds = append(seeds, fmt.Sprint(r.Seed))
	}
	fmt.Fprintf(w, "\nall runs: seeds %s; faults %s; %d sends attempted, %d acked; %d anomalies\n",
		strings.Join(seeds, ","), faultList(faults), attempted, acked, anomalies)
}

func faultList(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	return strings.Join(lines, "\n    ")
}
