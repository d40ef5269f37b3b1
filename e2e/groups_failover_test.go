package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
)

// Killing the broker that coordinates a group (the leader of its offsets
// partition) moves the group to the partition's new leader: the members
// find it, are fenced there (membership is not replicated), rejoin and go
// on from the committed offsets — no acknowledged record undelivered, no
// committed offset going back.
func TestGroupCoordinatorFailover(t *testing.T) {
	c := proctest.StartCluster(t, 3, "--offsets-topic-partitions", "3", "--replica-lag-time", "2s")
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "orders", client.TopicConfig{Partitions: 6, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	var loads []*load
	for p := range int32(6) {
		loads = append(loads, startLoad(t, cl, "orders", p, 30))
	}
	addrs := strings.Join(c.Addrs(), ",")
	ms := []*member{startMember(t, addrs, "billing", "orders"), startMember(t, addrs, "billing", "orders")}
	waitAssigned(t, cl, "billing", []int{3, 3}, 30*time.Second)
	watch := watchOffsets(cl, "billing")
	time.Sleep(time.Second)
	d, err := cl.DescribeGroup(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	c.Brokers[d.Coordinator].Kill()
	t.Logf("killed broker %d, the coordinator of the group", d.Coordinator)
	start := time.Now()
	for {
		d2, err := cl.DescribeGroup(ctx, "billing")
		if err == nil && d2.Coordinator != d.Coordinator && len(d2.Members) == 2 && d2.State == "Stable" {
			t.Logf("group stable at broker %d after %v", d2.Coordinator, time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("group not stable at a new coordinator within 60s: %+v %v", d2, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	finishGroupRun(ctx, t, cl, addrs, ms, loads, watch)
}
