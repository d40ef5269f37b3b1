package journal

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/skeinlog/skein/segment"
)

// Set is several journals in one data directory, each partition always in
// the same one (by a hash of its name). One journal's fsyncs are serial;
// separate files' fsyncs can proceed in parallel on most disks, so a few
// journals carry more small writes than one, while each still groups the
// writes of many partitions into one fsync. Memory is one tail segment per
// journal.
type Set struct {
	js []*Journal
}

// stripesFile records how many journals a Set has: a partition's records
// must always be found in the same one, so the number never changes once
// written.
const stripesFile = "journals"

// OpenSet opens the set of n journals in dir (dir/0 … dir/n-1), creating
// them if needed. If dir already holds a set, its number of journals is
// kept whatever n says (a different n would move partitions between
// journals and break replay order). Call Replay next.
func OpenSet(dir string, n int, opts Options) (*Set, []*Repair, error) {
	if n < 1 || n > 256 {
		return nil, nil, fmt.Errorf("journal: %d journals: 1 to 256", n)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	n, err := stripeCount(dir, n)
	if err != nil {
		return nil, nil, err
	}
	s := &Set{}
	var reps []*Repair
	for k := range n {
		j, rep, err := Open(filepath.Join(dir, strconv.Itoa(k)), opts)
		if err != nil {
			s.abandon()
			return nil, nil, err
		}
		s.js = append(s.js, j)
		if rep != nil {
			reps = append(reps, rep)
		}
	}
	return s, reps, nil
}

// stripeCount returns the recorded number of journals, recording n if
// there is none.
func stripeCount(dir string, n int) (int, error) {
	path := filepath.Join(dir, stripesFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return n, writeFileAtomic(path, []byte(strconv.Itoa(n)+"\n"))
	}
	if err != nil {
		return 0, fmt.Errorf("journal: %w", err)
	}
	got, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || got < 1 || got > 256 {
		return 0, fmt.Errorf("journal: %s: damaged (%q): it must hold the number of journals", path, b)
	}
	return got, nil
}

// abandon stops journals opened so far (Open failed on a later one).
func (s *Set) abandon() {
	for _, j := range s.js {
		j.mu.Lock()
		j.closing = true
		j.mu.Unlock()
		close(j.stop)
		j.done.Wait()
		_ = j.tw.Close()
	}
}

// Len is the number of journals.
func (s *Set) Len() int { return len(s.js) }

// For returns the journal that holds name's records.
func (s *Set) For(name string) *Journal {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return s.js[int(h.Sum32()%uint32(len(s.js)))]
}

// Replay replays every journal (see Journal.Replay): each partition's
// records are all in one journal, so the journals replay independently.
// The reports are merged.
func (s *Set) Replay(open Opener) (*ReplayReport, error) {
	all := &ReplayReport{Damaged: map[string]string{}}
	var cuts []string
	for k, j := range s.js {
		rep, err := j.Replay(open)
		if err != nil {
			return nil, err
		}
		all.Records += rep.Records
		all.Partitions += rep.Partitions
		for name, why := range rep.Damaged {
			all.Damaged[name] = why
		}
		all.Dropped = append(all.Dropped, rep.Dropped...)
		all.Lost = append(all.Lost, rep.Lost...)
		if rep.Cut != "" {
			cuts = append(cuts, fmt.Sprintf("journal %d: %s", k, rep.Cut))
		}
	}
	all.Cut = strings.Join(cuts, "; ")
	return all, nil
}

// Attach attaches a partition's segment log to its journal.
func (s *Set) Attach(name string, seg *segment.Log) (*Partition, error) {
	return s.For(name).Attach(name, seg)
}

// Forget records name's deletion in its journal (see Journal.Forget).
func (s *Set) Forget(name string) error { return s.For(name).Forget(name) }

// Options is the options the journals were opened with (defaults filled).
func (s *Set) Options() Options { return s.js[0].opts }

// Checkpoint checkpoints every journal.
func (s *Set) Checkpoint() error {
	var errs []error
	for _, j := range s.js {
		errs = append(errs, j.Checkpoint())
	}
	return errors.Join(errs...)
}

// Stats sums the journals' counters (FirstIndex and Index are left zero:
// they are per journal).
func (s *Set) Stats() Stats {
	var t Stats
	for _, j := range s.js {
		st := j.Stats()
		t.Fsyncs += st.Fsyncs
		t.Records += st.Records
		t.Bytes += st.Bytes
		t.Checkpoints += st.Checkpoints
		t.NoSpace += st.NoSpace
		t.PendingBytes += st.PendingBytes
		t.TailBytes += st.TailBytes
	}
	return t
}

// Close closes every journal (see Journal.Close).
func (s *Set) Close() error {
	var errs []error
	for _, j := range s.js {
		errs = append(errs, j.Close())
	}
	return errors.Join(errs...)
}
