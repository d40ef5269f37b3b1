package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func reassignSnap(brokers []BrokerInfo, parts ...PartitionMeta) *Snapshot {
	s := snapWith(brokers, parts...)
	t := s.Topics["t"]
	t.Config = TopicConfig{Partitions: int32(len(parts)), ReplicationFactor: 3, MinInsyncReplicas: 2}
	s.Topics["t"] = t
	return s
}

func moving(p, leader int32, replicas, isr, target []int32) PartitionMeta {
	pm := pmeta(p, leader, 4, replicas, isr)
	pm.Target = target
	pm.Origin = []int32{1, 2, 3}
	return pm
}

func TestReassignSteps(t *testing.T) {
	brokers := []BrokerInfo{{ID: 1}, {ID: 2}, {ID: 3}, {ID: 4}, {ID: 5, Fenced: true}}
	s := reassignSnap(brokers,
		// 0: 4 still catching up (outside the ISR): wait.
		moving(0, 1, []int32{4, 2, 3, 1}, []int32{1, 2, 3}, []int32{4, 2, 3}),
		// 1: 4 in sync, leader 1 is removed: leadership to 4.
		moving(1, 1, []int32{4, 2, 3, 1}, []int32{1, 2, 3, 4}, []int32{4, 2, 3}),
		// 2: 4 in sync and leads: shrink to the target.
		moving(2, 4, []int32{4, 2, 3, 1}, []int32{1, 2, 3, 4}, []int32{4, 2, 3}),
		// 3: target's first replica fenced; 2 is in the target and leads: shrink.
		moving(3, 2, []int32{5, 2, 3, 1}, []int32{1, 2, 3, 5}, []int32{5, 2, 3}),
		// 4: offline (no leader): wait for an election.
		moving(4, -1, []int32{4, 2, 3, 1}, []int32{1, 2, 3, 4}, []int32{4, 2, 3}),
		// 5: no reassignment: nothing.
		pmeta(5, 1, 4, []int32{1, 2, 3}, []int32{1, 2, 3}),
		// 6: order only: same set, preferred leader 3 takes over first.
		moving(6, 1, []int32{3, 1, 2}, []int32{1, 2, 3}, []int32{3, 1, 2}),
	)
	got := reassignSteps(s, usableIn(s))
	want := []PartitionChange{
		{Partition: 1, Leader: 4, LeaderEpoch: 5, ISR: []int32{1, 2, 3, 4}},
		{Partition: 2, Leader: 4, LeaderEpoch: 4, ISR: []int32{2, 3, 4}, Replicas: []int32{4, 2, 3}, EndReassign: true},
		{Partition: 3, Leader: 2, LeaderEpoch: 4, ISR: []int32{2, 3, 5}, Replicas: []int32{5, 2, 3}, EndReassign: true},
		{Partition: 6, Leader: 3, LeaderEpoch: 5, ISR: []int32{1, 2, 3}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d changes, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Partition != w.Partition || g.Leader != w.Leader || g.LeaderEpoch != w.LeaderEpoch || !slices.Equal(g.ISR, w.ISR) ||
			!slices.Equal(g.Replicas, w.Replicas) || g.EndReassign != w.EndReassign || g.FromEpoch != 7 {
			t.Errorf("change %d: got %+v, want %+v", i, g, w)
		}
	}
	if n := applyChanges(s, got); n != len(want) {
		t.Fatalf("applied %d", n)
	}
	pm := s.Topics["t"].Partitions[2]
	if !slices.Equal(pm.Replicas, []int32{4, 2, 3}) || pm.Target != nil || pm.Origin != nil || pm.PartitionEpoch != 8 {
		t.Fatalf("finished partition: %+v", pm)
	}
	// The next round: partition 1 now shrinks, 6 too.
	next := reassignSteps(s, usableIn(s))
	if len(next) != 2 || next[0].Partition != 1 || !next[0].EndReassign || next[1].Partition != 6 || !next[1].EndReassign {
		t.Fatalf("second round: %+v", next)
	}
}

func TestStartAndCancelReassign(t *testing.T) {
	brokers := []BrokerInfo{{ID: 1}, {ID: 2}, {ID: 3}, {ID: 4}}
	s := reassignSnap(brokers, pmeta(0, 1, 4, []int32{1, 2, 3}, []int32{1, 2, 3}))
	tg := []PartitionTarget{{Topic: "t", Partition: 0, Replicas: []int32{4, 2, 3}}}
	ok, err := ValidateTargets(s, tg)
	if err != nil || len(ok) != 1 || ok[0].TopicID != "id" {
		t.Fatalf("validate: %v %+v", err, ok)
	}
	if res := apply(s, &command{Op: opReassign, Targets: ok}); res.err != nil {
		t.Fatal(res.err)
	}
	pm := s.Topics["t"].Partitions[0]
	if !slices.Equal(pm.Replicas, []int32{4, 2, 3, 1}) || !slices.Equal(pm.Target, []int32{4, 2, 3}) ||
		!slices.Equal(pm.Origin, []int32{1, 2, 3}) || !slices.Equal(pm.ISR, []int32{1, 2, 3}) || pm.PartitionEpoch != 8 {
		t.Fatalf("started: %+v", pm)
	}
	// A second one is refused while this one runs, and changes nothing.
	before := s.Clone()
	if _, err := ValidateTargets(s, tg); !errors.Is(err, ErrReassignRunning) {
		t.Fatalf("second validate: %v", err)
	}
	if res := apply(s, &command{Op: opReassign, Targets: ok}); !errors.Is(res.err, ErrReassignRunning) {
		t.Fatalf("second apply: %v", res.err)
	}
	if fmt.Sprint(before.Topics) != fmt.Sprint(s.Topics) {
		t.Fatal("a refused reassignment changed the metadata")
	}
	// Cancel heads back to the original replicas through the same steps.
	if res := apply(s, &command{Op: opCancelReassign}); res.err != nil || res.applied != 1 {
		t.Fatalf("cancel: %+v", res)
	}
	pm = s.Topics["t"].Partitions[0]
	if !slices.Equal(pm.Target, []int32{1, 2, 3}) || pm.Origin != nil {
		t.Fatalf("cancelled: %+v", pm)
	}
	steps := reassignSteps(s, usableIn(s))
	if len(steps) != 1 || !slices.Equal(steps[0].Replicas, []int32{1, 2, 3}) || steps[0].Leader != 1 {
		t.Fatalf("steps after cancel: %+v", steps)
	}
	applyChanges(s, steps)
	if s.Reassigning() {
		t.Fatal("still reassigning")
	}
	if res := apply(s, &command{Op: opCancelReassign}); !errors.Is(res.err, ErrNoReassign) {
		t.Fatalf("cancel with nothing running: %v", res.err)
	}
}

func TestValidateTargetsBadInput(t *testing.T) {
	brokers := []BrokerInfo{{ID: 1}, {ID: 2}, {ID: 3}, {ID: 4, Draining: true}}
	s := reassignSnap(brokers, pmeta(0, 1, 4, []int32{1, 2, 3}, []int32{1, 2, 3}))
	cases := []struct {
		tg   PartitionTarget
		want string
	}{
		{PartitionTarget{Topic: "nope", Partition: 0, Replicas: []int32{1, 2, 3}}, `unknown topic: "nope"`},
		{PartitionTarget{Topic: "t", Partition: 1, Replicas: []int32{1, 2, 3}}, "has no partition 1"},
		{PartitionTarget{Topic: "t", Partition: -1, Replicas: []int32{1, 2, 3}}, "has no partition -1"},
		{PartitionTarget{Topic: "t", Partition: 0, Replicas: []int32{1, 2, 2}}, "broker 2 is named twice"},
		{PartitionTarget{Topic: "t", Partition: 0, Replicas: []int32{1, 9, 2}}, "unknown broker 9 (the brokers are 1, 2, 3, 4)"},
		{PartitionTarget{Topic: "t", Partition: 0, Replicas: []int32{1}}, "fewer than the topic's min.insync.replicas 2"},
		{PartitionTarget{Topic: "t", Partition: 0, Replicas: []int32{1, 2}}, "exactly the topic's replication factor, 3"},
		{PartitionTarget{Topic: "t", Partition: 0, Replicas: []int32{1, 2, 4}}, "broker 4 is being decommissioned"},
	}
	for _, c := range cases {
		_, err := ValidateTargets(s, []PartitionTarget{c.tg})
		if !errors.Is(err, ErrInvalidReassign) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.tg, err, c.want)
		}
	}
	two := []PartitionTarget{{Topic: "t", Partition: 0, Replicas: []int32{3, 2, 1}}, {Topic: "t", Partition: 0, Replicas: []int32{2, 3, 1}}}
	if _, err := ValidateTargets(s, two); err == nil || !strings.Contains(err.Error(), "named twice") {
		t.Errorf("a partition named twice: %v", err)
	}
	if _, err := ValidateTargets(s, nil); !errors.Is(err, ErrInvalidReassign) {
		t.Errorf("empty plan: %v", err)
	}
	if got, err := ValidateTargets(s, []PartitionTarget{{Topic: "t", Partition: 0, Replicas: []int32{1, 2, 3}}}); err != nil || len(got) != 0 {
		t.Errorf("unchanged partition: %v %+v", err, got)
	}
}

func TestDecommissionRemovesDrainedBroker(t *testing.T) {
	brokers := []BrokerInfo{{ID: 1}, {ID: 2, StorageID: "s2"}, {ID: 3}, {ID: 4}}
	s := reassignSnap(brokers,
		pmeta(0, 2, 4, []int32{2, 1, 3}, []int32{2, 1, 3}),
		pmeta(1, 1, 4, []int32{1, 3, 4}, []int32{1, 3, 4}),
	)
	plan, err := PlanDecommission(s, 2)
	if err != nil || len(plan) != 1 || plan[0].Partition != 0 || slices.Contains(plan[0].Replicas, 2) || !slices.Contains(plan[0].Replicas, 4) {
		t.Fatalf("plan: %v %+v", err, plan)
	}
	plan, _ = ValidateTargets(s, plan)
	id := int32(2)
	if res := apply(s, &command{Op: opReassign, Targets: plan, Drain: &id}); res.err != nil {
		t.Fatal(res.err)
	}
	if b, _ := s.Broker(2); !b.Draining || len(drained(s)) != 0 {
		t.Fatalf("draining: %+v %v", b, drained(s))
	}
	if res := apply(s, &command{Op: opRemoveBroker, BrokerID: 2}); res.err == nil {
		t.Fatal("removed a broker that still holds replicas")
	}
	// Catch-up: 4 joins the ISR, then leadership moves, then the shrink.
	pm := &s.Topics["t"].Partitions[0]
	pm.ISR = append(pm.ISR, 4)
	for range 2 {
		applyChanges(s, reassignSteps(s, usableIn(s)))
	}
	if got := drained(s); !slices.Equal(got, []int32{2}) {
		t.Fatalf("drained: %v (%+v)", got, s.Topics["t"].Partitions[0])
	}
	if res := apply(s, &command{Op: opRemoveBroker, BrokerID: 2}); res.err != nil {
		t.Fatal(res.err)
	}
	if _, ok := s.Broker(2); ok || !s.Decommissioned(2, "s2") {
		t.Fatalf("broker 2 still registered: %+v", s.Brokers)
	}
	// Its old data directory is refused; a new one may join.
	m := Member{Meta: MemberMeta{ID: 2, StorageID: "s2"}, GossipAddr: "x"}
	if d, why := admit(s, m, false); d != admitRefuse || !strings.Contains(why, "decommissioned") {
		t.Fatalf("admit old storage: %v %s", d, why)
	}
	m.Meta.StorageID = "new"
	if d, _ := admit(s, m, false); d != admitNew {
		t.Fatalf("admit new storage: %v", d)
	}
}
