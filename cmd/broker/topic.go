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
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/cli"
)

const topicUsage = `Usage:
  broker topic create NAME [--partitions N] [--replication-factor N] [--min-insync N]
                           [--retention DURATION] [--retention-bytes SIZE] [--max-record-bytes SIZE]
                           [--key-index] [--cleanup-policy delete|compact|compact,delete]
                           [--delete-retention DURATION]
  broker topic alter NAME [--partitions N] [--min-insync N] [--retention DURATION]
                          [--retention-bytes SIZE] [--max-record-bytes SIZE]
                          [--cleanup-policy POLICY] [--delete-retention DURATION]
  broker topic list [--internal]
  broker topic describe NAME
  broker topic delete NAME
Common flags: --brokers host:port[,host:port...] (env SKEIN_BROKERS, default 127.0.0.1:9420),
              --timeout D (default 30s: how long to retry while the cluster is starting)
Run "broker topic COMMAND -h" for a command's flags.
`

// topicCommand is one "broker topic" subcommand.
type topicCommand struct {
	withName bool // takes exactly one topic name
	run      func(ctx context.Context, cl *client.Client, a topicArgs, stdout io.Writer) error
}

// topicArgs are what a topic subcommand was given.
type topicArgs struct {
	name string
	cfg  client.TopicConfig // create
	alt  client.TopicAlter  // alter
	// list: also the internal topics (__consumer_offsets)
	internal bool
}

var topicCommands = map[string]topicCommand{
	"create":   {withName: true, run: topicCreate},
	"alter":    {withName: true, run: topicAlter},
	"delete":   {withName: true, run: topicDelete},
	"describe": {withName: true, run: topicDescribe},
	"list":     {run: topicList},
}

// createFlags are "topic create"'s flags.
type createFlags struct {
	partitions, rf, minInsync   int
	retention, retBytes, maxRec string
	keyIndex                    bool
	cleanup, deleteRetention    string
}

const (
	cleanupUsage         = "cleanup.policy: delete (retention deletes old segments), compact (the log cleaner keeps the latest record of every key; records need a key) or compact,delete"
	deleteRetentionUsage = "compacted topics: how long a tombstone (a record with a null value) stays after it became its key's latest record: 24h, 1d, 100ms, 0 (default 24h)"
)

// compactionFlags registers --cleanup-policy and --delete-retention.
func compactionFlags(fs *flag.FlagSet, cleanup, deleteRetention *string) {
	fs.StringVar(cleanup, "cleanup-policy", "", cleanupUsage)
	fs.StringVar(deleteRetention, "delete-retention", "", deleteRetentionUsage)
}

// parseDeleteRetention reads --delete-retention: a duration (36h, 7d,
// 100ms) or 0.
func parseDeleteRetention(s string) (int64, error) {
	if s == "0" {
		return 0, nil
	}
	ms, err := parseRetention(s)
	if err != nil || ms < 0 {
		return 0, fmt.Errorf("--delete-retention %q: want a duration like 24h, 1d or 100ms, or 0", s)
	}
	return ms, nil
}

func (c *createFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&c.keyIndex, "key-index", false, "keep a key index per partition: per-key conditional appends (produce --expect-key-offset) and key lookups (consume --key); fixed at creation")
	fs.IntVar(&c.partitions, "partitions", 1, "number of partitions")
	fs.IntVar(&c.partitions, "p", 1, "shorthand for --partitions")
	fs.IntVar(&c.rf, "replication-factor", 0, "replicas per partition (default: the broker's, 1 on a single broker)")
	fs.IntVar(&c.rf, "r", 0, "shorthand for --replication-factor")
	fs.IntVar(&c.minInsync, "min-insync", 0, "min.insync.replicas for acks=all (default: min(2, replication factor))")
	fs.StringVar(&c.retention, "retention", "", "delete records older than this: 36h, 7d, or -1 to keep forever (default 7d)")
	fs.StringVar(&c.retBytes, "retention-bytes", "", "keep each partition under this size: 512MiB, 10GiB, or -1 for no limit (default -1)")
	fs.StringVar(&c.maxRec, "max-record-bytes", "", "largest record accepted (default 1MiB)")
	compactionFlags(fs, &c.cleanup, &c.deleteRetention)
}

func runTopic(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, topicUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	if sub == "-h" || sub == "-help" || sub == "--help" || sub == "help" {
		fmt.Fprint(stdout, topicUsage)
		return 0
	}
	cmd, ok := topicCommands[sub]
	if !ok {
		fmt.Fprintf(stderr, "broker topic: unknown command %q\n\n%s", sub, topicUsage)
		return 2
	}
	what := "broker topic " + sub
	fs := flag.NewFlagSet(what, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var admin adminFlags
	admin.register(fs)
	var cf createFlags
	var af alterFlags
	switch sub {
	case "create":
		cf.register(fs)
	case "alter":
		af.register(fs)
	}
	var ta topicArgs
	if sub == "list" {
		fs.BoolVar(&ta.internal, "internal", false, "also list the internal topics (__consumer_offsets)")
	}
	positional, code, done := parseArgs(fs, args)
	if done {
		return code
	}
	if err := checkArgs(cmd.withName, positional); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", what, err)
		return 2
	}
	if cmd.withName {
		ta.name = positional[0]
	}
	var err error
	switch sub {
	case "create":
		ta.cfg, err = topicConfig(cf.partitions, cf.rf, cf.minInsync, cf.retention, cf.retBytes, cf.maxRec)
		ta.cfg.KeyIndex = cf.keyIndex
		ta.cfg.CleanupPolicy = cf.cleanup
		if err == nil && cf.deleteRetention != "" {
			var ms int64
			if ms, err = parseDeleteRetention(cf.deleteRetention); err == nil && ms == 0 {
				err = errors.New("--delete-retention 0 at creation: create the topic, then set it with topic alter --delete-retention 0")
			}
			ta.cfg.DeleteRetentionMs = ms
		}
	case "alter":
		ta.alt, err = af.alter(fs)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", what, err)
		return 2
	}
	if ta.alt.Partitions != nil {
		fmt.Fprintf(stderr, "%s: note: records with a key go to partition hash(key) mod the partition count, so keys may now map to other partitions than their earlier records\n", what)
	}
	attempts := 0
	return withClient(ctx, stderr, what, admin, func(ctx context.Context, cl *client.Client) error {
		attempts++
		err := cmd.run(ctx, cl, ta, stdout)
		if attempts > 1 && sub == "create" && errors.Is(err, client.ErrTopicExists) {
			// An earlier attempt may have created it before its answer was lost.
			return fmt.Errorf("%w (an earlier attempt that got no answer may have created it: see broker topic describe %s)", err, ta.name)
		}
		return err
	})
}

func checkArgs(withName bool, positional []string) error {
	switch {
	case withName && len(positional) == 0:
		return errors.New("give the topic name")
	case withName && len(positional) > 1:
		return fmt.Errorf("give exactly one topic name (got %d: %s)", len(positional), strings.Join(positional, " "))
	case !withName && len(positional) != 0:
		return fmt.Errorf("takes no arguments (got %s)", strings.Join(positional, " "))
	}
	return nil
}

func topicCreate(ctx context.Context, cl *client.Client, a topicArgs, stdout io.Writer) error {
	t, err := cl.CreateTopic(ctx, a.name, a.cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created topic %q: %d partition(s), replication factor %d, min.insync.replicas %d, retention %s / %s, max record %s%s\n",
		t.Name, t.Config.Partitions, t.Config.ReplicationFactor, t.Config.MinInsyncReplicas,
		fmtRetention(t.Config.RetentionMs), fmtBytesLimit(t.Config.RetentionBytes), fmtBytes(int64(t.Config.MaxRecordBytes)), keyIndexWords(t.Config.KeyIndex)+policyWords(t.Config))
	return nil
}

func topicAlter(ctx context.Context, cl *client.Client, a topicArgs, stdout io.Writer) error {
	t, err := cl.AlterTopic(ctx, a.name, a.alt)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "altered topic %q: %d partition(s), replication factor %d, min.insync.replicas %d, retention %s / %s, max record %s%s\n",
		t.Name, t.Config.Partitions, t.Config.ReplicationFactor, t.Config.MinInsyncReplicas,
		fmtRetention(t.Config.RetentionMs), fmtBytesLimit(t.Config.RetentionBytes), fmtBytes(int64(t.Config.MaxRecordBytes)), policyWords(t.Config))
	return nil
}

// alterFlags are "topic alter"'s flags: only those given change anything.
type alterFlags struct {
	partitions, minInsync       int
	retention, retBytes, maxRec string
	cleanup, deleteRetention    string
}

func (c *alterFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&c.partitions, "partitions", 0, "grow the topic to this many partitions (partitions never shrink)")
	fs.IntVar(&c.partitions, "p", 0, "shorthand for --partitions")
	fs.IntVar(&c.minInsync, "min-insync", 0, "min.insync.replicas for acks=all")
	fs.StringVar(&c.retention, "retention", "", "delete records older than this: 36h, 7d, or -1 to keep forever")
	fs.StringVar(&c.retBytes, "retention-bytes", "", "keep each partition under this size: 512MiB, 10GiB, or -1 for no limit")
	fs.StringVar(&c.maxRec, "max-record-bytes", "", "largest record accepted, like 2MiB")
	compactionFlags(fs, &c.cleanup, &c.deleteRetention)
}

// alter builds the change from the flags that were set on fs.
func (c *alterFlags) alter(fs *flag.FlagSet) (client.TopicAlter, error) {
	var a client.TopicAlter
	var err error
	fs.Visit(func(f *flag.Flag) {
		if err != nil {
			return
		}
		switch f.Name {
		case "partitions", "p":
			if c.partitions < 1 || c.partitions > 1<<31-1 {
				err = fmt.Errorf("--partitions %d: must be at least 1", c.partitions)
			}
			a.Partitions = ptr(int32(c.partitions))
		case "min-insync":
			if c.minInsync < 1 || c.minInsync > 1<<31-1 {
				err = fmt.Errorf("--min-insync %d: must be at least 1", c.minInsync)
			}
			a.MinInsyncReplicas = ptr(int32(c.minInsync))
		case "retention":
			var ms int64
			if ms, err = parseRetention(c.retention); err != nil {
				err = fmt.Errorf("--retention %q: %v", c.retention, err)
			}
			a.RetentionMs = &ms
		case "retention-bytes":
			n, perr := parseSize(c.retBytes)
			if perr != nil || n == 0 {
				err = fmt.Errorf("--retention-bytes %q: want a size like 512MiB or 10GiB, or -1 for no limit", c.retBytes)
			}
			a.RetentionBytes = &n
		case "max-record-bytes":
			n, perr := parseSize(c.maxRec)
			if perr != nil || n < 1 || n > 1<<31-1 {
				err = fmt.Errorf("--max-record-bytes %q: want a size like 1MiB", c.maxRec)
			}
			a.MaxRecordBytes = ptr(int32(n))
		case "cleanup-policy":
			a.CleanupPolicy = ptr(c.cleanup)
		case "delete-retention":
			var ms int64
			ms, err = parseDeleteRetention(c.deleteRetention)
			a.DeleteRetentionMs = &ms
		}
	})
	if err == nil && a == (client.TopicAlter{}) {
		err = errors.New("nothing to change: give --partitions, --min-insync, --retention, --retention-bytes, --max-record-bytes, --cleanup-policy or --delete-retention")
	}
	return a, err
}

func ptr[T any](v T) *T { return &v }

// policyWords names a compacted topic's policy and tombstone retention.
func policyWords(c client.TopicConfig) string {
	if c.CleanupPolicy == "" || c.CleanupPolicy == "delete" {
		return ""
	}
	return fmt.Sprintf(", cleanup.policy %s (tombstones kept %s)", c.CleanupPolicy, time.Duration(c.DeleteRetentionMs)*time.Millisecond)
}

func keyIndexWords(on bool) string {
	if on {
		return ", key index"
	}
	return ""
}

func topicDelete(ctx context.Context, cl *client.Client, a topicArgs, stdout io.Writer) error {
	if err := cl.DeleteTopic(ctx, a.name); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted topic %q\n", a.name)
	return nil
}

func topicList(ctx context.Context, cl *client.Client, a topicArgs, stdout io.Writer) error {
	ts, err := cl.ListTopics(ctx)
	if err != nil {
		return err
	}
	if a.internal {
		its, err := cl.ListInternalTopics(ctx)
		if err != nil {
			return err
		}
		ts = append(ts, its...)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPARTITIONS\tREPLICATION\tMIN-INSYNC\tRETENTION\tRETENTION-BYTES")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", t.Name, t.Config.Partitions, t.Config.ReplicationFactor,
			t.Config.MinInsyncReplicas, fmtRetention(t.Config.RetentionMs), fmtBytesLimit(t.Config.RetentionBytes))
	}
	return tw.Flush()
}

func topicDescribe(ctx context.Context, cl *client.Client, a topicArgs, stdout io.Writer) error {
	d, err := cl.DescribeTopic(ctx, a.name)
	if err != nil {
		return err
	}
	c := d.Config
	fmt.Fprintf(stdout, "topic %s (id %s)\n  partitions %d, replication factor %d, min.insync.replicas %d\n  retention %s, retention bytes %s, max record %s%s\n\n",
		d.Name, d.ID, c.Partitions, c.ReplicationFactor, c.MinInsyncReplicas, fmtRetention(c.RetentionMs),
		fmtBytesLimit(c.RetentionBytes), fmtBytes(int64(c.MaxRecordBytes)), keyIndexWords(c.KeyIndex)+policyWords(c))
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
	return tw.Flush()
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
	var tf cli.TLSFlags
	tf.Register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	tc, err := tf.Config()
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 2
	}
	creds := insecure.NewCredentials()
	if tc != nil {
		creds = credentials.NewTLS(tc)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds))
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
