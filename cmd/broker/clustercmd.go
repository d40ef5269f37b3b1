package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/skeinlog/skein/client"
)

// runCluster prints the cluster: members (gossip state, fence, quorum
// role), the controller, and partitions that are under-replicated or have
// no leader.
func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("broker cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var admin adminFlags
	admin.register(fs)
	positional, code, done := parseArgs(fs, args)
	if done {
		return code
	}
	if len(positional) > 0 {
		fmt.Fprintf(stderr, "broker cluster: takes no arguments (got %s)\n", strings.Join(positional, " "))
		return 2
	}
	var d client.ClusterDescription
	if code := withClient(ctx, stderr, "broker cluster", admin, func(ctx context.Context, cl *client.Client) (err error) {
		d, err = cl.DescribeCluster(ctx)
		return err
	}); code != 0 {
		return code
	}
	printCluster(stdout, d)
	return 0
}

// printCluster writes the members table and the partitions needing attention.
func printCluster(stdout io.Writer, d client.ClusterDescription) {
	ctrl := "none elected"
	if d.ControllerID >= 0 {
		ctrl = fmt.Sprintf("broker %d", d.ControllerID)
	}
	fmt.Fprintf(stdout, "cluster %s: controller %s, %d topic(s), %d partition(s) (as broker %d sees it)\n\n",
		d.ClusterID, ctrl, d.Topics, d.Partitions, d.AnsweredBy)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BROKER\tADDR\tGOSSIP\tSTATUS\tQUORUM\tRACK\tREPLICAS\tLEADERS\tBYTES")
	for _, m := range d.Members {
		status := "ok"
		if m.Fenced {
			status = "fenced"
		}
		if m.Draining {
			status += ",draining"
		}
		if m.Decommissioned {
			status = "decommissioned"
		}
		role := m.QuorumRole
		if role == "" {
			role = "-"
		}
		if m.ID == d.ControllerID {
			role += " (controller)"
		}
		rack := m.Rack
		if rack == "" {
			rack = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", m.ID, m.Addr, m.GossipState, status, role, rack, m.Replicas, m.Leaders, fmtBytes(m.Bytes))
	}
	tw.Flush()
	for _, m := range d.Members {
		if m.Decommissioned {
			fmt.Fprintf(stdout, "\nbroker %d is decommissioned: it is no longer part of the cluster and can be stopped\n", m.ID)
		}
	}
	if len(d.Problems) == 0 {
		fmt.Fprintln(stdout, "\nevery partition has a leader and a full ISR")
		return
	}
	fmt.Fprintf(stdout, "\n%d partition(s) need attention:\n", len(d.Problems))
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tLEADER\tREPLICAS\tISR\tPROBLEM")
	for _, p := range d.Problems {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", p.Topic, p.Partition, p.Leader, ids(p.Replicas), ids(p.ISR), p.Problem)
	}
	tw.Flush()
}
