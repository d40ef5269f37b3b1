package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
)

// Kill -9 the leader under acks=all load, five times in a row, chasing the
// new leader each time; restart each killed broker. Nothing acknowledged is
// lost, no record appears twice, offsets are dense, and every replica is
// byte-identical below the high watermark afterwards.
func TestClusterKillLeaderChased(t *testing.T) {
	c := proctest.StartCluster(t, 3, "--replica-lag-time", "3s")
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "chase", client.TopicConfig{Partitions: 1, ReplicationFactor: 3, MinInsyncReplicas: 2}); err != nil {
		t.Fatal(err)
	}
	l := startLoad(t, cl, "chase", 0, 2000)
	leader := c.Leader(cl, "chase", 0, -1, 20*time.Second)
	var failovers []time.Duration
	for round := range 5 {
		before := l.count()
		deadline := time.Now().Add(20 * time.Second)
		for l.count() < before+500 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		killed := time.Now()
		c.Brokers[leader].Kill()
		next := c.Leader(cl, "chase", 0, leader, 30*time.Second)
		// Failover is over when acknowledgements flow again.
		resumed := l.count()
		for l.count() == resumed && time.Since(killed) < 30*time.Second {
			time.Sleep(10 * time.Millisecond)
		}
		failovers = append(failovers, time.Since(killed))
		t.Logf("round %d: killed leader %d, broker %d leads, acks resumed after %v", round, leader, next, time.Since(killed).Round(10*time.Millisecond))
		c.Restart(leader)
		c.WaitHealthy(60 * time.Second)
		leader = next
	}
	l.finish()
	if len(l.failed) > 0 {
		t.Fatalf("%d records failed, first: %v", len(l.failed), l.failed[0])
	}
	c.WaitHealthy(60 * time.Second)
	recs := proctest.ReadAll(t, cl, "chase", 0)
	n := checkLog(t, recs, l.acked)
	for _, id := range c.IDs {
		want := proctest.ReplicaLog(t, c.Brokers[leader].PeerAddr, "chase", 0, n)
		got := proctest.ReplicaLog(t, c.Brokers[id].PeerAddr, "chase", 0, n)
		if !slices.Equal(got, want) {
			t.Fatalf("replica %d differs from the leader below offset %d", id, n)
		}
	}
	slices.Sort(failovers)
	t.Logf("%d records acknowledged, all read back once at their offsets; failover (kill -9 to acks resuming) min %v median %v max %v",
		len(l.acked), failovers[0].Round(10*time.Millisecond), failovers[len(failovers)/2].Round(10*time.Millisecond), failovers[len(failovers)-1].Round(10*time.Millisecond))
}
