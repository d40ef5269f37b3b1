package broker_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker/brokertest"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// BenchmarkCreateTopic creates one-partition topics on one broker that
// already has some: each b.N is one CreateTopic, answered once the topic's
// replica is open. SKEIN_BENCH_TOPICS lists the counts of existing topics
// (default 10,1000); a broker needs 2 file handles per partition, so the
// open file limit bounds the largest count on one broker.
func BenchmarkCreateTopic(b *testing.B) {
	counts := []int{10, 1000}
	if v := os.Getenv("SKEIN_BENCH_TOPICS"); v != "" {
		counts = counts[:0]
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				b.Fatalf("SKEIN_BENCH_TOPICS %q: %v", v, err)
			}
			counts = append(counts, n)
		}
	}
	for _, existing := range counts {
		b.Run(fmt.Sprintf("existing=%d", existing), func(b *testing.B) {
			br := brokertest.Start(b)
			c := dial(b, br.Addr())
			ctx := context.Background()
			began := time.Now()
			for i := range existing {
				if _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: fmt.Sprintf("pre-%06d", i), Partitions: 1}); err != nil {
					b.Fatalf("topic %d: %v", i, err)
				}
			}
			b.Logf("%d topics created in %v", existing, time.Since(began))
			b.ResetTimer()
			for i := range b.N {
				if _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: fmt.Sprintf("new-%06d", i), Partitions: 1}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "topics/s")
		})
	}
}
