package broker_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// TestJournalBrokerSurvivesFullDisk: a journal-engine broker whose disk
// fills up keeps running: produces fail while the disk is full, the broker
// takes them again once space returns, and after a restart every
// acknowledged record is there once, at its offset. A full disk used to
// break the journal and stop the broker. The disk is a small tmpfs (root
// only, skipped otherwise): the whole data directory, or only the
// journals' directory, so that the journal, not a partition's segments, is
// refused first.
func TestJournalBrokerSurvivesFullDisk(t *testing.T) {
	for _, mount := range []string{"", "journal"} {
		t.Run("tmpfs="+filepath.Join("data", mount), func(t *testing.T) { testJournalFullDisk(t, mount) })
	}
}

func testJournalFullDisk(t *testing.T, mount string) {
	dir := filepath.Join(t.TempDir(), "data")
	disk := filepath.Join(dir, mount)
	if err := os.MkdirAll(disk, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, fmt.Sprintf("size=%d", 96<<20)); err != nil {
		t.Skipf("needs a tmpfs (root): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(disk, syscall.MNT_DETACH) })
	b := brokertest.Start(t, brokertest.WithEngine(broker.EngineJournal), brokertest.WithDataDir(dir),
		brokertest.WithConfig(func(c *broker.Config) {
			c.JournalSegmentBytes = 1 << 20
			c.SegmentBytes = 1 << 20
		}))
	c := dial(t, b.Addr())
	createTopic(t, c, "full", 2)
	// Fill the disk, leaving room for a few MiB of records.
	filler := filepath.Join(disk, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	must(t, f.Truncate(mustSize(t, f)-4<<20))
	must(t, f.Close())

	value := strings.Repeat("x", 8<<10)
	acked := map[int32][]string{}
	var refused int
	for i := 0; i < 4000 && refused < 20; i++ {
		part := int32(i % 2)
		v := fmt.Sprintf("%06d%s", i, value)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "full", Partition: part, LeaderEpoch: -1, Batch: mkBatch(t, v)})
		cancel()
		switch {
		case err != nil:
			refused++
		case r.BaseOffset != int64(len(acked[part])):
			t.Fatalf("record %d acknowledged at offset %d of partition %d, want %d", i, r.BaseOffset, part, len(acked[part]))
		default:
			acked[part] = append(acked[part], v)
		}
	}
	if refused == 0 {
		t.Fatal("the disk never filled up")
	}
	t.Logf("%d + %d records acknowledged before the disk filled up", len(acked[0]), len(acked[1]))
	must(t, os.Remove(filler))
	for i := range 20 {
		part := int32(i % 2)
		v := fmt.Sprintf("after-%d", i)
		var off int64
		for try := 0; ; try++ { // the partition cuts its log back before its next write
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			r, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "full", Partition: part, LeaderEpoch: -1, Batch: mkBatch(t, v)})
			cancel()
			if err == nil {
				off = r.BaseOffset
				break
			}
			if try == 20 {
				t.Fatalf("produce after space returned: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if off != int64(len(acked[part])) {
			t.Fatalf("record after the full disk at offset %d of partition %d, want %d", off, part, len(acked[part]))
		}
		acked[part] = append(acked[part], v)
	}
	b.Restart()
	c = dial(t, b.Addr())
	for part, want := range acked {
		recs := fetchAll(t, c, "full", part, 0)
		if len(recs) != len(want) {
			t.Fatalf("partition %d: %d records after a restart, want %d", part, len(recs), len(want))
		}
		for i, r := range recs {
			if r.Offset != int64(i) || string(r.Value) != want[i] {
				t.Fatalf("partition %d offset %d: %.20q, want %.20q", part, r.Offset, r.Value, want[i])
			}
		}
	}
}

func mustSize(t *testing.T, f *os.File) int64 {
	t.Helper()
	fi, err := f.Stat()
	must(t, err)
	return fi.Size()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
