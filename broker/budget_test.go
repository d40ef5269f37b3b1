package broker_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/cluster"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// metric returns the text of one metric line from /metrics.
func metric(t testing.TB, httpAddr, prefix string) string {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// heldBudget is the in-flight budget of heldTopic's broker.
const heldBudget = 256 << 10

// heldTopic starts a broker with a 256 KiB in-flight budget and a topic
// "held" of four 60 KiB batches.
func heldTopic(t *testing.T) (*brokertest.Broker, pb.SkeinClient) {
	t.Helper()
	b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) {
		c.MaxRequestBytes, c.MaxInflightBytes = heldBudget, heldBudget
		c.TopicDefaults = cluster.DefaultDefaults()
		c.TopicDefaults.MaxRecordBytes = 128 << 10
	}))
	c := dial(t, b.Addr())
	createTopic(t, c, "held", 1)
	for range 4 {
		if _, err := c.Produce(context.Background(), &pb.ProduceRequest{Topic: "held", LeaderEpoch: -1, Batch: mkBatchSized(t, 60<<10)}); err != nil {
			t.Fatal(err)
		}
	}
	return b, c
}

// slowConn has a fixed 64 KiB window: the client takes no more than that
// unread.
func slowConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	slow, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slow.Close() })
	return slow
}

// A consumer that stops reading keeps what was sent to it in the broker's
// memory; that counts against the in-flight budget, and once the budget is
// used up a produce waits briefly, then is refused with RESOURCE_EXHAUSTED,
// reason UNAVAILABLE (so clients retry) and a retry hint. When the reader
// goes away the budget is free again.
func TestInflightBudgetRefusesThenRecovers(t *testing.T) {
	const budget = heldBudget
	b, c := heldTopic(t)
	slow := slowConn(t, b.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := pb.NewSkeinClient(slow).Fetch(ctx, &pb.FetchRequest{Topic: "held", LeaderEpoch: -1, MaxBytes: budget}); err != nil {
		t.Fatal(err)
	}
	inflight := func() string { return metric(t, b.HTTPAddr(), "skein_inflight_bytes ") }
	deadline := time.Now().Add(10 * time.Second)
	for inflight() == "skein_inflight_bytes 0" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	_, err := c.Produce(context.Background(), &pb.ProduceRequest{Topic: "held", LeaderEpoch: -1, Batch: mkBatchSized(t, 60<<10)})
	code, d := detail(t, err)
	if code != codes.ResourceExhausted || d == nil || d.Reason != pb.ErrorReason_UNAVAILABLE || d.RetryAfterMs <= 0 ||
		!strings.Contains(d.Message, "--max-inflight-bytes") {
		t.Fatalf("produce over the budget (%s): %v, detail %v", inflight(), err, d)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Fatalf("refused after %v without waiting", waited)
	}
	if got := metric(t, b.HTTPAddr(), `skein_refused_requests_total{reason="inflight_bytes"}`); !strings.HasSuffix(got, " 1") {
		t.Fatalf("refused metric: %q", got)
	}
	if got := metric(t, b.HTTPAddr(), "skein_inflight_bytes_limit "); got != "skein_inflight_bytes_limit 262144" {
		t.Fatalf("limit metric: %q", got)
	}
	cancel()
	deadline = time.Now().Add(10 * time.Second)
	for inflight() != "skein_inflight_bytes 0" {
		if time.Now().After(deadline) {
			t.Fatalf("budget not given back after the reader left: %s", inflight())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.Produce(context.Background(), &pb.ProduceRequest{Topic: "held", LeaderEpoch: -1, Batch: mkBatchSized(t, 60<<10)}); err != nil {
		t.Fatalf("produce after the reader left: %v", err)
	}
	if got := len(fetchAll(t, c, "held", 0, 0)); got != 5 {
		t.Fatalf("read %d records, want 5", got)
	}
}

// Readers that stop reading hold at most the fetch share of the in-flight
// budget (three quarters), so a producer still gets room beside them.
func TestUnreadFetchesLeaveRoomForProduce(t *testing.T) {
	b, c := heldTopic(t)
	slow := slowConn(t, b.Addr())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Eight readers asking for 64 KiB each, from each batch: together
	// they would hold the whole budget twice over.
	for i := range 8 {
		if _, err := pb.NewSkeinClient(slow).Fetch(ctx, &pb.FetchRequest{Topic: "held", Offset: int64(i % 4), LeaderEpoch: -1, MaxBytes: 64 << 10}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, b.HTTPAddr(), "skein_inflight_bytes ") == "skein_inflight_bytes 0" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the readers that got no room were refused
	for i := range 3 {
		if _, err := c.Produce(context.Background(), &pb.ProduceRequest{Topic: "held", LeaderEpoch: -1, Batch: mkBatchSized(t, 50<<10)}); err != nil {
			t.Fatalf("produce %d beside unread fetches (%s): %v", i, metric(t, b.HTTPAddr(), "skein_inflight_bytes "), err)
		}
	}
}

// One connection gets at most MaxStreamsPerConn calls at once; a further
// one waits until one ends.
func TestStreamsPerConnectionLimit(t *testing.T) {
	b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) { c.MaxStreamsPerConn = 2 }))
	c := dial(t, b.Addr())
	createTopic(t, c, "s", 1)
	open := func(ctx context.Context) (pb.Skein_FetchClient, error) {
		st, err := c.Fetch(ctx, &pb.FetchRequest{Topic: "s", LeaderEpoch: -1, MaxWaitMs: 30000})
		if err != nil {
			return nil, err
		}
		_, err = st.Recv() // the first answer: caught up
		return st, err
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	for range 2 {
		if _, err := open(ctx1); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := open(short); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("third stream on a connection limited to 2: %v", err)
	}
	cancel1()
	ctx3, cancel3 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel3()
	if _, err := open(ctx3); err != nil {
		t.Fatalf("after the others ended: %v", err)
	}
}

// The figures operators alert on are on /metrics: the controller's state,
// partitions led and their health, disk space, and request latency per API.
func TestOperatorMetrics(t *testing.T) {
	b := brokertest.Start(t)
	c := newClient(t, []string{b.Addr()})
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, "ops", client.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	p, err := c.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ProduceSync(ctx, &client.Record{Topic: "ops", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	for prefix, want := range map[string]string{
		"skein_controller_active ":                       "skein_controller_active 1",
		"skein_leader_partitions ":                       "skein_leader_partitions 2",
		"skein_under_replicated_partitions":              "skein_under_replicated_partitions 0",
		"skein_offline_partitions":                       "skein_offline_partitions 0",
		`skein_request_seconds_count{api="produce"}`:     `skein_request_seconds_count{api="produce"} 1`,
		`skein_request_seconds_count{api="CreateTopic"}`: `skein_request_seconds_count{api="CreateTopic"} 1`,
	} {
		if got := metric(t, b.HTTPAddr(), prefix); got != want {
			t.Errorf("metric %q: got %q, want %q", prefix, got, want)
		}
	}
	for _, prefix := range []string{"skein_disk_free_bytes ", "skein_controller_raft_term ", "skein_controller_applied_index "} {
		if got := metric(t, b.HTTPAddr(), prefix); got == "" || strings.HasSuffix(got, " 0") {
			t.Errorf("metric %q: got %q, want a positive value", prefix, got)
		}
	}
}
