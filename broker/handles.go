package broker

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/skeinlog/skein/cluster"
)

// handlesPerPartition is how many file handles one partition replica keeps
// open: its log's tail segment, opened once to append and once to read.
// e2e's TestTopicCreationRefusedPastFileHandles checks it still holds.
const handlesPerPartition = 2

// errNoHandles refuses work that would take the broker past its open file
// limit: RESOURCE_EXHAUSTED, not retriable (it will not pass by waiting).
var errNoHandles = errors.New("not enough file handles")

// handleReserve is what the broker keeps free of its open file limit for
// connections, snapshots and segment rolls: a tenth, at least 64. Pure.
func handleReserve(limit int) int {
	return max(limit/10, 64)
}

// handlesFit reports whether adding partitions replicas keeps open file
// handles below limit less the reserve, and how many they need. Pure.
func handlesFit(open, limit, partitions int) (need int, ok bool) {
	need = partitions * handlesPerPartition
	return need, open+need <= limit-handleReserve(limit)
}

// replicasHere estimates how many of a new topic's replicas land on one
// broker: placement spreads them evenly over the alive brokers. Pure.
func replicasHere(partitions, rf int32, brokers int) int {
	brokers = max(brokers, 1)
	total := int(partitions) * int(max(rf, 1))
	return (total + brokers - 1) / brokers
}

// checkTopicHandles refuses a topic whose replicas would take this broker
// past its open file limit, before anything is committed. A spec the
// controller will refuse anyway passes here (it says why).
func (b *Broker) checkTopicHandles(spec cluster.TopicSpec) error {
	snap := b.snapshot()
	alive := len(snap.Alive())
	cfg, err := cluster.ResolveConfig(spec, b.cfg.TopicDefaults, alive)
	if err != nil {
		return nil
	}
	here := replicasHere(cfg.Partitions, cfg.ReplicationFactor, alive)
	need, open, limit, fit := b.handleEst.check(time.Now(), b.handles, here)
	if fit {
		return nil
	}
	b.metrics.refused.WithLabelValues(refusedHandles).Inc()
	return fmt.Errorf("%w: topic %q would put about %d replicas on broker %d, needing %d file handles (%d each); it has %d open of its limit of %d, "+
		"%d of which stay free for connections; nothing was created: raise the broker's open file limit (ulimit -n, LimitNOFILE) or use fewer partitions",
		errNoHandles, spec.Name, here, b.self.ID, need, handlesPerPartition, open, limit, handleReserve(limit))
}

// handleEstimate spares a count of open handles per topic created: a count
// reads /proc/self/fd, which at 10,000 handles costs milliseconds. It keeps
// the last count for up to a second and adds the handles of the topics
// admitted since; a topic that does not fit that estimate is checked
// against a fresh count.
type handleEstimate struct {
	mu                 sync.Mutex
	at                 time.Time // of the last count; zero: none
	open, limit, added int
}

// handleCountAge is how long a count of open handles is used.
const handleCountAge = time.Second

// check reports whether here more replicas fit, and admits them if so;
// ok false from count means nothing is known and everything fits.
func (h *handleEstimate) check(now time.Time, count func() (int, int, bool), here int) (need, open, limit int, fit bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fresh := h.at.IsZero() || now.Sub(h.at) >= handleCountAge
	for {
		if fresh {
			o, l, ok := count()
			if !ok {
				h.at = time.Time{}
				return 0, 0, 0, true
			}
			h.at, h.open, h.limit, h.added = now, o, l, 0
		}
		need, fit = handlesFit(h.open+h.added, h.limit, here)
		if fit || fresh {
			break
		}
		fresh = true
	}
	if fit {
		h.added += need
	}
	return need, h.open + h.added, h.limit, fit
}

// handles is the open file handles and their limit (see Config.FileHandles).
func (b *Broker) handles() (open, limit int, ok bool) { return b.cfg.FileHandles() }
