package partition

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/wal"
)

// compactModel is what a compacted partition must serve: every record
// appended, by offset, and each key's latest.
type compactModel struct {
	byOffset map[int64]batch.Record
	latest   map[string]int64
}

func newCompactModel() *compactModel {
	return &compactModel{byOffset: map[int64]batch.Record{}, latest: map[string]int64{}}
}

type testClock struct{ ms atomic.Int64 }

func (c *testClock) now() time.Time { return time.UnixMilli(c.ms.Load()) }

func openCompacted(t *testing.T, dir string, clk *testClock) *Partition {
	t.Helper()
	p, err := Open(Config{Dir: dir, Topic: "accounts", OpenLog: walOpen, KeyIndex: true, Compacted: true, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// produceKeys appends n batches of 1-4 records over keys, about one in ten
// a tombstone, timestamped by the clock.
func produceKeys(t *testing.T, p *Partition, m *compactModel, r *rand.Rand, n, keys int, clk *testClock) {
	t.Helper()
	for i := 0; i < n; i++ {
		codecs := []batch.Compression{batch.None, batch.Snappy, batch.Zstd, batch.LZ4, batch.Gzip}
		b := batch.NewBuilder(codecs[r.IntN(len(codecs))])
		cnt := 1 + r.IntN(4)
		var recs []batch.Record
		for j := 0; j < cnt; j++ {
			rec := batch.Record{Timestamp: clk.ms.Load(), Key: []byte(fmt.Sprintf("acct-%d", r.IntN(keys)))}
			if r.IntN(10) != 0 {
				rec.Value = []byte(fmt.Sprintf("v%d-%d-%s", i, j, strings.Repeat("x", r.IntN(50))))
			}
			b.Add(&rec)
			recs = append(recs, rec)
		}
		out, err := b.Build(nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Append(context.Background(), AppendRequest{Batch: out, LeaderEpoch: -1, ExpectedOffset: -1})
		if err != nil {
			t.Fatal(err)
		}
		for j, rec := range recs {
			rec.Offset = res.BaseOffset + int64(j)
			m.byOffset[rec.Offset] = rec
			m.latest[string(rec.Key)] = rec.Offset
		}
	}
}

// checkCompacted reads the partition from its start and checks it against
// the model: every record is the one appended at its offset; below the
// cleaned offset each key appears once, at its latest record below there;
// reading to the end leaves each key at its latest value; tombstones older
// than the horizon are gone below the cleaned offset.
func checkCompacted(t *testing.T, p *Partition, m *compactModel, cleaned int64, tombstonesGone bool) {
	t.Helper()
	start, _, _ := p.Offsets()
	recs := readAll(t, p, start, ReadCommitted)
	seen := map[string]int64{}
	last := int64(-1)
	for _, r := range recs {
		w, ok := m.byOffset[r.Offset]
		if !ok || string(w.Key) != string(r.Key) || string(w.Value) != string(r.Value) || (w.Value == nil) != (r.Value == nil) {
			t.Fatalf("offset %d: read %q=%q, appended %q=%q", r.Offset, r.Key, r.Value, w.Key, w.Value)
		}
		if r.Offset <= last {
			t.Fatalf("offset %d after %d", r.Offset, last)
		}
		last = r.Offset
		if r.Offset < cleaned {
			if prev, dup := seen[string(r.Key)]; dup {
				t.Fatalf("key %s at %d and %d below the cleaned offset %d", r.Key, prev, r.Offset, cleaned)
			}
			if tombstonesGone && r.Value == nil {
				t.Fatalf("tombstone of %s at %d survived its retention", r.Key, r.Offset)
			}
		}
		seen[string(r.Key)] = r.Offset
	}
	for k, off := range m.latest {
		got, ok := seen[k]
		tomb := m.byOffset[off].Value == nil
		switch {
		case ok && got != off:
			t.Fatalf("key %s: read up to offset %d, latest is %d", k, got, off)
		case !ok && !(tomb && tombstonesGone && off < cleaned):
			t.Fatalf("key %s: latest record at %d missing", k, off)
		}
	}
}

func TestCleanKeepsLatestOfEveryKey(t *testing.T) {
	clk := &testClock{}
	clk.ms.Store(1_700_000_000_000)
	dir := t.TempDir()
	p := openCompacted(t, dir, clk)
	leader(t, p, 1)
	m := newCompactModel()
	r := rand.New(rand.NewPCG(7, 8))
	produceKeys(t, p, m, r, 400, 40, clk)
	sizeBefore := p.State().SizeBytes

	opts := CleanOptions{DeleteRetention: time.Hour}
	res, err := p.Clean(opts)
	if err != nil || !res.Ran || res.Segments == 0 || res.Removed == 0 {
		t.Fatalf("first pass: %+v %v", res, err)
	}
	checkCompacted(t, p, m, res.CleanableOffset, false)
	if after := p.State().SizeBytes; after >= sizeBefore {
		t.Fatalf("log %d bytes before, %d after", sizeBefore, after)
	}
	if d := p.DirtyRatio(); d != 0 {
		t.Fatalf("dirty ratio %v right after a pass", d)
	}
	// Nothing new, tombstones young: the next pass does nothing.
	if res, err := p.Clean(opts); err != nil || res.Ran {
		t.Fatalf("idle pass: %+v %v", res, err)
	}
	// More writes, then past the delete retention: tombstones go.
	produceKeys(t, p, m, r, 200, 40, clk)
	clk.ms.Add(2 * time.Hour.Milliseconds())
	res, err = p.Clean(opts)
	if err != nil || !res.Ran || res.Tombstones == 0 {
		t.Fatalf("pass after the retention: %+v %v", res, err)
	}
	checkCompacted(t, p, m, res.CleanableOffset, true)
	// The key index answers from the compacted log: latest values, and
	// "none" for keys whose tombstone went.
	for k, off := range m.latest {
		kr, err := p.Latest([]byte(k))
		if err != nil {
			t.Fatal(err)
		}
		gone := m.byOffset[off].Value == nil && off < res.CleanableOffset
		if gone && kr.Found || !gone && (!kr.Found || kr.Record.Offset != off) {
			t.Fatalf("Latest(%s) = found %v at %d; latest is %d (tombstone gone: %v)", k, kr.Found, kr.Record.Offset, off, gone)
		}
	}
	// A clean restart and a crash keep what the cleaner made.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p = openCompacted(t, dir, clk)
	leader(t, p, 2)
	checkCompacted(t, p, m, res.CleanableOffset, true)
	crash(p)
	p = openCompacted(t, dir, clk)
	leader(t, p, 3)
	checkCompacted(t, p, m, res.CleanableOffset, true)
	for k, off := range m.latest {
		if m.byOffset[off].Value != nil {
			if kr, err := p.Latest([]byte(k)); err != nil || kr.Record.Offset != off {
				t.Fatalf("after a crash, Latest(%s) = %+v %v, want %d", k, kr, err, off)
			}
		}
	}
}

func TestCompactedTopicRefusesKeylessRecords(t *testing.T) {
	clk := &testClock{}
	p := openCompacted(t, t.TempDir(), clk)
	leader(t, p, 1)
	b := batch.NewBuilder(batch.None)
	b.Add(&batch.Record{Key: []byte("a"), Value: []byte("1")})
	b.Add(&batch.Record{Value: []byte("no key")})
	out, _ := b.Build(nil)
	_, err := p.Append(context.Background(), AppendRequest{Batch: out, LeaderEpoch: -1, ExpectedOffset: -1})
	if !errors.Is(err, ErrInvalidBatch) || !strings.Contains(err.Error(), "record 1 of the batch has no key") {
		t.Fatalf("keyless record: %v", err)
	}
	if _, _, leo := p.Offsets(); leo != 0 {
		t.Fatalf("LEO %d after a refused batch", leo)
	}
	p.SetCompacted(false)
	if _, err := p.Append(context.Background(), AppendRequest{Batch: out, LeaderEpoch: -1, ExpectedOffset: -1}); err != nil {
		t.Fatalf("after the policy went back to delete: %v", err)
	}
}

// TestCleanCrash stops a cleaning pass at a random step of a random
// segment's swap, as a crash would, and opens the partition again: every
// record read is the one appended at its offset and every key still has
// its latest record; another pass finishes the job.
func TestCleanCrash(t *testing.T) {
	steps := []string{"built", "sidecar-removed", "renamed", "synced", "done"}
	r := rand.New(rand.NewPCG(9, 10))
	for round := 0; round < 6; round++ {
		step, at := steps[r.IntN(len(steps))], 1+r.IntN(4)
		t.Run(fmt.Sprintf("%s-%d", step, at), func(t *testing.T) {
			clk := &testClock{}
			clk.ms.Store(1_700_000_000_000)
			dir := t.TempDir()
			p := openCompacted(t, dir, clk)
			leader(t, p, 1)
			m := newCompactModel()
			produceKeys(t, p, m, r, 300, 30, clk)
			n := 0
			wal.SetCompactHook(func(s string) {
				if s == step {
					if n++; n == at {
						panic("crash")
					}
				}
			})
			func() {
				defer func() { _ = recover() }()
				_, _ = p.Clean(CleanOptions{DeleteRetention: time.Hour})
			}()
			wal.SetCompactHook(nil)
			crash(p)
			p = openCompacted(t, dir, clk)
			leader(t, p, 2)
			checkCompacted(t, p, m, 0, false)
			res, err := p.Clean(CleanOptions{DeleteRetention: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			checkCompacted(t, p, m, res.CleanableOffset, false)
		})
	}
}

// TestLeaderAndFollowerCompactIndependently: a follower copies a compacted
// leader's log (batches with gaps, some empty) and compacts its own; both
// serve every key's latest record, and the follower can lead.
func TestLeaderAndFollowerCompactIndependently(t *testing.T) {
	clk := &testClock{}
	clk.ms.Store(1_700_000_000_000)
	ldr := openCompacted(t, t.TempDir(), clk)
	leader(t, ldr, 1)
	f := openCompacted(t, t.TempDir(), clk)
	if err := f.BecomeFollower(1, 1); err != nil {
		t.Fatal(err)
	}
	m := newCompactModel()
	r := rand.New(rand.NewPCG(11, 12))
	opts := CleanOptions{DeleteRetention: time.Hour}
	for round := 0; round < 3; round++ {
		produceKeys(t, ldr, m, r, 150, 25, clk)
		if _, err := ldr.Clean(opts); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 100; i++ {
			follow(t, ldr, f)
		}
		_, hw, _ := ldr.Offsets()
		f.SetHighWatermark(hw)
		if _, err := f.Clean(opts); err != nil {
			t.Fatal(err)
		}
	}
	_, lhw, lleo := ldr.Offsets()
	_, fhw, fleo := f.Offsets()
	if lleo != fleo || lhw != fhw {
		t.Fatalf("leader [hw %d, leo %d], follower [hw %d, leo %d]", lhw, lleo, fhw, fleo)
	}
	checkCompacted(t, ldr, m, 0, false)
	if err := f.BecomeLeader(2, LeaderState{Epoch: 2, ISR: []int32{2}, MinISR: 1, Solo: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, hw, _ := f.Offsets(); return hw == fleo })
	checkCompacted(t, f, m, 0, false)
	for k, off := range m.latest {
		if kr, err := f.Latest([]byte(k)); err != nil || (m.byOffset[off].Value != nil || kr.Found) && kr.Record.Offset != off {
			t.Fatalf("new leader: Latest(%s) = %+v %v, want %d", k, kr, err, off)
		}
	}
}

func TestCleanUnsupportedLogs(t *testing.T) {
	p, err := Open(Config{Dir: t.TempDir(), Topic: "t", OpenLog: func(string) (Log, error) { return newMemLog().reopen() }, Compacted: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Clean(CleanOptions{}); !errors.Is(err, ErrCompactionUnsupported) {
		t.Fatalf("Clean on a log that cannot compact: %v", err)
	}
}
