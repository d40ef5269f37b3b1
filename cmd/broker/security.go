package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/skeinlog/skein/auth"
	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/cli"
)

const userUsage = `Usage:
  broker user create NAME [--mechanism M] [--password-file F]   create a SCRAM user, or change its password
  broker user delete NAME                                        delete a user
  broker user list                                               list users and their mechanisms
The new user's password comes from --password-file (its first line), else
SKEIN_NEW_PASSWORD, else SKEIN_PASSWORD when the command itself runs without
--user, else a prompt on the terminal. It is never printed, and never sent:
the command derives the salted SCRAM keys (--iterations, default 8192, at
least 4096) and the broker stores those.
--mechanism: SCRAM-SHA-256, SCRAM-SHA-512 or both (default both).
Common flags: --brokers, --timeout, --user, --password (as for "broker topic").
`

// runUser is "broker user".
func runUser(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, rest, code, ok := subcommand("broker user", args, map[string]int{"create": 1, "delete": 1, "list": 0}, userUsage, stdout, stderr)
	if !ok {
		return code
	}
	what := "broker user " + sub
	fs := flag.NewFlagSet(what, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var admin adminFlags
	admin.register(fs)
	mech := fs.String("mechanism", "both", "SCRAM-SHA-256, SCRAM-SHA-512 or both")
	pwFile := fs.String("password-file", "", "read the new user's password from this file's first line")
	iters := fs.Int("iterations", auth.DefaultIterations, "PBKDF2 iterations of the new credential (at least 4096)")
	positional, code, done := parseArgs(fs, rest)
	if done {
		return code
	}
	if want := map[string]int{"create": 1, "delete": 1, "list": 0}[sub]; len(positional) != want {
		fmt.Fprintf(stderr, "%s: want %d argument(s), got %d\n\n%s", what, want, len(positional), userUsage)
		return 2
	}
	var creds []client.ScramCredential
	if sub == "create" {
		var err error
		if creds, err = newCredentials(positional[0], *mech, *pwFile, *iters, admin.user.Given(), stderr); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", what, err)
			return 2
		}
	}
	return withClient(ctx, stderr, what, admin, func(ctx context.Context, cl *client.Client) error {
		switch sub {
		case "create":
			created, err := cl.PutUser(ctx, positional[0], creds)
			if err == nil {
				fmt.Fprintf(stdout, "user %s %s (%d credential(s))\n", positional[0], map[bool]string{true: "created", false: "updated"}[created], len(creds))
			}
			return err
		case "delete":
			if err := cl.DeleteUser(ctx, positional[0]); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "user %s deleted\n", positional[0])
			return nil
		}
		users, err := cl.ListUsers(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tMECHANISMS")
		for _, u := range users {
			fmt.Fprintf(tw, "%s\t%s\n", u.Name, strings.Join(u.Mechanisms, ","))
		}
		return tw.Flush()
	})
}

// subcommand splits "SUB args..." and answers help; ok false means return
// code.
func subcommand(cmd string, args []string, subs map[string]int, usage string, stdout, stderr io.Writer) (sub string, rest []string, code int, ok bool) {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return "", nil, 2, false
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return "", nil, 0, false
	}
	if _, known := subs[args[0]]; !known {
		fmt.Fprintf(stderr, "%s: unknown command %q\n\n%s", cmd, args[0], usage)
		return "", nil, 2, false
	}
	return args[0], args[1:], 0, true
}

// newCredentials derives the new user's SCRAM credentials from its password.
func newCredentials(name, mech, pwFile string, iters int, adminGiven bool, stderr io.Writer) ([]client.ScramCredential, error) {
	if err := auth.CheckUserName(name); err != nil {
		return nil, err
	}
	mechs := auth.Mechanisms
	if !strings.EqualFold(mech, "both") {
		m, err := auth.ParseMechanism(mech)
		if err != nil {
			return nil, fmt.Errorf("--mechanism: %w (or both)", err)
		}
		mechs = []auth.Mechanism{m}
	}
	if iters < auth.MinIterations {
		return nil, fmt.Errorf("--iterations %d: at least %d", iters, auth.MinIterations)
	}
	pw, err := newPassword(pwFile, adminGiven, stderr)
	if err != nil {
		return nil, err
	}
	var out []client.ScramCredential
	for _, m := range mechs {
		c, err := auth.NewCredential(m, pw, iters)
		if err != nil {
			return nil, err
		}
		out = append(out, client.ScramCredential{Mechanism: string(c.Mechanism), Salt: c.Salt, Iterations: c.Iterations, StoredKey: c.StoredKey, ServerKey: c.ServerKey})
	}
	return out, nil
}

func newPassword(file string, adminGiven bool, stderr io.Writer) (string, error) {
	switch {
	case file != "":
		return cli.ReadPasswordFile(file)
	case os.Getenv("SKEIN_NEW_PASSWORD") != "":
		return os.Getenv("SKEIN_NEW_PASSWORD"), nil
	case !adminGiven && os.Getenv("SKEIN_PASSWORD") != "":
		return os.Getenv("SKEIN_PASSWORD"), nil
	}
	pw, err := cli.PromptPassword("new user's password: ", stderr)
	if err != nil {
		return "", errors.New("no password for the new user: give --password-file, SKEIN_NEW_PASSWORD, or run on a terminal to be asked")
	}
	return pw, nil
}
