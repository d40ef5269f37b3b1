package client

import (
	"context"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/client/internal/fakebroker"
	"github.com/skeinlog/skein/proto/skeinv1"
)

// At the last epoch a reset asks InitProducer for a new id.
func TestEpochExhaustionTakesANewID(t *testing.T) {
	fc, err := fakebroker.New(fakebroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	fc.CreateTopic("t", 1)
	var n atomic.Int64
	fc.SetProduceHook(func(int32, *skeinv1.ProduceRequest) fakebroker.Action {
		if n.Add(1) == 2 {
			return fakebroker.Action{Fail: &skeinv1.ErrorDetail{Code: uint32(codes.FailedPrecondition), Reason: skeinv1.ErrorReason_OUT_OF_ORDER_SEQUENCE}}
		}
		return fakebroker.Action{}
	})
	c, err := New(Brokers(fc.Addrs()[0]), Dialer(fc.Dialer()), RetryBackoff(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := c.NewProducer(Linger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.idMu.Lock()
	p.pid, p.pepoch = 7, math.MaxInt16 // as if InitProducer had answered so
	p.idMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, v := range []string{"a", "b"} {
		if err := p.ProduceSync(ctx, &Record{Topic: "t", Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	recs := fc.Records("t", 0)
	if len(recs) != 2 || recs[0].Producer != 7 || recs[0].ProducerEpoch != math.MaxInt16 ||
		recs[1].Producer != 1000 || recs[1].ProducerEpoch != 0 || recs[1].Sequence != 0 {
		t.Fatalf("records %+v", recs)
	}
	if id, epoch := p.ProducerID(); id != 1000 || epoch != 0 || fc.InitProducerCalls() != 1 {
		t.Fatalf("producer %d epoch %d after %d InitProducer calls", id, epoch, fc.InitProducerCalls())
	}
}
