package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/skeinlog/skein/client"
)

// A decommissioned broker that still gossips shows as decommissioned, with
// a line saying it can be stopped; the others as before.
func TestPrintClusterShowsDecommissioned(t *testing.T) {
	var out bytes.Buffer
	printCluster(&out, client.ClusterDescription{ClusterID: "c1", ControllerID: 1, AnsweredBy: 1, Members: []client.ClusterMember{
		{ID: 1, Addr: "a:1", GossipState: "alive", QuorumRole: "voter"},
		{ID: 2, Addr: "a:2", GossipState: "alive", Draining: true, QuorumRole: "voter"},
		{ID: 3, Addr: "a:3", GossipState: "alive", Decommissioned: true},
	}})
	lines := strings.Split(out.String(), "\n")
	row := func(id string) string {
		for _, l := range lines {
			if strings.HasPrefix(l, id+" ") {
				return l
			}
		}
		t.Fatalf("no row for broker %s:\n%s", id, out.String())
		return ""
	}
	if f := strings.Fields(row("1")); f[3] != "ok" {
		t.Errorf("broker 1: %q", row("1"))
	}
	if f := strings.Fields(row("2")); f[3] != "ok,draining" {
		t.Errorf("broker 2: %q", row("2"))
	}
	if f := strings.Fields(row("3")); f[3] != "decommissioned" || f[4] != "-" {
		t.Errorf("broker 3: %q", row("3"))
	}
	if !strings.Contains(out.String(), "broker 3 is decommissioned: it is no longer part of the cluster and can be stopped") ||
		strings.Contains(out.String(), "broker 2 is decommissioned") {
		t.Errorf("output:\n%s", out.String())
	}
}
