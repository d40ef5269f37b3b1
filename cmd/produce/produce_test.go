package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/client/clienttest"
	"github.com/skeinlog/skein/proto/skeinv1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestUnescape(t *testing.T) {
	good := map[string]string{
		`\n`: "\n", `a\tb`: "a\tb", `\0`: "\x00", `\\`: `\`, `\x1f|`: "\x1f|", `\r\n`: "\r\n", `plain`: "plain", ``: ``,
	}
	for in, want := range good {
		got, err := unescape(in)
		if err != nil || string(got) != want {
			t.Errorf("unescape(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`\`, `\q`, `\x`, `\x1`, `\xzz`} {
		if _, err := unescape(bad); err == nil {
			t.Errorf("unescape(%q) accepted", bad)
		}
	}
}

func readAll(t *testing.T, rd *reader, input string) []item {
	t.Helper()
	out := make(chan item, 100)
	go rd.read(context.Background(), strings.NewReader(input), out)
	var items []item
	for it := range out {
		items = append(items, it)
	}
	return items
}

func TestReaderLines(t *testing.T) {
	cfg := &config{topic: "t", partition: -1, delim: []byte("\n"), keySep: []byte(":")}
	items := readAll(t, &reader{cfg: cfg, maxBytes: 100}, "k1:hello\nno key\n:empty key\nk2:v:with:colons\n\nlast")
	want := []struct{ key, value *string }{
		{ptr("k1"), ptr("hello")}, {nil, ptr("no key")}, {ptr(""), ptr("empty key")}, {ptr("k2"), ptr("v:with:colons")}, {nil, ptr("")}, {nil, ptr("last")},
	}
	if len(items) != len(want) {
		t.Fatalf("%d records, want %d", len(items), len(want))
	}
	for i, w := range want {
		r := items[i].rec
		if items[i].err != nil || items[i].line != int64(i+1) || !same(r.Key, w.key) || !same(r.Value, w.value) || r.Partition != -1 {
			t.Errorf("line %d: %+v (err %v), want key %v value %v", i+1, r, items[i].err, deref(w.key), deref(w.value))
		}
	}
	// A multi-byte delimiter, a fixed key and headers.
	cfg = &config{topic: "t", partition: 2, delim: []byte("||"), key: []byte("K"), headers: []client.Header{{Key: "h", Value: []byte("1")}}}
	items = readAll(t, &reader{cfg: cfg, maxBytes: 100}, "a||b|c||")
	if len(items) != 2 || string(items[1].rec.Value) != "b|c" || string(items[0].rec.Key) != "K" || items[0].rec.Partition != 2 || len(items[1].rec.Headers) != 1 {
		t.Fatalf("-D || -k K: %+v", items)
	}
}

func TestReaderRejectsOverlongLines(t *testing.T) {
	cfg := &config{topic: "t", partition: -1, delim: []byte("\n")}
	items := readAll(t, &reader{cfg: cfg, maxBytes: 10}, "0123456789\nshort\n01234567890\nnever read\n")
	if len(items) != 3 || items[0].err != nil || items[1].err != nil || items[2].err == nil {
		t.Fatalf("items %+v", items)
	}
	if msg := items[2].err.Error(); !strings.Contains(msg, "line 3") || !strings.Contains(msg, "10 bytes") {
		t.Fatalf("message %q does not name the line and the limit", msg)
	}
	// Headers count too.
	cfg.headers = []client.Header{{Key: "hh", Value: []byte("vv")}}
	items = readAll(t, &reader{cfg: cfg, maxBytes: 10}, "0123456789\n")
	if len(items) != 1 || items[0].err == nil || !strings.Contains(items[0].err.Error(), "14 bytes") {
		t.Fatalf("record with headers over the limit: %+v", items)
	}
	// Bad JSON is an error naming the line.
	cfg = &config{topic: "t", partition: -1, delim: []byte("\n"), json: true}
	items = readAll(t, &reader{cfg: cfg, maxBytes: 100}, "{\"value\":\"a\"}\n{\"vaule\":\"b\"}\n")
	if len(items) != 2 || items[1].err == nil || !strings.Contains(items[1].err.Error(), "line 2") {
		t.Fatalf("bad JSON: %+v", items)
	}
}

func TestGenerator(t *testing.T) {
	for _, payload := range []string{"random", "json"} {
		for _, size := range []int{0, 1, 2, 10, 100, 5000} {
			g := newGenerator(&config{topic: "t", partition: -1, payload: payload, size: size})
			for i := int64(0); i < 20; i++ {
				if r := g.record(i); len(r.Value) != size || r.Partition != -1 {
					t.Fatalf("%s size %d: record %d has %d bytes", payload, size, i, len(r.Value))
				}
			}
		}
	}
	g := newGenerator(&config{topic: "t", payload: "json", size: 200})
	if v := g.record(7).Value; !json.Valid(v) || !bytes.HasPrefix(v, []byte(`{"id":7,`)) {
		t.Fatalf("json payload %s", v)
	}
}

// ---- the command against a fake cluster on loopback TCP ----

func newFake(t *testing.T) *clienttest.Cluster {
	t.Helper()
	return clienttest.New(t, clienttest.Options{Nodes: 1, TCP: true})
}

type result struct {
	code           int
	stdout, stderr string
}

func runCmd(t *testing.T, ctx context.Context, fc *clienttest.Cluster, stdin io.Reader, args ...string) result {
	t.Helper()
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errb bytes.Buffer
	code := run(ctx, append([]string{"-b", fc.Addrs()[0]}, args...), stdin, &out, &errb)
	return result{code, out.String(), errb.String()}
}

func TestQuickStart(t *testing.T) {
	fc := newFake(t)
	fc.CreateTopic("demo", 3)
	res := runCmd(t, context.Background(), fc, strings.NewReader("k1:hello\nk2:world\n"), "-t", "demo", "-K", ":")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "2 records") || !strings.Contains(res.stderr, "ack latency") {
		t.Fatalf("summary: %s", res.stderr)
	}
	for k, v := range map[string]string{"k1": "hello", "k2": "world"} {
		p := int32(client.KeyPartition([]byte(k), 3))
		recs := fc.Records("demo", p)
		found := false
		for _, r := range recs {
			found = found || (string(r.Key) == k && string(r.Value) == v)
		}
		if !found {
			t.Errorf("%s:%s not in partition %d: %+v", k, v, p, recs)
		}
	}
}

func TestEnvBrokersAndReport(t *testing.T) {
	fc := newFake(t)
	fc.CreateTopic("r", 2)
	t.Setenv("SKEIN_BROKERS", "127.0.0.1:1,"+fc.Addrs()[0])
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"-t", "r", "-p", "1", "--report", "-H", "a=1", "-H", "b=x=y"}, strings.NewReader("x\ny\nz"), &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if out.String() != "1 0 line 1\n1 1 line 2\n1 2 line 3\n" {
		t.Fatalf("report %q", out.String())
	}
	recs := fc.Records("r", 1)
	if len(recs) != 3 || string(recs[2].Value) != "z" || len(recs[0].Headers) != 2 || string(recs[0].Headers[1].Value) != "x=y" {
		t.Fatalf("stored %+v", recs)
	}
}

func TestJSONInput(t *testing.T) {
	fc := newFake(t)
	fc.CreateTopic("j", 2)
	in := `{"key":"a","value":"1","partition":1,"headers":{"h1":"v1","h0":null}}
{"key_b64":"AP8=","value_b64":"AQI=","partition":0,"timestamp":"2024-05-01T00:00:00Z"}
{"value":null,"partition":1,"headers":[["x","y"],{"key":"b","value_b64":"/w=="}],"timestamp":1700000000000}
{"topic":"ignored","partition":0,"offset":99,"timestamp":5,"key":null,"value":"from consume --json"}
`
	res := runCmd(t, context.Background(), fc, strings.NewReader(in), "-t", "j", "--json")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	p0, p1 := fc.Records("j", 0), fc.Records("j", 1)
	if len(p0) != 2 || len(p1) != 2 {
		t.Fatalf("partition 0: %+v\npartition 1: %+v", p0, p1)
	}
	if !bytes.Equal(p0[0].Key, []byte{0, 0xff}) || !bytes.Equal(p0[0].Value, []byte{1, 2}) || p0[0].Timestamp != time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC).UnixMilli() {
		t.Errorf("binary record: %+v", p0[0])
	}
	if p0[1].Key != nil || string(p0[1].Value) != "from consume --json" || p0[1].Timestamp != 5 {
		t.Errorf("consume-style record: %+v", p0[1])
	}
	if string(p1[0].Key) != "a" || p1[0].Headers[0].Key != "h1" || p1[0].Headers[1].Value != nil {
		t.Errorf("headers object: %+v", p1[0])
	}
	if p1[1].Value != nil || p1[1].Timestamp != 1700000000000 || !bytes.Equal(p1[1].Headers[1].Value, []byte{0xff}) {
		t.Errorf("headers list: %+v", p1[1])
	}
}

func TestExpectOffset(t *testing.T) {
	fc := newFake(t)
	fc.CreateTopic("one", 1)
	fc.CreateTopic("three", 3)
	ctx := context.Background()

	res := runCmd(t, ctx, fc, strings.NewReader("a\nb\nc\n"), "-t", "one", "--expect-offset", "0", "--stats", "json")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	var sum summary
	if err := json.Unmarshal([]byte(res.stdout), &sum); err != nil || sum.Records != 3 || *sum.NextOffset != 3 {
		t.Fatalf("stats %q: %v", res.stdout, err)
	}
	if fc.Batches("one", 0) != 1 {
		t.Fatal("the input was not one batch")
	}
	res = runCmd(t, ctx, fc, strings.NewReader("d\n"), "-t", "one", "--expect-offset", "1")
	if res.code != 3 || !strings.Contains(res.stderr, "next offset of one/0 is 3, not 1") {
		t.Fatalf("mismatch: exit %d: %s", res.code, res.stderr)
	}
	if fc.EndOffset("one", 0) != 3 {
		t.Fatal("a mismatched batch was appended")
	}
	// One bad line: nothing is sent.
	res = runCmd(t, ctx, fc, strings.NewReader("ok\n"+strings.Repeat("x", 50)+"\n"), "-t", "one", "--expect-offset", "3", "--max-record-bytes", "20")
	if res.code != 1 || !strings.Contains(res.stderr, "line 2") || !strings.Contains(res.stderr, "nothing was sent") || fc.EndOffset("one", 0) != 3 {
		t.Fatalf("over-long line: exit %d: %s", res.code, res.stderr)
	}
	res = runCmd(t, ctx, fc, strings.NewReader("x\n"), "-t", "three", "--expect-offset", "0")
	if res.code != 2 || !strings.Contains(res.stderr, "add -p") {
		t.Fatalf("several partitions without -p: exit %d: %s", res.code, res.stderr)
	}
	res = runCmd(t, ctx, fc, strings.NewReader("x\n"), "-t", "three", "-p", "2", "--expect-offset", "0")
	if res.code != 0 || fc.EndOffset("three", 2) != 1 {
		t.Fatalf("-p 2: exit %d: %s", res.code, res.stderr)
	}
}

func TestBenchMode(t *testing.T) {
	fc := newFake(t)
	fc.CreateTopic("bench", 3)
	res := runCmd(t, context.Background(), fc, nil, "-t", "bench", "--count", "5000", "--size", "100", "--stats", "json")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	var sum summary
	if err := json.Unmarshal([]byte(res.stdout), &sum); err != nil {
		t.Fatalf("stats %q: %v", res.stdout, err)
	}
	var total int64
	for _, p := range sum.Partitions {
		total += p.Records
		if p.Last-p.First+1 != p.Records || fc.EndOffset("bench", p.Partition) != p.Records {
			t.Errorf("partition %+v does not match the log (%d)", p, fc.EndOffset("bench", p.Partition))
		}
	}
	if sum.Records != 5000 || total != 5000 || sum.Bytes != 500000 || sum.LatencyMs.P50 <= 0 || sum.LatencyMs.P999 < sum.LatencyMs.P50 || sum.RecordsPerSec <= 0 {
		t.Fatalf("summary %+v", sum)
	}
	// Idempotent by default: the stats name the producer id its batches carry.
	if recs := fc.Records("bench", sum.Partitions[0].Partition); !sum.Idempotent || sum.ProducerID < 0 || sum.ProducerEpoch != 0 || recs[0].Producer != sum.ProducerID {
		t.Fatalf("idempotent %v, producer id %d epoch %d; the log has producer %d", sum.Idempotent, sum.ProducerID, sum.ProducerEpoch, recs[0].Producer)
	}
	res = runCmd(t, context.Background(), fc, nil, "-t", "bench", "--count", "10", "-p", "2", "--stats", "json", "--idempotent=false")
	sum = summary{}
	if err := json.Unmarshal([]byte(res.stdout), &sum); res.code != 0 || err != nil || sum.Idempotent || sum.ProducerID != -1 {
		t.Fatalf("--idempotent=false: exit %d, %+v, %v", res.code, sum, err)
	}
	if recs := fc.Records("bench", 2); recs[len(recs)-1].Producer != -1 {
		t.Fatalf("--idempotent=false sent producer id %d", recs[len(recs)-1].Producer)
	}
	// A paced, compressed, JSON-payload run.
	start := time.Now()
	res = runCmd(t, context.Background(), fc, nil, "-t", "bench", "--count", "200", "--size", "300", "--payload", "json", "--compression", "zstd", "--rate", "2000", "-p", "1")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if el := time.Since(start); el < 90*time.Millisecond {
		t.Fatalf("200 records at 2000/s took %v", el)
	}
	recs := fc.Records("bench", 1)
	if v := recs[len(recs)-1].Value; len(v) != 300 || !bytes.HasPrefix(v, []byte(`{"id":199,`)) {
		t.Fatalf("last generated record %q", v)
	}
}

func TestFailuresAreNamed(t *testing.T) {
	fc := newFake(t)
	fc.CreateTopic("f", 2)
	fc.SetProduceHook(func(_ int32, req *skeinv1.ProduceRequest) clienttest.Action {
		if req.GetPartition() == 1 {
			return clienttest.Action{Fail: &skeinv1.ErrorDetail{Code: uint32(codes.InvalidArgument), Reason: skeinv1.ErrorReason_INVALID_RECORD, Message: "rejected by test"}}
		}
		return clienttest.Action{}
	})
	in := `{"value":"a","partition":0}
{"value":"b","partition":1}
{"value":"c","partition":0}
`
	res := runCmd(t, context.Background(), fc, strings.NewReader(in), "-t", "f", "--json")
	if res.code != 1 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "1 record failed") || !strings.Contains(res.stderr, "line 2 (partition 1)") || !strings.Contains(res.stderr, "rejected by test") {
		t.Fatalf("failure report: %s", res.stderr)
	}
	if !strings.Contains(res.stderr, "2 records") || fc.EndOffset("f", 0) != 2 {
		t.Fatalf("the good records: %s", res.stderr)
	}
}

func TestBadUsageAndTopics(t *testing.T) {
	fc := newFake(t)
	fc.CreateTopic("u", 2)
	ctx := context.Background()
	for _, args := range [][]string{
		{"-t", "u", "--nope"},
		{"-p", "1"},
		{"-t", "u", "--acks", "2"},
		{"-t", "u", "--compression", "brotli"},
		{"-t", "u", "-K", ":", "-k", "x"},
		{"-t", "u", "--json", "-K", ":"},
		{"-t", "u", "--size", "10"},
		{"-t", "u", "--expect-offset", "-1"},
		{"-t", "u", "-D", `\q`},
		{"-t", "u", "--stats", "xml"},
		{"-t", "u", "extra"},
		{"-t", "u", "--acks", "none", "--idempotent"},
	} {
		res := runCmd(t, ctx, fc, nil, args...)
		if res.code != 2 || !strings.Contains(res.stderr, "Usage: produce") {
			t.Errorf("%v: exit %d: %s", args, res.code, res.stderr)
		}
	}
	res := runCmd(t, ctx, fc, strings.NewReader("x\n"), "-t", "nope")
	if res.code != 1 || !strings.Contains(res.stderr, `topic "nope" does not exist`) {
		t.Errorf("unknown topic: exit %d: %s", res.code, res.stderr)
	}
	res = runCmd(t, ctx, fc, strings.NewReader("x\n"), "-t", "u", "-p", "5")
	if res.code != 1 || !strings.Contains(res.stderr, "partition 5 does not exist") || !strings.Contains(res.stderr, "2 partitions") {
		t.Errorf("unknown partition: exit %d: %s", res.code, res.stderr)
	}
	res = runCmd(t, ctx, fc, strings.NewReader("ok\n"+strings.Repeat("y", 30)+"\nnot sent\n"), "-t", "u", "-p", "0", "--max-record-bytes", "20")
	if res.code != 1 || !strings.Contains(res.stderr, "line 2 is longer than 20 bytes") || fc.EndOffset("u", 0) != 1 {
		t.Errorf("over-long line: exit %d: %s (stored %d)", res.code, res.stderr, fc.EndOffset("u", 0))
	}
}

// Ctrl-C: stop reading, send what was read, summarise, exit 130.
func TestInterruptFlushesWhatWasRead(t *testing.T) {
	fc := newFake(t)
	fc.CreateTopic("i", 1)
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	produced := make(chan struct{}, 10)
	testHookProduced = func() { produced <- struct{}{} }
	defer func() { testHookProduced = nil }()
	done := make(chan result, 1)
	go func() {
		var out, errb bytes.Buffer
		code := run(ctx, []string{"-b", fc.Addrs()[0], "-t", "i", "--linger", "1h"}, pr, &out, &errb)
		done <- result{code, out.String(), errb.String()}
	}()
	w := bufio.NewWriter(pw)
	for i := 0; i < 3; i++ {
		fmt.Fprintf(w, "line %d\n", i)
	}
	w.Flush()
	for i := 0; i < 3; i++ {
		<-produced
	}
	// The records wait for the 1 h linger and stdin stays open: the
	// interrupt must stop the reading and send them.
	if fc.ProduceRequests() != 0 {
		t.Fatal("records were sent before the interrupt")
	}
	cancel()
	res := <-done
	if res.code != 130 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if fc.EndOffset("i", 0) != 3 || !strings.Contains(res.stderr, "3 records") {
		t.Fatalf("after the interrupt: %d stored; %s", fc.EndOffset("i", 0), res.stderr)
	}
}

func ptr(s string) *string { return &s }

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return strconv.Quote(*s)
}

func same(b []byte, s *string) bool {
	if s == nil {
		return b == nil
	}
	return b != nil && string(b) == *s
}
