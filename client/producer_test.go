package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/client/internal/fakebroker"
	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/proto/skeinv1"
)

func TestProduceAndConsumeRoundTrip(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("events", 3)
	c := newClient(t, fc)
	p := newProducer(t, c)
	ctx := ctxT(t)

	const n = 300
	type ack struct {
		partition int32
		offset    int64
	}
	acks := make([]ack, n)
	var mu sync.Mutex
	var order []int // callback order of record indexes
	var wg sync.WaitGroup
	wg.Add(n)
	for i := 0; i < n; i++ {
		r := &client.Record{Topic: "events", Key: []byte(fmt.Sprint("k", i%17)), Value: []byte(strconv.Itoa(i)),
			Headers: []client.Header{{Key: "i", Value: []byte(strconv.Itoa(i))}, {Key: "i", Value: nil}}}
		i := i
		p.Produce(ctx, r, func(r *client.Record, err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("record %d: %v", i, err)
				return
			}
			mu.Lock()
			acks[i] = ack{r.Partition, r.Offset}
			order = append(order, i)
			mu.Unlock()
		})
	}
	// Nil and empty keys and values are different things.
	special := []*client.Record{
		{Topic: "events", Partition: 0, Key: nil, Value: []byte("nil key")},
		{Topic: "events", Key: []byte{}, Value: nil},
	}
	if err := p.ProduceSync(ctx, special...); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	// Keyed records land where Kafka's partitioner puts them, and callbacks
	// of a partition come in offset order.
	last := map[int32]int64{0: -1, 1: -1, 2: -1}
	for _, i := range order {
		a := acks[i]
		if want := int32(client.KeyPartition([]byte(fmt.Sprint("k", i%17)), 3)); a.partition != want {
			t.Fatalf("record %d in partition %d, want %d", i, a.partition, want)
		}
		if a.offset <= last[a.partition] {
			t.Fatalf("record %d: callback for offset %d after %d", i, a.offset, last[a.partition])
		}
		last[a.partition] = a.offset
	}
	// The acknowledged offsets are where the broker stored the records.
	for part := int32(0); part < 3; part++ {
		for _, r := range fc.Records("events", part) {
			if len(r.Headers) == 0 {
				continue // the special records
			}
			i, _ := strconv.Atoi(string(r.Value))
			if acks[i] != (ack{part, r.Offset}) {
				t.Fatalf("record %d stored at %d/%d, acknowledged at %+v", i, part, r.Offset, acks[i])
			}
			if string(r.Headers[0].Value) != strconv.Itoa(i) || r.Headers[1].Value != nil {
				t.Fatalf("record %d headers %+v", i, r.Headers)
			}
		}
	}

	k := newConsumer(t, c, client.StopAtEnd())
	if err := k.Assign(ctx, "events", nil, client.Beginning()); err != nil {
		t.Fatal(err)
	}
	seen := 0
	var nilKey, emptyKey bool
	for {
		r, err := k.Next(ctx)
		if err != nil {
			if errors.Is(err, ioEOF) {
				break
			}
			t.Fatal(err)
		}
		seen++
		switch string(r.Value) {
		case "nil key":
			nilKey = r.Key == nil
		case "":
			emptyKey = r.Key != nil && len(r.Key) == 0 && r.Value == nil
		default:
			i, _ := strconv.Atoi(string(r.Value))
			if acks[i] != (ack{r.Partition, r.Offset}) || r.Topic != "events" {
				t.Fatalf("consumed record %d at %d/%d, acknowledged at %+v", i, r.Partition, r.Offset, acks[i])
			}
		}
	}
	if seen != n+2 || !nilKey || !emptyKey {
		t.Fatalf("consumed %d records (want %d); nil key kept %v, empty key kept %v", seen, n+2, nilKey, emptyKey)
	}
	for _, pos := range k.Positions() {
		if pos.Offset != pos.HighWatermark || !pos.CaughtUp || pos.Lag() != 0 {
			t.Errorf("position %+v not at the end", pos)
		}
	}
}

// With five requests in flight and leadership moving back and forth, every
// record lands exactly once and in the order it was produced.
func TestOrderingAcrossRetriesWithFiveInFlight(t *testing.T) {
	fc := newCluster(t, 2)
	fc.CreateTopic("ordered", 1)
	var reqs atomic.Int64
	fc.SetProduceHook(func(node int32, req *skeinv1.ProduceRequest) fakebroker.Action {
		n := reqs.Add(1)
		if n%40 == 0 {
			// An election: the other node leads with a new epoch; the
			// requests already in flight to the old leader fail.
			leader, _ := fc.Leader("ordered", 0)
			fc.MoveLeader("ordered", 0, 3-leader)
		}
		return fakebroker.Action{Delay: 200 * time.Microsecond}
	})
	c := newClient(t, fc)
	p := newProducer(t, c, client.BatchMaxBytes(200), client.MaxInFlightPerPartition(5), client.Linger(0))
	ctx := ctxT(t)

	const n = 3000
	var mu sync.Mutex
	var cbOrder []int
	var failed atomic.Int64
	for i := 0; i < n; i++ {
		i := i
		p.Produce(ctx, &client.Record{Topic: "ordered", Value: []byte(strconv.Itoa(i))}, func(r *client.Record, err error) {
			if err != nil {
				failed.Add(1)
				t.Errorf("record %d: %v", i, err)
			}
			mu.Lock()
			cbOrder = append(cbOrder, i)
			mu.Unlock()
		})
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recs := fc.Records("ordered", 0)
	if len(recs) != n {
		t.Fatalf("log holds %d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if string(r.Value) != strconv.Itoa(i) {
			t.Fatalf("offset %d holds %q, want %d", i, r.Value, i)
		}
	}
	for i, j := range cbOrder {
		if i != j {
			t.Fatalf("callback %d was for record %d", i, j)
		}
	}
	_, epoch := fc.Leader("ordered", 0)
	if epoch < 5 {
		t.Fatalf("only %d leader changes: the test did not exercise retries", epoch)
	}
	if got := fc.MaxPipelined(); got != 5 {
		t.Fatalf("at most %d requests were in flight, want exactly 5", got)
	}
	if fc.ProduceRequests() <= fc.Batches("ordered", 0) {
		t.Fatal("no request was retried")
	}
}

func TestBackPressureBlocksProduce(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("bp", 1)
	release := make(chan struct{})
	fc.SetProduceHook(func(int32, *skeinv1.ProduceRequest) fakebroker.Action {
		return fakebroker.Action{Block: release}
	})
	c := newClient(t, fc)
	p := newProducer(t, c, client.BatchMaxBytes(1024), client.MaxBufferedBytes(4096))
	ctx := ctxT(t)

	// Records count against the buffer by their encoded size bound.
	value := make([]byte, 500)
	size := batch.EncodedRecordSize(&batch.Record{Value: value})
	fit := 4096 / size
	var ok, failed atomic.Int64
	cb := func(_ *client.Record, err error) {
		if err != nil {
			failed.Add(1)
		} else {
			ok.Add(1)
		}
	}
	for i := 0; i < fit; i++ {
		p.Produce(ctx, &client.Record{Topic: "bp", Value: value}, cb)
	}
	// The broker holds every request: the buffer is full, and Produce
	// waits until its context gives up.
	pctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	errc := make(chan error, 1)
	p.Produce(pctx, &client.Record{Topic: "bp", Value: value}, func(_ *client.Record, err error) { errc <- err })
	select {
	case err := <-errc:
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "buffer full") {
			t.Fatalf("blocked Produce failed with %v", err)
		}
	case <-ctx.Done():
		t.Fatal("a record beyond the buffer was accepted")
	}
	// A Produce waiting for room proceeds once the broker answers.
	done := make(chan struct{})
	go func() {
		p.Produce(ctx, &client.Record{Topic: "bp", Value: value}, cb)
		close(done)
	}()
	close(release)
	<-done
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if ok.Load() != int64(fit+1) || failed.Load() != 0 {
		t.Fatalf("%d acknowledged, %d failed; want %d, 0", ok.Load(), failed.Load(), fit+1)
	}
}

func TestFlushIgnoresLingerAndCloseFlushes(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("f", 2)
	c := newClient(t, fc)
	p, err := c.NewProducer(client.Linger(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	var acked atomic.Int64
	cb := func(_ *client.Record, err error) {
		if err != nil {
			t.Error(err)
		}
		acked.Add(1)
	}
	for i := 0; i < 10; i++ {
		p.Produce(ctx, &client.Record{Topic: "f", Value: []byte("x")}, cb)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if acked.Load() != 10 {
		t.Fatalf("Flush returned with %d of 10 callbacks done", acked.Load())
	}
	for i := 0; i < 5; i++ {
		p.Produce(ctx, &client.Record{Topic: "f", Value: []byte("y")}, cb)
	}
	p.Close()
	if acked.Load() != 15 {
		t.Fatalf("Close returned with %d of 15 callbacks done", acked.Load())
	}
	if got := fc.EndOffset("f", 0) + fc.EndOffset("f", 1); got != 15 {
		t.Fatalf("%d records stored, want 15", got)
	}
	errc := make(chan error, 1)
	p.Produce(ctx, &client.Record{Topic: "f", Value: []byte("late")}, func(_ *client.Record, err error) { errc <- err })
	if err := <-errc; !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Produce after Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDeliveryTimeoutWrapsLastError(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("dt", 1)
	fc.SetProduceHook(func(int32, *skeinv1.ProduceRequest) fakebroker.Action {
		return fakebroker.Action{Fail: &skeinv1.ErrorDetail{Code: uint32(codes.Unavailable), Reason: skeinv1.ErrorReason_NOT_ENOUGH_REPLICAS, Message: "1 of 2 in sync"}}
	})
	c := newClient(t, fc)
	p := newProducer(t, c, client.DeliveryTimeout(300*time.Millisecond))
	start := time.Now()
	errc := make(chan error, 1)
	p.Produce(ctxT(t), &client.Record{Topic: "dt", Value: []byte("x")}, func(_ *client.Record, err error) { errc <- err })
	err := <-errc
	if !errors.Is(err, client.ErrDeliveryTimeout) || !errors.Is(err, client.ErrNotEnoughReplicas) {
		t.Fatalf("error %v: want a delivery timeout wrapping NotEnoughReplicas", err)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("gave up after %v, before the delivery timeout", el)
	}
	if fc.ProduceRequests() < 3 {
		t.Fatalf("only %d attempts within the delivery timeout", fc.ProduceRequests())
	}
	if fc.EndOffset("dt", 0) != 0 {
		t.Fatal("a failed record was stored")
	}
}

func TestNonRetriableErrorFailsBatchNamingPartition(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("bad", 2)
	fc.SetProduceHook(func(_ int32, req *skeinv1.ProduceRequest) fakebroker.Action {
		if req.GetPartition() == 1 {
			return fakebroker.Action{Fail: &skeinv1.ErrorDetail{Code: uint32(codes.InvalidArgument), Reason: skeinv1.ErrorReason_INVALID_RECORD, Message: "bad CRC"}}
		}
		return fakebroker.Action{}
	})
	c := newClient(t, fc)
	p := newProducer(t, c, client.RecordPartitioner(client.ManualPartitioner()))
	ctx := ctxT(t)
	err := p.ProduceSync(ctx, &client.Record{Topic: "bad", Partition: 1, Value: []byte("x")})
	if !errors.Is(err, client.ErrInvalidRecord) {
		t.Fatalf("error %v, want ErrInvalidRecord", err)
	}
	if want := "bad/1"; !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Fatalf("error %q does not name the partition %s", err, want)
	}
	if fc.ProduceRequests() != 1 {
		t.Fatalf("a non-retriable failure was retried (%d requests)", fc.ProduceRequests())
	}
	if err := p.ProduceSync(ctx, &client.Record{Topic: "bad", Partition: 0, Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	// Unknown topic and partition fail at once, with a message that helps.
	err = p.ProduceSync(ctx, &client.Record{Topic: "nope", Value: []byte("x")})
	if !errors.Is(err, client.ErrUnknownTopic) {
		t.Fatalf("unknown topic: %v", err)
	}
	err = p.ProduceSync(ctx, &client.Record{Topic: "bad", Partition: 7, Value: []byte("x")})
	if !errors.Is(err, client.ErrUnknownPartition) || !bytes.Contains([]byte(err.Error()), []byte("has 2 partitions")) {
		t.Fatalf("unknown partition: %v", err)
	}
	// Too large for a batch: refused before sending.
	p2 := newProducer(t, c, client.BatchMaxBytes(1024))
	err = p2.ProduceSync(ctx, &client.Record{Topic: "bad", Value: make([]byte, 2000)})
	if !errors.Is(err, client.ErrRecordTooLarge) {
		t.Fatalf("oversized record: %v", err)
	}
}

func TestRequestTimeoutTearsDownStream(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("slow", 1)
	hang := make(chan struct{})
	defer close(hang)
	var first atomic.Bool
	fc.SetProduceHook(func(int32, *skeinv1.ProduceRequest) fakebroker.Action {
		if first.CompareAndSwap(false, true) {
			return fakebroker.Action{Block: hang}
		}
		return fakebroker.Action{}
	})
	c := newClient(t, fc)
	// Without idempotence a timed-out request is not retried (see
	// TestIdempotentRetriesTimeouts for the default).
	p := newProducer(t, c, client.ProduceRequestTimeout(100*time.Millisecond), client.Idempotent(false))
	ctx := ctxT(t)
	err := p.ProduceSync(ctx, &client.Record{Topic: "slow", Value: []byte("a")})
	if !errors.Is(err, client.ErrTimedOut) {
		t.Fatalf("hung request: %v, want ErrTimedOut", err)
	}
	// The next record goes on a new stream and succeeds.
	if err := p.ProduceSync(ctx, &client.Record{Topic: "slow", Value: []byte("b")}); err != nil {
		t.Fatal(err)
	}
}

func TestStreamDropRetriesRecords(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("drop", 1)
	var n atomic.Int64
	fc.SetProduceHook(func(int32, *skeinv1.ProduceRequest) fakebroker.Action {
		if n.Add(1)%7 == 0 {
			return fakebroker.Action{Drop: true}
		}
		return fakebroker.Action{}
	})
	c := newClient(t, fc)
	// At least once, without idempotence; TestIdempotentLostAnswers has
	// the default.
	p := newProducer(t, c, client.BatchMaxBytes(256), client.Linger(0), client.Idempotent(false))
	ctx := ctxT(t)
	var recs []*client.Record
	for i := 0; i < 200; i++ {
		recs = append(recs, &client.Record{Topic: "drop", Value: []byte(strconv.Itoa(i))})
	}
	if err := p.ProduceSync(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	// A dropped stream may have appended requests before it broke, so
	// without idempotence a record may appear twice; none is lost, and the
	// first appearances keep produce order.
	next := 0
	for _, r := range fc.Records("drop", 0) {
		v, _ := strconv.Atoi(string(r.Value))
		if v == next {
			next++
		} else if v > next {
			t.Fatalf("record %d stored before record %d", v, next)
		}
	}
	if next != 200 {
		t.Fatalf("only records 0..%d stored", next-1)
	}
	for _, r := range recs {
		if r.Offset < 0 {
			t.Fatalf("record without an offset: %+v", r)
		}
	}
}

func TestAcksNone(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("fire", 1)
	c := newClient(t, fc)
	p := newProducer(t, c, client.RequiredAcks(client.AcksNone))
	ctx := ctxT(t)
	r := &client.Record{Topic: "fire", Value: []byte("x")}
	if err := p.ProduceSync(ctx, r); err != nil {
		t.Fatal(err)
	}
	if r.Offset != -1 || r.Partition != 0 {
		t.Fatalf("acks=none record: partition %d offset %d", r.Partition, r.Offset)
	}
	waitFor(t, 5*time.Second, "the record to be stored", func() bool { return fc.EndOffset("fire", 0) == 1 })
}

func TestLeaderMovesAndLeaderless(t *testing.T) {
	fc := newCluster(t, 3)
	fc.CreateTopic("move", 1) // led by node 1
	c := newClient(t, fc)
	p := newProducer(t, c)
	ctx := ctxT(t)
	if err := p.ProduceSync(ctx, &client.Record{Topic: "move", Value: []byte("0")}); err != nil {
		t.Fatal(err)
	}
	fc.MoveLeader("move", 0, 3)
	metaBefore := fc.MetadataCalls()
	if err := p.ProduceSync(ctx, &client.Record{Topic: "move", Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	// The NotLeader answer named the new leader: no metadata round trip
	// was needed to find it.
	if fc.MetadataCalls() != metaBefore {
		t.Errorf("%d metadata calls after a NotLeader with a hint", fc.MetadataCalls()-metaBefore)
	}
	// No leader for a while: records wait, then go to the new one.
	fc.MoveLeader("move", 0, -1)
	errc := make(chan error, 1)
	go func() { errc <- p.ProduceSync(ctx, &client.Record{Topic: "move", Value: []byte("2")}) }()
	waitFor(t, 5*time.Second, "a metadata refresh while leaderless", func() bool { return fc.MetadataCalls() > metaBefore })
	fc.MoveLeader("move", 0, 2)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	recs := fc.Records("move", 0)
	if len(recs) != 3 || string(recs[2].Value) != "2" || recs[2].LeaderEpoch != 3 {
		t.Fatalf("log after moves: %+v", recs)
	}
}

func TestCompressionCodecsRoundTrip(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("z", 1)
	c := newClient(t, fc)
	ctx := ctxT(t)
	want := 0
	for _, codec := range []client.Compression{client.CompressionNone, client.CompressionGzip, client.CompressionSnappy, client.CompressionLZ4, client.CompressionZstd} {
		p := newProducer(t, c, client.BatchCompression(codec))
		var recs []*client.Record
		for i := 0; i < 50; i++ {
			recs = append(recs, &client.Record{Topic: "z", Key: []byte(codec.String()), Value: bytes.Repeat([]byte("abc"), i)})
		}
		if err := p.ProduceSync(ctx, recs...); err != nil {
			t.Fatalf("%v: %v", codec, err)
		}
		want += 50
	}
	k := newConsumer(t, c, client.StopAtEnd())
	if err := k.Assign(ctx, "z", nil, client.Beginning()); err != nil {
		t.Fatal(err)
	}
	got := 0
	for {
		r, err := k.Next(ctx)
		if errors.Is(err, ioEOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.Value, bytes.Repeat([]byte("abc"), got%50)) {
			t.Fatalf("record %d (%s) has the wrong value", got, r.Key)
		}
		got++
	}
	if got != want {
		t.Fatalf("read %d records, want %d", got, want)
	}
}

func TestStickyPartitionerFillsOneBatchAtATime(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("sticky", 4)
	c := newClient(t, fc)
	p := newProducer(t, c, client.Linger(time.Hour))
	ctx := ctxT(t)
	for round := 0; round < 8; round++ {
		var recs []*client.Record
		for i := 0; i < 10; i++ {
			r := &client.Record{Topic: "sticky", Value: []byte("v")}
			recs = append(recs, r)
			p.Produce(ctx, r, nil)
		}
		if err := p.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		for _, r := range recs[1:] {
			if r.Partition != recs[0].Partition {
				t.Fatalf("round %d: unkeyed records of one batch spread over partitions %d and %d", round, recs[0].Partition, r.Partition)
			}
		}
	}
	used := 0
	for part := int32(0); part < 4; part++ {
		if fc.EndOffset("sticky", part) > 0 {
			used++
		}
	}
	if used < 2 {
		t.Fatalf("8 batches all went to one partition")
	}
}

// A sticky partition moves on when its batch fills, even while the
// partition cannot send (its requests in flight are waiting).
func TestStickyPartitionerMovesOnFullBatch(t *testing.T) {
	fc := newCluster(t, 1)
	fc.CreateTopic("sticky", 4)
	release := make(chan struct{})
	fc.SetProduceHook(func(int32, *skeinv1.ProduceRequest) fakebroker.Action { return fakebroker.Action{Block: release} })
	c := newClient(t, fc)
	p := newProducer(t, c, client.Linger(time.Hour), client.BatchMaxBytes(1024), client.MaxInFlightPerPartition(1))
	ctx := ctxT(t)
	var recs []*client.Record
	for i := 0; i < 60; i++ {
		r := &client.Record{Topic: "sticky", Value: make([]byte, 100)}
		recs = append(recs, r)
		p.Produce(ctx, r, nil)
	}
	// Partition is set when Produce returns. Runs of one partition are at
	// most one batch long (~6 records of 100 bytes in 1 KiB).
	runs, run := 0, 0
	for i, r := range recs {
		if i > 0 && r.Partition == recs[i-1].Partition {
			run++
		} else {
			runs, run = runs+1, 1
		}
		if run > 9 {
			t.Fatalf("%d records in a row went to partition %d", run, r.Partition)
		}
	}
	if runs < 5 {
		t.Fatalf("60 records of 100 bytes made only %d sticky runs", runs)
	}
	close(release)
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkProduceFake measures the whole producer path, accumulator,
// stream, fake broker and callbacks, over an in-memory bufconn connection.
func BenchmarkProduceFake(b *testing.B) {
	for _, size := range []int{100, 1024} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			fc := newCluster(b, 1)
			fc.CreateTopic("bench", 3)
			c := newClient(b, fc, client.Logger(slog.New(slog.DiscardHandler)))
			p := newProducer(b, c, client.Linger(5*time.Millisecond))
			ctx := context.Background()
			value := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p.Produce(ctx, &client.Record{Topic: "bench", Value: value}, nil)
			}
			if err := p.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// A leader cut off from the other brokers (clients still reach it) keeps
// naming itself leader in its metadata and refusing acks=all. The client
// must still find the leader the rest of the cluster elected: it asks two
// brokers per refresh, and never trades a leader for one of a lower epoch.
func TestProducerLeavesIsolatedLeader(t *testing.T) {
	fc := newCluster(t, 3)
	fc.CreateTopic("iso", 1)
	fc.MoveLeader("iso", 0, 2) // the election the isolated broker 1 missed
	leader, epoch := fc.Leader("iso", 0)
	fc.SetMetadataHook(func(node int32, resp *skeinv1.MetadataResponse) {
		if node != 1 {
			return
		}
		for _, tm := range resp.Topics {
			for _, p := range tm.Partitions {
				p.Leader, p.LeaderEpoch = 1, epoch-1
			}
		}
	})
	fc.SetProduceHook(func(node int32, _ *skeinv1.ProduceRequest) fakebroker.Action {
		if node == 1 {
			return fakebroker.Action{Fail: notEnoughReplicas()}
		}
		return fakebroker.Action{}
	})
	c := newClient(t, fc) // bootstrapped from broker 1
	p := newProducer(t, c, client.DeliveryTimeout(10*time.Second))
	for i := 0; i < 20; i++ {
		r := &client.Record{Topic: "iso", Value: []byte(strconv.Itoa(i))}
		if err := p.ProduceSync(ctxT(t), r); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if n := len(fc.Records("iso", 0)); n != 20 || leader != 2 {
		t.Fatalf("%d records on leader %d", n, leader)
	}
}
