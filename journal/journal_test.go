package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/skeinlog/skein/segment"
)

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("topic-%d", i)
	}
	return out
}

// TestGroupCommitAcrossPartitions: appends to many partitions from many
// writers share fsyncs, and every acknowledged entry survives a crash that
// loses every segment write (power loss before any flush): the journal
// alone brings them back.
func TestGroupCommitAcrossPartitions(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	ps := names(64)
	s.open(t, ps...)
	copyDir(t, filepath.Join(dir, "parts"), filepath.Join(dir, "flushed")) // nothing flushed yet
	const perPart = 20
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range perPart {
				for k := w; k < len(ps); k += 8 {
					if err := s.parts[ps[k]].Append(entry(ps[k], int64(i), 0)); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	st := s.j.Stats()
	if st.Records != int64(len(ps)*perPart) || st.Fsyncs >= st.Records {
		t.Fatalf("%d records in %d fsyncs: want %d records and fewer fsyncs than records", st.Records, st.Fsyncs, len(ps)*perPart)
	}
	t.Logf("%d records, %d fsyncs (%.1f records per fsync)", st.Records, st.Fsyncs, float64(st.Records)/float64(st.Fsyncs))
	s.crash()
	copyDir(t, filepath.Join(dir, "flushed"), filepath.Join(dir, "parts"))

	s = newStore(t, dir)
	s.open(t)
	if s.report.Partitions != len(ps) || len(s.report.Damaged) > 0 {
		t.Fatalf("replay: %+v", s.report)
	}
	for _, n := range ps {
		gens, _, next := readGens(t, s.segDir(n), n, s.sopts)
		if next != perPart || len(gens) != perPart {
			t.Fatalf("%s: %d entries up to %d after replay, want %d", n, len(gens), next, perPart)
		}
	}
	s.close(t)
}

// TestReplayAfterFollowerTruncation: a follower cuts a divergent suffix and
// writes the leader's records there; a power loss loses the cut and the new
// segment writes. Replay must cut again and never bring the old suffix
// back.
func TestReplayAfterFollowerTruncation(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	s.open(t, "p")
	p := s.parts["p"]
	for i := range 100 {
		must(t, p.Append(entry("p", int64(i), 1)))
	}
	must(t, s.j.Checkpoint()) // offsets 0..99 durable in the segments
	copyDir(t, filepath.Join(dir, "parts"), filepath.Join(dir, "flushed"))
	next, err := p.TruncateTo(50)
	must(t, err)
	if next != 50 {
		t.Fatalf("TruncateTo(50) = %d", next)
	}
	for i := 50; i < 60; i++ {
		must(t, p.Append(entry("p", int64(i), 2)))
	}
	s.crash()
	copyDir(t, filepath.Join(dir, "flushed"), filepath.Join(dir, "parts")) // segments as flushed: old suffix intact

	s = newStore(t, dir)
	s.open(t)
	gens, _, next := readGens(t, s.segDir("p"), "p", s.sopts)
	if next != 60 {
		t.Fatalf("log ends at %d after replay, want 60", next)
	}
	for off, gen := range gens {
		if want := map[bool]int{true: 1, false: 2}[off < 50]; gen != want {
			t.Fatalf("offset %d holds generation %d, want %d (a cut record came back)", off, gen, want)
		}
	}
	s.close(t)
}

// TestRetentionAndDropNotResurrected: a replay neither brings back
// segments that retention deleted nor re-creates a dropped partition.
func TestRetentionAndDropNotResurrected(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	s.open(t, "kept", "gone")
	k, g := s.parts["kept"], s.parts["gone"]
	for i := range 200 {
		must(t, k.Append(entry("kept", int64(i), 0)))
		must(t, g.Append(entry("gone", int64(i), 0)))
	}
	removed, err := k.DeleteSegmentsBefore(150)
	must(t, err)
	start := k.Log().StartOffset()
	if removed == 0 || start == 0 {
		t.Fatalf("retention removed %d bytes, start %d", removed, start)
	}
	must(t, g.Drop())
	delete(s.parts, "gone")
	s.crash()
	must(t, os.RemoveAll(s.segDir("gone"))) // the caller removed its files
	// Power loss: the segments lose everything since their last flush (none).
	must(t, os.RemoveAll(filepath.Join(dir, "parts")))

	s = newStore(t, dir)
	var opened []string
	j, _, err := Open(filepath.Join(dir, "journal"), s.jopts)
	must(t, err)
	s.j = j
	s.report, err = j.Replay(func(name string) (*segment.Log, error) {
		opened = append(opened, name)
		return segment.Open(s.segDir(name), s.sopts)
	})
	must(t, err)
	if !slices.Equal(opened, []string{"kept"}) || !slices.Equal(s.report.Dropped, []string{"gone"}) {
		t.Fatalf("replay opened %v and reports dropped %v; want [kept] and [gone]", opened, s.report.Dropped)
	}
	gens, gotStart, next := readGens(t, s.segDir("kept"), "kept", s.sopts)
	if gotStart != start || next != 200 || len(gens) != int(next-start) {
		t.Fatalf("kept: [%d, %d) with %d entries after replay, want [%d, 200)", gotStart, next, len(gens), start)
	}
	s.parts = map[string]*Partition{}
	s.close(t)
}

// TestCleanStartReadsNothing: after a clean close the next Replay opens no
// partition and applies no record.
func TestCleanStartReadsNothing(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	s.open(t, names(10)...)
	for _, p := range s.parts {
		for i := range 30 {
			must(t, p.Append(entry(p.name, int64(i), 0)))
		}
	}
	s.close(t)
	j, _, err := Open(filepath.Join(dir, "journal"), s.jopts)
	must(t, err)
	rep, err := j.Replay(func(name string) (*segment.Log, error) {
		return nil, fmt.Errorf("opened %q", name)
	})
	must(t, err)
	if rep.Records != 0 || rep.Partitions != 0 {
		t.Fatalf("replay after a clean close: %+v", rep)
	}
	if st := j.Stats(); st.Index >= st.FirstIndex && st.Index > 0 {
		t.Fatalf("journal still holds records %d..%d after a clean close", st.FirstIndex, st.Index)
	}
	must(t, j.Close())
}

// journalSegments lists the journal's tidwall segment files.
func journalSegments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "journal", "0*"))
	must(t, err)
	return m
}

// TestJournalTornTail: a crash in the middle of a journal write leaves a
// torn last frame; Open cuts it and says so; everything acked is there.
func TestJournalTornTail(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	s.open(t, "p")
	for i := range 40 {
		must(t, s.parts["p"].Append(entry("p", int64(i), 0)))
	}
	s.crash()
	segs := journalSegments(t, dir)
	f, err := os.OpenFile(segs[len(segs)-1], os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.Write([]byte{200, 3, 1, 2, 3}) // length 456, 3 bytes of it
	must(t, err)
	must(t, f.Close())
	s = newStore(t, dir)
	s.open(t)
	if s.repair == nil || s.repair.DroppedBytes != 5 {
		t.Fatalf("Open after a torn journal tail: repair %+v, want 5 bytes dropped", s.repair)
	}
	if _, _, next := readGens(t, s.segDir("p"), "p", s.sopts); next != 40 {
		t.Fatalf("log ends at %d, want 40", next)
	}
	s.close(t)
}

// TestJournalBitFlip: a flipped bit in a journal record is found by its
// checksum: the journal is cut there and the partitions that lost records
// are reported damaged; nothing wrong is applied.
func TestJournalBitFlip(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	s.open(t, "a", "b")
	for i := range 40 {
		must(t, s.parts["a"].Append(entry("a", int64(i), 0)))
	}
	for i := range 10 {
		must(t, s.parts["b"].Append(entry("b", int64(i), 0)))
	}
	s.crash()
	must(t, os.RemoveAll(filepath.Join(dir, "parts"))) // power loss: segments never flushed
	segs := journalSegments(t, dir)
	b, err := os.ReadFile(segs[0])
	must(t, err)
	b[len(b)/3] ^= 0x04 // inside one of a's records
	must(t, os.WriteFile(segs[0], b, 0o640))

	s = newStore(t, dir)
	s.open(t)
	if s.report.Cut == "" || !slices.Contains(s.report.Lost, "b") || s.report.Damaged["b"] == "" {
		t.Fatalf("replay after a bit flip: %+v", s.report)
	}
	gens, _, next := readGens(t, s.segDir("a"), "a", s.sopts)
	if next == 0 || next >= 40 || len(gens) != int(next) {
		t.Fatalf("a holds %d entries up to %d: want the prefix before the damage", len(gens), next)
	}
	s.close(t)
}

func TestAttachChecks(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	j, _, err := Open(filepath.Join(dir, "journal"), s.jopts)
	must(t, err)
	l, err := segment.Open(s.segDir("p"), s.sopts)
	must(t, err)
	defer l.Close()
	if _, err := j.Attach("p", l); !errors.Is(err, ErrNotReplayed) {
		t.Fatalf("Attach before Replay: %v", err)
	}
	_, err = j.Replay(func(string) (*segment.Log, error) { return nil, errors.New("none") })
	must(t, err)
	_, err = j.Attach("p", l)
	must(t, err)
	if _, err := j.Attach("p", l); err == nil {
		t.Fatal("second Attach of the same name succeeded")
	}
	if _, err := j.Attach("", l); err == nil {
		t.Fatal("Attach of an empty name succeeded")
	}
	must(t, j.Close())
	if _, err := (&Partition{j: j, name: "p", seg: l}).Write(entry("p", 0, 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}

// TestReplayRepairsTornSegments: a power loss tears segment files written
// after the last checkpoint (pages that never reached the disk read as
// zeros, here in a sealed segment). Replay cuts the log back to the
// checkpoint and rewrites everything after it from the journal.
func TestReplayRepairsTornSegments(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	s.open(t, "p")
	p := s.parts["p"]
	for i := range 100 {
		must(t, p.Append(entry("p", int64(i), 0)))
	}
	must(t, s.j.Checkpoint())
	for i := 100; i < 200; i++ {
		must(t, p.Append(entry("p", int64(i), 0)))
	}
	var victim segment.SegmentInfo
	for _, sg := range p.Log().Segments() {
		if sg.BaseOffset > 100 && sg.Sealed {
			victim = sg
			break
		}
	}
	s.crash()
	b, err := os.ReadFile(victim.Path)
	must(t, err)
	clear(b[len(b)/4 : len(b)/2])
	must(t, os.WriteFile(victim.Path, b, 0o640))

	s = newStore(t, dir)
	s.open(t)
	gens, start, next := readGens(t, s.segDir("p"), "p", s.sopts)
	if start != 0 || next != 200 || len(gens) != 200 || len(s.report.Damaged) > 0 {
		t.Fatalf("after replay: [%d, %d) with %d entries, report %+v; want all 200", start, next, len(gens), s.report)
	}
	s.close(t)
}

// TestReplayOpenFailure: a partition whose log cannot be opened is reported
// damaged; the others are replayed and the broker can start.
func TestReplayOpenFailure(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	s.open(t, "ok", "bad")
	for i := range 10 {
		must(t, s.parts["ok"].Append(entry("ok", int64(i), 0)))
		must(t, s.parts["bad"].Append(entry("bad", int64(i), 0)))
	}
	s.crash()
	j, _, err := Open(filepath.Join(dir, "journal"), s.jopts)
	must(t, err)
	rep, err := j.Replay(func(name string) (*segment.Log, error) {
		if name == "bad" {
			return nil, errors.New("disk gone")
		}
		return segment.Open(s.segDir(name), s.sopts)
	})
	must(t, err)
	if rep.Damaged["bad"] == "" || rep.Damaged["ok"] != "" || rep.Partitions != 1 {
		t.Fatalf("replay: %+v", rep)
	}
	must(t, j.Close())
	if _, _, next := readGens(t, s.segDir("ok"), "ok", s.sopts); next != 10 {
		t.Fatalf("ok ends at %d, want 10", next)
	}
}

// A partition detached (closed) and then forgotten — the broker deleting a
// topic whose replicas it closed first — is not replayed after a crash,
// and a partition created again under its name starts afresh: replay
// neither cuts it to the old one's durable offset nor applies the old
// one's records to it. Forget refuses an attached partition.
func TestForgetAfterDetach(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	s.open(t, "t/0")
	p := s.parts["t/0"]
	for i := range 100 {
		must(t, p.Append(entry("t/0", int64(i), 0)))
	}
	if err := s.j.Forget("t/0"); err == nil {
		t.Fatal("Forget of an attached partition succeeded")
	}
	must(t, s.j.Checkpoint()) // the old partition durable at 100
	for i := 100; i < 150; i++ {
		must(t, p.Append(entry("t/0", int64(i), 0)))
	}
	must(t, p.Detach())
	must(t, p.Log().Close())
	must(t, s.j.Forget("t/0"))
	must(t, os.RemoveAll(s.segDir("t/0")))
	// The topic is created again: a new log from offset 0, other content.
	p = s.attach(t, "t/0")
	for i := range 10 {
		must(t, p.Append(entry("t/0", int64(i), 1)))
	}
	s.crash()

	s = newStore(t, dir)
	s.open(t)
	if len(s.report.Damaged) != 0 {
		t.Fatalf("replay reports damage: %v", s.report.Damaged)
	}
	gens, start, next := readGens(t, s.segDir("t/0"), "t/0", s.sopts)
	if start != 0 || next != 10 {
		t.Fatalf("the new partition holds [%d, %d) after replay, want [0, 10)", start, next)
	}
	for o, g := range gens {
		if g != 1 {
			t.Fatalf("offset %d holds a record of the deleted partition", o)
		}
	}
	s.close(t)
}

// TestReplayKeepsWrittenEntries: entries a process crash left in the
// segments (written, their journal group not yet committed) are kept by
// the replay of the partition's other records, as a log per partition
// keeps what reached the page cache: a follower may already have copied
// them, and a leader cutting them would lose records its followers hold.
func TestReplayKeepsWrittenEntries(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	s.open(t, "p")
	p := s.parts["p"]
	for i := range 50 {
		must(t, p.Append(entry("p", int64(i), 0)))
	}
	must(t, s.j.Checkpoint())
	for i := 50; i < 80; i++ {
		must(t, p.Append(entry("p", int64(i), 0)))
	}
	for i := 80; i < 90; i++ { // written to the segments, never journaled
		must(t, p.Log().Write(entry("p", int64(i), 0)))
	}
	s.crash()

	s = newStore(t, dir)
	s.open(t)
	gens, start, next := readGens(t, s.segDir("p"), "p", s.sopts)
	if start != 0 || next != 90 || len(gens) != 90 || len(s.report.Damaged) > 0 {
		t.Fatalf("after replay: [%d, %d) with %d entries, report %+v; want [0, 90)", start, next, len(gens), s.report)
	}
	s.close(t)
}
