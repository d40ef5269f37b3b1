package broker

// This file holds the storage engine: which one the data directory uses,
// and for the journal engine the journals, their replay at start, the
// partitions' logs attached to them and the records of deleted partitions.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/skeinlog/skein/internal/fsutil"
	"github.com/skeinlog/skein/journal"
	"github.com/skeinlog/skein/partition"
	"github.com/skeinlog/skein/segment"
	"github.com/skeinlog/skein/wal"
)

// The storage engines (Config.StorageEngine).
const (
	EngineWAL     = "wal"
	EngineJournal = "journal"
)

const (
	engineFile = "storage-engine" // in the data directory: the engine it was created with
	journalDir = "journal"
	walSubdir  = "wal" // a partition's log directory (partition's walDirName)
)

// engine is the journal engine's state; nil fields for the wal engine.
type engine struct {
	journals *journal.Set
	sopts    segment.Options

	mu sync.Mutex
	// replayDamage: partitions whose records the start's replay had to
	// drop (by log name), until their replica opens and reports it.
	replayDamage map[string]string
}

// decideEngine says which engine a data directory runs: the one recorded
// in it, or for a directory without a record the configured one if it
// holds no partition yet, else the wal engine (the directory predates the
// record). A configured engine other than the directory's is refused. Pure.
func decideEngine(recorded, configured string, hasPartitions bool) (string, error) {
	switch {
	case recorded == "" && hasPartitions:
		recorded = EngineWAL
	case recorded == "":
		return configured, nil
	}
	if recorded != configured {
		return "", fmt.Errorf("the data directory holds partitions written by the %q storage engine: start with --storage-engine %s, or give the broker an empty --data-dir for the %q engine (its partitions are then copied from their other replicas)",
			recorded, recorded, configured)
	}
	return recorded, nil
}

// openStorage settles the data directory's engine and, for the journal
// engine, opens the journals and replays them into the partitions'
// segment files, before any partition opens.
func (b *Broker) openStorage() error {
	dir := b.cfg.DataDir
	data, err := os.ReadFile(filepath.Join(dir, engineFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	eng, err := decideEngine(strings.TrimSpace(string(data)), b.cfg.StorageEngine, hasPartitionDirs(dir))
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	if len(data) == 0 {
		if err := fsutil.WriteFileAtomic(filepath.Join(dir, engineFile), []byte(eng+"\n")); err != nil {
			return err
		}
	}
	if eng != EngineJournal {
		return nil
	}
	e := &engine{sopts: segment.Options{SegmentBytes: int64(b.cfg.SegmentBytes), Logger: b.cfg.Logger}, replayDamage: map[string]string{}}
	set, reps, err := journal.OpenSet(filepath.Join(dir, journalDir), b.cfg.Journals, journal.Options{
		SegmentBytes:       b.cfg.JournalSegmentBytes,
		CheckpointInterval: b.cfg.JournalCheckpointInterval,
		UnsafeNoFsync:      b.cfg.UnsafeNoFsync,
		Logger:             b.cfg.Logger,
	})
	if err != nil {
		return err
	}
	for _, r := range reps {
		b.log.Warn("journal: cut a torn tail", "segment", r.Segment, "dropped_bytes", r.DroppedBytes)
	}
	e.journals = set
	b.engine = e
	rep, err := set.Replay(func(name string) (*segment.Log, error) {
		pdir := filepath.Dir(filepath.Join(dir, name))
		if _, err := os.Stat(pdir); err != nil {
			return nil, fmt.Errorf("partition directory %s: %w", pdir, err) // deleted
		}
		return segment.Open(filepath.Join(dir, name), e.sopts)
	})
	if err != nil {
		return err
	}
	for name, why := range rep.Damaged {
		if _, err := os.Stat(filepath.Dir(filepath.Join(dir, name))); err != nil {
			continue // the partition's data is gone: nothing to be damaged
		}
		e.replayDamage[name] = why
	}
	if rep.Records > 0 || len(rep.Damaged) > 0 {
		b.log.Warn("journal replayed", "records", rep.Records, "partitions", rep.Partitions,
			"damaged", len(e.replayDamage), "dropped", len(rep.Dropped), "cut", rep.Cut)
	}
	return nil
}

// hasPartitionDirs reports whether the data directory holds a partition's
// log directory.
func hasPartitionDirs(dir string) bool {
	logs, _ := filepath.Glob(filepath.Join(dir, topicsDir, "*", "*", walSubdir))
	return len(logs) > 0
}

// logName is the journal's name for the log in a partition directory: its
// path under the data directory, which does not change across restarts.
func (b *Broker) logName(logDir string) string {
	rel, err := filepath.Rel(b.cfg.DataDir, logDir)
	if err != nil {
		return logDir
	}
	return filepath.ToSlash(rel)
}

// logOpener is the partition's OpenLog for this broker's engine (nil: the
// wal engine, partition's default).
func (b *Broker) logOpener() func(dir string) (partition.Log, error) {
	e := b.engine
	if e == nil {
		return nil
	}
	return func(dir string) (partition.Log, error) {
		name := b.logName(dir)
		e.mu.Lock()
		why := e.replayDamage[name]
		delete(e.replayDamage, name)
		e.mu.Unlock()
		return partition.OpenJournalLog(e.journals, name, dir, e.sopts, why)
	}
}

// forgetLogs records in the journals that the partitions under dir (a
// topic directory, or one partition's) are deleted (their replicas are
// closed), so that a replay after a crash neither writes their records
// into a directory being removed nor into a topic or replica created again
// under the name.
func (b *Broker) forgetLogs(dir string) error {
	if b.engine == nil {
		return nil
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "*", walSubdir))
	if own := filepath.Join(dir, walSubdir); dirExists(own) {
		logs = append(logs, own)
	}
	var errs []error
	for _, l := range logs {
		errs = append(errs, b.engine.journals.Forget(b.logName(l)))
	}
	return errors.Join(errs...)
}

func dirExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// closeStorage closes the journals (after the partitions: their last
// writes are in the journals' final checkpoint).
func (b *Broker) closeStorage() error {
	if b.engine == nil {
		return nil
	}
	return b.engine.journals.Close()
}

// walOptions are the wal engine's log options (the journal engine uses
// their segment size for producer snapshots).
func (b *Broker) walOptions() wal.Options {
	return wal.Options{SegmentBytes: b.cfg.SegmentBytes, UnsafeNoFsync: b.cfg.UnsafeNoFsync}
}
