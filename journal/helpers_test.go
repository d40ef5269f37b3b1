package journal

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/skeinlog/skein/segment"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// store is a broker data directory in a test: the journal and one segment
// directory per partition.
type store struct {
	dir    string
	jopts  Options
	sopts  segment.Options
	j      *Journal
	parts  map[string]*Partition
	report *ReplayReport
	repair *Repair
}

func newStore(t testing.TB, dir string) *store {
	lg := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return &store{dir: dir,
		jopts: Options{SegmentBytes: 64 << 10, CheckpointInterval: -1, Logger: lg},
		sopts: segment.Options{SegmentBytes: 4096, IndexIntervalBytes: 512, Logger: lg}}
}

func (s *store) segDir(name string) string { return filepath.Join(s.dir, "parts", name) }

// open opens the journal, replays it and attaches the partitions named.
func (s *store) open(t testing.TB, names ...string) {
	t.Helper()
	j, rep, err := Open(filepath.Join(s.dir, "journal"), s.jopts)
	must(t, err)
	s.j, s.repair = j, rep
	s.report, err = j.Replay(func(name string) (*segment.Log, error) { return segment.Open(s.segDir(name), s.sopts) })
	must(t, err)
	s.parts = map[string]*Partition{}
	for _, n := range names {
		s.attach(t, n)
	}
}

func (s *store) attach(t testing.TB, name string) *Partition {
	t.Helper()
	l, err := segment.Open(s.segDir(name), s.sopts)
	must(t, err)
	p, err := s.j.Attach(name, l)
	must(t, err)
	s.parts[name] = p
	return p
}

// close shuts down cleanly: journal (last checkpoint), then the logs.
func (s *store) close(t testing.TB) {
	t.Helper()
	must(t, s.j.Close())
	for _, p := range s.parts {
		must(t, p.Detach())
		must(t, p.Log().Close())
	}
}

// crash stops everything as kill -9 would: no checkpoint, no flush; the
// journal's committed groups are on disk, the segments as the page cache
// has them.
func (s *store) crash() {
	s.j.mu.Lock()
	s.j.closing = true
	s.j.mu.Unlock()
	close(s.j.stop)
	s.j.done.Wait()
	_ = s.j.tw.Close()
	for _, p := range s.parts {
		crashLog(p.Log())
	}
}

// crashLog abandons a segment log without flushing it.
func crashLog(l *segment.Log) {
	// segment.Log has no crash hook outside its package: closing it would
	// flush. Leak its handles instead; the files stay as written.
	_ = l
}

// payload is an entry's content: it names its partition, offset and
// generation (bumped by each truncation), then random filler.
func payload(name string, base int64, gen int) []byte {
	head := fmt.Sprintf("%s|%d|%d|", name, base, gen)
	rng := rand.New(rand.NewPCG(uint64(base), uint64(gen)))
	b := make([]byte, len(head)+rng.IntN(300))
	copy(b, head)
	for i := len(head); i < len(b); i++ {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// parsePayload returns the generation a payload was written with, checking
// that it is whole and belongs at (name, base).
func parsePayload(name string, base int64, b []byte) (int, error) {
	parts := strings.SplitN(string(b), "|", 4)
	if len(parts) < 4 || parts[0] != name || parts[1] != strconv.FormatInt(base, 10) {
		return 0, fmt.Errorf("%s@%d: payload %.40q belongs elsewhere", name, base, b)
	}
	gen, err := strconv.Atoi(parts[2])
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(b, payload(name, base, gen)) {
		return 0, fmt.Errorf("%s@%d: payload of generation %d is damaged", name, base, gen)
	}
	return gen, nil
}

// readGens reads a partition's log from its start: offset → generation.
func readGens(t testing.TB, dir, name string, opts segment.Options) (gens map[int64]int, start, next int64) {
	t.Helper()
	l, err := segment.Open(dir, opts)
	must(t, err)
	defer l.Close()
	gens = map[int64]int{}
	_, err = l.ReadEntries(l.StartOffset(), math.MaxInt, math.MaxInt64, func(e segment.Entry) error {
		gen, err := parsePayload(name, e.BaseOffset, e.Data)
		if err != nil {
			return err
		}
		if e.LastOffset != e.BaseOffset {
			return errors.New("multi-offset entry")
		}
		gens[e.BaseOffset] = gen
		return nil
	})
	must(t, err)
	return gens, l.StartOffset(), l.NextOffset()
}

func entry(name string, base int64, gen int) segment.Entry {
	return segment.Entry{BaseOffset: base, LastOffset: base, MaxTimestamp: base, Data: payload(name, base, gen)}
}

// copyDir copies a directory tree (a snapshot of what a flush made durable).
func copyDir(t testing.TB, from, to string) {
	t.Helper()
	must(t, os.RemoveAll(to))
	must(t, os.CopyFS(to, os.DirFS(from)))
}
