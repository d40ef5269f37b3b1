package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// smallDisk mounts a tmpfs of size bytes on dir (root only: the test is
// skipped otherwise) and unmounts it when the test ends.
func smallDisk(t *testing.T, dir string, size int) {
	t.Helper()
	must(t, os.MkdirAll(dir, 0o750))
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("needs a tmpfs (root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
}

// TestJournalSurvivesFullDisk: the journal's disk fills up. The group that
// does not fit fails with ErrNoSpace (and ENOSPC), is cut back, and the
// journal goes on: the partition cuts its segments back (the truncation's
// own record does not fit either, and is owed), space returns, writes go
// on at the same offsets, and a crash with every segment write lost
// replays exactly the acknowledged entries, none of the failed ones.
func TestJournalSurvivesFullDisk(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	disk := filepath.Join(dir, "journal")
	smallDisk(t, disk, 1<<20)
	filler := filepath.Join(disk, "filler")
	must(t, os.WriteFile(filler, make([]byte, 256<<10), 0o640))
	s.open(t, "a", "b")
	copyDir(t, filepath.Join(dir, "parts"), filepath.Join(dir, "flushed")) // nothing flushed yet

	acked := map[string]int64{} // next offset of each partition: all below acked
	var full error
	for i := 0; i < 20000 && full == nil; i++ {
		name := []string{"a", "b"}[i%2]
		full = s.parts[name].Append(entry(name, acked[name], 0))
		if full == nil {
			acked[name]++
		}
	}
	if !errors.Is(full, ErrNoSpace) || !errors.Is(full, syscall.ENOSPC) {
		t.Fatalf("writing until the disk is full: %v, want ErrNoSpace and ENOSPC", full)
	}
	if st := s.j.Stats(); st.NoSpace == 0 {
		t.Fatalf("stats after a refused group: %+v", st)
	}
	// The failed entry is in its partition's segments (written before the
	// journal): the partition cuts it. Its record may not fit: then it is
	// owed, and the cut stays done.
	for _, name := range []string{"a", "b"} {
		if _, err := s.parts[name].TruncateTo(acked[name]); err != nil && !errors.Is(err, ErrNoSpace) {
			t.Fatalf("%s: truncate while the disk is full: %v", name, err)
		}
		if next := s.parts[name].Log().NextOffset(); next != acked[name] {
			t.Fatalf("%s ends at %d after the cut, want %d", name, next, acked[name])
		}
	}
	if err := s.parts["a"].Append(entry("a", acked["a"], 1)); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("append on a full disk: %v", err)
	}
	_, err := s.parts["a"].TruncateTo(acked["a"])
	if err != nil && !errors.Is(err, ErrNoSpace) {
		t.Fatal(err)
	}
	if err := s.j.Checkpoint(); err == nil {
		t.Log("checkpoint succeeded on the full disk")
	}

	must(t, os.Remove(filler)) // space returns
	for i := range 100 {
		name := []string{"a", "b"}[i%2]
		must(t, s.parts[name].Append(entry(name, acked[name], 2)))
		acked[name]++
	}
	must(t, s.j.Checkpoint())
	for i := range 20 { // after the checkpoint: replayed from the journal
		name := []string{"a", "b"}[i%2]
		must(t, s.parts[name].Append(entry(name, acked[name], 3)))
		acked[name]++
	}
	s.crash()

	s = newStore(t, dir)
	s.open(t)
	if len(s.report.Damaged) > 0 || s.report.Cut != "" {
		t.Fatalf("replay: %+v", s.report)
	}
	for _, name := range []string{"a", "b"} {
		gens, start, next := readGens(t, s.segDir(name), name, s.sopts)
		if start != 0 || next != acked[name] || len(gens) != int(next) {
			t.Fatalf("%s: [%d, %d) with %d entries, want [0, %d)", name, start, next, len(gens), acked[name])
		}
		for off, gen := range gens {
			if gen == 1 {
				t.Fatalf("%s@%d: an entry whose group was refused came back", name, off)
			}
		}
	}
	s.close(t)
}
