package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
)

// Isolate a partition's leader from the other brokers while clients still
// reach it: it stops acknowledging acks=all, the majority elects a new
// leader, and on heal the old leader truncates what it appended alone,
// catches up, and every replica is byte-identical below the HW.
func TestNetnsIsolatedLeader(t *testing.T) {
	l := proctest.NewNetLab(t, 3)
	c := proctest.StartNetnsCluster(t, l, 3, "--replica-lag-time", "3s")
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "iso", client.TopicConfig{Partitions: 1, ReplicationFactor: 3, MinInsyncReplicas: 2}); err != nil {
		t.Fatal(err)
	}
	ld := startLoad(t, cl, "iso", 0, 500)
	time.Sleep(time.Second)
	leader := c.Leader(cl, "iso", 0, -1, 20*time.Second)

	// A client that can only talk to the isolated leader.
	lc, err := client.New(client.Brokers(c.Brokers[leader].Addr), client.RequestTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	// Not idempotent, so its timed-out requests fail instead of being
	// retried: a retry refreshes metadata from whichever broker answered
	// last, which can be on the majority side (clients reach every broker),
	// and then a new leader's acks would be counted below.
	p, err := lc.NewProducer(client.DeliveryTimeout(3*time.Second), client.RecordPartitioner(client.ManualPartitioner()), client.Idempotent(false))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	isolated := time.Now()
	l.Isolate(leader)
	t.Logf("isolated leader %d", leader)
	// It must not acknowledge acks=all any more.
	acksOnIsolated := 0
	for time.Since(isolated) < 10*time.Second {
		err := p.ProduceSync(ctx, &client.Record{Topic: "iso", Partition: 0, Value: []byte(fmt.Sprint("alone-", time.Now().UnixNano()))})
		if err == nil && time.Since(isolated) > 500*time.Millisecond {
			acksOnIsolated++
		}
	}
	if acksOnIsolated > 0 {
		t.Fatalf("the isolated leader acknowledged %d acks=all writes", acksOnIsolated)
	}
	// The majority side elects a new leader.
	others := []string{}
	for _, id := range c.IDs {
		if id != leader {
			others = append(others, c.Brokers[id].Addr)
		}
	}
	mc, err := client.New(client.Brokers(others...), client.RequestTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	newLeader := c.Leader(mc, "iso", 0, leader, 30*time.Second)
	t.Logf("broker %d leads after %v", newLeader, time.Since(isolated).Round(100*time.Millisecond))

	l.Heal(leader)
	c.WaitHealthy(60 * time.Second)
	ld.finish()
	// The main load's client could reach everyone: its records may have
	// failed only while the isolated leader held them (indeterminate).
	recs := proctest.ReadAll(t, cl, "iso", 0)
	n := checkLogNoDupCheck(t, recs, ld.acked)
	for _, id := range c.IDs {
		want := proctest.ReplicaLog(t, c.Brokers[newLeader].PeerAddr, "iso", 0, n)
		if got := proctest.ReplicaLog(t, c.Brokers[id].PeerAddr, "iso", 0, n); string(got) != string(want) {
			t.Fatalf("replica %d differs below offset %d after the heal", id, n)
		}
	}
	for _, r := range recs {
		if strings.HasPrefix(string(r.Value), "alone-") {
			// Written only on the isolated leader, never acknowledged:
			// it must have been truncated away.
			t.Fatalf("a write the isolated leader took alone survived at offset %d", r.Offset)
		}
	}
	t.Logf("%d acknowledged records intact; %d failed during the isolation", len(ld.acked), len(ld.failed))
}

// checkLogNoDupCheck is checkLog without the duplicate check: a producer
// that is not idempotent may legitimately write a retried record twice.
func checkLogNoDupCheck(t testing.TB, recs []*client.Record, acked map[string]int64) int64 {
	t.Helper()
	at := map[int64]string{}
	for i, r := range recs {
		if r.Offset != int64(i) {
			t.Fatalf("offset %d at position %d: not dense", r.Offset, i)
		}
		at[r.Offset] = string(r.Value)
	}
	for v, off := range acked {
		if at[off] != v {
			t.Fatalf("acknowledged %q at offset %d; offset holds %q", v, off, at[off])
		}
	}
	return int64(len(recs))
}
