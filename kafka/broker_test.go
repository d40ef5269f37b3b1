package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/kafka"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

func kafkaClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.RequestRetries(20)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// consumeAll reads a partition from the beginning until n records.
func consumeAll(t *testing.T, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := kafkaClient(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	ctx := ctxFor(t, 20*time.Second)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(out), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

// A topic created, listed and deleted with kadm; records produced with an
// idempotent kgo producer in each codec come back through Kafka fetches
// with their keys, values, headers, timestamps and offsets.
func TestKafkaAdminProduceFetch(t *testing.T) {
	b := brokertest.Start(t)
	addr := b.KafkaAddr()
	adm := kadm.NewClient(kafkaClient(t, addr))
	ctx := ctxFor(t, 30*time.Second)
	created, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"retention.ms": kadm.StringPtr("3600000")}, "demo")
	if err != nil || created.Err != nil {
		t.Fatalf("create: %v %v", err, created.Err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "demo"); !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatalf("create again: %v, want TOPIC_ALREADY_EXISTS", err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "bad/name"); !errors.Is(err, kerr.InvalidTopicException) {
		t.Fatalf("create bad name: %v, want INVALID_TOPIC_EXCEPTION", err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"segment.jitter.ms": kadm.StringPtr("1")}, "other"); !errors.Is(err, kerr.InvalidConfig) {
		t.Fatalf("create with an unknown config: %v, want INVALID_CONFIG", err)
	}
	td, err := adm.ListTopics(ctx)
	if err != nil || !td.Has("demo") || td.Has("other") {
		t.Fatalf("list: %v %v", td.Names(), err)
	}
	if p := td["demo"].Partitions[0]; p.Leader != b.ID() || !slices.Equal(p.Replicas, []int32{b.ID()}) || !slices.Equal(p.ISR, []int32{b.ID()}) {
		t.Fatalf("partition metadata %+v", p)
	}
	rc, err := adm.DescribeTopicConfigs(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := rc.On("demo", nil); err != nil || configValue(v.Configs, "retention.ms") != "3600000" {
		t.Fatalf("describe configs: %+v %v", v, err)
	}

	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	ts := time.UnixMilli(time.Now().UnixMilli() - 5000)
	var want []*kgo.Record
	for i, codec := range codecs {
		cl := kafkaClient(t, addr, kgo.ProducerBatchCompression(codec), kgo.DefaultProduceTopic("demo"))
		var recs []*kgo.Record
		for j := 0; j < 50; j++ {
			r := &kgo.Record{
				Key:       []byte(fmt.Sprintf("k%d-%d", i, j)),
				Value:     []byte(fmt.Sprintf("value %d %d repeated repeated repeated repeated", i, j)),
				Headers:   []kgo.RecordHeader{{Key: "codec", Value: []byte(fmt.Sprint(i))}, {Key: "empty", Value: []byte{}}},
				Timestamp: ts.Add(time.Duration(len(want)+j) * time.Millisecond),
			}
			if j == 7 {
				r.Key = nil
			}
			recs = append(recs, r)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce with %v: %v", codec, err)
		}
		want = append(want, recs...)
	}
	got := consumeAll(t, addr, "demo", len(want))
	for i, w := range want {
		g := got[i]
		if g.Offset != int64(i) || g.Offset != w.Offset || !slices.Equal(g.Key, w.Key) || (g.Key == nil) != (w.Key == nil) ||
			string(g.Value) != string(w.Value) || !g.Timestamp.Equal(w.Timestamp) || len(g.Headers) != 2 ||
			g.Headers[0].Key != w.Headers[0].Key || string(g.Headers[0].Value) != string(w.Headers[0].Value) || g.Headers[1].Key != "empty" || len(g.Headers[1].Value) != 0 {
			t.Fatalf("record %d: got %+v, want %+v", i, g, w)
		}
	}

	// ListOffsets: earliest, latest and by timestamp.
	starts, err := adm.ListStartOffsets(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	at, err := adm.ListOffsetsAfterMilli(ctx, ts.Add(100*time.Millisecond).UnixMilli(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := starts.Lookup("demo", 0)
	e, _ := ends.Lookup("demo", 0)
	a, _ := at.Lookup("demo", 0)
	if s.Offset != 0 || e.Offset != int64(len(want)) || a.Offset != 100 {
		t.Fatalf("offsets: earliest %+v latest %+v at ts+100ms %+v", s, e, a)
	}

	if _, err := adm.DeleteTopic(ctx, "demo"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := adm.DeleteTopic(ctx, "demo"); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("delete again: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
}

func configValue(cs []kadm.Config, name string) string {
	for _, c := range cs {
		if c.Key == name && c.Value != nil {
			return *c.Value
		}
	}
	return ""
}

// Records produced over gRPC read back through Kafka with the same offsets,
// keys, headers and timestamps, and records produced through Kafka read
// back over gRPC the same way.
func TestKafkaCrossAPI(t *testing.T) {
	b := brokertest.Start(t)
	ctx := ctxFor(t, 30*time.Second)
	conn, err := grpc.NewClient(b.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sk := pb.NewSkeinClient(conn)
	if _, err := sk.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "x", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	ts := time.Now().UnixMilli() - 1000
	var want []batch.Record
	for i := 0; i < 3; i++ {
		bb := batch.NewBuilder(batch.Compression(i + 2))
		for j := 0; j < 10; j++ {
			r := batch.Record{Timestamp: ts + int64(i*10+j), Key: []byte(fmt.Sprintf("g%d", j)), Value: []byte(fmt.Sprintf("grpc %d %d", i, j)),
				Headers: []batch.Header{{Key: "h", Value: []byte{byte(j)}}, {Key: "null"}}}
			bb.Add(&r)
			want = append(want, r)
		}
		raw, err := bb.Build(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sk.Produce(ctx, &pb.ProduceRequest{Topic: "x", Acks: pb.Acks_ACKS_ALL, LeaderEpoch: -1, Batch: raw}); err != nil {
			t.Fatal(err)
		}
	}
	kc := kafkaClient(t, b.KafkaAddr(), kgo.DefaultProduceTopic("x"))
	for j := 0; j < 10; j++ {
		r := &kgo.Record{Key: []byte(fmt.Sprintf("k%d", j)), Value: []byte(fmt.Sprintf("kafka %d", j)), Timestamp: time.UnixMilli(ts + int64(30+j)),
			Headers: []kgo.RecordHeader{{Key: "h", Value: []byte{byte(j)}}, {Key: "null"}}}
		if err := kc.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		want = append(want, batch.Record{Timestamp: r.Timestamp.UnixMilli(), Key: r.Key, Value: r.Value, Headers: []batch.Header{{Key: "h", Value: []byte{byte(j)}}, {Key: "null"}}})
	}
	// Through Kafka.
	got := consumeAll(t, b.KafkaAddr(), "x", len(want))
	for i, w := range want {
		g := got[i]
		if g.Offset != int64(i) || string(g.Key) != string(w.Key) || string(g.Value) != string(w.Value) || g.Timestamp.UnixMilli() != w.Timestamp ||
			len(g.Headers) != 2 || string(g.Headers[0].Value) != string(w.Headers[0].Value) || g.Headers[1].Value != nil {
			t.Fatalf("kafka read %d: %+v, want %+v", i, g, w)
		}
	}
	// Through gRPC.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := sk.Fetch(fctx, &pb.FetchRequest{Topic: "x", Offset: 0, LeaderEpoch: -1})
	if err != nil {
		t.Fatal(err)
	}
	var recs []batch.Record
	for len(recs) < len(want) {
		fr, err := st.Recv()
		if err == io.EOF || err != nil {
			t.Fatalf("grpc fetch after %d records: %v", len(recs), err)
		}
		for buf := fr.Batches; len(buf) > 0; {
			v, rest, err := batch.Next(buf)
			if err != nil {
				t.Fatal(err)
			}
			buf = rest
			if recs, err = v.Records(recs); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, w := range want {
		g := recs[i]
		if g.Offset != int64(i) || string(g.Key) != string(w.Key) || string(g.Value) != string(w.Value) || g.Timestamp != w.Timestamp ||
			len(g.Headers) != 2 || string(g.Headers[0].Value) != string(w.Headers[0].Value) || g.Headers[1].Value != nil {
			t.Fatalf("grpc read %d: %+v, want %+v", i, g, w)
		}
	}
}

// A retried idempotent batch (same producer id, epoch and sequence) is
// answered with its first offsets and not written again; a sequence gap is
// OUT_OF_ORDER_SEQUENCE_NUMBER; the producer state is the partition's, as
// for the gRPC path.
func TestKafkaIdempotentRetry(t *testing.T) {
	b := brokertest.Start(t)
	ctx := ctxFor(t, 30*time.Second)
	cl := kafkaClient(t, b.KafkaAddr())
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, "r"); err != nil {
		t.Fatal(err)
	}
	ip := kmsg.NewPtrInitProducerIDRequest()
	ipr, err := ip.RequestWith(ctx, cl)
	if err != nil || ipr.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v %+v", err, ipr)
	}
	produce := func(seq int32) kmsg.ProduceResponseTopicPartition {
		bb := batch.NewBuilder(batch.None)
		bb.SetProducer(ipr.ProducerID, ipr.ProducerEpoch, seq)
		bb.Add(&batch.Record{Timestamp: 1, Value: []byte("v")})
		bb.Add(&batch.Record{Timestamp: 2, Value: []byte("w")})
		sk, _ := bb.Build(nil)
		kb, err := kafka.AppendKafkaForTest(sk)
		if err != nil {
			t.Fatal(err)
		}
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 5000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "r"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = kb
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0]
	}
	first := produce(0)
	again := produce(0)
	if first.ErrorCode != 0 || again.ErrorCode != 0 || again.BaseOffset != first.BaseOffset {
		t.Fatalf("first %+v, retry %+v", first, again)
	}
	if gap := produce(5); gap.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("sequence gap: %+v", gap)
	}
	next := produce(2)
	if next.ErrorCode != 0 || next.BaseOffset != 2 {
		t.Fatalf("next batch: %+v", next)
	}
	if st := b.Partition("r", 0).State(); st.LogEndOffset != 4 {
		t.Fatalf("log end %d: a retry was written twice", st.LogEndOffset)
	}
}

// Two franz-go group consumers (KIP-848, the broker assigns) share a
// topic's partitions: every record is consumed once, and the offsets they
// commit are the group's offsets seen through the native Groups API.
func TestKafkaConsumerGroup(t *testing.T) {
	b := brokertest.Start(t)
	ctx := ctxFor(t, 60*time.Second)
	admCl := kafkaClient(t, b.KafkaAddr())
	adm := kadm.NewClient(admCl)
	if _, err := adm.CreateTopic(ctx, 4, 1, nil, "g"); err != nil {
		t.Fatal(err)
	}
	prod := kafkaClient(t, b.KafkaAddr(), kgo.DefaultProduceTopic("g"))
	const n = 400
	for i := 0; i < n; i++ {
		prod.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint(i))}, nil)
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 2*n)
	var consumers []*kgo.Client
	for c := 0; c < 2; c++ {
		consumers = append(consumers, groupMember(t, ctx, b.KafkaAddr(), seen, kgo.ConsumerGroup("grp"), kgo.ConsumeTopics("g"), kgo.ServerSideBalancer()))
	}
	got := map[string]int{}
	collect(t, ctx, seen, got, n)
	// Committed offsets reach the ends of all four partitions.
	deadline := time.Now().Add(20 * time.Second)
	for {
		offs, err := adm.FetchOffsets(ctx, "grp")
		total := int64(0)
		if err == nil {
			offs.Each(func(o kadm.OffsetResponse) { total += o.At })
		}
		if total == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed offsets sum to %d, want %d (%v)", total, n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	conn, err := grpc.NewClient(b.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gr, err := pb.NewGroupsClient(conn).FetchOffsets(ctx, &pb.FetchOffsetsRequest{Group: "grp"})
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for _, o := range gr.Offsets {
		total += o.Offset
	}
	if len(gr.Offsets) != 4 || total != n {
		t.Fatalf("native FetchOffsets: %+v", gr.Offsets)
	}
	for v, c := range got {
		if c != 1 {
			t.Errorf("record %s consumed %d times", v, c)
		}
	}
	lg, err := adm.ListGroups(ctx)
	if err != nil || len(lg.Groups()) != 1 {
		t.Fatalf("list groups: %v %v", lg, err)
	}
	// The offsets topic is listed as internal, and only on request.
	all, err := adm.ListTopicsWithInternal(ctx)
	if err != nil || !all.Has("__consumer_offsets") || !all["__consumer_offsets"].IsInternal {
		t.Fatalf("internal topics: %v %v", all.Names(), err)
	}
	if td, _ := adm.ListTopics(ctx); td.Has("__consumer_offsets") {
		t.Fatal("the offsets topic is listed with the user's topics")
	}
	for _, cl := range consumers {
		cl.Close()
	}
}

// groupMember starts a franz-go group consumer that sends each record's
// value to seen and commits after every poll.
func groupMember(t *testing.T, ctx context.Context, addr string, seen chan<- string, opts ...kgo.Opt) *kgo.Client {
	cl := kafkaClient(t, addr, append([]kgo.Opt{kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit()}, opts...)...)
	go func() {
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			if fs.IsClientClosed() {
				return
			}
			fs.EachRecord(func(r *kgo.Record) { seen <- string(r.Value) })
			if err := cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
				t.Logf("commit: %v", err)
			}
		}
	}()
	return cl
}

// collect counts the values from seen until got holds n distinct ones.
func collect(t *testing.T, ctx context.Context, seen <-chan string, got map[string]int, n int) {
	t.Helper()
	for len(got) < n {
		select {
		case v := <-seen:
			got[v]++
		case <-ctx.Done():
			t.Fatalf("consumed %d distinct records of %d", len(got), n)
		}
	}
}
