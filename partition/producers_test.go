package partition

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/skeinlog/skein/proto/batch"
)

// entryOf builds an entry from (first, last) sequence pairs, each batch
// at offsets 100*i .. 100*i+(last-first).
func entryOf(epoch int16, seqs ...[2]int32) producerEntry {
	var e producerEntry
	known := false
	for i, s := range seqs {
		n := int64(s[1]) - int64(s[0])
		if n < 0 {
			n += math.MaxInt32 + 1
		}
		e = apply(e, known, producerBatch{ID: 7, Epoch: epoch, FirstSeq: s[0], LastSeq: s[1]}, int64(100*i), int64(100*i)+n, 1000)
		known = true
	}
	return e
}

func TestCheckSequence(t *testing.T) {
	five := entryOf(2, [2]int32{0, 9}, [2]int32{10, 19}, [2]int32{20, 29}, [2]int32{30, 39}, [2]int32{40, 49})
	six := entryOf(2, [2]int32{0, 9}, [2]int32{10, 19}, [2]int32{20, 29}, [2]int32{30, 39}, [2]int32{40, 49}, [2]int32{50, 59})
	wrapped := entryOf(0, [2]int32{math.MaxInt32 - 9, math.MaxInt32 - 5}, [2]int32{math.MaxInt32 - 4, 4})
	atMax := entryOf(0, [2]int32{math.MaxInt32 - 2, math.MaxInt32})
	type want struct {
		dupBase  int64 // -1: not a duplicate
		expected int32 // for a *SequenceError; -1: none
		fenced   bool
		unknown  bool
		newEpoch bool
	}
	ok := want{dupBase: -1, expected: -1}
	seqErr := func(exp int32) want { return want{dupBase: -1, expected: exp} }
	dup := func(base int64) want { return want{dupBase: base, expected: -1} }
	cases := []struct {
		name  string
		e     producerEntry
		known bool
		b     producerBatch
		want  want
	}{
		{"unknown id at sequence 0", producerEntry{}, false, producerBatch{7, 0, 0, 4}, ok},
		{"unknown id at sequence 5", producerEntry{}, false, producerBatch{7, 0, 5, 9}, want{dupBase: -1, expected: 0, unknown: true}},
		{"next in sequence", five, true, producerBatch{7, 2, 50, 50}, ok},
		{"duplicate of the newest", five, true, producerBatch{7, 2, 40, 49}, dup(400)},
		{"duplicate of the 2nd newest", five, true, producerBatch{7, 2, 30, 39}, dup(300)},
		{"duplicate of the 3rd newest", five, true, producerBatch{7, 2, 20, 29}, dup(200)},
		{"duplicate of the 4th newest", five, true, producerBatch{7, 2, 10, 19}, dup(100)},
		{"duplicate of the 5th newest", five, true, producerBatch{7, 2, 0, 9}, dup(0)},
		{"retry of the 6th newest", six, true, producerBatch{7, 2, 0, 9}, seqErr(60)},
		{"5th newest still remembered", six, true, producerBatch{7, 2, 10, 19}, dup(100)},
		{"overlaps a batch but is not it", five, true, producerBatch{7, 2, 40, 44}, seqErr(50)},
		{"gap", five, true, producerBatch{7, 2, 55, 60}, seqErr(50)},
		{"behind", five, true, producerBatch{7, 2, 45, 60}, seqErr(50)},
		{"older epoch", five, true, producerBatch{7, 1, 50, 50}, want{dupBase: -1, expected: -1, fenced: true}},
		{"older epoch, duplicate sequences", five, true, producerBatch{7, 1, 40, 49}, want{dupBase: -1, expected: -1, fenced: true}},
		{"newer epoch from 0", five, true, producerBatch{7, 3, 0, 0}, ok},
		{"newer epoch from 50", five, true, producerBatch{7, 3, 50, 59}, want{dupBase: -1, expected: 0, newEpoch: true}},
		{"after MaxInt32 comes 0", atMax, true, producerBatch{7, 0, 0, 3}, ok},
		{"after MaxInt32, not 1", atMax, true, producerBatch{7, 0, 1, 3}, seqErr(0)},
		{"batch across the wrap, duplicate", wrapped, true, producerBatch{7, 0, math.MaxInt32 - 4, 4}, dup(100)},
		{"after a batch across the wrap", wrapped, true, producerBatch{7, 0, 5, 9}, ok},
		{"after a batch across the wrap, gap", wrapped, true, producerBatch{7, 0, 6, 9}, seqErr(5)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, isDup, err := checkSequence(c.e, c.known, c.b)
			var se *SequenceError
			var fe *FencedError
			switch {
			case c.want.dupBase >= 0:
				if !isDup || err != nil || m.BaseOffset != c.want.dupBase {
					t.Fatalf("want duplicate of the batch at %d, got dup=%v %+v err=%v", c.want.dupBase, isDup, m, err)
				}
				if m.FirstSeq != c.b.FirstSeq || m.LastSeq != c.b.LastSeq {
					t.Fatalf("duplicate of %+v for %+v", m, c.b)
				}
			case c.want.fenced:
				if isDup || !errors.As(err, &fe) || !errors.Is(err, ErrProducerFenced) || fe.Current != c.e.epoch {
					t.Fatalf("want fenced, got dup=%v err=%v", isDup, err)
				}
			case c.want.expected >= 0:
				if isDup || !errors.As(err, &se) || !errors.Is(err, ErrOutOfOrderSequence) {
					t.Fatalf("want out of order, got dup=%v err=%v", isDup, err)
				}
				if se.Expected != c.want.expected || se.Unknown != c.want.unknown || se.NewEpoch != c.want.newEpoch {
					t.Fatalf("got %+v, want expected %d unknown %v new epoch %v", se, c.want.expected, c.want.unknown, c.want.newEpoch)
				}
			default:
				if isDup || err != nil {
					t.Fatalf("want accepted, got dup=%v err=%v", isDup, err)
				}
			}
		})
	}
}

func TestApplyKeepsFiveAndResetsOnNewEpoch(t *testing.T) {
	e := entryOf(1, [2]int32{0, 0}, [2]int32{1, 1}, [2]int32{2, 2}, [2]int32{3, 3}, [2]int32{4, 4}, [2]int32{5, 5}, [2]int32{6, 6})
	if e.n != 5 || e.batches[0].FirstSeq != 2 || e.last().FirstSeq != 6 {
		t.Fatalf("entry %+v: want the 5 newest batches, 2..6", e)
	}
	before := e
	e2 := apply(e, true, producerBatch{7, 2, 0, 9}, 900, 909, 500)
	if e2.epoch != 2 || e2.n != 1 || e2.last() != (batchMeta{0, 9, 900, 909}) {
		t.Fatalf("new epoch: %+v", e2)
	}
	if e2.lastSeen != 500 {
		t.Fatalf("a new epoch keeps the new time only: %d", e2.lastSeen)
	}
	if e != before {
		t.Fatal("apply changed its input")
	}
	if e3 := apply(e, true, producerBatch{7, 1, 7, 7}, 1, 1, 10); e3.lastSeen != 1000 {
		t.Fatalf("lastSeen went back: %d", e3.lastSeen)
	}
}

func TestExpire(t *testing.T) {
	s := newProducerState()
	day := 24 * time.Hour
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for id, age := range map[int64]time.Duration{1: 0, 2: 6 * day, 3: 7*day - time.Millisecond, 4: 7*day + time.Millisecond, 5: 30 * day} {
		s.entries[id] = producerEntry{epoch: 0, n: 1, lastSeen: now - age.Milliseconds()}
	}
	if n := s.expire(now, -1); n != 0 || len(s.entries) != 5 {
		t.Fatalf("negative TTL expired %d", n)
	}
	if n := s.expire(now, 7*day); n != 2 {
		t.Fatalf("expired %d, want 2 (older than 7 days)", n)
	}
	for _, id := range []int64{1, 2, 3} {
		if _, ok := s.entries[id]; !ok {
			t.Fatalf("producer %d expired early", id)
		}
	}
}

func TestProducerSnapshotRoundTrip(t *testing.T) {
	s := newProducerState()
	s.entries[3] = entryOf(4, [2]int32{0, 9}, [2]int32{10, 10})
	s.entries[1] = entryOf(0, [2]int32{math.MaxInt32 - 4, 4})
	s.entries[math.MaxInt64] = entryOf(math.MaxInt16, [2]int32{0, 0}, [2]int32{1, 1}, [2]int32{2, 2}, [2]int32{3, 3}, [2]int32{4, 4})
	data := encodeProducerSnapshot(1000, &s)
	off, got, err := decodeProducerSnapshot(data)
	if err != nil || off != 1000 || len(got.entries) != 3 {
		t.Fatalf("decode: %v %d %d", err, off, len(got.entries))
	}
	for id, e := range s.entries {
		if got.entries[id] != e {
			t.Fatalf("producer %d: %+v, want %+v", id, got.entries[id], e)
		}
	}
	for i := range data {
		bad := append([]byte(nil), data...)
		bad[i] ^= 0x40
		if _, _, err := decodeProducerSnapshot(bad); err == nil {
			t.Fatalf("a flipped bit at byte %d was not noticed", i)
		}
	}
	if _, _, err := decodeProducerSnapshot(data[:len(data)-1]); err == nil {
		t.Fatal("a truncated snapshot decoded")
	}
}

func FuzzDecodeProducerSnapshot(f *testing.F) {
	s := newProducerState()
	s.entries[3] = entryOf(4, [2]int32{0, 9}, [2]int32{10, 10})
	f.Add(encodeProducerSnapshot(1000, &s))
	f.Add(encodeProducerSnapshot(0, &producerState{entries: map[int64]producerEntry{}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		off, st, err := decodeProducerSnapshot(data)
		if err != nil {
			return
		}
		again := encodeProducerSnapshot(off, &st)
		off2, st2, err := decodeProducerSnapshot(again)
		if err != nil || off2 != off || len(st2.entries) != len(st.entries) {
			t.Fatalf("round trip: %v", err)
		}
		for id, e := range st.entries {
			if st2.entries[id] != e || e.n < 1 || e.n > maxProducerBatches {
				t.Fatalf("producer %d: %+v / %+v", id, e, st2.entries[id])
			}
		}
	})
}

// ---- the partition ------------------------------------------------------------------

func mkProducerBatch(t testing.TB, pid int64, epoch int16, seq int32, values ...string) []byte {
	t.Helper()
	b := batch.NewBuilder(batch.None)
	b.SetProducer(pid, epoch, seq)
	for i, v := range values {
		b.Add(&batch.Record{Timestamp: 1000 + int64(i), Value: []byte(v)})
	}
	out, err := b.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func appendReq(b []byte) AppendRequest {
	return AppendRequest{Batch: b, LeaderEpoch: -1, ExpectedOffset: -1, Acks: AcksLeader}
}

func mustAppend(t *testing.T, p *Partition, b []byte) AppendResult {
	t.Helper()
	r, err := p.Append(context.Background(), appendReq(b))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestIdempotentAppend(t *testing.T) {
	forEachLog(t, func(t *testing.T, open func(string) (Log, error)) {
		p := openTest(t, t.TempDir(), open)
		leader(t, p, 0)
		ctx := context.Background()
		r0 := mustAppend(t, p, mkProducerBatch(t, 9, 0, 0, "a", "b"))
		r1 := mustAppend(t, p, mkProducerBatch(t, 9, 0, 2, "c"))
		mustAppend(t, p, mkBatch(t, 1, "plain")) // not idempotent: unaffected

		// A retry of either batch is answered with its original offsets.
		if r, err := p.Append(ctx, appendReq(mkProducerBatch(t, 9, 0, 0, "a", "b"))); err != nil || r.BaseOffset != r0.BaseOffset || r.LastOffset != r0.LastOffset || !r.Duplicate || r0.Duplicate {
			t.Fatalf("duplicate of the first batch: %+v %v, want %+v", r, err, r0)
		}
		r1.Duplicate, r1.LeaderEpoch = true, -1 // a duplicate's epoch is not known
		if r, err := p.Append(ctx, appendReq(mkProducerBatch(t, 9, 0, 2, "c"))); err != nil || r != r1 {
			t.Fatalf("duplicate of the second batch: %+v %v, want %+v", r, err, r1)
		}
		if leo := p.State().LogEndOffset; leo != 4 {
			t.Fatalf("log ends at %d after duplicates; want 4", leo)
		}
		// A gap.
		_, err := p.Append(ctx, appendReq(mkProducerBatch(t, 9, 0, 5, "x")))
		var se *SequenceError
		if !errors.As(err, &se) || se.Expected != 3 {
			t.Fatalf("gap: %v", err)
		}
		// An unknown producer must start at 0.
		if _, err := p.Append(ctx, appendReq(mkProducerBatch(t, 10, 0, 1, "x"))); !errors.As(err, &se) || !se.Unknown {
			t.Fatalf("unknown producer: %v", err)
		}
		// A new epoch resets; the old one is fenced from then on.
		if r := mustAppend(t, p, mkProducerBatch(t, 9, 1, 0, "d")); r.BaseOffset != 4 {
			t.Fatalf("new epoch at %d", r.BaseOffset)
		}
		var fe *FencedError
		if _, err := p.Append(ctx, appendReq(mkProducerBatch(t, 9, 0, 3, "e"))); !errors.As(err, &fe) || fe.Current != 1 {
			t.Fatalf("old epoch: %v", err)
		}
		// The old epoch's batches are forgotten: their retry is fenced, not a duplicate.
		if _, err := p.Append(ctx, appendReq(mkProducerBatch(t, 9, 0, 2, "c"))); !errors.Is(err, ErrProducerFenced) {
			t.Fatalf("old epoch's retry: %v", err)
		}
		if leo := p.State().LogEndOffset; leo != 5 {
			t.Fatalf("log ends at %d; refused batches were appended", leo)
		}
		recs := readAll(t, p, 0, ReadCommitted)
		got := ""
		for _, r := range recs {
			got += string(r.Value) + " "
		}
		if got != "a b c plain d " {
			t.Fatalf("log holds %q", got)
		}
	})
}

// The producer checks come before the conditional-append check: a retried
// conditional append whose first attempt landed gets its offsets back.
func TestIdempotentConditionalRetry(t *testing.T) {
	p := openTest(t, t.TempDir(), logKinds[0].open(t))
	leader(t, p, 0)
	ctx := context.Background()
	req := appendReq(mkProducerBatch(t, 4, 0, 0, "v1"))
	req.ExpectedOffset = 0
	first, err := p.Append(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.Append(ctx, req)
	first.Duplicate, first.LeaderEpoch = true, -1 // a duplicate's epoch is not known
	if err != nil || again != first {
		t.Fatalf("retry: %+v %v, want %+v", again, err, first)
	}
	// A new batch at a stale offset is a mismatch, and leaves no gap: the
	// sequence it used is free again.
	stale := appendReq(mkProducerBatch(t, 4, 0, 1, "v2"))
	stale.ExpectedOffset = 0
	if _, err := p.Append(ctx, stale); !errors.Is(err, ErrOffsetMismatch) {
		t.Fatalf("stale conditional append: %v", err)
	}
	stale.ExpectedOffset = 1
	if r, err := p.Append(ctx, stale); err != nil || r.BaseOffset != 1 {
		t.Fatalf("conditional append at the end with the same sequence: %+v %v", r, err)
	}
}

// Several batches of one producer in one group commit, with a duplicate
// of a batch of the same group and a gap, are decided in queue order.
func TestIdempotentGroupCommitOrder(t *testing.T) {
	g := &gateLog{memLog: newMemLog(), entered: make(chan struct{}), release: make(chan struct{})}
	p := openTest(t, t.TempDir(), func(string) (Log, error) { return g, nil })
	leader(t, p, 0)
	type res struct {
		r   AppendResult
		err error
	}
	var wg sync.WaitGroup
	out := make([]res, 7)
	submit := func(i int, b []byte) {
		wg.Add(1)
		p.Enqueue(appendReq(b), func(r AppendResult, err error) { out[i] = res{r, err}; wg.Done() })
	}
	submit(0, mkBatch(t, 1, "first"))
	<-g.entered // the next requests queue up behind this write: one group
	submit(1, mkProducerBatch(t, 5, 0, 0, "p0", "p1"))
	submit(2, mkProducerBatch(t, 5, 0, 2, "p2"))
	submit(3, mkProducerBatch(t, 5, 0, 0, "p0", "p1")) // a duplicate of 1, same group
	submit(4, mkProducerBatch(t, 5, 0, 3, "p3", "p4", "p5"))
	submit(5, mkProducerBatch(t, 5, 0, 9, "gap"))
	submit(6, mkProducerBatch(t, 5, 0, 6, "p6"))
	close(g.release)
	wg.Wait()
	wantBase := []int64{0, 1, 3, 1, 4, -1, 7}
	for i, w := range wantBase {
		if w < 0 {
			var se *SequenceError
			if !errors.As(out[i].err, &se) || se.Expected != 6 {
				t.Fatalf("request %d: %v, want out of order (expected 6)", i, out[i].err)
			}
			continue
		}
		if out[i].err != nil || out[i].r.BaseOffset != w {
			t.Fatalf("request %d: %+v %v, want base %d", i, out[i].r, out[i].err, w)
		}
	}
	if g.appends != 2 || g.NextOffset() != 8 {
		t.Fatalf("%d writes, log ends at %d; want 2 writes and 8 records", g.appends, g.NextOffset())
	}
}

// A duplicate of a batch still waiting for acks=all completes when its
// original is committed, not before.
func TestIdempotentDuplicateWaitsForHW(t *testing.T) {
	p := openTest(t, t.TempDir(), logKinds[0].open(t))
	if err := p.BecomeLeader(1, LeaderState{Epoch: 0, ISR: []int32{1, 2}, MinISR: 1}); err != nil {
		t.Fatal(err)
	}
	done := make(chan AppendResult, 2)
	req := AppendRequest{Batch: mkProducerBatch(t, 3, 0, 0, "x"), LeaderEpoch: -1, ExpectedOffset: -1, Acks: AcksAll}
	for range 2 {
		r := req
		r.Batch = append([]byte(nil), req.Batch...)
		p.Enqueue(r, func(r AppendResult, err error) {
			if err != nil {
				t.Error(err)
			}
			done <- r
		})
	}
	waitFor(t, func() bool { return p.State().LogEndOffset == 1 })
	select {
	case r := <-done:
		t.Fatalf("completed before the HW passed it: %+v", r)
	case <-time.After(20 * time.Millisecond):
	}
	p.SetHighWatermark(1)
	for range 2 {
		if r := <-done; r.BaseOffset != 0 {
			t.Fatalf("at %d", r.BaseOffset)
		}
	}
	if p.State().LogEndOffset != 1 {
		t.Fatal("duplicate appended")
	}
}

// checkDedup asserts that p (a leader) answers a retry of batch b with the
// original offset wantBase and does not append it again.
func checkDedup(t *testing.T, p *Partition, b []byte, wantBase int64) {
	t.Helper()
	leo := p.State().LogEndOffset
	r, err := p.Append(context.Background(), appendReq(b))
	if err != nil || r.BaseOffset != wantBase {
		t.Fatalf("retry: %+v %v; want the original offset %d", r, err, wantBase)
	}
	if p.State().LogEndOffset != leo {
		t.Fatal("the retry was appended again")
	}
}

func snapshotFiles(t *testing.T, dir string) []int64 {
	t.Helper()
	offs, err := listProducerSnapshots(dir)
	if err != nil {
		t.Fatal(err)
	}
	return offs
}

func TestProducerStateSurvivesRestart(t *testing.T) {
	forEachLog(t, func(t *testing.T, open func(string) (Log, error)) {
		dir := t.TempDir()
		cfg := Config{Dir: dir, Topic: "t", OpenLog: open, ProducerSnapshotBytes: 1 << 30}
		p, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		leader(t, p, 0)
		var bases []int64
		for i := range 8 {
			bases = append(bases, mustAppend(t, p, mkProducerBatch(t, 1, 0, int32(i), fmt.Sprint(i))).BaseOffset)
			mustAppend(t, p, mkProducerBatch(t, 2, 3, int32(i), fmt.Sprint(i)))
		}
		p.Close()
		if offs := snapshotFiles(t, dir); len(offs) != 1 || offs[0] != 16 {
			t.Fatalf("snapshots after a clean close: %v, want one at 16", offs)
		}

		// Clean start: from the snapshot alone.
		p, err = Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		leader(t, p, 1)
		checkDedup(t, p, mkProducerBatch(t, 1, 0, 7, "7"), bases[7])
		checkDedup(t, p, mkProducerBatch(t, 1, 0, 3, "3"), bases[3])
		if _, err := p.Append(context.Background(), appendReq(mkProducerBatch(t, 1, 0, 2, "2"))); !errors.Is(err, ErrOutOfOrderSequence) {
			t.Fatalf("6th newest batch: %v", err)
		}
		mustAppend(t, p, mkProducerBatch(t, 1, 0, 8, "8"))
		p.Close()

		// Crash: no snapshot at the end; rebuilt by replaying the log (here
		// all of it, as the only snapshot is gone).
		for _, o := range snapshotFiles(t, dir) {
			os.Remove(filepath.Join(dir, snapshotName(o)))
		}
		p, err = Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		leader(t, p, 2)
		checkDedup(t, p, mkProducerBatch(t, 1, 0, 8, "8"), 16)
		checkDedup(t, p, mkProducerBatch(t, 2, 3, 7, "7"), 15)
		ps, err := p.Producers()
		if err != nil || len(ps) != 2 || ps[0].ID != 1 || ps[1].Epoch != 3 || len(ps[0].Batches) != 5 {
			t.Fatalf("producers %+v %v", ps, err)
		}
		p.Close()
	})
}

func TestProducerStateFromOlderSnapshotAndStaleOnes(t *testing.T) {
	forEachLog(t, func(t *testing.T, open func(string) (Log, error)) {
		dir := t.TempDir()
		// A snapshot after every append.
		cfg := Config{Dir: dir, Topic: "t", OpenLog: open, ProducerSnapshotBytes: 1}
		p, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		leader(t, p, 0)
		for i := range 6 {
			mustAppend(t, p, mkProducerBatch(t, 1, 0, int32(i), fmt.Sprint(i)))
		}
		if offs := snapshotFiles(t, dir); len(offs) != keepProducerSnap || offs[len(offs)-1] != 6 {
			t.Fatalf("snapshots %v: want the newest %d, up to 6", offs, keepProducerSnap)
		}
		p.Close()
		// As if the crash came before the last snapshot, the one before it
		// was damaged, and a torn tail left one past the log's end.
		os.Remove(filepath.Join(dir, snapshotName(6)))
		s := newProducerState()
		s.entries[1] = entryOf(0, [2]int32{0, 99})
		s.entries[1] = apply(s.entries[1], true, producerBatch{1, 0, 100, 100}, 500, 500, 0)
		if err := writeFileAtomic(dir, snapshotName(900), encodeProducerSnapshot(900, &s)); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, snapshotName(5)), []byte("garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err = Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		leader(t, p, 1)
		checkDedup(t, p, mkProducerBatch(t, 1, 0, 5, "5"), 5)
		checkDedup(t, p, mkProducerBatch(t, 1, 0, 1, "1"), 1)
		if r := mustAppend(t, p, mkProducerBatch(t, 1, 0, 6, "6")); r.BaseOffset != 6 {
			t.Fatalf("next batch at %d", r.BaseOffset)
		}
		for _, o := range snapshotFiles(t, dir) {
			if o > 7 || o == 5 {
				t.Fatalf("snapshot at %d was kept (stale or unreadable)", o)
			}
		}
	})
}

// A follower records the producer state from replicated batches, so that
// as the new leader it deduplicates a retry aimed at the old one; a
// truncation rebuilds the state as of the new end.
func TestProducerStateFollowerReplayAndTruncation(t *testing.T) {
	forEachLog(t, func(t *testing.T, open func(string) (Log, error)) {
		ldr := openTest(t, t.TempDir(), logKinds[0].open(t))
		leader(t, ldr, 1)
		var batches [][]byte
		for i := range 6 {
			b := mkProducerBatch(t, 11, 0, int32(2*i), "a", "b")
			mustAppend(t, ldr, b)
			batches = append(batches, b)
		}
		res, err := ldr.Read(nil, 0, 1<<20, ReadUncommitted)
		if err != nil {
			t.Fatal(err)
		}
		fdir := t.TempDir()
		f, err := Open(Config{Dir: fdir, Topic: "t", OpenLog: open, ProducerSnapshotBytes: 150})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.BecomeFollower(1, 1); err != nil {
			t.Fatal(err)
		}
		// One batch at a time, so snapshots land along the way.
		for rest := res.Batches; len(rest) > 0; {
			v, r, err := batch.Next(rest)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.AppendReplicated(v); err != nil {
				t.Fatal(err)
			}
			rest = r
		}
		if len(snapshotFiles(t, fdir)) == 0 {
			t.Fatal("no snapshot written while replicating")
		}
		// Truncate the last two batches (offsets 8..11).
		if leo, err := f.TruncateTo(8); err != nil || leo != 8 {
			t.Fatalf("truncate: %d %v", leo, err)
		}
		for _, o := range snapshotFiles(t, fdir) {
			if o > 8 {
				t.Fatalf("snapshot at %d survived a truncation to 8", o)
			}
		}
		if err := f.BecomeLeader(2, LeaderState{Epoch: 2, ISR: []int32{2}, MinISR: 1, Solo: true}); err != nil {
			t.Fatal(err)
		}
		checkDedup(t, f, batches[3], 6) // kept: a duplicate
		checkDedup(t, f, batches[0], 0)
		// Truncated: appended anew, at the new end.
		if r := mustAppend(t, f, batches[4]); r.BaseOffset != 8 {
			t.Fatalf("truncated batch re-appended at %d, want 8", r.BaseOffset)
		}
		checkDedup(t, f, batches[4], 8)
		f.Close()

		// And the same after a restart.
		f2, err := Open(Config{Dir: fdir, Topic: "t", OpenLog: open})
		if err != nil {
			t.Fatal(err)
		}
		defer f2.Close()
		leader(t, f2, 3)
		checkDedup(t, f2, batches[4], 8)
		if _, err := f2.Append(context.Background(), appendReq(batches[5])); err != nil {
			t.Fatal(err)
		}
	})
}

func TestProducerStateResetAndExpiry(t *testing.T) {
	var mu sync.Mutex
	clock := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	p, err := Open(Config{Dir: t.TempDir(), Topic: "t", OpenLog: logKinds[0].open(t), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	leader(t, p, 0)
	mustAppend(t, p, mkProducerBatch(t, 1, 0, 0, "old"))
	advance(6 * 24 * time.Hour)
	mustAppend(t, p, mkProducerBatch(t, 2, 0, 0, "recent"))
	advance(36 * time.Hour) // producer 1 idle 7.5 days, producer 2 1.5 days
	mustAppend(t, p, mkProducerBatch(t, 3, 0, 0, "trigger"))
	ps, _ := p.Producers()
	if len(ps) != 2 || ps[0].ID != 2 || ps[1].ID != 3 {
		t.Fatalf("producers after expiry: %+v", ps)
	}
	if _, err := p.Append(context.Background(), appendReq(mkProducerBatch(t, 1, 0, 1, "back"))); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("expired producer: %v", err)
	}
	mustAppend(t, p, mkProducerBatch(t, 1, 1, 0, "back, new epoch"))

	// A follower whose log is reset forgets every producer.
	if err := p.BecomeFollower(9, 1); err != nil {
		t.Fatal(err)
	}
	if err := p.Reset(100); err != nil {
		t.Fatal(err)
	}
	if ps, _ := p.Producers(); len(ps) != 0 || len(snapshotFiles(t, p.Dir())) != 0 {
		t.Fatalf("after reset: %+v, snapshots %v", ps, snapshotFiles(t, p.Dir()))
	}
}

func TestRetentionKeepsASnapshotAboveTheLogStart(t *testing.T) {
	m := newMemLog()
	m.segEntries = 2
	dir := t.TempDir()
	cfg := Config{Dir: dir, Topic: "t", OpenLog: func(string) (Log, error) { return m.reopen() }, ProducerSnapshotBytes: 1 << 30}
	p, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	leader(t, p, 0)
	for i := range 7 {
		mustAppend(t, p, mkProducerBatch(t, 1, 0, int32(i), fmt.Sprint(i)))
	}
	if _, err := p.ApplyRetention(Retention{MaxBytes: 1}); err != nil {
		t.Fatal(err)
	}
	start, _, _ := p.Offsets()
	offs := snapshotFiles(t, dir)
	if start == 0 || len(offs) == 0 || offs[len(offs)-1] < start {
		t.Fatalf("log start %d, snapshots %v", start, offs)
	}
	p.Close()
}

// The figure in doc.go: heap bytes per remembered producer with its 5
// batches.
func TestProducerStateMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("measures memory")
	}
	const n = 100_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := newProducerState()
	for id := range int64(n) {
		e := producerEntry{}
		for i := range int32(5) {
			e = apply(e, i > 0, producerBatch{id, 0, i, i}, int64(i), int64(i), 1)
		}
		s.entries[id] = e
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.0f heap bytes per producer (%d producers)", per, len(s.entries))
	if per > 300 {
		t.Fatalf("%.0f bytes per producer; doc.go says about 170", per)
	}
}
