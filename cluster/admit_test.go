package cluster

import "testing"

func TestAdmit(t *testing.T) {
	reg := BrokerInfo{ID: 2, Addr: "b2:9420", PeerAddr: "b2:9424", GossipAddr: "10.0.0.2:9421", StorageID: "s2", Fenced: true}
	s := &Snapshot{Brokers: []BrokerInfo{reg}}
	member := func(id int32, gossip, storage, addr string) Member {
		return Member{Name: "n", GossipAddr: gossip, State: "alive",
			Meta: MemberMeta{ID: id, Addr: addr, PeerAddr: "b2:9424", StorageID: storage}}
	}
	for _, tc := range []struct {
		name string
		m    Member
		live bool
		want admission
	}{
		{"unregistered id", member(99, "10.0.0.9:9421", "x", "x:1"), false, admitNew},
		{"as registered (fenced aside)", member(2, "10.0.0.2:9421", "s2", "b2:9420"), false, admitKnown},
		{"same place, wiped data", member(2, "10.0.0.2:9421", "s2b", "b2:9420"), false, admitUpdate},
		{"moved, same data", member(2, "10.0.0.7:9421", "s2", "b2:9420"), false, admitUpdate},
		{"elsewhere, other data", member(2, "10.0.0.9:9421", "forged", "x:1"), false, admitRefuse},
		{"elsewhere, same data, broker alive at home", member(2, "10.0.0.9:9421", "s2", "x:1"), true, admitRefuse},
		{"new client address at home", member(2, "10.0.0.2:9421", "s2", "b2new:9420"), false, admitUpdate},
	} {
		if got, why := admit(s, tc.m, tc.live); got != tc.want {
			t.Errorf("%s: %v (%s), want %v", tc.name, got, why, tc.want)
		} else if got == admitRefuse && why == "" {
			t.Errorf("%s: refused without a reason", tc.name)
		}
	}
}

func TestVerifiedMembers(t *testing.T) {
	s := &Snapshot{Brokers: []BrokerInfo{{ID: 1, GossipAddr: "a:1"}, {ID: 2, GossipAddr: "b:1"}}}
	ms := []Member{
		{Name: "real-1-old", GossipAddr: "a:1", State: "alive", Meta: MemberMeta{ID: 1, Incarnation: 1}},
		{Name: "real-1-new", GossipAddr: "a:1", State: "alive", Meta: MemberMeta{ID: 1, Incarnation: 5}},
		{Name: "fake-1", GossipAddr: "evil:1", State: "alive", Meta: MemberMeta{ID: 1, Incarnation: 9}},
		{Name: "fake-2", GossipAddr: "evil:2", State: "alive", Meta: MemberMeta{ID: 2, Incarnation: 9}},
		{Name: "rogue-99", GossipAddr: "evil:3", State: "alive", Meta: MemberMeta{ID: 99}},
	}
	got := verifiedMembers(s, ms)
	if len(got) != 1 || got[1].Name != "real-1-new" {
		t.Fatalf("verified %+v; want broker 1's latest member at its registered address only", got)
	}
}

func TestCheckIdentity(t *testing.T) {
	m := Member{GossipAddr: "g:1", Meta: MemberMeta{ID: 3, StorageID: "s", PeerAddr: "p:1"}}
	if err := checkIdentity(m, Identity{ID: 3, StorageID: "s", GossipAddr: "g:1"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []Identity{{ID: 4, StorageID: "s", GossipAddr: "g:1"}, {ID: 3, StorageID: "t", GossipAddr: "g:1"}, {ID: 3, StorageID: "s", GossipAddr: "h:1"}} {
		if err := checkIdentity(m, id); err == nil {
			t.Errorf("%+v accepted for %+v", id, m.Meta)
		}
	}
}

// A broker restarted at its address is listed twice until memberlist
// declares the old process dead; only the new one may be registered, or
// the two registrations alternate (the old one verified through the new
// process's listener).
func TestSupersededIncarnation(t *testing.T) {
	old := Member{Name: "b1-old", GossipAddr: "a:1", State: "alive", Meta: MemberMeta{ID: 1, Incarnation: 1, StorageID: "s"}}
	cur := Member{Name: "b1-new", GossipAddr: "a:1", State: "alive", Meta: MemberMeta{ID: 1, Incarnation: 5, StorageID: "s"}}
	elsewhere := Member{Name: "b1-elsewhere", GossipAddr: "b:1", State: "alive", Meta: MemberMeta{ID: 1, Incarnation: 9}}
	dead := Member{Name: "b1-dead", GossipAddr: "a:1", State: "dead", Meta: MemberMeta{ID: 1, Incarnation: 9}}
	other := Member{Name: "b2", GossipAddr: "a:1", State: "alive", Meta: MemberMeta{ID: 2, Incarnation: 9}}
	all := []Member{old, cur, elsewhere, dead, other}
	for _, tc := range []struct {
		m    Member
		want bool
	}{{old, true}, {cur, false}, {elsewhere, false}} {
		if got := superseded(tc.m, all); got != tc.want {
			t.Errorf("%s superseded: %v, want %v", tc.m.Name, got, tc.want)
		}
	}
	if superseded(old, []Member{old, dead, other, elsewhere}) {
		t.Error("superseded by a dead member, another broker's member, or a member elsewhere")
	}
}
