package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
)

// The figures of docs/groups.md: rebalance time after a member is killed
// (default 10 s session timeout) and commit latency. A measuring tier:
// SKEIN_GROUP_FIGURES=N runs the rebalance N times.
func TestGroupFigures(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("SKEIN_GROUP_FIGURES"))
	if runs < 1 {
		t.Skip("measuring tier: set SKEIN_GROUP_FIGURES=N (rebalance runs)")
	}
	b := proctest.StartBroker(t, t.TempDir(), "")
	cl, err := client.New(client.Brokers(b.Addr), client.RequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(runs)*time.Minute+2*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "orders", client.TopicConfig{Partitions: 6}); err != nil {
		t.Fatal(err)
	}
	commitLatency(ctx, t, cl)
	var took []time.Duration
	for i := range runs {
		group := fmt.Sprintf("run%d", i)
		args := []string{"--session-timeout", "10s"}
		ms := []*member{startMember(t, b.Addr, group, "orders", args...), startMember(t, b.Addr, group, "orders", args...), startMember(t, b.Addr, group, "orders", args...)}
		waitAssigned(t, cl, group, []int{2, 2, 2}, 30*time.Second)
		ms[0].signal(syscall.SIGKILL)
		d := waitAssigned(t, cl, group, []int{3, 3}, 30*time.Second)
		took = append(took, d)
		t.Logf("run %d: partitions moved %v after SIGKILL", i, d.Round(time.Millisecond))
		ms[1].signal(syscall.SIGTERM)
		ms[2].signal(syscall.SIGTERM)
	}
	slices.Sort(took)
	t.Logf("rebalance after SIGKILL, session timeout 10s, %d runs: min %v p50 %v max %v", runs,
		took[0].Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}

// commitLatency times 2000 commits of one member, one at a time.
func commitLatency(ctx context.Context, t *testing.T, cl *client.Client) {
	p, err := cl.NewProducer(client.RecordPartitioner(client.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := range n {
		p.Produce(ctx, &client.Record{Topic: "orders", Partition: 0, Value: []byte("x")}, nil)
		_ = i
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	p.Close()
	g, err := cl.NewGroupConsumer("latency", []string{"orders"}, client.AutoCommit(false), client.ResetOffset(client.Beginning()))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var lat []time.Duration
	for len(lat) < n {
		r, err := g.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.Partition != 0 {
			continue
		}
		start := time.Now()
		if err := g.CommitRecords(ctx, r); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	t.Logf("commit latency over %d commits: p50 %v p99 %v max %v", n, lat[n/2].Round(time.Microsecond),
		lat[n*99/100].Round(time.Microsecond), lat[n-1].Round(time.Microsecond))
}
