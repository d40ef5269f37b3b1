package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/skeinlog/skein/internal/proctest"
)

// kcatPath finds kcat; CI installs it, so there a missing kcat fails.
func kcatPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("kcat is not installed (.ci/run installs the kcat package)")
		}
		t.Skip("kcat not installed")
	}
	return p
}

func kcat(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcatPath(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("kcat %v: %v\n%s", args, err, stderr)
	}
	return string(out)
}

func kgoClient(t *testing.T, seeds []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// kcat against a broker process: topics made and removed with kadm, -L
// metadata, produce with keys and headers in every codec librdkafka has,
// and the log read back by kcat and by Skein's consume, which must print
// exactly the same records (offsets, keys, values, headers, timestamps),
// including the ones Skein's produce wrote over gRPC.
func TestKafkaKcat(t *testing.T) {
	kcatPath(t)
	b := proctest.StartBroker(t, t.TempDir(), "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm := kadm.NewClient(kgoClient(t, []string{b.KafkaAddr}))
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "demo"); err != nil {
		t.Fatalf("kadm create: %v", err)
	}
	if td, err := adm.ListTopics(ctx); err != nil || !td.Has("demo") {
		t.Fatalf("kadm list: %v %v", td.Names(), err)
	}

	var md struct {
		Brokers []struct {
			ID   int32  `json:"id"`
			Name string `json:"name"`
		} `json:"brokers"`
		Topics []struct {
			Topic      string `json:"topic"`
			Partitions []struct {
				Partition int32 `json:"partition"`
				Leader    int32 `json:"leader"`
				Replicas  []struct {
					ID int32 `json:"id"`
				} `json:"replicas"`
				ISRs []struct {
					ID int32 `json:"id"`
				} `json:"isrs"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	if err := json.Unmarshal([]byte(kcat(t, "", "-b", b.KafkaAddr, "-L", "-J")), &md); err != nil {
		t.Fatal(err)
	}
	if len(md.Brokers) != 1 || md.Brokers[0].ID != 1 || !strings.HasPrefix(md.Brokers[0].Name, b.KafkaAddr) {
		t.Fatalf("kcat -L brokers: %+v (listener %s)", md.Brokers, b.KafkaAddr)
	}
	i := slices.IndexFunc(md.Topics, func(x struct {
		Topic      string `json:"topic"`
		Partitions []struct {
			Partition int32 `json:"partition"`
			Leader    int32 `json:"leader"`
			Replicas  []struct {
				ID int32 `json:"id"`
			} `json:"replicas"`
			ISRs []struct {
				ID int32 `json:"id"`
			} `json:"isrs"`
		} `json:"partitions"`
	}) bool {
		return x.Topic == "demo"
	})
	if i < 0 || len(md.Topics[i].Partitions) != 2 || md.Topics[i].Partitions[1].Leader != 1 ||
		len(md.Topics[i].Partitions[1].Replicas) != 1 || len(md.Topics[i].Partitions[1].ISRs) != 1 {
		t.Fatalf("kcat -L topics: %+v", md.Topics)
	}

	var want []string
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		var in strings.Builder
		for j := 0; j < 20; j++ {
			fmt.Fprintf(&in, "%s-%d:value %s %d %s\n", codec, j, codec, j, strings.Repeat("x", j*10))
		}
		kcat(t, in.String(), "-P", "-b", b.KafkaAddr, "-t", "demo", "-p", "1", "-K:", "-H", "codec="+codec, "-H", "n=1", "-z", codec)
		for j := 0; j < 20; j++ {
			want = append(want, fmt.Sprintf("%d|%s-%d|value %s %d %s|codec=%s,n=1", len(want), codec, j, codec, j, strings.Repeat("x", j*10), codec))
		}
	}
	// Records written over gRPC with Skein's produce, read through Kafka.
	proctest.MustCLI(t, "produce", "g-0:grpc zero\ng-1:grpc one\n", "-t", "demo", "-p", "1", "-b", b.Addr, "-K", ":", "-H", "via=grpc")
	want = append(want, fmt.Sprintf("%d|g-0|grpc zero|via=grpc", len(want)), fmt.Sprintf("%d|g-1|grpc one|via=grpc", len(want)+1))

	kout := kcat(t, "", "-C", "-b", b.KafkaAddr, "-t", "demo", "-p", "1", "-o", "beginning", "-e", "-q", "-f", `%o|%k|%s|%h|%T\n`)
	sout := proctest.MustCLI(t, "consume", "", "-t", "demo", "-p", "1", "-b", b.Addr, "-o", "beginning", "-e", "-f", `%o|%k|%v|%h|%T\n`).Stdout
	klines := strings.Split(strings.TrimSuffix(kout, "\n"), "\n")
	if len(klines) != len(want) {
		t.Fatalf("kcat read %d records, want %d:\n%s", len(klines), len(want), kout)
	}
	for j, l := range klines {
		withoutTS := l[:strings.LastIndex(l, "|")]
		if withoutTS != want[j] {
			t.Fatalf("record %d: kcat read %q, want %q", j, withoutTS, want[j])
		}
		if ts, err := strconv.ParseInt(l[strings.LastIndex(l, "|")+1:], 10, 64); err != nil || time.Since(time.UnixMilli(ts)) > 10*time.Minute {
			t.Fatalf("record %d: timestamp in %q", j, l)
		}
	}
	if sout != kout {
		t.Fatalf("Skein's consume and kcat read different records:\nconsume:\n%s\nkcat:\n%s", sout, kout)
	}

	if _, err := adm.DeleteTopic(ctx, "demo"); err != nil {
		t.Fatalf("kadm delete: %v", err)
	}
	if strings.Contains(kcat(t, "", "-b", b.KafkaAddr, "-L"), `topic "demo"`) {
		t.Fatal("kcat -L still lists the deleted topic")
	}
}

// A franz-go idempotent producer (acks all) keeps producing while the
// partition's leader is killed (kill -9, batches in flight) in a
// three-broker cluster: every record is stored exactly once, in order, and
// franz-go reads them back from the new leader.
func TestKafkaIdempotentProducerAcrossLeaderKill(t *testing.T) {
	c := proctest.StartCluster(t, 3)
	var seeds []string
	for _, id := range c.IDs {
		seeds = append(seeds, c.Brokers[id].KafkaAddr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	adm := kadm.NewClient(kgoClient(t, seeds))
	if _, err := adm.CreateTopic(ctx, 1, 3, nil, "idem"); err != nil {
		t.Fatal(err)
	}
	c.WaitHealthy(30 * time.Second)
	leader := func() int32 {
		td, err := adm.ListTopics(ctx, "idem")
		if err != nil || !td.Has("idem") {
			return -1
		}
		return td["idem"].Partitions[0].Leader
	}
	prod := kgoClient(t, seeds, kgo.DefaultProduceTopic("idem"), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(time.Millisecond), kgo.RetryTimeout(time.Minute))
	const n = 3000
	errs := make(chan error, n)
	killed := int32(-1)
	// The producer id first, as a running application has it.
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("0")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		if i%10 == 0 {
			time.Sleep(time.Millisecond) // spread the records over the kill
		}
		prod.Produce(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}, func(r *kgo.Record, err error) {
			if err != nil {
				errs <- fmt.Errorf("record %s: %w", r.Value, err)
			}
		})
		if i == n/3 {
			// Kill with batches in flight: some may be on the old
			// leader's followers unacknowledged; franz-go retries them
			// at the new leader, which must not write them twice.
			killed = leader()
			if killed < 0 {
				t.Fatal("no leader")
			}
			c.Brokers[killed].Kill()
		}
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if l := leader(); l == killed || l < 0 {
		t.Fatalf("leader after the kill: %d (killed %d)", l, killed)
	}
	cons := kgoClient(t, seeds, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"idem": {0: kgo.NewOffset().AtStart()}}))
	var got []*kgo.Record
	for len(got) < n && ctx.Err() == nil {
		fs := cons.PollRecords(ctx, n)
		got = append(got, fs.Records()...)
	}
	if len(got) != n {
		t.Fatalf("read %d records, want %d", len(got), n)
	}
	for i, r := range got {
		if string(r.Value) != strconv.Itoa(i) || r.Offset != int64(i) {
			t.Fatalf("offset %d holds %q (offset %d): want record %d exactly once, in order", i, r.Value, r.Offset, i)
		}
	}
	// Nothing more than the n records.
	ends, err := adm.ListEndOffsets(ctx, "idem")
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := ends.Lookup("idem", 0); e.Offset != n {
		t.Fatalf("end offset %d, want %d", e.Offset, n)
	}
}

// jsonRec is one line of `consume --json` (and of `produce --json` input).
type jsonRec struct {
	Offset    int64       `json:"offset"`
	Timestamp int64       `json:"timestamp"`
	Key       *string     `json:"key"`
	Value     string      `json:"value"`
	Headers   [][2]string `json:"headers"`
}

// Cross-API reads between processes: records written with Skein's produce
// (gRPC, explicit timestamps, keys, headers) read with a franz-go consumer,
// and records written with a franz-go producer read with Skein's consume:
// the same offsets, keys, values, headers and timestamps either way.
func TestKafkaCrossAPIReads(t *testing.T) {
	b := proctest.StartBroker(t, t.TempDir(), "")
	proctest.MustCLI(t, "broker", "", "topic", "create", "x", "--brokers", b.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := time.Now().Add(-time.Hour).UnixMilli()
	var want []jsonRec
	var in strings.Builder
	for i := 0; i < 20; i++ {
		k := fmt.Sprintf("g%d", i)
		r := jsonRec{Offset: int64(i), Timestamp: base + int64(i), Key: &k, Value: fmt.Sprintf("grpc %d", i), Headers: [][2]string{{"via", "grpc"}, {"i", strconv.Itoa(i)}}}
		line, _ := json.Marshal(r)
		in.Write(line)
		in.WriteByte('\n')
		want = append(want, r)
	}
	proctest.MustCLI(t, "produce", in.String(), "-t", "x", "-p", "0", "-b", b.Addr, "--json")

	prod := kgoClient(t, []string{b.KafkaAddr}, kgo.DefaultProduceTopic("x"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i := 20; i < 40; i++ {
		k := fmt.Sprintf("k%d", i)
		r := &kgo.Record{Key: []byte(k), Value: []byte(fmt.Sprintf("kafka %d", i)), Timestamp: time.UnixMilli(base + int64(i)),
			Headers: []kgo.RecordHeader{{Key: "via", Value: []byte("kafka")}, {Key: "i", Value: []byte(strconv.Itoa(i))}}}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if r.Offset != int64(i) {
			t.Fatalf("kafka produce acknowledged offset %d, want %d", r.Offset, i)
		}
		want = append(want, jsonRec{Offset: int64(i), Timestamp: base + int64(i), Key: &k, Value: string(r.Value), Headers: [][2]string{{"via", "kafka"}, {"i", strconv.Itoa(i)}}})
	}

	// Skein's consume (gRPC).
	out := proctest.MustCLI(t, "consume", "", "-t", "x", "-b", b.Addr, "-o", "beginning", "-e", "--json").Stdout
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(want) {
		t.Fatalf("consume read %d records, want %d", len(lines), len(want))
	}
	for i, l := range lines {
		var g jsonRec
		if err := json.Unmarshal([]byte(l), &g); err != nil {
			t.Fatal(err)
		}
		if !sameRec(g, want[i]) {
			t.Fatalf("consume record %d: %+v, want %+v", i, g, want[i])
		}
	}
	// franz-go (Kafka).
	cons := kgoClient(t, []string{b.KafkaAddr}, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"x": {0: kgo.NewOffset().AtStart()}}))
	var got []*kgo.Record
	for len(got) < len(want) && ctx.Err() == nil {
		got = append(got, cons.PollFetches(ctx).Records()...)
	}
	if len(got) != len(want) {
		t.Fatalf("franz-go read %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		k := string(r.Key)
		g := jsonRec{Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(), Key: &k, Value: string(r.Value)}
		for _, h := range r.Headers {
			g.Headers = append(g.Headers, [2]string{h.Key, string(h.Value)})
		}
		if !sameRec(g, want[i]) {
			t.Fatalf("franz-go record %d: %+v, want %+v", i, g, want[i])
		}
	}
}

func sameRec(a, b jsonRec) bool {
	return a.Offset == b.Offset && a.Timestamp == b.Timestamp && a.Key != nil && b.Key != nil && *a.Key == *b.Key &&
		a.Value == b.Value && slices.Equal(a.Headers, b.Headers)
}

// Three franz-go consumers in one group (the broker assigns, KIP-848) read
// a six-partition topic on a three-broker cluster while records are
// produced; one consumer is stopped midway. Nothing is lost (every record
// is consumed), and the group's committed offsets, polled all along, never
// go backwards.
func TestKafkaConsumerGroupMemberLost(t *testing.T) { groupMemberLost(t, kgo.ServerSideBalancer()) }

// The same with the classic protocol: franz-go's default balancers, the
// leader member assigning on the client side.
func TestKafkaClassicGroupMemberLost(t *testing.T) {
	groupMemberLost(t, kgo.SessionTimeout(6*time.Second))
}

func groupMemberLost(t *testing.T, protocol kgo.Opt) {
	c := proctest.StartCluster(t, 3)
	var seeds []string
	for _, id := range c.IDs {
		seeds = append(seeds, c.Brokers[id].KafkaAddr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm := kadm.NewClient(kgoClient(t, seeds))
	if _, err := adm.CreateTopic(ctx, 6, 3, nil, "grp"); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	seen := make(chan string, 4*n)
	var members []*kgo.Client
	for i := 0; i < 3; i++ {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumerGroup("g1"), kgo.ConsumeTopics("grp"), protocol,
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, cl)
		done := make(chan struct{})
		t.Cleanup(func() { cl.Close(); <-done })
		go func() {
			defer close(done)
			for ctx.Err() == nil {
				fs := cl.PollFetches(ctx)
				if fs.IsClientClosed() {
					return
				}
				fs.EachRecord(func(r *kgo.Record) { seen <- string(r.Value) })
				cl.CommitUncommittedOffsets(ctx) // a failed commit is retried with the next one
			}
		}()
	}
	// Committed offsets, polled: never lower than seen before.
	backwards := make(chan string, 1)
	pollDone := make(chan struct{})
	stopPoll := make(chan struct{})
	go func() {
		defer close(pollDone)
		high := map[int32]int64{}
		for {
			select {
			case <-stopPoll:
				return
			case <-time.After(50 * time.Millisecond):
			}
			offs, err := adm.FetchOffsets(ctx, "g1")
			if err != nil {
				continue
			}
			offs.Each(func(o kadm.OffsetResponse) {
				if o.Err == nil && o.At < high[o.Partition] {
					select {
					case backwards <- fmt.Sprintf("partition %d: committed %d after %d", o.Partition, o.At, high[o.Partition]):
					default:
					}
				}
				high[o.Partition] = max(high[o.Partition], o.At)
			})
		}
	}()
	prod := kgoClient(t, seeds, kgo.DefaultProduceTopic("grp"))
	got := map[string]bool{}
	for i := 0; i < n; i++ {
		prod.Produce(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
		if i == n/2 {
			members[0].Close() // leaves the group; its partitions move
		}
		if i%100 == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for len(got) < n {
		select {
		case v := <-seen:
			got[v] = true
		case <-ctx.Done():
			t.Fatalf("consumed %d distinct records of %d", len(got), n)
		}
	}
	close(stopPoll)
	<-pollDone
	select {
	case msg := <-backwards:
		t.Fatalf("a committed offset went backwards: %s", msg)
	default:
	}
}
