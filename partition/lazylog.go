package partition

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/skeinlog/skein/wal"
)

// logCheckpoint is what a clean close records about a partition's log, so
// the next start can answer offsets and size without opening it. tidwall
// reads a log's whole tail segment into memory on open; for a broker with
// many partitions that is most of the start-up time and memory, so logs are
// opened on first use instead.
//
// Files stamps every file of the log's directory after the log was closed
// (its last write and fsync done). The next start stats the directory and
// trusts the checkpoint only if every file is still there, unchanged, and
// no other appeared (trustCheckpoint); otherwise the log is opened as after
// a crash (verified in full, cut at the first damaged entry). A trusted log
// is never read ahead of use: damage that leaves size and times alone (bit
// rot) is found by the per-entry CRC when the entry is read.
type logCheckpoint struct {
	Version     int   `json:"version"`
	NextOffset  int64 `json:"next_offset"`
	StartOffset int64 `json:"start_offset"`
	Size        int64 `json:"size"`
	// Retention can tell from these whether opening the log could free
	// anything: the sealed segments and the oldest one's newest record.
	SealedSegments     int         `json:"sealed_segments"`
	OldestMaxTimestamp int64       `json:"oldest_max_timestamp"`
	Files              []fileStamp `json:"files"`
}

const (
	checkpointFileName = "log.checkpoint"
	// checkpointVersion 2 added Files. A version 1 checkpoint is not
	// trusted (the log is opened as after a crash); only its offsets are
	// used, to tell whether the log lost records.
	checkpointVersion = 2
)

// errDamagedLog marks the error of a lazily opened log found damaged or
// changed: the partition reports it through OnDamage, so a write failing
// with it is neither retried nor fatal.
var errDamagedLog = errors.New("log changed since the clean shutdown")

// readCheckpoint loads and removes the checkpoint: it describes the log
// only until the log changes, and a crash after this start must not find
// it. It returns nil when there is none or it is unreadable, and the time
// the checkpoint was written (its file's modification time).
func readCheckpoint(dir string) (*logCheckpoint, time.Time) {
	path := filepath.Join(dir, checkpointFileName)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, time.Time{}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, time.Time{}
	}
	if err := os.Remove(path); err != nil {
		return nil, time.Time{}
	}
	if syncDir(dir) != nil {
		return nil, time.Time{}
	}
	var c logCheckpoint
	if json.Unmarshal(data, &c) != nil || c.Version != 1 && c.Version != checkpointVersion || c.NextOffset < c.StartOffset || c.StartOffset < 0 || c.Size < 0 {
		return nil, time.Time{}
	}
	return &c, fi.ModTime()
}

// trustCheckpoint says why the log in walDir cannot be taken as cp
// describes it (nil: it can): a file of it added, removed, resized,
// rewritten or replaced since the clean close that wrote cp at written.
func trustCheckpoint(cp *logCheckpoint, walDir string, written time.Time) error {
	if cp.Version != checkpointVersion {
		return fmt.Errorf("a version %d checkpoint has no file stamps", cp.Version)
	}
	got, err := stampDir(walDir)
	if err != nil {
		return err
	}
	return stampsChanged(cp.Files, got, written)
}

// checkpointOf is what lg's checkpoint says, without the file stamps
// (taken once lg is closed).
func checkpointOf(lg Log) logCheckpoint {
	c := logCheckpoint{Version: checkpointVersion, NextOffset: lg.NextOffset(), StartOffset: lg.StartOffset(), Size: lg.Size(), OldestMaxTimestamp: math.MaxInt64}
	if l, ok := lg.(*lazyLog); ok && !l.isOpen() {
		c.SealedSegments, c.OldestMaxTimestamp = l.cp.SealedSegments, l.cp.OldestMaxTimestamp
	} else {
		segs := lg.Segments()
		for _, s := range segs {
			if s.Sealed {
				c.SealedSegments++
			}
		}
		if len(segs) > 0 && segs[0].Sealed {
			c.OldestMaxTimestamp = segs[0].MaxTimestamp
		}
	}
	return c
}

// writeCheckpoint stamps the files of the closed log in walDir into c and
// writes it (temp file, fsync, rename). A file last written in the same
// tick of the file system's clock as the checkpoint would not be trusted
// by the next start (see stampsChanged), so it waits for the clock to
// move, a few times, before rewriting the checkpoint; past that (a clock of
// coarse ticks) the next start verifies the log in full.
func writeCheckpoint(dir, walDir string, c logCheckpoint) error {
	var err error
	if c.Files, err = stampDir(walDir); err != nil {
		return err
	}
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	for wait := time.Millisecond; ; wait *= 2 {
		if err := writeFileAtomic(dir, checkpointFileName, data); err != nil {
			return err
		}
		fi, err := os.Stat(filepath.Join(dir, checkpointFileName))
		if err != nil {
			return err
		}
		if stampsChanged(c.Files, c.Files, fi.ModTime()) == nil || wait > 16*time.Millisecond {
			return nil
		}
		time.Sleep(wait)
	}
}

// lazyLog is a Log that opens the real one on first use, answering
// NextOffset, StartOffset and Size from a checkpoint until then. It is used
// only for a log whose files are as the clean close left them
// (trustCheckpoint), so the first open skips the full verification that
// an unclean open runs; it checks only what it has at hand: tidwall's tail
// repair (it read the tail anyway) and the offsets against the checkpoint.
// A log that fails them is never used: every call fails with ErrCorrupt,
// and onDamage (called once, without locks held) tells the partition,
// whose owner reopens it the unclean way (Open without a checkpoint),
// which cuts the log at the damage.
type lazyLog struct {
	cp       logCheckpoint
	open     func() (Log, error)
	onDamage func(error)

	// openMu serializes opening, and is held across it. It is taken
	// before mu, never after.
	openMu sync.Mutex

	mu     sync.Mutex // guards the fields below; never held across an open
	log    Log
	err    error // the damage found by the first open
	closed bool
}

func newLazyLog(cp *logCheckpoint, open func() (Log, error), onDamage func(error)) *lazyLog {
	return &lazyLog{cp: *cp, open: open, onDamage: onDamage}
}

func (l *lazyLog) isOpen() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.log != nil
}

// get opens the log if needed and checks it matches the checkpoint.
func (l *lazyLog) get() (Log, error) {
	lg, err, first := l.getLocked()
	if first && l.onDamage != nil {
		l.onDamage(err)
	}
	return lg, err
}

// getLocked is get under l.openMu; first says the damage was found just now.
func (l *lazyLog) getLocked() (lg Log, err error, first bool) {
	if lg, err, done := l.state(); done {
		return lg, err, false
	}
	l.openMu.Lock()
	defer l.openMu.Unlock()
	if lg, err, done := l.state(); done {
		return lg, err, false
	}
	lg, err = l.open()
	if err != nil {
		return nil, err, false
	}
	err = l.check(lg)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		lg.Close()
		l.err = err
		return nil, err, true
	}
	l.log = lg
	return lg, nil, false
}

// state is the outcome of an earlier open: the log, the damage found, or
// ErrClosed (done); or nothing yet.
func (l *lazyLog) state() (lg Log, err error, done bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return nil, wal.ErrClosed, true
	case l.err != nil:
		return nil, l.err, true
	case l.log != nil:
		return l.log, nil, true
	}
	return nil, nil, false
}

// check runs the first open's checks on lg: nil, or the damage as an
// ErrCorrupt error.
func (l *lazyLog) check(lg Log) error {
	if r, ok := lg.(interface{ Repair() *wal.RepairReport }); ok {
		if rep := r.Repair(); rep != nil {
			return fmt.Errorf("%w: %w: found when the log was first opened after a clean shutdown: tail repaired: %s in %s, %d entries and %d bytes dropped (first dropped offset %d)",
				wal.ErrCorrupt, errDamagedLog, rep.Reason, rep.Segment, rep.DroppedEntries, rep.DroppedBytes, rep.FirstDroppedOffset)
		}
	}
	if lg.NextOffset() != l.cp.NextOffset || lg.StartOffset() != l.cp.StartOffset {
		return fmt.Errorf("%w: %w: the log holds [%d, %d) but its clean-shutdown checkpoint said [%d, %d)",
			wal.ErrCorrupt, errDamagedLog, lg.StartOffset(), lg.NextOffset(), l.cp.StartOffset, l.cp.NextOffset)
	}
	return nil
}

// damage is what the first open found wrong, or nil.
func (l *lazyLog) damage() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *lazyLog) NextOffset() int64 {
	if lg := l.opened(); lg != nil {
		return lg.NextOffset()
	}
	return l.cp.NextOffset
}

func (l *lazyLog) StartOffset() int64 {
	if lg := l.opened(); lg != nil {
		return lg.StartOffset()
	}
	return l.cp.StartOffset
}

func (l *lazyLog) Size() int64 {
	if lg := l.opened(); lg != nil {
		return lg.Size()
	}
	return l.cp.Size
}

// opened is the real log if it is open, else nil.
func (l *lazyLog) opened() Log {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.log
}

func (l *lazyLog) Append(entries ...wal.Entry) error {
	lg, err := l.get()
	if err != nil {
		return err
	}
	return lg.Append(entries...)
}

func (l *lazyLog) Write(entries ...wal.Entry) error {
	lg, err := l.get()
	if err != nil {
		return err
	}
	return lg.Write(entries...)
}

func (l *lazyLog) Sync() error {
	lg, err := l.get()
	if err != nil {
		return err
	}
	return lg.Sync()
}

func (l *lazyLog) ReadEntries(offset int64, maxBytes int, limit int64, fn func(wal.Entry) error) (int64, error) {
	if offset >= min(limit, l.NextOffset()) && offset >= l.StartOffset() && l.opened() == nil {
		return offset, nil // nothing to read: no need to open
	}
	lg, err := l.get()
	if err != nil {
		return offset, err
	}
	return lg.ReadEntries(offset, maxBytes, limit, fn)
}

func (l *lazyLog) Read(dst []byte, offset int64, maxBytes int, limit int64) ([]byte, int64, error) {
	if offset >= min(limit, l.NextOffset()) && offset >= l.StartOffset() && l.opened() == nil {
		return dst, offset, nil
	}
	lg, err := l.get()
	if err != nil {
		return dst, offset, err
	}
	return lg.Read(dst, offset, maxBytes, limit)
}

func (l *lazyLog) OffsetForTimestamp(ts int64) (int64, error) {
	lg, err := l.get()
	if err != nil {
		return 0, err
	}
	return lg.OffsetForTimestamp(ts)
}

func (l *lazyLog) TruncateTo(offset int64) (int64, error) {
	if offset >= l.NextOffset() && l.opened() == nil {
		return l.NextOffset(), nil // nothing above offset to remove
	}
	lg, err := l.get()
	if err != nil {
		return 0, err
	}
	return lg.TruncateTo(offset)
}

func (l *lazyLog) Reset(next int64) error {
	lg, err := l.get()
	if err != nil {
		return err
	}
	return lg.Reset(next)
}

func (l *lazyLog) Segments() []wal.SegmentInfo {
	lg, err := l.get()
	if err != nil {
		return nil
	}
	return lg.Segments()
}

func (l *lazyLog) DeleteSegmentsBefore(offset int64) (int64, error) {
	lg, err := l.get()
	if err != nil {
		return 0, err
	}
	return lg.DeleteSegmentsBefore(offset)
}

func (l *lazyLog) Close() error {
	l.openMu.Lock() // an open or verify in progress finishes first
	defer l.openMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.log == nil {
		return nil
	}
	return l.log.Close()
}

// mayExpire reports whether retention under r could delete anything from an
// unopened log, judging by its checkpoint. An open log answers exactly.
func (l *lazyLog) mayExpire(r Retention, nowMs int64) bool {
	if l.opened() != nil || l.cp.SealedSegments > 0 && r.MaxBytes >= 0 && l.cp.Size > r.MaxBytes {
		return true
	}
	return l.cp.SealedSegments > 0 && r.MaxAge > 0 && l.cp.OldestMaxTimestamp < nowMs-r.MaxAge.Milliseconds()
}

var _ Log = (*lazyLog)(nil)
