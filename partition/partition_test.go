package partition

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/wal"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logKinds runs a test against the in-memory twin and the real WAL.
var logKinds = []struct {
	name string
	open func(t *testing.T) func(dir string) (Log, error)
}{
	{"mem", func(t *testing.T) func(string) (Log, error) {
		m := newMemLog()
		return func(string) (Log, error) { return m.reopen() }
	}},
	{"wal", func(t *testing.T) func(string) (Log, error) {
		return func(dir string) (Log, error) {
			return wal.Open(dir, wal.Options{SegmentBytes: 4096, UnsafeNoFsync: true})
		}
	}},
	{"journal", openJournalKind},
}

func forEachLog(t *testing.T, fn func(t *testing.T, open func(string) (Log, error))) {
	for _, k := range logKinds {
		t.Run(k.name, func(t *testing.T) { fn(t, k.open(t)) })
	}
}

func openTest(t *testing.T, dir string, open func(string) (Log, error)) *Partition {
	t.Helper()
	p, err := Open(Config{Dir: dir, Topic: "t", OpenLog: open, MaxRecordBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func leader(t *testing.T, p *Partition, epoch int32) {
	t.Helper()
	if err := p.BecomeLeader(1, LeaderState{Epoch: epoch, ISR: []int32{1}, MinISR: 1, Solo: true}); err != nil {
		t.Fatal(err)
	}
}

func mkBatch(t testing.TB, ts int64, values ...string) []byte {
	t.Helper()
	b := batch.NewBuilder(batch.None)
	for i, v := range values {
		b.Add(&batch.Record{Timestamp: ts + int64(i), Value: []byte(v)})
	}
	out, err := b.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readAll(t *testing.T, p *Partition, from int64, iso Isolation) []batch.Record {
	t.Helper()
	var recs []batch.Record
	for off := from; ; {
		res, err := p.Read(nil, off, 1<<20, iso)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Batches) == 0 {
			return recs
		}
		for rest := res.Batches; len(rest) > 0; {
			v, r, err := batch.Next(rest)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := v.Records(nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range rs {
				if rec.Offset >= off {
					recs = append(recs, rec)
				}
			}
			rest = r
		}
		off = res.NextOffset
	}
}

func TestAppendReadDense(t *testing.T) {
	forEachLog(t, func(t *testing.T, open func(string) (Log, error)) {
		dir := t.TempDir()
		p := openTest(t, dir, open)
		leader(t, p, 3)
		ctx := context.Background()
		var want []string
		for i := range 20 {
			vals := []string{fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)}
			r, err := p.Append(ctx, AppendRequest{Batch: mkBatch(t, 1000, vals...), LeaderEpoch: -1, ExpectedOffset: -1})
			if err != nil {
				t.Fatal(err)
			}
			if r.BaseOffset != int64(2*i) || r.LastOffset != int64(2*i+1) {
				t.Fatalf("batch %d at %d..%d", i, r.BaseOffset, r.LastOffset)
			}
			want = append(want, vals...)
		}
		recs := readAll(t, p, 0, ReadCommitted)
		if len(recs) != len(want) {
			t.Fatalf("read %d records, want %d", len(recs), len(want))
		}
		for i, r := range recs {
			if r.Offset != int64(i) || string(r.Value) != want[i] {
				t.Fatalf("offset %d: %q at %d", i, r.Value, r.Offset)
			}
		}
		res, _ := p.Read(nil, 5, 1, ReadCommitted)
		v, _, _ := batch.Next(res.Batches)
		if v.LeaderEpoch() != 3 || v.BaseOffset() != 4 {
			t.Fatalf("stored batch epoch %d base %d", v.LeaderEpoch(), v.BaseOffset())
		}
		// Reopen: the same records come back.
		p.Close()
		p2 := openTest(t, dir, open)
		leader(t, p2, 3)
		if got := readAll(t, p2, 7, ReadCommitted); len(got) != len(want)-7 || got[0].Offset != 7 {
			t.Fatalf("after reopen read %d from 7", len(got))
		}
	})
}

// gateLog blocks Append until released, so a test can queue requests behind
// a write in progress and see them committed as one group.
type gateLog struct {
	*memLog
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gateLog) Write(entries ...wal.Entry) error {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
	return g.memLog.Append(entries...)
}

func (g *gateLog) Append(entries ...wal.Entry) error {
	if err := g.Write(entries...); err != nil {
		return err
	}
	return g.Sync()
}

func TestGroupCommit(t *testing.T) {
	g := &gateLog{memLog: newMemLog(), entered: make(chan struct{}), release: make(chan struct{})}
	p := openTest(t, t.TempDir(), func(string) (Log, error) { return g, nil })
	leader(t, p, 0)
	var wg sync.WaitGroup
	results := make([]AppendResult, 51)
	errs := make([]error, 51)
	submit := func(i int) {
		wg.Add(1)
		p.Enqueue(AppendRequest{Batch: mkBatch(t, 1, fmt.Sprint(i)), LeaderEpoch: -1, ExpectedOffset: -1}, func(r AppendResult, err error) {
			results[i], errs[i] = r, err
			wg.Done()
		})
	}
	submit(0)
	<-g.entered // the first group is being written
	for i := 1; i <= 50; i++ {
		submit(i)
	}
	close(g.release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if results[i].BaseOffset != int64(i) {
			t.Fatalf("append %d landed at %d: order not kept", i, results[i].BaseOffset)
		}
	}
	if g.appends != 2 {
		t.Fatalf("%d log appends for 51 requests queued behind one write; want 2 (group commit)", g.appends)
	}
}

func TestConditionalAppend(t *testing.T) {
	forEachLog(t, func(t *testing.T, open func(string) (Log, error)) {
		p := openTest(t, t.TempDir(), open)
		leader(t, p, 0)
		ctx := context.Background()
		if _, err := p.Append(ctx, AppendRequest{Batch: mkBatch(t, 1, "x", "y"), LeaderEpoch: -1, ExpectedOffset: 0}); err != nil {
			t.Fatal(err)
		}
		_, err := p.Append(ctx, AppendRequest{Batch: mkBatch(t, 1, "z"), LeaderEpoch: -1, ExpectedOffset: 1})
		var om *OffsetMismatchError
		if !errors.As(err, &om) || om.Actual != 2 || om.Expected != 1 {
			t.Fatalf("want mismatch with actual 2, got %v", err)
		}
		if p.State().LogEndOffset != 2 {
			t.Fatal("a refused conditional append changed the log")
		}
		r, err := p.Append(ctx, AppendRequest{Batch: mkBatch(t, 1, "z"), LeaderEpoch: -1, ExpectedOffset: 2})
		if err != nil || r.BaseOffset != 2 {
			t.Fatalf("%v %v", r, err)
		}
	})
}

// Two writers race with the same expected offset inside one group: exactly
// one wins, the other sees the offset the winner produced.
func TestConditionalAppendWithinOneGroup(t *testing.T) {
	g := &gateLog{memLog: newMemLog(), entered: make(chan struct{}), release: make(chan struct{})}
	p := openTest(t, t.TempDir(), func(string) (Log, error) { return g, nil })
	leader(t, p, 0)
	var wg sync.WaitGroup
	wg.Add(3)
	p.Enqueue(AppendRequest{Batch: mkBatch(t, 1, "first"), LeaderEpoch: -1, ExpectedOffset: -1}, func(AppendResult, error) { wg.Done() })
	<-g.entered
	var errA, errB error
	p.Enqueue(AppendRequest{Batch: mkBatch(t, 1, "a1", "a2"), LeaderEpoch: -1, ExpectedOffset: 1}, func(_ AppendResult, err error) { errA = err; wg.Done() })
	p.Enqueue(AppendRequest{Batch: mkBatch(t, 1, "b"), LeaderEpoch: -1, ExpectedOffset: 1}, func(_ AppendResult, err error) { errB = err; wg.Done() })
	close(g.release)
	wg.Wait()
	var om *OffsetMismatchError
	if errA != nil || !errors.As(errB, &om) || om.Actual != 3 {
		t.Fatalf("A: %v, B: %v", errA, errB)
	}
}

func TestRefusals(t *testing.T) {
	p := openTest(t, t.TempDir(), func(string) (Log, error) { return newMemLog(), nil })
	ctx := context.Background()
	good := mkBatch(t, 1, "v")
	if _, err := p.Append(ctx, AppendRequest{Batch: good, LeaderEpoch: -1, ExpectedOffset: -1}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("before a role: %v", err)
	}
	leader(t, p, 5)
	cases := []struct {
		name string
		req  AppendRequest
		want error
	}{
		{"old epoch", AppendRequest{Batch: good, LeaderEpoch: 4, ExpectedOffset: -1}, ErrFencedEpoch},
		{"future epoch", AppendRequest{Batch: good, LeaderEpoch: 6, ExpectedOffset: -1}, ErrUnknownEpoch},
		{"too large", AppendRequest{Batch: mkBatch(t, 1, string(make([]byte, 1001))), LeaderEpoch: -1, ExpectedOffset: -1}, ErrRecordTooLarge},
		{"corrupt", AppendRequest{Batch: append(append([]byte{}, good[:len(good)-1]...), good[len(good)-1]^1), LeaderEpoch: -1, ExpectedOffset: -1}, ErrInvalidBatch},
		{"empty", AppendRequest{LeaderEpoch: -1, ExpectedOffset: -1}, ErrInvalidBatch},
		{"two batches", AppendRequest{Batch: append(append([]byte{}, good...), good...), LeaderEpoch: -1, ExpectedOffset: -1}, ErrInvalidBatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := p.Append(ctx, c.req); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if p.State().LogEndOffset != 0 {
				t.Fatal("a refused append changed the log")
			}
		})
	}
	if err := p.BecomeFollower(2, 6); err != nil {
		t.Fatal(err)
	}
	var nl *NotLeaderError
	if _, err := p.Append(ctx, AppendRequest{Batch: good, LeaderEpoch: -1, ExpectedOffset: -1}); !errors.As(err, &nl) || nl.LeaderID != 2 || nl.LeaderEpoch != 6 {
		t.Fatalf("follower: %v", err)
	}
	if err := p.BecomeLeader(1, LeaderState{Epoch: 5, Solo: true}); !errors.Is(err, ErrFencedEpoch) {
		t.Fatalf("leading an older epoch: %v", err)
	}
}

func TestReadRanges(t *testing.T) {
	p := openTest(t, t.TempDir(), func(string) (Log, error) { return newMemLog(), nil })
	if err := p.BecomeLeader(1, LeaderState{Epoch: 0, ISR: []int32{1, 2}, MinISR: 1}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		if _, err := p.Append(ctx, AppendRequest{Batch: mkBatch(t, 1, "a", "b"), LeaderEpoch: -1, ExpectedOffset: -1, Acks: AcksLeader}); err != nil {
			t.Fatal(err)
		}
	}
	// LEO 6, HW 0: consumers see nothing, followers see all.
	if recs := readAll(t, p, 0, ReadCommitted); len(recs) != 0 {
		t.Fatalf("read %d uncommitted records", len(recs))
	}
	if recs := readAll(t, p, 0, ReadUncommitted); len(recs) != 6 {
		t.Fatalf("follower read %d", len(recs))
	}
	p.SetHighWatermark(4)
	if recs := readAll(t, p, 0, ReadCommitted); len(recs) != 4 {
		t.Fatalf("read %d below HW 4", len(recs))
	}
	var oor *OutOfRangeError
	if _, err := p.Read(nil, 7, 100, ReadCommitted); !errors.As(err, &oor) || oor.HighWatermark != 4 || oor.LogStartOffset != 0 {
		t.Fatalf("past LEO: %v", err)
	}
	if res, err := p.Read(nil, 5, 100, ReadCommitted); err != nil || len(res.Batches) != 0 || res.NextOffset != 5 {
		t.Fatalf("between HW and LEO: %v %v", res, err)
	}
	p.SetHighWatermark(3) // never back
	if p.State().HighWatermark != 4 {
		t.Fatal("HW moved back")
	}
	p.SetHighWatermark(100) // never past the LEO
	if p.State().HighWatermark != 6 {
		t.Fatalf("HW %d past LEO", p.State().HighWatermark)
	}
}

func TestAcksAllWaitsForHW(t *testing.T) {
	p := openTest(t, t.TempDir(), func(string) (Log, error) { return newMemLog(), nil })
	if err := p.BecomeLeader(1, LeaderState{Epoch: 0, ISR: []int32{1, 2}, MinISR: 2}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	p.Enqueue(AppendRequest{Batch: mkBatch(t, 1, "a", "b"), LeaderEpoch: -1, ExpectedOffset: -1}, func(_ AppendResult, err error) { done <- err })
	p.Enqueue(AppendRequest{Batch: mkBatch(t, 1, "c"), LeaderEpoch: -1, ExpectedOffset: -1}, func(_ AppendResult, err error) { done <- err })
	waitFor(t, func() bool { return p.State().LogEndOffset == 3 })
	select {
	case err := <-done:
		t.Fatalf("acks=all completed before replication: %v", err)
	default:
	}
	p.SetHighWatermark(2)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("second batch completed at HW 2: %v", err)
	default:
	}
	// Leadership moves: the waiting ack fails as indeterminate.
	if err := p.BecomeFollower(2, 1); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrNotLeader) {
		t.Fatalf("waiting ack after losing leadership: %v", err)
	}
	// Not enough replicas: refused before anything is appended.
	if err := p.BecomeLeader(1, LeaderState{Epoch: 2, ISR: []int32{1}, MinISR: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append(context.Background(), AppendRequest{Batch: mkBatch(t, 1, "d"), LeaderEpoch: -1, ExpectedOffset: -1}); !errors.Is(err, ErrNotEnoughReplicas) {
		t.Fatalf("ISR 1 < min 2: %v", err)
	}
	if p.State().LogEndOffset != 3 {
		t.Fatal("refused append changed the log")
	}
}

func TestAcksAllTimeout(t *testing.T) {
	p := openTest(t, t.TempDir(), func(string) (Log, error) { return newMemLog(), nil })
	if err := p.BecomeLeader(1, LeaderState{Epoch: 0, ISR: []int32{1, 2}, MinISR: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := p.Append(context.Background(), AppendRequest{Batch: mkBatch(t, 1, "a"), LeaderEpoch: -1, ExpectedOffset: -1, Timeout: 20 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("want timeout, got %v", err)
	}
}

func TestWatchWakesOnCommit(t *testing.T) {
	p := openTest(t, t.TempDir(), func(string) (Log, error) { return newMemLog(), nil })
	leader(t, p, 0)
	ch := p.Watch()
	if _, err := p.Append(context.Background(), AppendRequest{Batch: mkBatch(t, 1, "a"), LeaderEpoch: -1, ExpectedOffset: -1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch channel not closed by a commit")
	}
}

func TestStorageFailures(t *testing.T) {
	m := newMemLog()
	var fatal []error
	p, err := Open(Config{Dir: t.TempDir(), OpenLog: func(string) (Log, error) { return m.reopen() }, OnFatal: func(e error) { fatal = append(fatal, e) }})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	leader(t, p, 0)
	ctx := context.Background()
	req := AppendRequest{Batch: mkBatch(t, 1, "a"), LeaderEpoch: -1, ExpectedOffset: -1}
	if _, err := p.Append(ctx, req); err != nil {
		t.Fatal(err)
	}
	// Out of space: the request fails, the log is reopened, the next works.
	m.mu.Lock()
	m.failNext = fmt.Errorf("write: %w", syscall.ENOSPC)
	m.mu.Unlock()
	req.Batch = mkBatch(t, 1, "b")
	if _, err := p.Append(ctx, req); !errors.Is(err, ErrStorage) {
		t.Fatalf("ENOSPC: %v", err)
	}
	req.Batch = mkBatch(t, 1, "c")
	if r, err := p.Append(ctx, req); err != nil || r.BaseOffset != 1 {
		t.Fatalf("after space returns: %v %v", r, err)
	}
	if len(fatal) != 0 {
		t.Fatal("ENOSPC was treated as fatal")
	}
	// Out of space, and cutting the log back needs space too: the broker
	// stays up, the request fails, and the log is cut back before the next
	// write (the fault suite's long tier stopped a leader's broker here).
	m.mu.Lock()
	m.failNext = fmt.Errorf("write: %w", syscall.ENOSPC)
	m.failReopen = fmt.Errorf("create end segment: %w", syscall.ENOSPC)
	m.mu.Unlock()
	req.Batch = mkBatch(t, 1, "x")
	if _, err := p.Append(ctx, req); !errors.Is(err, ErrStorage) {
		t.Fatalf("ENOSPC with a failed cut: %v", err)
	}
	if len(fatal) != 0 {
		t.Fatal("ENOSPC with a failed cut was treated as fatal")
	}
	req.Batch = mkBatch(t, 1, "c2")
	if r, err := p.Append(ctx, req); err != nil || r.BaseOffset != 2 {
		t.Fatalf("after space returns, with the cut first: %v %v", r, err)
	}
	// An I/O error is fatal: OnFatal runs and writes stop.
	m.mu.Lock()
	m.failNext = fmt.Errorf("fsync: %w", syscall.EIO)
	m.mu.Unlock()
	req.Batch = mkBatch(t, 1, "d")
	if _, err := p.Append(ctx, req); !errors.Is(err, ErrStorage) {
		t.Fatalf("EIO: %v", err)
	}
	if len(fatal) != 1 {
		t.Fatalf("OnFatal called %d times", len(fatal))
	}
	req.Batch = mkBatch(t, 1, "e")
	if _, err := p.Append(ctx, req); !errors.Is(err, ErrStorage) {
		t.Fatalf("append after a fatal error: %v", err)
	}
	if got := readAll(t, p, 0, ReadCommitted); len(got) != 3 || string(got[1].Value) != "c" || string(got[2].Value) != "c2" {
		t.Fatalf("log after failures: %d records", len(got))
	}
}

func TestEpochHistory(t *testing.T) {
	forEachLog(t, func(t *testing.T, open func(string) (Log, error)) {
		dir := t.TempDir()
		p := openTest(t, dir, open)
		ctx := context.Background()
		for epoch, n := range []int{2, 0, 3} { // epoch 1 appends nothing
			leader(t, p, int32(epoch))
			for range n {
				if _, err := p.Append(ctx, AppendRequest{Batch: mkBatch(t, 1, "a", "b"), LeaderEpoch: int32(epoch), ExpectedOffset: -1}); err != nil {
					t.Fatal(err)
				}
			}
		}
		check := func(p *Partition) {
			t.Helper()
			for _, c := range []struct {
				ask, epoch int32
				end        int64
			}{{0, 0, 4}, {1, 0, 4}, {2, 2, 10}, {9, 2, 10}} { // epoch 1 appended nothing: Kafka answers with epoch 0
				e, end := p.EndOffsetForEpoch(c.ask)
				if e != c.epoch || end != c.end {
					t.Fatalf("epoch %d: got (%d, %d) want (%d, %d)", c.ask, e, end, c.epoch, c.end)
				}
			}
		}
		check(p)
		p.Close()
		p = openTest(t, dir, open)
		check(p)
		// Truncating a diverged suffix drops the epochs that started in it.
		if err := p.BecomeFollower(2, 3); err != nil {
			t.Fatal(err)
		}
		if leo, err := p.TruncateTo(4); err != nil || leo != 4 {
			t.Fatalf("truncate: %d %v", leo, err)
		}
		if e, end := p.EndOffsetForEpoch(2); e != 0 || end != 4 {
			t.Fatalf("after truncation: (%d, %d)", e, end)
		}
		p.Close()
		// Without the checkpoint the history is rebuilt from the batches.
		if err := removeFile(filepath.Join(dir, epochFileName)); err != nil {
			t.Fatal(err)
		}
		p = openTest(t, dir, open)
		if e, end := p.EndOffsetForEpoch(0); e != 0 || end != 4 {
			t.Fatalf("rebuilt: (%d, %d)", e, end)
		}
	})
}

func TestOffsetForTimestamp(t *testing.T) {
	forEachLog(t, func(t *testing.T, open func(string) (Log, error)) {
		p := openTest(t, t.TempDir(), open)
		leader(t, p, 0)
		ctx := context.Background()
		for _, ts := range []int64{100, 200, 150, 300} { // each batch: ts, ts+1, ts+2
			if _, err := p.Append(ctx, AppendRequest{Batch: mkBatch(t, ts, "a", "b", "c"), LeaderEpoch: -1, ExpectedOffset: -1}); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []struct {
			ts, off, recTS int64
		}{{0, 0, 100}, {101, 1, 101}, {160, 3, 200}, {202, 5, 202}, {203, 9, 300}, {999, 12, -1}} {
			off, recTS, err := p.OffsetForTimestamp(c.ts)
			if err != nil || off != c.off || recTS != c.recTS {
				t.Fatalf("ts %d: (%d, %d, %v), want (%d, %d)", c.ts, off, recTS, err, c.off, c.recTS)
			}
		}
	})
}

func TestRetentionCutoff(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	seg := func(base, next, ts, bytes int64, sealed bool) wal.SegmentInfo {
		return wal.SegmentInfo{BaseOffset: base, NextOffset: next, MaxTimestamp: ts, Bytes: bytes, Sealed: sealed}
	}
	segs := []wal.SegmentInfo{
		seg(0, 10, 100_000, 100, true),
		seg(10, 20, 500_000, 100, true),
		seg(20, 30, 900_000, 100, true),
		seg(30, 35, 999_000, 50, false),
	}
	cases := []struct {
		name string
		r    Retention
		hw   int64
		want int64
	}{
		{"keep all", Retention{MaxBytes: -1}, 35, -1},
		{"age", Retention{MaxAge: 600 * time.Second, MaxBytes: -1}, 35, 10},
		{"older age", Retention{MaxAge: 200 * time.Second, MaxBytes: -1}, 35, 20},
		{"age, hw limits", Retention{MaxAge: 600 * time.Second, MaxBytes: -1}, 15, 10},
		{"size", Retention{MaxBytes: 200}, 35, 10},
		{"smaller size", Retention{MaxBytes: 150}, 35, 20},
		{"size never the tail", Retention{MaxBytes: 0}, 35, 30},
		{"hw zero", Retention{MaxBytes: 0}, 0, -1},
	}
	for _, c := range cases {
		if got := retentionCutoff(segs, c.r, now, c.hw); got != c.want {
			t.Errorf("%s: cutoff %d, want %d", c.name, got, c.want)
		}
	}
}

func TestApplyRetention(t *testing.T) {
	m := newMemLog()
	p := openTest(t, t.TempDir(), func(string) (Log, error) { return m, nil })
	leader(t, p, 0)
	for range 10 {
		if _, err := p.Append(context.Background(), AppendRequest{Batch: mkBatch(t, 1, "v"), LeaderEpoch: -1, ExpectedOffset: -1}); err != nil {
			t.Fatal(err)
		}
	}
	freed, err := p.ApplyRetention(Retention{MaxBytes: 0})
	if err != nil || freed == 0 {
		t.Fatalf("freed %d, %v", freed, err)
	}
	st := p.State()
	if st.LogStartOffset != 8 || st.LogEndOffset != 10 {
		t.Fatalf("after retention start %d end %d", st.LogStartOffset, st.LogEndOffset)
	}
	var oor *OutOfRangeError
	if _, err := p.Read(nil, 3, 100, ReadCommitted); !errors.As(err, &oor) || oor.LogStartOffset != 8 {
		t.Fatalf("read below the new start: %v", err)
	}
}

func TestCloseDrainsQueue(t *testing.T) {
	g := &gateLog{memLog: newMemLog(), entered: make(chan struct{}), release: make(chan struct{})}
	p, err := Open(Config{Dir: t.TempDir(), OpenLog: func(string) (Log, error) { return g, nil }})
	if err != nil {
		t.Fatal(err)
	}
	leader(t, p, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed int
	for i := range 20 {
		wg.Add(1)
		p.Enqueue(AppendRequest{Batch: mkBatch(t, 1, fmt.Sprint(i)), LeaderEpoch: -1, ExpectedOffset: -1}, func(_ AppendResult, err error) {
			if err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
			}
			wg.Done()
		})
		if i == 0 {
			<-g.entered
		}
	}
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	close(g.release)
	wg.Wait()
	<-closed
	if failed != 0 || g.NextOffset() != 20 {
		t.Fatalf("close dropped work: %d failed, log ends at %d", failed, g.NextOffset())
	}
	if _, err := p.Append(context.Background(), AppendRequest{Batch: mkBatch(t, 1, "late"), LeaderEpoch: -1, ExpectedOffset: -1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
