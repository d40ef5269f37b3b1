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

func TestConsumeKey(t *testing.T) {
	b := brokertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.New(client.Brokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateTopic(ctx, "accounts", client.TopicConfig{Partitions: 3, KeyIndex: true}); err != nil {
		t.Fatal(err)
	}
	p, err := c.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, v := range []string{"100", "90", "120"} {
		if err := p.ProduceSync(ctx, &client.Record{Topic: "accounts", Key: []byte("acct-7"), Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	consume := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(ctx, append([]string{"-b", b.Addr(), "-t", "accounts"}, args...), nil, &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, errs := consume("--key", "acct-7"); code != 0 || out != "2 120\n" {
		t.Fatalf("--key acct-7: exit %d, %q, %s", code, out, errs)
	}
	if code, _, errs := consume("--key", "acct-0"); code != 3 || !strings.Contains(errs, "no record") {
		t.Fatalf("--key of a key without records: exit %d: %s", code, errs)
	}
	if code, _, _ := consume("--key", "acct-7", "-o", "beginning"); code != 2 {
		t.Fatalf("--key with -o: exit %d", code)
	}
}
