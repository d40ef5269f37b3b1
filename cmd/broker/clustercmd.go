package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/skeinlog/skein/client"
)

// runCluster prints the cluster: members (gossip state, fence, quorum
// role), the controller, and partitions that are under-replicated or have
// no leader.
func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("broker cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := brokersFlag(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "broker cluster: takes no arguments\n")
		return 2
	}
	cl, err := client.New(client.WithBrokers(*brokers))
	if err != nil {
		fmt.Fprintf(stderr, "broker cluster: %v\n", err)
		return 2
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	d, err := cl.DescribeCluster(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "broker cluster: %v\n", err)
		return 1
	}
	ctrl := "none elected"
	if d.ControllerID >= 0 {
		ctrl = fmt.Sprintf("broker %d", d.ControllerID)
	}
	fmt.Fprintf(stdout, "cluster %s: controller %s, %d topic(s), %d partition(s) (as broker %d sees it)\n\n",
		d.ClusterID, ctrl, d.Topics, d.Partitions, d.AnsweredBy)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BROKER\tADDR\tGOSSIP\tSTATUS\tQUORUM\tRACK")
	for _, m := range d.Members {
		status := "ok"
		if m.Fenced {
			status = "fenced"
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
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Addr, m.GossipState, status, role, rack)
	}
	tw.Flush()
	if len(d.Problems) == 0 {
		fmt.Fprintln(stdout, "\nevery partition has a leader and a full ISR")
		return 0
	}
	fmt.Fprintf(stdout, "\n%d partition(s) need attention:\n", len(d.Problems))
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tLEADER\tREPLICAS\tISR\tPROBLEM")
	for _, p := range d.Problems {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", p.Topic, p.Partition, p.Leader, ids(p.Replicas), ids(p.ISR), p.Problem)
	}
	tw.Flush()
	return 0
}
