package segment

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
)

// Entry is one log entry: an opaque payload (in practice a record batch)
// and the offsets it covers.
type Entry struct {
	BaseOffset   int64
	LastOffset   int64 // >= BaseOffset
	MaxTimestamp int64 // unix ms, largest record timestamp in the payload
	Data         []byte
}

// SegmentInfo describes one segment file, for retention decisions.
type SegmentInfo struct {
	Path         string
	BaseOffset   int64
	NextOffset   int64
	MaxTimestamp int64 // math.MinInt64 when the segment is empty
	Bytes        int64
	Sealed       bool // false for the tail
}

// RepairReport says what Open cut from a damaged tail segment.
type RepairReport struct {
	Segment      string
	DroppedBytes int64
	// FirstDroppedOffset is where the kept log now ends: the offset the
	// first dropped frame should have held.
	FirstDroppedOffset int64
	Reason             string // "torn frame", "checksum mismatch", "zero-filled tail", ...
}

// Options configures a Log. Zero fields take the defaults.
type Options struct {
	// SegmentBytes is the target segment file size: an entry that would
	// take the tail past it starts a new segment (unless the tail is
	// empty). It costs no memory. Default 64 MiB.
	SegmentBytes int64
	// IndexIntervalBytes is the spacing of the sparse index: one point
	// (24 bytes of memory) per this many bytes of log. A read scans at most
	// this many bytes past the point it starts from. Default 4096.
	IndexIntervalBytes int64
	// Logger receives repair reports (WARN) and damaged segments (ERROR).
	Logger *slog.Logger
}

const (
	DefaultSegmentBytes       = 64 << 20
	DefaultIndexIntervalBytes = 4096

	segSuffix = ".seg"
	idxSuffix = ".idx"
	// keepBufferBytes is the largest write buffer a Log keeps between
	// Writes; a larger one is dropped when Write returns.
	keepBufferBytes = 64 << 10
)

func (o Options) withDefaults() (Options, error) {
	if o.SegmentBytes < 0 || o.IndexIntervalBytes < 0 {
		return o, fmt.Errorf("segment: negative SegmentBytes %d or IndexIntervalBytes %d", o.SegmentBytes, o.IndexIntervalBytes)
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.IndexIntervalBytes == 0 {
		o.IndexIntervalBytes = DefaultIndexIntervalBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Log is one partition's segment files, their index, and the read and
// write paths of the package doc. Create it with Open.
type Log struct {
	dir  string
	opts Options
	log  *slog.Logger

	// fmu serializes Flush, the truncations, DeleteSegmentsBefore and
	// Close; it is taken before wmu.
	fmu sync.Mutex
	// wmu serializes writers and guards the fields below it.
	wmu       sync.Mutex
	wf        *os.File // the tail's write handle
	buf       []byte
	unflushed []unflushed // sealed segments written since the last Flush
	tailDirty bool        // the tail was written or cut since the last Flush
	dirDirty  bool        // files were created or removed since the last Flush
	closed    bool        // also guarded by rmu

	// rmu is held shared by readers for a whole read, and exclusively to
	// close or cut files readers may be reading.
	rmu sync.RWMutex

	// imu guards segs and the index fields of seg.
	imu  sync.RWMutex
	segs []*seg // never empty; the last is the tail

	broken atomic.Pointer[error]
	repair *RepairReport
}

// unflushed is a sealed segment whose file is not known to be on disk, and
// the write handle that Flush fsyncs and closes.
type unflushed struct {
	s *seg
	f *os.File
}

// Open opens the log in dir, creating it if needed: it completes an
// interrupted Reset, loads sealed segments' sidecars (scanning the
// segments that have none), and scans the tail, cutting it after its last
// good frame (see Repair).
func Open(dir string, opts Options) (*Log, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("segment: %w", err)
	}
	l := &Log{dir: dir, opts: opts, log: opts.Logger.With("segments", dir)}
	if err := l.open(); err != nil {
		l.closeFiles()
		return nil, err
	}
	return l, nil
}

// Repair returns what Open cut from a damaged tail, or nil.
func (l *Log) Repair() *RepairReport {
	if l.repair == nil {
		return nil
	}
	r := *l.repair
	return &r
}

// Write appends entries at the end of the log with plain writes (one write
// per segment touched): readable at once, durable after the next Flush (a
// process crash loses nothing; an OS crash or power loss may). Entries must
// start at NextOffset and follow each other; otherwise it returns
// ErrOutOfOrder and writes nothing. A write failure breaks the Log.
func (l *Log) Write(entries ...Entry) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if err := l.check(entries); err != nil {
		return err
	}
	defer l.releaseBuffer()
	l.buf = l.buf[:0]
	tail := l.tailSeg()
	size := tail.size
	var placed []placedEntry
	for _, e := range entries {
		flen := frameLen(e)
		if size > 0 && size+flen > l.opts.SegmentBytes {
			if err := l.writeOut(placed); err != nil {
				return err
			}
			if err := l.roll(e.BaseOffset); err != nil {
				return err
			}
			placed, size, l.buf = placed[:0], 0, l.buf[:0]
		}
		l.buf = appendFrame(l.buf, e)
		placed = append(placed, placedEntry{h: header{base: e.BaseOffset, last: e.LastOffset, maxTS: e.MaxTimestamp}, pos: size, flen: flen})
		size += flen
	}
	return l.writeOut(placed)
}

type placedEntry struct {
	h         header
	pos, flen int64
}

// check validates entries against the log's end. wmu must be held.
func (l *Log) check(entries []Entry) error {
	next := l.tailSeg().next
	for i, e := range entries {
		if e.BaseOffset != next || e.LastOffset < e.BaseOffset || e.LastOffset == math.MaxInt64 {
			return fmt.Errorf("%w: entry %d covers [%d, %d]; it must start at %d", ErrOutOfOrder, i, e.BaseOffset, e.LastOffset, next)
		}
		if frameLen(e)-4 > maxFrameLen {
			return fmt.Errorf("%w: entry %d has %d bytes, at most %d", ErrTooLarge, i, len(e.Data), maxFrameLen-frameHeaderLen+4)
		}
		next = e.LastOffset + 1
	}
	return nil
}

// writeOut writes l.buf at the end of the tail and publishes placed.
func (l *Log) writeOut(placed []placedEntry) error {
	if len(placed) == 0 {
		return nil
	}
	if _, err := l.wf.Write(l.buf); err != nil {
		return l.fail(fmt.Errorf("write at offset %d: %w", placed[0].h.base, err))
	}
	l.tailDirty = true
	l.imu.Lock()
	defer l.imu.Unlock()
	tail := l.segs[len(l.segs)-1]
	for _, p := range placed {
		tail.add(p.h, p.pos, p.flen, l.opts.IndexIntervalBytes)
	}
	return nil
}

// roll seals the tail and starts a new segment at base. wmu must be held.
func (l *Log) roll(base int64) error {
	s := newSeg(l.dir, base)
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return l.fail(fmt.Errorf("start segment: %w", err))
	}
	l.imu.Lock()
	tail := l.segs[len(l.segs)-1]
	tail.sealed = true
	tail.points = slices.Clip(tail.points)
	l.segs = append(l.segs, s)
	l.imu.Unlock()
	l.unflushed = append(l.unflushed, unflushed{s: tail, f: l.wf})
	l.wf, l.tailDirty, l.dirDirty = f, false, true
	return nil
}

func (l *Log) releaseBuffer() {
	if cap(l.buf) > keepBufferBytes {
		l.buf = nil
	}
}

// Flush makes everything written before it started durable: it fsyncs the
// segments written since the last Flush and, if files were created or
// removed, the directory, then writes the sidecars of the segments it
// sealed on disk. It returns the NextOffset that is now durable. Writes
// are not held up while it waits for the disk. A failed fsync breaks the
// Log (an fsync is never retried).
func (l *Log) Flush() (durable int64, err error) {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	l.wmu.Lock()
	if err := l.usable(); err != nil {
		l.wmu.Unlock()
		return 0, err
	}
	durable = l.tailSeg().next
	pend, tailDirty, dirDirty := l.unflushed, l.tailDirty, l.dirDirty
	l.unflushed, l.tailDirty, l.dirDirty = nil, false, false
	wf := l.wf // closed only under fmu
	l.wmu.Unlock()

	for i, u := range pend {
		err := u.f.Sync()
		if cerr := u.f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			for _, v := range pend[i+1:] {
				_ = v.f.Close()
			}
			return 0, l.failLocked(fmt.Errorf("fsync %s: %w", u.s.path, err))
		}
		l.writeSidecar(u.s)
	}
	if tailDirty {
		if err := wf.Sync(); err != nil {
			return 0, l.failLocked(fmt.Errorf("fsync %s: %w", wf.Name(), err))
		}
	}
	if dirDirty {
		if err := syncDir(l.dir); err != nil {
			return 0, l.failLocked(err)
		}
	}
	return durable, nil
}

// writeSidecar writes the index of a sealed segment that is on disk. A
// failure only costs a scan at the next Open.
func (l *Log) writeSidecar(s *seg) {
	l.imu.RLock()
	b := encodeSidecar(s)
	l.imu.RUnlock()
	if err := os.WriteFile(sidecarPath(s.path), b, 0o640); err != nil {
		l.log.Warn("segment: cannot write index sidecar; Open will rebuild it", "segment", s.path, "err", err)
	}
}

func (l *Log) tailSeg() *seg {
	l.imu.RLock()
	defer l.imu.RUnlock()
	return l.segs[len(l.segs)-1]
}

// fail breaks the Log with err. wmu must be held.
func (l *Log) fail(err error) error {
	err = fmt.Errorf("%w: %s: %w", ErrBroken, l.dir, err)
	l.broken.CompareAndSwap(nil, &err)
	return err
}

// failLocked is fail for callers that hold fmu but not wmu.
func (l *Log) failLocked(err error) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	return l.fail(err)
}

// usable returns ErrClosed or the error that broke the Log, or nil. wmu or
// rmu must be held.
func (l *Log) usable() error {
	if l.closed {
		return ErrClosed
	}
	if p := l.broken.Load(); p != nil {
		return *p
	}
	return nil
}

// NextOffset returns the LastOffset+1 of the last entry, or where an empty
// log starts.
func (l *Log) NextOffset() int64 {
	l.imu.RLock()
	defer l.imu.RUnlock()
	return l.segs[len(l.segs)-1].next
}

// StartOffset returns the BaseOffset of the first entry; NextOffset() when
// the log is empty.
func (l *Log) StartOffset() int64 {
	l.imu.RLock()
	defer l.imu.RUnlock()
	return l.segs[0].base
}

// Size returns the bytes in all segment files.
func (l *Log) Size() int64 {
	l.imu.RLock()
	defer l.imu.RUnlock()
	var n int64
	for _, s := range l.segs {
		n += s.size
	}
	return n
}

// Segments describes the segment files, oldest first; the last is the tail.
func (l *Log) Segments() []SegmentInfo {
	l.imu.RLock()
	defer l.imu.RUnlock()
	out := make([]SegmentInfo, len(l.segs))
	for i, s := range l.segs {
		out[i] = SegmentInfo{Path: s.path, BaseOffset: s.base, NextOffset: s.next, MaxTimestamp: s.maxTS, Bytes: s.size, Sealed: s.sealed}
	}
	return out
}

// Close flushes (see Flush) and closes the log, waiting for reads in
// progress. Later calls return ErrClosed; Close itself is idempotent.
func (l *Log) Close() error {
	var ferr error
	if l.broken.Load() == nil {
		if _, ferr = l.Flush(); errors.Is(ferr, ErrClosed) {
			return nil
		}
	}
	l.fmu.Lock()
	defer l.fmu.Unlock()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.rmu.Lock()
	defer l.rmu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return errors.Join(ferr, l.closeFiles())
}

// closeFiles closes every handle.
func (l *Log) closeFiles() error {
	var errs []error
	if l.wf != nil {
		errs = append(errs, l.wf.Close())
		l.wf = nil
	}
	for _, u := range l.unflushed {
		errs = append(errs, u.f.Close())
	}
	l.unflushed = nil
	for _, s := range l.segs {
		errs = append(errs, s.closeFile())
	}
	return errors.Join(errs...)
}

// syncDir fsyncs a directory, making entries created or removed durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("segment: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("segment: fsync directory %s: %w", dir, err)
	}
	return nil
}

// writeFileAtomic writes data to name: temp file, fsync, rename, directory
// fsync.
func writeFileAtomic(name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("segment: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("segment: write %s: %w", name, err)
	}
	return syncDir(filepath.Dir(name))
}
