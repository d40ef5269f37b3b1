package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/client"
)

func TestExpectKeyOffset(t *testing.T) {
	b := brokertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.New(client.Brokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateTopic(ctx, "ledger", client.TopicConfig{Partitions: 2, KeyIndex: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTopic(ctx, "plain", client.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	produce := func(input string, args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(ctx, append([]string{"-b", b.Addr()}, args...), strings.NewReader(input), &out, &errb)
		return code, errb.String()
	}
	if code, errs := produce("acct-7:+10\n", "-t", "ledger", "-K", ":", "--expect-key-offset", "-1"); code != 0 {
		t.Fatalf("first record of the key: exit %d: %s", code, errs)
	}
	kv, err := c.GetKey(ctx, "ledger", client.AnyPartition, []byte("acct-7"))
	if err != nil || !kv.Found {
		t.Fatalf("GetKey: %+v %v", kv, err)
	}
	code, errs := produce("acct-7:+10\n", "-t", "ledger", "-K", ":", "--expect-key-offset", "41")
	if want := "is at offset " + itoa(kv.Record.Offset) + ", not 41"; code != 3 || !strings.Contains(errs, want) {
		t.Fatalf("stale expectation: exit %d: %s (want %q)", code, errs, want)
	}
	if code, errs := produce("acct-8:+1\n", "-t", "ledger", "-K", ":", "--expect-key-offset", "3"); code != 3 || !strings.Contains(errs, `key "acct-8" has no record`) {
		t.Fatalf("a key without records: exit %d: %s", code, errs)
	}
	// Two lines of the key, one batch, expecting its last offset.
	if code, errs := produce("acct-7:+1\nacct-7:+2\n", "-t", "ledger", "-K", ":", "--expect-key-offset", itoa(kv.Record.Offset)); code != 0 {
		t.Fatalf("right expectation: exit %d: %s", code, errs)
	}
	if code, errs := produce("acct-7:+1\nacct-9:+2\n", "-t", "ledger", "-K", ":", "--expect-key-offset", "-1"); code != 1 || !strings.Contains(errs, "one key") {
		t.Fatalf("two keys: exit %d: %s", code, errs)
	}
	if code, errs := produce("acct-7:+1\n", "-t", "plain", "-K", ":", "--expect-key-offset", "-1"); code != 1 || !strings.Contains(errs, "--key-index") {
		t.Fatalf("topic without the key index: exit %d: %s", code, errs)
	}
	if code, _ := produce("x\n", "-t", "ledger", "--expect-key-offset", "-2", "-k", "a"); code != 2 {
		t.Fatalf("offset -2: exit %d", code)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
