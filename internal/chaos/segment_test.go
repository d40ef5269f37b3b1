package chaos

import (
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skeinlog/skein/segment"
)

// writeSegLog writes a journal-engine partition log (segment files) of n
// entries under dataDir/topics/<topic>/0/wal and returns its directory.
func writeSegLog(t *testing.T, dataDir, topic string, n int, segBytes int64) string {
	t.Helper()
	dir := filepath.Join(dataDir, "topics", topic, "0", "wal")
	l, err := segment.Open(dir, segment.Options{SegmentBytes: segBytes})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		data := make([]byte, 100)
		for j := range data {
			data[j] = byte(i + j)
		}
		if err := l.Write(segment.Entry{BaseOffset: int64(i), LastOffset: int64(i), MaxTimestamp: int64(i), Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Each storage fault damages the journal engine's segment files the way
// it damages tidwall's, and the segment log finds it: the tail faults are
// repaired on open (a report naming what was cut), a bit flip below the
// tail fails Verify with ErrCorrupt.
func TestStorageFaultsOnSegmentFiles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  func(string, *rand.Rand) (string, error)
		reason string // the repair's reason; "" for Verify's damage
	}{
		{"torn", TornTail, "torn frame"},
		{"zero", ZeroTail, "zero-filled tail"},
		{"garbage", GarbageTail, ""},
		{"bitflip", BitFlip, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			dir := writeSegLog(t, data, "a", 60, 2048)
			desc, err := tc.fault(data, rand.New(rand.NewPCG(3, 4)))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(desc, ".seg") {
				t.Fatalf("the fault did not name a segment file: %s", desc)
			}
			t.Log(desc)
			l, err := segment.Open(dir, segment.Options{SegmentBytes: 2048})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			rep := l.Repair()
			switch tc.name {
			case "bitflip":
				if rep != nil {
					t.Fatalf("a flip below the tail was repaired as a tail: %+v", rep)
				}
				if err := l.Verify(); !errors.Is(err, segment.ErrCorrupt) {
					t.Fatalf("Verify after a bit flip: %v", err)
				}
			default:
				if rep == nil || tc.reason != "" && rep.Reason != tc.reason {
					t.Fatalf("repair after %s: %+v", tc.name, rep)
				}
				if tc.name == "torn" && l.NextOffset() != 59 || tc.name != "torn" && l.NextOffset() != 60 {
					t.Fatalf("after %s the log ends at %d", tc.name, l.NextOffset())
				}
				if err := l.Verify(); err != nil {
					t.Fatalf("Verify after the repair: %v", err)
				}
			}
		})
	}
}
