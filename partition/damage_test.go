package partition

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/skeinlog/skein/internal/chaos"
	"github.com/skeinlog/skein/wal"
)

// fillLog writes n batches of 2 records to a fresh partition under
// data/topics/t/0 with 4 KiB segments, and closes it cleanly (leaving a
// log checkpoint) or like a crash (no checkpoint).
func fillLog(t *testing.T, data string, n int, clean bool) (dir string, open func(string) (Log, error)) {
	t.Helper()
	dir = filepath.Join(data, "topics", "t", "0")
	open = func(d string) (Log, error) { return wal.Open(d, wal.Options{SegmentBytes: 4096, UnsafeNoFsync: true}) }
	p, err := Open(Config{Dir: dir, Topic: "t", OpenLog: open, MaxRecordBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	leader(t, p, 0)
	for i := range n {
		if _, err := p.Append(context.Background(), AppendRequest{Batch: mkBatch(t, int64(i), strings.Repeat("v", 60), "w"), LeaderEpoch: -1, ExpectedOffset: -1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if !clean {
		if err := os.Remove(filepath.Join(dir, checkpointFileName)); err != nil {
			t.Fatal(err)
		}
	}
	return dir, open
}

// Regression: a bit flipped in a sealed segment was served (as ErrCorrupt
// on read) but never noticed at start, so the replica counted the damaged
// log as complete. An unclean open now verifies every segment and cuts the
// log before the damaged entry, and says so (Damage).
func TestOpenCutsLogAtBitFlipBelowTail(t *testing.T) {
	data := t.TempDir()
	dir, open := fillLog(t, data, 100, false)
	desc, err := chaos.BitFlip(data, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	t.Log(desc)
	p := openTest(t, dir, open)
	var ce *wal.CorruptError
	if err := p.Damage(); !errors.As(err, &ce) {
		t.Fatalf("damage %v, want the corrupt entry reported", err)
	}
	_, _, leo := p.Offsets()
	if leo != ce.Offset || leo >= 200 {
		t.Fatalf("log ends at %d, want it cut at the damaged entry %d", leo, ce.Offset)
	}
	leader(t, p, 1)
	if recs := readAll(t, p, 0, ReadUncommitted); int64(len(recs)) != leo {
		t.Fatalf("read %d records below the cut at %d", len(recs), leo)
	}
}

// A torn tail after a crash is repaired by wal.Open; the partition reports
// it as damage (the dropped entry may have been acknowledged to a leader).
func TestOpenReportsTornTail(t *testing.T) {
	data := t.TempDir()
	dir, open := fillLog(t, data, 30, false)
	if _, err := chaos.TornTail(data, rand.New(rand.NewPCG(2, 2))); err != nil {
		t.Fatal(err)
	}
	p := openTest(t, dir, open)
	if p.Damage() == nil {
		t.Fatal("a torn tail was not reported")
	}
	if _, _, leo := p.Offsets(); leo != 58 {
		t.Fatalf("log ends at %d, want 58 (the last batch dropped)", leo)
	}
}

// Regression: after a clean shutdown the log is opened lazily, skipping the
// open-time repair and verification, so damage done while the broker was
// stopped went unnoticed (a torn tail even made the first open fail for
// good, and a flipped bit was only found by a read). The first open now
// checks the log: the partition fails every read and write with ErrCorrupt
// and reports the damage (OnDamage); reopened, it cuts the log at the
// damage.
func TestLazyOpenDetectsDamage(t *testing.T) {
	for name, fault := range map[string]func(string, *rand.Rand) (string, error){
		"flip": chaos.BitFlip, "torn": chaos.TornTail, "zero": chaos.ZeroTail, "garbage": chaos.GarbageTail,
	} {
		t.Run(name, func(t *testing.T) {
			data := t.TempDir()
			dir, open := fillLog(t, data, 100, true)
			if _, err := fault(data, rand.New(rand.NewPCG(3, 3))); err != nil {
				t.Fatal(err)
			}
			damaged := make(chan error, 1)
			p, err := Open(Config{Dir: dir, Topic: "t", OpenLog: open, MaxRecordBytes: 1000, OnDamage: func(err error) { damaged <- err }})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := p.log.(*lazyLog); !ok {
				t.Fatal("not opened lazily after a clean close")
			}
			leader(t, p, 1)
			if _, err := p.Read(nil, 0, 1<<20, ReadUncommitted); !errors.Is(err, ErrStorage) || !strings.Contains(err.Error(), "corrupt") {
				t.Fatalf("read of a damaged lazy log: %v", err)
			}
			// The role started the check in the background: it reports
			// the damage on its goroutine, maybe after the read failed.
			select {
			case err := <-damaged:
				t.Log(err)
			case <-time.After(10 * time.Second):
				t.Fatal("OnDamage not called")
			}
			if _, err := p.Append(context.Background(), AppendRequest{Batch: mkBatch(t, 1, "x"), LeaderEpoch: -1, ExpectedOffset: -1}); !errors.Is(err, ErrStorage) {
				t.Fatalf("append to a damaged partition: %v", err)
			}
			p.Close()
			if _, err := os.Stat(filepath.Join(dir, checkpointFileName)); err == nil {
				t.Fatal("a damaged partition wrote a clean-shutdown checkpoint")
			}
			p = openTest(t, dir, open)
			if p.Damage() == nil {
				t.Fatal("reopened: damage not reported")
			}
			leader(t, p, 2)
			_, _, leo := p.Offsets()
			if recs := readAll(t, p, 0, ReadUncommitted); int64(len(recs)) != leo || leo >= 200 || leo == 0 {
				t.Fatalf("reopened: %d records read, log ends at %d", len(recs), leo)
			}
		})
	}
}

// Regression: after a clean shutdown a follower's log stayed unopened (and
// unchecked) until records arrived, while the follower reported the
// checkpoint's log end to its leader: a damaged replica caught up with an
// idle leader rejoined the ISR. Becoming follower (or leader) now checks the
// log in the background at once, without keeping it open, and WaitVerified
// holds the follower back until it is known intact.
func TestRoleChecksLazyLogAtOnce(t *testing.T) {
	t.Run("damaged", func(t *testing.T) {
		data := t.TempDir()
		dir, open := fillLog(t, data, 100, true)
		if _, err := chaos.BitFlip(data, rand.New(rand.NewPCG(5, 5))); err != nil {
			t.Fatal(err)
		}
		damaged := make(chan error, 1)
		p, err := Open(Config{Dir: dir, Topic: "t", OpenLog: open, MaxRecordBytes: 1000, OnDamage: func(err error) { damaged <- err }})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if p.lazy == nil {
			t.Fatal("not opened lazily after a clean close")
		}
		if err := p.BecomeFollower(2, 1); err != nil {
			t.Fatal(err)
		}
		// No read, no append: the role alone finds the damage.
		select {
		case err := <-damaged:
			t.Log(err)
		case <-time.After(10 * time.Second):
			t.Fatal("becoming a follower did not check the log")
		}
		if err := p.WaitVerified(context.Background()); !errors.Is(err, ErrStorage) || !strings.Contains(err.Error(), "corrupt") {
			t.Fatalf("WaitVerified on a damaged log: %v", err)
		}
	})
	t.Run("intact", func(t *testing.T) {
		dir, open := fillLog(t, t.TempDir(), 100, true)
		var opens atomic.Int32
		p := openTest(t, dir, func(d string) (Log, error) { opens.Add(1); return open(d) })
		_, _, before := p.Offsets()
		if err := p.BecomeFollower(2, 1); err != nil {
			t.Fatal(err)
		}
		if err := p.WaitVerified(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := opens.Load(); n != 1 || p.lazy.isOpen() {
			t.Fatalf("checked with %d opens; left open: %v", n, p.lazy.isOpen())
		}
		if _, _, leo := p.Offsets(); leo != before || leo != 200 {
			t.Fatalf("log end %d after the check, %d before", leo, before)
		}
		// Closed before it is used: it still leaves a checkpoint, and the
		// next open is lazy again.
		p.Close()
		p = openTest(t, dir, open)
		if p.lazy == nil {
			t.Fatal("no checkpoint after a checked, unused log was closed")
		}
	})
	t.Run("not lazy", func(t *testing.T) {
		dir, open := fillLog(t, t.TempDir(), 10, false)
		p := openTest(t, dir, open)
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // a log Open opened was checked then: no waiting
		if err := p.WaitVerified(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// Regression: a follower whose replicated append failed (out of space, an
// I/O error) marked the partition failed and stopped the broker. It now
// cuts the log back, fails the append (the follower retries it later), and
// appends again once the disk works.
func TestFollowerRetriesAfterFailedReplicatedAppend(t *testing.T) {
	for _, cause := range []error{syscall.ENOSPC, syscall.EIO} {
		t.Run(cause.Error(), func(t *testing.T) {
			ldr := openTest(t, t.TempDir(), func(d string) (Log, error) { return wal.Open(d, wal.Options{UnsafeNoFsync: true}) })
			leader(t, ldr, 3)
			for i := range 3 {
				if _, err := ldr.Append(context.Background(), AppendRequest{Batch: mkBatch(t, int64(i), "v"), LeaderEpoch: -1, ExpectedOffset: -1}); err != nil {
					t.Fatal(err)
				}
			}
			res, err := ldr.Read(nil, 0, 1<<20, ReadUncommitted)
			if err != nil {
				t.Fatal(err)
			}
			m := newMemLog()
			var fatal []error
			f, err := Open(Config{Dir: t.TempDir(), Topic: "t", OpenLog: func(string) (Log, error) { return m.reopen() }, OnFatal: func(e error) { fatal = append(fatal, e) }})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.BecomeFollower(1, 3); err != nil {
				t.Fatal(err)
			}
			m.mu.Lock()
			m.failNext = fmt.Errorf("write: %w", cause)
			m.mu.Unlock()
			if _, err := f.AppendReplicated(res.Batches); !errors.Is(err, ErrStorage) {
				t.Fatalf("failed replicated append: %v", err)
			}
			if _, _, leo := f.Offsets(); leo != 0 || len(fatal) != 0 {
				t.Fatalf("after a failed replicated append: log ends at %d, %d fatal errors", leo, len(fatal))
			}
			if leo, err := f.AppendReplicated(res.Batches); err != nil || leo != 3 {
				t.Fatalf("retry: %d %v", leo, err)
			}
			if st := f.State(); len(st.Epochs) != 1 || st.Epochs[0].Epoch != 3 {
				t.Fatalf("epochs after the retry: %+v", st.Epochs)
			}
		})
	}
}
