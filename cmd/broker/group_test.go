package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/client"
)

func TestGroupCommands(t *testing.T) {
	b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) { c.Groups.OffsetsPartitions = 2 }))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := client.New(client.Brokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.CreateTopic(ctx, "orders", client.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	p, err := cl.NewProducer(client.RecordPartitioner(client.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := p.ProduceSync(ctx, &client.Record{Topic: "orders", Partition: int32(i % 2), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	g, err := cl.NewGroupConsumer("billing", []string{"orders"}, client.ResetOffset(client.Beginning()), client.StopAtEnd(), client.GroupClientID("biller"))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := g.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	cmd := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(ctx, append([]string{"group"}, append(args, "-b", b.Addr(), "--timeout", "5s")...), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errs := cmd("describe", "billing")
	if code != 0 || !strings.Contains(out, "biller") || !strings.Contains(out, "Stable") || !strings.Contains(out, "LAG") {
		t.Fatalf("describe: %d %s %s", code, out, errs)
	}
	code, _, errs = cmd("reset-offsets", "billing", "-t", "orders", "--to", "beginning")
	if code != 1 || !strings.Contains(errs, "biller") || !strings.Contains(errs, "stop them first") {
		t.Fatalf("reset with a member: %d %s", code, errs)
	}
	if code, _, errs = cmd("delete", "billing"); code != 1 || !strings.Contains(errs, "stop them first") {
		t.Fatalf("delete with a member: %d %s", code, errs)
	}
	for {
		if _, err := g.Poll(ctx); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	g.Close() // commits 5 and 5
	topics := func(args ...string) string {
		var out, errb bytes.Buffer
		if code := run(ctx, append([]string{"topic", "list", "-b", b.Addr()}, args...), &out, &errb); code != 0 {
			t.Fatalf("topic list %v: %d %s", args, code, errb.String())
		}
		return out.String()
	}
	if strings.Contains(topics(), "__consumer_offsets") || !strings.Contains(topics("--internal"), "__consumer_offsets") {
		t.Fatalf("topic list: %q; with --internal: %q", topics(), topics("--internal"))
	}
	if code, out, _ = cmd("list"); code != 0 || !strings.Contains(out, "billing") || !strings.Contains(out, "Empty") {
		t.Fatalf("list: %d %s", code, out)
	}
	code, out, _ = cmd("reset-offsets", "billing", "-t", "orders", "--to", "2", "--dry-run")
	if code != 0 || !strings.Contains(out, "dry run") {
		t.Fatalf("dry run: %d %s", code, out)
	}
	if offs, _ := cl.GroupOffsets(ctx, "billing"); offs[client.TopicPartition{Topic: "orders", Partition: 0}] != 5 {
		t.Fatalf("dry run stored: %v", offs)
	}
	if code, out, errs = cmd("reset-offsets", "billing", "-t", "orders", "--to", "2"); code != 0 {
		t.Fatalf("reset: %d %s %s", code, out, errs)
	}
	if offs, _ := cl.GroupOffsets(ctx, "billing"); offs[client.TopicPartition{Topic: "orders", Partition: 1}] != 2 {
		t.Fatalf("after reset: %v", offs)
	}
	if code, _, errs = cmd("reset-offsets", "billing", "-t", "orders", "--to", "99"); code != 1 || !strings.Contains(errs, "valid offsets are 0 to 5") {
		t.Fatalf("reset past the end: %d %s", code, errs)
	}
	for _, bad := range [][]string{
		{"reset-offsets", "billing", "--to", "end"},
		{"reset-offsets", "billing", "-t", "orders", "--to", "soon"},
		{"describe"},
		{"describe", "a", "b"},
		{"describe", "bad/name"},
		{"list", "x"},
		{"frobnicate"},
	} {
		if code, _, errs := cmd(bad...); code != 2 || errs == "" {
			t.Errorf("%v: exit %d, %s", bad, code, errs)
		}
	}
	if code, out, _ = cmd("delete", "billing"); code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %d %s", code, out)
	}
	if code, _, errs = cmd("describe", "billing"); code != 1 || !strings.Contains(errs, "unknown group") {
		t.Fatalf("describe deleted: %d %s", code, errs)
	}
}
