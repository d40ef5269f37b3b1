package broker_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// A topic whose partitions would take the broker past its open file limit
// is refused before the controller commits it: the metadata is unchanged
// and nothing is created on disk.
func TestTopicRefusedPastFileHandles(t *testing.T) {
	var open atomic.Int64
	open.Store(100)
	b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) {
		c.FileHandles = func() (int, int, bool) { return int(open.Load()), 1000, true }
	}))
	c := dial(t, b.Addr())
	createTopic(t, c, "fits", 400) // 100 + 800 <= 1000 - 100
	before := b.Metadata()
	dirs := listFiles(t, b.Dir)
	open.Store(850)
	_, err := c.CreateTopic(context.Background(), &pb.CreateTopicRequest{Name: "toomany", Partitions: 30})
	code, d := detail(t, err)
	if code != codes.ResourceExhausted || d.GetReason() != pb.ErrorReason_ERROR_REASON_UNSPECIFIED ||
		!strings.Contains(d.GetMessage(), "needing 60 file handles") || !strings.Contains(d.GetMessage(), "limit of 1000") {
		t.Fatalf("topic past the handle limit: %v", err)
	}
	after := b.Metadata()
	if after.Version != before.Version || len(after.Topics) != 1 {
		t.Fatalf("metadata changed by a refused topic: version %d -> %d, %d topics", before.Version, after.Version, len(after.Topics))
	}
	if got := listFiles(t, b.Dir); len(got) != len(dirs) {
		t.Fatalf("files changed by a refused topic: %d -> %d", len(dirs), len(got))
	}
	if got := metric(t, b.HTTPAddr(), `skein_refused_requests_total{reason="file_handles"}`); !strings.HasSuffix(got, " 1") {
		t.Fatalf("refused metric: %q", got)
	}
	createTopic(t, c, "small", 10) // 850 + 20 <= 900
	produce(t, c, "small", 3, "still serving")
}
