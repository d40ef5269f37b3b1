package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Bad CLI input against a real broker: a clear error, a non-zero exit,
// nothing printed as a record, and the log unchanged.
func TestBadInputAgainstBroker(t *testing.T) {
	b := brokertest.Start(t)
	conn, err := grpc.NewClient(b.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewSkeinClient(conn)
	if _, err := c.CreateTopic(context.Background(), &pb.CreateTopicRequest{Name: "cli", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	bb := batch.NewBuilder(batch.None)
	bb.Add(&batch.Record{Value: []byte("one")})
	bb.Add(&batch.Record{Value: []byte("two")})
	raw, _ := bb.Build(nil)
	if _, err := c.Produce(context.Background(), &pb.ProduceRequest{Topic: "cli", LeaderEpoch: -1, Batch: raw}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"-p", "0", "-o", "50"}, 1, "valid offsets are 0 to 2"},
		{[]string{"-p", "0", "-o", "9223372036854775807"}, 1, "valid offsets are 0 to 2"},
		{[]string{"-p", "0", "-o", "9223372036854775808"}, 2, "Usage: consume"},
		{[]string{"-p", "0", "-o", "soon"}, 2, "Usage: consume"},
		{[]string{"-p", "0", "-o", "@not-a-time"}, 2, "Usage: consume"},
		{[]string{"-p", "99"}, 1, "partition 99"},
		{[]string{"-p", "-1"}, 2, "Usage: consume"},
		{[]string{"-t", "../etc"}, 1, "invalid topic name"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			args := append([]string{"-b", b.Addr(), "-t", "cli", "-e"}, tc.args...)
			code := run(ctx, args, nil, &out, &errb)
			if code != tc.code || !strings.Contains(errb.String(), tc.says) {
				t.Fatalf("exit %d, want %d; stderr does not say %q:\n%s", code, tc.code, tc.says, errb.String())
			}
			if out.Len() != 0 {
				t.Fatalf("printed %q", out.String())
			}
			if st := b.Partition("cli", 0).State(); st.LogEndOffset != 2 || st.HighWatermark != 2 {
				t.Fatalf("log moved: %+v", st)
			}
		})
	}
}
