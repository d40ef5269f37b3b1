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
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/cli"
)

const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

const usage = `Usage: consume -t TOPIC [flags]

Reads records from a Skein topic and writes them to standard output,
following the log until Ctrl-C (or -e / -c). -x and --x are the same flag.

  -b, --brokers LIST   brokers, comma-separated (env SKEIN_BROKERS, default 127.0.0.1:9420)
` + cli.UserUsage + `  -t, --topic TOPIC    topic to read (required)
  -p LIST              partitions, e.g. 0,2 or 0-3 (default all)
  -o OFFSET            beginning, end, N, -N (N before the end), @TIME (RFC 3339
                       or unix ms) (default end)
  -e                   exit at the end of the log instead of following it
  -c N                 exit after N records
  -f FORMAT            output format (default %v\n; '' prints nothing): %t topic, %p partition, %o offset,
                       %k key, %v value, %h headers (k=v,k=v), %T timestamp (ms), %%;
                       escapes \n \t \r \0 \\
      --json           one JSON object per record (the format produce --json reads)
  -G, --group GROUP    read as a member of a consumer group: the brokers assign
                       this process a share of the partitions; -t takes a list
                       (a,b) or, starting with ^, a regular expression
      --reset WHERE    with -G: where a partition without a committed offset
                       starts: beginning, end, @TIME (default end)
      --commit-interval D  with -G: automatic commit interval (default 5s);
                       positions are also committed on exit and when a
                       partition moves to another member
      --no-commit      with -G: never commit
      --session-timeout D  with -G: the member's session timeout (default 10s)
      --rack RACK      with -G: this member's rack (env SKEIN_RACK): it is
                       given partitions led by brokers of that rack (the
                       brokers' --rack) where the balance allows
      --key KEY        print the latest committed record of KEY (default format
                       '%o %v\n') and exit, looked up in the key index of a topic
                       created with --key-index (no scan); -p N names the
                       partition (default: the key's, murmur2); exit status 3
                       when the key has no record
      --stats json     print records, bytes, seconds, records/s, MB/s as JSON on
                       stdout at exit
  -v                   print that summary on stderr at exit
` + cli.TLSUsage + `
Exit status: 0 at the end or on Ctrl-C, 1 on an error, 2 for bad usage, 3 when
--key has no record.
`

type config struct {
	brokers    string
	topic      string
	partitions []int32
	offset     client.Offset
	exitAtEnd  bool
	count      int64
	format     []formatOp
	json       bool
	stats      string
	verbose    bool
	group      groupFlags
	key        []byte // --key: look up the key's latest record
	user       cli.UserFlags
	tls        cli.TLSFlags
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("consume", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { io.WriteString(stderr, usage) }
	defBrokers := os.Getenv("SKEIN_BROKERS")
	if defBrokers == "" {
		defBrokers = client.DefaultBroker
	}
	var parts, offset, format string
	for _, n := range []string{"b", "brokers"} {
		fs.StringVar(&cfg.brokers, n, defBrokers, "brokers")
	}
	cfg.user.Register(fs)
	for _, n := range []string{"t", "topic"} {
		fs.StringVar(&cfg.topic, n, "", "topic")
	}
	fs.StringVar(&parts, "p", "", "partitions")
	fs.StringVar(&offset, "o", "end", "start offset")
	fs.BoolVar(&cfg.exitAtEnd, "e", false, "exit at the end")
	fs.Int64Var(&cfg.count, "c", 0, "exit after N records")
	fs.StringVar(&format, "f", `%v\n`, "output format")
	fs.BoolVar(&cfg.json, "json", false, "JSON output")
	fs.StringVar(&cfg.stats, "stats", "", "stats format")
	fs.BoolVar(&cfg.verbose, "v", false, "summary on stderr")
	var key string
	fs.StringVar(&key, "key", "", "print the latest committed record of this key and exit")
	cfg.group.register(fs)
	cfg.tls.Register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	bad := func(format string, a ...any) (*config, error) {
		err := fmt.Errorf(format, a...)
		fmt.Fprintf(stderr, "consume: %v\n", err)
		fs.Usage()
		return nil, err
	}
	if fs.NArg() > 0 {
		return bad("unexpected argument %q", fs.Arg(0))
	}
	if cfg.topic == "" {
		return bad("-t TOPIC is required")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	if cfg.partitions, err = parsePartitions(parts); err != nil {
		return bad("-p: %v", err)
	}
	if cfg.offset, err = parseOffset(offset); err != nil {
		return bad("-o: %v", err)
	}
	if err := cfg.group.check(set); err != nil {
		return bad("%v", err)
	}
	if cfg.count < 0 {
		return bad("-c %d: want a count, 0 or more", cfg.count)
	}
	if cfg.json && set["f"] {
		return bad("-f and --json are exclusive")
	}
	if set["key"] {
		if err := cfg.checkKey(key, set); err != nil {
			return bad("%v", err)
		}
		if !set["f"] {
			format = `%o %v\n`
		}
	}
	if cfg.format, err = compileFormat(format); err != nil {
		return bad("-f: %v", err)
	}
	if cfg.stats != "" && cfg.stats != "json" {
		return bad(`--stats %q: the only format is "json"`, cfg.stats)
	}
	return cfg, nil
}

// summary is the --stats json object.
type summary struct {
	Topic         string      `json:"topic"`
	Records       int64       `json:"records"`
	Bytes         int64       `json:"bytes"`
	Seconds       float64     `json:"seconds"`
	RecordsPerSec float64     `json:"records_per_sec"`
	MBPerSec      float64     `json:"mb_per_sec"`
	Partitions    []partEntry `json:"partitions"`
}

type partEntry struct {
	Partition     int32 `json:"partition"`
	NextOffset    int64 `json:"next_offset"`
	HighWatermark int64 `json:"high_watermark"`
}

// run is the whole command, with its streams passed in; it returns the exit
// status.
func run(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "consume: "+format+"\n", a...) }

	c, err := cli.Connect(cfg.brokers, &cfg.user, &cfg.tls, client.Logger(cli.Logger(stderr)))
	if err != nil {
		logf("%v", err)
		return exitUsage
	}
	defer c.Close()
	if cfg.group.name != "" {
		return runGroup(ctx, c, cfg, stdout, stderr, logf)
	}
	if cfg.key != nil {
		return lookupKey(ctx, c, cfg, stdout, logf)
	}
	k, code := startConsumer(ctx, c, cfg, logf)
	if k == nil {
		return code
	}
	defer k.Close()

	start := time.Now()
	records, bytes, code := copyRecords(ctx, k, cfg, stdout, logf)
	if code == exitFailed && records < 0 {
		return exitFailed // a write failed: no summary
	}
	printSummary(cfg, k, records, bytes, time.Since(start), stdout, stderr)
	return code
}

// startConsumer makes the consumer and assigns it the partitions; on
// failure it has said why, and returns nil and the exit status.
func startConsumer(ctx context.Context, c *client.Client, cfg *config, logf func(string, ...any)) (*client.Consumer, int) {
	var opts []client.ConsumerOpt
	if cfg.exitAtEnd {
		opts = append(opts, client.StopAtEnd())
	}
	k, err := c.NewConsumer(opts...)
	if err != nil {
		logf("%v", err)
		return nil, exitUsage
	}
	if err := k.Assign(ctx, cfg.topic, cfg.partitions, cfg.offset); err != nil {
		k.Close()
		if ctx.Err() != nil {
			return nil, exitOK
		}
		switch {
		case errors.Is(err, client.ErrUnknownTopic):
			logf("topic %q does not exist", cfg.topic)
		case errors.Is(err, client.ErrInvalidTopic):
			logf("%v", err)
		default:
			logf("cannot start reading %q at %v: %v", cfg.topic, cfg.offset, err)
		}
		return nil, exitFailed
	}
	return k, exitOK
}

// copyRecords writes the records to stdout until the end (StopAtEnd), the
// count, an error or ctx's end. It returns the records and payload bytes
// written and the exit status; records is -1 when writing failed.
func copyRecords(ctx context.Context, k source, cfg *config, stdout io.Writer, logf func(string, ...any)) (records, bytes int64, code int) {
	out := bufio.NewWriterSize(stdout, 64<<10)
	var buf []byte
	code = exitOK
loop:
	for {
		recs, err := poll(ctx, k, cfg.count > 0)
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				logf("%v", err)
				code = exitFailed
			}
			break
		}
		for _, r := range recs {
			buf = buf[:0]
			if cfg.json {
				b, _ := r.MarshalJSON()
				buf = append(append(buf, b...), '\n')
			} else {
				buf = render(buf, cfg.format, r)
			}
			if _, err := out.Write(buf); err != nil {
				logf("write: %v", err)
				return -1, 0, exitFailed
			}
			records++
			bytes += int64(len(r.Key) + len(r.Value))
			for _, h := range r.Headers {
				bytes += int64(len(h.Key) + len(h.Value))
			}
			if cfg.count > 0 && records >= cfg.count {
				break loop
			}
		}
		if err := out.Flush(); err != nil {
			logf("write: %v", err)
			return -1, 0, exitFailed
		}
	}
	if err := out.Flush(); err != nil {
		logf("write: %v", err)
		return -1, 0, exitFailed
	}
	return records, bytes, code
}

// printSummary prints the JSON summary (--stats json) on stdout and the
// human one (-v) on stderr.
func printSummary(cfg *config, k source, records, bytes int64, took time.Duration, stdout, stderr io.Writer) {
	secs := took.Seconds()
	sum := summary{Topic: cfg.topic, Records: records, Bytes: bytes, Seconds: secs, Partitions: []partEntry{}}
	if secs > 0 {
		sum.RecordsPerSec = float64(records) / secs
		sum.MBPerSec = float64(bytes) / 1e6 / secs
	}
	if pk, ok := k.(*client.Consumer); ok {
		for _, p := range pk.Positions() {
			sum.Partitions = append(sum.Partitions, partEntry{Partition: p.Partition, NextOffset: p.Offset, HighWatermark: p.HighWatermark})
		}
	}
	if cfg.stats == "json" {
		b, _ := json.Marshal(sum)
		fmt.Fprintf(stdout, "%s\n", b)
	}
	if cfg.verbose {
		fmt.Fprintf(stderr, "%d records (%d bytes) from %s in %.3f s: %.1f records/s, %.2f MB/s\n",
			sum.Records, sum.Bytes, sum.Topic, sum.Seconds, sum.RecordsPerSec, sum.MBPerSec)
		for _, p := range sum.Partitions {
			fmt.Fprintf(stderr, "partition %d: next offset %d, high watermark %d\n", p.Partition, p.NextOffset, p.HighWatermark)
		}
	}
}
