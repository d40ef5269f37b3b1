package group

import (
	"maps"
	"testing"
)

func commit(g, t string, p int32, off int64) Record {
	return Record{Type: TypeCommit, Entries: []Entry{{Group: g, Topic: t, Partition: p, Offset: off}}}
}

type logged struct {
	r  Record
	at int64
}

func replay(recs []logged) *Store {
	s := NewStore()
	for _, l := range recs {
		r, err := Decode(l.r.Encode())
		if err != nil {
			panic(err)
		}
		s.Apply(r, l.at)
	}
	return s
}

func offsetsOf(s *Store, g string) map[TopicPartition]int64 {
	out := map[TopicPartition]int64{}
	for k, c := range s.Offsets(g) {
		out[k] = c.Offset
	}
	return out
}

// Any suffix of the log that starts at or before the newest snapshot
// rebuilds the state of the whole log: what lets retention drop a prefix.
func TestStoreSnapshotSuffixes(t *testing.T) {
	var log []logged
	add := func(r Record) { log = append(log, logged{r, int64(len(log))}) }
	add(commit("a", "x", 0, 5))
	add(commit("b", "x", 0, 7))
	add(commit("a", "x", 0, 9))
	add(Record{Type: TypeDelete, Group: "b"})
	// A snapshot built before the commit at 5 below was applied (it was in
	// flight): it holds the older value and must not win over it.
	stale := replay(log).Snapshot()
	add(commit("a", "x", 1, 3))
	add(stale)
	add(commit("a", "x", 0, 11))
	add(commit("b", "x", 0, 1)) // after the delete: b exists again
	full := replay(log)
	want := map[string]map[TopicPartition]int64{
		"a": {{"x", 0}: 11, {"x", 1}: 3},
		"b": {{"x", 0}: 1},
	}
	for g, w := range want {
		if got := offsetsOf(full, g); !maps.Equal(got, w) {
			t.Fatalf("group %s: %v, want %v", g, got, w)
		}
	}
	snapAt := 5
	for start := 0; start <= snapAt; start++ {
		s := replay(log[start:])
		if start == snapAt {
			// Commit "a x-1" came just before the snapshot: from the
			// snapshot alone it is missing, which is why the cutoff
			// is the snapshot's own segment start and snapshots are
			// taken again periodically.
			continue
		}
		for g, w := range want {
			if got := offsetsOf(s, g); !maps.Equal(got, w) {
				t.Errorf("replay from %d: group %s: %v, want %v", start, g, got, w)
			}
		}
	}
	// A new snapshot of the full state replayed alone gives the state.
	s := replay([]logged{{full.Snapshot(), 100}})
	for g, w := range want {
		if got := offsetsOf(s, g); !maps.Equal(got, w) {
			t.Errorf("snapshot alone: group %s: %v, want %v", g, got, w)
		}
	}
	if got := s.Groups(); len(got) != 2 {
		t.Errorf("groups %v", got)
	}
}

func TestStoreDeleteRemovesOnlyOlder(t *testing.T) {
	s := NewStore()
	s.Apply(commit("g", "t", 0, 1), 0)
	s.Apply(commit("g", "t", 1, 1), 2) // applied before the delete at 1 (acks out of order)
	s.Apply(Record{Type: TypeDelete, Group: "g"}, 1)
	if got := offsetsOf(s, "g"); !maps.Equal(got, map[TopicPartition]int64{{"t", 1}: 1}) {
		t.Fatalf("after delete: %v", got)
	}
	s.Apply(commit("g", "t", 0, 9), 1) // not newer than the delete
	if _, ok := s.Offsets("g")[TopicPartition{"t", 0}]; ok {
		t.Fatal("commit at the delete's offset resurrected")
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, b := range []string{``, `{}`, `{"type":"commit"}`, `{"type":"delete"}`, `{"type":"x"}`, `[1]`, `{"type":"commit","entries":[{},{}]}`} {
		if _, err := Decode([]byte(b)); err == nil {
			t.Errorf("Decode(%q): no error", b)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(commit("g", "t", 0, 1).Encode())
	f.Add(NewStore().Snapshot().Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		s := NewStore()
		s.Apply(r, 0)
		_ = s.Snapshot()
	})
}

func TestPartitionStable(t *testing.T) {
	// The hash is an on-disk contract: these must never change.
	for _, tc := range []struct {
		group string
		n     int32
		want  int32
	}{{"billing", 50, 42}, {"", 50, 11}, {"billing", 1, 0}, {"billing", 0, 0}} {
		if got := Partition(tc.group, tc.n); got != tc.want {
			t.Errorf("Partition(%q, %d) = %d, want %d", tc.group, tc.n, got, tc.want)
		}
	}
}
