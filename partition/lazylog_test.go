package partition

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skeinlog/skein/wal"
)

// A clean close leaves a checkpoint; the next open answers offsets and size
// from it without opening the log, and opens it on first use. Without the
// checkpoint (a crash), the log is opened at once.
func TestLazyOpenAfterCleanClose(t *testing.T) {
	dir := t.TempDir()
	opens := 0
	open := func(d string) (Log, error) {
		opens++
		return wal.Open(d, wal.Options{SegmentBytes: 4096, UnsafeNoFsync: true})
	}
	p := openTest(t, dir, open)
	leader(t, p, 0)
	for i := range 30 {
		if _, err := p.Append(context.Background(), AppendRequest{Batch: mkBatch(t, int64(i), "a", "b"), LeaderEpoch: -1, ExpectedOffset: -1}); err != nil {
			t.Fatal(err)
		}
	}
	want := p.State()
	p.Close()

	opens = 0
	p = openTest(t, dir, open)
	if opens != 0 {
		t.Fatalf("the log was opened %d times at start after a clean close", opens)
	}
	st := p.State()
	if st.LogEndOffset != want.LogEndOffset || st.LogStartOffset != want.LogStartOffset || st.SizeBytes != want.SizeBytes {
		t.Fatalf("offsets from the checkpoint %+v, before %+v", st, want)
	}
	// A role reads nothing: the log's files are as the close left them.
	leader(t, p, 0)
	if opens != 0 || p.lazy.isOpen() {
		t.Fatalf("a role opened the log %d times", opens)
	}
	if recs := readAll(t, p, 10, ReadCommitted); len(recs) != 50 || recs[0].Offset != 10 {
		t.Fatalf("read %d records after a lazy open", len(recs))
	}
	if opens != 1 {
		t.Fatalf("log opened %d times by the first read", opens)
	}
	if r, err := p.Append(context.Background(), AppendRequest{Batch: mkBatch(t, 1, "c"), LeaderEpoch: -1, ExpectedOffset: -1}); err != nil || r.BaseOffset != 60 {
		t.Fatalf("append after a lazy open: %v %v", r, err)
	}
	p.Close()

	// A crash: no checkpoint, the log opens at start.
	opens = 0
	p = openTest(t, dir, open)
	if opens != 0 {
		t.Fatal("checkpoint not written by the second close")
	}
	// Simulate the crash of this incarnation: the checkpoint it consumed is
	// gone, nothing rewrote it.
	if _, err := os.Stat(filepath.Join(dir, checkpointFileName)); !os.IsNotExist(err) {
		t.Fatalf("the checkpoint must be removed when read: %v", err)
	}
	crash(p)
	opens = 0
	p2, err := Open(Config{Dir: dir, Topic: "t", OpenLog: open})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if opens != 1 || p2.State().LogEndOffset != 61 {
		t.Fatalf("after a crash: %d opens, end %d", opens, p2.State().LogEndOffset)
	}
}

// crash stops a partition the way a kill would: its loop and log stop,
// nothing is saved.
func crash(p *Partition) {
	p.mu.Lock()
	p.closing = true
	p.failed = os.ErrClosed // Close then saves no checkpoint or snapshot
	p.cond.Broadcast()
	p.mu.Unlock()
	<-p.done
	p.Close()
}

func TestLazyRetentionLeavesYoungLogsClosed(t *testing.T) {
	cp := &logCheckpoint{Version: 1, NextOffset: 10, Size: 1000, SealedSegments: 2, OldestMaxTimestamp: 5000}
	l := newLazyLog(cp, nil, nil)
	if l.mayExpire(Retention{MaxBytes: -1}, 6000) {
		t.Fatal("no limits: nothing expires")
	}
	if !l.mayExpire(Retention{MaxBytes: 500}, 6000) {
		t.Fatal("over the size limit")
	}
	if l.mayExpire(Retention{MaxBytes: -1, MaxAge: 2 * time.Second}, 6000) {
		t.Fatal("young segment expired")
	}
	if !l.mayExpire(Retention{MaxBytes: -1, MaxAge: 2 * time.Second}, 1_000_000) {
		t.Fatal("old segment kept")
	}
}
