package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/replication"
)

const reassignUsage = `Usage:
  broker reassign plan --brokers 1,2,3,4 [--topics a,b] [-o plan.json]
        propose a balanced, rack-aware placement (JSON; moves as few replicas as possible)
  broker reassign execute plan.json [--throttle 50MB/s]
        start the moves; the controller carries them out
  broker reassign status     progress per partition: step, bytes left, ETA
  broker reassign cancel     send moving partitions back to their original replicas
The broker addresses are --bootstrap (-b, env SKEIN_BROKERS) for plan, --brokers for the others.
`

func runReassign(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, reassignUsage)
		return 2
	}
	switch args[0] {
	case "plan":
		return runReassignPlan(ctx, args[1:], stdout, stderr)
	case "execute":
		return runReassignExecute(ctx, args[1:], stdout, stderr)
	case "status":
		return runReassignStatus(ctx, args[1:], stdout, stderr)
	case "cancel":
		return runReassignCancel(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, reassignUsage)
		return 0
	}
	fmt.Fprintf(stderr, "broker reassign: unknown command %q\n\n%s", args[0], reassignUsage)
	return 2
}

// parseIDs reads "1,2,3".
func parseIDs(s string) ([]int32, error) {
	var out []int32
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 32)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q is not a broker id", f)
		}
		out = append(out, int32(n))
	}
	return out, nil
}

func runReassignPlan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("broker reassign plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var admin adminFlags
	def := defaultBrokers
	if v := os.Getenv("SKEIN_BROKERS"); v != "" {
		def = v
	}
	fs.StringVar(&admin.brokers, "bootstrap", def, "comma-separated broker addresses (env SKEIN_BROKERS)")
	fs.StringVar(&admin.brokers, "b", def, "shorthand for --bootstrap")
	fs.DurationVar(&admin.timeout, "timeout", 30*time.Second, "keep retrying while the cluster is unavailable, for up to this long")
	brokerIDs := fs.String("brokers", "", "ids of the brokers to spread the replicas over (required): 1,2,3,4")
	topics := fs.String("topics", "", "topics to move (default: all)")
	out := fs.String("o", "", "write the plan to this file instead of standard output")
	positional, code, done := parseArgs(fs, args)
	if done {
		return code
	}
	if len(positional) > 0 || *brokerIDs == "" {
		fmt.Fprintln(stderr, "broker reassign plan: give --brokers with the broker ids, like --brokers 1,2,3,4")
		return 2
	}
	idList, err := parseIDs(*brokerIDs)
	if err != nil {
		fmt.Fprintf(stderr, "broker reassign plan: --brokers: %v\n", err)
		return 2
	}
	var plan []client.ReassignTarget
	if code := withClient(ctx, stderr, "broker reassign plan", admin, func(ctx context.Context, cl *client.Client) (err error) {
		plan, err = cl.PlanReassignment(ctx, idList, splitList(*topics))
		return err
	}); code != 0 {
		return code
	}
	return writePlan(stdout, stderr, *out, plan)
}

func writePlan(stdout, stderr io.Writer, path string, plan []client.ReassignTarget) int {
	if plan == nil {
		plan = []client.ReassignTarget{}
	}
	data, err := json.MarshalIndent(client.ReassignPlan{Version: 1, Partitions: plan}, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "broker reassign plan: %v\n", err)
		return 1
	}
	data = append(data, '\n')
	if path == "" {
		stdout.Write(data)
	} else if err := os.WriteFile(path, data, 0o644); err != nil {
		fmt.Fprintf(stderr, "broker reassign plan: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "%d partition(s) move\n", len(plan))
	return 0
}

// readPlan reads a plan file, refusing unknown fields.
func readPlan(path string) ([]client.ReassignTarget, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var p client.ReassignPlan
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%s: not a reassignment plan: %v", path, err)
	}
	if p.Version != 1 {
		return nil, fmt.Errorf("%s: plan version %d: want 1", path, p.Version)
	}
	return p.Partitions, nil
}

func runReassignExecute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("broker reassign execute", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var admin adminFlags
	admin.register(fs)
	throttle := fs.String("throttle", "", "bytes a second the new replicas of each broker may copy together (50MB/s, 10MiB/s, off); default: leave the replication.throttle setting as it is")
	positional, code, done := parseArgs(fs, args)
	if done {
		return code
	}
	if len(positional) != 1 {
		fmt.Fprintln(stderr, "broker reassign execute: give the plan file (from broker reassign plan -o plan.json)")
		return 2
	}
	if *throttle != "" {
		if _, err := replication.ParseRate(*throttle); err != nil {
			fmt.Fprintf(stderr, "broker reassign execute: --throttle %v\n", err)
			return 2
		}
	}
	plan, err := readPlan(positional[0])
	if err != nil {
		fmt.Fprintf(stderr, "broker reassign execute: %v\n", err)
		return 2
	}
	return executePlan(ctx, stdout, stderr, admin, plan, *throttle)
}

func executePlan(ctx context.Context, stdout, stderr io.Writer, admin adminFlags, plan []client.ReassignTarget, throttle string) int {
	var moving []client.ReassignTarget
	if code := withClient(ctx, stderr, "broker reassign execute", admin, func(ctx context.Context, cl *client.Client) (err error) {
		moving, err = cl.ExecuteReassignment(ctx, plan, throttle)
		return err
	}); code != 0 {
		return code
	}
	fmt.Fprintf(stdout, "reassignment started: %d partition(s) move; follow it with: broker reassign status\n", len(moving))
	return 0
}

func runReassignStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("broker reassign status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var admin adminFlags
	admin.register(fs)
	if _, code, done := parseArgs(fs, args); done {
		return code
	}
	var st client.ReassignStatus
	if code := withClient(ctx, stderr, "broker reassign status", admin, func(ctx context.Context, cl *client.Client) (err error) {
		st, err = cl.ReassignmentStatus(ctx)
		return err
	}); code != 0 {
		return code
	}
	printReassignStatus(stdout, st)
	return 0
}

func printReassignStatus(stdout io.Writer, st client.ReassignStatus) {
	if len(st.Draining) > 0 {
		fmt.Fprintf(stdout, "decommissioning broker(s) %s\n", ids(st.Draining))
	}
	if len(st.Partitions) == 0 {
		fmt.Fprintf(stdout, "no reassignment is running (replication.throttle %s)\n", st.Throttle)
		return
	}
	fmt.Fprintf(stdout, "%d partition(s) moving (replication.throttle %s)\n", len(st.Partitions), st.Throttle)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tSTATE\tREPLICAS\tTARGET\tISR\tLEADER\tBYTES LEFT\tETA")
	for _, p := range st.Partitions {
		state := p.State
		if p.Cancelled {
			state += " (cancelled)"
		}
		eta := "-"
		if p.ETASeconds >= 0 {
			eta = (time.Duration(p.ETASeconds*float64(time.Second)) / time.Second * time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p.Topic, p.Partition, state, ids(p.Replicas), ids(p.Target),
			ids(p.ISR), p.Leader, fmtBytes(p.BytesLeft), eta)
	}
	tw.Flush()
}

func runReassignCancel(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("broker reassign cancel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var admin adminFlags
	admin.register(fs)
	if _, code, done := parseArgs(fs, args); done {
		return code
	}
	var n int
	if code := withClient(ctx, stderr, "broker reassign cancel", admin, func(ctx context.Context, cl *client.Client) (err error) {
		n, err = cl.CancelReassignment(ctx)
		return err
	}); code != 0 {
		return code
	}
	fmt.Fprintf(stdout, "reassignment cancelled: %d partition(s) head back to their original replicas\n", n)
	return 0
}

// runRebalance plans over every live broker and executes after a yes.
func runRebalance(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("broker rebalance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var admin adminFlags
	admin.register(fs)
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	throttle := fs.String("throttle", "", "as for broker reassign execute")
	if _, code, done := parseArgs(fs, args); done {
		return code
	}
	if *throttle != "" {
		if _, err := replication.ParseRate(*throttle); err != nil {
			fmt.Fprintf(stderr, "broker rebalance: --throttle %v\n", err)
			return 2
		}
	}
	var plan []client.ReassignTarget
	if code := withClient(ctx, stderr, "broker rebalance", admin, func(ctx context.Context, cl *client.Client) error {
		d, err := cl.DescribeCluster(ctx)
		if err != nil {
			return err
		}
		var live []int32
		for _, m := range d.Members {
			if !m.Fenced && !m.Draining && m.GossipState == "alive" {
				live = append(live, m.ID)
			}
		}
		plan, err = cl.PlanReassignment(ctx, live, nil)
		return err
	}); code != 0 {
		return code
	}
	if len(plan) == 0 {
		fmt.Fprintln(stdout, "the replicas and leaders are balanced already: nothing to move")
		return 0
	}
	fmt.Fprintf(stdout, "%d partition(s) would move:\n", len(plan))
	for _, p := range plan {
		fmt.Fprintf(stdout, "  %s-%d -> %s\n", p.Topic, p.Partition, ids(p.Replicas))
	}
	if !*yes && !confirm(stdin, stdout) {
		fmt.Fprintln(stderr, "broker rebalance: not confirmed; nothing changed")
		return 1
	}
	return executePlan(ctx, stdout, stderr, admin, plan, *throttle)
}

func confirm(stdin io.Reader, stdout io.Writer) bool {
	fmt.Fprint(stdout, "proceed? [y/N] ")
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes"
}

func runDecommission(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("broker decommission", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var admin adminFlags
	admin.register(fs)
	positional, code, done := parseArgs(fs, args)
	if done {
		return code
	}
	if len(positional) != 1 {
		fmt.Fprintln(stderr, "broker decommission: give the id of the broker to drain, like: broker decommission 2")
		return 2
	}
	id, err := strconv.ParseInt(positional[0], 10, 32)
	if err != nil || id < 0 {
		fmt.Fprintf(stderr, "broker decommission: %q is not a broker id\n", positional[0])
		return 2
	}
	var moving []client.ReassignTarget
	if code := withClient(ctx, stderr, "broker decommission", admin, func(ctx context.Context, cl *client.Client) (err error) {
		moving, err = cl.Decommission(ctx, int32(id))
		return err
	}); code != 0 {
		return code
	}
	fmt.Fprintf(stdout, "decommissioning broker %d: %d partition(s) move off it; then it leaves the controller quorum and the cluster "+
		"(follow with: broker reassign status; stop it once broker cluster no longer lists it)\n", id, len(moving))
	return 0
}
