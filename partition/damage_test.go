package partition

import (
	"context"
	"encoding/json"
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

	"github.com/skeinlog/skein/proto/batch"

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

// Regression: after a clean shutdown the log is opened lazily, skipping
// the open-time repair and verification, so damage done while the broker
// was stopped went unnoticed. Then every clean start read every log in
// full to check it. Now the checkpoint stamps the log's files, and any
// fault the fault-injection tool leaves (each rewrites, extends, cuts or
// removes a file) makes the next start distrust it: the open is unclean,
// verifies the whole log, cuts it at the damage and reports it (Damage).
func TestCleanCloseThenDamageOpensUnclean(t *testing.T) {
	for name, fault := range map[string]func(string, *rand.Rand) (string, error){
		"flip": chaos.BitFlip, "torn": chaos.TornTail, "zero": chaos.ZeroTail, "garbage": chaos.GarbageTail,
		"wipe": func(data string, _ *rand.Rand) (string, error) {
			return chaos.WipeDataDir(filepath.Join(data, "topics", "t", "0", walDirName))
		},
	} {
		t.Run(name, func(t *testing.T) {
			data := t.TempDir()
			dir, open := fillLog(t, data, 100, true)
			desc, err := fault(data, rand.New(rand.NewPCG(3, 3)))
			if err != nil {
				t.Fatal(err)
			}
			t.Log(desc)
			var opens atomic.Int32
			p := openTest(t, dir, func(d string) (Log, error) { opens.Add(1); return open(d) })
			if p.lazy != nil || opens.Load() != 1 {
				t.Fatalf("a log damaged after a clean close was trusted (lazy %v, %d opens)", p.lazy != nil, opens.Load())
			}
			if p.Damage() == nil {
				t.Fatal("damage not reported")
			}
			t.Log(p.Damage())
			leader(t, p, 2)
			_, _, leo := p.Offsets()
			if recs := readAll(t, p, 0, ReadUncommitted); int64(len(recs)) != leo || leo > 200 {
				t.Fatalf("%d records read, log ends at %d", len(recs), leo)
			}
			if name == "flip" || name == "torn" || name == "wipe" {
				if leo >= 200 {
					t.Fatalf("log ends at %d: not cut at the damage", leo)
				}
			}
		})
	}
}

// Bit rot changes no size or time, so the start trusts the log; the
// entry's CRC catches it when it is read: the read fails (nothing damaged
// is served), the partition reports the damage through OnDamage once, on
// a leader as on a follower, takes no more writes and leaves no
// checkpoint, so the reopen verifies the log and cuts it at the damage.
func TestBitRotFoundByRead(t *testing.T) {
	for _, role := range []string{"leader", "follower"} {
		t.Run(role, func(t *testing.T) {
			data := t.TempDir()
			dir, open := fillLog(t, data, 100, true)
			if _, err := chaos.BitFlip(data, rand.New(rand.NewPCG(5, 5))); err != nil {
				t.Fatal(err)
			}
			restamp(t, dir) // what no stat can see
			var damages atomic.Int32
			damaged := make(chan error, 4)
			p, err := Open(Config{Dir: dir, Topic: "t", OpenLog: open, MaxRecordBytes: 1000, OnDamage: func(err error) { damages.Add(1); damaged <- err }})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if p.lazy == nil {
				t.Fatal("not trusted after a clean close")
			}
			if role == "leader" {
				leader(t, p, 1)
			} else if err := p.BecomeFollower(2, 1); err != nil {
				t.Fatal(err)
			}
			if err := p.Usable(); err != nil {
				t.Fatalf("usable before the read: %v", err)
			}
			var failed error
			for off := int64(0); failed == nil; {
				res, err := p.Read(nil, off, 1<<20, ReadUncommitted)
				if err != nil {
					failed = err
					break
				}
				if res.NextOffset == off {
					t.Fatal("read the whole log: the flipped bit was served")
				}
				off = res.NextOffset
			}
			if !errors.Is(failed, ErrStorage) || !strings.Contains(failed.Error(), "corrupt") {
				t.Fatalf("read of a rotten entry: %v", failed)
			}
			select {
			case err := <-damaged:
				t.Log(err)
			default:
				t.Fatal("OnDamage not called by the failed read")
			}
			p.Read(nil, 0, 1<<30, ReadUncommitted) // again: reported once
			if n := damages.Load(); n != 1 {
				t.Fatalf("OnDamage called %d times", n)
			}
			if err := p.Usable(); !errors.Is(err, ErrStorage) {
				t.Fatalf("usable after damage: %v", err)
			}
			if role == "leader" {
				if _, err := p.Append(context.Background(), AppendRequest{Batch: mkBatch(t, 1, "x"), LeaderEpoch: -1, ExpectedOffset: -1}); !errors.Is(err, ErrStorage) {
					t.Fatalf("append to a damaged partition: %v", err)
				}
			}
			p.Close()
			if _, err := os.Stat(filepath.Join(dir, checkpointFileName)); err == nil {
				t.Fatal("a damaged partition wrote a clean-shutdown checkpoint")
			}
			p = openTest(t, dir, open)
			var ce *wal.CorruptError
			if !errors.As(p.Damage(), &ce) {
				t.Fatalf("reopened: damage %v", p.Damage())
			}
			if _, _, leo := p.Offsets(); leo != ce.Offset || leo >= 200 {
				t.Fatalf("reopened: log ends at %d, damage at %d", leo, ce.Offset)
			}
		})
	}
}

// restamp rewrites the checkpoint in dir with the log's files as they are
// now, as if whatever changed them had changed no size or time.
func restamp(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, checkpointFileName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c logCheckpoint
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	if err := writeCheckpoint(dir, filepath.Join(dir, walDirName), c); err != nil {
		t.Fatal(err)
	}
}

// Regression: a role started a background read of a lazily opened log, so
// every clean start read every partition's whole log (10 GB in the start
// benchmark). A log whose files match the checkpoint is trusted: a role
// reads nothing, and Usable answers at once.
func TestCleanStartReadsNothing(t *testing.T) {
	t.Run("intact", func(t *testing.T) {
		dir, open := fillLog(t, t.TempDir(), 100, true)
		var opens atomic.Int32
		p := openTest(t, dir, func(d string) (Log, error) { opens.Add(1); return open(d) })
		if p.lazy == nil {
			t.Fatal("not trusted after a clean close")
		}
		if err := p.BecomeFollower(2, 1); err != nil {
			t.Fatal(err)
		}
		if err := p.Usable(); err != nil {
			t.Fatal(err)
		}
		if err := p.BecomeLeader(1, LeaderState{Epoch: 2, ISR: []int32{1}, MinISR: 1, Solo: true}); err != nil {
			t.Fatal(err)
		}
		if _, _, leo := p.Offsets(); leo != 200 {
			t.Fatalf("log end %d, want 200", leo)
		}
		if n := opens.Load(); n != 0 || p.lazy.isOpen() {
			t.Fatalf("roles opened the log %d times", n)
		}
		// Closed before it is used: it still leaves a checkpoint, and the
		// next open is lazy again.
		p.Close()
		p = openTest(t, dir, open)
		if p.lazy == nil {
			t.Fatal("no trusted checkpoint after an unused log was closed")
		}
		if recs := readAll(t, p, 0, ReadUncommitted); len(recs) != 200 {
			t.Fatalf("read %d records", len(recs))
		}
	})
	t.Run("old checkpoint", func(t *testing.T) {
		dir, open := fillLog(t, t.TempDir(), 10, true)
		path := filepath.Join(dir, checkpointFileName)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var c logCheckpoint
		if err := json.Unmarshal(data, &c); err != nil {
			t.Fatal(err)
		}
		c.Version, c.Files = 1, nil
		data, _ = json.Marshal(c)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		p := openTest(t, dir, open)
		if p.lazy != nil || p.Damage() != nil {
			t.Fatalf("a version 1 checkpoint: lazy %v, damage %v", p.lazy != nil, p.Damage())
		}
		if _, _, leo := p.Offsets(); leo != 20 {
			t.Fatalf("log end %d", leo)
		}
	})
	t.Run("not lazy", func(t *testing.T) {
		dir, open := fillLog(t, t.TempDir(), 10, false)
		p := openTest(t, dir, open)
		if err := p.Usable(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStampsChanged(t *testing.T) {
	base := time.Unix(1000, 0)
	st := func(name string, size int64, mt time.Duration) fileStamp {
		return fileStamp{Name: name, Size: size, ModTime: base.Add(mt).UnixNano(), Inode: 7, ChangeTime: base.Add(mt).UnixNano()}
	}
	a, b := st("a", 10, 0), st("b", 20, time.Second)
	written := base.Add(2 * time.Second)
	mod := func(f fileStamp, fn func(*fileStamp)) fileStamp { fn(&f); return f }
	for _, tc := range []struct {
		name      string
		want, got []fileStamp
		written   time.Time
		change    string // "" if unchanged
	}{
		{"same", []fileStamp{a, b}, []fileStamp{a, b}, written, ""},
		{"none", nil, nil, written, ""},
		{"removed", []fileStamp{a, b}, []fileStamp{a}, written, "b removed"},
		{"removed first", []fileStamp{a, b}, []fileStamp{b}, written, "a removed"},
		{"added", []fileStamp{a}, []fileStamp{a, b}, written, "b added"},
		{"all gone", []fileStamp{a, b}, nil, written, "a removed"},
		{"resized", []fileStamp{a, b}, []fileStamp{a, mod(b, func(f *fileStamp) { f.Size++ })}, written, "b resized"},
		{"written", []fileStamp{a, b}, []fileStamp{mod(a, func(f *fileStamp) { f.ModTime++ }), b}, written, "a modified"},
		{"replaced", []fileStamp{a}, []fileStamp{mod(a, func(f *fileStamp) { f.Inode++ })}, written, "a replaced"},
		{"times set back", []fileStamp{a}, []fileStamp{mod(a, func(f *fileStamp) { f.ChangeTime++ })}, written, "a replaced"},
		{"racy", []fileStamp{a, b}, []fileStamp{a, b}, base.Add(time.Second), "b last written in the same clock tick"},
	} {
		err := stampsChanged(tc.want, tc.got, tc.written)
		if tc.change == "" && err != nil || tc.change != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.change)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.change)
		}
	}
}

// Regression: a follower whose replicated append failed (out of space, an
// I/O error) marked the partition failed and stopped the broker. It now
// cuts the log back, fails the append (the follower retries it later), and
// appends again once the disk works.
func TestFollowerRetriesAfterFailedReplicatedAppend(t *testing.T) {
	for _, cause := range []error{syscall.ENOSPC, syscall.EIO} {
		t.Run(cause.Error(), func(t *testing.T) {
			batches, f, m, fatal := followerOnMemLog(t)
			m.mu.Lock()
			m.failNext = fmt.Errorf("write: %w", cause)
			m.mu.Unlock()
			if _, err := f.AppendReplicated(batches); !errors.Is(err, ErrStorage) {
				t.Fatalf("failed replicated append: %v", err)
			}
			if _, _, leo := f.Offsets(); leo != 0 || len(*fatal) != 0 {
				t.Fatalf("after a failed replicated append: log ends at %d, %d fatal errors", leo, len(*fatal))
			}
			if leo, err := f.AppendReplicated(batches); err != nil || leo != 3 {
				t.Fatalf("retry: %d %v", leo, err)
			}
			if st := f.State(); len(st.Epochs) != 1 || st.Epochs[0].Epoch != 3 {
				t.Fatalf("epochs after the retry: %+v", st.Epochs)
			}
		})
	}
}

// A failed replicated append whose log cannot even be cut back, because
// that needs disk space too, keeps the broker up: the follower reports
// nothing, and cuts the log back at its next fetch once there is space.
// Any other failure to recover still stops the partition.
func TestFollowerCutsBackAfterTheDiskHasSpaceAgain(t *testing.T) {
	for _, tc := range []struct {
		cause error
		fatal bool
	}{{syscall.ENOSPC, false}, {syscall.EIO, true}} {
		t.Run(tc.cause.Error(), func(t *testing.T) {
			batches, f, m, fatal := followerOnMemLog(t)
			m.mu.Lock()
			m.failNext = fmt.Errorf("write: %w", syscall.ENOSPC)
			m.failReopen = fmt.Errorf("truncate: %w", tc.cause)
			m.mu.Unlock()
			if _, err := f.AppendReplicated(batches); !errors.Is(err, ErrStorage) {
				t.Fatalf("failed replicated append: %v", err)
			}
			if tc.fatal {
				if len(*fatal) != 1 {
					t.Fatalf("%d fatal errors after a failed recovery (%v), want 1", len(*fatal), tc.cause)
				}
				return
			}
			if _, _, leo := f.Offsets(); leo != 0 || len(*fatal) != 0 {
				t.Fatalf("after a failed append and a failed cut: log ends at %d, %d fatal errors", leo, len(*fatal))
			}
			// Space is back: the next fetch's append cuts the log back first.
			if leo, err := f.AppendReplicated(batches); err != nil || leo != 3 {
				t.Fatalf("retry: %d %v", leo, err)
			}
			if st := f.State(); len(st.Epochs) != 1 || st.Epochs[0].Epoch != 3 {
				t.Fatalf("epochs after the retry: %+v", st.Epochs)
			}
		})
	}
}

// A replica that was made leader and lost the leadership before it appended
// anything keeps no record of that epoch once it follows: the new leader
// never had it, and its batches (of an older epoch at those offsets) must be
// taken. It stalled a follower for good (chaos seed 3, storage: the
// preferred-leader move made a restarted broker leader just before its
// damaged log was found).
func TestFollowerDropsAnEpochItLedWithoutRecords(t *testing.T) {
	open := func(d string) (Log, error) { return wal.Open(d, wal.Options{UnsafeNoFsync: true}) }
	src := openTest(t, t.TempDir(), open)
	leader(t, src, 1)
	for i := range 3 {
		if _, err := src.Append(context.Background(), AppendRequest{Batch: mkBatch(t, int64(i), "v"), LeaderEpoch: -1, ExpectedOffset: -1}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := src.Read(nil, 0, 1<<20, ReadUncommitted)
	if err != nil {
		t.Fatal(err)
	}
	first, rest, err := batch.Next(res.Batches)
	if err != nil {
		t.Fatal(err)
	}

	p := openTest(t, t.TempDir(), open)
	if err := p.BecomeFollower(2, 1); err != nil {
		t.Fatal(err)
	}
	if leo, err := p.AppendReplicated(first); err != nil || leo != 1 {
		t.Fatalf("first batch: %d %v", leo, err)
	}
	leader(t, p, 2) // led epoch 2 from offset 1, appended nothing
	if err := p.BecomeFollower(3, 3); err != nil {
		t.Fatal(err)
	}
	if leo, err := p.AppendReplicated(rest); err != nil || leo != 3 {
		t.Fatalf("the new leader's epoch-1 batches after an empty epoch 2: %d %v", leo, err)
	}
	if st := p.State(); len(st.Epochs) != 1 || st.Epochs[0].Epoch != 1 {
		t.Fatalf("epochs: %+v", st.Epochs)
	}
}

// followerOnMemLog returns three records of epoch 3 as a leader would send
// them, and a follower of epoch 3 on an in-memory log with fault injection
// whose fatal errors are collected.
func followerOnMemLog(t *testing.T) (batches []byte, f *Partition, m *memLog, fatal *[]error) {
	t.Helper()
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
	m = newMemLog()
	fatal = new([]error)
	f, err = Open(Config{Dir: t.TempDir(), Topic: "t", OpenLog: func(string) (Log, error) { return m.reopen() }, OnFatal: func(e error) { *fatal = append(*fatal, e) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.BecomeFollower(1, 3); err != nil {
		t.Fatal(err)
	}
	return res.Batches, f, m, fatal
}
