package partition

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/skeinlog/skein/journal"
	"github.com/skeinlog/skein/segment"
)

// openJournalKind returns an OpenLog for a test: one journal for the test,
// one attached segment log per partition directory.
func openJournalKind(t *testing.T) func(string) (Log, error) {
	j, _, err := journal.Open(filepath.Join(t.TempDir(), "journal"), journal.Options{UnsafeNoFsync: true, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Replay(func(name string) (*segment.Log, error) { return nil, fmt.Errorf("nothing to replay: %s", name) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	return func(dir string) (Log, error) {
		return OpenJournalLog(j, dir, dir, segment.Options{SegmentBytes: 4096}, "")
	}
}
