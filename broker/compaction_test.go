package broker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/client"
)

// compactedBroker is a broker whose cleaner runs often, with small
// segments so a few thousand records span many.
func compactedBroker(t *testing.T, opts ...brokertest.Option) *brokertest.Broker {
	return brokertest.Start(t, append([]brokertest.Option{brokertest.WithConfig(func(c *broker.Config) {
		c.SegmentBytes = 16 << 10
		c.CleanerInterval = 50 * time.Millisecond
		c.CleanerIOBytesPerSec = 64 << 20
	})}, opts...)...)
}

type kv struct {
	value     string
	tombstone bool
	offset    int64
}

// readLog reads a partition from its start to its end.
func readLog(t *testing.T, ctx context.Context, c *client.Client, topic string) []*client.Record {
	t.Helper()
	k, err := c.NewConsumer(client.StopAtEnd())
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if err := k.Assign(ctx, topic, []int32{0}, client.Beginning()); err != nil {
		t.Fatal(err)
	}
	var out []*client.Record
	for {
		r, err := k.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
}

// TestCompactionUnderLiveTraffic: a producer updates and deletes 60 keys
// while a consumer reads along and the cleaner compacts. Every record
// the consumer saw is the one produced at its offset; once the producer
// stops (and a segment of other keys seals the last updates), the log read
// from the beginning holds exactly the latest value of every key, and no
// key whose latest record was a tombstone older than delete.retention.ms.
func TestCompactionUnderLiveTraffic(t *testing.T) {
	b := compactedBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := newClient(t, []string{b.Addr()})
	if _, err := c.CreateTopic(ctx, "accounts", client.TopicConfig{Partitions: 1, KeyIndex: true,
		CleanupPolicy: "compact", DeleteRetentionMs: 300}); err != nil {
		t.Fatal(err)
	}
	p, err := c.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	var mu sync.Mutex
	byOffset := map[int64]kv{}
	latest := map[string]kv{}
	stop := make(chan struct{})
	var seen []*client.Record
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the live consumer
		defer wg.Done()
		k, err := c.NewConsumer()
		if err != nil {
			t.Error(err)
			return
		}
		defer k.Close()
		if err := k.Assign(ctx, "accounts", []int32{0}, client.Beginning()); err != nil {
			t.Error(err)
			return
		}
		for {
			rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
			r, err := k.Next(rctx)
			rcancel()
			select {
			case <-stop:
				if err != nil {
					return
				}
			default:
			}
			if err == nil {
				seen = append(seen, r)
			}
		}
	}()
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 150; i++ {
		var recs []*client.Record
		for j := 0; j < 20; j++ {
			rec := &client.Record{Topic: "accounts", Key: []byte(fmt.Sprintf("acct-%d", r.IntN(60)))}
			if r.IntN(8) != 0 {
				rec.Value = []byte(fmt.Sprintf("balance %d/%d %s", i, j, strings.Repeat("x", r.IntN(80))))
			}
			recs = append(recs, rec)
		}
		if err := p.ProduceSync(ctx, recs...); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		for _, rec := range recs {
			e := kv{value: string(rec.Value), tombstone: rec.Value == nil, offset: rec.Offset}
			byOffset[rec.Offset] = e
			latest[string(rec.Key)] = e
		}
		mu.Unlock()
	}
	// Other keys fill the active segment so that every update above is in
	// a sealed one, cleanable.
	for i := 0; i < 40; i++ {
		var recs []*client.Record
		for j := 0; j < 20; j++ {
			recs = append(recs, &client.Record{Topic: "accounts", Key: []byte(fmt.Sprintf("filler-%d", i*20+j)), Value: []byte(strings.Repeat("f", 40))})
		}
		if err := p.ProduceSync(ctx, recs...); err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			byOffset[rec.Offset] = kv{value: string(rec.Value), offset: rec.Offset}
		}
	}
	time.Sleep(300 * time.Millisecond) // past the delete retention of the last tombstones
	close(stop)
	wg.Wait()

	// The live consumer saw only records produced at their offsets, in order.
	last := int64(-1)
	for _, rec := range seen {
		want, ok := byOffset[rec.Offset]
		if !ok || want.value != string(rec.Value) || want.tombstone != (rec.Value == nil) || rec.Offset <= last {
			t.Fatalf("live consumer: offset %d (after %d) holds %q, produced %+v", rec.Offset, last, rec.Value, want)
		}
		last = rec.Offset
	}
	if len(seen) == 0 {
		t.Fatal("the live consumer read nothing")
	}

	waitCompacted(t, ctx, c, "accounts", latest)

	// The metrics say what the cleaner did.
	for _, m := range []string{"skein_cleaner_bytes_cleaned_total ", "skein_cleaner_tombstones_removed_total ", "skein_cleaner_bytes_freed_total "} {
		if !metricAbove(t, b.HTTPAddr(), m) {
			t.Fatalf("metric %s missing or zero", m)
		}
	}
	resp, err := http.Get("http://" + b.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `skein_cleaner_dirty_ratio{partition="0",topic="accounts"} `) {
		t.Fatal("no dirty ratio for the compacted partition")
	}
}

// waitCompacted reads topic from the beginning until it holds exactly the
// latest value of every key of latest (keys named filler-* left out), and
// none whose latest record is a tombstone; then checks GetKey.
func waitCompacted(t *testing.T, ctx context.Context, c *client.Client, topic string, latest map[string]kv) {
	t.Helper()
	var got map[string]kv
	deadline := time.Now().Add(60 * time.Second)
	live := 0
	for _, e := range latest {
		if !e.tombstone {
			live++
		}
	}
	for {
		got = map[string]kv{}
		dups := 0
		for _, rec := range readLog(t, ctx, c, topic) {
			if strings.HasPrefix(string(rec.Key), "filler-") {
				continue
			}
			if _, dup := got[string(rec.Key)]; dup {
				dups++
			}
			got[string(rec.Key)] = kv{value: string(rec.Value), tombstone: rec.Value == nil, offset: rec.Offset}
		}
		if dups == 0 && len(got) == live {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s the log still holds %d superseded records and %d keys, want %d live keys", dups, len(got), live)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for k, want := range latest {
		g, ok := got[k]
		switch {
		case want.tombstone && ok:
			t.Fatalf("key %s: deleted at %d, still read at %d", k, want.offset, g.offset)
		case !want.tombstone && (!ok || g != want):
			t.Fatalf("key %s: read %+v, latest is %+v", k, g, want)
		}
		kvl, err := c.GetKey(ctx, topic, 0, []byte(k))
		if err != nil || kvl.Found == want.tombstone || kvl.Found && (kvl.Record.Offset != want.offset || string(kvl.Record.Value) != want.value) {
			t.Fatalf("GetKey(%s) = %+v %v, latest %+v", k, kvl, err, want)
		}
	}
}

// produceUpdates produces rounds of 20 updates (one in eight a tombstone)
// over keys, then enough filler records to seal them all in segments, and
// records each key's latest in latest.
func produceUpdates(t *testing.T, ctx context.Context, p *client.Producer, topic string, r *rand.Rand, rounds, keys int, latest map[string]kv) {
	t.Helper()
	for i := 0; i < rounds; i++ {
		var recs []*client.Record
		for j := 0; j < 20; j++ {
			rec := &client.Record{Topic: topic, Key: []byte(fmt.Sprintf("acct-%d", r.IntN(keys)))}
			if r.IntN(8) != 0 {
				rec.Value = []byte(fmt.Sprintf("balance %d/%d %s", i, j, strings.Repeat("x", r.IntN(80))))
			}
			recs = append(recs, rec)
		}
		if err := p.ProduceSync(ctx, recs...); err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			latest[string(rec.Key)] = kv{value: string(rec.Value), tombstone: rec.Value == nil, offset: rec.Offset}
		}
	}
	for i := 0; i < 40; i++ {
		var recs []*client.Record
		for j := 0; j < 20; j++ {
			recs = append(recs, &client.Record{Topic: topic, Key: []byte(fmt.Sprintf("filler-%d-%d", r.Int64(), j)), Value: []byte(strings.Repeat("f", 40))})
		}
		if err := p.ProduceSync(ctx, recs...); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCompactionOnLeaderAndFollowers: three replicas of a compacted
// partition each compact on their own broker; the leader serves each key's
// latest value, and so does a follower that takes over when the leader is
// killed, and the cluster goes on producing and compacting after it.
func TestCompactionOnLeaderAndFollowers(t *testing.T) {
	if testing.Short() {
		t.Skip("three brokers with gossip and Raft")
	}
	cl := brokertest.NewCluster(t, 3, brokertest.WithConfig(func(c *broker.Config) {
		c.SegmentBytes = 16 << 10
		c.CleanerInterval = 50 * time.Millisecond
		c.CleanerIOBytesPerSec = 64 << 20
	}))
	ctx := cl.Context(120 * time.Second)
	c := newClient(t, cl.Addrs())
	if _, err := c.CreateTopic(ctx, "kv", client.TopicConfig{Partitions: 1, ReplicationFactor: 3, KeyIndex: true,
		CleanupPolicy: "compact", DeleteRetentionMs: 200}); err != nil {
		t.Fatal(err)
	}
	leader := cl.WaitLeader("kv", 0, 20*time.Second)
	p, err := c.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	r := rand.New(rand.NewPCG(3, 4))
	latest := map[string]kv{}
	produceUpdates(t, ctx, p, "kv", r, 100, 50, latest)
	time.Sleep(200 * time.Millisecond) // past the tombstones' retention
	waitCompacted(t, ctx, c, "kv", latest)
	// Every broker's cleaner compacted its own replica.
	for id := int32(1); id <= 3; id++ {
		cl.WaitFor(fmt.Sprintf("broker %d's cleaner", id), 60*time.Second, func() bool {
			return metricAbove(t, cl.Broker(id).HTTPAddr(), "skein_cleaner_bytes_cleaned_total ")
		})
	}
	cl.Kill(leader)
	if nl := cl.WaitLeader("kv", 0, 20*time.Second); nl == leader {
		t.Fatalf("broker %d still leads after being killed", leader)
	}
	waitCompacted(t, ctx, c, "kv", latest)
	produceUpdates(t, ctx, p, "kv", r, 40, 50, latest)
	time.Sleep(200 * time.Millisecond)
	waitCompacted(t, ctx, c, "kv", latest)
}

// metricAbove reports whether the broker's /metrics line starting with
// name has a value other than 0.
func metricAbove(t *testing.T, httpAddr, name string) bool {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return false
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	i := strings.Index(string(body), "\n"+name)
	return i >= 0 && !strings.HasPrefix(string(body[i+1+len(name):]), "0\n")
}

// TestCompactedTopicBadInput: bad settings and keyless records are
// refused with a clear error and change nothing.
func TestCompactedTopicBadInput(t *testing.T) {
	b := compactedBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newClient(t, []string{b.Addr()})
	if _, err := c.CreateTopic(ctx, "bad", client.TopicConfig{CleanupPolicy: "compactt"}); err == nil || !strings.Contains(err.Error(), `cleanup.policy "compactt": want delete, compact, or compact,delete`) {
		t.Fatalf("bad policy: %v", err)
	}
	if _, err := c.DescribeTopic(ctx, "bad"); err == nil {
		t.Fatal("a refused topic exists")
	}
	if _, err := c.CreateTopic(ctx, "kv", client.TopicConfig{CleanupPolicy: "compact"}); err != nil {
		t.Fatal(err)
	}
	neg := int64(-5)
	if _, err := c.AlterTopic(ctx, "kv", client.TopicAlter{DeleteRetentionMs: &neg}); err == nil || !strings.Contains(err.Error(), "delete.retention.ms -5") {
		t.Fatalf("negative delete retention: %v", err)
	}
	p, err := c.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err = p.ProduceSync(ctx, &client.Record{Topic: "kv", Value: []byte("no key")})
	if !errors.Is(err, client.ErrInvalidRecord) || !strings.Contains(err.Error(), "needs a key") {
		t.Fatalf("keyless record on a compacted topic: %v", err)
	}
	d, err := c.DescribeTopic(ctx, "kv")
	if err != nil || d.Status[0].LogEndOffset != 0 || d.Config.DeleteRetentionMs != 24*3600*1000 || d.Config.CleanupPolicy != "compact" {
		t.Fatalf("after refusals: %+v %v", d, err)
	}
	// Back to delete: keyless records are taken again.
	del := "delete"
	if _, err := c.AlterTopic(ctx, "kv", client.TopicAlter{CleanupPolicy: &del}); err != nil {
		t.Fatal(err)
	}
	if err := p.ProduceSync(ctx, &client.Record{Topic: "kv", Value: []byte("no key")}); err != nil {
		t.Fatalf("keyless record after the policy went back to delete: %v", err)
	}
}

// TestJournalBrokerRefusesCompaction: the journal engine cannot compact
// yet; asking for it says so and creates nothing.
func TestJournalBrokerRefusesCompaction(t *testing.T) {
	b := brokertest.Start(t, brokertest.WithEngine(broker.EngineJournal))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newClient(t, []string{b.Addr()})
	if _, err := c.CreateTopic(ctx, "kv", client.TopicConfig{CleanupPolicy: "compact,delete"}); err == nil || !strings.Contains(err.Error(), "journal storage engine") {
		t.Fatalf("compaction on the journal engine: %v", err)
	}
	if _, err := c.CreateTopic(ctx, "plain", client.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	compact := "compact"
	if _, err := c.AlterTopic(ctx, "plain", client.TopicAlter{CleanupPolicy: &compact}); err == nil || !strings.Contains(err.Error(), "journal storage engine") {
		t.Fatalf("alter to compact on the journal engine: %v", err)
	}
}
