package broker_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/client"
)

// grafanaPanel is the part of a Grafana panel the test reads.
type grafanaPanel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

var (
	metricName   = regexp.MustCompile(`\bskein_[a-z_]+`)
	histoSuffix  = regexp.MustCompile(`_(bucket|sum|count)$`)
	exportedType = regexp.MustCompile(`(?m)^# TYPE (skein_[a-z_]+) `)
)

// The Grafana dashboard in deploy/ queries only metrics a broker exports:
// a renamed or removed metric would leave an operator's panel empty and
// an alert silent.
func TestGrafanaDashboardQueriesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("../deploy/grafana/skein-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []grafanaPanel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}
	exported := exportedMetrics(t)
	ids := map[int]bool{}
	queries := 0
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos x=%d w=%d outside the 24 columns", p.Title, p.GridPos.X, p.GridPos.W)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names := metricName.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no skein metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				queries++
				if !exported[histoSuffix.ReplaceAllString(n, "")] && !exported[n] {
					t.Errorf("panel %q: query %q uses %s, which the broker does not export", p.Title, tg.Expr, n)
				}
			}
		}
	}
	if queries < 20 {
		t.Fatalf("only %d metric references in the dashboard", queries)
	}
}

// exportedMetrics runs a broker through a produce, a failed conditional
// produce, a fetch and a consumer group's commit, and returns the metric
// names on its /metrics.
func exportedMetrics(t *testing.T) map[string]bool {
	b := brokertest.Start(t)
	cl, err := client.New(client.Brokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "dash", client.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := cl.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.ProduceSync(ctx, &client.Record{Topic: "dash", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ProduceIf(ctx, "dash", 0, 99, &client.Record{Value: []byte("late")}); err == nil {
		t.Fatal("a conditional produce at offset 99 of a one-record log succeeded")
	}
	g, err := cl.NewGroupConsumer("dash-group", []string{"dash"}, client.ResetOffset(client.Beginning()), client.AutoCommit(false))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	r, err := g.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.CommitRecords(ctx, r); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + b.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range exportedType.FindAllStringSubmatch(string(body), -1) {
		out[m[1]] = true
	}
	if !out["skein_produced_bytes_total"] {
		t.Fatalf("/metrics lacks skein_produced_bytes_total:\n%s", firstLinesOf(string(body), 40))
	}
	return out
}

func firstLinesOf(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
