package client_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
)

func TestAdmin(t *testing.T) {
	fc := newCluster(t, 2)
	c := newClient(t, fc)
	ctx := ctxT(t)

	ti, err := c.CreateTopic(ctx, "orders", client.TopicConfig{Partitions: 4, MaxRecordBytes: 2048})
	if err != nil {
		t.Fatal(err)
	}
	if ti.Name != "orders" || len(ti.Partitions) != 4 || ti.Config.MaxRecordBytes != 2048 || ti.Config.RetentionBytes != -1 || ti.ID == "" {
		t.Fatalf("created %+v", ti)
	}
	if _, err := c.CreateTopic(ctx, "orders", client.TopicConfig{}); !errors.Is(err, client.ErrTopicExists) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := c.CreateTopic(ctx, "../etc", client.TopicConfig{}); !errors.Is(err, client.ErrInvalidTopic) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := c.CreateTopic(ctx, "other", client.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	ts, err := c.ListTopics(ctx)
	if err != nil || len(ts) != 2 || ts[0].Name != "orders" || ts[1].Name != "other" || len(ts[1].Partitions) != 1 {
		t.Fatalf("list: %+v %v", ts, err)
	}
	md, err := c.Metadata(ctx)
	if err != nil || len(md.Brokers) != 2 || md.Brokers[1].Addr != fc.Addrs()[1] || len(md.Topics) != 2 {
		t.Fatalf("metadata: %+v %v", md, err)
	}
	if _, err := c.Metadata(ctx, "missing"); !errors.Is(err, client.ErrUnknownTopic) {
		t.Fatalf("metadata of a missing topic: %v", err)
	}

	// Records bigger than the topic allows fail before they are sent.
	p := newProducer(t, c)
	if err := p.ProduceSync(ctx, &client.Record{Topic: "orders", Value: make([]byte, 4096)}); !errors.Is(err, client.ErrRecordTooLarge) {
		t.Fatalf("record over max record bytes: %v", err)
	}
	base := time.UnixMilli(1_700_000_000_000)
	for i := 0; i < 5; i++ {
		r := &client.Record{Topic: "orders", Key: []byte("k"), Value: []byte(strconv.Itoa(i)), Timestamp: base.Add(time.Duration(i) * time.Minute)}
		if err := p.ProduceSync(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	part := int32(client.KeyPartition([]byte("k"), 4))
	d, err := c.DescribeTopic(ctx, "orders")
	if err != nil || len(d.Status) != 4 || d.Status[part].HighWatermark != 5 || d.Status[part].SizeBytes == 0 {
		t.Fatalf("describe: %+v %v", d, err)
	}
	lo, err := c.ListOffsets(ctx, "orders", part, client.End())
	if err != nil || lo.Offset != 5 || lo.HighWatermark != 5 || lo.LogStartOffset != 0 {
		t.Fatalf("latest: %+v %v", lo, err)
	}
	lo, err = c.ListOffsets(ctx, "orders", part, client.Beginning())
	if err != nil || lo.Offset != 0 {
		t.Fatalf("earliest: %+v %v", lo, err)
	}
	lo, err = c.ListOffsets(ctx, "orders", part, client.AtTime(base.Add(90*time.Second)))
	if err != nil || lo.Offset != 2 || !lo.Timestamp.Equal(base.Add(2*time.Minute)) {
		t.Fatalf("by time: %+v %v", lo, err)
	}
	lo, err = c.ListOffsets(ctx, "orders", part, client.AtTime(base.Add(time.Hour)))
	if err != nil || lo.Offset != 5 || !lo.Timestamp.IsZero() {
		t.Fatalf("by time after the end: %+v %v", lo, err)
	}
	// Every Offset resolves: counted back from the end (clamped at the log
	// start), or an absolute offset checked against the log's range.
	if lo, err = c.ListOffsets(ctx, "orders", part, client.FromEnd(2)); err != nil || lo.Offset != 3 {
		t.Fatalf("FromEnd(2): %+v %v", lo, err)
	}
	if lo, err = c.ListOffsets(ctx, "orders", part, client.FromEnd(50)); err != nil || lo.Offset != 0 {
		t.Fatalf("FromEnd(50): %+v %v", lo, err)
	}
	if lo, err = c.ListOffsets(ctx, "orders", part, client.At(4)); err != nil || lo.Offset != 4 {
		t.Fatalf("At(4): %+v %v", lo, err)
	}
	var oor *client.Error
	if _, err := c.ListOffsets(ctx, "orders", part, client.At(6)); !errors.Is(err, client.ErrOffsetOutOfRange) ||
		!errors.As(err, &oor) || oor.LogStartOffset != 0 || oor.HighWatermark != 5 {
		t.Fatalf("At(6): %v", err)
	}
	if _, err := c.ListOffsets(ctx, "orders", part, client.FromEnd(-1)); err == nil || !strings.Contains(err.Error(), "0 or more") {
		t.Fatalf("FromEnd(-1): %v", err)
	}
	// ListOffsets follows the leader when it moves.
	fc.MoveLeader("orders", part, 3-func() int32 { l, _ := fc.Leader("orders", part); return l }())
	if lo, err = c.ListOffsets(ctx, "orders", part, client.End()); err != nil || lo.Offset != 5 {
		t.Fatalf("latest after a leader move: %+v %v", lo, err)
	}
	if _, err := c.ListOffsets(ctx, "orders", 9, client.End()); !errors.Is(err, client.ErrUnknownPartition) {
		t.Fatalf("unknown partition: %v", err)
	}

	if err := c.DeleteTopic(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTopic(ctx, "other"); !errors.Is(err, client.ErrUnknownTopic) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestBootstrapListTriedInOrder(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("b", 1)
	// The first bootstrap address has no broker (the dialer refuses it):
	// the client moves on to the next.
	c := newClient(t, fc, client.Brokers("nobody:1,"+fc.Addrs()[0]))
	ts, err := c.ListTopics(ctxT(t))
	if err != nil || len(ts) != 1 {
		t.Fatalf("%+v %v", ts, err)
	}
	p := newProducer(t, c)
	if err := p.ProduceSync(ctxT(t), &client.Record{Topic: "b", Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
}

func TestProduceIf(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("log", 1)
	c := newClient(t, fc)
	p := newProducer(t, c)
	ctx := ctxT(t)

	base, err := p.ProduceIf(ctx, "log", 0, 0, &client.Record{Value: []byte("a")}, &client.Record{Value: []byte("b")})
	if err != nil || base != 0 {
		t.Fatalf("first append: %d %v", base, err)
	}
	if fc.Batches("log", 0) != 1 {
		t.Fatal("the records were not sent as one batch")
	}
	r := &client.Record{Value: []byte("c")}
	_, err = p.ProduceIf(ctx, "log", 0, 0, r)
	var ce *client.Error
	if !errors.Is(err, client.ErrOffsetMismatch) || !errors.As(err, &ce) || ce.NextOffset != 2 {
		t.Fatalf("stale append: %v", err)
	}
	if fc.EndOffset("log", 0) != 2 {
		t.Fatal("a mismatched append was stored")
	}
	if base, err = p.ProduceIf(ctx, "log", 0, ce.NextOffset, r); err != nil || base != 2 || r.Offset != 2 || r.Partition != 0 {
		t.Fatalf("retry at the actual offset: %d %v %+v", base, err, r)
	}
	// A leader move between attempts is retried transparently.
	fc.MoveLeader("log", 0, 1)
	if base, err = p.ProduceIf(ctx, "log", 0, 3, &client.Record{Value: []byte("d")}); err != nil || base != 3 {
		t.Fatalf("after an epoch bump: %d %v", base, err)
	}
}

// Writers keep a counter as a log of increments, each one appended only if
// nobody appended since the writer read the log: no update is lost.
func TestOptimisticCounterHasNoLostUpdate(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("counter", 1)
	c := newClient(t, fc)
	ctx := ctxT(t)
	const writers, increments = 4, 15
	var wg sync.WaitGroup
	var mismatches atomic.Int64
	for w := 0; w < writers; w++ {
		p := newProducer(t, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < increments; i++ {
				for attempt := 0; ; attempt++ {
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
					mismatches.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d appends were refused and retried", mismatches.Load())
	recs := fc.Records("counter", 0)
	if len(recs) != writers*increments {
		t.Fatalf("%d increments stored, want %d", len(recs), writers*increments)
	}
	for i, r := range recs {
		if string(r.Value) != strconv.Itoa(i+1) {
			t.Fatalf("offset %d holds %q: an update was lost", i, r.Value)
		}
	}
}

// readCounter reads the counter log to its end: the last value and the
// offset the next increment must be appended at.
func readCounter(ctx context.Context, c *client.Client) (int, int64, error) {
	k, err := c.NewConsumer(client.StopAtEnd(), client.FetchMaxWait(10*time.Millisecond))
	if err != nil {
		return 0, 0, err
	}
	defer k.Close()
	if err := k.Assign(ctx, "counter", []int32{0}, client.FromEnd(1)); err != nil {
		return 0, 0, err
	}
	value, next := 0, int64(0)
	for {
		r, err := k.Next(ctx)
		if errors.Is(err, ioEOF) {
			return value, max(next, k.Positions()[0].Offset), nil
		}
		if err != nil {
			return 0, 0, err
		}
		value, _ = strconv.Atoi(string(r.Value))
		next = r.Offset + 1
	}
}
