package group

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Record types in the offsets topic.
const (
	TypeCommit   = "commit"   // one committed offset
	TypeDelete   = "delete"   // a group's offsets removed
	TypeSnapshot = "snapshot" // the whole state of one offsets partition
	// TypeBarrier changes nothing: the coordinator commits one before it
	// answers a read, which a replaced coordinator (cut off, not yet told)
	// cannot do, so no client reads offsets older than an acknowledged
	// commit.
	TypeBarrier = "barrier"
)

// Entry is one committed offset, as stored.
type Entry struct {
	Group     string `json:"g"`
	Topic     string `json:"t"`
	Partition int32  `json:"p"`
	Offset    int64  `json:"o"`
	Metadata  string `json:"m,omitempty"`
	TimeMs    int64  `json:"ts,omitempty"`
	// Source is the log offset of the commit record that set the value (in
	// snapshots; a commit record's own offset otherwise).
	Source int64 `json:"src,omitempty"`
}

// Record is the value of one record in the offsets topic.
type Record struct {
	Type string `json:"type"`
	// Commit: the offset. Snapshot: every offset of the partition.
	Entries []Entry `json:"entries,omitempty"`
	// Delete: the group.
	Group string `json:"group,omitempty"`
	// Snapshot: the log offset of each group's latest delete record.
	Tombstones map[string]int64 `json:"tombstones,omitempty"`
}

// Key is the record key: the group, topic and partition a commit is for
// (the group alone for delete records, empty for snapshots), so a future
// key-based cleaner keeps the latest commit per key.
func (r Record) Key() []byte {
	switch r.Type {
	case TypeCommit:
		if len(r.Entries) == 1 {
			e := r.Entries[0]
			return fmt.Appendf(nil, "%s/%s/%d", e.Group, e.Topic, e.Partition)
		}
	case TypeDelete:
		return []byte(r.Group)
	}
	return nil
}

// Encode returns the record value.
func (r Record) Encode() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // plain data: cannot fail
	}
	return b
}

// Decode parses a record value; it never panics on any input.
func Decode(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("offsets record: %w", err)
	}
	switch r.Type {
	case TypeCommit:
		if len(r.Entries) != 1 {
			return Record{}, fmt.Errorf("offsets record: commit with %d entries", len(r.Entries))
		}
	case TypeDelete:
		if r.Group == "" {
			return Record{}, fmt.Errorf("offsets record: delete without a group")
		}
	case TypeSnapshot, TypeBarrier:
	default:
		return Record{}, fmt.Errorf("offsets record: unknown type %q", r.Type)
	}
	return r, nil
}

// TopicPartition names one partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) String() string { return fmt.Sprintf("%s-%d", tp.Topic, tp.Partition) }

// Committed is a group's committed offset for one partition.
type Committed struct {
	Offset   int64
	Metadata string
	TimeMs   int64
	source   int64
}

// Store is the committed offsets of the groups of one offsets partition,
// rebuilt by applying its records in log order. Not safe for concurrent
// use.
type Store struct {
	groups     map[string]map[TopicPartition]Committed
	tombstones map[string]int64
	applied    int // records applied since the last snapshot
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{groups: map[string]map[TopicPartition]Committed{}, tombstones: map[string]int64{}}
}

// Apply applies the record at log offset at. A value never replaces one
// that came from a later log offset, and a commit older than its group's
// latest delete is ignored, so applying records out of order, or a snapshot
// over later commits, gives the state of log order.
func (s *Store) Apply(r Record, at int64) {
	switch r.Type {
	case TypeCommit:
		e := r.Entries[0]
		e.Source = at
		s.set(e)
		s.applied++
	case TypeDelete:
		s.remove(r.Group, at)
		s.applied++
	case TypeSnapshot:
		for g, off := range r.Tombstones {
			s.remove(g, off)
		}
		for _, e := range r.Entries {
			s.set(e)
		}
		s.applied = 0
	}
}

func (s *Store) set(e Entry) {
	if ts, ok := s.tombstones[e.Group]; ok && e.Source <= ts {
		return
	}
	g := s.groups[e.Group]
	if g == nil {
		g = map[TopicPartition]Committed{}
		s.groups[e.Group] = g
	}
	k := TopicPartition{e.Topic, e.Partition}
	if old, ok := g[k]; ok && old.source > e.Source {
		return
	}
	g[k] = Committed{Offset: e.Offset, Metadata: e.Metadata, TimeMs: e.TimeMs, source: e.Source}
}

func (s *Store) remove(group string, at int64) {
	if old, ok := s.tombstones[group]; !ok || at > old {
		s.tombstones[group] = at
	}
	g := s.groups[group]
	for k, c := range g {
		if c.source < at {
			delete(g, k)
		}
	}
	if len(g) == 0 {
		delete(s.groups, group)
	}
}

// SinceSnapshot is how many commit and delete records were applied since
// the last snapshot.
func (s *Store) SinceSnapshot() int { return s.applied }

// Offsets returns a copy of a group's committed offsets (nil when none).
func (s *Store) Offsets(group string) map[TopicPartition]Committed {
	g := s.groups[group]
	if g == nil {
		return nil
	}
	out := make(map[TopicPartition]Committed, len(g))
	for k, v := range g {
		out[k] = v
	}
	return out
}

// Groups returns the groups with committed offsets, sorted.
func (s *Store) Groups() []string {
	out := make([]string, 0, len(s.groups))
	for g := range s.groups {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

// Snapshot returns a snapshot record of the whole store.
func (s *Store) Snapshot() Record {
	r := Record{Type: TypeSnapshot, Tombstones: map[string]int64{}}
	for g, off := range s.tombstones {
		r.Tombstones[g] = off
	}
	for _, g := range s.Groups() {
		for k, c := range s.groups[g] {
			r.Entries = append(r.Entries, Entry{Group: g, Topic: k.Topic, Partition: k.Partition,
				Offset: c.Offset, Metadata: c.Metadata, TimeMs: c.TimeMs, Source: c.source})
		}
	}
	sort.Slice(r.Entries, func(i, j int) bool {
		a, b := r.Entries[i], r.Entries[j]
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		return a.Partition < b.Partition
	})
	return r
}
