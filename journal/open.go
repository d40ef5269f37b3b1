package journal

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	twal "github.com/tidwall/wal"
)

// checkpointFile is where the journal records how far the partitions'
// segments are durable: replay starts at ReplayFrom, and each partition's
// log is cut back to its durable offset before the records are applied.
const checkpointFile = "checkpoint"

type checkpoint struct {
	Version    int              `json:"version"`
	ReplayFrom uint64           `json:"replay_from"`
	Partitions map[string]int64 `json:"partitions"`
}

// Repair says what Open cut from a torn journal tail.
type Repair struct {
	Segment      string
	DroppedBytes int64
}

// Open opens the journal in dir, creating it if needed, cutting a torn
// tail (the last frame a crash left incomplete) and loading the
// checkpoint. It starts the group committer; call Replay next.
func Open(dir string, opts Options) (*Journal, *Repair, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	j := &Journal{dir: dir, opts: opts, log: opts.Logger.With("journal", dir),
		fill: newGroup(), parts: map[string]*Partition{}, durable: map[string]int64{},
		cpBlocked: map[string]error{}, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	j.space = sync.NewCond(&j.mu)
	tw, err := openTidwall(dir, opts)
	var rep *Repair
	if errors.Is(err, twal.ErrCorrupt) {
		if rep, err = cutTornTail(dir); err != nil {
			return nil, nil, err
		}
		j.log.Warn("journal: cut a torn tail", "segment", rep.Segment, "dropped_bytes", rep.DroppedBytes)
		tw, err = openTidwall(dir, opts)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("journal: open %s: %w", dir, err)
	}
	j.tw = tw
	last, err := tw.LastIndex()
	if err != nil {
		_ = tw.Close()
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	j.next = last + 1
	if err := checkFormat(dir, tw); err != nil {
		_ = tw.Close()
		return nil, nil, err
	}
	if err := j.followTail(); err != nil {
		_ = tw.Close()
		return nil, nil, err
	}
	cp, err := readCheckpoint(dir)
	if err != nil {
		_ = tw.Close()
		return nil, nil, err
	}
	j.durable = cp.Partitions
	j.done.Add(1)
	go j.commitLoop()
	return j, rep, nil
}

// formatFile names the journal's format: "2", one tidwall entry per group
// commit holding its records. A journal without it is of the first format
// (one entry per record) if it holds records; an empty one takes the
// current format.
const (
	formatFile    = "format"
	formatVersion = "2"
)

func checkFormat(dir string, tw *twal.Log) error {
	b, err := os.ReadFile(filepath.Join(dir, formatFile))
	switch {
	case err == nil && strings.TrimSpace(string(b)) == formatVersion:
		return nil
	case err == nil:
		return fmt.Errorf("journal: %s: format %q, this version reads format %s", dir, b, formatVersion)
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("journal: %w", err)
	}
	first, err1 := tw.FirstIndex()
	last, err2 := tw.LastIndex()
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if first <= last {
		return fmt.Errorf("journal: %s holds records %d to %d in the format of an earlier version (one entry per record), which this version does not replay: start the earlier version on this data directory once and stop it cleanly (its journal is then empty), then this one", dir, first, last)
	}
	return writeFileAtomic(filepath.Join(dir, formatFile), []byte(formatVersion+"\n"))
}

// followTail reads tidwall's tail segment file and size from the
// directory (at open, and after tidwall rewrote its files). twMu held or
// the journal not started.
func (j *Journal) followTail() error {
	path, size, err := lastSegment(j.dir)
	if err != nil {
		return err
	}
	j.tail = tailFile{path: path, size: size}
	j.tailBytes.Store(size)
	return nil
}

func openTidwall(dir string, opts Options) (*twal.Log, error) {
	return twal.Open(dir, &twal.Options{
		NoSync:           true, // Sync is the group commit's
		SegmentSize:      opts.SegmentBytes,
		LogFormat:        twal.Binary,
		SegmentCacheSize: 1,
		NoCopy:           true,
		AllowEmpty:       true,
	})
}

func readCheckpoint(dir string) (checkpoint, error) {
	cp := checkpoint{Version: 1, Partitions: map[string]int64{}}
	b, err := os.ReadFile(filepath.Join(dir, checkpointFile))
	if errors.Is(err, fs.ErrNotExist) {
		return cp, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &cp)
	}
	if err == nil && (cp.Version != 1 || cp.Partitions == nil) {
		err = fmt.Errorf("version %d", cp.Version)
	}
	if err != nil {
		// Written atomically: a bad one is damage, and guessing where to
		// replay from could resurrect cut records or skip acked ones.
		return cp, fmt.Errorf("journal: %s: unreadable checkpoint (restore it or remove the journal and the partitions' logs): %w", dir, err)
	}
	return cp, nil
}

func writeCheckpoint(dir string, cp checkpoint) error {
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, checkpointFile), b)
}

// cutTornTail truncates the last segment file after its last complete
// tidwall frame (uvarint length + data).
func cutTornTail(dir string) (*Repair, error) {
	path, _, err := lastSegment(dir)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	pos := 0
	for pos < len(data) {
		size, n := binary.Uvarint(data[pos:])
		if n <= 0 || size > uint64(len(data)-pos-n) {
			break
		}
		pos += n + int(size)
	}
	if pos == len(data) {
		return nil, fmt.Errorf("journal: %s: tidwall reports damage that is not a torn tail", dir)
	}
	if err := os.Truncate(path, int64(pos)); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if err := syncFile(path); err != nil {
		return nil, err
	}
	return &Repair{Segment: path, DroppedBytes: int64(len(data) - pos)}, nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("journal: fsync %s: %w", path, err)
	}
	return nil
}

// writeFileAtomic: temp file, fsync, rename, directory fsync.
func writeFileAtomic(name string, data []byte) error {
	tmp := name + ".tmp"
	err := os.WriteFile(tmp, data, 0o640)
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err == nil {
		err = syncFile(filepath.Dir(name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("journal: write %s: %w", name, err)
	}
	return nil
}

// segmentName is tidwall's name for the segment file whose first entry is
// index.
func segmentName(index uint64) string { return fmt.Sprintf("%020d", index) }

// segmentFiles lists the journal's tidwall segment files, oldest first
// (their names sort as their first indexes).
func segmentFiles(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var segs []string
	for _, de := range des {
		if n := de.Name(); len(n) == 20 && !de.IsDir() {
			if _, err := strconv.ParseUint(n, 10, 64); err == nil {
				segs = append(segs, filepath.Join(dir, n))
			}
		}
	}
	slices.Sort(segs)
	return segs, nil
}

// lastSegment returns the path and size of the journal's newest tidwall
// segment file.
func lastSegment(dir string) (path string, size int64, err error) {
	segs, err := segmentFiles(dir)
	if err != nil {
		return "", 0, err
	}
	if len(segs) == 0 {
		return "", 0, fmt.Errorf("journal: %s: no segment file", dir)
	}
	path = segs[len(segs)-1]
	fi, err := os.Stat(path)
	if err != nil {
		return "", 0, fmt.Errorf("journal: %w", err)
	}
	return path, fi.Size(), nil
}
