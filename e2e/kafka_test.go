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

// A franz-go idempotent producer (acks all) keeps producing, one record
// after another, while the partition's leader is killed (kill -9) in a
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
	for i := 0; i < n; i++ {
		prod.Produce(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}, func(r *kgo.Record, err error) {
			if err != nil {
				errs <- fmt.Errorf("record %s: %w", r.Value, err)
			}
		})
		if i == n/3 {
			if err := prod.Flush(ctx); err != nil {
				t.Fatal(err)
			}
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
