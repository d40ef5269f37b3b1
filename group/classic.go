package group

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"
)

// The classic group protocol (Kafka's JoinGroup, SyncGroup, Heartbeat,
// LeaveGroup): members join, the coordinator picks a leader and a
// protocol, the leader computes the assignment on the client side and
// sends it in SyncGroup, and the coordinator hands each member its part.
// A generation is one completed join; requests of older generations are
// refused. Every method decides from the state and the time passed in,
// changes the state only when the request is valid, and never blocks: a
// request that must wait (a join until every member has rejoined, a
// follower's sync until the leader's) asks again with JoinAnswer or
// SyncAnswer after a change.

// Errors of the classic protocol, by Kafka's names. Each leaves the group
// as it was.
var (
	ErrUnknownMember         = errors.New("unknown member id")
	ErrIllegalGeneration     = errors.New("illegal generation")
	ErrRebalanceInProgress   = errors.New("rebalance in progress")
	ErrMemberIDRequired      = errors.New("member id required")
	ErrInconsistentProtocol  = errors.New("inconsistent group protocol")
	ErrInvalidSessionTimeout = errors.New("invalid session timeout")
	ErrGroupFull             = errors.New("group max size reached")
	ErrFencedInstance        = errors.New("fenced instance id")
	// ErrNotConsumerGroup: a KIP-848 heartbeat for a group whose members
	// use the classic protocol.
	ErrNotConsumerGroup = errors.New("group uses the classic protocol")
)

// Limits of a classic group.
const (
	MaxClassicMembers   = 1000
	MaxMetadataBytes    = 1 << 20 // a member's protocols' metadata, together
	MaxAssignmentBytes  = 1 << 20 // one member's assignment
	MaxRebalanceTimeout = 30 * time.Minute
)

// Classic group states, by Kafka's names.
const (
	StateEmpty               = "Empty"
	StatePreparingRebalance  = "PreparingRebalance"
	StateCompletingRebalance = "CompletingRebalance"
	StateStable              = "Stable"
	StateDead                = "Dead"
)

// Protocol is one assignor a member supports, with its metadata (for the
// "consumer" protocol type, the subscription).
type Protocol struct {
	Name     string
	Metadata []byte
}

// MemberRef names a member in a request: its id, its static instance id
// (or "") and the generation it believes in.
type MemberRef struct {
	MemberID, InstanceID string
	Generation           int32
}

// JoinRequest is one JoinGroup.
type JoinRequest struct {
	MemberID, InstanceID, ClientID, Host string
	ProtocolType                         string
	Protocols                            []Protocol
	// Topics is the subscription as the listener read it from the
	// metadata (for describing the group only; may be empty).
	Topics                           []string
	SessionTimeout, RebalanceTimeout time.Duration
	// RequireMemberID: a member without an id is given one and must join
	// again with it (JoinGroup v4+).
	RequireMemberID bool
}

// JoinResult is a JoinGroup's answer. Members is set for the leader only.
type JoinResult struct {
	MemberID               string
	Generation             int32
	ProtocolType, Protocol string
	Leader                 string
	Members                []JoinMember
}

// JoinMember is one member as the leader sees it: its metadata for the
// chosen protocol.
type JoinMember struct {
	ID, InstanceID string
	Metadata       []byte
}

// SyncRequest is one SyncGroup. The leader's carries Assignments; Parsed
// is what the listener read from them (for describing only).
type SyncRequest struct {
	MemberRef
	ProtocolType, Protocol string // empty: not checked
	Assignments            map[string][]byte
	Parsed                 map[string][]TopicPartition
}

// Description is a group as Kafka's DescribeGroups shows it.
type Description struct {
	State, ProtocolType, Protocol string
	Members                       []ClassicMember
}

// ClassicMember is a member as described.
type ClassicMember struct {
	ID, InstanceID, ClientID, Host string
	Metadata, Assignment           []byte
	Topics                         []string
	Assigned                       []TopicPartition
}

type classicMember struct {
	ClassicMember
	protocols        []Protocol
	session, rebal   time.Duration
	lastSeen         time.Time
	seq              int // join order
	awaiting, synced bool
	answer           *JoinResult
}

// Classic is one group using the classic protocol. Not safe for
// concurrent use.
type Classic struct {
	Name         string
	State        string
	Generation   int32
	ProtocolType string
	Protocol     string
	Leader       string
	members      map[string]*classicMember
	pending      map[string]time.Time // ids handed out, expiring at
	deadline     time.Time            // of the rebalance or of the sync
	seq          int
	newID        func() string
}

// NewClassic returns an empty classic group; newID makes member ids.
func NewClassic(name string, newID func() string) *Classic {
	return &Classic{Name: name, State: StateEmpty, members: map[string]*classicMember{},
		pending: map[string]time.Time{}, newID: newID}
}

// Len is the number of members.
func (g *Classic) Len() int { return len(g.members) }

// Idle reports a group with no members and no member ids handed out: the
// coordinator may forget it.
func (g *Classic) Idle() bool { return len(g.members) == 0 && len(g.pending) == 0 }

// Join applies a JoinGroup at now. done says the answer is final now;
// otherwise the member waits (JoinAnswer) for the rebalance to complete.
// ErrMemberIDRequired comes with the result's MemberID set.
func (g *Classic) Join(now time.Time, req JoinRequest) (res JoinResult, done bool, err error) {
	if err := g.checkJoin(req); err != nil {
		return JoinResult{}, true, err
	}
	if req.InstanceID != "" {
		if r, done, err, ok := g.joinStatic(now, req); ok {
			return r, done, err
		}
	}
	m, ok := g.members[req.MemberID]
	switch {
	case ok:
		return g.rejoin(now, m, req)
	case req.MemberID == "" && req.RequireMemberID && req.InstanceID == "":
		if len(g.members)+len(g.pending) >= MaxClassicMembers {
			return JoinResult{}, true, fmt.Errorf("%w: group %q has %d members", ErrGroupFull, g.Name, MaxClassicMembers)
		}
		id := g.newID()
		g.pending[id] = now.Add(req.SessionTimeout)
		return JoinResult{MemberID: id, Generation: -1}, true, fmt.Errorf("%w: join again with member id %s", ErrMemberIDRequired, id)
	case req.MemberID != "" && g.pending[req.MemberID].IsZero():
		return JoinResult{}, true, fmt.Errorf("%w: member %q is not in group %q (its session expired or it left); join with an empty member id", ErrUnknownMember, req.MemberID, g.Name)
	}
	if req.MemberID == "" && len(g.members)+len(g.pending) >= MaxClassicMembers {
		return JoinResult{}, true, fmt.Errorf("%w: group %q has %d members", ErrGroupFull, g.Name, MaxClassicMembers)
	}
	id := req.MemberID
	if id == "" {
		id = g.newID()
	}
	delete(g.pending, id)
	g.prepare(now)
	g.add(now, id, req)
	g.maybeCompleteJoin(now)
	return g.JoinAnswer(id)
}

// checkJoin refuses timeouts and protocols the group cannot take.
func (g *Classic) checkJoin(req JoinRequest) error {
	if req.SessionTimeout < MinSessionTimeout || req.SessionTimeout > MaxSessionTimeout {
		return fmt.Errorf("%w: %v: must be between %v and %v", ErrInvalidSessionTimeout, req.SessionTimeout, MinSessionTimeout, MaxSessionTimeout)
	}
	if req.RebalanceTimeout <= 0 || req.RebalanceTimeout > MaxRebalanceTimeout {
		return fmt.Errorf("%w: rebalance timeout %v: must be more than 0 and at most %v", ErrInvalid, req.RebalanceTimeout, MaxRebalanceTimeout)
	}
	if req.ProtocolType == "" || len(req.Protocols) == 0 {
		return fmt.Errorf("%w: a join needs a protocol type and at least one protocol", ErrInconsistentProtocol)
	}
	size := 0
	for _, p := range req.Protocols {
		size += len(p.Name) + len(p.Metadata)
	}
	if size > MaxMetadataBytes {
		return fmt.Errorf("%w: the protocols' metadata is %d bytes, at most %d", ErrInvalid, size, MaxMetadataBytes)
	}
	others := 0
	for id := range g.members {
		if id != req.MemberID {
			others++
		}
	}
	if others == 0 {
		return nil
	}
	if req.ProtocolType != g.ProtocolType {
		return fmt.Errorf("%w: group %q uses protocol type %q, not %q", ErrInconsistentProtocol, g.Name, g.ProtocolType, req.ProtocolType)
	}
	if len(g.candidates(req.MemberID, req.Protocols)) == 0 {
		return fmt.Errorf("%w: none of the member's protocols (%s) is supported by every member of group %q", ErrInconsistentProtocol, names(req.Protocols), g.Name)
	}
	return nil
}

// joinStatic handles a member with a static instance id already in the
// group; ok is false when the instance is new.
func (g *Classic) joinStatic(now time.Time, req JoinRequest) (JoinResult, bool, error, bool) {
	old := g.byInstance(req.InstanceID)
	if old == nil {
		return JoinResult{}, false, nil, false
	}
	if req.MemberID != "" && req.MemberID != old.ID {
		return JoinResult{}, true, fmt.Errorf("%w: instance %q of group %q is member %s, not %s", ErrFencedInstance, req.InstanceID, g.Name, old.ID, req.MemberID), true
	}
	if req.MemberID == old.ID {
		r, done, err := g.rejoin(now, old, req)
		return r, done, err, true
	}
	// A restarted static member takes over its old id's place: same
	// assignment, no rebalance unless it led or changed its protocols.
	id := g.newID()
	wasLeader := g.Leader == old.ID
	delete(g.members, old.ID)
	old.ID = id
	g.members[id] = old
	if wasLeader {
		g.Leader = id
	}
	changed := !sameProtocols(old.protocols, req.Protocols)
	g.update(now, old, req)
	if g.State == StateStable && !changed && !wasLeader {
		return g.current(old), true, nil, true
	}
	g.prepare(now)
	old.awaiting = true
	g.maybeCompleteJoin(now)
	r, done, err := g.JoinAnswer(id)
	return r, done, err, true
}

// rejoin applies a join of a known member.
func (g *Classic) rejoin(now time.Time, m *classicMember, req JoinRequest) (JoinResult, bool, error) {
	changed := !sameProtocols(m.protocols, req.Protocols)
	g.update(now, m, req)
	switch g.State {
	case StateCompletingRebalance, StateStable:
		if !changed && (g.State == StateCompletingRebalance || m.ID != g.Leader) {
			return g.current(m), true, nil
		}
		g.prepare(now)
	}
	m.awaiting = true
	g.maybeCompleteJoin(now)
	return g.JoinAnswer(m.ID)
}

// current is the answer of the current generation for m.
func (g *Classic) current(m *classicMember) JoinResult {
	r := JoinResult{MemberID: m.ID, Generation: g.Generation, ProtocolType: g.ProtocolType, Protocol: g.Protocol, Leader: g.Leader}
	if m.ID == g.Leader {
		r.Members = g.joinMembers()
	}
	return r
}

func (g *Classic) add(now time.Time, id string, req JoinRequest) {
	g.seq++
	m := &classicMember{seq: g.seq}
	m.ID = id
	g.members[id] = m
	g.update(now, m, req)
	m.awaiting = true
	if d := now.Add(req.RebalanceTimeout); d.After(g.deadline) {
		g.deadline = d
	}
	if len(g.members) == 1 {
		g.ProtocolType = req.ProtocolType
	}
}

func (g *Classic) update(now time.Time, m *classicMember, req JoinRequest) {
	m.InstanceID, m.ClientID, m.Host = req.InstanceID, req.ClientID, req.Host
	// Copies: the request's bytes may be reused once it is answered.
	m.protocols = make([]Protocol, len(req.Protocols))
	for i, p := range req.Protocols {
		m.protocols[i] = Protocol{Name: p.Name, Metadata: bytes.Clone(p.Metadata)}
	}
	m.Topics = sorted(req.Topics)
	m.session, m.rebal, m.lastSeen = req.SessionTimeout, req.RebalanceTimeout, now
}

// prepare starts a rebalance: every member must join again.
func (g *Classic) prepare(now time.Time) {
	if g.State == StatePreparingRebalance {
		return
	}
	g.State = StatePreparingRebalance
	var longest time.Duration
	for _, m := range g.members {
		m.awaiting, m.answer, m.synced = false, nil, false
		longest = max(longest, m.rebal)
	}
	g.deadline = now.Add(longest)
}

// maybeCompleteJoin completes the rebalance when every member (and every
// member given an id) has joined, or at the deadline without those that
// did not.
func (g *Classic) maybeCompleteJoin(now time.Time) bool {
	if g.State != StatePreparingRebalance {
		return false
	}
	all := len(g.pending) == 0
	for _, m := range g.members {
		all = all && m.awaiting
	}
	if !all && now.Before(g.deadline) {
		return false
	}
	for id, m := range g.members {
		if !m.awaiting {
			delete(g.members, id)
		}
	}
	clear(g.pending)
	g.Generation++
	if len(g.members) == 0 {
		g.State, g.Protocol, g.ProtocolType, g.Leader = StateEmpty, "", "", ""
		return true
	}
	g.Protocol = g.selectProtocol()
	if g.members[g.Leader] == nil {
		g.Leader = g.first().ID
	}
	g.State = StateCompletingRebalance
	for _, m := range g.members {
		m.awaiting, m.synced, m.Assignment, m.Assigned = false, false, nil, nil
		m.Metadata = protocolMetadata(m.protocols, g.Protocol)
	}
	var longest time.Duration
	for _, m := range g.members {
		r := g.current(m)
		m.answer = &r
		m.lastSeen = now
		longest = max(longest, m.rebal)
	}
	g.deadline = now.Add(longest)
	return true
}

// JoinAnswer is the answer to member id's pending join, once the rebalance
// it joined completed (done).
func (g *Classic) JoinAnswer(id string) (JoinResult, bool, error) {
	m := g.members[id]
	if m == nil {
		return JoinResult{}, true, fmt.Errorf("%w: member %q was removed from group %q before the rebalance completed (it did not rejoin in time, or left); join again", ErrUnknownMember, id, g.Name)
	}
	if m.answer == nil {
		return JoinResult{MemberID: id}, false, nil
	}
	r := *m.answer
	m.answer = nil
	return r, true, nil
}

// candidates are the protocols of ps that every member other than id
// supports.
func (g *Classic) candidates(id string, ps []Protocol) []string {
	var out []string
	for _, p := range ps {
		ok := true
		for oid, m := range g.members {
			if oid != id && !slices.ContainsFunc(m.protocols, func(q Protocol) bool { return q.Name == p.Name }) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, p.Name)
		}
	}
	return out
}

// selectProtocol is Kafka's vote: among the protocols every member
// supports, each member votes for the first it lists; the most votes win,
// ties going to the protocol the earliest member lists first.
func (g *Classic) selectProtocol() string {
	first := g.first()
	cands := g.candidates("", first.protocols)
	votes := map[string]int{}
	for _, m := range g.members {
		for _, p := range m.protocols {
			if slices.Contains(cands, p.Name) {
				votes[p.Name]++
				break
			}
		}
	}
	best := ""
	for _, c := range cands {
		if best == "" || votes[c] > votes[best] {
			best = c
		}
	}
	return best
}

// first is the member that joined earliest.
func (g *Classic) first() *classicMember {
	var f *classicMember
	for _, m := range g.members {
		if f == nil || m.seq < f.seq {
			f = m
		}
	}
	return f
}

func (g *Classic) joinMembers() []JoinMember {
	var out []JoinMember
	for _, m := range g.sortedMembers() {
		out = append(out, JoinMember{ID: m.ID, InstanceID: m.InstanceID, Metadata: m.Metadata})
	}
	return out
}

func (g *Classic) sortedMembers() []*classicMember {
	out := make([]*classicMember, 0, len(g.members))
	for _, m := range g.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

func (g *Classic) byInstance(inst string) *classicMember {
	for _, m := range g.members {
		if m.InstanceID == inst {
			return m
		}
	}
	return nil
}

// validate finds the member of a request, fencing static instances whose
// id moved on.
func (g *Classic) validate(ref MemberRef, what string) (*classicMember, error) {
	if ref.InstanceID != "" {
		if m := g.byInstance(ref.InstanceID); m != nil && m.ID != ref.MemberID {
			return nil, fmt.Errorf("%w: instance %q of group %q is now member %s; %s from %s refused", ErrFencedInstance, ref.InstanceID, g.Name, m.ID, what, ref.MemberID)
		}
	}
	m := g.members[ref.MemberID]
	if m == nil {
		return nil, fmt.Errorf("%w: member %q is not in group %q (its session expired or it left); %s refused, join again", ErrUnknownMember, ref.MemberID, g.Name, what)
	}
	return m, nil
}

func (g *Classic) checkGeneration(ref MemberRef, what string) error {
	if ref.Generation != g.Generation {
		return fmt.Errorf("%w: %s with generation %d, group %q is at generation %d; join again", ErrIllegalGeneration, what, ref.Generation, g.Name, g.Generation)
	}
	return nil
}

// Sync applies a SyncGroup at now: the leader's stores the assignment;
// done says the member's assignment is in the answer, else it waits
// (SyncAnswer) for the leader's.
func (g *Classic) Sync(now time.Time, req SyncRequest) ([]byte, bool, error) {
	m, err := g.validate(req.MemberRef, "sync")
	if err != nil {
		return nil, true, err
	}
	if err := g.checkGeneration(req.MemberRef, "sync"); err != nil {
		return nil, true, err
	}
	if req.ProtocolType != "" && req.ProtocolType != g.ProtocolType || req.Protocol != "" && req.Protocol != g.Protocol {
		return nil, true, fmt.Errorf("%w: group %q uses %s/%s, the sync names %s/%s", ErrInconsistentProtocol, g.Name, g.ProtocolType, g.Protocol, req.ProtocolType, req.Protocol)
	}
	if g.State == StatePreparingRebalance {
		return nil, true, fmt.Errorf("%w: group %q is rebalancing; join again", ErrRebalanceInProgress, g.Name)
	}
	m.lastSeen = now
	if g.State == StateCompletingRebalance {
		if m.ID == g.Leader {
			if err := checkAssignments(req.Assignments); err != nil {
				return nil, true, err
			}
			for id, o := range g.members {
				o.Assignment = slices.Clone(req.Assignments[id])
				o.Assigned = slices.Clone(req.Parsed[id])
			}
			g.State = StateStable
		}
		m.synced = true
	}
	return g.SyncAnswer(req.MemberRef)
}

func checkAssignments(as map[string][]byte) error {
	for id, a := range as {
		if len(a) > MaxAssignmentBytes {
			return fmt.Errorf("%w: the assignment of member %s is %d bytes, at most %d; nothing was stored", ErrInvalid, id, len(a), MaxAssignmentBytes)
		}
	}
	return nil
}

// SyncAnswer is the member's assignment once the leader sent it (done),
// or the reason it will not come.
func (g *Classic) SyncAnswer(ref MemberRef) ([]byte, bool, error) {
	m, err := g.validate(ref, "sync")
	if err != nil {
		return nil, true, err
	}
	switch {
	case ref.Generation != g.Generation || g.State == StatePreparingRebalance:
		return nil, true, fmt.Errorf("%w: group %q started another rebalance; join again", ErrRebalanceInProgress, g.Name)
	case g.State == StateStable:
		return m.Assignment, true, nil
	}
	return nil, false, nil
}

// Heartbeat keeps a member's session and tells it whether to rejoin.
func (g *Classic) Heartbeat(now time.Time, ref MemberRef) error {
	m, err := g.validate(ref, "heartbeat")
	if err != nil {
		return err
	}
	if err := g.checkGeneration(ref, "heartbeat"); err != nil {
		return err
	}
	m.lastSeen = now
	if g.State == StatePreparingRebalance {
		return fmt.Errorf("%w: group %q is rebalancing; join again", ErrRebalanceInProgress, g.Name)
	}
	return nil
}

// Leave removes members (by id, or by instance id when the id is empty);
// one error per ref, nil for those removed.
func (g *Classic) Leave(now time.Time, refs []MemberRef) []error {
	errs := make([]error, len(refs))
	left := false
	for i, ref := range refs {
		if ref.MemberID == "" && ref.InstanceID != "" {
			if m := g.byInstance(ref.InstanceID); m != nil {
				ref.MemberID = m.ID
			}
		}
		m, err := g.validate(ref, "leave")
		if err != nil {
			if ref.MemberID != "" && !g.pending[ref.MemberID].IsZero() {
				delete(g.pending, ref.MemberID)
				g.maybeCompleteJoin(now)
				continue
			}
			errs[i] = err
			continue
		}
		delete(g.members, m.ID)
		left = true
	}
	if left {
		g.afterRemoval(now)
	}
	return errs
}

// afterRemoval rebalances the members left, or empties the group.
func (g *Classic) afterRemoval(now time.Time) {
	if len(g.members) == 0 && g.State != StatePreparingRebalance {
		g.State, g.Protocol, g.ProtocolType, g.Leader = StateEmpty, "", "", ""
		g.Generation++
		return
	}
	g.prepare(now)
	g.maybeCompleteJoin(now)
}

// CheckCommit applies Kafka's rules for a commit to a classic group: an
// administrative commit (no member id, no instance, generation < 0) only
// while the group has no members; a member's only in its generation, and
// not while the group waits for the leader's assignment.
func (g *Classic) CheckCommit(now time.Time, ref MemberRef) error {
	if ref.MemberID == "" && ref.InstanceID == "" && ref.Generation < 0 {
		if len(g.members) == 0 {
			return nil
		}
		return fmt.Errorf("%w: group %q has %d member(s): only they commit, with their member id and generation", ErrUnknownMember, g.Name, len(g.members))
	}
	m, err := g.validate(ref, "commit")
	if err != nil {
		return err
	}
	if err := g.checkGeneration(ref, "commit"); err != nil {
		return err
	}
	if g.State == StateCompletingRebalance {
		return fmt.Errorf("%w: group %q waits for its leader's assignment; commit after SyncGroup", ErrRebalanceInProgress, g.Name)
	}
	m.lastSeen = now
	return nil
}

// Tick applies time: sessions expire, pending member ids lapse, a
// rebalance completes at its deadline, and members that did not sync
// within the rebalance timeout are removed. It reports whether anything
// changed, and which members were removed.
func (g *Classic) Tick(now time.Time) (bool, []string) {
	changed := false
	for id, at := range g.pending {
		if now.After(at) {
			delete(g.pending, id)
			changed = true
		}
	}
	var gone []string
	for id, m := range g.members {
		waiting := g.State == StatePreparingRebalance && m.awaiting
		unsynced := g.State == StateCompletingRebalance && !m.synced && !now.Before(g.deadline)
		if unsynced || !waiting && now.Sub(m.lastSeen) > m.session {
			gone = append(gone, id)
		}
	}
	sort.Strings(gone)
	for _, id := range gone {
		delete(g.members, id)
	}
	if len(gone) > 0 {
		g.afterRemoval(now)
		changed = true
	}
	if g.maybeCompleteJoin(now) {
		changed = true
	}
	return changed, gone
}

// Members describes the members in join order.
func (g *Classic) Members() []ClassicMember {
	var out []ClassicMember
	for _, m := range g.sortedMembers() {
		d := m.ClassicMember
		d.Topics, d.Assigned = slices.Clone(m.Topics), slices.Clone(m.Assigned)
		out = append(out, d)
	}
	return out
}

// AsMembers describes the members as the group's native description does:
// the generation as the epoch, the assignment as read from the leader's.
func (g *Classic) AsMembers() []Member {
	var out []Member
	for _, m := range g.Members() {
		out = append(out, Member{ID: m.ID, Epoch: g.Generation, ClientID: m.ClientID, Host: m.Host,
			Topics: m.Topics, Assigned: m.Assigned, Owned: m.Assigned})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func protocolMetadata(ps []Protocol, name string) []byte {
	for _, p := range ps {
		if p.Name == name {
			return p.Metadata
		}
	}
	return nil
}

func sameProtocols(a, b []Protocol) bool {
	return slices.EqualFunc(a, b, func(x, y Protocol) bool { return x.Name == y.Name && bytes.Equal(x.Metadata, y.Metadata) })
}

func names(ps []Protocol) string {
	var b bytes.Buffer
	for i, p := range ps {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.Name)
	}
	return b.String()
}
