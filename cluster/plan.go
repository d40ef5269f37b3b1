package cluster

import (
	"fmt"
	"slices"
)

// PlanOptions selects what a reassignment plan spreads.
type PlanOptions struct {
	// Brokers the partitions are spread over (all of them hold replicas
	// afterwards where the counts allow).
	Brokers []int32
	// Topics to plan; empty: every topic.
	Topics []string
	// FillOnly moves only the replicas on brokers not in Brokers, to the
	// least loaded of Brokers (a decommission); otherwise replicas also
	// move from the most to the least loaded brokers until counts differ
	// by at most one.
	FillOnly bool
}

// planPart is one partition being planned.
type planPart struct {
	topic string
	pm    PartitionMeta
	rf    int
	reps  []int32 // the planned replica set, unordered until the end
}

// planner spreads replicas: counts per broker, racks.
type planner struct {
	brokers []int32
	rack    map[int32]string
	load    map[int32]int
	leaders map[int32]int
	parts   []*planPart
}

// PlanReassignment proposes where the replicas of the chosen topics go:
// balanced over o.Brokers (replica counts, then preferred leaders, differ
// by at most one where a move allows it), on distinct racks where the
// brokers have racks, keeping every replica that may stay where it is. It
// returns only the partitions that change. Pure.
func PlanReassignment(s *Snapshot, o PlanOptions) ([]PartitionTarget, error) {
	p, err := newPlanner(s, o)
	if err != nil {
		return nil, err
	}
	if !o.FillOnly {
		p.trim()
	}
	p.fill()
	if !o.FillOnly {
		p.balance()
	}
	return p.order(o.FillOnly), nil
}

// newPlanner checks the options and keeps each partition's replicas that
// are on the chosen brokers.
func newPlanner(s *Snapshot, o PlanOptions) (*planner, error) {
	if len(o.Brokers) == 0 {
		return nil, fmt.Errorf("%w: name the brokers to spread the replicas over", ErrInvalidReassign)
	}
	p := &planner{rack: map[int32]string{}, load: map[int32]int{}, leaders: map[int32]int{}}
	for _, id := range o.Brokers {
		b, ok := s.Broker(id)
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: %w %d (the brokers are %s)", ErrInvalidReassign, ErrUnknownBroker, id, brokerIDs(s))
		case b.Draining:
			return nil, fmt.Errorf("%w: broker %d is being decommissioned", ErrInvalidReassign, id)
		case slices.Contains(p.brokers, id):
			return nil, fmt.Errorf("%w: broker %d is named twice", ErrInvalidReassign, id)
		}
		p.brokers = append(p.brokers, id)
		p.rack[id] = b.Rack
		p.load[id] = 0
	}
	slices.Sort(p.brokers)
	topics := o.Topics
	if len(topics) == 0 {
		topics = s.TopicNames()
	}
	for _, name := range topics {
		t, ok := s.Topics[name]
		if !ok {
			return nil, fmt.Errorf("%w: %w: %q", ErrInvalidReassign, ErrUnknownTopic, name)
		}
		if int(t.Config.ReplicationFactor) > len(p.brokers) {
			return nil, fmt.Errorf("%w: topic %q has replication factor %d: name at least %d brokers",
				ErrInvalidReassign, name, t.Config.ReplicationFactor, t.Config.ReplicationFactor)
		}
		for _, pm := range t.Partitions {
			pp := &planPart{topic: name, pm: pm, rf: int(t.Config.ReplicationFactor)}
			for _, r := range pm.Replicas {
				if _, ok := p.load[r]; ok && len(pp.reps) < pp.rf {
					pp.reps = append(pp.reps, r)
					p.load[r]++
				}
			}
			p.parts = append(p.parts, pp)
		}
	}
	return p, nil
}

// bounds are the fewest and most replicas a broker should hold.
func (p *planner) bounds() (lo, hi int) {
	total := 0
	for _, pp := range p.parts {
		total += pp.rf
	}
	n := len(p.brokers)
	return total / n, (total + n - 1) / n
}

// trim takes replicas off brokers holding more than their share, from the
// last partitions first and followers before preferred leaders.
func (p *planner) trim() {
	_, hi := p.bounds()
	for _, first := range []bool{false, true} {
		for i := len(p.parts) - 1; i >= 0; i-- {
			pp := p.parts[i]
			for j := len(pp.reps) - 1; j >= 0; j-- {
				r := pp.reps[j]
				if p.load[r] > hi && (j == 0) == first {
					pp.reps = slices.Delete(pp.reps, j, j+1)
					p.load[r]--
				}
			}
		}
	}
}

// fill gives every partition its replication factor of replicas, each
// on the least loaded broker not holding one, preferring racks the
// partition does not use yet.
func (p *planner) fill() {
	for _, pp := range p.parts {
		for len(pp.reps) < pp.rf {
			best := int32(-1)
			for _, id := range p.brokers {
				if slices.Contains(pp.reps, id) {
					continue
				}
				if best < 0 || p.better(pp, id, best) {
					best = id
				}
			}
			pp.reps = append(pp.reps, best)
			p.load[best]++
		}
	}
}

// better reports whether broker a is a better new home for a replica of
// pp than broker b: a new rack first, then fewer replicas, then lower id.
func (p *planner) better(pp *planPart, a, b int32) bool {
	ra, rb := p.rackUsed(pp, a, -1), p.rackUsed(pp, b, -1)
	if ra != rb {
		return !ra
	}
	if p.load[a] != p.load[b] {
		return p.load[a] < p.load[b]
	}
	return a < b
}

// rackUsed reports whether a replica of pp other than skip is on id's rack.
func (p *planner) rackUsed(pp *planPart, id, skip int32) bool {
	for _, r := range pp.reps {
		if r != skip && r != id && p.rack[r] == p.rack[id] {
			return true
		}
	}
	return false
}

// balance moves replicas from the most to the least loaded broker while
// their counts differ by more than one and a move keeps racks apart.
func (p *planner) balance() {
	for range 100000 {
		most, least := p.brokers[0], p.brokers[0]
		for _, id := range p.brokers {
			if p.load[id] > p.load[most] {
				most = id
			}
			if p.load[id] < p.load[least] {
				least = id
			}
		}
		if p.load[most]-p.load[least] <= 1 || !p.moveOne(most, least) {
			return
		}
	}
}

// moveOne moves one replica from broker from to broker to; it reports
// whether one could move.
func (p *planner) moveOne(from, to int32) bool {
	for _, first := range []bool{false, true} {
		for i := len(p.parts) - 1; i >= 0; i-- {
			pp := p.parts[i]
			j := slices.Index(pp.reps, from)
			if j < 0 || (j == 0) != first || slices.Contains(pp.reps, to) {
				continue
			}
			if p.rackUsed(pp, to, from) && !p.rackUsed(pp, from, from) {
				continue // the move would put two replicas on one rack
			}
			pp.reps[j] = to
			p.load[from]--
			p.load[to]++
			return true
		}
	}
	return false
}

// order puts each partition's preferred leader first — its current one
// while that broker leads no more than its share, else the replica leading
// fewest — and returns the partitions whose replica list changes.
func (p *planner) order(keepLeaders bool) []PartitionTarget {
	hiL := (len(p.parts) + len(p.brokers) - 1) / len(p.brokers)
	lead := make([]int32, len(p.parts))
	for i, pp := range p.parts {
		lead[i] = -1
		if cur := pp.pm.Replicas[0]; slices.Contains(pp.reps, cur) && (keepLeaders || p.leaders[cur] < hiL) {
			lead[i] = cur
			p.leaders[cur]++
		}
	}
	var out []PartitionTarget
	for i, pp := range p.parts {
		if lead[i] < 0 {
			for _, r := range pp.reps {
				if lead[i] < 0 || p.leaders[r] < p.leaders[lead[i]] || p.leaders[r] == p.leaders[lead[i]] && r < lead[i] {
					lead[i] = r
				}
			}
			p.leaders[lead[i]]++
		}
		reps := []int32{lead[i]}
		for _, r := range pp.pm.Replicas { // the kept replicas in their order
			if r != lead[i] && slices.Contains(pp.reps, r) {
				reps = append(reps, r)
			}
		}
		for _, r := range pp.reps {
			if !slices.Contains(reps, r) {
				reps = append(reps, r)
			}
		}
		if !slices.Equal(reps, pp.pm.Replicas) {
			out = append(out, PartitionTarget{Topic: pp.topic, Partition: pp.pm.Partition, Replicas: reps})
		}
	}
	return out
}

// PlanDecommission moves every replica off broker id to the least loaded
// other brokers that are not draining. Pure.
func PlanDecommission(s *Snapshot, id int32) ([]PartitionTarget, error) {
	if _, ok := s.Broker(id); !ok {
		return nil, fmt.Errorf("%w %d (the brokers are %s)", ErrUnknownBroker, id, brokerIDs(s))
	}
	var rest []int32
	for _, b := range s.Brokers {
		if b.ID != id && !b.Draining {
			rest = append(rest, b.ID)
		}
	}
	if len(rest) == 0 {
		return nil, fmt.Errorf("%w: broker %d is the only broker left", ErrInvalidReassign, id)
	}
	var topics []string
	for _, name := range s.TopicNames() {
		for _, pm := range s.Topics[name].Partitions {
			if slices.Contains(pm.Replicas, id) {
				topics = append(topics, name)
				break
			}
		}
	}
	if len(topics) == 0 {
		return nil, nil
	}
	return PlanReassignment(s, PlanOptions{Brokers: rest, Topics: topics, FillOnly: true})
}
