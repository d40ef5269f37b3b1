package broker

import (
	"errors"
	"fmt"

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
	open, limit, ok := b.handles()
	if !ok {
		return nil
	}
	snap := b.snapshot()
	alive := len(snap.Alive())
	cfg, err := cluster.ResolveConfig(spec, b.cfg.TopicDefaults, alive)
	if err != nil {
		return nil
	}
	here := replicasHere(cfg.Partitions, cfg.ReplicationFactor, alive)
	need, fit := handlesFit(open, limit, here)
	if fit {
		return nil
	}
	b.metrics.refused.WithLabelValues(refusedHandles).Inc()
	return fmt.Errorf("%w: topic %q would put about %d replicas on broker %d, needing %d file handles (%d each); it has %d open of its limit of %d, "+
		"%d of which stay free for connections; nothing was created: raise the broker's open file limit (ulimit -n, LimitNOFILE) or use fewer partitions",
		errNoHandles, spec.Name, here, b.self.ID, need, handlesPerPartition, open, limit, handleReserve(limit))
}

// handles is the open file handles and their limit (see Config.FileHandles).
func (b *Broker) handles() (open, limit int, ok bool) { return b.cfg.FileHandles() }
