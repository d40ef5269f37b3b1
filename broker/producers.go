package broker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/proto/batch"
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
		if err := s.b.knownProducerID(id, int16(epoch)); err != nil {
			return nil, toStatus(err)
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

// producerIDWait bounds how long a produce naming a producer id this
// broker's metadata does not know yet waits for the allocation to arrive:
// InitProducer answers once the controller has committed it, a moment
// before the other brokers have applied it.
const producerIDWait = 2 * time.Second

// producerIDAllocated reports whether the controller has handed out id:
// ids are allocated in ascending blocks from 0, so every id below
// NextProducerID has been, and no other.
func producerIDAllocated(s *cluster.Snapshot, id int64) bool {
	return id >= 0 && id < s.NextProducerID
}

// checkProducerID refuses a batch whose producer id the controller never
// allocated: a client may not claim an id of its choosing, which could
// collide with or fence a real producer. Batches without a producer id
// (-1) pass, and so do malformed ones: the partition reports those.
func (b *Broker) checkProducerID(buf []byte) error {
	v, _, err := batch.Next(buf)
	if err != nil || v == nil {
		return nil
	}
	if id := v.ProducerID(); id >= 0 {
		return b.knownProducerID(id, v.ProducerEpoch())
	}
	return nil
}

// knownProducerID returns nil if the controller has allocated id, waiting
// up to producerIDWait for an allocation on its way, else the error.
func (b *Broker) knownProducerID(id int64, epoch int16) error {
	if producerIDAllocated(b.ctrl.Snapshot(), id) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), producerIDWait)
	defer cancel()
	b.awaitMetadata(ctx, func(s *cluster.Snapshot) bool { return producerIDAllocated(s, id) })
	s := b.ctrl.Snapshot()
	if producerIDAllocated(s, id) {
		return nil
	}
	return fmt.Errorf("%w: producer id %d (epoch %d) was never allocated by this cluster (%d ids are): call InitProducer without a producer id for a new one, and use only the id and epoch it returns",
		errUnknownProducerID, id, epoch, s.NextProducerID)
}

// DuplicatesAnswered implements partition.DuplicateObserver.
func (m *metrics) DuplicatesAnswered(batches int) { m.duplicates.Add(float64(batches)) }
