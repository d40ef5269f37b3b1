package broker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"

	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/cluster"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// producerIDBlock is how many producer ids the broker takes from the
// controller at a time: one controller write per this many new producers.
// The ids of a block not yet handed out when the broker stops are skipped,
// never reused.
const producerIDBlock = 1000

// errNoProducerIDs: the controller could not allocate producer ids now
// (UNAVAILABLE: retriable).
var errNoProducerIDs = errors.New("cannot allocate producer ids")

// producerIDs hands out producer ids from blocks the controller allocated.
type producerIDs struct {
	mu        sync.Mutex // guards next and end; held across a block request
	next, end int64      // the block [next, end) not yet handed out
}

// allocate returns a producer id no other InitProducer (on any broker, before
// or after a restart) gets.
func (a *producerIDs) allocate(ctx context.Context, ctrl controller) (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.next >= a.end {
		first, err := ctrl.AllocateProducerIDs(ctx, producerIDBlock)
		if err != nil {
			return 0, fmt.Errorf("%w: allocating producer ids: %w", errNoProducerIDs, err)
		}
		if first < 0 {
			return 0, fmt.Errorf("%w: the controller returned producer id %d", errNoProducerIDs, first)
		}
		a.next, a.end = first, first+producerIDBlock
	}
	id := a.next
	a.next++
	return id, nil
}

// InitProducer gives a producer a new id with epoch 0, or bumps the epoch of
// the id it names. The broker keeps no table of producers: partitions fence
// older epochs of an id once they have seen a newer one. An epoch that
// would pass the int16 range gets a new id instead (as Kafka does). New ids
// come in blocks from the controller, which only the controller broker can
// allocate: another broker forwards the request to it.
func (s *server) InitProducer(ctx context.Context, req *pb.InitProducerRequest) (*pb.InitProducerResponse, error) {
	select {
	case <-s.b.stopping:
		return nil, toStatus(errShuttingDown)
	default:
	}
	if req.ProducerId != nil {
		id, epoch := req.GetProducerId(), req.GetProducerEpoch()
		if id < 0 {
			return nil, toStatus(invalid("producer_id %d: ids are 0 or more (leave it unset for a new id)", id))
		}
		if epoch < 0 || epoch > math.MaxInt16 {
			return nil, toStatus(invalid("producer_epoch %d: epochs are 0 to %d", epoch, math.MaxInt16))
		}
		if epoch < math.MaxInt16 {
			return &pb.InitProducerResponse{ProducerId: id, ProducerEpoch: epoch + 1}, nil
		}
	} else if req.GetProducerEpoch() != 0 {
		return nil, toStatus(invalid("producer_epoch %d without a producer_id", req.GetProducerEpoch()))
	}
	id, err := s.b.pids.allocate(ctx, s.b.ctrl)
	if errors.Is(err, cluster.ErrNotController) {
		var resp *pb.InitProducerResponse
		if err := s.b.forward(ctx, func(ctx context.Context, c pb.SkeinClient) (err error) {
			resp, err = c.InitProducer(ctx, req)
			return err
		}); err != nil {
			if _, ok := status.FromError(err); ok {
				return nil, err // the controller broker's answer
			}
			return nil, toStatus(fmt.Errorf("%w: the controller is not reachable: %w", errNoProducerIDs, err))
		}
		return resp, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.InitProducerResponse{ProducerId: id, ProducerEpoch: 0}, nil
}

// DuplicatesAnswered implements partition.DuplicateObserver.
func (m *metrics) DuplicatesAnswered(batches int) { m.duplicates.Add(float64(batches)) }
