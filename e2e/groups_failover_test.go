package e2e

import (
	"context"
	"strings"
	"syscall"
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
	for _, l := range loads {
		l.finish()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		d, err := cl.DescribeGroup(ctx, "billing")
		caught := err == nil && len(d.Partitions) == 6
		for _, p := range d.Partitions {
			caught = caught && p.Lag == 0
		}
		if caught {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag did not reach 0: %+v %v", d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, m := range ms {
		m.signal(syscall.SIGTERM)
	}
	close(watch.stop)
	<-watch.done
	if len(watch.regressed) > 0 {
		t.Errorf("committed offsets went back: %v", watch.regressed)
	}
	checkDelivered(t, ms, loads)
	r := proctest.MustCLI(t, "consume", "", "-b", addrs, "-t", "orders", "-G", "billing", "-e")
	if r.Stdout != "" {
		t.Fatalf("after a clean stop, a restart read %d bytes: %.200s", len(r.Stdout), r.Stdout)
	}
}
