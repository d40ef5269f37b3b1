package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/skeinlog/skein/client"
)

const configUsage = `Usage:
  broker config get                 the run-time settings of a broker, with their values and sources
  broker config set NAME VALUE      change a setting on every broker (kept across restarts)
  broker config unset NAME          back to each broker's start-up value
Settings: log.level (debug|info|warn|error), retention.check.interval (1s..24h).
Common flags: --brokers, --timeout (as for "broker topic").
`

// runConfig is "broker config": run-time broker settings.
func runConfig(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, configUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	want := map[string]int{"get": 0, "set": 2, "unset": 1}
	if sub == "-h" || sub == "-help" || sub == "--help" || sub == "help" {
		fmt.Fprint(stdout, configUsage)
		return 0
	}
	n, ok := want[sub]
	if !ok {
		fmt.Fprintf(stderr, "broker config: unknown command %q\n\n%s", sub, configUsage)
		return 2
	}
	what := "broker config " + sub
	fs := flag.NewFlagSet(what, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var admin adminFlags
	admin.register(fs)
	positional, code, done := parseArgs(fs, args)
	if done {
		return code
	}
	if len(positional) != n {
		fmt.Fprintf(stderr, "%s: want %d argument(s), got %d\n\n%s", what, n, len(positional), configUsage)
		return 2
	}
	return withClient(ctx, stderr, what, admin, func(ctx context.Context, cl *client.Client) error {
		switch sub {
		case "set":
			if positional[1] == "" {
				return fmt.Errorf("empty value: use broker config unset %s", positional[0])
			}
			if err := cl.SetBrokerConfig(ctx, positional[0], positional[1]); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s set to %s on every broker\n", positional[0], positional[1])
		case "unset":
			if err := cl.SetBrokerConfig(ctx, positional[0], ""); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s back to each broker's start-up value\n", positional[0])
		default:
			id, settings, err := cl.BrokerConfig(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "broker %d\n", id)
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVALUE\tSOURCE\tDESCRIPTION")
			for _, s := range settings {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, s.Value, s.Source, s.Doc)
			}
			return tw.Flush()
		}
		return nil
	})
}
