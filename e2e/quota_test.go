package e2e

import (
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// pacedProducer produces value-sized records to topic as client id at
// about rate bytes/s for d, and returns the acknowledged bytes by the time
// (since start) they were acknowledged.
func pacedProducer(t *testing.T, addr, clientID, topic string, rate float64, d time.Duration) func(from, to time.Duration) float64 {
	t.Helper()
	cl, err := client.New(client.Brokers(addr), client.ClientID(clientID))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// A small buffer: Produce blocks when it is full, so what is queued
	// (and flushed by Close) stays small.
	p, err := cl.NewProducer(client.Linger(5*time.Millisecond), client.BatchMaxBytes(256<<10), client.MaxBufferedBytes(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	const size = 16 << 10
	var mu sync.Mutex
	type ack struct{ at time.Duration }
	var acks []ack
	start := time.Now()
	val := []byte(strings.Repeat("q", size))
	for sent := 0.0; time.Since(start) < d; {
		// Pace to rate: send what is due, then sleep a little.
		// Produce blocks while the buffer is full: stop at d all the same.
		for due := rate * time.Since(start).Seconds(); sent < due && time.Since(start) < d; sent += size {
			p.Produce(context.Background(), &client.Record{Topic: topic, Value: val}, func(_ *client.Record, err error) {
				if err == nil {
					mu.Lock()
					acks = append(acks, ack{time.Since(start)})
					mu.Unlock()
				}
			})
		}
		time.Sleep(10 * time.Millisecond)
	}
	// What was not acknowledged by now is not counted.
	end := time.Since(start)
	p.Close()
	t.Logf("%s: closed %v after the end", clientID, time.Since(start)-end)
	mu.Lock()
	defer mu.Unlock()
	return func(from, to time.Duration) float64 {
		n := 0
		for _, a := range acks {
			if a.at >= from && a.at < to && a.at <= end {
				n++
			}
		}
		return float64(n*size) / (to - from).Seconds()
	}
}

// metricValue returns the value of the first series of a metric whose line
// contains all of labels.
func metricValue(t *testing.T, httpAddr, name string, labels ...string) (float64, bool) {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + name + `\{([^}]*)\} (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(m[1], l)
		}
		if ok {
			v, _ := strconv.ParseFloat(m[2], 64)
			return v, true
		}
	}
	return 0, false
}

// A producer sending at 10 times its client id's quota is held to the
// quota, measured over 5 s; a producer under another client id is not;
// the quota shows in metrics and survives a restart.
func TestProduceQuotaHoldsAGreedyClient(t *testing.T) {
	const quota = 1 << 20 // 1 MiB/s
	b := proctest.StartBroker(t, t.TempDir(), "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := client.New(client.Brokers(b.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, topic := range []string{"greedy", "calm"} {
		if _, err := cl.CreateTopic(ctx, topic, client.TopicConfig{Partitions: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.AlterQuota(ctx, client.QuotaEntity{ClientID: "greedy"}, client.QuotaLimits{ProduceBytesPerSec: quota}); err != nil {
		t.Fatal(err)
	}
	var greedy, calm func(from, to time.Duration) float64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		greedy = pacedProducer(t, b.Addr, "greedy", "greedy", 10*quota, 7*time.Second)
	}()
	go func() { defer wg.Done(); calm = pacedProducer(t, b.Addr, "calm", "calm", 3*quota, 7*time.Second) }()
	wg.Wait()
	g, c := greedy(2*time.Second, 7*time.Second), calm(2*time.Second, 7*time.Second)
	t.Logf("over 2-7 s: greedy (quota %d B/s, sending 10x) %.0f B/s; calm (no quota, sending 3x) %.0f B/s", quota, g, c)
	if g < 0.5*quota || g > 1.5*quota {
		t.Errorf("greedy client acknowledged at %.0f B/s, want its quota %d ±50%%", g, quota)
	}
	if c < 2*quota {
		t.Errorf("calm client (no quota) acknowledged at %.0f B/s, want about its %d B/s", c, 3*quota)
	}
	if v, ok := metricValue(t, b.HTTPAddr, "skein_quota_throttle_seconds_total", `client_id="greedy"`, `kind="produce"`); !ok || v <= 0 {
		t.Errorf("skein_quota_throttle_seconds_total for greedy: %v (found %v), want > 0", v, ok)
	}
	if _, ok := metricValue(t, b.HTTPAddr, "skein_quota_rate", `client_id="calm"`); ok {
		t.Error("a client without a quota has a quota bucket")
	}

	// After a restart the quota still holds: a 2 MiB produce at 1 MiB/s
	// is answered after about a second, and says so.
	t0 := time.Now()
	b.Kill()
	b.Restart()
	t.Logf("restart took %v", time.Since(t0))
	conn := rawConn(t, b.Addr)
	data := bigBatch(t, 3, 700<<10) // 2.1 MB
	began := time.Now()
	var trailer metadata.MD
	resp, err := pb.NewSkeinClient(conn).Produce(metadata.AppendToOutgoingContext(ctx, client.ClientIDHeader, "greedy"),
		&pb.ProduceRequest{Topic: "greedy", LeaderEpoch: -1, Batch: data}, grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	if resp.ThrottleTimeMs < 500 || took < 500*time.Millisecond || len(trailer.Get("skein-throttle-ms")) != 1 {
		t.Fatalf("after a restart: throttle %d ms, trailer %v, answered after %v; want about 1 s", resp.ThrottleTimeMs, trailer, took)
	}
}

func bigBatch(t *testing.T, n, size int) []byte {
	t.Helper()
	bb := batch.NewBuilder(batch.None)
	for range n {
		bb.Add(&batch.Record{Timestamp: time.Now().UnixMilli(), Value: make([]byte, size)})
	}
	data, err := bb.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// A consumer over its fetch quota is slowed to it, and still gets every
// record.
func TestFetchQuotaSlowsAConsumer(t *testing.T) {
	const quota = 1 << 20
	b := proctest.StartBroker(t, t.TempDir(), "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := rawConn(t, b.Addr)
	c := pb.NewSkeinClient(conn)
	if _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "reads", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	fillPartition(t, c, "reads", 64, 64<<10) // 4 MiB
	admin, err := client.New(client.Brokers(b.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.AlterQuota(ctx, client.QuotaEntity{ClientID: "reader"}, client.QuotaLimits{FetchBytesPerSec: quota}); err != nil {
		t.Fatal(err)
	}
	read := func(clientID string) (time.Duration, int) {
		cl, err := client.New(client.Brokers(b.Addr), client.ClientID(clientID))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		k, err := cl.NewConsumer()
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		if err := k.Assign(ctx, "reads", []int32{0}, client.Beginning()); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		for n := 0; ; {
			if _, err := k.Next(ctx); err != nil {
				t.Fatalf("%s: after %d records: %v", clientID, n, err)
			}
			if n++; n == 64 {
				return time.Since(began), n
			}
		}
	}
	free, _ := read("free")
	slow, n := read("reader")
	t.Logf("4 MiB read in %v without a quota, %v at a fetch quota of 1 MiB/s (%d records)", free, slow, n)
	// 4 MiB at 1 MiB/s: the first second's worth is free, the rest waits.
	if slow < 2*time.Second {
		t.Fatalf("a consumer at a 1 MiB/s fetch quota read 4 MiB in %v", slow)
	}
	if v, ok := metricValue(t, b.HTTPAddr, "skein_quota_throttle_seconds_total", `client_id="reader"`, `kind="fetch"`); !ok || v <= 0 {
		t.Errorf("fetch throttle metric %v (found %v)", v, ok)
	}
}

// A Kafka client over its produce quota sees throttle_time_ms in its
// answers (franz-go reports it to its throttle hook and waits it out).
func TestKafkaClientSeesThrottleTime(t *testing.T) {
	b := proctest.StartBroker(t, t.TempDir(), "", "--kafka-addr", "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := client.New(client.Brokers(b.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.CreateTopic(ctx, "kq", client.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if err := admin.AlterQuota(ctx, client.QuotaEntity{ClientID: "kgreedy"}, client.QuotaLimits{ProduceBytesPerSec: 256 << 10}); err != nil {
		t.Fatal(err)
	}
	hook := &throttleHook{}
	kc := kgoClient(t, []string{b.KafkaAddr}, kgo.ClientID("kgreedy"), kgo.WithHooks(hook), kgo.DefaultProduceTopic("kq"))
	val := make([]byte, 64<<10)
	rand.Read(val)      // incompressible: franz-go compresses batches
	for i := range 16 { // 1 MiB at 256 KiB/s
		if err := kc.ProduceSync(ctx, &kgo.Record{Value: val}).FirstErr(); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	t.Logf("throttles seen: %d, longest %v, total %v", hook.n, hook.longest, hook.total)
	if hook.n == 0 || hook.total < time.Second {
		t.Fatalf("franz-go saw %d throttles of %v in all producing 1 MiB at 256 KiB/s, want at least 1 s", hook.n, hook.total)
	}
}

type throttleHook struct {
	mu      sync.Mutex
	n       int
	longest time.Duration
	total   time.Duration
}

func (h *throttleHook) OnBrokerThrottle(_ kgo.BrokerMetadata, d time.Duration, _ bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	h.total += d
	h.longest = max(h.longest, d)
}

var _ kgo.HookBrokerThrottle = (*throttleHook)(nil)
