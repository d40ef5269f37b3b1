package cluster

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// planSnap has topic "t" with n partitions of rf replicas placed on the
// brokers given (as topic create places them).
func planSnap(brokers []BrokerInfo, on []BrokerInfo, n, rf int32) *Snapshot {
	s := &Snapshot{Brokers: brokers, Topics: map[string]Topic{}}
	t := Topic{Name: "t", ID: "id", Config: TopicConfig{Partitions: n, ReplicationFactor: rf, MinInsyncReplicas: min(2, rf)}}
	for i, reps := range AssignReplicas(on, n, rf, 0) {
		t.Partitions = append(t.Partitions, PartitionMeta{Partition: int32(i), Replicas: reps, Leader: reps[0], ISR: reps})
	}
	s.Topics["t"] = t
	return s
}

// afterPlan returns the replica sets with the plan applied.
func afterPlan(s *Snapshot, plan []PartitionTarget) map[int32][]int32 {
	out := map[int32][]int32{}
	for _, pm := range s.Topics["t"].Partitions {
		out[pm.Partition] = pm.Replicas
	}
	for _, tg := range plan {
		out[tg.Partition] = tg.Replicas
	}
	return out
}

func counts(sets map[int32][]int32) (replicas, leaders map[int32]int) {
	replicas, leaders = map[int32]int{}, map[int32]int{}
	for _, reps := range sets {
		leaders[reps[0]]++
		for _, r := range reps {
			replicas[r]++
		}
	}
	return replicas, leaders
}

func spread(c map[int32]int, ids []int32) int {
	lo, hi := 1<<30, 0
	for _, id := range ids {
		lo, hi = min(lo, c[id]), max(hi, c[id])
	}
	return hi - lo
}

func TestPlanGrowThreeToFive(t *testing.T) {
	three := []BrokerInfo{{ID: 1}, {ID: 2}, {ID: 3}}
	five := append(slices.Clone(three), BrokerInfo{ID: 4}, BrokerInfo{ID: 5})
	s := planSnap(five, three, 10, 3)
	ids := []int32{1, 2, 3, 4, 5}
	plan, err := PlanReassignment(s, PlanOptions{Brokers: ids})
	if err != nil {
		t.Fatal(err)
	}
	sets := afterPlan(s, plan)
	reps, leads := counts(sets)
	if spread(reps, ids) > 1 || spread(leads, ids) > 1 {
		t.Fatalf("unbalanced: replicas %v leaders %v", reps, leads)
	}
	// 30 replicas over 5 brokers: the new ones need 6 each, and no more
	// than those 12 replicas move.
	moved := 0
	for _, pm := range s.Topics["t"].Partitions {
		for _, r := range sets[pm.Partition] {
			if !slices.Contains(pm.Replicas, r) {
				moved++
			}
		}
		if len(sets[pm.Partition]) != 3 || hasDup(sets[pm.Partition]) {
			t.Fatalf("partition %d: %v", pm.Partition, sets[pm.Partition])
		}
	}
	if moved != 12 {
		t.Fatalf("%d replicas moved, want 12", moved)
	}
	// Planning again on the result moves nothing.
	for _, tg := range plan {
		pm := &s.Topics["t"].Partitions[tg.Partition]
		pm.Replicas = tg.Replicas
	}
	if again, err := PlanReassignment(s, PlanOptions{Brokers: ids}); err != nil || len(again) != 0 {
		t.Fatalf("a balanced cluster is planned again: %v %+v", err, again)
	}
}

func hasDup(ids []int32) bool {
	c := slices.Clone(ids)
	slices.Sort(c)
	return len(slices.Compact(c)) != len(ids)
}

func TestPlanRackAware(t *testing.T) {
	brokers := []BrokerInfo{{ID: 1, Rack: "a"}, {ID: 2, Rack: "a"}, {ID: 3, Rack: "b"}, {ID: 4, Rack: "b"}, {ID: 5, Rack: "c"}, {ID: 6, Rack: "c"}}
	s := planSnap(brokers, brokers[:3], 12, 3) // racks a, a, b: two replicas share rack a
	plan, err := PlanReassignment(s, PlanOptions{Brokers: []int32{1, 2, 3, 4, 5, 6}})
	if err != nil {
		t.Fatal(err)
	}
	rack := map[int32]string{}
	for _, b := range brokers {
		rack[b.ID] = b.Rack
	}
	for p, reps := range afterPlan(s, plan) {
		seen := map[string]bool{}
		for _, r := range reps {
			if seen[rack[r]] {
				t.Errorf("partition %d: %v has two replicas on rack %s", p, reps, rack[r])
			}
			seen[rack[r]] = true
		}
	}
}

func TestPlanBadInput(t *testing.T) {
	three := []BrokerInfo{{ID: 1}, {ID: 2}, {ID: 3}, {ID: 4, Draining: true}}
	s := planSnap(three, three[:3], 3, 3)
	cases := []struct {
		o    PlanOptions
		want string
	}{
		{PlanOptions{}, "name the brokers"},
		{PlanOptions{Brokers: []int32{1, 2, 7}}, "unknown broker 7"},
		{PlanOptions{Brokers: []int32{1, 2, 2}}, "broker 2 is named twice"},
		{PlanOptions{Brokers: []int32{1, 2, 4}}, "being decommissioned"},
		{PlanOptions{Brokers: []int32{1, 2}}, "replication factor 3: name at least 3 brokers"},
		{PlanOptions{Brokers: []int32{1, 2, 3}, Topics: []string{"nope"}}, `unknown topic: "nope"`},
	}
	for _, c := range cases {
		_, err := PlanReassignment(s, c.o)
		if !errors.Is(err, ErrInvalidReassign) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.o, err, c.want)
		}
	}
	if _, err := PlanDecommission(s, 9); !errors.Is(err, ErrUnknownBroker) {
		t.Errorf("decommission unknown: %v", err)
	}
}
