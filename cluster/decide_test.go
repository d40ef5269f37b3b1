package cluster

import (
	"errors"
	"slices"
	"testing"
)

func snapWith(brokers []BrokerInfo, parts ...PartitionMeta) *Snapshot {
	return &Snapshot{
		Brokers: brokers,
		Topics:  map[string]Topic{"t": {Name: "t", ID: "id", Partitions: parts}},
	}
}

func pmeta(p, leader, epoch int32, replicas, isr []int32) PartitionMeta {
	return PartitionMeta{Partition: p, Leader: leader, LeaderEpoch: epoch, Replicas: replicas, ISR: isr, PartitionEpoch: 7}
}

func TestReassign(t *testing.T) {
	brokers := []BrokerInfo{{ID: 1}, {ID: 2, Fenced: true}, {ID: 3}}
	s := snapWith(brokers,
		pmeta(0, 2, 4, []int32{2, 1, 3}, []int32{2, 1, 3}), // leader fenced: 1 takes over
		pmeta(1, 1, 4, []int32{1, 2, 3}, []int32{1, 2, 3}), // follower fenced: leaves ISR
		pmeta(2, 2, 4, []int32{2, 3, 1}, []int32{2}),       // last ISR member fenced: offline, ISR kept
		pmeta(3, -1, 5, []int32{3, 2, 1}, []int32{3}),      // offline, ISR member back: leads
		pmeta(4, 3, 4, []int32{3, 1, 2}, []int32{3, 1}),    // healthy: no change
		pmeta(5, -1, 5, []int32{2, 1, 3}, []int32{2}),      // offline and still fenced: no change
	)
	got := reassign(s, usableIn(s))
	want := []PartitionChange{
		{Topic: "t", TopicID: "id", Partition: 0, FromEpoch: 7, Leader: 1, LeaderEpoch: 5, ISR: []int32{1, 3}},
		{Topic: "t", TopicID: "id", Partition: 1, FromEpoch: 7, Leader: 1, LeaderEpoch: 4, ISR: []int32{1, 3}},
		{Topic: "t", TopicID: "id", Partition: 2, FromEpoch: 7, Leader: -1, LeaderEpoch: 5, ISR: []int32{2}},
		{Topic: "t", TopicID: "id", Partition: 3, FromEpoch: 7, Leader: 3, LeaderEpoch: 6, ISR: []int32{3}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d changes: %+v", len(got), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Partition != w.Partition || g.Leader != w.Leader || g.LeaderEpoch != w.LeaderEpoch || !slices.Equal(g.ISR, w.ISR) || g.FromEpoch != w.FromEpoch {
			t.Errorf("change %d: got %+v, want %+v", i, g, w)
		}
	}
	// Applying is compare-and-set on the partition epoch.
	if n := applyChanges(s, got); n != 4 {
		t.Fatalf("applied %d", n)
	}
	if n := applyChanges(s, got); n != 0 {
		t.Fatalf("stale changes applied again: %d", n)
	}
	if pm := s.Topics["t"].Partitions[0]; pm.Leader != 1 || pm.PartitionEpoch != 8 {
		t.Fatalf("after apply: %+v", pm)
	}
}

func TestShutdownMoves(t *testing.T) {
	brokers := []BrokerInfo{{ID: 1}, {ID: 2}, {ID: 3}}
	s := snapWith(brokers,
		pmeta(0, 1, 2, []int32{1, 2, 3}, []int32{1, 2, 3}), // led by 1: moves to 2
		pmeta(1, 2, 2, []int32{2, 1, 3}, []int32{2, 1}),    // 1 a follower: leaves the ISR
		pmeta(2, 1, 2, []int32{1, 3, 2}, []int32{1}),       // 1 alone: stays, remaining
		pmeta(3, 3, 2, []int32{3, 2, 1}, []int32{3, 2}),    // 1 not involved
	)
	changes, remaining := shutdownMoves(s, 1, usableIn(s))
	if remaining != 1 || len(changes) != 2 {
		t.Fatalf("remaining %d, changes %+v", remaining, changes)
	}
	if c := changes[0]; c.Partition != 0 || c.Leader != 2 || c.LeaderEpoch != 3 || !slices.Equal(c.ISR, []int32{2, 3}) {
		t.Fatalf("move: %+v", c)
	}
	if c := changes[1]; c.Partition != 1 || c.Leader != 2 || c.LeaderEpoch != 2 || !slices.Equal(c.ISR, []int32{2}) {
		t.Fatalf("leave ISR: %+v", c)
	}
}

func TestPreferredLeaders(t *testing.T) {
	s := snapWith([]BrokerInfo{{ID: 1}, {ID: 2}, {ID: 3, Fenced: true}},
		pmeta(0, 2, 3, []int32{1, 2}, []int32{2, 1}), // back to 1
		pmeta(1, 2, 3, []int32{1, 2}, []int32{2}),    // 1 not in sync yet
		pmeta(2, 1, 3, []int32{3, 1}, []int32{1, 3}), // 3 fenced
	)
	got := preferredLeaders(s, usableIn(s))
	if len(got) != 1 || got[0].Partition != 0 || got[0].Leader != 1 || got[0].LeaderEpoch != 4 {
		t.Fatalf("%+v", got)
	}
}

func TestAlterPartition(t *testing.T) {
	s := snapWith([]BrokerInfo{{ID: 1}, {ID: 2}, {ID: 3, Fenced: true}},
		pmeta(0, 1, 3, []int32{1, 2, 3}, []int32{1, 2}))
	ok := AlterRequest{Topic: "t", Partition: 0, LeaderID: 1, LeaderEpoch: 3, PartitionEpoch: 7, NewISR: []int32{1}}
	if c, err := alterPartition(s, ok, usableIn(s)); err != nil || !slices.Equal(c.ISR, []int32{1}) || c.LeaderEpoch != 3 {
		t.Fatalf("%+v %v", c, err)
	}
	cases := []struct {
		mut  func(*AlterRequest)
		want error
	}{
		{func(r *AlterRequest) { r.LeaderEpoch = 2 }, ErrStaleLeader},
		{func(r *AlterRequest) { r.LeaderID = 2 }, ErrStaleLeader},
		{func(r *AlterRequest) { r.PartitionEpoch = 6 }, ErrStaleEpoch},
		{func(r *AlterRequest) { r.NewISR = []int32{2} }, ErrInvalidISR},       // leader dropped
		{func(r *AlterRequest) { r.NewISR = []int32{1, 1} }, ErrInvalidISR},    // duplicate
		{func(r *AlterRequest) { r.NewISR = []int32{1, 4} }, ErrInvalidISR},    // not a replica
		{func(r *AlterRequest) { r.NewISR = []int32{1, 2, 3} }, ErrInvalidISR}, // fenced joiner
		{func(r *AlterRequest) { r.Topic = "x" }, ErrUnknownTopic},
	}
	for i, c := range cases {
		r := ok
		c.mut(&r)
		if _, err := alterPartition(s, r, usableIn(s)); !errors.Is(err, c.want) {
			t.Errorf("case %d: %v, want %v", i, err, c.want)
		}
	}
}

func TestApplyCommands(t *testing.T) {
	s := &Snapshot{Topics: map[string]Topic{}}
	if r := apply(s, &command{Op: opRegisterBroker, Broker: &BrokerInfo{ID: 2, Addr: "b"}}); r.err != nil {
		t.Fatal(r.err)
	}
	apply(s, &command{Op: opRegisterBroker, Broker: &BrokerInfo{ID: 1, Addr: "a"}})
	apply(s, &command{Op: opSetFenced, BrokerID: 2, Fenced: true})
	apply(s, &command{Op: opRegisterBroker, Broker: &BrokerInfo{ID: 2, Addr: "b2"}}) // re-registering keeps the fence
	if len(s.Brokers) != 2 || s.Brokers[0].ID != 1 || s.Brokers[1].Addr != "b2" || !s.Brokers[1].Fenced {
		t.Fatalf("%+v", s.Brokers)
	}
	top := Topic{Name: "x", ID: "1"}
	if r := apply(s, &command{Op: opCreateTopic, Topic: &top}); r.err != nil {
		t.Fatal(r.err)
	}
	if r := apply(s, &command{Op: opCreateTopic, Topic: &top}); !errors.Is(r.err, ErrTopicExists) {
		t.Fatal(r.err)
	}
	if r := apply(s, &command{Op: opProducerIDs, Count: 1000}); r.first != 0 || s.NextProducerID != 1000 {
		t.Fatalf("%+v", r)
	}
	if r := apply(s, &command{Op: opProducerIDs, Count: 10}); r.first != 1000 {
		t.Fatalf("%+v", r)
	}
	if r := apply(s, &command{Op: opDeleteTopic, Name: "x"}); r.err != nil || len(s.Topics) != 0 {
		t.Fatal(r.err)
	}
}

// Regression: a broker that came back with a wiped (or damaged) data dir
// under the same id kept its ISR memberships and could be elected with an
// empty log. A new storage id takes it out of every ISR it shares, moving
// its leaderships, in the registration's own commit.
func TestStorageLost(t *testing.T) {
	brokers := []BrokerInfo{{ID: 1}, {ID: 2}, {ID: 3, Fenced: true}}
	s := snapWith(brokers,
		pmeta(0, 1, 4, []int32{1, 2, 3}, []int32{1, 2, 3}), // leads: 2 takes over
		pmeta(1, 2, 4, []int32{2, 1, 3}, []int32{2, 1}),    // follows: leaves the ISR
		pmeta(2, 1, 4, []int32{1, 2, 3}, []int32{1}),       // only ISR member: kept
		pmeta(3, 2, 4, []int32{2, 3, 1}, []int32{2, 3}),    // not in the ISR: no change
		pmeta(4, 1, 4, []int32{1, 3, 2}, []int32{1, 3}),    // the other ISR member is fenced: offline
	)
	got := storageLost(s, 1, func(r int32) bool { return r != 1 && usableIn(s)(r) })
	want := []PartitionChange{
		{Topic: "t", TopicID: "id", Partition: 0, FromEpoch: 7, Leader: 2, LeaderEpoch: 5, ISR: []int32{2, 3}},
		{Topic: "t", TopicID: "id", Partition: 1, FromEpoch: 7, Leader: 2, LeaderEpoch: 4, ISR: []int32{2}},
		{Topic: "t", TopicID: "id", Partition: 4, FromEpoch: 7, Leader: -1, LeaderEpoch: 5, ISR: []int32{3}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d changes: %+v", len(got), got)
	}
	for i := range want {
		if g, w := got[i], want[i]; g.Partition != w.Partition || g.Leader != w.Leader || g.LeaderEpoch != w.LeaderEpoch || !slices.Equal(g.ISR, w.ISR) || g.FromEpoch != w.FromEpoch {
			t.Errorf("change %d: got %+v, want %+v", i, g, w)
		}
	}
	// Applied with the registration: the new id and the ISR changes at once.
	next := s.Clone()
	res := apply(next, &command{Op: opRegisterBroker, Broker: &BrokerInfo{ID: 1, StorageID: "new"}, Changes: got})
	if res.err != nil || res.applied != 3 {
		t.Fatalf("apply: %+v", res)
	}
	if b, _ := next.Broker(1); b.StorageID != "new" || slices.Contains(next.Topics["t"].Partitions[0].ISR, 1) {
		t.Fatalf("after the registration: %+v, partition 0 ISR %v", b, next.Topics["t"].Partitions[0].ISR)
	}
}
