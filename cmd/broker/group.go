package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skeinlog/skein/client"
)

const groupUsage = `Usage:
  broker group list
  broker group describe GROUP
  broker group reset-offsets GROUP -t TOPIC --to beginning|end|OFFSET|@TIME [--dry-run]
  broker group delete GROUP
reset-offsets and delete need a group without members (stop its consumers first).
Common flags: --brokers host:port[,host:port...] (env SKEIN_BROKERS, default 127.0.0.1:9420),
              --timeout D (default 30s: how long to retry while the cluster is starting)
`

// resetFlags are "group reset-offsets"'s flags.
type resetFlags struct {
	topic, to string
	dryRun    bool
}

func runGroup(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, groupUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	if sub == "-h" || sub == "-help" || sub == "--help" || sub == "help" {
		fmt.Fprint(stdout, groupUsage)
		return 0
	}
	withName := map[string]bool{"list": false, "describe": true, "reset-offsets": true, "delete": true}
	named, ok := withName[sub]
	if !ok {
		fmt.Fprintf(stderr, "broker group: unknown command %q\n\n%s", sub, groupUsage)
		return 2
	}
	what := "broker group " + sub
	fs := flag.NewFlagSet(what, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var admin adminFlags
	admin.register(fs)
	var rf resetFlags
	if sub == "reset-offsets" {
		fs.StringVar(&rf.topic, "topic", "", "topic whose offsets to reset")
		fs.StringVar(&rf.topic, "t", "", "shorthand for --topic")
		fs.StringVar(&rf.to, "to", "", "beginning, end, an offset, or @TIME (RFC 3339 or unix ms)")
		fs.BoolVar(&rf.dryRun, "dry-run", false, "print the new offsets without storing them")
	}
	positional, code, done := parseArgs(fs, args)
	if done {
		return code
	}
	if err := checkGroupArgs(named, positional); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", what, err)
		return 2
	}
	var name string
	if named {
		name = positional[0]
		if err := client.CheckGroupName(name); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", what, err)
			return 2
		}
	}
	var to client.Offset
	if sub == "reset-offsets" {
		var err error
		if to, err = parseResetTarget(rf); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", what, err)
			return 2
		}
	}
	return withClient(ctx, stderr, what, admin, func(ctx context.Context, cl *client.Client) error {
		switch sub {
		case "list":
			return groupList(ctx, cl, stdout)
		case "describe":
			return groupDescribe(ctx, cl, name, stdout)
		case "delete":
			if err := cl.DeleteGroup(ctx, name); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "deleted group %q\n", name)
			return nil
		}
		return groupReset(ctx, cl, name, rf, to, stdout)
	})
}

func checkGroupArgs(named bool, positional []string) error {
	switch {
	case named && len(positional) == 0:
		return errors.New("give the group name")
	case named && len(positional) > 1:
		return fmt.Errorf("give exactly one group name (got %d: %s)", len(positional), strings.Join(positional, " "))
	case !named && len(positional) != 0:
		return fmt.Errorf("takes no arguments (got %s)", strings.Join(positional, " "))
	}
	return nil
}

func parseResetTarget(rf resetFlags) (client.Offset, error) {
	if rf.topic == "" {
		return client.Offset{}, errors.New("give the topic: -t TOPIC")
	}
	switch {
	case rf.to == "beginning" || rf.to == "earliest":
		return client.Beginning(), nil
	case rf.to == "end" || rf.to == "latest":
		return client.End(), nil
	case strings.HasPrefix(rf.to, "@"):
		s := rf.to[1:]
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			return client.AtTime(time.UnixMilli(ms)), nil
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return client.Offset{}, fmt.Errorf("--to %q: want @ and an RFC 3339 time or unix milliseconds", rf.to)
		}
		return client.AtTime(t), nil
	}
	n, err := strconv.ParseInt(rf.to, 10, 64)
	if err != nil || n < 0 {
		return client.Offset{}, fmt.Errorf("--to %q: want beginning, end, an offset (0 or more) or @TIME", rf.to)
	}
	return client.At(n), nil
}

func groupList(ctx context.Context, cl *client.Client, stdout io.Writer) error {
	gs, err := cl.ListGroups(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSTATE\tMEMBERS\tCOORDINATOR")
	for _, g := range gs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", g.Group, g.State, g.Members, g.Coordinator)
	}
	return tw.Flush()
}

func groupDescribe(ctx context.Context, cl *client.Client, name string, stdout io.Writer) error {
	d, err := cl.DescribeGroup(ctx, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "group %s: %s, %d member(s), coordinator broker %d, group epoch %d\n\n", d.Group, d.State, len(d.Members), d.Coordinator, d.Epoch)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if len(d.Members) > 0 {
		fmt.Fprintln(tw, "MEMBER\tEPOCH\tCLIENT-ID\tHOST\tRACK\tSUBSCRIPTION\tASSIGNED")
		for _, m := range d.Members {
			sub := strings.Join(m.Topics, ",")
			if m.TopicRegex != "" {
				sub = m.TopicRegex
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", m.MemberID, m.Epoch, m.ClientID, m.Host, cmp.Or(m.Rack, "-"), sub, fmtTPs(m.Assigned))
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tLOG-END\tLAG\tMEMBER")
	for _, p := range d.Partitions {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", p.Topic, p.Partition, dash(p.Committed), dash(p.LogEnd), dash(p.Lag), p.MemberID)
	}
	return tw.Flush()
}

func dash(n int64) string {
	if n < 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

func fmtTPs(tps []client.TopicPartition) string {
	var parts []string
	for _, tp := range tps {
		parts = append(parts, tp.String())
	}
	return strings.Join(parts, ",")
}

// groupReset resolves --to for every partition of the topic and stores the
// offsets (the broker refuses while the group has members).
func groupReset(ctx context.Context, cl *client.Client, name string, rf resetFlags, to client.Offset, stdout io.Writer) error {
	d, err := cl.DescribeTopic(ctx, rf.topic)
	if err != nil {
		return err
	}
	if gd, err := cl.DescribeGroup(ctx, name); err == nil && len(gd.Members) > 0 {
		var ms []string
		for _, m := range gd.Members {
			ms = append(ms, fmt.Sprintf("%s (client %q, host %s)", m.MemberID, m.ClientID, m.Host))
		}
		return fmt.Errorf("%w: group %q has %d member(s): %s; stop them first", client.ErrGroupNotEmpty, name, len(ms), strings.Join(ms, ", "))
	}
	old, err := cl.GroupOffsets(ctx, name)
	if err != nil && !errors.Is(err, client.ErrUnknownGroup) {
		return err
	}
	offsets := map[client.TopicPartition]int64{}
	for p := range d.Config.Partitions {
		lo, err := cl.ListOffsets(ctx, rf.topic, p, to)
		if err != nil {
			return fmt.Errorf("partition %d: %w", p, err)
		}
		offsets[client.TopicPartition{Topic: rf.topic, Partition: p}] = lo.Offset
	}
	tps := make([]client.TopicPartition, 0, len(offsets))
	for tp := range offsets {
		tps = append(tps, tp)
	}
	sort.Slice(tps, func(i, j int) bool { return tps[i].Partition < tps[j].Partition })
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tOLD\tNEW")
	for _, tp := range tps {
		prev, ok := old[tp]
		if !ok {
			prev = -1
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", tp.Topic, tp.Partition, dash(prev), offsets[tp])
	}
	tw.Flush()
	if rf.dryRun {
		fmt.Fprintln(stdout, "dry run: nothing stored")
		return nil
	}
	if err := cl.SetGroupOffsets(ctx, name, offsets); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "reset the offsets of group %q on %s\n", name, rf.topic)
	return nil
}
