package broker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

func dialConn(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func dial(t testing.TB, addr string) pb.SkeinClient { return pb.NewSkeinClient(dialConn(t, addr)) }

func mkBatch(t testing.TB, values ...string) []byte {
	t.Helper()
	b := batch.NewBuilder(batch.None)
	for _, v := range values {
		b.Add(&batch.Record{Timestamp: time.Now().UnixMilli(), Key: []byte("k"), Value: []byte(v)})
	}
	out, err := b.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func createTopic(t testing.TB, c pb.SkeinClient, name string, parts int32) {
	t.Helper()
	if _, err := c.CreateTopic(context.Background(), &pb.CreateTopicRequest{Name: name, Partitions: parts}); err != nil {
		t.Fatal(err)
	}
}

func produce(t testing.TB, c pb.SkeinClient, topic string, part int32, values ...string) int64 {
	t.Helper()
	r, err := c.Produce(context.Background(), &pb.ProduceRequest{Topic: topic, Partition: part, LeaderEpoch: -1, Batch: mkBatch(t, values...)})
	if err != nil {
		t.Fatal(err)
	}
	return r.BaseOffset
}

// fetchAll reads a partition from offset to the high watermark.
func fetchAll(t testing.TB, c pb.SkeinClient, topic string, part int32, from int64) []batch.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.Fetch(ctx, &pb.FetchRequest{Topic: topic, Partition: part, Offset: from, LeaderEpoch: -1})
	if err != nil {
		t.Fatal(err)
	}
	var recs []batch.Record
	for {
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		for rest := r.Batches; len(rest) > 0; {
			v, next, err := batch.Next(rest)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := v.Records(nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range rs {
				if rec.Offset >= from {
					recs = append(recs, rec)
				}
			}
			rest = next
		}
		if r.CaughtUp {
			return recs
		}
	}
}

func detail(t testing.TB, err error) (codes.Code, *pb.ErrorDetail) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("not a status: %v", err)
	}
	for _, d := range st.Details() {
		if ed, ok := d.(*pb.ErrorDetail); ok {
			return st.Code(), ed
		}
	}
	return st.Code(), nil
}

func TestProduceFetchRestart(t *testing.T) { brokertest.ForEachEngine(t, testProduceFetchRestart) }

func testProduceFetchRestart(t *testing.T, engine brokertest.Option) {
	b := brokertest.Start(t, engine)
	c := dial(t, b.Addr())
	createTopic(t, c, "demo", 3)
	var want []string
	for i := range 10 {
		v := fmt.Sprintf("v%d", i)
		if off := produce(t, c, "demo", 1, v); off != int64(i) {
			t.Fatalf("record %d at offset %d", i, off)
		}
		want = append(want, v)
	}
	check := func() {
		t.Helper()
		recs := fetchAll(t, c, "demo", 1, 0)
		if len(recs) != len(want) {
			t.Fatalf("fetched %d records, want %d", len(recs), len(want))
		}
		for i, r := range recs {
			if r.Offset != int64(i) || string(r.Value) != want[i] {
				t.Fatalf("offset %d: %q", r.Offset, r.Value)
			}
		}
	}
	check()
	b.Restart()
	c = dial(t, b.Addr())
	check()
	if off := produce(t, c, "demo", 1, "after"); off != 10 {
		t.Fatalf("append after restart at %d", off)
	}
	d, err := c.DescribeTopic(context.Background(), &pb.DescribeTopicRequest{Name: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	p1 := d.Partitions[1]
	if p1.HighWatermark != 11 || p1.LogEndOffset != 11 || p1.LogStartOffset != 0 || p1.SizeBytes <= 0 || p1.Leader != 1 {
		t.Fatalf("describe: %+v", p1)
	}
}

func TestProduceStreamPipelines(t *testing.T) {
	b := brokertest.Start(t)
	c := dial(t, b.Addr())
	createTopic(t, c, "s", 2)
	st, err := c.ProduceStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	go func() {
		for i := range n {
			st.Send(&pb.ProduceRequest{CorrelationId: uint64(i), Topic: "s", Partition: int32(i % 2), LeaderEpoch: -1, Batch: mkBatch(t, fmt.Sprint(i))})
		}
		st.CloseSend()
	}()
	next := map[int32]int64{}
	got := 0
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.Error != nil {
			t.Fatalf("request %d: %v", r.CorrelationId, r.Error)
		}
		part := int32(r.CorrelationId % 2)
		// Within a partition, requests land in the order they were sent.
		if want := int64(r.CorrelationId / 2); r.BaseOffset != want || r.BaseOffset < next[part] {
			t.Fatalf("request %d landed at %d, want %d", r.CorrelationId, r.BaseOffset, want)
		}
		next[part] = r.BaseOffset + 1
		got++
	}
	if got != n {
		t.Fatalf("%d answers for %d requests", got, n)
	}
}

func TestConditionalAppend(t *testing.T) { brokertest.ForEachEngine(t, testConditionalAppend) }

func testConditionalAppend(t *testing.T, engine brokertest.Option) {
	b := brokertest.Start(t, engine)
	c := dial(t, b.Addr())
	createTopic(t, c, "cas", 1)
	exp := int64(0)
	r, err := c.Produce(context.Background(), &pb.ProduceRequest{Topic: "cas", LeaderEpoch: -1, ExpectedOffset: &exp, Batch: mkBatch(t, "a", "b")})
	if err != nil || r.BaseOffset != 0 {
		t.Fatalf("%v %v", r, err)
	}
	_, err = c.Produce(context.Background(), &pb.ProduceRequest{Topic: "cas", LeaderEpoch: -1, ExpectedOffset: &exp, Batch: mkBatch(t, "c")})
	code, d := detail(t, err)
	if code != codes.Aborted || d.Reason != pb.ErrorReason_OFFSET_MISMATCH || d.NextOffset != 2 {
		t.Fatalf("mismatch: %v %v", code, d)
	}
}

// Every bad input gets a clear status and changes nothing.
func TestBadInput(t *testing.T) {
	b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) { c.MaxRequestBytes = 2 << 20 }))
	c := dial(t, b.Addr())
	createTopic(t, c, "ok", 2)
	produce(t, c, "ok", 0, "x")
	ctx := context.Background()
	filesBefore := listFiles(t, b.Dir)
	goroutinesBefore := runtime.NumGoroutine()

	neg := int64(-5)
	big := make([]byte, 3<<20)
	oversizeRec := mkBatchSized(t, 1<<20+1)
	good := mkBatch(t, "v")
	badCRC := append([]byte{}, good...)
	badCRC[len(badCRC)-1] ^= 0xff
	cases := []struct {
		name   string
		call   func() error
		code   codes.Code
		reason pb.ErrorReason
	}{
		{"topic ..", func() error { _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: ".."}); return err }, codes.InvalidArgument, pb.ErrorReason_INVALID_TOPIC},
		{"topic ../x", func() error { _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "../x"}); return err }, codes.InvalidArgument, pb.ErrorReason_INVALID_TOPIC},
		{"topic a/b", func() error { _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "a/b"}); return err }, codes.InvalidArgument, pb.ErrorReason_INVALID_TOPIC},
		{"topic NUL", func() error { _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "a\x00b"}); return err }, codes.InvalidArgument, pb.ErrorReason_INVALID_TOPIC},
		{"topic -x", func() error { _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "-x"}); return err }, codes.InvalidArgument, pb.ErrorReason_INVALID_TOPIC},
		{"topic __x", func() error { _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "__x"}); return err }, codes.InvalidArgument, pb.ErrorReason_INVALID_TOPIC},
		{"topic 250 chars", func() error {
			_, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: strings.Repeat("a", 250)})
			return err
		}, codes.InvalidArgument, pb.ErrorReason_INVALID_TOPIC},
		{"topic exists", func() error { _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "ok"}); return err }, codes.AlreadyExists, pb.ErrorReason_TOPIC_EXISTS},
		{"rf > brokers", func() error {
			_, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "rf", ReplicationFactor: 3})
			return err
		}, codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST},
		{"partitions -1", func() error {
			_, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "p", Partitions: -1})
			return err
		}, codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST},
		{"min.insync > rf", func() error {
			m := int32(2)
			_, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "mi", MinInsyncReplicas: &m})
			return err
		}, codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST},
		{"produce unknown topic", func() error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "nope", LeaderEpoch: -1, Batch: good})
			return err
		}, codes.NotFound, pb.ErrorReason_UNKNOWN_TOPIC},
		{"produce bad topic name", func() error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "../etc", LeaderEpoch: -1, Batch: good})
			return err
		}, codes.InvalidArgument, pb.ErrorReason_INVALID_TOPIC},
		{"partition -1", func() error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "ok", Partition: -1, LeaderEpoch: -1, Batch: good})
			return err
		}, codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST},
		{"partition 2 of 2", func() error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "ok", Partition: 2, LeaderEpoch: -1, Batch: good})
			return err
		}, codes.NotFound, pb.ErrorReason_UNKNOWN_PARTITION},
		{"empty batch", func() error { _, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "ok", LeaderEpoch: -1}); return err }, codes.InvalidArgument, pb.ErrorReason_INVALID_RECORD},
		{"bad crc", func() error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "ok", LeaderEpoch: -1, Batch: badCRC})
			return err
		}, codes.InvalidArgument, pb.ErrorReason_INVALID_RECORD},
		{"garbage batch", func() error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "ok", LeaderEpoch: -1, Batch: []byte("hello, broker")})
			return err
		}, codes.InvalidArgument, pb.ErrorReason_INVALID_RECORD},
		{"record too large", func() error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "ok", LeaderEpoch: -1, Batch: oversizeRec})
			return err
		}, codes.InvalidArgument, pb.ErrorReason_RECORD_TOO_LARGE},
		{"invalid acks", func() error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "ok", LeaderEpoch: -1, Acks: 7, Batch: good})
			return err
		}, codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST},
		{"negative expected offset", func() error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "ok", LeaderEpoch: -1, ExpectedOffset: &neg, Batch: good})
			return err
		}, codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST},
		{"stale epoch", func() error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "ok", LeaderEpoch: 99, Batch: good})
			return err
		}, codes.FailedPrecondition, pb.ErrorReason_UNKNOWN_LEADER_EPOCH},
		{"request over the limit", func() error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "ok", LeaderEpoch: -1, Batch: big})
			return err
		}, codes.ResourceExhausted, pb.ErrorReason_ERROR_REASON_UNSPECIFIED},
		{"fetch below start", func() error { return fetchErr(c, &pb.FetchRequest{Topic: "ok", Offset: -1, LeaderEpoch: -1}) }, codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST},
		{"fetch past end", func() error { return fetchErr(c, &pb.FetchRequest{Topic: "ok", Offset: 2, LeaderEpoch: -1}) }, codes.OutOfRange, pb.ErrorReason_OFFSET_OUT_OF_RANGE},
		{"fetch huge offset", func() error { return fetchErr(c, &pb.FetchRequest{Topic: "ok", Offset: 1 << 62, LeaderEpoch: -1}) }, codes.OutOfRange, pb.ErrorReason_OFFSET_OUT_OF_RANGE},
		{"fetch unknown partition", func() error { return fetchErr(c, &pb.FetchRequest{Topic: "ok", Partition: 9, LeaderEpoch: -1}) }, codes.NotFound, pb.ErrorReason_UNKNOWN_PARTITION},
		{"list offsets no spec", func() error { _, err := c.ListOffsets(ctx, &pb.ListOffsetsRequest{Topic: "ok"}); return err }, codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST},
		{"delete unknown", func() error { _, err := c.DeleteTopic(ctx, &pb.DeleteTopicRequest{Name: "nope"}); return err }, codes.NotFound, pb.ErrorReason_UNKNOWN_TOPIC},
		{"describe bad name", func() error { _, err := c.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "a/../b"}); return err }, codes.InvalidArgument, pb.ErrorReason_INVALID_TOPIC},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil {
				t.Fatal("accepted")
			}
			code, d := detail(t, err)
			if code != tc.code {
				t.Fatalf("code %v, want %v: %v", code, tc.code, err)
			}
			if tc.reason != pb.ErrorReason_ERROR_REASON_UNSPECIFIED && (d == nil || d.Reason != tc.reason) {
				t.Fatalf("reason %v, want %v: %v", d.GetReason(), tc.reason, err)
			}
			if st, _ := status.FromError(err); len(st.Message()) < 10 {
				t.Fatalf("message %q says too little", st.Message())
			}
		})
	}
	// Nothing changed: the log ends where it did, no file or directory
	// appeared, no goroutine was left behind.
	d, err := c.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Partitions[0].LogEndOffset != 1 || d.Partitions[1].LogEndOffset != 0 {
		t.Fatalf("log end offsets moved: %v", d.Partitions)
	}
	if after := listFiles(t, b.Dir); strings.Join(after, "\n") != strings.Join(filesBefore, "\n") {
		t.Fatalf("files changed:\nbefore %v\nafter  %v", filesBefore, after)
	}
	waitGoroutines(t, goroutinesBefore)
}

func mkBatchSized(t testing.TB, n int) []byte {
	t.Helper()
	b := batch.NewBuilder(batch.None)
	b.Add(&batch.Record{Value: make([]byte, n)})
	out, err := b.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func fetchErr(c pb.SkeinClient, req *pb.FetchRequest) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Fetch(ctx, req)
	if err != nil {
		return err
	}
	for {
		if _, err := st.Recv(); err != nil {
			return err
		}
	}
}

func listFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func waitGoroutines(t testing.TB, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > want+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, %d before the bad inputs; they are:\n%s", runtime.NumGoroutine(), want, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFetchFollowsAndHeartbeats(t *testing.T) {
	b := brokertest.Start(t)
	c := dial(t, b.Addr())
	createTopic(t, c, "f", 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := c.Fetch(ctx, &pb.FetchRequest{Topic: "f", MaxWaitMs: 20, LeaderEpoch: -1})
	if err != nil {
		t.Fatal(err)
	}
	r, err := st.Recv()
	if err != nil || !r.CaughtUp || len(r.Batches) != 0 {
		t.Fatalf("first answer on an empty partition: %v %v", r, err)
	}
	// Heartbeats while idle.
	if r, err = st.Recv(); err != nil || !r.CaughtUp || r.HighWatermark != 0 {
		t.Fatalf("heartbeat: %v %v", r, err)
	}
	// A produce wakes the long-poll.
	done := make(chan struct{})
	var got []byte
	go func() {
		defer close(done)
		for {
			r, err := st.Recv()
			if err != nil || len(r.Batches) > 0 {
				if r != nil {
					got = r.Batches
				}
				return
			}
		}
	}()
	produce(t, c, "f", 0, "wake")
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("fetch did not deliver the new record")
	}
	v, _, err := batch.Next(got)
	if err != nil || v == nil {
		t.Fatalf("%v", err)
	}
	recs, _ := v.Records(nil)
	if string(recs[0].Value) != "wake" {
		t.Fatalf("%q", recs[0].Value)
	}
}

func TestListOffsets(t *testing.T) { brokertest.ForEachEngine(t, testListOffsets) }

func testListOffsets(t *testing.T, engine brokertest.Option) {
	b := brokertest.Start(t, engine)
	c := dial(t, b.Addr())
	createTopic(t, c, "o", 1)
	before := time.Now().UnixMilli()
	produce(t, c, "o", 0, "a", "b")
	produce(t, c, "o", 0, "c")
	ctx := context.Background()
	for _, tc := range []struct {
		req  *pb.ListOffsetsRequest
		want int64
	}{
		{&pb.ListOffsetsRequest{Topic: "o", Spec: &pb.ListOffsetsRequest_Earliest{Earliest: true}}, 0},
		{&pb.ListOffsetsRequest{Topic: "o", Spec: &pb.ListOffsetsRequest_Latest{Latest: true}}, 3},
		{&pb.ListOffsetsRequest{Topic: "o", Spec: &pb.ListOffsetsRequest_TimestampMs{TimestampMs: before - 1000}}, 0},
		{&pb.ListOffsetsRequest{Topic: "o", Spec: &pb.ListOffsetsRequest_TimestampMs{TimestampMs: time.Now().Add(time.Hour).UnixMilli()}}, 3},
	} {
		r, err := c.ListOffsets(ctx, tc.req)
		if err != nil || r.Offset != tc.want {
			t.Fatalf("%v: %v %v", tc.req, r, err)
		}
	}
}

func TestDeleteAndRecreate(t *testing.T) { brokertest.ForEachEngine(t, testDeleteAndRecreate) }

func testDeleteAndRecreate(t *testing.T, engine brokertest.Option) {
	b := brokertest.Start(t, engine)
	c := dial(t, b.Addr())
	createTopic(t, c, "gone", 1)
	produce(t, c, "gone", 0, "old")
	if _, err := c.DeleteTopic(context.Background(), &pb.DeleteTopicRequest{Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Produce(context.Background(), &pb.ProduceRequest{Topic: "gone", LeaderEpoch: -1, Batch: mkBatch(t, "x")}); status.Code(err) != codes.NotFound {
		t.Fatalf("produce to a deleted topic: %v", err)
	}
	createTopic(t, c, "gone", 1)
	if recs := fetchAll(t, c, "gone", 0, 0); len(recs) != 0 {
		t.Fatalf("a recreated topic shows %d old records", len(recs))
	}
	b.Restart()
	c = dial(t, b.Addr())
	if recs := fetchAll(t, c, "gone", 0, 0); len(recs) != 0 {
		t.Fatalf("after restart, %d old records", len(recs))
	}
}

func TestSecondBrokerOnSameDataDirRefused(t *testing.T) {
	b := brokertest.Start(t)
	cfg := broker.DefaultConfig()
	cfg.DataDir, cfg.Addr, cfg.HTTPAddr, cfg.KafkaAddr = b.Dir, "127.0.0.1:0", "", ""
	if _, err := broker.New(cfg); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second broker on the same data dir: %v", err)
	}
	b.Stop()
	cfg.NodeID = 2
	if _, err := broker.New(cfg); err == nil || !strings.Contains(err.Error(), "belongs to node 1") {
		t.Fatalf("another node id on the data dir: %v", err)
	}
}

// A produce request that fits in the gRPC limit but not in the broker's
// memory of it: the server must not allocate the claimed size. The gRPC
// length prefix is checked before reading, so this is a transport check.
func TestOversizeRequestDoesNotGrowMemory(t *testing.T) {
	b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) { c.MaxRequestBytes = 2 << 20 }))
	c := dial(t, b.Addr())
	createTopic(t, c, "m", 1)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	big := &pb.ProduceRequest{Topic: "m", LeaderEpoch: -1, Batch: make([]byte, 32<<20)}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Produce(context.Background(), big)
			if status.Code(err) != codes.ResourceExhausted {
				t.Errorf("32 MiB request: %v", err)
			}
		}()
	}
	wg.Wait()
	runtime.ReadMemStats(&after)
	// The client marshals 4 x 32 MiB itself; the server side must not add
	// another 128 MiB.
	if grown := int64(after.TotalAlloc-before.TotalAlloc) - 4*int64(proto.Size(big)); grown > 64<<20 {
		t.Fatalf("allocations grew by %d MiB beyond the client's own", grown>>20)
	}
}
