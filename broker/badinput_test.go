package broker_test

// One test per bad-input case of RELIABILITY.md ("Bad input"): each gets its
// gRPC status code and ErrorDetail reason, a message that says what to fix,
// and changes nothing: the partitions' log end offsets and high watermarks,
// the files under the data directory (names and sizes) and the number of
// goroutines are the same before and after.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// ---- what "nothing changed" means -------------------------------------------

// treeSnapshot maps every file and directory under a data directory to its
// size (-1 for directories). Two kinds of entry change on their own and are
// compared by name only:
//   - raft/: the controller's Raft log and stable store (bolt files grow
//     with leader heartbeats' term/commit bookkeeping and every metadata
//     command, e.g. producer id blocks);
//   - .lock: rewritten with the pid at start.
type treeSnapshot map[string]int64

func snapshotTree(t testing.TB, dir string) treeSnapshot {
	t.Helper()
	out := treeSnapshot{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		size := int64(-1)
		if !d.IsDir() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			size = info.Size()
		}
		if rel == "raft" || strings.HasPrefix(rel, "raft"+string(filepath.Separator)) || rel == ".lock" {
			size = -2
		}
		out[rel] = size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// diff lists what differs between two snapshots, "" when nothing does.
func (s treeSnapshot) diff(after treeSnapshot) string {
	var lines []string
	for p, n := range s {
		if m, ok := after[p]; !ok {
			lines = append(lines, "removed "+p)
		} else if m != n {
			lines = append(lines, fmt.Sprintf("changed %s: %d -> %d bytes", p, n, m))
		}
	}
	for p := range after {
		if _, ok := s[p]; !ok {
			lines = append(lines, "created "+p)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// offsets are a partition's log end offset and high watermark.
type offsets struct{ leo, hw int64 }

func partitionOffsets(t testing.TB, b *brokertest.Broker, topic string, parts int32) []offsets {
	t.Helper()
	var out []offsets
	for p := range parts {
		r := b.Partition(topic, p)
		if r == nil {
			t.Fatalf("%s-%d is not on broker %d", topic, p, b.ID())
		}
		st := r.State()
		out = append(out, offsets{st.LogEndOffset, st.HighWatermark})
	}
	return out
}

// unchanged snapshots a broker's state and returns a check that fails the
// test if any of it moved.
func unchanged(t *testing.T, b *brokertest.Broker, topic string, parts int32) func() {
	t.Helper()
	offs := partitionOffsets(t, b, topic, parts)
	tree := snapshotTree(t, b.Dir)
	gs := runtime.NumGoroutine()
	return func() {
		t.Helper()
		if after := partitionOffsets(t, b, topic, parts); fmt.Sprint(after) != fmt.Sprint(offs) {
			t.Errorf("log end offsets / high watermarks moved: %v -> %v", offs, after)
		}
		if d := tree.diff(snapshotTree(t, b.Dir)); d != "" {
			t.Errorf("the data directory changed:\n%s", d)
		}
		waitGoroutines(t, gs)
	}
}

// badCase is one bad request: the call, the status it must get and words
// its message must contain.
type badCase struct {
	name   string
	call   func(ctx context.Context) error
	code   codes.Code
	reason pb.ErrorReason // ERROR_REASON_UNSPECIFIED: no ErrorDetail expected
	says   []string
}

func runBad(t *testing.T, cases []badCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := tc.call(ctx)
			if err == nil {
				t.Fatal("accepted")
			}
			code, d := detail(t, err)
			if code != tc.code {
				t.Fatalf("code %v, want %v: %v", code, tc.code, err)
			}
			if tc.reason != pb.ErrorReason_ERROR_REASON_UNSPECIFIED && d.GetReason() != tc.reason {
				t.Fatalf("reason %v, want %v: %v", d.GetReason(), tc.reason, err)
			}
			msg := status.Convert(err).Message()
			for _, w := range tc.says {
				if !strings.Contains(msg, w) {
					t.Fatalf("message %q does not say %q", msg, w)
				}
			}
		})
	}
}

// ---- batches, well and badly formed -------------------------------------------

func buildBatch(t testing.TB, recs ...*batch.Record) []byte {
	t.Helper()
	bb := batch.NewBuilder(batch.None)
	for _, r := range recs {
		bb.Add(r)
	}
	out, err := bb.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Header offsets of the batch format (proto/batch/batch.go).
const (
	hdrLength          = 8
	hdrMagic           = 16
	hdrCRC             = 17
	hdrAttributes      = 21
	hdrLastOffsetDelta = 23
	hdrRecordCount     = 57
)

// mutate copies a batch, changes it and fixes its CRC, so that only the
// change is wrong.
func mutate(b []byte, f func(b []byte)) []byte {
	out := bytes.Clone(b)
	f(out)
	binary.LittleEndian.PutUint32(out[hdrCRC:], batch.CRC32C(out[hdrAttributes:]))
	return out
}

func put32(off int, v int32) func([]byte) {
	return func(b []byte) { binary.LittleEndian.PutUint32(b[off:], uint32(v)) }
}

// ---- produce ----------------------------------------------------------------

func TestBadInputProduce(t *testing.T) {
	b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) { c.MaxRequestBytes = 2 << 20 }))
	c := dial(t, b.Addr())
	maxRec := int32(1000)
	if _, err := c.CreateTopic(context.Background(), &pb.CreateTopicRequest{Name: "bi", Partitions: 2, MaxRecordBytes: &maxRec}); err != nil {
		t.Fatal(err)
	}
	produce(t, c, "bi", 0, "a", "b")
	check := unchanged(t, b, "bi", 2)

	good := mkBatch(t, "v")
	three := mkBatch(t, "1", "2", "3")
	kb := func(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }
	send := func(req *pb.ProduceRequest) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			if req.Topic == "" {
				req.Topic = "bi"
			}
			_, err := c.Produce(ctx, req)
			return err
		}
	}
	withBatch := func(batch []byte) func(ctx context.Context) error {
		return send(&pb.ProduceRequest{LeaderEpoch: -1, Batch: batch})
	}
	invalid, tooLarge := pb.ErrorReason_INVALID_RECORD, pb.ErrorReason_RECORD_TOO_LARGE
	ia := codes.InvalidArgument
	runBad(t, []badCase{
		// Oversize records: the value, the key, the headers, and their sum.
		{"value over max.record.bytes", withBatch(buildBatch(t, &batch.Record{Value: kb(1001)})), ia, tooLarge, []string{"1001 bytes", "max.record.bytes is 1000"}},
		{"key over max.record.bytes", withBatch(buildBatch(t, &batch.Record{Key: kb(1001), Value: []byte("v")})), ia, tooLarge, []string{"1002 bytes", "1000"}},
		{"headers over max.record.bytes", withBatch(buildBatch(t, &batch.Record{Value: []byte("v"), Headers: []batch.Header{{Key: "h1", Value: kb(500)}, {Key: "h2", Value: kb(500)}}})), ia, tooLarge, []string{"1005 bytes", "1000"}},
		{"key+value+headers one over", withBatch(buildBatch(t, &batch.Record{Key: kb(300), Value: kb(300), Headers: []batch.Header{{Key: "h", Value: kb(400)}}})), ia, tooLarge, []string{"1001 bytes"}},
		{"second record too large", withBatch(buildBatch(t, &batch.Record{Value: []byte("ok")}, &batch.Record{Value: kb(1001)})), ia, tooLarge, []string{"record 1"}},
		// Empty and miscounted batches.
		{"no batch", withBatch(nil), ia, invalid, []string{"empty batch"}},
		{"header only, no records", withBatch(mutate(good[:batch.HeaderSize], func(b []byte) { put32(hdrLength, batch.HeaderSize-hdrLength-4)(b); put32(hdrRecordCount, 0)(b) })), ia, invalid, []string{"record count 0"}},
		{"count 0", withBatch(mutate(good, put32(hdrRecordCount, 0))), ia, invalid, []string{"record count 0"}},
		{"count -1", withBatch(mutate(good, put32(hdrRecordCount, -1))), ia, invalid, []string{"record count -1"}},
		{"count says 4, holds 3", withBatch(mutate(three, func(b []byte) { put32(hdrRecordCount, 4)(b); put32(hdrLastOffsetDelta, 3)(b) })), ia, invalid, []string{"3 records, header says 4"}},
		{"count says 2, holds 3", withBatch(mutate(three, func(b []byte) { put32(hdrRecordCount, 2)(b); put32(hdrLastOffsetDelta, 1)(b) })), ia, invalid, []string{"more records than the count 2"}},
		{"last offset delta disagrees", withBatch(mutate(three, put32(hdrLastOffsetDelta, 7))), ia, invalid, []string{"last offset delta 7 with 3 records"}},
		{"two batches in one", withBatch(append(bytes.Clone(good), good...)), ia, invalid, []string{"bytes after the batch"}},
		// Malformed batch bytes.
		{"garbage", withBatch([]byte("hello, broker")), ia, invalid, []string{"truncated"}},
		{"bad crc", withBatch(func() []byte { b := bytes.Clone(good); b[len(b)-1] ^= 1; return b }()), ia, invalid, []string{"CRC"}},
		{"bad magic", withBatch(mutate(good, func(b []byte) { b[hdrMagic] = 9 })), ia, invalid, []string{"magic 9"}},
		{"unknown attributes", withBatch(mutate(good, func(b []byte) { b[hdrAttributes+1] = 0x40 })), ia, invalid, []string{"attribute"}},
		{"unknown codec", withBatch(mutate(good, func(b []byte) { b[hdrAttributes] = 7 })), ia, invalid, []string{"compression"}},
		{"length claims 60 MiB", withBatch(mutate(good, put32(hdrLength, 60<<20))), ia, invalid, []string{"truncated"}},
		{"length claims 2 GiB", withBatch(mutate(good, put32(hdrLength, math.MaxInt32))), ia, invalid, []string{"out of range"}},
		{"negative length", withBatch(mutate(good, put32(hdrLength, -16))), ia, invalid, []string{"out of range"}},
		{"length one short", withBatch(mutate(good, put32(hdrLength, int32(len(good))-hdrLength-4-1))), ia, invalid, nil},
		// Request fields.
		{"acks 7", send(&pb.ProduceRequest{LeaderEpoch: -1, Acks: 7, Batch: good}), ia, pb.ErrorReason_INVALID_REQUEST, []string{"acks 7", "ACKS_ALL"}},
		{"acks -1", send(&pb.ProduceRequest{LeaderEpoch: -1, Acks: -1, Batch: good}), ia, pb.ErrorReason_INVALID_REQUEST, []string{"acks -1"}},
		{"negative timeout", send(&pb.ProduceRequest{LeaderEpoch: -1, TimeoutMs: -1, Batch: good}), ia, pb.ErrorReason_INVALID_REQUEST, []string{"timeout_ms -1"}},
		{"leader epoch -2", send(&pb.ProduceRequest{LeaderEpoch: -2, Batch: good}), ia, pb.ErrorReason_INVALID_REQUEST, []string{"leader_epoch -2"}},
		{"future leader epoch", send(&pb.ProduceRequest{LeaderEpoch: 1 << 30, Batch: good}), codes.FailedPrecondition, pb.ErrorReason_UNKNOWN_LEADER_EPOCH, []string{"current 0"}},
		{"partition -1", send(&pb.ProduceRequest{Partition: -1, LeaderEpoch: -1, Batch: good}), ia, pb.ErrorReason_INVALID_REQUEST, []string{"partition -1"}},
		{"partition = count", send(&pb.ProduceRequest{Partition: 2, LeaderEpoch: -1, Batch: good}), codes.NotFound, pb.ErrorReason_UNKNOWN_PARTITION, []string{"2 partitions (0..1)"}},
		{"partition max int32", send(&pb.ProduceRequest{Partition: math.MaxInt32, LeaderEpoch: -1, Batch: good}), codes.NotFound, pb.ErrorReason_UNKNOWN_PARTITION, []string{"0..1"}},
		{"unknown topic", send(&pb.ProduceRequest{Topic: "nope", LeaderEpoch: -1, Batch: good}), codes.NotFound, pb.ErrorReason_UNKNOWN_TOPIC, []string{"broker topic create nope"}},
		// Over the gRPC limit: refused before the broker reads it.
		{"request over the limit", withBatch(make([]byte, 3<<20)), codes.ResourceExhausted, pb.ErrorReason_ERROR_REASON_UNSPECIFIED, []string{"larger than max"}},
		// The same, on a produce stream: the stream ends, nothing appended.
		{"stream: request over the limit", func(ctx context.Context) error {
			s, err := c.ProduceStream(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&pb.ProduceRequest{Topic: "bi", LeaderEpoch: -1, Batch: make([]byte, 3<<20)}); err != nil && err != io.EOF {
				return err
			}
			_, err = s.Recv()
			return err
		}, codes.ResourceExhausted, pb.ErrorReason_ERROR_REASON_UNSPECIFIED, nil},
	})
	// Stream answers carry the same details as unary ones.
	t.Run("stream: bad batch answered in line", func(t *testing.T) {
		s, err := c.ProduceStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&pb.ProduceRequest{CorrelationId: 7, Topic: "bi", LeaderEpoch: -1, Batch: mutate(good, put32(hdrRecordCount, 2))}); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.CorrelationId != 7 || r.Error.GetReason() != invalid || codes.Code(r.Error.GetCode()) != ia || r.BaseOffset != -1 {
			t.Fatalf("answer %v", r)
		}
		s.CloseSend()
		if _, err := s.Recv(); err != io.EOF {
			t.Fatalf("stream end: %v", err)
		}
	})
	check()
}

// A batch whose header claims a huge length, in a small request: the
// broker must not allocate what it claims. And a gRPC frame whose
// length prefix claims 1 GiB (sent by hand over HTTP/2, as a hostile client
// would): RESOURCE_EXHAUSTED, read no further.
func TestBadInputClaimedLengthsDoNotAllocate(t *testing.T) {
	b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) { c.MaxRequestBytes = 2 << 20 }))
	c := dial(t, b.Addr())
	createTopic(t, c, "m", 1)
	check := unchanged(t, b, "m", 1)
	claims := mutate(mkBatch(t, "v"), put32(hdrLength, 60<<20))

	allocs := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	const n = 10
	grown := allocs(func() {
		for range n {
			_, err := c.Produce(context.Background(), &pb.ProduceRequest{Topic: "m", LeaderEpoch: -1, Batch: claims})
			if code, d := detail(t, err); code != codes.InvalidArgument || d.GetReason() != pb.ErrorReason_INVALID_RECORD {
				t.Fatalf("batch claiming 60 MiB: %v", err)
			}
		}
	})
	if grown > 16<<20 {
		t.Fatalf("%d requests claiming 60 MiB each allocated %d MiB", n, grown>>20)
	}

	// The raw frame: 0 (uncompressed), then a 4-byte length of 1 GiB, then
	// a few bytes. HTTP/2 without TLS (h2c), as gRPC's insecure transport.
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	var code, msg string
	grown = allocs(func() {
		body := append([]byte{0, 0x40, 0, 0, 0}, bytes.Repeat([]byte{1}, 64)...)
		req, _ := http.NewRequest(http.MethodPost, "http://"+b.Addr()+"/skein.v1.Skein/Produce", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("TE", "trailers")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		code, msg = resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
		if code == "" {
			code, msg = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
		}
	})
	if code != fmt.Sprint(int(codes.ResourceExhausted)) {
		t.Fatalf("1 GiB frame: grpc-status %q (%s), want RESOURCE_EXHAUSTED", code, msg)
	}
	if grown > 16<<20 {
		t.Fatalf("a frame claiming 1 GiB allocated %d MiB", grown>>20)
	}
	tr.CloseIdleConnections()
	check()
}

// ---- malformed protobuf -----------------------------------------------------

// rawCodec sends bytes as they are, whatever the method's message type.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = bytes.Clone(data)
	return nil
}
func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}

// invokeRaw calls a unary method of the public service with raw request
// bytes.
func invokeRaw(ctx context.Context, conn *grpc.ClientConn, method string, req []byte) ([]byte, error) {
	var out []byte
	err := conn.Invoke(ctx, "/skein.v1.Skein/"+method, &req, &out, grpc.ForceCodec(rawCodec{}))
	return out, err
}

// fetchRaw opens a Fetch stream with raw request bytes and reads it until
// it ends or caught_up.
func fetchRaw(ctx context.Context, conn *grpc.ClientConn, req []byte) error {
	desc := &grpc.StreamDesc{StreamName: "Fetch", ServerStreams: true}
	s, err := conn.NewStream(ctx, desc, "/skein.v1.Skein/Fetch", grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	if err := s.SendMsg(&req); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	for {
		var out []byte
		if err := s.RecvMsg(&out); err != nil {
			return err
		}
		var r pb.FetchResponse
		if err := proto.Unmarshal(out, &r); err != nil {
			return err
		}
		if r.CaughtUp {
			return nil
		}
	}
}

// answerCodes are the codes a bad request may get; bytes that are not a
// protobuf message of the method's type get INVALID_ARGUMENT (codec.go).
var answerCodes = map[codes.Code]bool{
	codes.OK: true, codes.InvalidArgument: true, codes.NotFound: true, codes.OutOfRange: true,
	codes.FailedPrecondition: true, codes.ResourceExhausted: true, codes.Aborted: true,
}

// FuzzProduceHandler sends arbitrary bytes as a ProduceRequest and as a
// FetchRequest (the whole protobuf) and as a produce batch, to a running
// broker whose only topic is "f" (1 partition, a few records). The broker
// must answer with one of the expected codes, never panic, and stay
// consistent: nothing is appended unless the produce succeeded, and it
// still serves afterwards. The seeds run in every `go test`.
func FuzzProduceHandler(f *testing.F) {
	good := mkBatch(f, "v")
	req := func(r proto.Message) []byte { b, _ := proto.Marshal(r); return b }
	f.Add(req(&pb.ProduceRequest{Topic: "f", LeaderEpoch: -1, Batch: good}), good)
	f.Add(req(&pb.ProduceRequest{Topic: "f", LeaderEpoch: -1, Acks: 9, Batch: good}), mutate(good, put32(hdrRecordCount, 3)))
	f.Add(req(&pb.ProduceRequest{Topic: "../f", Partition: -1}), []byte("garbage"))
	f.Add(req(&pb.FetchRequest{Topic: "f", Offset: math.MaxInt64, MaxBytes: -1, MaxWaitMs: math.MaxInt32}), mutate(good, put32(hdrLength, math.MaxInt32)))
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, []byte{})                                                    // a string field claiming 4 GiB
	f.Add([]byte{0x42, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, good[:batch.HeaderSize]) // an over-long varint
	f.Add([]byte{0xff, 0xff, 0xff}, []byte(nil))                                                                   // no valid tag
	f.Add(append(req(&pb.ProduceRequest{Topic: "f"}), 0x18, 0x80, 0x80, 0x80, 0x80, 0x10), good)                   // partition varint overflowing int32

	b := brokertest.Start(f)
	conn := dialConn(f, b.Addr())
	c := pb.NewSkeinClient(conn)
	createTopic(f, c, "f", 1)
	produce(f, c, "f", 0, "a", "b", "c")

	f.Fuzz(func(t *testing.T, raw, batchBytes []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		before := b.Partition("f", 0).State().LogEndOffset
		appended := false
		check := func(what string, err error) {
			if code := status.Code(err); !answerCodes[code] {
				t.Fatalf("%s: code %v: %v", what, code, err)
			}
		}
		out, err := invokeRaw(ctx, conn, "Produce", raw)
		check("raw produce", err)
		if err == nil {
			var r pb.ProduceResponse
			if err := proto.Unmarshal(out, &r); err != nil || r.BaseOffset < before {
				t.Fatalf("produce answered %v (%v) with the log at %d", &r, err, before)
			}
			appended = true
		}
		// A short max wait: a fuzzed offset at the end must not hold the
		// test for the default 500 ms.
		var fr pb.FetchRequest
		if proto.Unmarshal(raw, &fr) == nil {
			fr.MaxWaitMs = 10
			raw2, _ := proto.Marshal(&fr)
			check("raw fetch", fetchRaw(ctx, conn, raw2))
		} else {
			check("raw fetch", fetchRaw(ctx, conn, raw))
		}
		_, err = c.Produce(ctx, &pb.ProduceRequest{Topic: "f", LeaderEpoch: -1, Acks: pb.Acks_ACKS_LEADER, Batch: batchBytes})
		check("batch", err)
		if err == nil {
			if _, verr := batch.Validate(batchBytes, batch.Limits{}); verr != nil {
				t.Fatalf("accepted a batch that fails validation: %v", verr)
			}
			appended = true
		}
		if after := b.Partition("f", 0).State().LogEndOffset; !appended && after != before {
			t.Fatalf("log end moved %d -> %d with every request refused", before, after)
		}
		if _, err := c.ListOffsets(ctx, &pb.ListOffsetsRequest{Topic: "f", Spec: &pb.ListOffsetsRequest_Latest{Latest: true}}); err != nil {
			t.Fatalf("broker no longer serves: %v", err)
		}
	})
}

// ---- topic names and topic configuration ----------------------------------

func TestBadInputTopicNamesAndConfig(t *testing.T) {
	b := brokertest.Start(t)
	c := dial(t, b.Addr())
	createTopic(t, c, "ok", 1)
	check := unchanged(t, b, "ok", 1)
	parent := snapshotTree(t, filepath.Dir(b.Dir))

	names := map[string]string{
		"empty": "", "dot": ".", "dotdot": "..", "up": "../x", "up-twice": "../../x", "slash": "a/b", "abs": "/tmp/x",
		"NUL": "a\x00b", "leading dash": "-x", "reserved": "__x", "250 chars": strings.Repeat("a", 250),
		"space": "a b", "backslash": `a\b`, "non-ASCII": "caf\u00e9", "newline": "a\nb", "colon": "a:b", "star": "*",
	}
	var cases []badCase
	say := func(name string) []string {
		switch name {
		case "":
			return []string{"empty"}
		case strings.Repeat("a", 250):
			return []string{"250 characters, at most 249"}
		}
		return []string{"invalid topic name"}
	}
	inv, it := codes.InvalidArgument, pb.ErrorReason_INVALID_TOPIC
	for label, name := range names {
		cases = append(cases,
			badCase{"create " + label, func(ctx context.Context) error {
				_, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: name, Partitions: 1})
				return err
			}, inv, it, say(name)},
			badCase{"produce " + label, func(ctx context.Context) error {
				_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: name, LeaderEpoch: -1, Batch: mkBatch(t, "v")})
				return err
			}, inv, it, say(name)},
			badCase{"fetch " + label, func(ctx context.Context) error { return fetchErr(c, &pb.FetchRequest{Topic: name, LeaderEpoch: -1}) }, inv, it, say(name)},
			badCase{"list offsets " + label, func(ctx context.Context) error {
				_, err := c.ListOffsets(ctx, &pb.ListOffsetsRequest{Topic: name, Spec: &pb.ListOffsetsRequest_Earliest{Earliest: true}})
				return err
			}, inv, it, say(name)},
			badCase{"delete " + label, func(ctx context.Context) error {
				_, err := c.DeleteTopic(ctx, &pb.DeleteTopicRequest{Name: name})
				return err
			}, inv, it, say(name)},
			badCase{"metadata " + label, func(ctx context.Context) error {
				_, err := c.Metadata(ctx, &pb.MetadataRequest{Topics: []string{name}})
				return err
			}, inv, it, say(name)},
		)
		if name != "" {
			cases = append(cases, badCase{"describe " + label, func(ctx context.Context) error {
				_, err := c.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: name})
				return err
			}, inv, it, say(name)})
		}
	}
	i32 := func(v int32) *int32 { return &v }
	i64 := func(v int64) *int64 { return &v }
	ic := pb.ErrorReason_INVALID_REQUEST
	create := func(req *pb.CreateTopicRequest) func(context.Context) error {
		return func(ctx context.Context) error { _, err := c.CreateTopic(ctx, req); return err }
	}
	cases = append(cases,
		badCase{"replication factor > brokers", create(&pb.CreateTopicRequest{Name: "rf", ReplicationFactor: 3}), inv, ic, []string{"replication factor 3 is more than the 1 broker"}},
		badCase{"replication factor -1", create(&pb.CreateTopicRequest{Name: "rf", ReplicationFactor: -1}), inv, ic, []string{"at least 1"}},
		badCase{"min.insync > replication factor", create(&pb.CreateTopicRequest{Name: "mi", MinInsyncReplicas: i32(2)}), inv, ic, []string{"min.insync.replicas 2", "replication factor 1"}},
		badCase{"min.insync 0", create(&pb.CreateTopicRequest{Name: "mi", MinInsyncReplicas: i32(0)}), inv, ic, []string{"min.insync.replicas 0"}},
		badCase{"partitions -1", create(&pb.CreateTopicRequest{Name: "p", Partitions: -1}), inv, ic, []string{"partitions -1"}},
		badCase{"partitions too many", create(&pb.CreateTopicRequest{Name: "p", Partitions: math.MaxInt32}), inv, ic, []string{"between 1 and"}},
		badCase{"retention.ms -2", create(&pb.CreateTopicRequest{Name: "r", RetentionMs: i64(-2)}), inv, ic, []string{"retention.ms -2"}},
		badCase{"retention.bytes 0", create(&pb.CreateTopicRequest{Name: "r", RetentionBytes: i64(0)}), inv, ic, []string{"retention.bytes 0"}},
		badCase{"max.record.bytes over the request size", create(&pb.CreateTopicRequest{Name: "r", MaxRecordBytes: i32(math.MaxInt32)}), inv, ic, []string{"max.record.bytes"}},
		badCase{"max.record.bytes 0", create(&pb.CreateTopicRequest{Name: "r", MaxRecordBytes: i32(0)}), inv, ic, []string{"max.record.bytes 0"}},
		badCase{"exists", create(&pb.CreateTopicRequest{Name: "ok"}), codes.AlreadyExists, pb.ErrorReason_TOPIC_EXISTS, []string{"ok"}},
	)
	runBad(t, cases)
	if l, err := c.ListTopics(context.Background(), &pb.ListTopicsRequest{}); err != nil || len(l.Topics) != 1 {
		t.Errorf("topics after the bad creates: %v %v", l, err)
	}
	check()
	if d := parent.diff(snapshotTree(t, filepath.Dir(b.Dir))); d != "" && !onlyUnder(d, filepath.Base(b.Dir)) {
		t.Errorf("something appeared beside the data directory:\n%s", d)
	}
	// The longest valid name is accepted (the limit is where it says).
	createTopic(t, c, strings.Repeat("a", 249), 1)
}

// onlyUnder reports whether every line of a tree diff is about dir/ (whose
// raft files the parent snapshot does not exclude).
func onlyUnder(diff, dir string) bool {
	for _, l := range strings.Split(diff, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || !strings.HasPrefix(f[1], dir+string(filepath.Separator)) {
			return false
		}
	}
	return true
}

// ---- fetch and list offsets -------------------------------------------------

func TestBadInputFetchRanges(t *testing.T) {
	b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) {
		c.SegmentBytes = 4096
		c.RetentionCheckInterval = 20 * time.Millisecond
	}))
	c := dial(t, b.Addr())
	rb := int64(6000)
	if _, err := c.CreateTopic(context.Background(), &pb.CreateTopicRequest{Name: "r", Partitions: 2, RetentionBytes: &rb}); err != nil {
		t.Fatal(err)
	}
	for range 30 {
		produce(t, c, "r", 0, strings.Repeat("x", 400))
	}
	// Retention moves the log start past 0, then stays (the segments left
	// fit in retention.bytes).
	deadline := time.Now().Add(10 * time.Second)
	for b.Partition("r", 0).State().LogStartOffset == 0 {
		if time.Now().After(deadline) {
			t.Fatal("retention never moved the log start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a few more retention passes: nothing left to delete
	st := b.Partition("r", 0).State()
	start, hw := st.LogStartOffset, st.HighWatermark
	t.Logf("log start %d, high watermark %d", start, hw)
	check := unchanged(t, b, "r", 2)
	rng := fmt.Sprintf("outside [%d, %d]", start, hw)

	fetch := func(req *pb.FetchRequest) func(context.Context) error {
		req.Topic = "r"
		req.LeaderEpoch = -1
		return func(ctx context.Context) error { return fetchErr(c, req) }
	}
	list := func(part int32) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.ListOffsets(ctx, &pb.ListOffsetsRequest{Topic: "r", Partition: part, Spec: &pb.ListOffsetsRequest_Latest{Latest: true}})
			return err
		}
	}
	oor := pb.ErrorReason_OFFSET_OUT_OF_RANGE
	cases := []badCase{
		{"below the log start", fetch(&pb.FetchRequest{Offset: start - 1}), codes.OutOfRange, oor, []string{rng}},
		{"offset 0 after retention", fetch(&pb.FetchRequest{Offset: 0}), codes.OutOfRange, oor, []string{rng}},
		{"one past the HW", fetch(&pb.FetchRequest{Offset: hw + 1}), codes.OutOfRange, oor, []string{rng}},
		{"max int64", fetch(&pb.FetchRequest{Offset: math.MaxInt64}), codes.OutOfRange, oor, []string{rng}},
		{"max int64 - 1, max bytes max int32", fetch(&pb.FetchRequest{Offset: math.MaxInt64 - 1, MaxBytes: math.MaxInt32}), codes.OutOfRange, oor, []string{rng}},
		{"negative offset", fetch(&pb.FetchRequest{Offset: -1}), codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST, []string{"offset -1", "ListOffsets"}},
		{"min int64 offset", fetch(&pb.FetchRequest{Offset: math.MinInt64}), codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST, []string{"must not be negative"}},
		{"fetch partition -1", fetch(&pb.FetchRequest{Partition: -1}), codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST, []string{"partition -1"}},
		{"fetch partition 2 of 2", fetch(&pb.FetchRequest{Partition: 2}), codes.NotFound, pb.ErrorReason_UNKNOWN_PARTITION, []string{"0..1"}},
		{"fetch stale epoch", func(ctx context.Context) error {
			return fetchErr(c, &pb.FetchRequest{Topic: "r", Offset: start, LeaderEpoch: 5})
		}, codes.FailedPrecondition, pb.ErrorReason_UNKNOWN_LEADER_EPOCH, []string{"request epoch 5"}},
		{"list offsets partition -1", list(-1), codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST, []string{"partition -1"}},
		{"list offsets partition 2 of 2", list(2), codes.NotFound, pb.ErrorReason_UNKNOWN_PARTITION, []string{"0..1"}},
		{"list offsets partition max int32", list(math.MaxInt32), codes.NotFound, pb.ErrorReason_UNKNOWN_PARTITION, nil},
		{"list offsets without a spec", func(ctx context.Context) error {
			_, err := c.ListOffsets(ctx, &pb.ListOffsetsRequest{Topic: "r"})
			return err
		}, codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST, []string{"earliest, latest or timestamp_ms"}},
	}
	runBad(t, cases)
	// The out-of-range answer carries the range in its detail, for clients.
	_, d := detail(t, fetchErr(c, &pb.FetchRequest{Topic: "r", Offset: hw + 5, LeaderEpoch: -1}))
	if d.GetLogStartOffset() != start || d.GetHighWatermark() != hw {
		t.Errorf("detail range [%d, %d], want [%d, %d]", d.GetLogStartOffset(), d.GetHighWatermark(), start, hw)
	}

	// Absurd max bytes and max wait are clamped, and the fetch still answers.
	for _, req := range []*pb.FetchRequest{
		{MaxBytes: math.MaxInt32}, {MaxBytes: math.MinInt32}, {MaxBytes: 1}, {MaxBytes: 0},
		{MaxWaitMs: math.MaxInt32}, {MaxWaitMs: math.MinInt32}, {MaxWaitMs: 1},
	} {
		t.Run(fmt.Sprintf("clamped max_bytes %d max_wait %d", req.MaxBytes, req.MaxWaitMs), func(t *testing.T) {
			req.Topic, req.Offset, req.LeaderEpoch = "r", start, -1
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := c.Fetch(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			r, err := s.Recv()
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if len(r.Batches) == 0 || len(r.Batches) > 16<<20 || r.HighWatermark != hw {
				t.Fatalf("answer: %d bytes, HW %d", len(r.Batches), r.HighWatermark)
			}
			// At the HW, the longest wait still answers at once that the
			// fetch is caught up.
			req.Offset = hw
			s, err = c.Fetch(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if r, err := s.Recv(); err != nil || !r.CaughtUp || len(r.Batches) != 0 || r.NextOffset != hw {
				t.Fatalf("at the HW: %v %v", r, err)
			}
		})
	}
	check()
}

// ---- the idempotent producer --------------------------------------------------

func TestBadInputIdempotentProducer(t *testing.T) {
	b := brokertest.Start(t)
	c := dial(t, b.Addr())
	createTopic(t, c, "idem", 1)
	ctx := context.Background()
	ip, err := c.InitProducer(ctx, &pb.InitProducerRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pid := ip.ProducerId
	seqBatch := func(epoch int16, seq int32, values ...string) []byte {
		bb := batch.NewBuilder(batch.None)
		for _, v := range values {
			bb.Add(&batch.Record{Value: []byte(v)})
		}
		bb.SetProducer(pid, epoch, seq)
		out, err := bb.Build(nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	send := func(batch []byte) (*pb.ProduceResponse, error) {
		return c.Produce(ctx, &pb.ProduceRequest{Topic: "idem", LeaderEpoch: -1, Batch: batch})
	}
	first, err := send(seqBatch(0, 0, "a", "b", "c"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := send(seqBatch(0, 3, "d")); err != nil {
		t.Fatal(err)
	}
	check := unchanged(t, b, "idem", 1)

	// A retry of either batch answers with the original offsets and appends
	// nothing.
	for _, retry := range []struct {
		b    []byte
		want int64
	}{{seqBatch(0, 0, "a", "b", "c"), first.BaseOffset}, {seqBatch(0, 3, "d"), first.BaseOffset + 3}} {
		r, err := send(retry.b)
		if err != nil || r.BaseOffset != retry.want {
			t.Fatalf("duplicate: %v %v, want base offset %d", r, err, retry.want)
		}
	}
	ooo, fenced := pb.ErrorReason_OUT_OF_ORDER_SEQUENCE, pb.ErrorReason_PRODUCER_FENCED
	fp := codes.FailedPrecondition
	withBatch := func(batch []byte) func(context.Context) error {
		return func(context.Context) error { _, err := send(batch); return err }
	}
	runBad(t, []badCase{
		{"sequence gap", withBatch(seqBatch(0, 5, "x")), fp, ooo, []string{"expected sequence 4"}},
		{"sequence far ahead", withBatch(seqBatch(0, math.MaxInt32, "x")), fp, ooo, nil},
		{"duplicate overlapping, not equal", withBatch(seqBatch(0, 2, "c", "d")), fp, ooo, nil},
		{"new epoch not from 0", withBatch(seqBatch(1, 4, "x")), fp, ooo, nil},
		{"unknown producer id not from 0", func(context.Context) error {
			bb := batch.NewBuilder(batch.None)
			bb.Add(&batch.Record{Value: []byte("x")})
			bb.SetProducer(pid+1, 0, 7)
			out, _ := bb.Build(nil)
			_, err := send(out)
			return err
		}, fp, ooo, nil},
		{"sequence without producer id", withBatch(mutate(seqBatch(0, 0, "x"), func(b []byte) { binary.LittleEndian.PutUint64(b[43:], math.MaxUint64) })), codes.InvalidArgument, pb.ErrorReason_INVALID_RECORD, []string{"producer id -1"}},
		{"negative producer epoch", withBatch(mutate(seqBatch(0, 0, "x"), func(b []byte) { binary.LittleEndian.PutUint16(b[51:], 0xffff) })), codes.InvalidArgument, pb.ErrorReason_INVALID_RECORD, []string{"epoch -1"}},
		{"init producer: negative id", func(ctx context.Context) error {
			_, err := c.InitProducer(ctx, &pb.InitProducerRequest{ProducerId: proto.Int64(-1)})
			return err
		}, codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST, []string{"producer_id -1"}},
		{"init producer: epoch past int16", func(ctx context.Context) error {
			_, err := c.InitProducer(ctx, &pb.InitProducerRequest{ProducerId: proto.Int64(pid), ProducerEpoch: 1 << 16})
			return err
		}, codes.InvalidArgument, pb.ErrorReason_INVALID_REQUEST, []string{"producer_epoch 65536"}},
	})
	check()

	// Fencing: once epoch 1 has written, epoch 0 is fenced, and nothing of
	// it is appended.
	if _, err := send(seqBatch(1, 0, "e1")); err != nil {
		t.Fatal(err)
	}
	check = unchanged(t, b, "idem", 1)
	runBad(t, []badCase{
		{"fenced epoch, next sequence", withBatch(seqBatch(0, 4, "late")), fp, fenced, []string{"epoch 0"}},
		{"fenced epoch, a retry", withBatch(seqBatch(0, 0, "a", "b", "c")), fp, fenced, nil},
	})
	check()
}

// ---- a cluster: uncommitted data and peer RPCs ------------------------------

// Three brokers, a topic with replication factor 3. Peer RPCs with stale or
// future epochs are refused and change nothing; then, with one follower
// stopped and the other cut off, the leader holds records above its high
// watermark, and no fetch returns them.
func TestBadInputClusterPeersAndUncommitted(t *testing.T) {
	c := brokertest.NewCluster(t, 3, brokertest.WithConfig(func(cfg *broker.Config) {
		cfg.ReplicaLagTime = time.Minute // the ISR must not shrink during the test
	}))
	pc := dial(t, c.Addrs()[0])
	mi := int32(2)
	if _, err := pc.CreateTopic(context.Background(), &pb.CreateTopicRequest{Name: "u", Partitions: 1, ReplicationFactor: 3, MinInsyncReplicas: &mi}); err != nil {
		t.Fatal(err)
	}
	lid := c.WaitLeader("u", 0, 30*time.Second)
	leader := c.Broker(lid)
	lc := dial(t, leader.Addr())
	produce(t, lc, "u", 0, "a", "b")
	c.WaitFor("every replica at the HW", 20*time.Second, func() bool {
		for id := int32(1); id <= 3; id++ {
			if st := c.Broker(id).Partition("u", 0).State(); st.LogEndOffset != 2 || st.HighWatermark != 2 {
				return false
			}
		}
		return true
	})
	var followers []int32
	for id := int32(1); id <= 3; id++ {
		if id != lid {
			followers = append(followers, id)
		}
	}
	meta := func() string {
		pm := leader.Metadata().Topics["u"].Partitions[0]
		return fmt.Sprintf("leader %d epoch %d isr %v partition epoch %d", pm.Leader, pm.LeaderEpoch, pm.ISR, pm.PartitionEpoch)
	}
	pm := leader.Metadata().Topics["u"].Partitions[0]
	epoch := pm.LeaderEpoch
	metaBefore := meta()
	internal := pb.NewInternalClient(dialConn(t, leader.PeerAddr()))
	// The controller answers AlterPartition.
	resp, err := lc.Metadata(context.Background(), &pb.MetadataRequest{})
	if err != nil || resp.ControllerId < 1 {
		t.Fatalf("no controller: %v %v", resp, err)
	}
	ctrl := pb.NewInternalClient(dialConn(t, c.Broker(resp.ControllerId).PeerAddr()))
	if _, err := ctrl.LocalLog(context.Background(), &pb.LocalLogRequest{Topic: "u"}); err != nil { // connect before the snapshot
		t.Fatal(err)
	}
	if _, err := internal.LocalLog(context.Background(), &pb.LocalLogRequest{Topic: "u"}); err != nil {
		t.Fatal(err)
	}
	checks := []func(){}
	for id := int32(1); id <= 3; id++ {
		checks = append(checks, unchanged(t, c.Broker(id), "u", 1))
	}
	// Internal RPCs answer in the response's error field; turn it into a
	// status for runBad.
	asStatus := func(d *pb.ErrorDetail, err error) error {
		if err != nil || d == nil {
			if err == nil {
				return nil
			}
			return err
		}
		st, _ := status.New(codes.Code(d.Code), d.Message).WithDetails(d)
		return st.Err()
	}
	fetch := func(req *pb.ReplicaFetchRequest) func(context.Context) error {
		req.Topic, req.MaxWaitMs = "u", 10
		if req.ReplicaId == 0 {
			req.ReplicaId = followers[0]
		}
		return func(ctx context.Context) error {
			r, err := internal.ReplicaFetch(ctx, req)
			return asStatus(r.GetError(), err)
		}
	}
	ofe := func(current, asked int32) func(context.Context) error {
		return func(ctx context.Context) error {
			r, err := internal.OffsetForLeaderEpoch(ctx, &pb.OffsetForLeaderEpochRequest{Topic: "u", ReplicaId: followers[0], CurrentLeaderEpoch: current, LeaderEpoch: asked})
			return asStatus(r.GetError(), err)
		}
	}
	alter := func(f func(r *pb.AlterPartitionRequest)) func(context.Context) error {
		req := &pb.AlterPartitionRequest{Topic: "u", LeaderId: lid, LeaderEpoch: epoch, PartitionEpoch: pm.PartitionEpoch, NewIsr: []int32{lid, followers[0]}}
		f(req)
		return func(ctx context.Context) error {
			r, err := ctrl.AlterPartition(ctx, req)
			return asStatus(r.GetError(), err)
		}
	}
	fp := codes.FailedPrecondition
	fenced, unknown := pb.ErrorReason_FENCED_LEADER_EPOCH, pb.ErrorReason_UNKNOWN_LEADER_EPOCH
	runBad(t, []badCase{
		{"replica fetch, stale epoch", fetch(&pb.ReplicaFetchRequest{LeaderEpoch: epoch - 1, FetchOffset: 2}), fp, fenced, []string{fmt.Sprintf("request epoch %d, current %d", epoch-1, epoch)}},
		{"replica fetch, future epoch", fetch(&pb.ReplicaFetchRequest{LeaderEpoch: epoch + 1, FetchOffset: 2}), fp, unknown, []string{fmt.Sprintf("request epoch %d", epoch+1)}},
		{"replica fetch, min int32 epoch", fetch(&pb.ReplicaFetchRequest{LeaderEpoch: math.MinInt32, FetchOffset: 2}), fp, fenced, nil},
		{"replica fetch, not a replica", fetch(&pb.ReplicaFetchRequest{ReplicaId: 99, LeaderEpoch: epoch, FetchOffset: 2}), fp, pb.ErrorReason_NOT_LEADER, []string{"broker 99 is not a follower"}},
		{"replica fetch, from the leader itself", fetch(&pb.ReplicaFetchRequest{ReplicaId: lid, LeaderEpoch: epoch, FetchOffset: 2}), fp, pb.ErrorReason_NOT_LEADER, nil},
		{"replica fetch, past the log end", fetch(&pb.ReplicaFetchRequest{LeaderEpoch: epoch, FetchOffset: math.MaxInt64}), codes.OutOfRange, pb.ErrorReason_OFFSET_OUT_OF_RANGE, nil},
		{"replica fetch, negative offset", fetch(&pb.ReplicaFetchRequest{LeaderEpoch: epoch, FetchOffset: -1}), codes.OutOfRange, pb.ErrorReason_OFFSET_OUT_OF_RANGE, nil},
		{"replica fetch, unknown partition", fetch(&pb.ReplicaFetchRequest{Partition: 5, LeaderEpoch: epoch}), codes.NotFound, pb.ErrorReason_UNKNOWN_PARTITION, nil},
		{"offset for epoch, stale current epoch", ofe(epoch-1, epoch-1), fp, fenced, nil},
		{"offset for epoch, future current epoch", ofe(epoch+1, epoch), fp, unknown, nil},
		{"alter partition, stale leader epoch", alter(func(r *pb.AlterPartitionRequest) { r.LeaderEpoch = epoch - 1 }), fp, pb.ErrorReason_INVALID_REQUEST, []string{"leader or leader epoch is not current"}},
		{"alter partition, future leader epoch", alter(func(r *pb.AlterPartitionRequest) { r.LeaderEpoch = epoch + 1 }), fp, pb.ErrorReason_INVALID_REQUEST, []string{"not current"}},
		{"alter partition, not the leader", alter(func(r *pb.AlterPartitionRequest) { r.LeaderId = followers[0] }), fp, pb.ErrorReason_INVALID_REQUEST, []string{"not current"}},
		{"alter partition, stale partition epoch", alter(func(r *pb.AlterPartitionRequest) { r.PartitionEpoch = pm.PartitionEpoch - 1 }), fp, pb.ErrorReason_INVALID_REQUEST, []string{"partition epoch is not current"}},
		{"alter partition, future partition epoch", alter(func(r *pb.AlterPartitionRequest) { r.PartitionEpoch = pm.PartitionEpoch + 1 }), fp, pb.ErrorReason_INVALID_REQUEST, []string{"partition epoch is not current"}},
		{"alter partition, ISR without the leader", alter(func(r *pb.AlterPartitionRequest) { r.NewIsr = followers }), fp, pb.ErrorReason_INVALID_REQUEST, []string{"leader must stay"}},
		{"alter partition, ISR with a stranger", alter(func(r *pb.AlterPartitionRequest) { r.NewIsr = []int32{lid, 99} }), fp, pb.ErrorReason_INVALID_REQUEST, []string{"not a set of replicas"}},
		{"alter partition, unknown topic", alter(func(r *pb.AlterPartitionRequest) { r.Topic = "nope" }), codes.NotFound, pb.ErrorReason_UNKNOWN_TOPIC, nil},
	})
	if m := meta(); m != metaBefore {
		t.Errorf("metadata changed: %s -> %s", metaBefore, m)
	}
	for _, check := range checks {
		check()
	}

	// Uncommitted data: stop one follower, cut the other off, and append
	// with acks=leader. The leader's log goes past its HW.
	c.Kill(followers[0])
	c.Cut(lid, followers[1])
	r, err := lc.Produce(context.Background(), &pb.ProduceRequest{Topic: "u", LeaderEpoch: -1, Acks: pb.Acks_ACKS_LEADER, Batch: mkBatch(t, "c", "d", "e")})
	if err != nil || r.BaseOffset != 2 {
		t.Fatalf("acks=leader produce: %v %v", r, err)
	}
	if st := leader.Partition("u", 0).State(); st.LogEndOffset != 5 || st.HighWatermark != 2 {
		t.Fatalf("leader: log end %d, HW %d; want 5 and 2", st.LogEndOffset, st.HighWatermark)
	}
	recs := fetchAll(t, lc, "u", 0, 0)
	if len(recs) != 2 || recs[len(recs)-1].Offset != 1 {
		t.Fatalf("a fetch returned uncommitted records: %+v", recs)
	}
	uncommitted := func(off int64) func(context.Context) error {
		return func(ctx context.Context) error {
			return fetchErr(lc, &pb.FetchRequest{Topic: "u", Offset: off, LeaderEpoch: -1, MaxWaitMs: 10})
		}
	}
	oor := pb.ErrorReason_OFFSET_OUT_OF_RANGE
	runBad(t, []badCase{
		{"fetch above the HW, below the log end", uncommitted(3), codes.OutOfRange, oor, []string{"outside [0, 2]"}},
		{"fetch at the log end", uncommitted(5), codes.OutOfRange, oor, []string{"outside [0, 2]"}},
		{"fetch past the log end", uncommitted(6), codes.OutOfRange, oor, []string{"outside [0, 2]"}},
	})
	// At the HW a fetch waits and shows nothing.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := lc.Fetch(ctx, &pb.FetchRequest{Topic: "u", Offset: 2, LeaderEpoch: -1, MaxWaitMs: 10})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r, err := s.Recv()
		if err != nil || len(r.Batches) != 0 || r.HighWatermark != 2 || r.NextOffset != 2 {
			t.Fatalf("fetch at the HW: %v %v", r, err)
		}
	}
	lo, err := lc.ListOffsets(context.Background(), &pb.ListOffsetsRequest{Topic: "u", Spec: &pb.ListOffsetsRequest_Latest{Latest: true}})
	if err != nil || lo.Offset != 2 || lo.HighWatermark != 2 {
		t.Fatalf("list offsets latest: %v %v", lo, err)
	}
}

// ---- contradictory broker configuration ---------------------------------------

// A broker whose configuration contradicts itself refuses to start and
// says which setting is wrong; nothing is left running.
func TestBadInputBrokerConfig(t *testing.T) {
	gs := runtime.NumGoroutine()
	long := strings.Repeat("a", 600)
	cases := []struct {
		name string
		f    func(c *broker.Config)
		says string
	}{
		{"node id -1", func(c *broker.Config) { c.NodeID = -1 }, "node id -1"},
		{"bootstrap expect -1", func(c *broker.Config) { c.BootstrapExpect = -1 }, "--bootstrap-expect -1"},
		{"controller voters 2", func(c *broker.Config) { c.ControllerVoters = 2 }, "--controller-voters 2"},
		{"gossip key 7 bytes", func(c *broker.Config) { c.GossipKey = make([]byte, 7) }, "gossip key is 7 bytes"},
		{"replica lag 1ms", func(c *broker.Config) { c.ReplicaLagTime = time.Millisecond }, "--replica-lag-time"},
		{"rack 65 bytes", func(c *broker.Config) { c.Rack = strings.Repeat("r", 65) }, "--rack is 65 bytes"},
		{"max request 1 KiB", func(c *broker.Config) { c.MaxRequestBytes = 1024 }, "max request bytes"},
		{"record bigger than a request", func(c *broker.Config) {
			c.MaxRequestBytes = 1 << 20
			c.TopicDefaults.MaxRecordBytes = 2 << 20
		}, "does not fit"},
		{"addr without port", func(c *broker.Config) { c.Addr = "localhost" }, "--addr"},
		{"external addr alone", func(c *broker.Config) { c.ExternalAddr = "127.0.0.1:0" }, "--external-advertise-addr"},
		// Gossip metadata over memberlist's 512 bytes: memberlist would panic.
		{"advertise addr of 600 bytes", func(c *broker.Config) { c.AdvertiseAddr = long + ":9420" }, "512-byte limit"},
		{"external advertise addr of 600 bytes", func(c *broker.Config) {
			c.ExternalAddr, c.ExternalAdvertiseAddr = "127.0.0.1:0", long+":1"
		}, "512-byte limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := broker.DefaultConfig()
			cfg.DataDir = t.TempDir()
			cfg.Addr, cfg.HTTPAddr, cfg.GossipAddr, cfg.RaftAddr, cfg.PeerAddr = "127.0.0.1:0", "", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
			cfg.KafkaAddr = "127.0.0.1:0"
			tc.f(&cfg)
			b, err := broker.New(cfg)
			if err == nil {
				b.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %q does not say %q", err, tc.says)
			}
		})
	}
	waitGoroutines(t, gs)
}
