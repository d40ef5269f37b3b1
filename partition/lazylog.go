package partition

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"

	"github.com/skeinlog/skein/wal"
)

// logCheckpoint is what a clean close records about a partition's log, so
// the next start can answer offsets and size without opening it. tidwall
// reads a log's whole tail segment into memory on open; for a broker with
// many partitions that is most of the start-up time and memory, so logs are
// opened on first use instead.
type logCheckpoint struct {
	Version     int   `json:"version"`
	NextOffset  int64 `json:"next_offset"`
	StartOffset int64 `json:"start_offset"`
	Size        int64 `json:"size"`
	// Retention can tell from these whether opening the log could free
	// anything: the sealed segments and the oldest one's newest record.
	SealedSegments     int   `json:"sealed_segments"`
	OldestMaxTimestamp int64 `json:"oldest_max_timestamp"`
}

const checkpointFileName = "log.checkpoint"

// errDamagedLog marks the error of a lazily opened log found damaged or
// changed: the partition reports it through OnDamage, so a write failing
// with it is neither retried nor fatal.
var errDamagedLog = errors.New("log changed since the clean shutdown")

// readCheckpoint loads and removes the checkpoint: it describes the log
// only until the log changes, and a crash after this start must not find
// it. It returns nil when there is none or it is unreadable.
func readCheckpoint(dir string) *logCheckpoint {
	path := filepath.Join(dir, checkpointFileName)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	if err := os.Remove(path); err != nil {
		return nil
	}
	if syncDir(dir) != nil {
		return nil
	}
	var c logCheckpoint
	if json.Unmarshal(data, &c) != nil || c.Version != 1 || c.NextOffset < c.StartOffset || c.StartOffset < 0 || c.Size < 0 {
		return nil
	}
	return &c
}

func writeCheckpoint(dir string, lg Log) error {
	c := logCheckpoint{Version: 1, NextOffset: lg.NextOffset(), StartOffset: lg.StartOffset(), Size: lg.Size(), OldestMaxTimestamp: math.MaxInt64}
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
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return writeFileAtomic(dir, checkpointFileName, data)
}

// lazyLog is a Log that opens the real one on first use, answering
// NextOffset, StartOffset and Size from a checkpoint until then.
//
// A clean shutdown's checkpoint lets the start skip the open-time repair and
// verification, so the first open does them: it runs checkLog (tail repair
// report, Verify of every segment) and compares the offsets with the
// checkpoint. A log changed or damaged since the shutdown is never used:
// every call fails with ErrCorrupt, and onDamage (called once, without
// locks held) tells the partition, whose owner reopens it the unclean way
// (Open without a checkpoint), which cuts the log at the damage.
//
// verify does the same checks ahead of use and closes the log again (an
// open log holds its tail segment in memory): the partition runs it in the
// background as soon as the replica has a role, so a follower does not
// report the checkpoint's offsets to its leader before they are known true.
type lazyLog struct {
	cp       logCheckpoint
	open     func() (Log, error)
	onDamage func(error)
	checked  chan struct{} // closed once the log is known intact or damaged, or closed

	// openMu serializes opening and verifying, and is held across them, so
	// that the log's files are read by one of them at a time. It is taken
	// before mu, never after.
	openMu sync.Mutex

	mu       sync.Mutex // guards the fields below; never held across an open
	log      Log
	err      error // the damage found by the first open or by verify
	verified bool  // verify found the log intact: the first open skips the checks
	closed   bool
}

func newLazyLog(cp *logCheckpoint, open func() (Log, error), onDamage func(error)) *lazyLog {
	return &lazyLog{cp: *cp, open: open, onDamage: onDamage, checked: make(chan struct{})}
}

func (l *lazyLog) isOpen() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.log != nil
}

// get opens the log if needed and checks it is undamaged and matches the
// checkpoint.
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
	l.mu.Lock()
	verified := l.verified
	l.mu.Unlock()
	if !verified {
		err = l.check(lg)
	} else if lg.NextOffset() != l.cp.NextOffset || lg.StartOffset() != l.cp.StartOffset {
		// Verified, then changed behind our back: checked again in full.
		err = l.check(lg)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		lg.Close()
		l.err = err
		l.markChecked()
		return nil, err, true
	}
	l.log = lg
	l.markChecked()
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
	if damage := checkLog(lg); damage != nil {
		return fmt.Errorf("%w: %w: found when the log was first opened after a clean shutdown: %v", wal.ErrCorrupt, errDamagedLog, damage)
	}
	if lg.NextOffset() != l.cp.NextOffset || lg.StartOffset() != l.cp.StartOffset {
		return fmt.Errorf("%w: %w: the log holds [%d, %d) but its clean-shutdown checkpoint said [%d, %d)",
			wal.ErrCorrupt, errDamagedLog, lg.StartOffset(), lg.NextOffset(), l.cp.StartOffset, l.cp.NextOffset)
	}
	return nil
}

// markChecked closes l.checked once. l.mu must be held.
func (l *lazyLog) markChecked() {
	select {
	case <-l.checked:
	default:
		close(l.checked)
	}
}

// verify runs the first open's checks now, unless the log is open or
// checked already, and closes the log again. It returns the damage found
// (reported through onDamage as by get), wal.ErrClosed, or a failure to
// open the log (nothing known yet: try again later).
func (l *lazyLog) verify() error {
	err, first := l.verifyLocked()
	if first && l.onDamage != nil {
		l.onDamage(err)
	}
	return err
}

func (l *lazyLog) verifyLocked() (err error, first bool) {
	l.openMu.Lock()
	defer l.openMu.Unlock()
	l.mu.Lock()
	closed, damage, done := l.closed, l.err, l.log != nil || l.verified
	l.mu.Unlock()
	switch {
	case closed:
		return wal.ErrClosed, false
	case damage != nil:
		return damage, false
	case done:
		return nil, false
	}
	lg, err := l.open()
	if err != nil {
		return err, false
	}
	err = l.check(lg)
	if cerr := lg.Close(); err == nil && cerr != nil {
		return cerr, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.err = err
	} else {
		l.verified = true
	}
	l.markChecked()
	return err, err != nil
}

// waitChecked waits until the log is known intact (nil) or damaged (the
// damage), or is closed (wal.ErrClosed), or ctx ends.
func (l *lazyLog) waitChecked(ctx context.Context) error {
	select {
	case <-l.checked:
	case <-ctx.Done():
		return ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.err != nil:
		return l.err
	case l.log != nil || l.verified:
		return nil
	}
	return wal.ErrClosed
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
	l.markChecked()
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
