package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker/brokertest"
)

func TestTopicKeyIndexFlag(t *testing.T) {
	b := brokertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(ctx, append([]string{"topic"}, append(args, "-b", b.Addr(), "--timeout", "5s")...), &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, errs := cmd("create", "accounts", "--key-index"); code != 0 || !strings.Contains(out, "key index") {
		t.Fatalf("create --key-index: %d %s %s", code, out, errs)
	}
	if code, out, errs := cmd("describe", "accounts"); code != 0 || !strings.Contains(out, "key index") {
		t.Fatalf("describe: %d %s %s", code, out, errs)
	}
	if code, out, errs := cmd("create", "plain"); code != 0 || strings.Contains(out, "key index") {
		t.Fatalf("create without the flag: %d %s %s", code, out, errs)
	}
}
