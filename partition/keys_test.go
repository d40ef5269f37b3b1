package partition

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/wal"
)

// keyedBatch is a batch of one record per key ("key=value" or a bare key,
// whose value is the key).
func keyedBatch(t testing.TB, codec batch.Compression, kvs ...string) []byte {
	t.Helper()
	b := batch.NewBuilder(codec)
	for i, kv := range kvs {
		k, v := kv, kv
		for j := range kv {
			if kv[j] == '=' {
				k, v = kv[:j], kv[j+1:]
				break
			}
		}
		b.Add(&batch.Record{Timestamp: int64(1000 + i), Key: []byte(k), Value: []byte(v)})
	}
	out, err := b.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func openKeyed(t *testing.T, dir string, open func(string) (Log, error), hash func([]byte) uint64) *Partition {
	t.Helper()
	p, err := Open(Config{Dir: dir, Topic: "t", OpenLog: open, KeyIndex: true, KeyHash: hash})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// appendIf appends a keyed batch with "key=offset" expectations.
func appendIf(p *Partition, b []byte, exps map[string]int64) (AppendResult, error) {
	req := AppendRequest{Batch: b, LeaderEpoch: -1, ExpectedOffset: -1}
	for k, off := range exps {
		req.KeyExpectations = append(req.KeyExpectations, KeyExpectation{Key: []byte(k), Offset: off})
	}
	return p.Append(context.Background(), req)
}

// wantLast checks that key's last record is at off (-1: none), as a
// conditional append sees it: expecting another offset fails naming off.
func wantLast(t *testing.T, p *Partition, key string, off int64) {
	t.Helper()
	_, err := appendIf(p, keyedBatch(t, batch.None, key+"=probe"), map[string]int64{key: off + 1000})
	var ke *KeyMismatchError
	if !errors.As(err, &ke) || len(ke.Keys) != 1 || ke.Keys[0].Actual != off {
		t.Fatalf("key %s: probe got %v, want a mismatch naming offset %d", key, err, off)
	}
}

func TestKeyConditionalAppend(t *testing.T) {
	forEachLog(t, func(t *testing.T, open func(string) (Log, error)) {
		p := openKeyed(t, t.TempDir(), open, nil)
		leader(t, p, 1)
		if r, err := appendIf(p, keyedBatch(t, batch.None, "a=1"), map[string]int64{"a": -1}); err != nil || r.BaseOffset != 0 {
			t.Fatalf("first record of a: %+v %v", r, err)
		}
		_, err := appendIf(p, keyedBatch(t, batch.None, "a=2"), map[string]int64{"a": -1})
		var ke *KeyMismatchError
		if !errors.As(err, &ke) || ke.Keys[0].Actual != 0 {
			t.Fatalf("a second 'a has none': %v", err)
		}
		// A compressed batch of several keys, all or nothing.
		if r, err := appendIf(p, keyedBatch(t, batch.Zstd, "a=3", "b=1", "c=1"), map[string]int64{"a": 0, "b": -1}); err != nil || r.BaseOffset != 1 {
			t.Fatalf("zstd batch: %+v %v", r, err)
		}
		if _, err := appendIf(p, keyedBatch(t, batch.None, "a=4", "b=2"), map[string]int64{"a": 1, "b": 7}); !errors.Is(err, ErrKeyOffsetMismatch) {
			t.Fatalf("one key off: %v", err)
		}
		// Unconditional appends move keys too; keyless records are fine.
		if _, err := p.Append(context.Background(), AppendRequest{Batch: mkBatch(t, 1, "no key"), LeaderEpoch: -1, ExpectedOffset: -1}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Append(context.Background(), AppendRequest{Batch: keyedBatch(t, batch.None, "c=2"), LeaderEpoch: -1, ExpectedOffset: -1}); err != nil {
			t.Fatal(err)
		}
		wantLast(t, p, "a", 1)
		wantLast(t, p, "b", 2)
		wantLast(t, p, "c", 5)
		wantLast(t, p, "zz", -1)
		if _, _, leo := p.Offsets(); leo != 6 {
			t.Fatalf("refused appends took offsets: log end %d", leo)
		}
		// The latest committed value, by lookup.
		kr, err := p.Latest([]byte("a"))
		if err != nil || !kr.Found || kr.Record.Offset != 1 || string(kr.Record.Value) != "3" {
			t.Fatalf("Latest(a) = %+v %v", kr, err)
		}
		if kr, err := p.Latest([]byte("nope")); err != nil || kr.Found {
			t.Fatalf("Latest(nope) = %+v %v", kr, err)
		}
		// Bad input is refused and changes nothing.
		if _, err := appendIf(p, keyedBatch(t, batch.None, "a=5"), map[string]int64{"x": 1}); !errors.Is(err, ErrInvalidExpectation) {
			t.Fatalf("expectation for a key not in the batch: %v", err)
		}
		if _, _, leo := p.Offsets(); leo != 6 {
			t.Fatalf("log end %d after bad input", leo)
		}
	})
}

func TestKeyExpectationsNeedTheIndex(t *testing.T) {
	p := openTest(t, t.TempDir(), func(d string) (Log, error) { return newMemLog().reopen() })
	leader(t, p, 1)
	if _, err := appendIf(p, keyedBatch(t, batch.None, "a"), map[string]int64{"a": -1}); !errors.Is(err, ErrNoKeyIndex) {
		t.Fatalf("expectation on a topic without the key index: %v", err)
	}
	if _, err := p.Latest([]byte("a")); !errors.Is(err, ErrNoKeyIndex) {
		t.Fatalf("Latest without the key index: %v", err)
	}
}

// fillKeys appends n records over keys k0..k(keys-1), unconditionally, and
// returns each key's last offset.
func fillKeys(t *testing.T, p *Partition, n, keys int) map[string]int64 {
	t.Helper()
	last := map[string]int64{}
	for i := 0; i < n; i += 4 {
		var kvs []string
		for j := i; j < min(n, i+4); j++ {
			kvs = append(kvs, fmt.Sprintf("k%d=v%d", j%keys, j))
		}
		r, err := p.Append(context.Background(), AppendRequest{Batch: keyedBatch(t, batch.Snappy, kvs...), LeaderEpoch: -1, ExpectedOffset: -1})
		if err != nil {
			t.Fatal(err)
		}
		for j := range kvs {
			last[fmt.Sprintf("k%d", (i+j)%keys)] = r.BaseOffset + int64(j)
		}
	}
	return last
}

func checkKeys(t *testing.T, p *Partition, last map[string]int64) {
	t.Helper()
	for k, off := range last {
		kr, err := p.Latest([]byte(k))
		if err != nil || !kr.Found || kr.Record.Offset != off {
			t.Fatalf("Latest(%s) = %+v %v, want offset %d", k, kr, err, off)
		}
	}
	for k, off := range last {
		wantLast(t, p, k, off)
		break
	}
}

func walOpen(d string) (Log, error) {
	return wal.Open(d, wal.Options{SegmentBytes: 4096, UnsafeNoFsync: true})
}

func TestKeyIndexCleanRestartReadsNothing(t *testing.T) {
	dir := t.TempDir()
	p := openKeyed(t, dir, walOpen, nil)
	leader(t, p, 1)
	last := fillKeys(t, p, 200, 30)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	var opens atomic.Int32
	p = openKeyed(t, dir, func(d string) (Log, error) { opens.Add(1); return walOpen(d) }, nil)
	if st := p.KeyIndexStats(); st.Keys != 30 || opens.Load() != 0 || p.lazy == nil || p.lazy.isOpen() {
		t.Fatalf("after a clean restart: %+v keys, log opened %d times (lazy %v)", st, opens.Load(), p.lazy != nil)
	}
	leader(t, p, 2)
	checkKeys(t, p, last)
}

func TestKeyIndexRebuiltAfterCrash(t *testing.T) {
	dir := t.TempDir()
	p := openKeyed(t, dir, walOpen, nil)
	leader(t, p, 1)
	fillKeys(t, p, 100, 30)
	// A clean close and open leave a checkpoint that the crash must not
	// let the next open trust.
	p.Close()
	p = openKeyed(t, dir, walOpen, nil)
	leader(t, p, 2)
	last := fillKeys(t, p, 100, 40)
	crash(p)
	p = openKeyed(t, dir, walOpen, nil)
	if p.lazy != nil {
		t.Fatal("trusted the log after a crash")
	}
	if st := p.KeyIndexStats(); st.Keys != 40 {
		t.Fatalf("rebuilt index has %d keys, want 40", st.Keys)
	}
	leader(t, p, 3)
	checkKeys(t, p, last)
}

// follow copies the leader's log from the follower's end.
func follow(t *testing.T, ldr, f *Partition) {
	t.Helper()
	_, _, fleo := f.Offsets()
	res, err := ldr.Read(nil, fleo, 1<<20, ReadUncommitted)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Batches) == 0 {
		return
	}
	if _, err := f.AppendReplicated(res.Batches); err != nil {
		t.Fatal(err)
	}
}

func TestFollowerKeyIndexLetsANewLeaderCheckAtOnce(t *testing.T) {
	ldr := openKeyed(t, t.TempDir(), walOpen, nil)
	leader(t, ldr, 1)
	f := openKeyed(t, t.TempDir(), walOpen, nil)
	if err := f.BecomeFollower(1, 1); err != nil {
		t.Fatal(err)
	}
	last := fillKeys(t, ldr, 60, 10)
	follow(t, ldr, f)
	_, hw, _ := ldr.Offsets()
	f.SetHighWatermark(hw)
	if err := f.BecomeLeader(2, LeaderState{Epoch: 2, ISR: []int32{2}, MinISR: 1, Solo: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := appendIf(f, keyedBatch(t, batch.None, "k3=new"), map[string]int64{"k3": last["k3"]}); err != nil {
		t.Fatalf("the new leader refused a right expectation: %v", err)
	}
	wantLast(t, f, "k4", last["k4"])
	checkKeys(t, f, map[string]int64{"k5": last["k5"]})
}

func TestKeyIndexTruncatedByEpoch(t *testing.T) {
	for _, crashFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("after restart %v", crashFirst), func(t *testing.T) {
			ldr := openKeyed(t, t.TempDir(), walOpen, nil)
			leader(t, ldr, 1)
			dir := t.TempDir()
			f := openKeyed(t, dir, walOpen, nil)
			if err := f.BecomeFollower(1, 1); err != nil {
				t.Fatal(err)
			}
			base := fillKeys(t, ldr, 20, 5)
			follow(t, ldr, f)
			f.SetHighWatermark(20)
			// Records the follower copied but a new leader does not have:
			// key k0 moves, key "gone" is new.
			if _, err := ldr.Append(context.Background(), AppendRequest{Batch: keyedBatch(t, batch.None, "k0=x", "gone=x"), LeaderEpoch: -1, ExpectedOffset: -1}); err != nil {
				t.Fatal(err)
			}
			follow(t, ldr, f)
			if crashFirst {
				// A restart takes the whole log as committed: the cut
				// rebuilds the index.
				crash(f)
				f = openKeyed(t, dir, walOpen, nil)
				if err := f.BecomeFollower(1, 1); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := f.TruncateTo(20); err != nil || n != 20 {
				t.Fatalf("truncate: %d %v", n, err)
			}
			f.SetHighWatermark(20)
			if err := f.BecomeLeader(2, LeaderState{Epoch: 2, ISR: []int32{2}, MinISR: 1, Solo: true}); err != nil {
				t.Fatal(err)
			}
			wantLast(t, f, "gone", -1)
			wantLast(t, f, "k0", base["k0"])
			if r, err := appendIf(f, keyedBatch(t, batch.None, "gone=back"), map[string]int64{"gone": -1}); err != nil || r.BaseOffset != 20 {
				t.Fatalf("after the cut: %+v %v", r, err)
			}
		})
	}
}

func TestKeyIndexCollisionsNeverAnswerWrong(t *testing.T) {
	// Every key hashes to one of 3 values: most lookups collide.
	tiny := func(k []byte) uint64 { return 1 + uint64(len(k)+int(k[len(k)-1]))%3 }
	p := openKeyed(t, t.TempDir(), walOpen, tiny)
	leader(t, p, 1)
	last := fillKeys(t, p, 120, 25)
	checkKeys(t, p, last)
	for k, off := range last {
		if _, err := appendIf(p, keyedBatch(t, batch.None, k+"=next"), map[string]int64{k: off}); err != nil {
			t.Fatalf("key %s at %d: %v", k, off, err)
		}
	}
	wantLast(t, p, "absent", -1)
}

func TestKeyIndexRetentionAndReset(t *testing.T) {
	p := openKeyed(t, t.TempDir(), walOpen, nil)
	leader(t, p, 1)
	// "old" has records only at the start; retention removes them.
	if _, err := p.Append(context.Background(), AppendRequest{Batch: keyedBatch(t, batch.None, "old=1"), LeaderEpoch: -1, ExpectedOffset: -1}); err != nil {
		t.Fatal(err)
	}
	last := fillKeys(t, p, 200, 5)
	if _, err := p.ApplyRetention(Retention{MaxBytes: 1}); err != nil {
		t.Fatal(err)
	}
	if start, _, _ := p.Offsets(); start == 0 {
		t.Fatal("retention deleted nothing")
	}
	wantLast(t, p, "old", -1)
	if kr, err := p.Latest([]byte("old")); err != nil || kr.Found {
		t.Fatalf("Latest of a key retention removed: %+v %v", kr, err)
	}
	checkKeys(t, p, last)
	// A follower whose log is emptied forgets every key.
	if err := p.BecomeFollower(2, 2); err != nil {
		t.Fatal(err)
	}
	if err := p.Reset(500); err != nil {
		t.Fatal(err)
	}
	if st := p.KeyIndexStats(); st.Keys != 0 {
		t.Fatalf("%d keys after Reset", st.Keys)
	}
	if err := p.BecomeLeader(1, LeaderState{Epoch: 3, ISR: []int32{1}, MinISR: 1, Solo: true}); err != nil {
		t.Fatal(err)
	}
	if r, err := appendIf(p, keyedBatch(t, batch.None, "k1=new"), map[string]int64{"k1": -1}); err != nil || r.BaseOffset != 500 {
		t.Fatalf("after Reset: %+v %v", r, err)
	}
}
