package broker_test

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/partition"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// BenchmarkOneInFlight is the latency a producer feels when it waits for
// each record: three brokers in this process over loopback, a topic with
// replication factor 3, acks=all, one 1 KiB record in flight. One
// iteration is one record; run it with a fixed count so the percentiles
// have enough samples:
//
//	go test -run '^$' -bench BenchmarkOneInFlight -benchtime 2000x ./broker/
//
// "grpc" sends unary Produce calls to the leader; "client" goes through the
// Go client's producer (linger 0), as `produce --rate 200 --linger 0s`
// does. Both send at most 200 records a second, as that command does;
// "grpc-busy" sends each record as soon as the previous one is acked. Besides
// p50/p99 of the whole round trip, it reports the median of each step of
// the way (see stepRecorder) and logs a table with their p50/p90/p99.
func BenchmarkOneInFlight(b *testing.B) {
	for _, mode := range []string{"grpc", "client", "grpc-busy"} {
		b.Run(mode, func(b *testing.B) { benchOneInFlight(b, mode) })
	}
}

func benchOneInFlight(b *testing.B, mode string) {
	rec := newStepRecorder()
	cl := brokertest.NewCluster(b, 3, brokertest.WithConfig(func(cfg *broker.Config) {
		id := cfg.NodeID
		cfg.Trace = func(s partition.Step, replica int32, off int64) { rec.trace(id, s, replica, off) }
	}))
	c := newClient(b, cl.Addrs())
	ctx := cl.Context(5 * time.Minute)
	if _, err := c.CreateTopic(ctx, "lat", client.TopicConfig{Partitions: 1, ReplicationFactor: 3, MinInsyncReplicas: 2}); err != nil {
		b.Fatal(err)
	}
	leader := cl.WaitLeader("lat", 0, 20*time.Second)
	cl.WaitFor("a full ISR", 20*time.Second, func() bool {
		t := cl.Broker(leader).Metadata().Topics["lat"]
		return len(t.Partitions) == 1 && len(t.Partitions[0].ISR) == 3
	})
	rec.leader.Store(leader)
	send := sender(b, mode, c, cl.Broker(leader).Addr())
	for range 50 { // warm up connections, buffers and the follower fetch loops
		if _, err := send(ctx); err != nil {
			b.Fatal(err)
		}
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	totals := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	pace := 5 * time.Millisecond // 200 records a second
	if mode == "grpc-busy" {
		pace = 0
	}
	for i := range b.N {
		if i > 0 && pace > 0 {
			time.Sleep(time.Until(rec.last.Add(pace)))
		}
		start := time.Now()
		rec.last = start
		end, err := send(ctx)
		if err != nil {
			b.Fatal(err)
		}
		acked := time.Now()
		totals = append(totals, acked.Sub(start))
		rec.sent(end, start, acked)
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	slices.Sort(totals)
	b.ReportMetric(msAt(totals, 0.50), "p50-ms")
	b.ReportMetric(msAt(totals, 0.99), "p99-ms")
	b.ReportMetric(msAt(totals, 1), "max-ms")
	b.ReportMetric(float64(ms1.NumGC-ms0.NumGC)/float64(b.N), "gc/op")
	steps, outliers := rec.breakdown()
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "%d records, %d GCs (%.1f ms paused in all)\n%-34s %8s %8s %8s\n", b.N, ms1.NumGC-ms0.NumGC,
		float64(ms1.PauseTotalNs-ms0.PauseTotalNs)/1e6, "step (ms)", "p50", "p90", "p99")
	for _, s := range steps {
		slices.Sort(s.d)
		fmt.Fprintf(&tbl, "%-34s %8.3f %8.3f %8.3f\n", s.name, msAt(s.d, 0.5), msAt(s.d, 0.9), msAt(s.d, 0.99))
		if s.metric != "" {
			b.ReportMetric(msAt(s.d, 0.5), s.metric+"-p50-ms")
		}
	}
	fmt.Fprintf(&tbl, "slowest 1%%: %d records, %d of them with an fsync (leader's or follower's) over half their time\n", outliers.slow, outliers.fsyncBound)
	b.Log("\n" + tbl.String())
}

// outlierCount says how many of the slowest 1% of records spent most of
// their time in an fsync: the disk's stalls, not the broker's code.
type outlierCount struct{ slow, fsyncBound int }

// sender returns a function that produces one 1 KiB record with acks=all,
// waits for it and returns its end offset.
func sender(b *testing.B, mode string, c *client.Client, leaderAddr string) func(context.Context) (int64, error) {
	value := make([]byte, 1024)
	if mode != "client" {
		sc := dial(b, leaderAddr)
		raw := mkBatchSized(b, len(value))
		return func(ctx context.Context) (int64, error) {
			r, err := sc.Produce(ctx, &pb.ProduceRequest{Topic: "lat", LeaderEpoch: -1, Acks: pb.Acks_ACKS_ALL, Batch: raw})
			if err != nil {
				return 0, err
			}
			return r.BaseOffset + 1, nil
		}
	}
	p, err := c.NewProducer(client.Linger(0), client.RequiredAcks(client.AcksAll), client.Idempotent(true))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return func(ctx context.Context) (int64, error) {
		r := &client.Record{Topic: "lat", Value: value}
		if err := p.ProduceSync(ctx, r); err != nil {
			return 0, err
		}
		return r.Offset + 1, nil
	}
}

func msAt(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(q*float64(len(sorted))), len(sorted)-1)
	return float64(sorted[i]) / 1e6
}

// stepRecorder lines up the steps of each measured record (by its end
// offset) across the three brokers, which share this process's clock.
type stepRecorder struct {
	leader atomic.Int32
	last   time.Time // the last record's send, for pacing

	mu   sync.Mutex
	recs map[int64]*recordSteps
	// early holds steps seen before the client learned the record's offset
	// (the brokers are faster than the ack): every step is kept by offset.
	early map[stepKey]time.Time
}

type stepKey struct {
	step    partition.Step
	replica int32
	offset  int64
}

type recordSteps struct {
	start, acked time.Time
}

func newStepRecorder() *stepRecorder {
	return &stepRecorder{recs: map[int64]*recordSteps{}, early: map[stepKey]time.Time{}}
}

func (r *stepRecorder) trace(broker int32, s partition.Step, replica int32, off int64) {
	now := time.Now()
	if replica < 0 {
		replica = broker
	}
	if s == partition.StepHighWatermark && broker != r.leader.Load() {
		return // a follower's HW comes after the ack
	}
	r.mu.Lock()
	k := stepKey{s, replica, off}
	if _, ok := r.early[k]; !ok {
		r.early[k] = now
	}
	r.mu.Unlock()
}

func (r *stepRecorder) sent(end int64, start, acked time.Time) {
	r.mu.Lock()
	r.recs[end] = &recordSteps{start: start, acked: acked}
	r.mu.Unlock()
}

type stepDurations struct {
	name, metric string
	d            []time.Duration
}

// breakdown returns, for each step of the way, its duration per record:
// the follower whose report came last is the one the ack waited for.
func (r *stepRecorder) breakdown() ([]stepDurations, outlierCount) {
	r.mu.Lock()
	defer r.mu.Unlock()
	leader := r.leader.Load()
	steps := []stepDurations{
		{name: "client send -> leader written", metric: "send"},
		{name: "leader write -> leader fsynced", metric: "fsync"},
		{name: "leader write -> fetch answered", metric: "wake"},
		{name: "fetch answered -> follower has it", metric: "fetch"},
		{name: "follower append+fsync", metric: "ffsync"},
		{name: "follower fsynced -> leader knows", metric: "report"},
		{name: "last of leader/follower -> HW", metric: "hw"},
		{name: "HW -> client has ack", metric: "ack"},
		{name: "total (client)"},
	}
	var perRecord [][2]time.Duration // total, longest fsync
	for end, rs := range r.recs {
		at := func(s partition.Step, replica int32) (time.Time, bool) {
			t, ok := r.early[stepKey{s, replica, end}]
			return t, ok
		}
		written, ok1 := at(partition.StepWritten, leader)
		synced, ok2 := at(partition.StepSynced, leader)
		hw, ok3 := at(partition.StepHighWatermark, leader)
		if !ok1 || !ok2 || !ok3 {
			continue
		}
		var gate int32 = -1
		var last time.Time
		for id := int32(1); id <= 3; id++ {
			if t, ok := at(partition.StepReported, id); ok && id != leader && t.After(last) {
				gate, last = id, t
			}
		}
		served, ok4 := at(partition.StepServed, gate)
		fetched, ok5 := at(partition.StepFetched, gate)
		replicated, ok6 := at(partition.StepReplicated, gate)
		if gate < 0 || !ok4 || !ok5 || !ok6 {
			continue
		}
		ready := last
		if synced.After(ready) {
			ready = synced
		}
		for i, d := range []time.Duration{
			written.Sub(rs.start), synced.Sub(written), served.Sub(written), fetched.Sub(served),
			replicated.Sub(fetched), last.Sub(replicated), hw.Sub(ready), rs.acked.Sub(hw), rs.acked.Sub(rs.start),
		} {
			steps[i].d = append(steps[i].d, d)
		}
		perRecord = append(perRecord, [2]time.Duration{rs.acked.Sub(rs.start), max(synced.Sub(written), replicated.Sub(fetched))})
	}
	slices.SortFunc(perRecord, func(a, b [2]time.Duration) int { return cmp.Compare(b[0], a[0]) })
	var oc outlierCount
	for _, pr := range perRecord[:len(perRecord)/100] {
		oc.slow++
		if 2*pr[1] > pr[0] {
			oc.fsyncBound++
		}
	}
	return steps, oc
}
