package console

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
)

type fakeSource struct {
	cluster client.ClusterDescription
	topics  []client.TopicInfo
	desc    map[string]client.TopicDescription
	err     error
}

func (f *fakeSource) DescribeCluster(context.Context) (client.ClusterDescription, error) {
	return f.cluster, f.err
}
func (f *fakeSource) ListTopics(context.Context) ([]client.TopicInfo, error) { return f.topics, nil }
func (f *fakeSource) DescribeTopic(_ context.Context, name string) (client.TopicDescription, error) {
	d, ok := f.desc[name]
	if !ok {
		return d, errors.New("leader unreachable")
	}
	return d, nil
}

func status(p, leader int32, reps, isr []int32, hw, size int64) client.PartitionStatus {
	return client.PartitionStatus{PartitionInfo: client.PartitionInfo{Partition: p, Leader: leader, Replicas: reps, ISR: isr},
		HighWatermark: hw, LogEndOffset: hw, SizeBytes: size}
}

func threeBrokers() *fakeSource {
	all := []int32{1, 2, 3}
	return &fakeSource{
		cluster: client.ClusterDescription{ClusterID: "c1", ControllerID: 2, AnsweredBy: 1, Members: []client.ClusterMember{
			{ID: 1, Addr: "a:1", GossipState: "alive", QuorumRole: "voter"},
			{ID: 2, Addr: "a:2", GossipState: "alive", QuorumRole: "voter"},
			{ID: 3, Addr: "a:3", GossipState: "dead", Fenced: true, QuorumRole: "voter"},
		}, Problems: []client.PartitionProblem{{Topic: "orders", Partition: 1, Leader: 1, Replicas: all, ISR: []int32{1, 2}, Problem: "under-replicated"}}},
		topics: []client.TopicInfo{
			{Name: "orders", Config: client.TopicConfig{Partitions: 3, ReplicationFactor: 3, MinInsyncReplicas: 2, RetentionMs: -1}},
			{Name: "audit", Config: client.TopicConfig{Partitions: 1, ReplicationFactor: 1}},
		},
		desc: map[string]client.TopicDescription{"orders": {Status: []client.PartitionStatus{
			status(0, 1, all, all, 100, 1000),
			status(1, 1, all, []int32{1, 2}, 50, 500),
			status(2, -1, all, []int32{3}, 7, 70),
		}}},
	}
}

func TestBuildSumsTheCluster(t *testing.T) {
	ov, err := Build(context.Background(), threeBrokers(), time.UnixMilli(42))
	if err != nil {
		t.Fatal(err)
	}
	want := Totals{Brokers: 3, BrokersDown: 1, Topics: 2, Partitions: 4, UnderReplicated: 1, Leaderless: 1, Records: 157, SizeBytes: 1570}
	if ov.Totals != want {
		t.Fatalf("totals %+v\nwant %+v", ov.Totals, want)
	}
	// Topics sorted by name; one that cannot be described is listed without partitions.
	if ov.Topics[0].Name != "audit" || ov.Topics[0].Described || ov.Topics[1].Name != "orders" || len(ov.Topics[1].Parts) != 3 {
		t.Fatalf("topics %+v", ov.Topics)
	}
	if b := ov.Brokers[0]; b.Leaders != 2 || b.Replicas != 3 || b.Controller {
		t.Fatalf("broker 1: %+v", b)
	}
	if !ov.Brokers[1].Controller || ov.TimeMs != 42 || len(ov.Problems) != 1 {
		t.Fatalf("overview %+v", ov)
	}
}

// A decommissioned broker still gossiping until it is stopped is no
// broker of the cluster: not listed, not counted down.
func TestBuildLeavesOutDecommissioned(t *testing.T) {
	src := threeBrokers()
	src.cluster.Members = append(src.cluster.Members, client.ClusterMember{ID: 4, Addr: "a:4", GossipState: "alive", Decommissioned: true})
	ov, err := Build(context.Background(), src, time.UnixMilli(42))
	if err != nil {
		t.Fatal(err)
	}
	if ov.Totals.Brokers != 3 || ov.Totals.BrokersDown != 1 || len(ov.Brokers) != 3 || ov.Brokers[2].ID != 3 {
		t.Fatalf("brokers %+v, totals %+v", ov.Brokers, ov.Totals)
	}
}

func TestHandler(t *testing.T) {
	src := threeBrokers()
	srv := httptest.NewServer(Handler("/ui/", func() (Source, error) { return src, nil }))
	defer srv.Close()
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	resp, body := get("/ui/")
	if resp.StatusCode != 200 || !strings.Contains(body, `<table id="topics">`) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("page: %d %q", resp.StatusCode, body[:min(len(body), 200)])
	}
	for path, ctype := range map[string]string{"/ui/app.js": "javascript", "/ui/style.css": "text/css"} {
		if resp, _ := get(path); resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), ctype) {
			t.Errorf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	resp, body = get("/ui/api/overview")
	var ov Overview
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &ov) != nil || ov.Totals.Records != 157 {
		t.Fatalf("overview: %d %q", resp.StatusCode, body)
	}
	// Read-only: anything but GET and HEAD is refused.
	r, err := http.Post(srv.URL+"/ui/api/overview", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", r.StatusCode)
	}
	// A cluster that cannot be described: an error the page shows.
	src.err = errors.New("no controller")
	if resp, body := get("/ui/api/overview"); resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "no controller") {
		t.Fatalf("failing source: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get("/ui/missing.js"); resp.StatusCode != 404 {
		t.Fatalf("missing file: %d", resp.StatusCode)
	}
}
