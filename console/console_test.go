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
	ov, err := Build(context.Background(), threeBrokers(), time.UnixMilli(42), nil)
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
	ov, err := Build(context.Background(), src, time.UnixMilli(42), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ov.Totals.Brokers != 3 || ov.Totals.BrokersDown != 1 || len(ov.Brokers) != 3 || ov.Brokers[2].ID != 3 {
		t.Fatalf("brokers %+v, totals %+v", ov.Brokers, ov.Totals)
	}
}

func TestHandler(t *testing.T) {
	src := threeBrokers()
	srv := httptest.NewServer(Handler("/ui/", func() (Source, error) { return src, nil }, nil))
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

// viewer sees the topics in topics, and the cluster if cluster.
type viewer struct {
	cluster bool
	topics  map[string]bool
}

func (v viewer) Principal() string              { return "User:alice" }
func (v viewer) DescribeCluster() bool          { return v.cluster }
func (v viewer) DescribeTopic(name string) bool { return v.topics[name] }

// A viewer sees only the topics it may describe — not in the list, not in
// the problem partitions, not in the totals — and the cluster only with
// describe on it.
func TestBuildShowsOnlyWhatTheViewerMayDescribe(t *testing.T) {
	ov, err := Build(context.Background(), threeBrokers(), time.UnixMilli(42), viewer{cluster: true, topics: map[string]bool{"audit": true}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ov.Topics) != 1 || ov.Topics[0].Name != "audit" || ov.Totals.Topics != 1 || ov.Totals.Records != 0 || ov.Totals.UnderReplicated != 0 {
		t.Fatalf("topics %+v totals %+v", ov.Topics, ov.Totals)
	}
	if len(ov.Problems) != 0 || len(ov.Brokers) != 3 || ov.Principal != "User:alice" || ov.ClusterHidden {
		t.Fatalf("overview %+v", ov)
	}
	// Partition counts per broker come from the visible topics only.
	if b := ov.Brokers[0]; b.Leaders != 0 || b.Replicas != 0 {
		t.Fatalf("broker 1 counts a hidden topic: %+v", b)
	}

	ov, err = Build(context.Background(), threeBrokers(), time.UnixMilli(42), viewer{topics: map[string]bool{"orders": true}})
	if err != nil {
		t.Fatal(err)
	}
	if !ov.ClusterHidden || len(ov.Brokers) != 0 || len(ov.Problems) != 0 || ov.ClusterID != "" || ov.ControllerID != -1 || ov.AnsweredBy != -1 {
		t.Fatalf("cluster shown without describe on it: %+v", ov)
	}
	if len(ov.Topics) != 1 || ov.Topics[0].Name != "orders" || ov.Totals.Records != 157 {
		t.Fatalf("topics %+v", ov.Topics)
	}
}

// With a gate, nothing — not the page, not its files, not the overview —
// is served to a request the gate refuses, and the source is never asked.
func TestHandlerGate(t *testing.T) {
	src := threeBrokers()
	asked := 0
	gate := func(w http.ResponseWriter, r *http.Request) (Viewer, bool) {
		if r.Header.Get("X-Test-User") != "alice" {
			w.Header().Set("WWW-Authenticate", `Basic realm="skein"`)
			http.Error(w, "sign in", http.StatusUnauthorized)
			return nil, false
		}
		return viewer{topics: map[string]bool{"orders": true}}, true
	}
	srv := httptest.NewServer(Handler("/ui/", func() (Source, error) { asked++; return src, nil }, gate))
	defer srv.Close()
	get := func(path, user string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("X-Test-User", user)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	for _, path := range []string{"/ui/", "/ui/app.js", "/ui/api/overview", "/ui/missing.js"} {
		resp, _ := get(path, "")
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s without a user: %d, want 401 with a challenge", path, resp.StatusCode)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", path, cc)
		}
	}
	if asked != 0 {
		t.Fatalf("the source was asked %d times for refused requests", asked)
	}
	resp, body := get("/ui/api/overview", "alice")
	var ov Overview
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &ov) != nil || len(ov.Topics) != 1 || !ov.ClusterHidden || strings.Contains(body, "audit") {
		t.Fatalf("alice's overview: %d %q", resp.StatusCode, body)
	}
	// Not framed by another site (clickjacking).
	if resp.Header.Get("X-Frame-Options") != "DENY" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Fatalf("frame headers: %v", resp.Header)
	}
}
