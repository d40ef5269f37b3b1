package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/cli"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitMismatch    = 3
	exitInterrupted = 130
)

type config struct {
	user         cli.UserFlags
	brokers      string
	topic        string
	delim        []byte
	keySep       []byte
	key          []byte
	headers      []client.Header
	partition    int // -1: partitioner
	acks         client.Acks
	json         bool
	expectOffset int64 // -1: unconditional
	// --expect-key-offset
	expectKey       bool
	expectKeyOffset int64
	compression     client.Compression
	linger          time.Duration
	batchBytes      int
	maxRecordBytes  int
	count           int64
	size            int
	rate            float64
	payload         string
	stats           string
	report          bool
	timeout         time.Duration
	idempotent      bool
	tls             cli.TLSFlags
}

type headerFlags struct{ hs *[]client.Header }

func (h headerFlags) String() string { return "" }
func (h headerFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	*h.hs = append(*h.hs, client.Header{Key: k, Value: []byte(v)})
	return nil
}

const usage = `Usage: produce -t TOPIC [flags] < input
       produce -t TOPIC --count N [--size B] [--rate R] [flags]

Writes records to a Skein topic: one per line of standard input, or
generated ones with --count. -x and --x are the same flag.

  -b, --brokers LIST      brokers, comma-separated (env SKEIN_BROKERS, default 127.0.0.1:9420)
` + cli.UserUsage + `  -t, --topic TOPIC       topic to produce to (required)
  -D DELIM                record delimiter of the input (default \n)
  -K SEP                  key separator: the text before the first SEP of a line is the key
  -k KEY                  fixed key for every record
  -H KEY=VALUE            header for every record (repeatable)
  -p N                    partition (default: murmur2 of the key; sticky batches without one)
      --acks LEVEL        all, leader (or 1), none (or 0) (default all)
      --idempotent=false  turn the idempotent producer off (default on; off with
                          --acks none): retries may then write a record twice
      --json              each line is a JSON record, as consume --json writes
      --expect-offset N   append all input as ONE batch to ONE partition, only if its
                          next offset is N (exit status 3 otherwise)
      --expect-key-offset N  append all input (records of ONE key, from -K or -k) as
                          ONE batch, only if the key's last record is at offset N
                          (-1 or none: the key has no record); topics created with
                          --key-index. Exit status 3 otherwise, printing the key's
                          actual last offset
      --compression C     none, gzip, snappy, lz4, zstd (default none)
      --linger D          how long a batch waits for more records (default 5ms)
      --batch-bytes N     largest batch (default 1048576)
      --max-record-bytes N  longest record accepted (default: the topic's limit)
      --delivery-timeout D  give up on a record after D (default 2m)
      --count N           bench mode: produce N generated records, no stdin
      --size B            bench mode: value size (default 100)
      --rate R            bench mode: records per second (default unlimited)
      --payload P         bench mode: random or json (compressible) (default random)
      --stats json        print the summary as one JSON object on stdout
      --report, -v        print "partition offset input" per acknowledged record
                          (input is "line N", or "record N" in bench mode)
` + cli.TLSUsage + `
Escapes \n \t \r \0 \\ \xNN work in -D, -K and -k. Exit status: 0 all records
acknowledged, 1 some failed or an error, 2 bad usage, 3 --expect-offset or
--expect-key-offset mismatch, 130 interrupted.
`

// rawFlags are the flags parsed further after flag.Parse.
type rawFlags struct{ delim, keySep, key, acks, compression, expect, expectKey string }

// parseFlags parses the command line; on error it has printed the reason
// and the usage to stderr.
func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{partition: -1, expectOffset: -1}
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	var raw rawFlags
	registerFlags(fs, cfg, &raw)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := cfg.check(fs, &raw); err != nil {
		fmt.Fprintf(stderr, "produce: %v\n", err)
		fs.Usage()
		return nil, err
	}
	return cfg, nil
}

// registerFlags defines every flag on fs, into cfg and raw.
func registerFlags(fs *flag.FlagSet, cfg *config, raw *rawFlags) {
	defBrokers := os.Getenv("SKEIN_BROKERS")
	if defBrokers == "" {
		defBrokers = client.DefaultBroker
	}
	for _, n := range []string{"b", "brokers"} {
		fs.StringVar(&cfg.brokers, n, defBrokers, "brokers, a comma-separated list (env SKEIN_BROKERS)")
	}
	cfg.user.Register(fs)
	for _, n := range []string{"t", "topic"} {
		fs.StringVar(&cfg.topic, n, "", "topic to produce to (required)")
	}
	fs.StringVar(&raw.delim, "D", `\n`, "record delimiter of the input")
	fs.StringVar(&raw.keySep, "K", "", "key separator: the text before the first SEP of a line is the key")
	fs.StringVar(&raw.key, "k", "", "fixed key for every record")
	fs.Var(headerFlags{&cfg.headers}, "H", "header key=value for every record (repeatable)")
	fs.IntVar(&cfg.partition, "p", -1, "partition (default: murmur2 of the key, sticky when there is none)")
	fs.StringVar(&raw.acks, "acks", "all", "acknowledgement: all, leader (1) or none (0)")
	fs.BoolVar(&cfg.idempotent, "idempotent", true, "idempotent producer: retries never write a record twice (off with --acks none)")
	fs.BoolVar(&cfg.json, "json", false, "each input line is a JSON record (as consume --json writes)")
	fs.StringVar(&raw.expect, "expect-offset", "", "append all input as one batch only if the partition's next offset is N")
	fs.StringVar(&raw.expectKey, "expect-key-offset", "", "append all input (one key) as one batch only if the key's last record is at offset N (-1: none)")
	fs.StringVar(&raw.compression, "compression", "none", "batch codec: none, gzip, snappy, lz4, zstd")
	fs.DurationVar(&cfg.linger, "linger", 5*time.Millisecond, "how long a batch waits for more records")
	fs.IntVar(&cfg.batchBytes, "batch-bytes", 1<<20, "maximum batch size in bytes")
	fs.IntVar(&cfg.maxRecordBytes, "max-record-bytes", 0, "longest accepted record (default: the topic's max record bytes, else 1 MiB)")
	fs.Int64Var(&cfg.count, "count", 0, "bench mode: produce N generated records instead of reading stdin")
	fs.IntVar(&cfg.size, "size", 100, "bench mode: value size in bytes")
	fs.Float64Var(&cfg.rate, "rate", 0, "bench mode: records per second (default: as fast as possible)")
	fs.StringVar(&cfg.payload, "payload", "random", "bench mode payload: random or json (compressible)")
	fs.StringVar(&cfg.stats, "stats", "", `"json": print the summary as JSON on stdout`)
	for _, n := range []string{"report", "v"} {
		fs.BoolVar(&cfg.report, n, false, `print "partition offset input" for every acknowledged record`)
	}
	fs.DurationVar(&cfg.timeout, "delivery-timeout", 2*time.Minute, "give up on a record after this long")
	cfg.tls.Register(fs)
}

// check validates the parsed flags and fills in the fields parsed from raw.
func (cfg *config) check(fs *flag.FlagSet, raw *rawFlags) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cfg.topic == "" {
		return errors.New("-t TOPIC is required")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := cfg.checkInput(raw, set); err != nil {
		return err
	}
	if err := cfg.checkProducer(raw, set); err != nil {
		return err
	}
	return cfg.checkBench(set)
}

// checkInput checks how input becomes records: delimiter, keys, partition.
func (cfg *config) checkInput(raw *rawFlags, set map[string]bool) error {
	var err error
	if cfg.delim, err = unescape(raw.delim); err != nil || len(cfg.delim) == 0 {
		return fmt.Errorf("-D %q: %v", raw.delim, nonEmpty(err))
	}
	if set["K"] {
		if cfg.keySep, err = unescape(raw.keySep); err != nil || len(cfg.keySep) == 0 {
			return fmt.Errorf("-K %q: %v", raw.keySep, nonEmpty(err))
		}
	}
	if set["k"] {
		if cfg.key, err = unescape(raw.key); err != nil {
			return fmt.Errorf("-k %q: %v", raw.key, err)
		}
	}
	switch {
	case set["K"] && set["k"]:
		return errors.New("-K and -k are exclusive")
	case cfg.json && (set["K"] || set["k"]):
		return errors.New("--json takes keys from the JSON records: drop -K/-k")
	case cfg.partition < -1 || (set["p"] && cfg.partition < 0):
		return fmt.Errorf("-p %d: a partition is 0 or more", cfg.partition)
	}
	return nil
}

// checkProducer checks the producer's settings.
func (cfg *config) checkProducer(raw *rawFlags, set map[string]bool) error {
	var err error
	if cfg.acks, err = client.ParseAcks(raw.acks); err != nil {
		return fmt.Errorf("--acks: %v", err)
	}
	if cfg.acks == client.AcksNone && cfg.idempotent {
		if set["idempotent"] {
			return errors.New("--idempotent needs answers: use --acks leader or all")
		}
		cfg.idempotent = false
	}
	if cfg.compression, err = client.ParseCompression(raw.compression); err != nil {
		return fmt.Errorf("--compression: %v", err)
	}
	if raw.expect != "" {
		if cfg.expectOffset, err = strconv.ParseInt(raw.expect, 10, 64); err != nil || cfg.expectOffset < 0 {
			return fmt.Errorf("--expect-offset %q: want an offset, 0 or more", raw.expect)
		}
	}
	if set["expect-key-offset"] {
		if cfg.expectKeyOffset, err = parseKeyOffset(raw.expectKey); err != nil {
			return err
		}
		cfg.expectKey = true
		if raw.expect != "" || set["count"] {
			return errors.New("--expect-key-offset appends standard input: drop --expect-offset and --count")
		}
		if !set["K"] && !set["k"] && !cfg.json {
			return errors.New("--expect-key-offset needs keyed records: give -K SEP or -k KEY")
		}
	}
	if cfg.linger < 0 || cfg.batchBytes <= 0 || cfg.maxRecordBytes < 0 || cfg.timeout <= 0 {
		return errors.New("--linger, --batch-bytes, --max-record-bytes and --delivery-timeout must be positive")
	}
	return nil
}

// checkBench checks the bench mode's flags and the output format.
func (cfg *config) checkBench(set map[string]bool) error {
	switch {
	case cfg.count < 0 || cfg.size < 0 || cfg.rate < 0:
		return errors.New("--count, --size and --rate must be positive")
	case cfg.count == 0 && (set["size"] || set["rate"] || set["payload"]):
		return errors.New("--size, --rate and --payload need --count")
	case cfg.count > 0 && (cfg.json || set["D"] || set["K"]):
		return errors.New("--count generates records: --json, -D and -K read standard input")
	case cfg.payload != "random" && cfg.payload != "json":
		return fmt.Errorf("--payload %q: want random or json", cfg.payload)
	case cfg.stats != "" && cfg.stats != "json":
		return fmt.Errorf(`--stats %q: the only format is "json"`, cfg.stats)
	}
	return nil
}

func nonEmpty(err error) error {
	if err == nil {
		return errors.New("must not be empty")
	}
	return err
}

// unescape expands \n \t \r \0 \\ and \xNN.
func unescape(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i == len(s) {
			return nil, errors.New(`a trailing \ escapes nothing`)
		}
		switch s[i] {
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case '0':
			out = append(out, 0)
		case '\\':
			out = append(out, '\\')
		case 'x':
			if i+2 >= len(s) {
				return nil, fmt.Errorf(`\x needs two hex digits`)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf(`\x%s: not two hex digits`, s[i+1:i+3])
			}
			out = append(out, byte(v))
			i += 2
		default:
			return nil, fmt.Errorf(`unknown escape \%c (known: \n \t \r \0 \\ \xNN)`, s[i])
		}
	}
	return out, nil
}
