package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
	"google.golang.org/grpc"
)

// Config is one run.
type Config struct {
	Seed     uint64
	Duration time.Duration // the fault phase; the run adds set-up, heal and drain
	Scenario string        // a key of Scenarios
	// Dir receives the brokers' data directories and logs, and for a failed
	// run history.json and results.json. It is emptied of broker data when
	// the run passes.
	Dir        string
	Brokers    int // 3
	Partitions int // 3
	Rate       int // records/s over the asynchronous producers
	// GroupMembers is the number of consumer group members sharing the
	// topic; 0 for none.
	GroupMembers int
	// KeyWriters is the number of per-key conditional writers (keys.go)
	// updating Keys keys (12 when 0) of a key-indexed topic beside the
	// test topic (Topic + "-keys"); 0 for none.
	KeyWriters int
	Keys       int
	// CompactedKeys adds a compacted key topic (Topic + "-compacted",
	// cleanup.policy compact) that the key writers update too; the brokers
	// then run with 32 KiB segments and the cleaner every second. Not with
	// the journal engine, which refuses compaction.
	CompactedKeys bool
	Topic         string
	// StorageEngine is the brokers' --storage-engine ("" for their default).
	StorageEngine string
	// Secure runs the brokers with TLS on every listener (mutual TLS
	// between brokers), encrypted gossip and ACLs, and the workload as a
	// SCRAM user over TLS (see security).
	Secure bool
	// Logf receives progress lines.
	Logf func(format string, args ...any)
}

// Report is the outcome of a run.
type Report struct {
	Seed     uint64         `json:"seed"`
	Scenario string         `json:"scenario"`
	Secure   bool           `json:"secure,omitempty"`
	Duration time.Duration  `json:"duration"`
	Elapsed  time.Duration  `json:"elapsed"`
	Faults   map[string]int `json:"faults"`
	// FaultLog is what each fault did, in order, with its run time.
	FaultLog []string `json:"fault_log"`
	// UnexpectedExits counts brokers that exited without being told to
	// (each is restarted, and listed in Problems).
	UnexpectedExits int `json:"unexpected_exits"`
	// SlowestRecovery is the longest time from a fault's heal to a
	// healthy cluster (every partition led, full ISR).
	SlowestRecovery time.Duration `json:"slowest_recovery"`
	Result          Result        `json:"result"`
	// Problems are run-level failures beside the anomalies: the cluster
	// did not recover, a consumer could not catch up, the harness failed.
	Problems []string `json:"problems,omitempty"`
	Pass     bool     `json:"pass"`
}

// Run sets up a cluster in network namespaces, runs the workload under
// the scenario's faults, heals, drains, reads everything back and checks
// the history. It needs root (namespaces, iptables, tmpfs) and the
// binaries named by proctest.SetBins.
func Run(cfg Config) (rep Report) {
	if cfg.Brokers == 0 {
		cfg.Brokers = brokersFor(Scenarios[cfg.Scenario])
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 3
	}
	if cfg.Topic == "" {
		cfg.Topic = "chaos"
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	r := &runner{cfg: cfg, t: &runT{dir: cfg.Dir, logf: cfg.Logf}}
	currentMu.Lock()
	current = r.t
	currentMu.Unlock()
	rep = Report{Seed: cfg.Seed, Scenario: cfg.Scenario, Secure: cfg.Secure, Duration: cfg.Duration, Faults: map[string]int{}}
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(runFatal); !ok {
				rep.Problems = append(rep.Problems, fmt.Sprintf("panic: %v\n%s", p, debug.Stack()))
			}
		}
		rep.Problems = append(rep.Problems, r.t.errors()...)
		r.t.cleanup()
		rep.Elapsed = time.Since(start).Round(time.Second)
		rep.Pass = len(rep.Problems) == 0 && rep.Result.Valid()
		r.save(&rep)
	}()
	r.run(&rep)
	return rep
}

type runner struct {
	cfg     Config
	t       *runT
	lab     *proctest.NetLab
	cluster *proctest.Cluster
	admin   *client.Client
	sec     *security // nil unless Config.Secure
	h       *History
	ops     []Op
	final   Final
}

func (r *runner) run(rep *Report) {
	cfg := r.cfg
	faults, ok := Scenarios[cfg.Scenario]
	if !ok {
		r.t.Fatalf("unknown scenario %q (one of %v)", cfg.Scenario, ScenarioNames())
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed*0x9E3779B97F4A7C15))
	n := &nemesis{r: r, rng: rng, faults: faults, companions: companions(faults)}
	r.startCluster(n)

	// The workload's client knows every broker.
	wcl, err := r.client()
	if err != nil {
		r.t.Fatalf("%v", err)
	}
	r.t.Cleanup(func() { wcl.Close() })
	r.h = NewHistory()
	w := StartWorkload(wcl, r.h, cfg.Seed, WorkloadConfig{Topic: cfg.Topic, Partitions: cfg.Partitions, Rate: cfg.Rate, GroupMembers: cfg.GroupMembers,
		KeyWriters: cfg.KeyWriters, KeyTopics: keyTopicNames(r.keyTopics()), Keys: cfg.Keys})
	sendingStopped := false
	defer func() {
		if !sendingStopped {
			w.StopSending()
			w.Drain(nil, 0)
		}
	}()
	cfg.Logf("seed %d scenario %s: cluster up, workload running for %v", cfg.Seed, cfg.Scenario, cfg.Duration)

	deadline := time.Now().Add(cfg.Duration)
	healAt := r.injectFaults(n, rep, deadline)
	time.Sleep(time.Until(deadline))
	// Heal everything, then keep the load on for a while: every partition
	// must take writes again (G12).
	r.lab.HealAll()
	r.restartExited(rep)
	if err := r.cluster.TryWaitHealthy(60 * time.Second); err != nil {
		r.t.Fatalf("no recovery after the final heal: %v", err)
	}
	if err := r.awaitMoves(90 * time.Second); err != nil {
		r.t.Fatalf("after the final heal: %v", err)
	}
	time.Sleep(5 * time.Second)
	w.StopSending()
	sendingStopped = true

	final, short := r.readBack(w)
	rep.Problems = append(rep.Problems, short...)
	ops := r.h.Ops()
	rep.Result = Check(ops, final, CheckOptions{HealAt: healAt})
	r.ops, r.final = ops, final
}

// startCluster starts the brokers in their network namespaces (one on a
// small tmpfs when the scenario fills a disk), creates the topic, and waits
// until every partition has a leader and a full ISR.
func (r *runner) startCluster(n *nemesis) {
	cfg := r.cfg
	r.lab = proctest.NewNetLab(r.t, cfg.Brokers)
	dirs, logs := make([]string, cfg.Brokers), make([]string, cfg.Brokers)
	for i := range dirs {
		dirs[i] = filepath.Join(cfg.Dir, fmt.Sprintf("broker-%d", i+1))
		logs[i] = filepath.Join(cfg.Dir, fmt.Sprintf("broker-%d.log", i+1))
		if err := os.MkdirAll(dirs[i], 0o755); err != nil {
			r.t.Fatalf("%v", err)
		}
	}
	for _, f := range n.faults {
		if f == FaultDiskFull && n.diskBroker == 0 {
			n.diskBroker = int32(1 + n.rng.IntN(cfg.Brokers))
			unmount, err := mountTmpfs(dirs[n.diskBroker-1], 256<<20)
			if err != nil {
				r.t.Fatalf("%v", err)
			}
			r.t.Cleanup(unmount)
		}
	}
	args := []string{"--replica-lag-time", "5s", "--offsets-topic-partitions", "3"}
	if cfg.StorageEngine != "" {
		args = append(args, "--storage-engine", cfg.StorageEngine)
	}
	args = append(args, r.compactedArgs()...)
	var adminOpts []client.ClientOpt
	if cfg.Secure {
		var hosts []string
		for id := int32(1); id <= int32(cfg.Brokers); id++ {
			hosts = append(hosts, r.lab.IP(id))
		}
		sec, err := newSecurity(r.t, filepath.Join(cfg.Dir, "certs"), hosts)
		if err != nil {
			r.t.Fatalf("secure run: %v", err)
		}
		r.sec, adminOpts = sec, sec.admin
		args = append(args, sec.brokerArgs...)
	}
	r.cluster = proctest.StartNetnsClusterWith(r.t, r.lab, dirs, logs, adminOpts, args...)
	if r.sec != nil {
		r.sec.createUser(r.t, r.cluster.Addrs())
	}
	admin, err := r.client()
	if err != nil {
		r.t.Fatalf("%v", err)
	}
	r.admin = admin
	r.t.Cleanup(func() { admin.Close() })
	tc := client.TopicConfig{Partitions: int32(cfg.Partitions), ReplicationFactor: int32(min(3, cfg.Brokers)), MinInsyncReplicas: 2}
	r.createTopic(cfg.Topic, tc)
	for _, kt := range r.keyTopics() {
		r.createTopic(kt.name, kt.config(tc))
	}
	if err := r.cluster.TryWaitHealthy(60 * time.Second); err != nil {
		r.t.Fatalf("%v", err)
	}
	if r.sec != nil {
		if err := r.sec.checkRefusals(r.cluster.Addrs(), cfg.Topic); err != nil {
			r.t.Fatalf("secure run: %v", err)
		}
	}
}

func (r *runner) createTopic(name string, tc client.TopicConfig) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.admin.CreateTopic(ctx, name, tc); err != nil {
		r.t.Fatalf("create topic %s: %v", name, err)
	}
}

// injectFaults injects the scenario's faults one after another, with quiet
// gaps, until the deadline; after each it waits for the cluster to be
// healthy again and logs what it did. It returns when the last fault was
// healed, as the history counts time.
func (r *runner) injectFaults(n *nemesis, rep *Report, deadline time.Time) (healAt time.Duration) {
	for len(n.faults) > 0 && time.Until(deadline) > 3*time.Second {
		n.hold(2*time.Second, 6*time.Second, deadline)
		if time.Until(deadline) < 2*time.Second {
			break
		}
		f := n.faults[n.rng.IntN(len(n.faults))]
		at := r.h.Since(time.Now())
		f, what, err := n.inject(f, deadline)
		if err != nil {
			r.t.Fatalf("fault %s: %v", f, err)
		}
		rep.Faults[f]++
		for _, e := range n.extra {
			rep.Faults[e]++
		}
		n.extra = nil
		healed := time.Now()
		healAt = r.h.Since(healed)
		r.restartExited(rep)
		if err := r.cluster.TryWaitHealthy(90 * time.Second); err != nil {
			r.t.Fatalf("no recovery after %s (%s): %v", f, what, err)
		}
		rec := time.Since(healed)
		rep.SlowestRecovery = max(rep.SlowestRecovery, rec)
		line := fmt.Sprintf("%6.1fs %-10s %s; healthy %.1fs after heal", at.Seconds(), f, what, rec.Seconds())
		rep.FaultLog = append(rep.FaultLog, line)
		r.cfg.Logf("  %s", line)
	}
	return healAt
}

// restartExited restarts brokers that exited by themselves.
func (r *runner) restartExited(rep *Report) {
	for _, id := range r.cluster.IDs {
		b := r.cluster.Brokers[id]
		if exited, err := b.Exited(); exited {
			rep.UnexpectedExits++
			rep.Problems = append(rep.Problems, fmt.Sprintf("broker %d exited by itself (%v); its log: %s", id, err, b.LogPath))
			b.Forget()
			if err := r.cluster.TryRestart(id); err != nil {
				r.t.Fatalf("restart broker %d: %v", id, err)
			}
		}
	}
}

// readBack reads every partition from the start to its high watermark, and
// every replica's local log, after the consumers caught up.
func (r *runner) readBack(w *Workload) (Final, []string) {
	f := Final{Reads: map[int32][]Rec{}, HW: map[int32]int64{}, Replicas: map[int32][]ReplicaLog{}}
	for p := int32(0); p < int32(r.cfg.Partitions); p++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		lo, err := r.admin.ListOffsets(ctx, r.cfg.Topic, p, client.End())
		cancel()
		if err != nil {
			r.t.Fatalf("high watermark of partition %d: %v", p, err)
		}
		f.HW[p] = lo.HighWatermark
	}
	short := w.Drain(f.HW, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	d, err := r.admin.DescribeTopic(ctx, r.cfg.Topic)
	cancel()
	if err != nil || len(d.Partitions) != r.cfg.Partitions {
		r.t.Fatalf("replicas of %s: %v (%d partitions)", r.cfg.Topic, err, len(d.Partitions))
	}
	for p := int32(0); p < int32(r.cfg.Partitions); p++ {
		f.Reads[p] = r.readPartition(p, f.HW[p])
		short = append(short, r.leftovers(p, d.Partitions[p].Replicas)...)
		// Every replica the metadata names (replicas moved away are gone).
		for _, id := range d.Partitions[p].Replicas {
			raw, recs, err := localLog(r.cluster.Brokers[id].PeerAddr, r.sec.peerDialOption(), r.cfg.Topic, p, f.HW[p])
			if err != nil {
				short = append(short, fmt.Sprintf("replica %d of partition %d: %v", id, p, err))
				continue
			}
			f.Replicas[p] = append(f.Replicas[p], ReplicaLog{Broker: id, HW: f.HW[p], Raw: raw, Recs: recs})
		}
	}
	for _, kt := range r.keyTopics() {
		keys, problems := r.readKeys(kt)
		f.Keys = append(f.Keys, keys)
		short = append(short, problems...)
	}
	return f, short
}

// leftovers names the brokers outside a partition's replicas that still
// keep a directory of it (a replica moved away must be deleted).
func (r *runner) leftovers(p int32, replicas []int32) []string {
	var out []string
	for _, id := range r.cluster.IDs {
		dir := filepath.Join(r.cluster.Brokers[id].Dir, "topics", r.cfg.Topic, fmt.Sprint(p))
		if _, err := os.Stat(dir); err == nil && !slices.Contains(replicas, id) {
			out = append(out, fmt.Sprintf("broker %d keeps %s, a partition it holds no replica of (replicas %v)", id, dir, replicas))
		}
	}
	return out
}

// readPartition reads p from its start to hw through the client.
func (r *runner) readPartition(p int32, hw int64) []Rec {
	k, err := r.admin.NewConsumer(client.StopAtEnd())
	if err != nil {
		r.t.Fatalf("%v", err)
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := k.Assign(ctx, r.cfg.Topic, []int32{p}, client.Beginning()); err != nil {
		r.t.Fatalf("final read of partition %d: %v", p, err)
	}
	var out []Rec
	for {
		rec, err := k.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			r.t.Fatalf("final read of partition %d: %v", p, err)
		}
		if rec.Offset >= hw {
			continue
		}
		out = append(out, decodeRec(rec.Offset, rec.LeaderEpoch, rec.Value))
	}
}

func decodeRec(off int64, epoch int32, value []byte) Rec {
	v, err := DecodeValue(value)
	return Rec{Offset: off, Value: v, Epoch: epoch, Corrupt: err != nil}
}

// localLog reads a broker's own copy of a partition below upTo (the
// test-only LocalLog RPC on its inter-broker address), as stored bytes and
// decoded records.
func localLog(addr string, dial grpc.DialOption, topic string, p int32, upTo int64) ([]byte, []Rec, error) {
	conn, err := grpc.NewClient(addr, dial, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	ic := pb.NewInternalClient(conn)
	var raw []byte
	var recs []Rec
	var br []batch.Record
	for off := int64(0); off < upTo; {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := ic.LocalLog(ctx, &pb.LocalLogRequest{Topic: topic, Partition: p, FromOffset: off, MaxBytes: 4 << 20})
		cancel()
		if err != nil {
			return raw, recs, err
		}
		if d := resp.GetError(); d != nil {
			return raw, recs, fmt.Errorf("%s", d.GetMessage())
		}
		if len(resp.Batches) == 0 {
			return raw, recs, nil // the replica ends early: the checker counts the loss
		}
		for rest := resp.Batches; len(rest) > 0; {
			v, next, err := batch.Next(rest)
			if err != nil {
				return raw, recs, fmt.Errorf("offset %d: %w", off, err)
			}
			if v.BaseOffset() >= upTo {
				return raw, recs, nil
			}
			raw = append(raw, v...)
			br, err = v.Records(br[:0])
			if err != nil {
				for o := v.BaseOffset(); o < v.NextOffset(); o++ {
					recs = append(recs, Rec{Offset: o, Epoch: v.LeaderEpoch(), Corrupt: true})
				}
			}
			for _, x := range br {
				recs = append(recs, decodeRec(x.Offset, v.LeaderEpoch(), x.Value))
			}
			off = v.NextOffset()
			rest = next
		}
	}
	return raw, recs, nil
}

// save writes the history and results of a failed run to its directory,
// and removes the broker data of a passed one.
func (r *runner) save(rep *Report) {
	if r.cfg.Dir == "" {
		return
	}
	if rep.Pass {
		for i := 1; i <= r.cfg.Brokers; i++ {
			os.RemoveAll(filepath.Join(r.cfg.Dir, fmt.Sprintf("broker-%d", i)))
		}
		return
	}
	if r.h != nil {
		ops := r.ops
		if ops == nil {
			ops = r.h.Ops()
		}
		writeJSON(filepath.Join(r.cfg.Dir, "history.json"), ops)
	}
	writeJSON(filepath.Join(r.cfg.Dir, "final.json"), r.final)
	writeJSON(filepath.Join(r.cfg.Dir, "results.json"), rep)
}

func writeJSON(path string, v any) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	enc.SetIndent("", " ")
	enc.Encode(v)
}

var (
	currentMu sync.Mutex
	current   *runT
)

// Abort stops the current run's brokers and removes its namespaces (for an
// interrupted cmd/chaos); the run itself is abandoned.
func Abort() {
	currentMu.Lock()
	t := current
	currentMu.Unlock()
	if t != nil {
		t.cleanup()
	}
}

// runT is the proctest.TB of a run: Fatalf ends the run (not the
// program), Cleanup runs when the run ends.
type runT struct {
	dir      string
	logf     func(string, ...any)
	mu       sync.Mutex
	errs     []string
	cleanups []func()
	tmp      int
}

type runFatal struct{}

func (t *runT) Helper() {}
func (t *runT) Logf(format string, args ...any) {
	t.logf(format, args...)
}
func (t *runT) Errorf(format string, args ...any) {
	t.mu.Lock()
	t.errs = append(t.errs, fmt.Sprintf(format, args...))
	t.mu.Unlock()
}
func (t *runT) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	panic(runFatal{})
}
func (t *runT) Skipf(format string, args ...any) { t.Fatalf(format, args...) }
func (t *runT) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}
func (t *runT) TempDir() string {
	t.mu.Lock()
	t.tmp++
	n := t.tmp
	t.mu.Unlock()
	d := filepath.Join(t.dir, fmt.Sprintf("tmp-%d", n))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	return d
}

func (t *runT) errors() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.errs...)
}

// cleanup runs the cleanups, last first, each protected from the others'
// failures.
func (t *runT) cleanup() {
	t.mu.Lock()
	fs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		func() {
			defer func() { recover() }()
			fs[i]()
		}()
	}
}

// FaultTypes is every fault type in reports, sorted.
func (rep Report) FaultTypes() []string {
	var out []string
	for k := range rep.Faults {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
