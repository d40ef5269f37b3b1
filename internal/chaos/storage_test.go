package chaos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/skeinlog/skein/wal"
)

// writeLog writes a partition log of n entries (each 100-byte payload) under
// dataDir/topics/<topic>/0/wal with segments of segBytes, and returns its
// directory.
func writeLog(t *testing.T, dataDir, topic string, n, segBytes int) string {
	t.Helper()
	dir := filepath.Join(dataDir, "topics", topic, "0", "wal")
	l, err := wal.Open(dir, wal.Options{SegmentBytes: segBytes, UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		data := make([]byte, 100)
		for j := range data {
			data[j] = byte(i + j)
		}
		if err := l.Append(wal.Entry{BaseOffset: int64(i), LastOffset: int64(i), MaxTimestamp: int64(i), Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func reopen(t *testing.T, dir string) *wal.Log {
	t.Helper()
	l, err := wal.Open(dir, wal.Options{UnsafeNoFsync: true})
	if err != nil {
		t.Fatalf("open after the damage: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestTornTail(t *testing.T) {
	for _, seg := range []int{1 << 20, 1024} {
		t.Run(fmt.Sprint("segment=", seg), func(t *testing.T) {
			data := t.TempDir()
			dir := writeLog(t, data, "a", 40, seg)
			desc, err := TornTail(data, rand.New(rand.NewPCG(1, 2)))
			if err != nil {
				t.Fatal(err)
			}
			t.Log(desc)
			l := reopen(t, dir)
			if seg == 1024 {
				// 40 entries fill 5 segments exactly: the tail is empty and
				// the damage is in the sealed segment before it.
				if err := l.Verify(); !errors.Is(err, wal.ErrCorrupt) {
					t.Fatalf("verify after tearing a sealed segment: %v", err)
				}
				return
			}
			rep := l.Repair()
			if rep == nil || l.NextOffset() != 39 {
				t.Fatalf("torn tail: repair %+v, log ends at %d, want 39", rep, l.NextOffset())
			}
			if err := l.Verify(); err != nil {
				t.Fatalf("verify after repair: %v", err)
			}
		})
	}
}

func TestZeroAndGarbageTail(t *testing.T) {
	for name, fn := range map[string]func(string, *rand.Rand) (string, error){"zero": ZeroTail, "garbage": GarbageTail} {
		t.Run(name, func(t *testing.T) {
			data := t.TempDir()
			dir := writeLog(t, data, "a", 37, 1024)
			desc, err := fn(data, rand.New(rand.NewPCG(3, 4)))
			if err != nil {
				t.Fatal(err)
			}
			t.Log(desc)
			l := reopen(t, dir)
			rep := l.Repair()
			if rep == nil || rep.FirstDroppedOffset != -1 || l.NextOffset() != 37 {
				t.Fatalf("repair %+v, log ends at %d: want the appended bytes dropped and all 37 entries kept", rep, l.NextOffset())
			}
			if name == "zero" && rep.Reason != "zero-filled tail" {
				t.Fatalf("reason %q", rep.Reason)
			}
		})
	}
}

func TestBitFlip(t *testing.T) {
	for _, seg := range []int{1 << 20, 1024} {
		t.Run(fmt.Sprint("segment=", seg), func(t *testing.T) {
			data := t.TempDir()
			dir := writeLog(t, data, "a", 40, seg)
			desc, err := BitFlip(data, rand.New(rand.NewPCG(5, 6)))
			if err != nil {
				t.Fatal(err)
			}
			t.Log(desc)
			l := reopen(t, dir)
			if seg > 1024 {
				// The only segment is the tail: Open checks every entry of
				// it and cuts the log before the damaged one.
				if rep := l.Repair(); rep == nil || rep.Reason != "checksum mismatch" || rep.FirstDroppedOffset != l.NextOffset() || l.NextOffset() >= 20 {
					t.Fatalf("repair %+v, log ends at %d: want a cut at the flipped entry, in the first half", rep, l.NextOffset())
				}
				return
			}
			if l.NextOffset() != 40 || l.Repair() != nil {
				t.Fatalf("log ends at %d (repair %+v) after a flip in a sealed segment", l.NextOffset(), l.Repair())
			}
			var ce *wal.CorruptError
			if err := l.Verify(); !errors.As(err, &ce) || ce.Offset >= 39 {
				t.Fatalf("verify: %v; want damage found below the last entry", err)
			}
		})
	}
}

// Same seed, same damage: a run can be replayed.
func TestStorageFaultsDeterministic(t *testing.T) {
	for name, fn := range map[string]func(string, *rand.Rand) (string, error){"torn": TornTail, "zero": ZeroTail, "garbage": GarbageTail, "flip": BitFlip} {
		var got [2]string
		var files [2][]byte
		for i := range 2 {
			data := t.TempDir()
			for _, tp := range []string{"a", "b", "c"} {
				writeLog(t, data, tp, 30, 1024)
			}
			desc, err := fn(data, rand.New(rand.NewPCG(9, 9)))
			if err != nil {
				t.Fatal(err)
			}
			got[i] = filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(descPath(desc))))) + " " + desc[len(desc)-20:]
			segs, _ := PartitionLogs(data)
			for _, d := range segs {
				fs, _ := segmentFiles(d)
				for _, f := range fs {
					b, _ := os.ReadFile(f)
					files[i] = append(files[i], b...)
				}
			}
		}
		if got[0] != got[1] || string(files[0]) != string(files[1]) {
			t.Fatalf("%s: not deterministic: %q vs %q", name, got[0], got[1])
		}
	}
}

// descPath extracts the first absolute path of a description.
func descPath(desc string) string {
	for _, f := range splitFields(desc) {
		if filepath.IsAbs(f) {
			return f
		}
	}
	return ""
}

func splitFields(s string) []string {
	var out []string
	start := -1
	for i, c := range s + " " {
		if c == ' ' || c == ',' {
			if start >= 0 {
				out = append(out, s[start:i])
			}
			start = -1
		} else if start < 0 {
			start = i
		}
	}
	return out
}

func TestWipeDataDir(t *testing.T) {
	data := t.TempDir()
	writeLog(t, data, "a", 5, 1024)
	os.WriteFile(filepath.Join(data, "node.json"), []byte(`{"node_id":1}`), 0o644)
	if _, err := WipeDataDir(data); err != nil {
		t.Fatal(err)
	}
	if des, _ := os.ReadDir(data); len(des) != 0 {
		t.Fatalf("%d entries left", len(des))
	}
	if _, err := TornTail(data, rand.New(rand.NewPCG(1, 1))); !errors.Is(err, ErrNoTarget) {
		t.Fatalf("torn tail of an empty dir: %v", err)
	}
}
