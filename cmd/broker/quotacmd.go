package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/cluster"
)

const quotaUsage = `Usage:
  broker quota set ENTITY [--produce-bytes RATE] [--fetch-bytes RATE] [--request-rate N]
  broker quota remove ENTITY [--produce-bytes] [--fetch-bytes] [--request-rate]   (none: all of the entity's rates)
  broker quota list
ENTITY is --client-id ID or --default-client, and/or --quota-user NAME or --default-user.
RATE is bytes per second with a unit: 10MB/s, 512KiB/s, 1GB/s (B, KB, MB, GB, KiB, MiB, GiB).
N is requests per second (0.5, 100). A client over a quota is throttled: its answers are
delayed until its rate is back under the quota. Set on every broker, kept across restarts.
Common flags: --brokers, --timeout (as for "broker topic").
`

// quotaFlags are the flags of quota set and remove.
type quotaFlags struct {
	entity               client.QuotaEntity
	produce, fetch, reqs string
	rmProduce, rmFetch   bool
	rmReqs               bool
}

func (q *quotaFlags) register(fs *flag.FlagSet, remove bool) {
	fs.StringVar(&q.entity.ClientID, "client-id", "", "the client id the quota applies to")
	fs.BoolVar(&q.entity.DefaultClient, "default-client", false, "the quota of every client id without one of its own")
	fs.StringVar(&q.entity.User, "quota-user", "", "the user (principal name) the quota applies to (--user is who runs the command)")
	fs.BoolVar(&q.entity.DefaultUser, "default-user", false, "the quota of every user without one of its own")
	if remove {
		fs.BoolVar(&q.rmProduce, "produce-bytes", false, "remove the produce byte rate")
		fs.BoolVar(&q.rmFetch, "fetch-bytes", false, "remove the fetch byte rate")
		fs.BoolVar(&q.rmReqs, "request-rate", false, "remove the request rate")
		return
	}
	fs.StringVar(&q.produce, "produce-bytes", "", "produce bytes per second, like 10MB/s")
	fs.StringVar(&q.fetch, "fetch-bytes", "", "fetch bytes per second, like 50MB/s")
	fs.StringVar(&q.reqs, "request-rate", "", "requests per second, like 100")
}

// limits parses the rates of quota set. Pure.
func (q *quotaFlags) limits() (client.QuotaLimits, error) {
	var l client.QuotaLimits
	var err error
	if q.produce != "" {
		if l.ProduceBytesPerSec, err = cluster.ParseByteRate(q.produce); err != nil {
			return l, fmt.Errorf("--produce-bytes: %w", err)
		}
	}
	if q.fetch != "" {
		if l.FetchBytesPerSec, err = cluster.ParseByteRate(q.fetch); err != nil {
			return l, fmt.Errorf("--fetch-bytes: %w", err)
		}
	}
	if q.reqs != "" {
		if l.RequestsPerSec, err = cluster.ParseRequestRate(q.reqs); err != nil {
			return l, fmt.Errorf("--request-rate: %w", err)
		}
	}
	if l == (client.QuotaLimits{}) {
		return l, errors.New("give at least one of --produce-bytes, --fetch-bytes, --request-rate")
	}
	return l, nil
}

// removed lists the kinds quota remove removes: those flagged, or all.
func (q *quotaFlags) removed() []client.QuotaKind {
	var ks []client.QuotaKind
	for _, f := range []struct {
		on bool
		k  client.QuotaKind
	}{{q.rmProduce, client.QuotaProduceBytes}, {q.rmFetch, client.QuotaFetchBytes}, {q.rmReqs, client.QuotaRequests}} {
		if f.on {
			ks = append(ks, f.k)
		}
	}
	if len(ks) == 0 {
		return []client.QuotaKind{client.QuotaProduceBytes, client.QuotaFetchBytes, client.QuotaRequests}
	}
	return ks
}

// runQuota is "broker quota": client quotas.
func runQuota(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, quotaUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, quotaUsage)
		return 0
	case "set", "remove", "list":
	default:
		fmt.Fprintf(stderr, "broker quota: unknown command %q\n\n%s", sub, quotaUsage)
		return 2
	}
	what := "broker quota " + sub
	fs := flag.NewFlagSet(what, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var admin adminFlags
	admin.register(fs)
	var q quotaFlags
	if sub != "list" {
		q.register(fs, sub == "remove")
	}
	positional, code, done := parseArgs(fs, args)
	if done {
		return code
	}
	if len(positional) != 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n\n%s", what, positional[0], quotaUsage)
		return 2
	}
	var set client.QuotaLimits
	if sub == "set" {
		var err error
		if set, err = q.limits(); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", what, err)
			return 2
		}
	}
	return withClient(ctx, stderr, what, admin, func(ctx context.Context, cl *client.Client) error {
		switch sub {
		case "set":
			if err := cl.AlterQuota(ctx, q.entity, set); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "quota of %s set on every broker\n", entityString(q.entity))
		case "remove":
			if err := cl.AlterQuota(ctx, q.entity, client.QuotaLimits{}, q.removed()...); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "quota of %s removed\n", entityString(q.entity))
		default:
			qs, err := cl.Quotas(ctx)
			if err != nil {
				return err
			}
			return printQuotas(stdout, qs)
		}
		return nil
	})
}

func entityString(e client.QuotaEntity) string {
	return cluster.QuotaEntity{User: e.User, DefaultUser: e.DefaultUser, ClientID: e.ClientID, DefaultClient: e.DefaultClient}.String()
}

func printQuotas(w io.Writer, qs []client.Quota) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTITY\tPRODUCE BYTES/S\tFETCH BYTES/S\tREQUESTS/S")
	for _, q := range qs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", entityString(q.Entity), rateCell(float64(q.Limits.ProduceBytesPerSec)),
			rateCell(float64(q.Limits.FetchBytesPerSec)), rateCell(q.Limits.RequestsPerSec))
	}
	return tw.Flush()
}

func rateCell(v float64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
