package group

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Errors of the membership state machine.
var (
	// ErrFenced: the member was removed (session expired, it left, the
	// coordinator moved) or sent an older member epoch, or commits a
	// partition it does not hold. Nothing was changed; it rejoins.
	ErrFenced = errors.New("fenced member epoch")
	// ErrInvalid: the request is malformed (a bad regex, a bad epoch).
	ErrInvalid = errors.New("invalid group request")
)

// Heartbeat timing the coordinator hands to members.
const (
	// HeartbeatInterval is the interval for a member whose assignment is
	// settled.
	HeartbeatInterval = time.Second
	// ReconcileInterval is the interval while partitions are moving to or
	// from the member, so hand-overs take a fraction of a second.
	ReconcileInterval = 200 * time.Millisecond
	// DefaultSessionTimeout expires a member without heartbeats.
	DefaultSessionTimeout = 10 * time.Second
	MinSessionTimeout     = time.Second
	MaxSessionTimeout     = 5 * time.Minute
)

// HeartbeatRequest is one member heartbeat (see the Groups service).
type HeartbeatRequest struct {
	MemberID    string
	MemberEpoch int32 // 0 joins, -1 leaves
	// Topics or Regex: the subscription; both empty keeps the current one.
	Topics         []string
	Regex          string
	ClientID, Host string
	// Rack is the member's rack ("" for none): the assignment prefers
	// giving it partitions with a replica in that rack.
	Rack           string
	Owned          []TopicPartition
	SessionTimeout time.Duration // 0: DefaultSessionTimeout
}

// HeartbeatResult is the member's id, epoch and assignment.
type HeartbeatResult struct {
	MemberID   string
	Epoch      int32
	Assignment []TopicPartition
	Interval   time.Duration
}

// Member is one member of a group, as described to operators.
type Member struct {
	ID             string
	Epoch          int32
	ClientID, Host string
	Rack           string
	Topics         []string
	Regex          string
	Assigned       []TopicPartition // what it may own now
	Owned          []TopicPartition // what it reported owning
}

type member struct {
	Member
	prevEpoch int32
	regex     *regexp.Regexp
	session   time.Duration
	lastSeen  time.Time
	assigned  map[TopicPartition]bool
	owned     map[TopicPartition]bool
}

// Group is the membership of one group: its members, the target
// assignment, and which partitions each member may own now. Not safe for
// concurrent use. Time is passed in.
type Group struct {
	Name    string
	Epoch   int32 // bumps when members, subscriptions or topics change
	members map[string]*member
	target  map[string][]TopicPartition
	targetE int32  // the Epoch target was computed at
	topicFP string // the subscribed topics' partition counts (and replica racks) target saw
	newID   func() string
	// ReplicaRacks, when set, returns the racks of the replicas a
	// partition is read from (the broker gives its leader's), for a
	// rack-aware assignment of members that name their rack.
	ReplicaRacks func(TopicPartition) []string
}

// NewGroup returns an empty group; newID makes member ids.
func NewGroup(name string, newID func() string) *Group {
	return &Group{Name: name, members: map[string]*member{}, newID: newID}
}

// Len is the number of members.
func (g *Group) Len() int { return len(g.members) }

// Heartbeat applies one heartbeat at now, given the cluster's topics and
// their partition counts, and returns the member's assignment.
func (g *Group) Heartbeat(now time.Time, req HeartbeatRequest, topics map[string]int32) (HeartbeatResult, error) {
	switch {
	case req.MemberEpoch == -1:
		if _, ok := g.members[req.MemberID]; ok {
			g.remove(req.MemberID)
		}
		return HeartbeatResult{MemberID: req.MemberID, Epoch: -1}, nil
	case req.MemberEpoch < -1:
		return HeartbeatResult{}, fmt.Errorf("%w: member epoch %d: 0 joins, -1 leaves, else the epoch last given", ErrInvalid, req.MemberEpoch)
	}
	if req.SessionTimeout != 0 && (req.SessionTimeout < MinSessionTimeout || req.SessionTimeout > MaxSessionTimeout) {
		return HeartbeatResult{}, fmt.Errorf("%w: session timeout %v: must be between %v and %v", ErrInvalid, req.SessionTimeout, MinSessionTimeout, MaxSessionTimeout)
	}
	var re *regexp.Regexp
	if req.Regex != "" {
		var err error
		if re, err = regexp.Compile(req.Regex); err != nil {
			return HeartbeatResult{}, fmt.Errorf("%w: topic regex %q: %v", ErrInvalid, req.Regex, err)
		}
	}
	m, err := g.member(req)
	if err != nil {
		return HeartbeatResult{}, err
	}
	if req.SessionTimeout != 0 {
		m.session = req.SessionTimeout
	}
	m.lastSeen = now
	m.ClientID, m.Host = req.ClientID, req.Host
	if m.Rack != req.Rack {
		m.Rack = req.Rack
		g.Epoch++
	}
	if (len(req.Topics) > 0 || re != nil) && (!slices.Equal(m.Topics, sorted(req.Topics)) || m.Regex != req.Regex) {
		m.Topics, m.Regex, m.regex = sorted(req.Topics), req.Regex, re
		g.Epoch++
	}
	// A member owns only what it was given or owned before.
	owned := map[TopicPartition]bool{}
	for _, tp := range req.Owned {
		if m.assigned[tp] || m.owned[tp] {
			owned[tp] = true
		}
	}
	m.owned = owned
	g.refreshTarget(topics)
	g.reconcile(m)
	return g.result(m), nil
}

// member finds or creates the heartbeat's member, fencing stale ones.
func (g *Group) member(req HeartbeatRequest) (*member, error) {
	m, ok := g.members[req.MemberID]
	if req.MemberEpoch == 0 {
		if ok {
			g.remove(req.MemberID) // a rejoin starts over
		}
		id := req.MemberID
		if id == "" {
			id = g.newID()
		}
		if len(req.Topics) == 0 && req.Regex == "" {
			return nil, fmt.Errorf("%w: joining needs a subscription (topics or a topic regex)", ErrInvalid)
		}
		m = &member{Member: Member{ID: id}, session: DefaultSessionTimeout,
			assigned: map[TopicPartition]bool{}, owned: map[TopicPartition]bool{}}
		g.members[id] = m
		g.Epoch++
		return m, nil
	}
	if !ok {
		return nil, fmt.Errorf("%w: member %q is not in group %q (its session expired or it left); rejoin with epoch 0", ErrFenced, req.MemberID, g.Name)
	}
	if req.MemberEpoch != m.Epoch && req.MemberEpoch != m.prevEpoch {
		return nil, fmt.Errorf("%w: member %q of group %q sent epoch %d, its epoch is %d; rejoin with epoch 0", ErrFenced, req.MemberID, g.Name, req.MemberEpoch, m.Epoch)
	}
	return m, nil
}

func (g *Group) remove(id string) {
	delete(g.members, id)
	g.Epoch++
}

// Expire removes the members whose session ran out at now and returns
// their ids.
func (g *Group) Expire(now time.Time) []string {
	var gone []string
	for id, m := range g.members {
		if now.Sub(m.lastSeen) > m.session {
			gone = append(gone, id)
		}
	}
	sort.Strings(gone)
	for _, id := range gone {
		g.remove(id)
	}
	return gone
}

// subscribed resolves m's subscription against the cluster's topics.
func (m *member) subscribed(topics map[string]int32) []string {
	var out []string
	if m.regex != nil {
		for t := range topics {
			if !strings.HasPrefix(t, "__") && m.regex.MatchString(t) {
				out = append(out, t)
			}
		}
	}
	for _, t := range m.Topics {
		if _, ok := topics[t]; ok {
			out = append(out, t)
		}
	}
	return sorted(out)
}

// refreshTarget recomputes the target assignment when the group or the
// partition counts of its topics changed.
func (g *Group) refreshTarget(topics map[string]int32) {
	subs := make([]Subscriber, 0, len(g.members))
	counts := map[string]int32{}
	racks := Racks{Member: map[string]string{}, Replicas: g.ReplicaRacks}
	for _, m := range g.members {
		ts := m.subscribed(topics)
		subs = append(subs, Subscriber{ID: m.ID, Topics: ts})
		for _, t := range ts {
			counts[t] = topics[t]
		}
		racks.Member[m.ID] = m.Rack
	}
	fp := fmt.Sprint(sortedCounts(counts))
	if racks.aware() {
		// A partition now read in another rack (a new leader) changes the
		// target too.
		for _, tp := range allPartitions(counts) {
			fp += fmt.Sprint(racks.Replicas(tp))
		}
	}
	if g.target != nil && g.targetE == g.Epoch && fp == g.topicFP {
		return
	}
	g.target = AssignRacks(subs, counts, g.target, racks)
	g.targetE, g.topicFP = g.Epoch, fp
}

func sortedCounts(m map[string]int32) []string {
	out := make([]string, 0, len(m))
	for t, n := range m {
		out = append(out, fmt.Sprintf("%s:%d", t, n))
	}
	sort.Strings(out)
	return out
}

// reconcile sets what m may own now: its target partitions that it
// already holds or that no other member holds (given or not yet released).
func (g *Group) reconcile(m *member) {
	next := map[TopicPartition]bool{}
	for _, tp := range g.target[m.ID] {
		if m.assigned[tp] || m.owned[tp] || !g.heldByOther(m.ID, tp) {
			next[tp] = true
		}
	}
	if !maps.Equal(next, m.assigned) || m.Epoch == 0 {
		m.prevEpoch = m.Epoch
		m.Epoch++
		m.assigned = next
	}
}

func (g *Group) heldByOther(id string, tp TopicPartition) bool {
	for oid, o := range g.members {
		if oid != id && (o.assigned[tp] || o.owned[tp]) {
			return true
		}
	}
	return false
}

func (g *Group) result(m *member) HeartbeatResult {
	r := HeartbeatResult{MemberID: m.ID, Epoch: m.Epoch, Assignment: keys(m.assigned), Interval: HeartbeatInterval}
	if g.pending(m) {
		r.Interval = ReconcileInterval
	}
	return r
}

// pending: m waits for partitions, or still owns ones it must release.
func (g *Group) pending(m *member) bool {
	if len(m.assigned) != len(g.target[m.ID]) {
		return true
	}
	for tp := range m.owned {
		if !m.assigned[tp] {
			return true
		}
	}
	return false
}

// CheckCommit refuses a commit unless the member exists, its epoch is
// current (or the one before, whose answer it may not have had), and it
// holds every partition it commits. An empty member id is an
// administrative commit, allowed only while the group has no members.
func (g *Group) CheckCommit(memberID string, epoch int32, tps []TopicPartition) error {
	if memberID == "" {
		return g.CheckEmpty("commit offsets without a member id")
	}
	m, ok := g.members[memberID]
	if !ok {
		return fmt.Errorf("%w: member %q is not in group %q (its session expired or it left); nothing was committed", ErrFenced, memberID, g.Name)
	}
	if epoch != m.Epoch && epoch != m.prevEpoch {
		return fmt.Errorf("%w: member %q of group %q committed with epoch %d, its epoch is %d; nothing was committed", ErrFenced, memberID, g.Name, epoch, m.Epoch)
	}
	for _, tp := range tps {
		if !m.assigned[tp] && !m.owned[tp] {
			return fmt.Errorf("%w: member %q of group %q does not own %s; nothing was committed", ErrFenced, memberID, g.Name, tp)
		}
	}
	return nil
}

// ErrNotEmpty: the operation needs a group without members.
var ErrNotEmpty = errors.New("group has members")

// CheckEmpty fails with ErrNotEmpty, listing the members, unless the group
// has none.
func (g *Group) CheckEmpty(what string) error {
	if len(g.members) == 0 {
		return nil
	}
	var list []string
	for _, m := range g.Members() {
		list = append(list, fmt.Sprintf("%s (client %q, host %s)", m.ID, m.ClientID, m.Host))
	}
	return fmt.Errorf("%w: cannot %s while group %q has %d member(s): %s; stop them first", ErrNotEmpty, what, g.Name, len(list), strings.Join(list, ", "))
}

// State is "Empty", "Stable" or "Reconciling".
func (g *Group) State() string {
	if len(g.members) == 0 {
		return "Empty"
	}
	for _, m := range g.members {
		if g.pending(m) {
			return "Reconciling"
		}
	}
	return "Stable"
}

// Members describes the members, sorted by id.
func (g *Group) Members() []Member {
	out := make([]Member, 0, len(g.members))
	for _, m := range g.members {
		d := m.Member
		d.Topics = slices.Clone(m.Topics)
		d.Assigned, d.Owned = keys(m.assigned), keys(m.owned)
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func keys(s map[TopicPartition]bool) []TopicPartition {
	out := make([]TopicPartition, 0, len(s))
	for tp := range s {
		out = append(out, tp)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return slices.Compact(out)
}
