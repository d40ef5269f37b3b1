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

// Assign computes a group's target assignment: every partition of a
// subscribed topic goes to exactly one member subscribed to it, the
// members subscribed to the same topics hold counts that differ by at most
// one, and a partition stays with its previous owner (prev) unless that
// owner left, unsubscribed, the partition is gone, or it must move to even
// the counts. Pure and deterministic: members and partitions are taken in
// sorted order.
func Assign(members []Subscriber, partitions map[string]int32, prev map[string][]TopicPartition) map[string][]TopicPartition {
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
	owner := map[TopicPartition]string{}
	count := map[string]int{}
	// Keep what is still valid from the previous assignment.
	for _, id := range ids {
		for _, tp := range prev[id] {
			n, ok := partitions[tp.Topic]
			if !ok || tp.Partition < 0 || tp.Partition >= n || !subs[id][tp.Topic] {
				continue
			}
			if _, taken := owner[tp]; taken {
				continue
			}
			owner[tp] = id
			count[id]++
		}
	}
	all := allPartitions(partitions)
	// Give the rest to the eligible member holding fewest.
	for _, tp := range all {
		if _, ok := owner[tp]; ok {
			continue
		}
		if id := leastLoaded(ids, subs, count, tp.Topic, ""); id != "" {
			owner[tp] = id
			count[id]++
		}
	}
	balance(all, ids, subs, owner, count)
	out := map[string][]TopicPartition{}
	for _, id := range ids {
		out[id] = []TopicPartition{}
	}
	for _, tp := range all {
		if id, ok := owner[tp]; ok {
			out[id] = append(out[id], tp)
		}
	}
	return out
}

// balance moves partitions from a member to an eligible one holding at
// least two fewer, until none can move: each move lowers the sum of
// squared counts, so it ends. The last partitions of a member move first.
func balance(all []TopicPartition, ids []string, subs map[string]map[string]bool, owner map[TopicPartition]string, count map[string]int) {
	for moved := true; moved; {
		moved = false
		for i := len(all) - 1; i >= 0; i-- {
			tp := all[i]
			from, ok := owner[tp]
			if !ok {
				continue
			}
			to := leastLoaded(ids, subs, count, tp.Topic, from)
			if to != "" && count[to] < count[from]-1 {
				owner[tp] = to
				count[from]--
				count[to]++
				moved = true
			}
		}
	}
}

// leastLoaded is the member subscribed to topic with the fewest partitions
// (the first in id order on ties), other than except; "" if none.
func leastLoaded(ids []string, subs map[string]map[string]bool, count map[string]int, topic, except string) string {
	best := ""
	for _, id := range ids {
		if id == except || !subs[id][topic] {
			continue
		}
		if best == "" || count[id] < count[best] {
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
