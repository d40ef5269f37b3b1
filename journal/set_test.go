package journal

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/skeinlog/skein/segment"
)

// TestSetCrashReplay: partitions spread over 4 journals; writers append
// and truncate concurrently; a power loss before any segment flush leaves
// only the journals. Replay rebuilds every partition exactly as
// acknowledged, and each journal grouped the writes of many partitions.
func TestSetCrashReplay(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	open := func(name string) (*segment.Log, error) { return segment.Open(s.segDir(name), s.sopts) }
	set, _, err := OpenSet(filepath.Join(dir, "journals"), 4, s.jopts)
	must(t, err)
	_, err = set.Replay(open)
	must(t, err)
	ps := names(64)
	parts := map[string]*Partition{}
	used := map[*Journal]int{}
	for _, n := range ps {
		l, err := open(n)
		must(t, err)
		p, err := set.Attach(n, l)
		must(t, err)
		parts[n] = p
		used[set.For(n)]++
	}
	if len(used) != 4 {
		t.Fatalf("64 partitions landed in %d of 4 journals", len(used))
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for k := w; k < len(ps); k += 8 {
				p := parts[ps[k]]
				for i := range 12 {
					must(t, p.Append(entry(ps[k], int64(i), 0)))
				}
				if _, err := p.TruncateTo(8); err != nil {
					t.Error(err)
					return
				}
				for i := 8; i < 10; i++ {
					must(t, p.Append(entry(ps[k], int64(i), 1)))
				}
			}
		})
	}
	wg.Wait()
	st := set.Stats()
	if st.Fsyncs >= st.Records {
		t.Fatalf("%d records in %d fsyncs: no group shared an fsync", st.Records, st.Fsyncs)
	}
	set.abandon() // kill -9: no checkpoint
	must(t, os.RemoveAll(filepath.Join(dir, "parts")))

	set, _, err = OpenSet(filepath.Join(dir, "journals"), 4, s.jopts)
	must(t, err)
	rep, err := set.Replay(open)
	must(t, err)
	if rep.Partitions != len(ps) || len(rep.Damaged) > 0 {
		t.Fatalf("replay: %+v", rep)
	}
	for _, n := range ps {
		gens, _, next := readGens(t, s.segDir(n), n, s.sopts)
		if next != 10 {
			t.Fatalf("%s ends at %d after replay, want 10", n, next)
		}
		for o, g := range gens {
			if want := map[bool]int{true: 0, false: 1}[o < 8]; g != want {
				t.Fatalf("%s: offset %d holds generation %d, want %d", n, o, g, want)
			}
		}
	}
	must(t, set.Close())
}

// TestSetKeepsItsSize: the number of journals is fixed when the set is
// created (a partition's records must stay in one journal); a damaged
// record of it is refused.
func TestSetKeepsItsSize(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	set, _, err := OpenSet(dir, 4, s.jopts)
	must(t, err)
	must(t, set.Close())
	set, _, err = OpenSet(dir, 2, s.jopts)
	must(t, err)
	if set.Len() != 4 {
		t.Fatalf("reopened with 2: %d journals, want the 4 it was created with", set.Len())
	}
	must(t, set.Close())
	must(t, os.WriteFile(filepath.Join(dir, stripesFile), []byte("x\n"), 0o640))
	if _, _, err := OpenSet(dir, 4, s.jopts); err == nil {
		t.Fatal("OpenSet accepted a damaged journals file")
	}
	if _, _, err := OpenSet(t.TempDir(), 0, s.jopts); err == nil {
		t.Fatal("OpenSet accepted 0 journals")
	}
}
