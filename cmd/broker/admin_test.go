package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker"
)

var (
	errStarting = errors.New("unavailable: the broker is starting")
	errExists   = errors.New("topic already exists")
)

func isStarting(err error) bool { return errors.Is(err, errStarting) }

func TestRetryDelayGrowsToOneSecond(t *testing.T) {
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	for i, w := range want {
		if got := retryDelay(i + 1); got != w {
			t.Errorf("retryDelay(%d) = %v, want %v", i+1, got, w)
		}
	}
}

func TestAdminCallRetriesWhileTheClusterStarts(t *testing.T) {
	var stderr bytes.Buffer
	calls := 0
	err := adminCall(context.Background(), &stderr, "broker topic create", 10*time.Second, isStarting, func(context.Context) error {
		calls++
		if calls < 3 {
			return errStarting
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("err %v after %d calls, want success on the 3rd", err, calls)
	}
	if n := strings.Count(stderr.String(), "retrying for up to 10s"); n != 1 {
		t.Fatalf("stderr %q: want exactly one waiting message", stderr.String())
	}
}

func TestAdminCallStopsAtAnErrorRetryingCannotFix(t *testing.T) {
	var stderr bytes.Buffer
	calls := 0
	err := adminCall(context.Background(), &stderr, "broker topic create", 10*time.Second, isStarting, func(context.Context) error {
		calls++
		return errExists
	})
	if !errors.Is(err, errExists) || calls != 1 || stderr.Len() != 0 {
		t.Fatalf("err %v, %d calls, stderr %q: want the error at once, no retry", err, calls, stderr.String())
	}
}

func TestAdminCallGivesUpAfterTheTimeout(t *testing.T) {
	var stderr bytes.Buffer
	start := time.Now()
	err := adminCall(context.Background(), &stderr, "broker cluster", 300*time.Millisecond, isStarting, func(context.Context) error {
		return errStarting
	})
	if err == nil || !strings.Contains(err.Error(), "gave up after 300ms (--timeout)") || !errors.Is(err, errStarting) {
		t.Fatalf("err %v: want a give-up error wrapping the last one", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("took %v to give up after a 300ms timeout", el)
	}
}

func TestHelpAtEveryLevel(t *testing.T) {
	for _, args := range [][]string{
		{"help"}, {"topic", "-h"}, {"topic", "help"}, {"topic", "create", "-h"}, {"topic", "list", "--help"},
		{"topic", "describe", "-h"}, {"topic", "alter", "-h"}, {"config", "-h"}, {"config", "set", "-h"}, {"topic", "delete", "-h"}, {"cluster", "-h"}, {"healthcheck", "-h"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 0 {
			t.Errorf("broker %s: exit %d, want 0\n%s", strings.Join(args, " "), code, errb.String())
		}
		if out.Len()+errb.Len() == 0 {
			t.Errorf("broker %s printed nothing", strings.Join(args, " "))
		}
	}
}

func TestUnknownCommandsAndArguments(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"topik"}, `unknown command "topik"`},
		{[]string{"topic", "craete", "x"}, `unknown command "craete"`},
		{[]string{"topic", "create"}, "give the topic name"},
		{[]string{"topic", "create", "a", "b"}, "give exactly one topic name (got 2: a b)"},
		{[]string{"topic", "list", "extra"}, "takes no arguments (got extra)"},
		{[]string{"cluster", "extra"}, "takes no arguments (got extra)"},
		{[]string{"topic", "create", "x", "--partitions", "0"}, "--partitions 0: must be at least 1"},
		{[]string{"topic", "alter", "x"}, "nothing to change: give --partitions"},
		{[]string{"topic", "alter", "x", "--partitions", "0"}, "--partitions 0: must be at least 1"},
		{[]string{"topic", "alter", "x", "--retention", "soon"}, `--retention "soon": want a duration`},
		{[]string{"topic", "alter", "x", "--max-record-bytes", "lots"}, `--max-record-bytes "lots": want a size`},
		{[]string{"topic", "alter"}, "give the topic name"},
		{[]string{"topic", "alter", "x", "--delete-retention", "soon"}, `--delete-retention "soon": want a duration like 24h`},
		{[]string{"topic", "create", "x", "--delete-retention", "-1"}, `--delete-retention "-1": want a duration like 24h`},
		{[]string{"topic", "create", "x", "--delete-retention", "0"}, "--delete-retention 0 at creation"},
		{[]string{"serve", "--cleaner-io-mb-per-s", "fast"}, `--cleaner-io-mb-per-s "fast": want MiB per second`},
		{[]string{"serve", "--cleaner-interval", "1ns"}, `--cleaner-interval "1ns": want a duration of at least 10ms`},
		{[]string{"config"}, "broker config get"},
		{[]string{"config", "put", "a", "b"}, `unknown command "put"`},
		{[]string{"config", "set", "log.level"}, "want 2 argument(s), got 1"},
		{[]string{"config", "unset"}, "want 1 argument(s), got 0"},
	} {
		var out, errb bytes.Buffer
		code := run(context.Background(), c.args, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("broker %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(c.args, " "), code, errb.String(), c.want)
		}
	}
}

// A broker of a cluster (--join or --bootstrap-expect) does not take the
// single-broker default ports of the peer and Kafka listeners, so brokers
// sharing a host do not collide; explicit addresses are kept.
func TestClusteredBrokersTakeFreePeerAndKafkaPorts(t *testing.T) {
	parse := func(args ...string) broker.Config {
		t.Helper()
		cfg := broker.DefaultConfig()
		fs := flag.NewFlagSet("broker", flag.ContinueOnError)
		ef := &envFlags{fs: fs}
		var sf serveFlags
		registerServeFlags(ef, &cfg, &sf)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		if err := applyServeFlags(ef, &cfg, sf); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	single := parse()
	if single.PeerAddr != "127.0.0.1:9424" || single.KafkaAddr != "127.0.0.1:9092" {
		t.Fatalf("single broker: peer %q kafka %q", single.PeerAddr, single.KafkaAddr)
	}
	joined := parse("--join", "127.0.0.1:9421", "--addr", "0.0.0.0:9430")
	if joined.PeerAddr != "0.0.0.0:0" || joined.KafkaAddr != "0.0.0.0:0" {
		t.Fatalf("joining broker: peer %q kafka %q", joined.PeerAddr, joined.KafkaAddr)
	}
	explicit := parse("--bootstrap-expect", "3", "--peer-addr", "127.0.0.2:9424", "--kafka-addr", "")
	if explicit.PeerAddr != "127.0.0.2:9424" || explicit.KafkaAddr != "" {
		t.Fatalf("explicit addresses: peer %q kafka %q", explicit.PeerAddr, explicit.KafkaAddr)
	}
}
