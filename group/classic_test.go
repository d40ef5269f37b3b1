package group

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

var t0 = time.Unix(1000, 0)

func seqIDs() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("m%d", n) }
}

func joinReq(id string, protos ...string) JoinRequest {
	if len(protos) == 0 {
		protos = []string{"range"}
	}
	r := JoinRequest{MemberID: id, ClientID: "c", Host: "h", ProtocolType: "consumer",
		SessionTimeout: 10 * time.Second, RebalanceTimeout: 30 * time.Second, RequireMemberID: true}
	for _, p := range protos {
		r.Protocols = append(r.Protocols, Protocol{Name: p, Metadata: []byte(id + p)})
	}
	return r
}

// joinAs runs the two-step join of a new member (MEMBER_ID_REQUIRED, then
// the join with the id) and returns its id.
func joinAs(t *testing.T, g *Classic, now time.Time, protos ...string) (string, JoinResult, bool) {
	t.Helper()
	r, done, err := g.Join(now, joinReq("", protos...))
	if !done || !errors.Is(err, ErrMemberIDRequired) || r.MemberID == "" {
		t.Fatalf("first join: %+v %v %v", r, done, err)
	}
	id := r.MemberID
	r, done, err = g.Join(now, joinReq(id, protos...))
	if err != nil {
		t.Fatalf("join with id: %v", err)
	}
	return id, r, done
}

// stable brings a group of n members to Stable at generation 1, the
// leader assigning each member its id as the assignment.
func stable(t *testing.T, n int) (*Classic, []string) {
	t.Helper()
	g := NewClassic("g", seqIDs())
	var members []string
	for i := 0; i < n; i++ {
		id, _, done := joinAs(t, g, t0)
		members = append(members, id)
		if i == 0 && !done {
			t.Fatal("a lone member's join must complete at once")
		}
	}
	// Each rejoin (members after the first triggered rebalances).
	for _, id := range members {
		g.Join(t0, joinReq(id))
	}
	for _, id := range members {
		if _, done, err := g.JoinAnswer(id); err != nil || (!done && g.State != StateCompletingRebalance) {
			t.Fatalf("join answer of %s: %v %v (%s)", id, done, err, g.State)
		}
	}
	as := map[string][]byte{}
	for _, id := range members {
		as[id] = []byte("a-" + id)
	}
	if _, done, err := g.Sync(t0, SyncRequest{MemberRef: MemberRef{MemberID: g.Leader, Generation: g.Generation}, Assignments: as}); !done || err != nil {
		t.Fatalf("leader sync: %v %v", done, err)
	}
	if g.State != StateStable {
		t.Fatalf("state %s", g.State)
	}
	return g, members
}

func TestClassicJoinSync(t *testing.T) {
	g := NewClassic("g", seqIDs())
	a, r, done := joinAs(t, g, t0)
	if !done || r.Generation != 1 || r.Leader != a || len(r.Members) != 1 || r.Protocol != "range" {
		t.Fatalf("lone join: %+v", r)
	}
	// b joins: a rebalance starts, b waits until a rejoins.
	b, _, done := joinAs(t, g, t0)
	if done || g.State != StatePreparingRebalance {
		t.Fatalf("b's join answered before a rejoined (%s)", g.State)
	}
	if err := g.Heartbeat(t0, MemberRef{MemberID: a, Generation: 1}); !errors.Is(err, ErrRebalanceInProgress) {
		t.Fatalf("a's heartbeat during the rebalance: %v", err)
	}
	// a may still commit in its generation while the rebalance prepares.
	if err := g.CheckCommit(t0, MemberRef{MemberID: a, Generation: 1}); err != nil {
		t.Fatalf("commit of generation 1 while preparing: %v", err)
	}
	ra, done, err := g.Join(t0, joinReq(a))
	if !done || err != nil || ra.Generation != 2 || ra.Leader != a || len(ra.Members) != 2 {
		t.Fatalf("a's rejoin: %+v %v %v", ra, done, err)
	}
	rb, done, err := g.JoinAnswer(b)
	if !done || err != nil || rb.Generation != 2 || rb.Members != nil {
		t.Fatalf("b's answer: %+v %v %v", rb, done, err)
	}
	// Commits of generation 2 wait for the assignment.
	if err := g.CheckCommit(t0, MemberRef{MemberID: b, Generation: 2}); !errors.Is(err, ErrRebalanceInProgress) {
		t.Fatalf("commit while completing: %v", err)
	}
	if _, done, err := g.Sync(t0, SyncRequest{MemberRef: MemberRef{MemberID: b, Generation: 2}}); done || err != nil {
		t.Fatalf("follower sync before the leader's: %v %v", done, err)
	}
	got, done, err := g.Sync(t0, SyncRequest{MemberRef: MemberRef{MemberID: a, Generation: 2},
		Assignments: map[string][]byte{a: []byte("A"), b: []byte("B"), "ghost": []byte("G")}})
	if !done || err != nil || string(got) != "A" {
		t.Fatalf("leader sync: %q %v %v", got, done, err)
	}
	got, done, err = g.SyncAnswer(MemberRef{MemberID: b, Generation: 2})
	if !done || err != nil || string(got) != "B" {
		t.Fatalf("follower's assignment: %q %v %v", got, done, err)
	}
	if g.State != StateStable || g.Len() != 2 {
		t.Fatalf("state %s, %d members", g.State, g.Len())
	}
	for _, tc := range []struct {
		ref  MemberRef
		want error
	}{
		{MemberRef{MemberID: b, Generation: 2}, nil},
		{MemberRef{MemberID: b, Generation: 1}, ErrIllegalGeneration},
		{MemberRef{MemberID: "nobody", Generation: 2}, ErrUnknownMember},
		{MemberRef{Generation: -1}, ErrUnknownMember}, // administrative commit while members are in
	} {
		if err := g.CheckCommit(t0, tc.ref); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("commit %+v: %v, want %v", tc.ref, err, tc.want)
		}
	}
}

// Requests that break the rules are refused and change nothing.
func TestClassicRefusals(t *testing.T) {
	g, ms := stable(t, 2)
	a, b := ms[0], ms[1]
	gen := g.Generation
	withTimeouts := func(s, r time.Duration) JoinRequest {
		q := joinReq(a)
		q.SessionTimeout, q.RebalanceTimeout = s, r
		return q
	}
	otherType := joinReq("")
	otherType.ProtocolType = "connect"
	noProtos := joinReq("")
	noProtos.Protocols = nil
	huge := joinReq("")
	huge.Protocols[0].Metadata = make([]byte, MaxMetadataBytes+1)
	for _, tc := range []struct {
		name string
		req  JoinRequest
		want error
	}{
		{"unknown member id", joinReq("m99"), ErrUnknownMember},
		{"session timeout too short", withTimeouts(time.Millisecond, time.Second), ErrInvalidSessionTimeout},
		{"session timeout too long", withTimeouts(time.Hour, time.Second), ErrInvalidSessionTimeout},
		{"no rebalance timeout", withTimeouts(10*time.Second, 0), ErrInvalid},
		{"another protocol type", otherType, ErrInconsistentProtocol},
		{"no protocols", noProtos, ErrInconsistentProtocol},
		{"no protocol in common", joinReq("", "roundrobin"), ErrInconsistentProtocol},
		{"metadata too large", huge, ErrInvalid},
	} {
		r, done, err := g.Join(t0, tc.req)
		if !done || !errors.Is(err, tc.want) {
			t.Errorf("%s: %+v %v %v, want %v", tc.name, r, done, err, tc.want)
		}
	}
	syncs := []struct {
		name string
		req  SyncRequest
		want error
	}{
		{"unknown member", SyncRequest{MemberRef: MemberRef{MemberID: "m99", Generation: gen}}, ErrUnknownMember},
		{"old generation", SyncRequest{MemberRef: MemberRef{MemberID: b, Generation: gen - 1}}, ErrIllegalGeneration},
		{"wrong protocol", SyncRequest{MemberRef: MemberRef{MemberID: b, Generation: gen}, Protocol: "sticky"}, ErrInconsistentProtocol},
	}
	for _, tc := range syncs {
		if _, done, err := g.Sync(t0, tc.req); !done || !errors.Is(err, tc.want) {
			t.Errorf("sync %s: %v %v, want %v", tc.name, done, err, tc.want)
		}
	}
	if errs := g.Leave(t0, []MemberRef{{MemberID: "m99"}}); !errors.Is(errs[0], ErrUnknownMember) {
		t.Errorf("leave of an unknown member: %v", errs)
	}
	if g.State != StateStable || g.Generation != gen || g.Len() != 2 {
		t.Fatalf("refusals changed the group: %s gen %d, %d members", g.State, g.Generation, g.Len())
	}
	if got, _, _ := g.SyncAnswer(MemberRef{MemberID: b, Generation: gen}); string(got) != "a-"+b {
		t.Fatalf("b's assignment changed: %q", got)
	}
}

func TestClassicOversizedAssignment(t *testing.T) {
	g := NewClassic("g", seqIDs())
	a, _, _ := joinAs(t, g, t0)
	_, done, err := g.Sync(t0, SyncRequest{MemberRef: MemberRef{MemberID: a, Generation: 1},
		Assignments: map[string][]byte{a: make([]byte, MaxAssignmentBytes+1)}})
	if !done || !errors.Is(err, ErrInvalid) || g.State != StateCompletingRebalance {
		t.Fatalf("oversized assignment: %v %v, state %s", done, err, g.State)
	}
}

func TestClassicSessionAndRebalanceTimeouts(t *testing.T) {
	g, ms := stable(t, 3)
	a, b, c := ms[0], ms[1], ms[2]
	gen := g.Generation
	// b and c heartbeat; a goes silent past its session.
	later := t0.Add(8 * time.Second)
	for _, id := range []string{b, c} {
		if err := g.Heartbeat(later, MemberRef{MemberID: id, Generation: gen}); err != nil {
			t.Fatal(err)
		}
	}
	if changed, gone := g.Tick(t0.Add(11 * time.Second)); !changed || len(gone) != 1 || gone[0] != a {
		t.Fatalf("expiry: %v %v", changed, gone)
	}
	if g.State != StatePreparingRebalance {
		t.Fatalf("state after expiry %s", g.State)
	}
	// b rejoins; c never does: at the rebalance timeout c is removed and b
	// leads generation gen+1 alone.
	if _, done, _ := g.Join(t0.Add(12*time.Second), joinReq(b)); done {
		t.Fatal("b's join completed while c had not rejoined")
	}
	// c keeps its session with heartbeats (each told to rejoin) but never
	// rejoins.
	for _, s := range []time.Duration{18, 26, 34, 40} {
		if err := g.Heartbeat(t0.Add(s*time.Second), MemberRef{MemberID: c, Generation: gen}); !errors.Is(err, ErrRebalanceInProgress) {
			t.Fatalf("c's heartbeat: %v", err)
		}
		if changed, _ := g.Tick(t0.Add(s * time.Second)); changed {
			t.Fatal("the rebalance completed before its deadline")
		}
	}
	g.Tick(t0.Add(42 * time.Second))
	r, done, err := g.JoinAnswer(b)
	if !done || err != nil || r.Generation != gen+1 || r.Leader != b || len(r.Members) != 1 {
		t.Fatalf("b after the rebalance timeout: %+v %v %v", r, done, err)
	}
	if _, _, err := g.JoinAnswer(c); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("c: %v", err)
	}
	// The leader does not sync within the rebalance timeout: it is removed.
	g.Tick(t0.Add(80 * time.Second))
	if g.Len() != 0 || g.State != StateEmpty {
		t.Fatalf("after the sync deadline: %d members, %s", g.Len(), g.State)
	}
	// An empty group takes an administrative commit.
	if err := g.CheckCommit(t0, MemberRef{Generation: -1}); err != nil {
		t.Fatal(err)
	}
}

func TestClassicLeaveAndPendingIDs(t *testing.T) {
	g, ms := stable(t, 2)
	gen := g.Generation
	if errs := g.Leave(t0, []MemberRef{{MemberID: ms[0]}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	// The other member must rejoin; alone, its join completes at once.
	if err := g.Heartbeat(t0, MemberRef{MemberID: ms[1], Generation: gen}); !errors.Is(err, ErrRebalanceInProgress) {
		t.Fatalf("heartbeat after a leave: %v", err)
	}
	r, done, err := g.Join(t0, joinReq(ms[1]))
	if !done || err != nil || r.Leader != ms[1] || r.Generation != gen+1 {
		t.Fatalf("rejoin: %+v %v %v", r, done, err)
	}
	// An id handed out but never used lapses after the session timeout.
	r, _, _ = g.Join(t0, joinReq(""))
	if len(g.pending) != 1 {
		t.Fatal("no pending id")
	}
	g.Tick(t0.Add(11 * time.Second))
	if len(g.pending) != 0 {
		t.Fatal("the pending id did not lapse")
	}
	if _, _, err := g.Join(t0.Add(12*time.Second), joinReq(r.MemberID)); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("join with a lapsed id: %v", err)
	}
	g.Leave(t0, []MemberRef{{MemberID: ms[1]}})
	if g.State != StateEmpty || g.Len() != 0 {
		t.Fatalf("after the last leave: %s", g.State)
	}
}

func TestClassicStaticMember(t *testing.T) {
	g := NewClassic("g", seqIDs())
	join := func(id, inst string) (JoinResult, bool, error) {
		q := joinReq(id)
		q.InstanceID = inst
		q.Protocols[0].Metadata = []byte("meta")
		return g.Join(t0, q)
	}
	ra, _, _ := join("", "ia")
	rb, _, _ := join("", "ib")
	if _, _, err := join(ra.MemberID, "ia"); err != nil {
		t.Fatal(err)
	}
	if _, done, err := g.JoinAnswer(rb.MemberID); !done || err != nil {
		t.Fatalf("b's join: %v %v", done, err)
	}
	g.Sync(t0, SyncRequest{MemberRef: MemberRef{MemberID: g.Leader, Generation: g.Generation},
		Assignments: map[string][]byte{ra.MemberID: []byte("A"), rb.MemberID: []byte("B")}})
	gen := g.Generation
	follower := rb.MemberID
	if follower == g.Leader {
		t.Fatal("b leads")
	}
	// The follower restarts: a new id, the same assignment, no rebalance.
	r, done, err := join("", "ib")
	if !done || err != nil || r.Generation != gen || r.MemberID == follower || g.State != StateStable {
		t.Fatalf("static rejoin: %+v %v %v %s", r, done, err, g.State)
	}
	got, done, err := g.Sync(t0, SyncRequest{MemberRef: MemberRef{MemberID: r.MemberID, InstanceID: "ib", Generation: gen}})
	if !done || err != nil || string(got) != "B" {
		t.Fatalf("restarted static member's assignment: %q %v %v", got, done, err)
	}
	// Its old incarnation is fenced.
	if err := g.Heartbeat(t0, MemberRef{MemberID: follower, InstanceID: "ib", Generation: gen}); !errors.Is(err, ErrFencedInstance) {
		t.Fatalf("old incarnation: %v", err)
	}
	if _, _, err := join(follower, "ib"); !errors.Is(err, ErrFencedInstance) {
		t.Fatalf("old incarnation's join: %v", err)
	}
}

func TestSelectProtocol(t *testing.T) {
	for _, tc := range []struct {
		members [][]string
		want    string
	}{
		{[][]string{{"range"}}, "range"},
		{[][]string{{"sticky", "range"}, {"range", "sticky"}, {"range", "sticky"}}, "range"},
		{[][]string{{"sticky", "range"}, {"sticky", "range"}, {"range"}}, "range"}, // only range is common
		{[][]string{{"a", "b"}, {"b", "a"}}, "a"},                                  // a tie: the first member's choice
	} {
		g := NewClassic("g", seqIDs())
		for i, ps := range tc.members {
			g.add(t0, fmt.Sprint(i), joinReq(fmt.Sprint(i), ps...))
		}
		if got := g.selectProtocol(); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.members, got, tc.want)
		}
	}
}

// The leader sees every member's metadata for the chosen protocol.
func TestClassicLeaderSeesAllMetadata(t *testing.T) {
	for round := 0; round < 20; round++ {
		g := NewClassic("g", seqIDs())
		a, _, _ := joinAs(t, g, t0, "range", "roundrobin")
		joinAs(t, g, t0, "range", "roundrobin")
		joinAs(t, g, t0, "range")
		r, done, err := g.Join(t0, joinReq(a, "range", "roundrobin"))
		if !done || err != nil || len(r.Members) != 3 {
			t.Fatalf("leader's answer: %+v %v", r, err)
		}
		for _, m := range r.Members {
			if string(m.Metadata) != m.ID+"range" {
				t.Fatalf("member %s metadata %q", m.ID, m.Metadata)
			}
		}
	}
}

// FuzzClassic drives a classic group with arbitrary sequences of joins,
// syncs, heartbeats, leaves, commits and time. Nothing may panic, the
// generation never goes back, a Stable or CompletingRebalance group has a
// leader among its members, and an Empty one has none.
func FuzzClassic(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 2, 1, 3, 0, 4, 9, 5, 1})
	f.Add([]byte{0, 1, 0, 2, 0, 3, 1, 1, 4, 200, 4, 200, 2, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		g := NewClassic("g", seqIDs())
		now := t0
		var known []string
		pick := func(b byte) string {
			if len(known) == 0 || b%7 == 6 {
				return fmt.Sprintf("m%d", b)
			}
			return known[int(b)%len(known)]
		}
		gen := g.Generation
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%6, ops[i+1]
			id := pick(arg)
			ref := MemberRef{MemberID: id, Generation: g.Generation - int32(arg%3/2)}
			switch op {
			case 0:
				q := joinReq(id)
				if arg%5 == 0 {
					q.MemberID = ""
				}
				if arg%11 == 0 {
					q.InstanceID = fmt.Sprint("i", arg%3)
				}
				if r, _, err := g.Join(now, q); r.MemberID != "" && (err == nil || errors.Is(err, ErrMemberIDRequired)) {
					known = append(known, r.MemberID)
				}
			case 1:
				as := map[string][]byte{}
				for _, k := range known {
					as[k] = []byte(k)
				}
				g.Sync(now, SyncRequest{MemberRef: ref, Assignments: as})
			case 2:
				g.Heartbeat(now, ref)
			case 3:
				g.Leave(now, []MemberRef{ref})
			case 4:
				now = now.Add(time.Duration(arg) * 200 * time.Millisecond)
				g.Tick(now)
			case 5:
				g.CheckCommit(now, ref)
				g.JoinAnswer(id)
				g.SyncAnswer(ref)
			}
			if g.Generation < gen {
				t.Fatalf("generation went from %d to %d", gen, g.Generation)
			}
			gen = g.Generation
			switch g.State {
			case StateStable, StateCompletingRebalance:
				if g.members[g.Leader] == nil {
					t.Fatalf("%s without its leader %q", g.State, g.Leader)
				}
			case StateEmpty:
				if g.Len() != 0 {
					t.Fatalf("Empty with %d members", g.Len())
				}
			}
		}
	})
}
