package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/cli"
)

const defaultBrokers = "127.0.0.1:9420"

// adminFlags are the flags every admin command takes.
type adminFlags struct {
	brokers string
	timeout time.Duration
	user    cli.UserFlags
	tls     cli.TLSFlags
}

func (a *adminFlags) register(fs *flag.FlagSet) {
	def := defaultBrokers
	if v := os.Getenv("SKEIN_BROKERS"); v != "" {
		def = v
	}
	fs.StringVar(&a.brokers, "brokers", def, "comma-separated broker addresses (env SKEIN_BROKERS)")
	fs.StringVar(&a.brokers, "b", def, "shorthand for --brokers")
	a.user.Register(fs)
	fs.DurationVar(&a.timeout, "timeout", 30*time.Second,
		"keep retrying while the cluster is starting, has no controller or is unavailable, for up to this long")
	a.tls.Register(fs)
}

// parseArgs parses flags that may come before or after positional arguments
// ("topic create demo --partitions 3"). It returns the positional arguments,
// or an exit code when parsing ended the command (0 after -h, 2 on an error,
// which the flag package has printed).
func parseArgs(fs *flag.FlagSet, args []string) (positional []string, code int, done bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0, true
			}
			return nil, 2, true
		}
		if fs.NArg() == 0 {
			return positional, 0, false
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// retryDelay is the wait before attempt n+1 (n from 1): 100 ms doubling to 1 s.
func retryDelay(n int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < n && d < time.Second; i++ {
		d *= 2
	}
	return min(d, time.Second)
}

// adminCall runs fn until it succeeds, fails with an error that retrying
// cannot fix (retriable says which can be), or timeout passes. Errors that a
// starting or electing cluster gives (unavailable, no controller, not leader,
// connection refused) are retried, with one line on stderr saying so, as
// Kafka's admin client does.
func adminCall(ctx context.Context, stderr io.Writer, what string, timeout time.Duration, retriable func(error) bool, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for n := 1; ; n++ {
		err := fn(ctx)
		if err == nil || !retriable(err) {
			return err
		}
		if n == 1 {
			fmt.Fprintf(stderr, "%s: cluster not ready (%v); retrying for up to %v\n", what, err, timeout)
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("gave up after %v (--timeout): %w", timeout, err)
			}
			return err
		case <-time.After(retryDelay(n)):
		}
	}
}

// withClient connects to the brokers of a and runs fn with adminCall.
func withClient(ctx context.Context, stderr io.Writer, what string, a adminFlags, fn func(context.Context, *client.Client) error) int {
	cl, err := cli.Connect(a.brokers, &a.user, &a.tls)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", what, err)
		return 2
	}
	defer cl.Close()
	if err := adminCall(ctx, stderr, what, a.timeout, client.IsRetriable, func(ctx context.Context) error { return fn(ctx, cl) }); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", what, err)
		return 1
	}
	return 0
}
