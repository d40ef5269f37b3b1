package broker_test

import (
	"context"
	"sync"
	"testing"

	"github.com/skeinlog/skein/broker/brokertest"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// BenchmarkProduceTransport compares the two ways to pipeline produce
// requests: concurrent unary calls and one ProduceStream, each with 64
// one-record batches in flight, acknowledged after fsync. It is the
// measurement behind the client's use of ProduceStream.
func BenchmarkProduceTransport(b *testing.B) {
	const inflight = 64
	for _, mode := range []string{"unary", "stream"} {
		b.Run(mode, func(b *testing.B) {
			br := brokertest.Start(b)
			c := dial(b, br.Addr())
			createTopic(b, c, "bench", 1)
			raw := mkBatchSized(b, 100)
			b.ResetTimer()
			switch mode {
			case "unary":
				var wg sync.WaitGroup
				per := b.N/inflight + 1
				for range inflight {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range per {
							if _, err := c.Produce(context.Background(), &pb.ProduceRequest{Topic: "bench", LeaderEpoch: -1, Batch: raw}); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
			case "stream":
				st, err := c.ProduceStream(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				slots := make(chan struct{}, inflight)
				done := make(chan struct{})
				go func() {
					defer close(done)
					for range b.N {
						r, err := st.Recv()
						if err != nil || r.Error != nil {
							b.Errorf("%v %v", err, r.GetError())
							return
						}
						<-slots
					}
				}()
				for i := range b.N {
					slots <- struct{}{}
					if err := st.Send(&pb.ProduceRequest{CorrelationId: uint64(i), Topic: "bench", LeaderEpoch: -1, Batch: raw}); err != nil {
						b.Fatal(err)
					}
				}
				<-done
				st.CloseSend()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
		})
	}
}
