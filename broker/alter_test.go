package broker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/client"
)

func ptr[T any](v T) *T { return &v }

// Growing a topic while a producer writes to it: the new partitions get
// leaders on the cluster, the producer (refreshing its metadata) writes to
// them, nothing acknowledged is lost; a lower max record size applies at
// once on every replica; the new settings survive a restart of the brokers.
func TestAlterTopicLive(t *testing.T) {
	if testing.Short() {
		t.Skip("three brokers with gossip and Raft")
	}
	cl := brokertest.NewCluster(t, 3)
	ctx := cl.Context(90 * time.Second)
	admin := newClient(t, cl.Addrs())
	if _, err := admin.CreateTopic(ctx, "grow", client.TopicConfig{Partitions: 2, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	pc, err := client.New(client.Brokers(cl.Addrs()...), client.MetadataMaxAge(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	p, err := pc.NewProducer(client.Linger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	perPartition := map[int32]int{}
	var failed []error
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// Distinct keys spread the records over every partition the
			// producer knows of.
			r := &client.Record{Topic: "grow", Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte("v")}
			if err := p.ProduceSync(ctx, r); err != nil {
				mu.Lock()
				failed = append(failed, err)
				mu.Unlock()
				return
			}
			mu.Lock()
			perPartition[r.Partition]++
			mu.Unlock()
		}
	}()
	time.Sleep(300 * time.Millisecond)
	ti, err := admin.AlterTopic(ctx, "grow", client.TopicAlter{Partitions: ptr(int32(5)), RetentionMs: ptr(int64(3600_000))})
	if err != nil {
		t.Fatal(err)
	}
	if ti.Config.Partitions != 5 || len(ti.Partitions) != 5 || ti.Config.RetentionMs != 3600_000 {
		t.Fatalf("alter answered %+v", ti)
	}
	for part := int32(2); part < 5; part++ {
		cl.WaitLeader("grow", part, 20*time.Second)
	}
	cl.WaitFor("the producer writes to the new partitions", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return perPartition[2] > 0 && perPartition[3] > 0 && perPartition[4] > 0 || len(failed) > 0
	})
	close(stop)
	<-done
	if len(failed) > 0 {
		t.Fatalf("a produce failed while the topic grew: %v", failed[0])
	}

	// Shrinking is refused and changes nothing.
	if _, err := admin.AlterTopic(ctx, "grow", client.TopicAlter{Partitions: ptr(int32(4))}); !errors.Is(err, client.ErrInvalidRequest) {
		t.Fatalf("shrink: err %v, want an invalid-request error", err)
	}
	// A lower record limit applies at once, whoever leads.
	if _, err := admin.AlterTopic(ctx, "grow", client.TopicAlter{MaxRecordBytes: ptr(int32(1000))}); err != nil {
		t.Fatal(err)
	}
	big := &client.Record{Topic: "grow", Partition: 0, Value: bytes.Repeat([]byte("x"), 2000)}
	if err := p.ProduceSync(ctx, big); !errors.Is(err, client.ErrRecordTooLarge) {
		t.Fatalf("a 2000-byte record after max-record-bytes 1000: err %v", err)
	}
	if _, err := admin.AlterTopic(ctx, "missing", client.TopicAlter{MaxRecordBytes: ptr(int32(1000))}); !errors.Is(err, client.ErrUnknownTopic) {
		t.Fatalf("alter of a missing topic: err %v", err)
	}

	// The settings are controller state: they survive restarts.
	for _, id := range []int32{1, 2, 3} {
		cl.Restart(id)
	}
	d, err := admin.DescribeTopic(ctx, "grow")
	if err != nil {
		t.Fatal(err)
	}
	if d.Config.Partitions != 5 || d.Config.MaxRecordBytes != 1000 || d.Config.RetentionMs != 3600_000 {
		t.Fatalf("after restarts: %+v", d.Config)
	}
}

// A retention lowered live deletes the old segments at the next check.
func TestAlterRetentionDeletesOldSegments(t *testing.T) {
	b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) {
		c.SegmentBytes = 4096
		c.RetentionCheckInterval = 100 * time.Millisecond
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newClient(t, []string{b.Addr()})
	if _, err := c.CreateTopic(ctx, "old", client.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := c.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if err := p.ProduceSync(ctx, &client.Record{Topic: "old", Value: bytes.Repeat([]byte("r"), 200)}); err != nil {
			t.Fatal(err)
		}
	}
	start := func() int64 {
		d, err := c.DescribeTopic(ctx, "old")
		if err != nil {
			t.Fatal(err)
		}
		return d.Status[0].LogStartOffset
	}
	if s := start(); s != 0 {
		t.Fatalf("log start %d before the change", s)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := c.AlterTopic(ctx, "old", client.TopicAlter{RetentionMs: ptr(int64(1))}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for start() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("old segments were not deleted after retention was lowered")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
