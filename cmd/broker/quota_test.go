package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/client"
)

func TestQuotaCommands(t *testing.T) {
	b := brokertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(ctx, append([]string{"quota"}, append(args, "-b", b.Addr(), "--timeout", "10s")...), &out, &errb)
		return code, out.String(), errb.String()
	}
	list := func() string {
		code, out, errs := cmd("list")
		if code != 0 {
			t.Fatalf("list: %d %s", code, errs)
		}
		return out
	}
	empty := list()
	// Bad input: a clear message, exit 2 (usage) or 1 (refused by the
	// broker), and nothing stored.
	bad := []struct {
		args []string
		msg  string
	}{
		{[]string{"set", "--client-id", "x", "--produce-bytes", "-10MB/s"}, "want a positive number, not a negative one"},
		{[]string{"set", "--client-id", "x", "--produce-bytes", "ten"}, `unknown unit "ten"`},
		{[]string{"set", "--client-id", "x", "--fetch-bytes", "10XB/s"}, `unknown unit "XB"`},
		{[]string{"set", "--client-id", "x", "--request-rate", "-3"}, "want more than 0"},
		{[]string{"set", "--client-id", "x", "--request-rate", "many"}, "want a positive number of requests"},
		{[]string{"set", "--client-id", "x"}, "give at least one of"},
		{[]string{"set", "--produce-bytes", "1MB/s"}, "name a client id, a user, or both"},
		{[]string{"set", "--client-id", "x", "--default-client", "--produce-bytes", "1MB/s"}, "choose one"},
		{[]string{"set", "--client-id", "a\tb", "--produce-bytes", "1MB/s"}, "control character"},
	}
	for _, c := range bad {
		code, _, errs := cmd(c.args...)
		if code == 0 || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want a failure saying %q", c.args, code, errs, c.msg)
		}
	}
	if got := list(); got != empty {
		t.Fatalf("refused changes stored quotas:\n%s", got)
	}

	if code, out, errs := cmd("set", "--client-id", "loader", "--produce-bytes", "10MB/s", "--request-rate", "50"); code != 0 || !strings.Contains(out, "client-id=loader") {
		t.Fatalf("set: %d %s %s", code, out, errs)
	}
	if code, _, errs := cmd("set", "--default-client", "--fetch-bytes", "1MiB/s"); code != 0 {
		t.Fatalf("set default: %d %s", code, errs)
	}
	out := list()
	for _, want := range []string{"client-id=loader", "10000000", "50", "client-id=<default>", "1048576"} {
		if !strings.Contains(out, want) {
			t.Fatalf("list misses %q:\n%s", want, out)
		}
	}

	// Quotas are controller state: they survive a restart.
	b.Restart()
	cl, err := client.New(client.Brokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	qs, err := cl.Quotas(ctx)
	if err != nil || len(qs) != 2 {
		t.Fatalf("after a restart: %v %v", qs, err)
	}

	if code, _, errs := cmd("remove", "--client-id", "loader", "--request-rate"); code != 0 {
		t.Fatalf("remove one rate: %d %s", code, errs)
	}
	qs, _ = cl.Quotas(ctx)
	if len(qs) != 2 || qs[1].Limits != (client.QuotaLimits{ProduceBytesPerSec: 10_000_000}) {
		t.Fatalf("after removing the request rate: %+v", qs)
	}
	if code, _, errs := cmd("remove", "--client-id", "loader"); code != 0 {
		t.Fatalf("remove all: %d %s", code, errs)
	}
	if qs, _ = cl.Quotas(ctx); len(qs) != 1 || !qs[0].Entity.DefaultClient {
		t.Fatalf("after removing loader: %+v", qs)
	}
}
