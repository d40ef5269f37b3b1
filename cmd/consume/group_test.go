package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

func TestGroupConsume(t *testing.T) {
	b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) { c.Groups.OffsetsPartitions = 2 }))
	conn, err := grpc.NewClient(b.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewSkeinClient(conn)
	ctx := context.Background()
	for _, name := range []string{"orders-eu", "orders-us"} {
		if _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: name, Partitions: 2}); err != nil {
			t.Fatal(err)
		}
	}
	produce := func(topic string, vals ...string) {
		for p := range int32(2) {
			bb := batch.NewBuilder(batch.None)
			for _, v := range vals {
				bb.Add(&batch.Record{Value: []byte(fmt.Sprintf("%s/%d/%s", topic, p, v))})
			}
			raw, _ := bb.Build(nil)
			if _, err := c.Produce(ctx, &pb.ProduceRequest{Topic: topic, Partition: p, LeaderEpoch: -1, Batch: raw}); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce("orders-eu", "1", "2")
	produce("orders-us", "1")
	consume := func(args ...string) (int, string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var out, errb bytes.Buffer
		code := run(ctx, append([]string{"-b", b.Addr(), "-e"}, args...), nil, &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errs := consume("-G", "billing", "-t", "^orders-.*", "--reset", "beginning")
	if code != 0 || strings.Count(out, "\n") != 6 {
		t.Fatalf("first run: exit %d, %q, %s", code, out, errs)
	}
	produce("orders-eu", "3")
	code, out, errs = consume("-G", "billing", "-t", "orders-eu,orders-us")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, "orders-eu/0/3") {
		t.Fatalf("restart read %q (exit %d, %s); want only the two new records", out, code, errs)
	}
	// --no-commit reads but leaves the group's offsets alone.
	produce("orders-us", "2")
	if code, out, _ = consume("-G", "billing", "-t", "orders-us", "--no-commit"); code != 0 || strings.Count(out, "\n") != 2 {
		t.Fatalf("--no-commit: exit %d %q", code, out)
	}
	if code, out, _ = consume("-G", "billing", "-t", "orders-us", "-c", "1"); code != 0 || strings.Count(out, "\n") != 1 {
		t.Fatalf("-c 1: exit %d %q", code, out)
	}
	if code, out, _ = consume("-G", "billing", "-t", "orders-us"); code != 0 || strings.Count(out, "\n") != 1 {
		t.Fatalf("after -c 1 committed one record, the next run read %q", out)
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"-G", "bad/name", "-t", "x"}, "group name"},
		{[]string{"-G", "g", "-t", "x", "-p", "0"}, "do not go with -G"},
		{[]string{"-G", "g", "-t", "x", "-o", "beginning"}, "do not go with -G"},
		{[]string{"-G", "g", "-t", "x", "--reset", "5"}, "--reset"},
		{[]string{"-G", "g", "-t", "x", "--commit-interval", "0s"}, "--commit-interval"},
		{[]string{"-G", "g", "-t", "x", "--session-timeout", "10ms"}, "--session-timeout"},
		{[]string{"-t", "x", "--no-commit"}, "needs -G"},
	} {
		if code, out, errs := consume(tc.args...); code != 2 || out != "" || !strings.Contains(errs, tc.says) {
			t.Errorf("%v: exit %d, out %q, stderr does not say %q: %s", tc.args, code, out, tc.says, errs)
		}
	}
	if code, _, errs := consume("-G", "g", "-t", "^("); code != 1 || !strings.Contains(errs, "regex") {
		t.Errorf("bad regex: exit %d: %s", code, errs)
	}
}
