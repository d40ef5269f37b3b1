package group

import (
	"slices"
	"sort"
)

// Subscriber is one member as the assignor sees it: its id and the topics
// it subscribes to (resolved: existing topics only).
type Subscriber struct {
	ID     string
	Topics []string
}

// Racks is what a rack-aware assignment knows: each member's rack (a
// member without one matches no rack) and the racks of the replicas each
// partition is read from. The zero Racks assigns without regard to racks.
type Racks struct {
	Member   map[string]string
	Replicas func(TopicPartition) []string
}

// on reports whether member id sits in a rack that holds a replica of tp.
func (r Racks) on(id string, tp TopicPartition) bool {
	rack := r.Member[id]
	return rack != "" && r.Replicas != nil && slices.Contains(r.Replicas(tp), rack)
}

func (r Racks) aware() bool {
	if r.Replicas == nil {
		return false
	}
	for _, rack := range r.Member {
		if rack != "" {
			return true
		}
	}
	return false
}

// Assign computes a group's target assignment without regard to racks:
// see AssignRacks.
func Assign(members []Subscriber, partitions map[string]int32, prev map[string][]TopicPartition) map[string][]TopicPartition {
	return AssignRacks(members, partitions, prev, Racks{})
}

// AssignRacks computes a group's target assignment: every partition of a
// subscribed topic goes to exactly one member subscribed to it, the
// members subscribed to the same topics hold counts that differ by at most
// one, and a partition stays with its previous owner (prev) unless that
// owner left, unsubscribed, the partition is gone, or it must move to even
// the counts. When members have racks, a partition goes preferably to a
// member in a rack that holds one of its replicas (so it fetches from a
// replica in its own rack, as Kafka's KIP-881), and leaves a previous
// owner in another rack when such a member exists; balance comes first.
// Pure and deterministic: members and partitions are taken in sorted
// order.
func AssignRacks(members []Subscriber, partitions map[string]int32, prev map[string][]TopicPartition, racks Racks) map[string][]TopicPartition {
	subs, ids := subscriptions(members, partitions)
	a := &assignment{ids: ids, subs: subs, racks: racks, aware: racks.aware(),
		owner: map[TopicPartition]string{}, count: map[string]int{}}
	a.keep(prev, partitions)
	all := allPartitions(partitions)
	if a.aware {
		// Partitions to members in a replica's rack, up to an even share.
		quota := (len(all) + len(ids) - 1) / max(1, len(ids))
		a.place(all, func(id string, tp TopicPartition) bool { return racks.on(id, tp) && a.count[id] < quota })
	}
	// The rest to the eligible member holding fewest.
	a.place(all, func(string, TopicPartition) bool { return true })
	if a.aware {
		// Even the counts by moving first the partitions that sit in the
		// wrong rack.
		a.balance(all, func(from string, tp TopicPartition) bool { return !racks.on(from, tp) })
	}
	a.balance(all, func(string, TopicPartition) bool { return true })
	out := map[string][]TopicPartition{}
	for _, id := range ids {
		out[id] = []TopicPartition{}
	}
	for _, tp := range all {
		if id, ok := a.owner[tp]; ok {
			out[id] = append(out[id], tp)
		}
	}
	return out
}

// subscriptions returns each member's subscribed existing topics, and the
// member ids sorted.
func subscriptions(members []Subscriber, partitions map[string]int32) (map[string]map[string]bool, []string) {
	subs := map[string]map[string]bool{}
	ids := make([]string, 0, len(members))
	for _, m := range members {
		set := map[string]bool{}
		for _, t := range m.Topics {
			if _, ok := partitions[t]; ok {
				set[t] = true
			}
		}
		subs[m.ID] = set
		ids = append(ids, m.ID)
	}
	sort.Strings(ids)
	return subs, ids
}

// assignment is the state of one AssignRacks computation.
type assignment struct {
	ids   []string
	subs  map[string]map[string]bool
	racks Racks
	aware bool
	owner map[TopicPartition]string
	count map[string]int
}

// keep keeps what is still valid from the previous assignment: rack-aware,
// a partition leaves an owner outside its replicas' racks when a
// subscribed member inside them exists.
func (a *assignment) keep(prev map[string][]TopicPartition, partitions map[string]int32) {
	for _, id := range a.ids {
		for _, tp := range prev[id] {
			n, ok := partitions[tp.Topic]
			if !ok || tp.Partition < 0 || tp.Partition >= n || !a.subs[id][tp.Topic] {
				continue
			}
			if _, taken := a.owner[tp]; taken {
				continue
			}
			if a.aware && !a.racks.on(id, tp) && a.rackMemberFor(tp) {
				continue
			}
			a.owner[tp] = id
			a.count[id]++
		}
	}
}

// rackMemberFor reports whether a member subscribed to tp's topic sits in
// a rack of its replicas.
func (a *assignment) rackMemberFor(tp TopicPartition) bool {
	for _, id := range a.ids {
		if a.subs[id][tp.Topic] && a.racks.on(id, tp) {
			return true
		}
	}
	return false
}

// place gives each partition without an owner to the least loaded
// subscribed member that ok accepts.
func (a *assignment) place(all []TopicPartition, ok func(string, TopicPartition) bool) {
	for _, tp := range all {
		if _, owned := a.owner[tp]; owned {
			continue
		}
		if id := a.leastLoaded(tp, "", func(id string) bool { return ok(id, tp) }); id != "" {
			a.owner[tp] = id
			a.count[id]++
		}
	}
}

// balance moves partitions that movable accepts from a member to an
// eligible one holding at least two fewer (one in a replica's rack if
// there is such a one), until none can move: each move lowers the sum of
// squared counts, so it ends. The last partitions of a member move first.
func (a *assignment) balance(all []TopicPartition, movable func(from string, tp TopicPartition) bool) {
	for moved := true; moved; {
		moved = false
		for i := len(all) - 1; i >= 0; i-- {
			tp := all[i]
			from, ok := a.owner[tp]
			if !ok || !movable(from, tp) {
				continue
			}
			lighter := func(id string) bool { return a.count[id] < a.count[from]-1 }
			to := ""
			if a.aware {
				to = a.leastLoaded(tp, from, func(id string) bool { return lighter(id) && a.racks.on(id, tp) })
			}
			if to == "" {
				to = a.leastLoaded(tp, from, lighter)
			}
			if to != "" && lighter(to) {
				a.owner[tp] = to
				a.count[from]--
				a.count[to]++
				moved = true
			}
		}
	}
}

// leastLoaded is the member subscribed to tp's topic that ok accepts with
// the fewest partitions (the first in id order on ties), other than
// except; "" if none.
func (a *assignment) leastLoaded(tp TopicPartition, except string, ok func(string) bool) string {
	best := ""
	for _, id := range a.ids {
		if id == except || !a.subs[id][tp.Topic] || !ok(id) {
			continue
		}
		if best == "" || a.count[id] < a.count[best] {
			best = id
		}
	}
	return best
}

func allPartitions(partitions map[string]int32) []TopicPartition {
	topics := make([]string, 0, len(partitions))
	for t := range partitions {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	var all []TopicPartition
	for _, t := range topics {
		for p := range partitions[t] {
			all = append(all, TopicPartition{t, p})
		}
	}
	return all
}
