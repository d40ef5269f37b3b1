package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/skeinlog/skein/client"
)

// groupFlags are the consumer-group flags.
type groupFlags struct {
	name           string
	reset          string
	resetOffset    client.Offset
	commitInterval time.Duration
	noCommit       bool
	sessionTimeout time.Duration
	rack           string
}

func (g *groupFlags) register(fs *flag.FlagSet) {
	for _, n := range []string{"G", "group"} {
		fs.StringVar(&g.name, n, "", "consumer group")
	}
	fs.StringVar(&g.reset, "reset", "end", "start of partitions without a committed offset")
	fs.DurationVar(&g.commitInterval, "commit-interval", 5*time.Second, "automatic commit interval")
	fs.BoolVar(&g.noCommit, "no-commit", false, "never commit")
	fs.DurationVar(&g.sessionTimeout, "session-timeout", 10*time.Second, "session timeout")
	fs.StringVar(&g.rack, "rack", os.Getenv("SKEIN_RACK"), "this member's rack (env SKEIN_RACK)")
}

// check validates the group flags against the others that were set.
func (g *groupFlags) check(set map[string]bool) error {
	if g.name == "" {
		for _, f := range []string{"reset", "commit-interval", "no-commit", "session-timeout", "rack"} {
			if set[f] {
				return fmt.Errorf("--%s needs -G GROUP", f)
			}
		}
		return nil
	}
	if set["p"] || set["o"] {
		return fmt.Errorf("-p and -o do not go with -G: the group assigns the partitions and its committed offsets say where to start (--reset says where when there are none)")
	}
	if err := client.CheckGroupName(g.name); err != nil {
		return fmt.Errorf("-G: %v", err)
	}
	switch g.reset {
	case "beginning", "earliest", "end", "latest":
	default:
		if !strings.HasPrefix(g.reset, "@") {
			return fmt.Errorf("--reset %q: want beginning, end or @TIME", g.reset)
		}
	}
	o, err := parseOffset(g.reset)
	if err != nil {
		return fmt.Errorf("--reset: %v", err)
	}
	g.resetOffset = o
	if g.commitInterval <= 0 {
		return fmt.Errorf("--commit-interval %v: must be positive", g.commitInterval)
	}
	if g.sessionTimeout < time.Second || g.sessionTimeout > 5*time.Minute {
		return fmt.Errorf("--session-timeout %v: between 1s and 5m", g.sessionTimeout)
	}
	return nil
}

// openGroup joins the group: -t is a list of topics, or a regular
// expression when it starts with ^.
func openGroup(c *client.Client, cfg *config, opts []client.ConsumerOpt) (*client.GroupConsumer, error) {
	g := cfg.group
	host, _ := os.Hostname()
	opts = append(opts, client.ResetOffset(g.resetOffset), client.CommitInterval(g.commitInterval),
		client.AutoCommit(!g.noCommit), client.SessionTimeout(g.sessionTimeout),
		client.GroupClientID(fmt.Sprintf("consume@%s/%d", host, os.Getpid())), client.ClientRack(g.rack))
	var topics []string
	if strings.HasPrefix(cfg.topic, "^") {
		opts = append(opts, client.TopicRegex(cfg.topic))
	} else {
		topics = strings.Split(cfg.topic, ",")
	}
	return c.NewGroupConsumer(g.name, topics, opts...)
}

// poll reads the next records: one at a time when a count is set, so that
// nothing past the count is returned (and committed) unwritten.
func poll(ctx context.Context, k source, one bool) ([]*client.Record, error) {
	if !one {
		return k.Poll(ctx)
	}
	r, err := k.Next(ctx)
	if err != nil {
		return nil, err
	}
	return []*client.Record{r}, nil
}

// source is what copyRecords reads: a Consumer or a GroupConsumer.
type source interface {
	Poll(ctx context.Context) ([]*client.Record, error)
	Next(ctx context.Context) (*client.Record, error)
}

// runGroup consumes as a group member and leaves the group at the end,
// committing what was written.
func runGroup(ctx context.Context, c *client.Client, cfg *config, stdout, stderr io.Writer, logf func(string, ...any)) int {
	var opts []client.ConsumerOpt
	if cfg.exitAtEnd {
		opts = append(opts, client.StopAtEnd())
	}
	g, err := openGroup(c, cfg, opts)
	if err != nil {
		logf("%v", err)
		return exitUsage
	}
	start := time.Now()
	records, bytes, code := copyRecords(ctx, g, cfg, stdout, logf)
	if records >= 0 && !cfg.group.noCommit {
		// Everything returned was written: commit it all before leaving
		// (Close alone commits only what came before the last call).
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := g.Commit(cctx); err != nil {
			logf("committing before leaving group %q: %v", cfg.group.name, err)
			code = exitFailed
		}
		cancel()
	}
	if err := g.Close(); err != nil {
		logf("leaving group %q: %v", cfg.group.name, err)
		code = exitFailed
	}
	if records < 0 {
		return exitFailed
	}
	printSummary(cfg, g, records, bytes, time.Since(start), stdout, stderr)
	return code
}
