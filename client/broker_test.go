package client_test

// Integration tests against the real broker (broker/brokertest): a
// single-node broker in this process, on a loopback port, with its data in
// t.TempDir().

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/client"
)

func realClient(t *testing.T, b *brokertest.Broker) *client.Client {
	t.Helper()
	c, err := client.New(client.Brokers(b.Addr()), client.RetryBackoff(10*time.Millisecond), client.Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestBrokerProduceConsume(t *testing.T) {
	b := brokertest.Start(t)
	c := realClient(t, b)
	ctx := ctxT(t)
	if _, err := c.CreateTopic(ctx, "events", client.TopicConfig{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, c, client.BatchCompression(client.CompressionLZ4), client.Linger(2*time.Millisecond))
	const n = 2000
	type ack struct {
		p int32
		o int64
	}
	acks := make([]ack, n)
	var wg sync.WaitGroup
	wg.Add(n)
	for i := 0; i < n; i++ {
		r := &client.Record{Topic: "events", Key: []byte("user-" + strconv.Itoa(i%50)), Value: []byte(strconv.Itoa(i)),
			Headers: []client.Header{{Key: "n", Value: []byte(strconv.Itoa(i))}}}
		if i%100 == 0 {
			r.Key = nil
		}
		p.Produce(ctx, r, func(r *client.Record, err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("record %s: %v", r.Value, err)
				return
			}
			i, _ := strconv.Atoi(string(r.Value))
			acks[i] = ack{r.Partition, r.Offset}
		})
	}
	wg.Wait()
	d, err := c.DescribeTopic(ctx, "events")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, s := range d.Status {
		total += s.HighWatermark
	}
	if total != n {
		t.Fatalf("high watermarks add up to %d, want %d", total, n)
	}

	k := newConsumer(t, c, client.StopAtEnd())
	if err := k.Assign(ctx, "events", nil, client.Beginning()); err != nil {
		t.Fatal(err)
	}
	seen := make([]bool, n)
	for {
		r, err := k.Next(ctx)
		if errors.Is(err, ioEOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		i, _ := strconv.Atoi(string(r.Value))
		if seen[i] || acks[i] != (ack{r.Partition, r.Offset}) {
			t.Fatalf("record %d read at %d/%d (seen before: %v), acknowledged at %+v", i, r.Partition, r.Offset, seen[i], acks[i])
		}
		seen[i] = true
		if i%100 == 0 {
			if r.Key != nil {
				t.Fatalf("record %d: null key came back as %q", i, r.Key)
			}
		} else if want := int32(client.KeyPartition(r.Key, 3)); r.Partition != want {
			t.Fatalf("key %s in partition %d, want %d", r.Key, r.Partition, want)
		}
		if len(r.Headers) != 1 || string(r.Headers[0].Value) != strconv.Itoa(i) {
			t.Fatalf("record %d headers %+v", i, r.Headers)
		}
	}
	for i, ok := range seen {
		if !ok {
			t.Fatalf("record %d acknowledged but not read", i)
		}
	}
}

func TestBrokerAdminAndErrors(t *testing.T) {
	b := brokertest.Start(t)
	c := realClient(t, b)
	ctx := ctxT(t)
	if _, err := c.CreateTopic(ctx, "t1", client.TopicConfig{Partitions: 2, MaxRecordBytes: 1000}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTopic(ctx, "t1", client.TopicConfig{}); !errors.Is(err, client.ErrTopicExists) {
		t.Fatalf("duplicate topic: %v", err)
	}
	for _, name := range []string{"../x", "a/b", "__internal", "-lead"} {
		if _, err := c.CreateTopic(ctx, name, client.TopicConfig{}); !errors.Is(err, client.ErrInvalidTopic) {
			t.Errorf("topic %q: %v", name, err)
		}
	}
	ts, err := c.ListTopics(ctx)
	if err != nil || len(ts) != 1 || ts[0].Name != "t1" || ts[0].Config.MaxRecordBytes != 1000 {
		t.Fatalf("list: %+v %v", ts, err)
	}
	md, err := c.Metadata(ctx)
	if err != nil || len(md.Brokers) != 1 || md.Brokers[0].Addr != b.Addr() {
		t.Fatalf("metadata: %+v %v", md, err)
	}
	p := newProducer(t, c, client.RecordPartitioner(client.ManualPartitioner()))
	if err := p.ProduceSync(ctx, &client.Record{Topic: "nope", Value: []byte("x")}); !errors.Is(err, client.ErrUnknownTopic) {
		t.Fatalf("unknown topic: %v", err)
	}
	if err := p.ProduceSync(ctx, &client.Record{Topic: "t1", Partition: 2, Value: []byte("x")}); !errors.Is(err, client.ErrUnknownPartition) {
		t.Fatalf("unknown partition: %v", err)
	}
	if err := p.ProduceSync(ctx, &client.Record{Topic: "t1", Value: make([]byte, 2000)}); !errors.Is(err, client.ErrRecordTooLarge) {
		t.Fatalf("record over max.record.bytes: %v", err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := 0; i < 5; i++ {
		r := &client.Record{Topic: "t1", Partition: 1, Value: []byte(strconv.Itoa(i)), Timestamp: base.Add(time.Duration(i) * time.Minute)}
		if err := p.ProduceSync(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	lo, err := c.ListOffsets(ctx, "t1", 1, client.AtTime(base.Add(150*time.Second)))
	if err != nil || lo.Offset != 3 || !lo.Timestamp.Equal(base.Add(3*time.Minute)) {
		t.Fatalf("offset by time: %+v %v", lo, err)
	}
	if lo, err = c.ListOffsets(ctx, "t1", 1, client.End()); err != nil || lo.Offset != 5 {
		t.Fatalf("latest: %+v %v", lo, err)
	}
	k := newConsumer(t, c)
	if err := k.Assign(ctx, "t1", []int32{1}, client.At(100)); err != nil {
		t.Fatal(err)
	}
	_, err = k.Next(ctx)
	var ce *client.Error
	if !errors.Is(err, client.ErrOffsetOutOfRange) || !errors.As(err, &ce) || ce.HighWatermark != 5 {
		t.Fatalf("offset out of range: %v", err)
	}
	if err := c.DeleteTopic(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTopic(ctx, "t1"); !errors.Is(err, client.ErrUnknownTopic) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestBrokerConditionalAppendCounter(t *testing.T) {
	b := brokertest.Start(t)
	c := realClient(t, b)
	ctx := ctxT(t)
	if _, err := c.CreateTopic(ctx, "counter", client.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, c)
	if _, err := p.ProduceIf(ctx, "counter", 0, 5, &client.Record{Value: []byte("x")}); !errors.Is(err, client.ErrOffsetMismatch) {
		t.Fatalf("append at 5 to an empty log: %v", err)
	}
	const writers, increments = 4, 10
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < increments; i++ {
				for {
					value, next, err := readCounter(ctx, c)
					if err != nil {
						t.Error(err)
						return
					}
					_, err = p.ProduceIf(ctx, "counter", 0, next, &client.Record{Value: []byte(strconv.Itoa(value + 1))})
					if err == nil {
						break
					}
					if !errors.Is(err, client.ErrOffsetMismatch) {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	value, next, err := readCounter(ctx, c)
	if err != nil || value != writers*increments || next != writers*increments {
		t.Fatalf("counter %d at offset %d (%v), want %d", value, next, err, writers*increments)
	}
}

// A broker restart breaks the producer's stream and the consumer's fetch:
// both reconnect and lose nothing.
func TestBrokerRestart(t *testing.T) {
	b := brokertest.Start(t)
	c := realClient(t, b)
	ctx := ctxT(t)
	if _, err := c.CreateTopic(ctx, "r", client.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, c)
	k := newConsumer(t, c)
	if err := k.Assign(ctx, "r", nil, client.Beginning()); err != nil {
		t.Fatal(err)
	}
	next := 0
	read := func(until int) {
		t.Helper()
		for ; next < until; next++ {
			r, err := k.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if r.Offset != int64(next) || !bytes.Equal(r.Value, []byte(fmt.Sprint(next))) {
				t.Fatalf("read %d %q, want offset %d", r.Offset, r.Value, next)
			}
		}
	}
	for round := 0; round < 3; round++ {
		var recs []*client.Record
		for i := 0; i < 100; i++ {
			recs = append(recs, &client.Record{Topic: "r", Value: []byte(fmt.Sprint(round*100 + i))})
		}
		if err := p.ProduceSync(ctx, recs...); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		read((round + 1) * 100)
		b.Restart()
	}
}

// An acknowledged record carries the leader epoch it was appended in, the
// one a consumer later reads on it (the fault-injection checker holds acks
// to it: nobody acknowledges with an older epoch).
func TestBrokerAckCarriesLeaderEpoch(t *testing.T) {
	bc := brokertest.NewCluster(t, 3)
	c, err := client.New(client.Brokers(bc.Addrs()...), client.RetryBackoff(10*time.Millisecond), client.Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t)
	if _, err := c.CreateTopic(ctx, "ep", client.TopicConfig{Partitions: 1, ReplicationFactor: 3, MinInsyncReplicas: 2}); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, c)
	sent := &client.Record{Topic: "ep", Value: []byte("v")}
	if err := p.ProduceSync(ctx, sent); err != nil {
		t.Fatal(err)
	}
	// A new leader has a new epoch, so the second ack must carry the
	// broker's answer, not a default.
	leader := bc.WaitLeader("ep", 0, 10*time.Second)
	bc.Kill(leader)
	cond := &client.Record{Value: []byte("w")}
	if _, err := p.ProduceIf(ctx, "ep", 0, 1, cond); err != nil {
		t.Fatal(err)
	}
	if cond.LeaderEpoch <= sent.LeaderEpoch {
		t.Fatalf("epoch %d after a leader change, %d before", cond.LeaderEpoch, sent.LeaderEpoch)
	}
	k, err := c.NewConsumer(client.StopAtEnd())
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if err := k.Assign(ctx, "ep", []int32{0}, client.Beginning()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []*client.Record{sent, cond} {
		got, err := k.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.LeaderEpoch != want.LeaderEpoch || got.Offset != want.Offset {
			t.Fatalf("acked at offset %d epoch %d; read at offset %d epoch %d", want.Offset, want.LeaderEpoch, got.Offset, got.LeaderEpoch)
		}
	}
}
