package client_test

// The conformance suite: the same wire-level exchanges, with the same
// expected answers, against the in-memory fake the client's fault tests use
// (client/internal/fakebroker) and against a real broker in the test
// process (broker/brokertest). The fake re-implements the broker's produce
// rules so that tests can steer faults the real broker cannot be made to
// show on demand; this suite keeps the two from drifting apart. A rule the
// fake gets wrong fails here against "fake" only.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/client/internal/fakebroker"
	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/proto/skeinv1"
)

// target is a server under the conformance suite.
type target struct {
	addr   string
	dialer func(context.Context, string) (net.Conn, error) // nil: TCP
	c      *client.Client
	raw    skeinv1.SkeinClient
}

func newTarget(t *testing.T, kind string) *target {
	t.Helper()
	tg := &target{}
	switch kind {
	case "fake":
		fc, err := fakebroker.New(fakebroker.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(fc.Close)
		tg.addr, tg.dialer = fc.Addrs()[0], fc.Dialer()
	case "broker":
		b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) { c.Logger = testLogger(t) }))
		tg.addr = b.Addr()
	}
	opts := []client.ClientOpt{client.Brokers(tg.addr), client.RetryBackoff(5 * time.Millisecond), client.Logger(testLogger(t))}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if tg.dialer != nil {
		opts = append(opts, client.Dialer(tg.dialer))
		dial = append(dial, grpc.WithContextDialer(tg.dialer))
	}
	c, err := client.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cc, err := grpc.NewClient("passthrough:///"+tg.addr, dial...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	tg.c, tg.raw = c, skeinv1.NewSkeinClient(cc)
	return tg
}

// topic creates a topic and waits until its partitions take produce
// requests; it returns partition 0's leader epoch.
func (tg *target) topic(t *testing.T, name string, cfg client.TopicConfig) int32 {
	t.Helper()
	ctx := ctxT(t)
	if _, err := tg.c.CreateTopic(ctx, name, cfg); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	for {
		if _, err := tg.c.ListOffsets(ctx, name, 0, client.End()); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("topic %s never ready: %v", name, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	md, err := tg.raw.Metadata(ctx, &skeinv1.MetadataRequest{Topics: []string{name}})
	if err != nil {
		t.Fatal(err)
	}
	return md.GetTopics()[0].GetPartitions()[0].GetLeaderEpoch()
}

// reply is an answer reduced to what the suite compares.
type reply struct {
	base   int64
	reason skeinv1.ErrorReason
	detail *skeinv1.ErrorDetail
}

func (r reply) String() string {
	if r.reason != 0 {
		return fmt.Sprintf("%v (%s)", r.reason, r.detail.GetMessage())
	}
	return fmt.Sprintf("base %d", r.base)
}

// produce sends one request with the unary call, as every client may.
func (tg *target) produce(t *testing.T, req *skeinv1.ProduceRequest) reply {
	t.Helper()
	resp, err := tg.raw.Produce(ctxT(t), req)
	if err != nil {
		st, _ := status.FromError(err)
		for _, d := range st.Details() {
			if ed, ok := d.(*skeinv1.ErrorDetail); ok {
				return reply{base: -1, reason: ed.GetReason(), detail: ed}
			}
		}
		t.Fatalf("produce: status without a detail: %v", err)
	}
	if d := resp.GetError(); d != nil {
		return reply{base: -1, reason: d.GetReason(), detail: d}
	}
	return reply{base: resp.GetBaseOffset()}
}

// rawBatch encodes values as one batch of a producer (pid -1: none).
func rawBatch(t *testing.T, pid int64, epoch int16, seq int32, values ...string) []byte {
	t.Helper()
	b := batch.NewBuilder(batch.None)
	for _, v := range values {
		b.Add(&batch.Record{Timestamp: time.Now().UnixMilli(), Value: []byte(v)})
	}
	if pid >= 0 {
		b.SetProducer(pid, epoch, seq)
	}
	w, err := b.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// step is one request of a conformance case and the answer it must get.
type step struct {
	what     string
	req      func(s *state) *skeinv1.ProduceRequest
	base     int64 // with reason 0
	reason   skeinv1.ErrorReason
	check    func(t *testing.T, d *skeinv1.ErrorDetail) // more about an error, optional
	leoAfter int64                                      // the log end offset after the step; -1: not checked
}

// state is what a case's requests are built from.
type state struct {
	t     *testing.T
	topic string
	epoch int32 // partition 0's leader epoch
	pid   int64 // from InitProducer
}

func (s *state) req(b []byte) *skeinv1.ProduceRequest {
	return &skeinv1.ProduceRequest{Topic: s.topic, Acks: skeinv1.Acks_ACKS_ALL, TimeoutMs: 10000, LeaderEpoch: s.epoch, Batch: b}
}

func (s *state) plain(values ...string) *skeinv1.ProduceRequest {
	return s.req(rawBatch(s.t, -1, 0, 0, values...))
}

func (s *state) seq(epoch int16, seq int32, values ...string) *skeinv1.ProduceRequest {
	return s.req(rawBatch(s.t, s.pid, epoch, seq, values...))
}

func expect(r *skeinv1.ProduceRequest, off int64) *skeinv1.ProduceRequest {
	r.ExpectedOffset = &off
	return r
}

var conformance = []struct {
	name  string
	cfg   client.TopicConfig
	steps []step
}{
	{"appends are numbered from the log end", client.TopicConfig{}, []step{
		{what: "first", req: func(s *state) *skeinv1.ProduceRequest { return s.plain("a", "b", "c") }, base: 0, leoAfter: 3},
		{what: "second", req: func(s *state) *skeinv1.ProduceRequest { return s.plain("d") }, base: 3, leoAfter: 4},
	}},
	{"unknown topic and partition", client.TopicConfig{}, []step{
		{what: "topic", req: func(s *state) *skeinv1.ProduceRequest {
			r := s.plain("a")
			r.Topic = "no-such-topic"
			return r
		}, reason: skeinv1.ErrorReason_UNKNOWN_TOPIC, leoAfter: 0},
		{what: "partition", req: func(s *state) *skeinv1.ProduceRequest {
			r := s.plain("a")
			r.Partition = 7
			return r
		}, reason: skeinv1.ErrorReason_UNKNOWN_PARTITION, leoAfter: 0},
	}},
	{"leader epochs are checked", client.TopicConfig{}, []step{
		{what: "newer epoch", req: func(s *state) *skeinv1.ProduceRequest {
			r := s.plain("a")
			r.LeaderEpoch = s.epoch + 1
			return r
		}, reason: skeinv1.ErrorReason_UNKNOWN_LEADER_EPOCH, leoAfter: 0},
		{what: "no epoch", req: func(s *state) *skeinv1.ProduceRequest {
			r := s.plain("a")
			r.LeaderEpoch = -1
			return r
		}, base: 0, leoAfter: 1},
	}},
	{"a conditional append checks the log end", client.TopicConfig{}, []step{
		{what: "at the end", req: func(s *state) *skeinv1.ProduceRequest { return expect(s.plain("a", "b"), 0) }, base: 0, leoAfter: 2},
		{what: "stale", req: func(s *state) *skeinv1.ProduceRequest { return expect(s.plain("c"), 1) },
			reason: skeinv1.ErrorReason_OFFSET_MISMATCH, leoAfter: 2,
			check: func(t *testing.T, d *skeinv1.ErrorDetail) {
				if d.GetNextOffset() != 2 {
					t.Fatalf("next offset %d, want 2", d.GetNextOffset())
				}
			}},
		{what: "ahead", req: func(s *state) *skeinv1.ProduceRequest { return expect(s.plain("c"), 9) },
			reason: skeinv1.ErrorReason_OFFSET_MISMATCH, leoAfter: 2},
	}},
	{"record limits and malformed batches", client.TopicConfig{MaxRecordBytes: 64}, []step{
		{what: "too large", req: func(s *state) *skeinv1.ProduceRequest { return s.plain(string(make([]byte, 100))) },
			reason: skeinv1.ErrorReason_RECORD_TOO_LARGE, leoAfter: 0},
		{what: "bad crc", req: func(s *state) *skeinv1.ProduceRequest {
			r := s.plain("a")
			r.Batch[len(r.Batch)-1] ^= 0xff
			return r
		}, reason: skeinv1.ErrorReason_INVALID_RECORD, leoAfter: 0},
		{what: "truncated", req: func(s *state) *skeinv1.ProduceRequest {
			r := s.plain("a")
			r.Batch = r.Batch[:len(r.Batch)-3]
			return r
		}, reason: skeinv1.ErrorReason_INVALID_RECORD, leoAfter: 0},
	}},
	{"an idempotent producer's retry is answered with the original offsets", client.TopicConfig{}, []step{
		{what: "first", req: func(s *state) *skeinv1.ProduceRequest { return s.seq(0, 0, "a", "b") }, base: 0, leoAfter: 2},
		{what: "second", req: func(s *state) *skeinv1.ProduceRequest { return s.seq(0, 2, "c") }, base: 2, leoAfter: 3},
		{what: "retry of the first", req: func(s *state) *skeinv1.ProduceRequest { return s.seq(0, 0, "a", "b") }, base: 0, leoAfter: 3},
		{what: "retry of the second", req: func(s *state) *skeinv1.ProduceRequest { return s.seq(0, 2, "c") }, base: 2, leoAfter: 3},
	}},
	{"a sequence gap is out of order", client.TopicConfig{}, []step{
		{what: "unknown producer not at 0", req: func(s *state) *skeinv1.ProduceRequest { return s.seq(0, 3, "a") },
			reason: skeinv1.ErrorReason_OUT_OF_ORDER_SEQUENCE, leoAfter: 0},
		{what: "first", req: func(s *state) *skeinv1.ProduceRequest { return s.seq(0, 0, "a") }, base: 0, leoAfter: 1},
		{what: "gap", req: func(s *state) *skeinv1.ProduceRequest { return s.seq(0, 2, "b") },
			reason: skeinv1.ErrorReason_OUT_OF_ORDER_SEQUENCE, leoAfter: 1},
		{what: "next", req: func(s *state) *skeinv1.ProduceRequest { return s.seq(0, 1, "b") }, base: 1, leoAfter: 2},
	}},
	{"a newer epoch starts at 0 and fences the older", client.TopicConfig{}, []step{
		{what: "epoch 0", req: func(s *state) *skeinv1.ProduceRequest { return s.seq(0, 0, "a") }, base: 0, leoAfter: 1},
		{what: "epoch 1 not at 0", req: func(s *state) *skeinv1.ProduceRequest { return s.seq(1, 1, "b") },
			reason: skeinv1.ErrorReason_OUT_OF_ORDER_SEQUENCE, leoAfter: 1},
		{what: "epoch 1 at 0", req: func(s *state) *skeinv1.ProduceRequest { return s.seq(1, 0, "b") }, base: 1, leoAfter: 2},
		{what: "epoch 0 again", req: func(s *state) *skeinv1.ProduceRequest { return s.seq(0, 1, "c") },
			reason: skeinv1.ErrorReason_PRODUCER_FENCED, leoAfter: 2},
	}},
	{"sequences are checked before the expected offset", client.TopicConfig{}, []step{
		{what: "conditional", req: func(s *state) *skeinv1.ProduceRequest { return expect(s.seq(0, 0, "a"), 0) }, base: 0, leoAfter: 1},
		{what: "its retry, now stale", req: func(s *state) *skeinv1.ProduceRequest { return expect(s.seq(0, 0, "a"), 0) }, base: 0, leoAfter: 1},
		{what: "a gap with a right offset", req: func(s *state) *skeinv1.ProduceRequest { return expect(s.seq(0, 5, "b"), 1) },
			reason: skeinv1.ErrorReason_OUT_OF_ORDER_SEQUENCE, leoAfter: 1},
		{what: "in order with a wrong offset", req: func(s *state) *skeinv1.ProduceRequest { return expect(s.seq(0, 1, "b"), 0) },
			reason: skeinv1.ErrorReason_OFFSET_MISMATCH, leoAfter: 1},
		{what: "the same, after the mismatch, at the right offset", req: func(s *state) *skeinv1.ProduceRequest { return expect(s.seq(0, 1, "b"), 1) },
			base: 1, leoAfter: 2},
	}},
}

var targets = []string{"fake", "broker"}

// TestConformance runs every case against both servers.
func TestConformance(t *testing.T) {
	for _, kind := range targets {
		t.Run(kind, func(t *testing.T) {
			tg := newTarget(t, kind)
			init, err := tg.raw.InitProducer(ctxT(t), &skeinv1.InitProducerRequest{})
			if err != nil {
				t.Fatalf("InitProducer: %v", err)
			}
			for i, c := range conformance {
				t.Run(c.name, func(t *testing.T) {
					s := &state{t: t, topic: fmt.Sprintf("conf-%d", i), pid: init.GetProducerId()}
					// Producer state is per partition: one id serves every
					// case, each on its own topic.
					s.epoch = tg.topic(t, s.topic, c.cfg)
					for _, st := range c.steps {
						got := tg.produce(t, st.req(s))
						if got.reason != st.reason || (st.reason == 0 && got.base != st.base) {
							t.Fatalf("%s: got %v, want %v / base %d", st.what, got, st.reason, st.base)
						}
						if st.check != nil {
							st.check(t, got.detail)
						}
						if st.leoAfter >= 0 {
							if leo := tg.logEnd(t, s.topic); leo != st.leoAfter {
								t.Fatalf("%s: log end %d, want %d", st.what, leo, st.leoAfter)
							}
						}
					}
				})
			}
		})
	}
}

func (tg *target) logEnd(t *testing.T, topic string) int64 {
	t.Helper()
	lo, err := tg.c.ListOffsets(ctxT(t), topic, 0, client.End())
	if err != nil {
		t.Fatal(err)
	}
	return lo.Offset
}

// TestConformanceReads checks the read side the client depends on, against
// both servers: offsets listed, fetch from a position, out-of-range errors,
// and records (null and empty keys, headers, timestamps) surviving the
// round trip through the client.
func TestConformanceReads(t *testing.T) {
	for _, kind := range targets {
		t.Run(kind, func(t *testing.T) {
			tg := newTarget(t, kind)
			tg.topic(t, "reads", client.TopicConfig{})
			ctx := ctxT(t)
			p, err := tg.c.NewProducer(client.Linger(0))
			if err != nil {
				t.Fatal(err)
			}
			ts := time.UnixMilli(1_700_000_000_000)
			recs := []*client.Record{
				{Topic: "reads", Key: nil, Value: []byte("null key"), Timestamp: ts},
				{Topic: "reads", Key: []byte{}, Value: nil, Timestamp: ts.Add(time.Second)},
				{Topic: "reads", Key: []byte("k"), Value: []byte("v"), Timestamp: ts.Add(2 * time.Second),
					Headers: []client.Header{{Key: "h", Value: []byte("1")}, {Key: "h", Value: nil}}},
			}
			if err := p.ProduceSync(ctx, recs...); err != nil {
				t.Fatal(err)
			}
			lo, err := tg.c.ListOffsets(ctx, "reads", 0, client.AtTime(ts.Add(time.Second)))
			if err != nil || lo.Offset != 1 || lo.HighWatermark != 3 || lo.LogStartOffset != 0 {
				t.Fatalf("AtTime: %+v %v", lo, err)
			}
			if _, err := tg.c.ListOffsets(ctx, "reads", 0, client.At(9)); !errors.Is(err, client.ErrOffsetOutOfRange) {
				t.Fatalf("At(9): %v", err)
			}
			k, err := tg.c.NewConsumer(client.StopAtEnd())
			if err != nil {
				t.Fatal(err)
			}
			if err := k.Assign(ctx, "reads", nil, client.FromEnd(2)); err != nil {
				t.Fatal(err)
			}
			for i := 1; i < 3; i++ {
				r, err := k.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				w := recs[i]
				if r.Offset != int64(i) || (r.Key == nil) != (w.Key == nil) || string(r.Key) != string(w.Key) ||
					(r.Value == nil) != (w.Value == nil) || !r.Timestamp.Equal(w.Timestamp) || len(r.Headers) != len(w.Headers) {
					t.Fatalf("record %d: got %+v, want %+v", i, r, w)
				}
			}
			// A fetch outside the log names the range.
			st, err := tg.raw.Fetch(ctx, &skeinv1.FetchRequest{Topic: "reads", Offset: 10, MaxBytes: 1 << 20, MaxWaitMs: 10, LeaderEpoch: -1})
			if err == nil {
				_, err = st.Recv()
			}
			if s, _ := status.FromError(err); s.Code() != codes.OutOfRange {
				t.Fatalf("fetch at 10: %v", err)
			}
		})
	}
}
