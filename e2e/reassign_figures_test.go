package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
)

// The figures of docs/operations.md: the time to move a 1 GiB replica at
// a 50MB/s throttle, and the latency of an acks=all producer writing to
// that partition before and during the move. A measuring tier:
// SKEIN_REASSIGN_FIGURES=N moves the replica N times (back and forth
// between two brokers of four); SKEIN_REASSIGN_THROTTLE sets another
// throttle ("off" for the unthrottled copy rate).
func TestReassignFigures(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("SKEIN_REASSIGN_FIGURES"))
	if runs < 1 {
		t.Skip("measuring tier: set SKEIN_REASSIGN_FIGURES=N (moves of a 1 GiB replica)")
	}
	throttle := os.Getenv("SKEIN_REASSIGN_THROTTLE")
	if throttle == "" {
		throttle = "50MB/s"
	}
	c := proctest.StartCluster(t, 4)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(runs)*3*time.Minute+5*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "big", client.TopicConfig{Partitions: 1, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	fillBytes(ctx, t, cl, "big", 1<<30)
	d, err := cl.DescribeTopic(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	replicas, leader := d.Partitions[0].Replicas, d.Partitions[0].Leader
	// The leader stays first (no leadership move); a follower trades
	// places with the broker holding nothing, and back.
	var from, to int32 = -1, -1
	for _, id := range c.IDs {
		switch {
		case !slices.Contains(replicas, id):
			to = id
		case id != leader && from < 0:
			from = id
		}
	}
	base := measureProduce(ctx, t, cl, "big", func() { time.Sleep(15 * time.Second) })
	t.Logf("producer, 200 x 1 KiB records/s, acks=all, no move: %s", base)
	for i := range runs {
		target := []int32{leader}
		for _, r := range replicas {
			if r != leader && r != from {
				target = append(target, r)
			}
		}
		target = append(target, to)
		var took time.Duration
		during := measureProduce(ctx, t, cl, "big", func() {
			start := time.Now()
			if _, err := cl.ExecuteReassignment(ctx, []client.ReassignTarget{{Topic: "big", Partition: 0, Replicas: target}}, throttle); err != nil {
				t.Fatal(err)
			}
			waitReassigned(t, cl, 3*time.Minute)
			took = time.Since(start)
		})
		t.Logf("run %d: moved the 1 GiB replica %d -> %d, throttle %s, in %v (%.1f MB/s); producer during the move: %s",
			i+1, from, to, throttle, took.Round(100*time.Millisecond), float64(1<<30)/took.Seconds()/1e6, during)
		replicas, from, to = target, to, from
	}
}

// fillBytes produces about size bytes of 64 KiB records to partition 0
// of topic with acks=all.
func fillBytes(ctx context.Context, t *testing.T, cl *client.Client, topic string, size int) {
	t.Helper()
	p, err := cl.NewProducer(client.RecordPartitioner(client.ManualPartitioner()), client.Linger(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	val := make([]byte, 64<<10)
	for i := range val {
		val[i] = byte(i * 7)
	}
	start := time.Now()
	var failed error
	var mu sync.Mutex
	for range size / len(val) {
		p.Produce(ctx, &client.Record{Topic: topic, Partition: 0, Value: val}, func(_ *client.Record, err error) {
			if err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
			}
		})
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if failed != nil {
		t.Fatal(failed)
	}
	t.Logf("filled %s-0 with %d MiB in %v", topic, size>>20, time.Since(start).Round(100*time.Millisecond))
}

// measureProduce produces 200 records of 1 KiB a second to partition 0 of
// topic while during runs, and summarises their latencies (Produce to
// acknowledgement).
func measureProduce(ctx context.Context, t *testing.T, cl *client.Client, topic string, during func()) string {
	t.Helper()
	p, err := cl.NewProducer(client.RecordPartitioner(client.ManualPartitioner()), client.Linger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lat []time.Duration
	failed := 0
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		val := make([]byte, 1024)
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			sent := time.Now()
			p.Produce(ctx, &client.Record{Topic: topic, Partition: 0, Value: val}, func(_ *client.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed++
					return
				}
				lat = append(lat, time.Since(sent))
			})
		}
	}()
	during()
	close(stop)
	<-done
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	p.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(lat) == 0 {
		t.Fatal("no record acknowledged")
	}
	slices.Sort(lat)
	q := func(f float64) time.Duration {
		return lat[min(len(lat)-1, int(f*float64(len(lat))))].Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("%d records, p50 %v, p99 %v, max %v, %d failed", len(lat), q(0.5), q(0.99), lat[len(lat)-1].Round(10*time.Microsecond), failed)
}
