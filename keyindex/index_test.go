package keyindex

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// modelLog is a partition's log as the tests model it.
type modelLog struct {
	start int64
	keys  [][]byte // keys[o-start]: the key at offset o (nil: keyless)
	scans int
}

func (m *modelLog) end() int64 { return m.start + int64(len(m.keys)) }

func (m *modelLog) KeyAt(o int64) ([]byte, error) {
	if o < m.start {
		return nil, ErrBelowStart
	}
	if o >= m.end() {
		return nil, fmt.Errorf("offset %d past the end %d", o, m.end())
	}
	return m.keys[o-m.start], nil
}

func (m *modelLog) LastOf(key []byte, below int64) (int64, bool, error) {
	m.scans++
	for o := min(below, m.end()) - 1; o >= m.start; o-- {
		if bytes.Equal(m.keys[o-m.start], key) {
			return o, true, nil
		}
	}
	return -1, false, nil
}

// last is the model's answer.
func (m *modelLog) last(key []byte) (int64, bool) {
	for o := m.end() - 1; o >= m.start; o-- {
		if bytes.Equal(m.keys[o-m.start], key) {
			return o, true
		}
	}
	return -1, false
}

func tinyHash(k []byte) uint64 { return Hash(k)&7 | 1 } // 4 hashes: collisions everywhere

// A random mix of appends, commits, truncations above the commit point,
// retention, checkpoints and lookups, against a model of the log: the
// index never answers wrongly, with a real hash or one that collides all
// the time.
func TestIndexAgainstModel(t *testing.T) {
	for _, tc := range []struct {
		name string
		hash func([]byte) uint64
	}{{"xxhash", nil}, {"colliding", tinyHash}} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(1); seed <= 20; seed++ {
				runModel(t, seed, tc.hash)
			}
		})
	}
}

func runModel(t *testing.T, seed uint64, hash func([]byte) uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	m := &modelLog{}
	ix := New(0, hash)
	dir := t.TempDir()
	key := func() []byte {
		if rng.IntN(10) == 0 {
			return nil
		}
		return []byte(fmt.Sprintf("k%d", rng.IntN(40)))
	}
	for step := 0; step < 3000; step++ {
		switch r := rng.IntN(100); {
		case r < 55:
			k := key()
			m.keys = append(m.keys, k)
			if err := ix.Add(k, m.end()-1); err != nil {
				t.Fatal(err)
			}
		case r < 65:
			ix.Commit(ix.Committed() + rng.Int64N(m.end()-ix.Committed()+1))
		case r < 72:
			cut := ix.Committed() + rng.Int64N(m.end()-ix.Committed()+1)
			if err := ix.Truncate(cut); err != nil {
				t.Fatal(err)
			}
			m.keys = m.keys[:cut-m.start]
		case r < 74:
			// Retention: the start moves up to the committed offset.
			s := m.start + rng.Int64N(ix.Committed()-m.start+1)
			m.keys, m.start = m.keys[s-m.start:], s
		case r < 76:
			ix = checkpointed(t, ix, m, filepath.Join(dir, "index"), hash)
		default:
			k := []byte(fmt.Sprintf("k%d", rng.IntN(45)))
			got, ok, err := ix.Resolve(k, m)
			want, wok := m.last(k)
			if err != nil || got != want || ok != wok {
				t.Fatalf("seed %d step %d: Resolve(%s) = %d %v %v, the log says %d %v", seed, step, k, got, ok, err, want, wok)
			}
		}
	}
	if hash == nil && m.scans > 0 {
		t.Fatalf("seed %d: %d scans with a hash that never collided here: the index named offsets that do not hold the key", seed, m.scans)
	}
	if ix.Truncate(ix.Committed()-1) == nil && ix.Committed() > 0 {
		t.Fatal("a truncation below the committed offsets succeeded")
	}
}

// checkpointed saves ix, loads it back and indexes the records after its
// end again (none: the overlay is saved too), as a partition does on a
// clean start.
func checkpointed(t *testing.T, ix *Index, m *modelLog, path string, hash func([]byte) uint64) *Index {
	t.Helper()
	if err := ix.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, hash)
	if err != nil {
		t.Fatal(err)
	}
	if got.Committed() != ix.Committed() || got.End() != ix.End() {
		t.Fatalf("loaded committed %d and end %d, saved %d and %d: the overlay must survive a clean restart", got.Committed(), got.End(), ix.Committed(), ix.End())
	}
	for o := got.End(); o < m.end(); o++ {
		if err := got.Add(m.keys[o-m.start], o); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// On a collision the index falls back to a scan; with a real hash it never
// scans.
func TestResolveScansOnlyOnCollision(t *testing.T) {
	m := &modelLog{}
	for i := 0; i < 1000; i++ {
		m.keys = append(m.keys, []byte(fmt.Sprintf("key-%d", i%100)))
	}
	for _, tc := range []struct {
		name  string
		hash  func([]byte) uint64
		scans bool
	}{{"xxhash", nil, false}, {"colliding", tinyHash, true}} {
		ix := New(0, tc.hash)
		for o, k := range m.keys {
			ix.Add(k, int64(o))
		}
		m.scans = 0
		for i := 0; i < 100; i++ {
			k := []byte(fmt.Sprintf("key-%d", i))
			if off, ok, err := ix.Resolve(k, m); err != nil || !ok || off != int64(900+i) {
				t.Fatalf("%s: Resolve(%s) = %d %v %v, want %d", tc.name, k, off, ok, err, 900+i)
			}
		}
		if (m.scans > 0) != tc.scans {
			t.Errorf("%s: %d scans", tc.name, m.scans)
		}
		if _, ok, _ := ix.Resolve([]byte("absent"), m); ok {
			t.Errorf("%s: an absent key found", tc.name)
		}
	}
}

// A damaged checkpoint is refused with ErrCorrupt, never loaded wrong.
func TestLoadRefusesDamage(t *testing.T) {
	ix := New(0, nil)
	for i := 0; i < 500; i++ {
		ix.Add([]byte(fmt.Sprintf("k%d", i)), int64(i))
	}
	ix.Commit(500)
	path := filepath.Join(t.TempDir(), "index")
	if err := ix.Save(path); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	for name, b := range map[string][]byte{
		"bit flip in an entry":  flip(headerBytes + 100),
		"bit flip in the count": flip(16 + 7),
		"bit flip in the CRC":   flip(len(good) - 1),
		"torn":                  good[:len(good)-10],
		"empty":                 {},
		"other file":            []byte("not a checkpoint at all, but long enough to have a header"),
	} {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path, nil); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Load = %v, want ErrCorrupt", name, err)
		}
	}
	os.WriteFile(path, good, 0o644)
	got, err := Load(path, nil)
	if err != nil || got.Len() != 500 {
		t.Fatalf("good checkpoint: %v, %d keys", err, got.Len())
	}
}

// Forget removes a committed entry only while it still names offset.
func TestForget(t *testing.T) {
	ix := New(0, nil)
	ix.Add([]byte("a"), 0)
	ix.Add([]byte("a"), 1)
	ix.Commit(2)
	ix.Forget([]byte("a"), 0) // not its last record: kept
	if off, ok := ix.Lookup([]byte("a")); !ok || off != 1 {
		t.Fatalf("after Forget of an older offset: %d %v", off, ok)
	}
	ix.Forget([]byte("a"), 1)
	if _, ok := ix.Lookup([]byte("a")); ok {
		t.Fatal("Forget left the entry")
	}
}
