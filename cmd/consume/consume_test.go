package main

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/client/clienttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseOffset(t *testing.T) {
	ts := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	good := map[string]client.Offset{
		"beginning": client.Beginning(), "earliest": client.Beginning(), "END": client.End(), "latest": client.End(),
		"0": client.At(0), "42": client.At(42), "-10": client.FromEnd(10), "-0": client.FromEnd(0),
		"@2024-05-01T12:00:00Z": client.AtTime(ts), "@" + strconv.FormatInt(ts.UnixMilli(), 10): client.AtTime(ts),
	}
	for in, want := range good {
		got, err := parseOffset(in)
		if err != nil || got.String() != want.String() {
			t.Errorf("parseOffset(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "start", "1.5", "--3", "@yesterday", "@", "x1", "-a"} {
		if _, err := parseOffset(bad); err == nil {
			t.Errorf("parseOffset(%q) accepted", bad)
		}
	}
}

func TestParsePartitions(t *testing.T) {
	good := map[string][]int32{"": nil, "0": {0}, "0,2": {0, 2}, "1-3,7": {1, 2, 3, 7}, " 4 , 5": {4, 5}}
	for in, want := range good {
		got, err := parsePartitions(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parsePartitions(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"a", "-1", "1,1", "3-1", "0-2,2", "1,"} {
		if _, err := parsePartitions(bad); err == nil {
			t.Errorf("parsePartitions(%q) accepted", bad)
		}
	}
}

func TestFormat(t *testing.T) {
	r := &client.Record{Topic: "demo", Partition: 2, Offset: 17, Timestamp: time.UnixMilli(1700000000123), Key: []byte("k"), Value: []byte("v"),
		Headers: []client.Header{{Key: "a", Value: []byte("1")}, {Key: "b", Value: nil}}}
	cases := map[string]string{
		`%v\n`:                         "v\n",
		`%t/%p@%o %k=%v %T [%h] 100%%`: "demo/2@17 k=v 1700000000123 [a=1,b=] 100%",
		`\t%k\\%v\0\r`:                 "\tk\\v\x00\r",
		`plain`:                        "plain",
	}
	for f, want := range cases {
		ops, err := compileFormat(f)
		if err != nil {
			t.Fatalf("%q: %v", f, err)
		}
		if got := string(render(nil, ops, r)); got != want {
			t.Errorf("%q rendered %q, want %q", f, got, want)
		}
	}
	nullKey := &client.Record{Value: []byte("x")}
	ops, _ := compileFormat(`[%k]`)
	if got := string(render(nil, ops, nullKey)); got != "[]" {
		t.Errorf("null key rendered %q", got)
	}
	if ops, err := compileFormat(""); err != nil || len(render(nil, ops, nullKey)) != 0 {
		t.Errorf("the empty format prints something or is refused: %v", err)
	}
	for _, bad := range []string{"%", `\`, "%x", `\q`} {
		if _, err := compileFormat(bad); err == nil {
			t.Errorf("compileFormat(%q) accepted", bad)
		}
	}
}

// ---- the command against a fake cluster on loopback TCP ----

type fixture struct {
	fc *clienttest.Cluster
	c  *client.Client
	p  *client.Producer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	fc := clienttest.New(t, clienttest.Options{Nodes: 1, TCP: true})
	c, err := client.New(client.Brokers(fc.Addrs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p, err := c.NewProducer(client.RecordPartitioner(client.ExplicitPartitioner(client.DefaultPartitioner())))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{fc, c, p}
}

func (f *fixture) produce(t *testing.T, recs ...*client.Record) {
	t.Helper()
	if err := f.p.ProduceSync(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func (f *fixture) run(t *testing.T, ctx context.Context, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, append([]string{"-b", f.fc.Addrs()[0]}, args...), nil, &out, &errb)
	return result{code, out.String(), errb.String()}
}

func TestQuickStartRead(t *testing.T) {
	f := newFixture(t)
	f.fc.CreateTopic("demo", 3)
	f.produce(t, &client.Record{Topic: "demo", Partition: client.AnyPartition, Key: []byte("k1"), Value: []byte("hello")},
		&client.Record{Topic: "demo", Partition: client.AnyPartition, Key: []byte("k2"), Value: []byte("world")})
	res := f.run(t, context.Background(), "-t", "demo", "-o", "beginning", "-e")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if len(lines) != 2 || !(lines[0] == "hello" && lines[1] == "world" || lines[0] == "world" && lines[1] == "hello") {
		t.Fatalf("output %q", res.stdout)
	}
	if res.stderr != "" {
		t.Fatalf("stderr without -v: %q", res.stderr)
	}
}

func TestOffsetsPartitionsCountAndFormat(t *testing.T) {
	f := newFixture(t)
	f.fc.CreateTopic("o", 3)
	base := time.UnixMilli(1_700_000_000_000)
	for p := int32(0); p < 3; p++ {
		var recs []*client.Record
		for i := 0; i < 10; i++ {
			recs = append(recs, &client.Record{Topic: "o", Partition: p, Value: []byte(strconv.Itoa(i)), Timestamp: base.Add(time.Duration(i) * time.Second)})
		}
		f.produce(t, recs...)
	}
	ctx := context.Background()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-p", "1", "-o", "7", "-e", "-f", `%p:%o=%v,`}, "1:7=7,1:8=8,1:9=9,"},
		{[]string{"-p", "2", "-o", "-2", "-e", "-f", `%v `}, "8 9 "},
		{[]string{"-p", "0", "-o", "-100", "-c", "3", "-f", `%v`}, "012"},
		{[]string{"-p", "0", "-o", "@" + base.Add(8500*time.Millisecond).Format(time.RFC3339Nano), "-e", "-f", `%o %T\n`},
			"9 " + strconv.FormatInt(base.Add(9*time.Second).UnixMilli(), 10) + "\n"},
		{[]string{"-p", "0", "-o", "end", "-e"}, ""},
	}
	for _, c := range cases {
		res := f.run(t, ctx, append([]string{"-t", "o"}, c.args...)...)
		if res.code != 0 || res.stdout != c.want {
			t.Errorf("%v: exit %d, output %q, want %q; %s", c.args, res.code, res.stdout, c.want, res.stderr)
		}
	}
	// -p 0,2 reads two partitions: 20 records, in offset order within each.
	res := f.run(t, ctx, "-t", "o", "-p", "0,2", "-o", "beginning", "-e", "-f", `%p %o\n`, "--stats", "json", "-v")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if len(lines) != 21 {
		t.Fatalf("%d lines: %q", len(lines), res.stdout)
	}
	next := map[string]int{}
	for _, l := range lines[:20] {
		var p string
		var o int
		if _, err := fmtSscan(l, &p, &o); err != nil || (p != "0" && p != "2") || o != next[p] {
			t.Fatalf("line %q out of order", l)
		}
		next[p]++
	}
	var sum summary
	if err := json.Unmarshal([]byte(lines[20]), &sum); err != nil || sum.Records != 20 || sum.Bytes != 20 || len(sum.Partitions) != 2 || sum.Partitions[1].NextOffset != 10 {
		t.Fatalf("stats %q: %v", lines[20], err)
	}
	if !strings.Contains(res.stderr, "20 records (20 bytes) from o") {
		t.Fatalf("-v summary: %q", res.stderr)
	}
}

func fmtSscan(s string, p *string, o *int) (int, error) {
	a, b, _ := strings.Cut(s, " ")
	*p = a
	v, err := strconv.Atoi(b)
	*o = v
	return 2, err
}

func TestJSONOutputRoundTrips(t *testing.T) {
	f := newFixture(t)
	f.fc.CreateTopic("j", 1)
	in := []*client.Record{
		{Topic: "j", Key: []byte("k"), Value: []byte("text \"quoted\"\n"), Headers: []client.Header{{Key: "h", Value: []byte("v")}, {Key: "h", Value: nil}}},
		{Topic: "j", Key: nil, Value: []byte{0xff, 0x00, 0x7f}},
		{Topic: "j", Key: []byte{}, Value: nil},
	}
	f.produce(t, in...)
	res := f.run(t, context.Background(), "-t", "j", "-o", "beginning", "-e", "--json")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("output %q", res.stdout)
	}
	if !strings.Contains(lines[1], `"value_b64":"/wB/"`) || !strings.Contains(lines[1], `"key":null`) {
		t.Fatalf("binary value line %s", lines[1])
	}
	for i, l := range lines {
		var r client.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %d %s: %v", i, l, err)
		}
		want := in[i]
		if r.Topic != "j" || r.Offset != int64(i) || r.Partition != 0 || !reflect.DeepEqual(r.Key, want.Key) || !reflect.DeepEqual(r.Value, want.Value) ||
			!reflect.DeepEqual(r.Headers, want.Headers) || !r.Timestamp.Equal(want.Timestamp.Truncate(time.Millisecond)) {
			t.Fatalf("line %d decodes to %+v, want %+v", i, r, want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestFollowUntilInterrupted(t *testing.T) {
	f := newFixture(t)
	f.fc.CreateTopic("live", 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-b", f.fc.Addrs()[0], "-t", "live"}, nil, &out, &errb) }()
	// Once it reads at the end (its fetch stream is open), records
	// produced are printed as they come.
	waitFor(t, "the fetch stream", func() bool { return f.fc.OpenStreams() > 0 })
	for _, v := range []string{"first", "second", "third"} {
		f.produce(t, &client.Record{Topic: "live", Value: []byte(v)})
	}
	waitFor(t, "the records on stdout", func() bool { return strings.Contains(out.String(), "third\n") })
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d after Ctrl-C: %s", code, errb.String())
	}
	if out.String() != "first\nsecond\nthird\n" {
		t.Fatalf("output %q", out.String())
	}
}

func TestErrors(t *testing.T) {
	f := newFixture(t)
	f.fc.CreateTopic("e", 2)
	f.produce(t, &client.Record{Topic: "e", Partition: 0, Value: []byte("x")})
	ctx := context.Background()
	res := f.run(t, ctx, "-t", "nope", "-e")
	if res.code != 1 || !strings.Contains(res.stderr, `topic "nope" does not exist`) {
		t.Errorf("unknown topic: exit %d: %s", res.code, res.stderr)
	}
	res = f.run(t, ctx, "-t", "e", "-p", "0,5", "-e")
	if res.code != 1 || !strings.Contains(res.stderr, "partition 5") || !strings.Contains(res.stderr, "0 to 1") {
		t.Errorf("unknown partition: exit %d: %s", res.code, res.stderr)
	}
	res = f.run(t, ctx, "-t", "e", "-p", "0", "-o", "50", "-e")
	if res.code != 1 || !strings.Contains(res.stderr, "valid offsets are 0 to 1") {
		t.Errorf("offset out of range: exit %d: %s", res.code, res.stderr)
	}
	for _, args := range [][]string{
		{"-t", "e", "-o", "soon"},
		{"-t", "e", "-p", "x"},
		{"-t", "e", "-f", "%z"},
		{"-t", "e", "-f", "%v", "--json"},
		{"-t", "e", "-c", "-1"},
		{"-t", "e", "--stats", "yaml"},
		{"-o", "beginning"},
		{"-t", "e", "--bogus"},
	} {
		res := f.run(t, ctx, args...)
		if res.code != 2 || !strings.Contains(res.stderr, "Usage: consume") {
			t.Errorf("%v: exit %d: %s", args, res.code, res.stderr)
		}
	}
	res = f.run(t, ctx, "-h")
	if res.code != 0 || !strings.Contains(res.stderr, "Usage: consume") {
		t.Errorf("-h: exit %d", res.code)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
