package client_test

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
)

var ioEOF = io.EOF

func produceN(t *testing.T, p *client.Producer, topic string, partition int32, from, n int) {
	t.Helper()
	var recs []*client.Record
	for i := from; i < from+n; i++ {
		recs = append(recs, &client.Record{Topic: topic, Partition: partition, Value: []byte(strconv.Itoa(i))})
	}
	if err := p.ProduceSync(ctxT(t), recs...); err != nil {
		t.Fatal(err)
	}
}

func TestConsumerReconnectsAfterDroppedStream(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("c", 1)
	c := newClient(t, fc)
	p := newProducer(t, c, client.BatchMaxBytes(300))
	ctx := ctxT(t)
	produceN(t, p, "c", 0, 0, 100)
	k := newConsumer(t, c)
	if err := k.Assign(ctx, "c", nil, client.Beginning()); err != nil {
		t.Fatal(err)
	}
	next := 0
	read := func(until int) {
		for next < until {
			r, err := k.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if r.Offset != int64(next) || string(r.Value) != strconv.Itoa(next) {
				t.Fatalf("read offset %d value %q, want %d", r.Offset, r.Value, next)
			}
			next++
		}
	}
	read(50)
	for round := 0; round < 3; round++ {
		waitFor(t, 5*time.Second, "a fetch stream", func() bool { return fc.OpenStreams() > 0 })
		if fc.DropStreams() == 0 {
			t.Fatal("no stream to drop")
		}
		produceN(t, p, "c", 0, 100+50*round, 50)
	}
	read(250)
	pos := k.Positions()[0]
	if pos.Offset != 250 || pos.Partition != 0 || pos.Topic != "c" {
		t.Fatalf("position %+v", pos)
	}
	waitFor(t, 5*time.Second, "the fetcher to see the high watermark", func() bool { return k.Positions()[0].HighWatermark == 250 })
}

func TestConsumerStopAtEnd(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("s", 3)
	c := newClient(t, fc)
	p := newProducer(t, c, client.RecordPartitioner(client.ManualPartitioner()))
	ctx := ctxT(t)
	produceN(t, p, "s", 0, 0, 30)
	produceN(t, p, "s", 2, 0, 5) // partition 1 stays empty
	k := newConsumer(t, c, client.StopAtEnd())
	if err := k.Assign(ctx, "s", nil, client.Beginning()); err != nil {
		t.Fatal(err)
	}
	counts := map[int32]int{}
	for {
		recs, err := k.Poll(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if int(r.Offset) != counts[r.Partition] {
				t.Fatalf("partition %d: offset %d after %d records", r.Partition, r.Offset, counts[r.Partition])
			}
			counts[r.Partition]++
		}
	}
	if counts[0] != 30 || counts[1] != 0 || counts[2] != 5 {
		t.Fatalf("counts %v", counts)
	}
	if _, err := k.Next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("Next after the end: %v", err)
	}

	// From the end of an empty stretch: EOF at once. FromEnd clamps.
	k2 := newConsumer(t, c, client.StopAtEnd())
	if err := k2.Assign(ctx, "s", []int32{0}, client.FromEnd(3)); err != nil {
		t.Fatal(err)
	}
	if err := k2.Assign(ctx, "s", []int32{2}, client.FromEnd(100)); err != nil {
		t.Fatal(err)
	}
	got := map[int32][]int64{}
	for {
		r, err := k2.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[r.Partition] = append(got[r.Partition], r.Offset)
	}
	if len(got[0]) != 3 || got[0][0] != 27 || len(got[2]) != 5 || got[2][0] != 0 {
		t.Fatalf("FromEnd: %v", got)
	}
	k3 := newConsumer(t, c, client.StopAtEnd())
	if err := k3.Assign(ctx, "s", []int32{0}, client.End()); err != nil {
		t.Fatal(err)
	}
	if r, err := k3.Next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("End with StopAtEnd: %v %v", r, err)
	}
}

func TestConsumerFollowsNewRecords(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("follow", 1)
	c := newClient(t, fc)
	p := newProducer(t, c)
	ctx := ctxT(t)
	k := newConsumer(t, c)
	if err := k.Assign(ctx, "follow", nil, client.End()); err != nil {
		t.Fatal(err)
	}
	got := make(chan *client.Record)
	go func() {
		r, err := k.Next(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	// Heartbeats pass (max wait 50 ms) without producing a record.
	waitFor(t, 5*time.Second, "the fetch to catch up", func() bool { return k.Positions()[0].CaughtUp })
	produceN(t, p, "follow", 0, 0, 1)
	if r := <-got; r == nil || string(r.Value) != "0" {
		t.Fatalf("followed record %+v", r)
	}
}

func TestConsumerAtTime(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("t", 1)
	c := newClient(t, fc)
	p := newProducer(t, c)
	ctx := ctxT(t)
	base := time.UnixMilli(1_700_000_000_000)
	var recs []*client.Record
	for i := 0; i < 10; i++ {
		recs = append(recs, &client.Record{Topic: "t", Value: []byte(strconv.Itoa(i)), Timestamp: base.Add(time.Duration(i) * time.Second)})
	}
	if err := p.ProduceSync(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	k := newConsumer(t, c, client.StopAtEnd())
	if err := k.Assign(ctx, "t", []int32{0}, client.AtTime(base.Add(6500*time.Millisecond))); err != nil {
		t.Fatal(err)
	}
	r, err := k.Next(ctx)
	if err != nil || r.Offset != 7 || !r.Timestamp.Equal(base.Add(7*time.Second)) {
		t.Fatalf("AtTime: %+v %v", r, err)
	}
}

func TestConsumerOffsetOutOfRangeIsAnError(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("r", 2)
	c := newClient(t, fc)
	p := newProducer(t, c, client.RecordPartitioner(client.ManualPartitioner()), client.BatchMaxBytes(200))
	ctx := ctxT(t)
	produceN(t, p, "r", 0, 0, 10)
	for i := 0; i < 10; i++ {
		produceN(t, p, "r", 1, i, 1) // one batch per record
	}
	k := newConsumer(t, c)
	if err := k.Assign(ctx, "r", []int32{0}, client.At(1000)); err != nil {
		t.Fatal(err)
	}
	_, err := k.Next(ctx)
	var ce *client.Error
	if !errors.Is(err, client.ErrOffsetOutOfRange) || !errors.As(err, &ce) || ce.LogStartOffset != 0 || ce.HighWatermark != 10 {
		t.Fatalf("error %v, want OffsetOutOfRange naming [0, 10]", err)
	}
	if !strings.Contains(err.Error(), "valid offsets are 0 to 10") || !strings.Contains(err.Error(), "r/0") {
		t.Fatalf("message %q does not name the range and partition", err)
	}
	// Retention moved the log start past the wanted offset.
	fc.SetLogStart("r", 1, 6)
	if lo, err := c.ListOffsets(ctx, "r", 1, client.Beginning()); err != nil || lo.Offset != 6 || lo.HighWatermark != 10 {
		t.Fatalf("earliest after retention: %+v %v", lo, err)
	}
	k2 := newConsumer(t, c)
	if err := k2.Assign(ctx, "r", []int32{1}, client.At(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := k2.Next(ctx); !errors.Is(err, client.ErrOffsetOutOfRange) {
		t.Fatalf("below the log start: %v", err)
	}
	// A failed partition is done: with nothing else assigned, Next ends.
	if _, err := k2.Next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("after the error: %v", err)
	}
	// Bad assignments are refused at once.
	if err := k2.Assign(ctx, "r", []int32{5}, client.Beginning()); !errors.Is(err, client.ErrUnknownPartition) {
		t.Fatalf("unknown partition: %v", err)
	}
	if err := k2.Assign(ctx, "nope", nil, client.Beginning()); !errors.Is(err, client.ErrUnknownTopic) {
		t.Fatalf("unknown topic: %v", err)
	}
}

func TestConsumerFollowsLeaderMove(t *testing.T) {
	fc := newCluster(t, 2)
	fc.CreateTopic("lm", 1)
	c := newClient(t, fc)
	p := newProducer(t, c)
	ctx := ctxT(t)
	produceN(t, p, "lm", 0, 0, 10)
	k := newConsumer(t, c)
	if err := k.Assign(ctx, "lm", nil, client.Beginning()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := k.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	fc.MoveLeader("lm", 0, 2)
	produceN(t, p, "lm", 0, 10, 10)
	for i := 10; i < 20; i++ {
		r, err := k.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.Offset != int64(i) || r.LeaderEpoch != 1 {
			t.Fatalf("after the move: offset %d epoch %d, want %d epoch 1", r.Offset, r.LeaderEpoch, i)
		}
	}
}
