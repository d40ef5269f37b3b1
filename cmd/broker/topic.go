package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/skeinlog/skein/client"
)

const defaultBrokers = "127.0.0.1:9420"

func brokersFlag(fs *flag.FlagSet) *string {
	def := defaultBrokers
	if v := os.Getenv("SKEIN_BROKERS"); v != "" {
		def = v
	}
	p := new(string)
	fs.StringVar(p, "brokers", def, "comma-separated broker addresses (env SKEIN_BROKERS)")
	fs.StringVar(p, "b", def, "shorthand for --brokers")
	return p
}

const topicUsage = `Usage:
  broker topic create NAME [--partitions N] [--replication-factor N] [--min-insync N]
                           [--retention DURATION] [--retention-bytes SIZE] [--max-record-bytes SIZE]
  broker topic list
  broker topic describe NAME
  broker topic delete NAME
Common flag: --brokers host:port[,host:port...] (env SKEIN_BROKERS, default 127.0.0.1:9420)
`

func runTopic(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, topicUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("broker topic "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := brokersFlag(fs)
	var (
		partitions, rf, minInsync   int
		retention, retBytes, maxRec string
	)
	if sub == "create" {
		fs.IntVar(&partitions, "partitions", 1, "number of partitions")
		fs.IntVar(&partitions, "p", 1, "shorthand for --partitions")
		fs.IntVar(&rf, "replication-factor", 0, "replicas per partition (default: the broker's, 1 on a single broker)")
		fs.IntVar(&rf, "r", 0, "shorthand for --replication-factor")
		fs.IntVar(&minInsync, "min-insync", 0, "min.insync.replicas for acks=all (default: min(2, replication factor))")
		fs.StringVar(&retention, "retention", "", "delete records older than this: 36h, 7d, or -1 to keep forever (default 7d)")
		fs.StringVar(&retBytes, "retention-bytes", "", "keep each partition under this size: 512MiB, 10GiB, or -1 for no limit (default -1)")
		fs.StringVar(&maxRec, "max-record-bytes", "", "largest record accepted (default 1MiB)")
	}
	// Flags may come after the topic name, as in "topic create demo --partitions 3".
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	needName := sub != "list"
	if needName && len(positional) != 1 || !needName && len(positional) != 0 {
		if needName {
			fmt.Fprintf(stderr, "broker topic %s: give exactly one topic name\n", sub)
		} else {
			fmt.Fprintf(stderr, "broker topic %s: takes no arguments\n", sub)
		}
		return 2
	}
	var name string
	if needName {
		name = positional[0]
	}
	var cfg client.TopicConfig
	if sub == "create" {
		var err error
		if cfg, err = topicConfig(partitions, rf, minInsync, retention, retBytes, maxRec); err != nil {
			fmt.Fprintf(stderr, "broker topic create: %v\n", err)
			return 2
		}
	}
	switch sub {
	case "create", "list", "describe", "delete":
	default:
		fmt.Fprintf(stderr, "broker topic: unknown command %q\n\n%s", sub, topicUsage)
		return 2
	}

	cl, err := client.New(client.WithBrokers(*brokers))
	if err != nil {
		fmt.Fprintf(stderr, "broker topic %s: %v\n", sub, err)
		return 2
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch sub {
	case "create":
		t, err := cl.CreateTopic(ctx, name, cfg)
		if err != nil {
			fmt.Fprintf(stderr, "broker topic create: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "created topic %q: %d partition(s), replication factor %d, min.insync.replicas %d, retention %s / %s, max record %s\n",
			t.Name, t.Config.Partitions, t.Config.ReplicationFactor, t.Config.MinInsyncReplicas,
			fmtRetention(t.Config.RetentionMs), fmtBytesLimit(t.Config.RetentionBytes), fmtBytes(int64(t.Config.MaxRecordBytes)))
	case "delete":
		if err := cl.DeleteTopic(ctx, name); err != nil {
			fmt.Fprintf(stderr, "broker topic delete: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "deleted topic %q\n", name)
	case "list":
		ts, err := cl.ListTopics(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "broker topic list: %v\n", err)
			return 1
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tPARTITIONS\tREPLICATION\tMIN-INSYNC\tRETENTION\tRETENTION-BYTES")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", t.Name, t.Config.Partitions, t.Config.ReplicationFactor,
				t.Config.MinInsyncReplicas, fmtRetention(t.Config.RetentionMs), fmtBytesLimit(t.Config.RetentionBytes))
		}
		tw.Flush()
	case "describe":
		d, err := cl.DescribeTopic(ctx, name)
		if err != nil {
			fmt.Fprintf(stderr, "broker topic describe: %v\n", err)
			return 1
		}
		c := d.Config
		fmt.Fprintf(stdout, "topic %s (id %s)\n  partitions %d, replication factor %d, min.insync.replicas %d\n  retention %s, retention bytes %s, max record %s\n\n",
			d.Name, d.ID, c.Partitions, c.ReplicationFactor, c.MinInsyncReplicas, fmtRetention(c.RetentionMs),
			fmtBytesLimit(c.RetentionBytes), fmtBytes(int64(c.MaxRecordBytes)))
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTITION\tLEADER\tEPOCH\tREPLICAS\tISR\tLOG-START\tHIGH-WATERMARK\tLOG-END\tSIZE")
		for _, p := range d.Status {
			if p.Error != "" {
				fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t-\t-\t-\t- (%s)\n", p.Partition, p.Leader, p.LeaderEpoch, ids(p.Replicas), ids(p.ISR), p.Error)
				continue
			}
			fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%d\t%d\t%d\t%s\n", p.Partition, p.Leader, p.LeaderEpoch, ids(p.Replicas), ids(p.ISR),
				p.LogStartOffset, p.HighWatermark, p.LogEndOffset, fmtBytes(p.SizeBytes))
		}
		tw.Flush()
	}
	return 0
}

func topicConfig(partitions, rf, minInsync int, retention, retBytes, maxRec string) (client.TopicConfig, error) {
	var c client.TopicConfig
	if partitions < 1 || partitions > 1<<31-1 {
		return c, fmt.Errorf("--partitions %d: must be at least 1", partitions)
	}
	if rf < 0 || rf > 1<<31-1 {
		return c, fmt.Errorf("--replication-factor %d: must be at least 1", rf)
	}
	if minInsync < 0 || minInsync > 1<<31-1 {
		return c, fmt.Errorf("--min-insync %d: must be at least 1", minInsync)
	}
	c.Partitions, c.ReplicationFactor, c.MinInsyncReplicas = int32(partitions), int32(rf), int32(minInsync)
	if retention != "" {
		ms, err := parseRetention(retention)
		if err != nil {
			return c, fmt.Errorf("--retention %q: %v", retention, err)
		}
		c.RetentionMs = ms
	}
	if retBytes != "" {
		n, err := parseSize(retBytes)
		if err != nil || n == 0 {
			return c, fmt.Errorf("--retention-bytes %q: want a size like 512MiB or 10GiB, or -1 for no limit", retBytes)
		}
		c.RetentionBytes = n
	}
	if maxRec != "" {
		n, err := parseSize(maxRec)
		if err != nil || n < 1 || n > 1<<31-1 {
			return c, fmt.Errorf("--max-record-bytes %q: want a size like 1MiB", maxRec)
		}
		c.MaxRecordBytes = int32(n)
	}
	return c, nil
}

// parseRetention accepts Go durations, a "d" (days) suffix, and -1/forever.
func parseRetention(s string) (int64, error) {
	if s == "-1" || s == "forever" {
		return -1, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil {
			return 0, errors.New("want a duration like 36h or 7d, or -1 to keep forever")
		}
		d = time.Duration(n * float64(24*time.Hour))
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, errors.New("want a duration like 36h or 7d, or -1 to keep forever")
		}
	}
	if d < time.Millisecond {
		return 0, errors.New("must be at least 1ms, or -1 to keep forever")
	}
	return d.Milliseconds(), nil
}

// parseSize accepts plain bytes, KiB/MiB/GiB/TiB (and KB/MB/GB), and -1.
func parseSize(s string) (int64, error) {
	if s == "-1" {
		return -1, nil
	}
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suf); ok {
			s, mult = n, u.m
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, errors.New("bad size")
	}
	return n * mult, nil
}

func fmtRetention(ms int64) string {
	if ms < 0 {
		return "forever"
	}
	d := time.Duration(ms) * time.Millisecond
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

func fmtBytesLimit(n int64) string {
	if n < 0 {
		return "unlimited"
	}
	return fmtBytes(n)
}

func fmtBytes(n int64) string {
	switch {
	case n < 0:
		return "-"
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func ids(v []int32) string {
	s := make([]string, len(v))
	for i, id := range v {
		s[i] = strconv.Itoa(int(id))
	}
	return strings.Join(s, ",")
}

// runHealthcheck asks the gRPC health service at --addr and exits 0 when it
// reports SERVING. Containers use it (their images have no shell).
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("broker healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := "127.0.0.1:9420"
	if v := os.Getenv("SKEIN_ADDR"); v != "" {
		def = v
	}
	addr := fs.String("addr", def, "broker gRPC address (env SKEIN_ADDR)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %s: %v\n", *addr, err)
		return 1
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		fmt.Fprintf(stderr, "healthcheck: %s: %s\n", *addr, resp.Status)
		return 1
	}
	fmt.Fprintf(stdout, "%s: serving\n", *addr)
	return 0
}
