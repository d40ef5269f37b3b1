package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Replica reassignment is controller state: each moving partition carries
// its Target replica set in the metadata, and the controller drives it to
// completion one committed step at a time (reassignSteps decides, the
// controller loop commits). A controller that takes over, or a broker that
// restarts, finds the state where it was and carries on.
//
// The steps of one partition, each a compare-and-set on its epoch:
//  1. start (opReassign): Replicas = Target + the replicas being removed.
//     The new replicas open as followers outside the ISR and copy the log.
//  2. the leader adds each new replica to the ISR once it has caught up
//     (the ordinary ISR expansion), so acks=all keeps its meaning and the
//     ISR never shrinks for the move.
//  3. when every Target replica is in the ISR: leadership moves to the
//     first Target replica if the leader is not the one preferred.
//  4. Replicas = Target, ISR = ISR ∩ Target, Target cleared.

// Errors of reassignment requests.
var (
	ErrReassignRunning = errors.New("a reassignment is already running")
	ErrInvalidReassign = errors.New("invalid reassignment")
	ErrNoReassign      = errors.New("no reassignment is running")
	ErrUnknownBroker   = errors.New("unknown broker")
)

// PartitionTarget is one partition's requested replica set; the first
// replica is its preferred leader.
type PartitionTarget struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Replicas  []int32 `json:"replicas"`
	// TopicID is filled in by the controller from the metadata.
	TopicID string `json:"topic_id,omitempty"`
}

// Reassigning reports whether any partition is being reassigned.
func (s *Snapshot) Reassigning() bool {
	running := false
	forEachPartition(s, func(_ Topic, pm PartitionMeta) {
		running = running || len(pm.Target) > 0
	})
	return running
}

// ValidateTargets checks a reassignment against the metadata and returns
// the targets that change something, with their topic ids. Every target
// names an existing partition once; its replicas are distinct registered
// brokers that are not draining, as many as the topic's replication factor
// and at least its min.insync.replicas. Pure.
func ValidateTargets(s *Snapshot, targets []PartitionTarget) ([]PartitionTarget, error) {
	if s.Reassigning() {
		return nil, fmt.Errorf("%w: wait for it to finish (broker reassign status) or cancel it (broker reassign cancel)", ErrReassignRunning)
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("%w: the plan names no partition", ErrInvalidReassign)
	}
	seen := map[tpKey]bool{}
	var out []PartitionTarget
	for _, tg := range targets {
		pm, t, err := checkTarget(s, tg)
		if err != nil {
			return nil, err
		}
		k := tpKey{tg.Topic, tg.Partition}
		if seen[k] {
			return nil, fmt.Errorf("%w: %s-%d is named twice", ErrInvalidReassign, tg.Topic, tg.Partition)
		}
		seen[k] = true
		if slices.Equal(pm.Replicas, tg.Replicas) {
			continue
		}
		tg.TopicID, tg.Replicas = t.ID, slices.Clone(tg.Replicas)
		out = append(out, tg)
	}
	return out, nil
}

type tpKey struct {
	topic string
	part  int32
}

// checkTarget validates one partition's target.
func checkTarget(s *Snapshot, tg PartitionTarget) (PartitionMeta, Topic, error) {
	t, ok := s.Topics[tg.Topic]
	if !ok {
		return PartitionMeta{}, t, fmt.Errorf("%w: %w: %q", ErrInvalidReassign, ErrUnknownTopic, tg.Topic)
	}
	if tg.Partition < 0 || int(tg.Partition) >= len(t.Partitions) {
		return PartitionMeta{}, t, fmt.Errorf("%w: topic %q has no partition %d (it has %d: 0..%d)",
			ErrInvalidReassign, tg.Topic, tg.Partition, len(t.Partitions), len(t.Partitions)-1)
	}
	name := fmt.Sprintf("%s-%d", tg.Topic, tg.Partition)
	dup := map[int32]bool{}
	for _, id := range tg.Replicas {
		if dup[id] {
			return PartitionMeta{}, t, fmt.Errorf("%w: %s: broker %d is named twice in %v", ErrInvalidReassign, name, id, tg.Replicas)
		}
		dup[id] = true
		b, ok := s.Broker(id)
		if !ok {
			return PartitionMeta{}, t, fmt.Errorf("%w: %s: %w %d (the brokers are %s)", ErrInvalidReassign, name, ErrUnknownBroker, id, brokerIDs(s))
		}
		if b.Draining {
			return PartitionMeta{}, t, fmt.Errorf("%w: %s: broker %d is being decommissioned", ErrInvalidReassign, name, id)
		}
	}
	if len(tg.Replicas) < int(t.Config.MinInsyncReplicas) {
		return PartitionMeta{}, t, fmt.Errorf("%w: %s: %d replicas %v are fewer than the topic's min.insync.replicas %d",
			ErrInvalidReassign, name, len(tg.Replicas), tg.Replicas, t.Config.MinInsyncReplicas)
	}
	if len(tg.Replicas) != int(t.Config.ReplicationFactor) {
		return PartitionMeta{}, t, fmt.Errorf("%w: %s: %d replicas %v: give exactly the topic's replication factor, %d",
			ErrInvalidReassign, name, len(tg.Replicas), tg.Replicas, t.Config.ReplicationFactor)
	}
	return t.Partitions[tg.Partition], t, nil
}

func brokerIDs(s *Snapshot) string {
	ids := make([]string, len(s.Brokers))
	for i, b := range s.Brokers {
		ids[i] = fmt.Sprint(b.ID)
	}
	return strings.Join(ids, ", ")
}

// startReassign applies an opReassign command: all or nothing.
func startReassign(s *Snapshot, c *command) error {
	if s.Reassigning() {
		return ErrReassignRunning
	}
	for _, tg := range c.Targets {
		t, ok := s.Topics[tg.Topic]
		if !ok || t.ID != tg.TopicID || int(tg.Partition) >= len(t.Partitions) || tg.Partition < 0 || len(tg.Replicas) == 0 {
			return fmt.Errorf("%w: %s-%d changed since the reassignment was checked; try again", ErrConcurrentChange, tg.Topic, tg.Partition)
		}
	}
	for _, tg := range c.Targets {
		pm := &s.Topics[tg.Topic].Partitions[tg.Partition]
		pm.Origin = slices.Clone(pm.Replicas)
		pm.Target = slices.Clone(tg.Replicas)
		pm.Replicas = withRemoving(tg.Replicas, pm.Replicas)
		pm.PartitionEpoch++
	}
	if c.Drain != nil {
		// A decommission: the broker drains with the same commit.
		for i := range s.Brokers {
			if s.Brokers[i].ID == *c.Drain {
				s.Brokers[i].Draining = true
			}
		}
	}
	return nil
}

// withRemoving is target followed by the replicas of current not in it.
func withRemoving(target, current []int32) []int32 {
	out := slices.Clone(target)
	for _, r := range current {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// cancelReassign applies opCancelReassign: every running reassignment
// heads back to its original replica set (the replicas added are removed
// the same way, once the original ones are all in sync), and draining
// brokers stop draining.
func cancelReassign(s *Snapshot) (int, error) {
	n := 0
	for name, t := range s.Topics {
		for i := range t.Partitions {
			pm := &t.Partitions[i]
			if len(pm.Origin) == 0 {
				continue
			}
			pm.Target, pm.Origin = pm.Origin, nil
			pm.PartitionEpoch++
			n++
		}
		s.Topics[name] = t
	}
	drained := false
	for i := range s.Brokers {
		drained = drained || s.Brokers[i].Draining
		s.Brokers[i].Draining = false
	}
	if n == 0 && !drained {
		return 0, ErrNoReassign
	}
	return n, nil
}

// reassignSteps is the next committed step of every running reassignment
// (see the top of this file). A partition waits while a Target replica is
// out of the ISR (catching up, or its broker down) or it has no leader.
// Pure.
func reassignSteps(s *Snapshot, usable usableFunc) []PartitionChange {
	var out []PartitionChange
	forEachPartition(s, func(t Topic, pm PartitionMeta) {
		if len(pm.Target) == 0 || pm.Leader < 0 {
			return
		}
		for _, r := range pm.Target {
			if !slices.Contains(pm.ISR, r) {
				return
			}
		}
		want := slices.IndexFunc(pm.Target, func(r int32) bool { return usable(r) })
		if want >= 0 && pm.Target[want] != pm.Leader {
			out = append(out, change(t, pm, pm.Target[want], pm.LeaderEpoch+1, pm.ISR))
			return
		}
		if !slices.Contains(pm.Target, pm.Leader) {
			return // no usable target replica to lead yet
		}
		isr := slices.DeleteFunc(slices.Clone(pm.ISR), func(r int32) bool { return !slices.Contains(pm.Target, r) })
		ch := change(t, pm, pm.Leader, pm.LeaderEpoch, isr)
		ch.Replicas, ch.EndReassign = slices.Clone(pm.Target), true
		out = append(out, ch)
	})
	return out
}

// removeBroker applies opRemoveBroker: a drained broker leaves the cluster.
func removeBroker(s *Snapshot, id int32) error {
	i := slices.IndexFunc(s.Brokers, func(b BrokerInfo) bool { return b.ID == id })
	if i < 0 {
		return fmt.Errorf("%w %d", ErrUnknownBroker, id)
	}
	if !s.Brokers[i].Draining {
		return fmt.Errorf("broker %d is not being decommissioned", id)
	}
	if hostsAny(s, id) {
		return fmt.Errorf("broker %d still holds replicas", id)
	}
	s.Removed = append(s.Removed, RemovedBroker{ID: id, StorageID: s.Brokers[i].StorageID})
	s.Brokers = slices.Delete(s.Brokers, i, i+1)
	return nil
}

// hostsAny reports whether broker id holds, leads or is to hold a replica.
func hostsAny(s *Snapshot, id int32) bool {
	found := false
	forEachPartition(s, func(_ Topic, pm PartitionMeta) {
		found = found || pm.Leader == id || slices.Contains(pm.Replicas, id) || slices.Contains(pm.Target, id) || slices.Contains(pm.ISR, id)
	})
	return found
}

// drained lists the draining brokers that hold no replica any more: the
// controller removes them from its quorum and the cluster. Pure.
func drained(s *Snapshot) []int32 {
	var out []int32
	for _, b := range s.Brokers {
		if b.Draining && !hostsAny(s, b.ID) {
			out = append(out, b.ID)
		}
	}
	return out
}

// Decommissioned reports whether the broker id with storage id (its data
// directory's) was decommissioned.
func (s *Snapshot) Decommissioned(id int32, storageID string) bool {
	return slices.Contains(s.Removed, RemovedBroker{ID: id, StorageID: storageID})
}
