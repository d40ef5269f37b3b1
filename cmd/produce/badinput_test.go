package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/skeinlog/skein/broker/brokertest"
	pb "github.com/skeinlog/skein/proto/skeinv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Bad CLI input against a real broker: a clear error, a non-zero exit, and
// nothing sent (the partition's log end offset does not move).
func TestBadInputAgainstBroker(t *testing.T) {
	b := brokertest.Start(t)
	conn, err := grpc.NewClient(b.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	maxRec := int32(100)
	if _, err := pb.NewSkeinClient(conn).CreateTopic(context.Background(), &pb.CreateTopicRequest{Name: "cli", Partitions: 2, MaxRecordBytes: &maxRec}); err != nil {
		t.Fatal(err)
	}
	end := func() int64 {
		return b.Partition("cli", 0).State().LogEndOffset + b.Partition("cli", 1).State().LogEndOffset
	}
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		says  string
	}{
		// The topic's max.record.bytes (100) is the default limit: the line
		// is refused before anything is sent.
		{"line over the topic's max record bytes", strings.Repeat("x", 101) + "\n", []string{"-p", "0"}, 1, "longer than 100 bytes"},
		{"key and value over it", "k:" + strings.Repeat("x", 99) + "\n", []string{"-p", "0", "-K", ":"}, 1, "longer than 100 bytes"},
		{"unknown partition", "x\n", []string{"-p", "99"}, 1, "partition 99 does not exist"},
		{"invalid topic", "x\n", []string{"-t", "../etc"}, 1, "invalid topic name"},
		{"negative partition", "x\n", []string{"-p", "-2"}, 2, "Usage: produce"},
		{"bad acks", "x\n", []string{"--acks", "most"}, 2, "--acks"},
		{"acks 2", "x\n", []string{"--acks", "2"}, 2, "--acks"},
		{"bad compression", "x\n", []string{"--compression", "rar"}, 2, "--compression"},
		{"negative expect offset", "x\n", []string{"--expect-offset", "-1"}, 2, "Usage: produce"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := end()
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"-b", b.Addr(), "-t", "cli"}, tc.args...), strings.NewReader(tc.stdin), &out, &errb)
			if code != tc.code || !strings.Contains(errb.String(), tc.says) {
				t.Fatalf("exit %d, want %d; stderr does not say %q:\n%s", code, tc.code, tc.says, errb.String())
			}
			if after := end(); after != before {
				t.Fatalf("log end offsets moved %d -> %d", before, after)
			}
		})
	}
}
