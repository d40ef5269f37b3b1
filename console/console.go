// Package console serves Skein's web console: a read-only view of the
// cluster (brokers, controller, health), its topics (partitions, leaders,
// ISR, offsets, sizes, produce rates) and live charts of throughput and
// under-replicated partitions.
//
// The page is plain HTML, CSS and JavaScript embedded in the binary (no
// build step). Its data comes from one JSON endpoint, which the console
// fills by calling the same admin API the command-line tools use (Source,
// which *client.Client implements), so the console never has a second
// source of truth. The handler starts no goroutines; each request makes its
// admin calls under the request's context.
//
// With a Gate (security on) every request, the page's files included, is
// authenticated first, and the overview holds only what the request's
// Viewer may see: the cluster (brokers, controller, problem partitions)
// with describe on the cluster, and each topic with describe on it. The
// console changes nothing: every method but GET and HEAD is refused.
package console

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"sort"
	"time"

	"github.com/skeinlog/skein/client"
)

//go:embed static
var static embed.FS

// Source is the admin API the console reads.
type Source interface {
	DescribeCluster(ctx context.Context) (client.ClusterDescription, error)
	ListTopics(ctx context.Context) ([]client.TopicInfo, error)
	DescribeTopic(ctx context.Context, name string) (client.TopicDescription, error)
}

// MaxDetailedTopics bounds the topics whose partitions an overview
// describes one by one; the others are listed with their configuration only.
const MaxDetailedTopics = 200

// Viewer is what one authenticated request may see.
type Viewer interface {
	// Principal names who is looking (shown on the page), e.g. "User:alice".
	Principal() string
	// DescribeCluster reports whether the viewer may see the brokers, the
	// controller and the partitions needing attention.
	DescribeCluster() bool
	// DescribeTopic reports whether the viewer may see topic name.
	DescribeTopic(name string) bool
}

// Gate authenticates a request. It returns the request's Viewer, or writes
// the refusal (401 with a WWW-Authenticate challenge, 403) and returns
// false. A nil Gate lets everyone see everything (security off).
type Gate func(w http.ResponseWriter, r *http.Request) (Viewer, bool)

// Handler serves the console under prefix (e.g. "/ui/"): the page at
// prefix, its files below it, and the overview at prefix+"api/overview".
// src is asked lazily, per request, so it may connect on first use; it
// must see everything, as gate's Viewers are applied to what it answers.
func Handler(prefix string, src func() (Source, error), gate Gate) http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(static, "static")
	files := http.StripPrefix(prefix, http.FileServer(http.FS(sub)))
	mux.Handle(prefix, guard(gate, func(w http.ResponseWriter, r *http.Request, _ Viewer) { files.ServeHTTP(w, r) }))
	mux.Handle(prefix+"api/overview", guard(gate, func(w http.ResponseWriter, r *http.Request, v Viewer) {
		s, err := src()
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		ov, err := Build(ctx, s, time.Now(), v)
		if err != nil {
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, ov)
	}))
	return mux
}

// guard sets the console's headers, refuses every method but GET and HEAD
// (the console changes nothing) and, with a gate, every request the gate
// does not let through.
func guard(gate Gate, h func(http.ResponseWriter, *http.Request, Viewer)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		// Its own origin only, and never inside another site's frame.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Frame-Options", "DENY")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the console is read-only", http.StatusMethodNotAllowed)
			return
		}
		var v Viewer
		if gate != nil {
			w.Header().Set("Cache-Control", "no-store")
			var ok bool
			if v, ok = gate(w, r); !ok {
				return
			}
		}
		h(w, r, v)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// Overview is what the page shows, as one JSON document.
type Overview struct {
	TimeMs       int64     `json:"time_ms"`
	ClusterID    string    `json:"cluster_id"`
	ControllerID int32     `json:"controller_id"`
	AnsweredBy   int32     `json:"answered_by"`
	Brokers      []Broker  `json:"brokers"`
	Problems     []Problem `json:"problems"`
	Topics       []Topic   `json:"topics"`
	Totals       Totals    `json:"totals"`
	// Principal is who the overview was built for ("" with security off).
	Principal string `json:"principal,omitempty"`
	// ClusterHidden: the principal may not describe the cluster, so
	// brokers, controller and problem partitions are left out.
	ClusterHidden bool `json:"cluster_hidden,omitempty"`
}

// Broker is one member of the cluster.
type Broker struct {
	ID         int32  `json:"id"`
	Addr       string `json:"addr"`
	Rack       string `json:"rack"`
	Gossip     string `json:"gossip"`
	Fenced     bool   `json:"fenced"`
	Quorum     string `json:"quorum"`
	Controller bool   `json:"controller"`
	Leaders    int    `json:"leaders"`
	Replicas   int    `json:"replicas"`
}

// Problem is a partition that needs attention.
type Problem struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Leader    int32   `json:"leader"`
	Replicas  []int32 `json:"replicas"`
	ISR       []int32 `json:"isr"`
	Problem   string  `json:"problem"`
}

// Topic is one topic with its partitions' state (when described).
type Topic struct {
	Name              string      `json:"name"`
	Partitions        int32       `json:"partitions"`
	ReplicationFactor int32       `json:"replication_factor"`
	MinInsync         int32       `json:"min_insync"`
	RetentionMs       int64       `json:"retention_ms"`
	RetentionBytes    int64       `json:"retention_bytes"`
	Described         bool        `json:"described"`
	Records           int64       `json:"records"` // sum of high watermarks: records ever committed
	SizeBytes         int64       `json:"size_bytes"`
	UnderReplicated   int         `json:"under_replicated"`
	Leaderless        int         `json:"leaderless"`
	Parts             []Partition `json:"parts,omitempty"`
}

// Partition is one partition's placement and offsets.
type Partition struct {
	Partition     int32   `json:"partition"`
	Leader        int32   `json:"leader"`
	Epoch         int32   `json:"epoch"`
	Replicas      []int32 `json:"replicas"`
	ISR           []int32 `json:"isr"`
	LogStart      int64   `json:"log_start"`
	HighWatermark int64   `json:"high_watermark"`
	LogEnd        int64   `json:"log_end"`
	SizeBytes     int64   `json:"size_bytes"`
	Error         string  `json:"error,omitempty"`
}

// Totals sum the overview.
type Totals struct {
	Brokers         int   `json:"brokers"`
	BrokersDown     int   `json:"brokers_down"`
	Topics          int   `json:"topics"`
	Partitions      int   `json:"partitions"`
	UnderReplicated int   `json:"under_replicated"`
	Leaderless      int   `json:"leaderless"`
	Records         int64 `json:"records"`
	SizeBytes       int64 `json:"size_bytes"`
}

// Build asks src for the cluster and its topics and assembles the
// overview v may see (everything when v is nil). A topic that cannot be
// described is listed without its partitions; only a cluster that cannot
// be described fails it.
func Build(ctx context.Context, src Source, now time.Time, v Viewer) (Overview, error) {
	ov := Overview{TimeMs: now.UnixMilli(), ControllerID: -1, AnsweredBy: -1, Brokers: []Broker{}, Problems: []Problem{}, Topics: []Topic{}}
	index := map[int32]int{}
	if v != nil {
		ov.Principal = v.Principal()
	}
	if v == nil || v.DescribeCluster() {
		if err := addCluster(ctx, src, &ov, index, v); err != nil {
			return Overview{}, err
		}
	} else {
		ov.ClusterHidden = true
	}
	topics, err := src.ListTopics(ctx)
	if err != nil {
		return Overview{}, err
	}
	sort.Slice(topics, func(i, j int) bool { return topics[i].Name < topics[j].Name })
	for _, ti := range topics {
		if v != nil && !v.DescribeTopic(ti.Name) {
			continue
		}
		t := Topic{Name: ti.Name, Partitions: ti.Config.Partitions, ReplicationFactor: ti.Config.ReplicationFactor,
			MinInsync: ti.Config.MinInsyncReplicas, RetentionMs: ti.Config.RetentionMs, RetentionBytes: ti.Config.RetentionBytes}
		if len(ov.Topics) < MaxDetailedTopics {
			if td, err := src.DescribeTopic(ctx, ti.Name); err == nil {
				describe(&t, td, ov.Brokers, index)
			}
		}
		ov.Totals.Partitions += int(t.Partitions)
		ov.Totals.UnderReplicated += t.UnderReplicated
		ov.Totals.Leaderless += t.Leaderless
		ov.Totals.Records += t.Records
		ov.Totals.SizeBytes += t.SizeBytes
		ov.Topics = append(ov.Topics, t)
	}
	ov.Totals.Brokers, ov.Totals.Topics = len(ov.Brokers), len(ov.Topics)
	return ov, nil
}

// addCluster fills ov's cluster part: brokers (indexed by id in index) and
// the problem partitions of the topics v may see.
func addCluster(ctx context.Context, src Source, ov *Overview, index map[int32]int, v Viewer) error {
	d, err := src.DescribeCluster(ctx)
	if err != nil {
		return err
	}
	ov.ClusterID, ov.ControllerID, ov.AnsweredBy = d.ClusterID, d.ControllerID, d.AnsweredBy
	for _, m := range d.Members {
		if m.Decommissioned {
			continue // no longer a broker of the cluster, only not stopped yet
		}
		index[m.ID] = len(ov.Brokers)
		ov.Brokers = append(ov.Brokers, Broker{ID: m.ID, Addr: m.Addr, Rack: m.Rack, Gossip: m.GossipState,
			Fenced: m.Fenced, Quorum: m.QuorumRole, Controller: m.ID == d.ControllerID})
		if m.Fenced || m.GossipState != "alive" {
			ov.Totals.BrokersDown++
		}
	}
	for _, p := range d.Problems {
		if v != nil && !v.DescribeTopic(p.Topic) {
			continue
		}
		ov.Problems = append(ov.Problems, Problem{Topic: p.Topic, Partition: p.Partition, Leader: p.Leader,
			Replicas: p.Replicas, ISR: p.ISR, Problem: p.Problem})
	}
	return nil
}

// describe fills t's partitions from td and counts leaders and replicas
// per broker.
func describe(t *Topic, td client.TopicDescription, brokers []Broker, index map[int32]int) {
	t.Described = true
	for _, s := range td.Status {
		p := Partition{Partition: s.Partition, Leader: s.Leader, Epoch: s.LeaderEpoch, Replicas: s.Replicas, ISR: s.ISR,
			LogStart: s.LogStartOffset, HighWatermark: s.HighWatermark, LogEnd: s.LogEndOffset, SizeBytes: s.SizeBytes, Error: s.Error}
		if s.Error == "" {
			t.Records += max(s.HighWatermark, 0)
			t.SizeBytes += max(s.SizeBytes, 0)
		}
		switch {
		case s.Leader < 0:
			t.Leaderless++
		case len(s.ISR) < len(s.Replicas):
			t.UnderReplicated++
		}
		if i, ok := index[s.Leader]; ok {
			brokers[i].Leaders++
		}
		for _, r := range s.Replicas {
			if i, ok := index[r]; ok {
				brokers[i].Replicas++
			}
		}
		t.Parts = append(t.Parts, p)
	}
}
