package group

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func tps(topic string, parts ...int32) []TopicPartition {
	out := []TopicPartition{}
	for _, p := range parts {
		out = append(out, TopicPartition{topic, p})
	}
	return out
}

func TestAssign(t *testing.T) {
	six := map[string]int32{"t": 6}
	for _, tc := range []struct {
		name    string
		members []Subscriber
		parts   map[string]int32
		prev    map[string][]TopicPartition
		want    map[string][]TopicPartition
	}{
		{"one member takes all", []Subscriber{{"a", []string{"t"}}}, six, nil,
			map[string][]TopicPartition{"a": tps("t", 0, 1, 2, 3, 4, 5)}},
		{"three share six", []Subscriber{{"a", []string{"t"}}, {"b", []string{"t"}}, {"c", []string{"t"}}}, six, nil,
			map[string][]TopicPartition{"a": tps("t", 0, 3), "b": tps("t", 1, 4), "c": tps("t", 2, 5)}},
		{"a joiner takes only from the loaded", []Subscriber{{"a", []string{"t"}}, {"b", []string{"t"}}, {"c", []string{"t"}}}, six,
			map[string][]TopicPartition{"a": tps("t", 0, 1, 2), "b": tps("t", 3, 4, 5)},
			map[string][]TopicPartition{"a": tps("t", 0, 1), "b": tps("t", 3, 4), "c": tps("t", 2, 5)}},
		{"a leaver's partitions spread, others keep theirs", []Subscriber{{"a", []string{"t"}}, {"c", []string{"t"}}}, six,
			map[string][]TopicPartition{"a": tps("t", 0, 3), "b": tps("t", 1, 4), "c": tps("t", 2, 5)},
			map[string][]TopicPartition{"a": tps("t", 0, 1, 3), "c": tps("t", 2, 4, 5)}},
		{"a topic that grows", []Subscriber{{"a", []string{"t"}}, {"b", []string{"t"}}}, map[string]int32{"t": 4},
			map[string][]TopicPartition{"a": tps("t", 0), "b": tps("t", 1)},
			map[string][]TopicPartition{"a": tps("t", 0, 2), "b": tps("t", 1, 3)}},
		{"a topic that shrank or vanished", []Subscriber{{"a", []string{"t", "gone"}}}, map[string]int32{"t": 1},
			map[string][]TopicPartition{"a": append(tps("t", 0, 5), tps("gone", 0)...)},
			map[string][]TopicPartition{"a": tps("t", 0)}},
		{"subscriptions differ", []Subscriber{{"a", []string{"x"}}, {"b", []string{"x", "y"}}}, map[string]int32{"x": 2, "y": 2}, nil,
			map[string][]TopicPartition{"a": tps("x", 0, 1), "b": tps("y", 0, 1)}},
		{"unsubscribed partitions move", []Subscriber{{"a", []string{"x"}}, {"b", []string{"x"}}}, map[string]int32{"x": 2, "y": 1},
			map[string][]TopicPartition{"a": append(tps("x", 0), tps("y", 0)...), "b": tps("x", 1)},
			map[string][]TopicPartition{"a": tps("x", 0), "b": tps("x", 1)}},
		{"more members than partitions", []Subscriber{{"a", []string{"t"}}, {"b", []string{"t"}}, {"c", []string{"t"}}}, map[string]int32{"t": 2}, nil,
			map[string][]TopicPartition{"a": tps("t", 0), "b": tps("t", 1), "c": {}}},
		{"a partition claimed twice stays with the first", []Subscriber{{"a", []string{"t"}}, {"b", []string{"t"}}}, map[string]int32{"t": 2},
			map[string][]TopicPartition{"a": tps("t", 0), "b": tps("t", 0)},
			map[string][]TopicPartition{"a": tps("t", 0), "b": tps("t", 1)}},
		{"no members", nil, six, nil, map[string][]TopicPartition{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Assign(tc.members, tc.parts, tc.prev)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

// Every partition once, balanced within one, across many shapes.
func TestAssignProperties(t *testing.T) {
	for members := 1; members <= 7; members++ {
		for parts := int32(0); parts <= 13; parts++ {
			var subs []Subscriber
			for i := range members {
				subs = append(subs, Subscriber{fmt.Sprintf("m%d", i), []string{"t"}})
			}
			prev := Assign(subs[:max(1, members-1)], map[string]int32{"t": parts}, nil)
			got := Assign(subs, map[string]int32{"t": parts}, prev)
			seen := map[TopicPartition]bool{}
			lo, hi := int(parts), 0
			for _, l := range got {
				lo, hi = min(lo, len(l)), max(hi, len(l))
				for _, tp := range l {
					if seen[tp] {
						t.Fatalf("%d members %d parts: %v twice", members, parts, tp)
					}
					seen[tp] = true
				}
			}
			if len(seen) != int(parts) || hi-lo > 1 {
				t.Fatalf("%d members %d parts: %v", members, parts, got)
			}
		}
	}
}

func ids() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("m%d", n) }
}

func beat(t *testing.T, g *Group, now time.Time, req HeartbeatRequest) HeartbeatResult {
	t.Helper()
	r, err := g.Heartbeat(now, req, map[string]int32{"t": 4})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A partition moves to its new owner only after the old owner released it.
func TestGroupHandOver(t *testing.T) {
	g := NewGroup("g", ids())
	now := time.Unix(0, 0)
	a := beat(t, g, now, HeartbeatRequest{Topics: []string{"t"}})
	if a.MemberID != "m1" || a.Epoch != 1 || fmt.Sprint(a.Assignment) != fmt.Sprint(tps("t", 0, 1, 2, 3)) {
		t.Fatalf("first member: %+v", a)
	}
	b := beat(t, g, now, HeartbeatRequest{Topics: []string{"t"}})
	if len(b.Assignment) != 0 || b.Interval != ReconcileInterval {
		t.Fatalf("joiner got partitions still owned by a: %+v", b)
	}
	if g.State() != "Reconciling" {
		t.Fatalf("state %s", g.State())
	}
	// a learns it keeps 0,1 — still owning 2,3 until its next heartbeat.
	a = beat(t, g, now, HeartbeatRequest{MemberID: "m1", MemberEpoch: a.Epoch, Owned: tps("t", 0, 1, 2, 3)})
	if fmt.Sprint(a.Assignment) != fmt.Sprint(tps("t", 0, 1)) || a.Epoch != 2 {
		t.Fatalf("a after b joined: %+v", a)
	}
	b = beat(t, g, now, HeartbeatRequest{MemberID: b.MemberID, MemberEpoch: b.Epoch})
	if len(b.Assignment) != 0 {
		t.Fatalf("b got partitions a has not released: %+v", b)
	}
	// a may still commit 2 and 3 while it finishes them.
	if err := g.CheckCommit("m1", a.Epoch, tps("t", 2, 3)); err != nil {
		t.Fatal(err)
	}
	a = beat(t, g, now, HeartbeatRequest{MemberID: "m1", MemberEpoch: a.Epoch, Owned: tps("t", 0, 1)})
	b = beat(t, g, now, HeartbeatRequest{MemberID: b.MemberID, MemberEpoch: b.Epoch})
	if fmt.Sprint(b.Assignment) != fmt.Sprint(tps("t", 2, 3)) {
		t.Fatalf("b after release: %+v", b)
	}
	if err := g.CheckCommit("m1", a.Epoch, tps("t", 2)); !errors.Is(err, ErrFenced) {
		t.Fatalf("a committed a partition it released: %v", err)
	}
	b = beat(t, g, now, HeartbeatRequest{MemberID: b.MemberID, MemberEpoch: b.Epoch, Owned: b.Assignment})
	if g.State() != "Stable" {
		t.Fatalf("state %s, members %+v", g.State(), g.Members())
	}
	// b's session runs out: a takes everything at once.
	later := now.Add(DefaultSessionTimeout - time.Second)
	a = beat(t, g, later, HeartbeatRequest{MemberID: "m1", MemberEpoch: a.Epoch, Owned: a.Assignment})
	if gone := g.Expire(now.Add(DefaultSessionTimeout + time.Millisecond)); fmt.Sprint(gone) != "[m2]" {
		t.Fatalf("expired %v", gone)
	}
	a = beat(t, g, later, HeartbeatRequest{MemberID: "m1", MemberEpoch: a.Epoch, Owned: a.Assignment})
	if len(a.Assignment) != 4 {
		t.Fatalf("a after b expired: %+v", a)
	}
	if _, err := g.Heartbeat(later, HeartbeatRequest{MemberID: "m2", MemberEpoch: b.Epoch}, nil); !errors.Is(err, ErrFenced) {
		t.Fatalf("expired member's heartbeat: %v", err)
	}
	// Leaving releases at once.
	beat(t, g, later, HeartbeatRequest{MemberID: "m1", MemberEpoch: -1})
	if g.Len() != 0 || g.State() != "Empty" {
		t.Fatalf("after leave: %d members", g.Len())
	}
}

func TestGroupFencing(t *testing.T) {
	g := NewGroup("g", ids())
	now := time.Unix(0, 0)
	a := beat(t, g, now, HeartbeatRequest{Topics: []string{"t"}})
	b := beat(t, g, now, HeartbeatRequest{Topics: []string{"t"}})
	a2 := beat(t, g, now, HeartbeatRequest{MemberID: a.MemberID, MemberEpoch: a.Epoch, Owned: a.Assignment})
	for _, tc := range []struct {
		name   string
		member string
		epoch  int32
		parts  []TopicPartition
		err    error
	}{
		{"current epoch, owned partition", a.MemberID, a2.Epoch, tps("t", 0), nil},
		{"previous epoch (answer lost)", a.MemberID, a.Epoch, tps("t", 0), nil},
		{"older epoch", a.MemberID, a2.Epoch - 2, tps("t", 0), ErrFenced},
		{"newer epoch", a.MemberID, a2.Epoch + 1, tps("t", 0), ErrFenced},
		{"unknown member", "nobody", 1, tps("t", 0), ErrFenced},
		{"partition not held", b.MemberID, b.Epoch, tps("t", 0), ErrFenced},
		{"admin commit with members", "", 0, tps("t", 0), ErrNotEmpty},
	} {
		if err := g.CheckCommit(tc.member, tc.epoch, tc.parts); !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	for _, tc := range []struct {
		name string
		req  HeartbeatRequest
		err  error
	}{
		{"stale epoch", HeartbeatRequest{MemberID: a.MemberID, MemberEpoch: a2.Epoch + 5}, ErrFenced},
		{"bad epoch", HeartbeatRequest{MemberID: a.MemberID, MemberEpoch: -2}, ErrInvalid},
		{"bad regex", HeartbeatRequest{Regex: "("}, ErrInvalid},
		{"join without subscription", HeartbeatRequest{}, ErrInvalid},
		{"session too short", HeartbeatRequest{Topics: []string{"t"}, SessionTimeout: time.Millisecond}, ErrInvalid},
	} {
		if _, err := g.Heartbeat(now, tc.req, map[string]int32{"t": 4}); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	if g.Len() != 2 {
		t.Fatalf("refused heartbeats changed the group: %d members", g.Len())
	}
}

func TestGroupRegexAndNewPartitions(t *testing.T) {
	g := NewGroup("g", ids())
	now := time.Unix(0, 0)
	topics := map[string]int32{"orders-eu": 1, "orders-us": 1, "other": 1, "__consumer_offsets": 50}
	r, err := g.Heartbeat(now, HeartbeatRequest{Regex: "^orders-.*|.*offsets"}, topics)
	if err != nil || fmt.Sprint(r.Assignment) != fmt.Sprint(append(tps("orders-eu", 0), tps("orders-us", 0)...)) {
		t.Fatalf("%+v %v", r, err)
	}
	topics["orders-eu"] = 2
	r, err = g.Heartbeat(now, HeartbeatRequest{MemberID: r.MemberID, MemberEpoch: r.Epoch, Owned: r.Assignment}, topics)
	if err != nil || len(r.Assignment) != 3 {
		t.Fatalf("after growth: %+v %v", r, err)
	}
}

// replicaRacks maps partitions of topic t to the racks of their replicas.
func replicaRacks(byPartition ...[]string) func(TopicPartition) []string {
	return func(tp TopicPartition) []string {
		if tp.Topic != "t" || int(tp.Partition) >= len(byPartition) {
			return nil
		}
		return byPartition[tp.Partition]
	}
}

func TestAssignRacks(t *testing.T) {
	r1, r2, r3 := []string{"r1"}, []string{"r2"}, []string{"r3"}
	three := []Subscriber{{"a", []string{"t"}}, {"b", []string{"t"}}, {"c", []string{"t"}}}
	two := []Subscriber{{"a", []string{"t"}}, {"b", []string{"t"}}}
	for _, tc := range []struct {
		name    string
		members []Subscriber
		parts   map[string]int32
		racks   Racks
		prev    map[string][]TopicPartition
		want    map[string][]TopicPartition
	}{
		{"each member takes its rack's partitions", three, map[string]int32{"t": 6},
			Racks{map[string]string{"a": "r1", "b": "r2", "c": "r3"}, replicaRacks(r3, r2, r1, r3, r2, r1)}, nil,
			map[string][]TopicPartition{"a": tps("t", 2, 5), "b": tps("t", 1, 4), "c": tps("t", 0, 3)}},
		{"balance before racks: every replica in one rack", three, map[string]int32{"t": 6},
			Racks{map[string]string{"a": "r1", "b": "r2", "c": "r3"}, replicaRacks(r1, r1, r1, r1, r1, r1)}, nil,
			map[string][]TopicPartition{"a": tps("t", 0, 1), "b": tps("t", 2, 4), "c": tps("t", 3, 5)}},
		{"a previous owner in the wrong rack gives the partition up", two, map[string]int32{"t": 4},
			Racks{map[string]string{"a": "r1", "b": "r2"}, replicaRacks(r1, r1, r2, r2)},
			map[string][]TopicPartition{"a": tps("t", 2, 3), "b": tps("t", 0, 1)},
			map[string][]TopicPartition{"a": tps("t", 0, 1), "b": tps("t", 2, 3)}},
		{"a previous owner keeps a partition no member's rack holds", two, map[string]int32{"t": 4},
			Racks{map[string]string{"a": "r1", "b": "r2"}, replicaRacks(r3, r3, r3, r3)},
			map[string][]TopicPartition{"a": tps("t", 2, 3), "b": tps("t", 0, 1)},
			map[string][]TopicPartition{"a": tps("t", 2, 3), "b": tps("t", 0, 1)}},
		{"replicas in every rack: as without racks", three, map[string]int32{"t": 6},
			Racks{map[string]string{"a": "r1", "b": "r2", "c": "r3"}, replicaRacks(
				[]string{"r1", "r2", "r3"}, []string{"r1", "r2", "r3"}, []string{"r1", "r2", "r3"},
				[]string{"r1", "r2", "r3"}, []string{"r1", "r2", "r3"}, []string{"r1", "r2", "r3"})}, nil,
			map[string][]TopicPartition{"a": tps("t", 0, 3), "b": tps("t", 1, 4), "c": tps("t", 2, 5)}},
		{"members without racks: as without racks", three, map[string]int32{"t": 6},
			Racks{map[string]string{}, replicaRacks(r3, r2, r1, r3, r2, r1)}, nil,
			map[string][]TopicPartition{"a": tps("t", 0, 3), "b": tps("t", 1, 4), "c": tps("t", 2, 5)}},
		{"a rack with more partitions than its share: the rest spread", two, map[string]int32{"t": 6},
			Racks{map[string]string{"a": "r1", "b": "r2"}, replicaRacks(r1, r1, r1, r1, r2, r2)}, nil,
			map[string][]TopicPartition{"a": tps("t", 0, 1, 2), "b": tps("t", 3, 4, 5)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := AssignRacks(tc.members, tc.parts, tc.prev, tc.racks)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}
