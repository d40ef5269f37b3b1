package wal

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

	twal "github.com/tidwall/wal"
)

// Entry is one log entry: an opaque payload (in practice a record batch)
// and the offsets it covers.
type Entry struct {
	BaseOffset   int64  // first offset the entry covers
	LastOffset   int64  // last offset it covers, >= BaseOffset
	MaxTimestamp int64  // unix ms, largest record timestamp in the payload
	Data         []byte // payload, opaque to wal
}

// SegmentInfo describes one segment file, for retention decisions.
type SegmentInfo struct {
	Path         string
	BaseOffset   int64 // first offset in the segment
	NextOffset   int64 // offset after its last entry
	MaxTimestamp int64 // largest MaxTimestamp of its entries; math.MinInt64 if it has none
	Bytes        int64
	Sealed       bool // false for the tail (active) segment
}

// RepairReport says what Open dropped from a damaged tail.
type RepairReport struct {
	Segment string // file repaired
	// DroppedEntries counts the whole tidwall entries removed: the first
	// bad one and every one after it (valid or not). A torn, incomplete
	// last frame is not counted; its bytes are in DroppedBytes.
	DroppedEntries int
	DroppedBytes   int64
	// FirstDroppedOffset is the BaseOffset of the first dropped entry, when
	// its header still decodes and starts where the kept log ends; -1 if
	// the dropped bytes did not parse as an entry at all.
	FirstDroppedOffset int64
	// Reason is what was wrong with the first dropped bytes: "torn frame",
	// "checksum mismatch", "zero-filled tail", "offset discontinuity",
	// "short frame", "bad frame length", "unknown frame version", "bad offsets".
	Reason string
}

// Log is one durable log: a tidwall/wal directory plus the checksums, index
// and repair described in the package doc. Create it with Open.
type Log struct {
	dir      string
	opts     Options
	log      *slog.Logger
	interval int64

	// wmu serializes the writer methods (Append, TruncateTo, Reset,
	// DeleteSegmentsBefore) and Close. It guards the fields below.
	wmu    sync.Mutex
	tw     *twal.Log
	placed []placed // where the entries of the current Append go
	rolls  []uint64 // segments the current Append creates
	// rollSegmentBytes is the segment size the roll model assumes; it is
	// opts.SegmentBytes, except in tests that make the model wrong.
	rollSegmentBytes int64

	// rmu is held shared by readers for the whole of a read (they use the
	// segments' read handles), and exclusively to close or replace read
	// handles. Append never takes it.
	rmu    sync.RWMutex
	closed bool // guarded by rmu (and wmu when written)

	// imu guards segs and the segment fields listed in segment. Append
	// holds it exclusively only to publish entries it has written.
	imu  sync.RWMutex
	segs []*segment // never empty; the last is the tail

	broken atomic.Pointer[error] // the failure that broke the Log

	repair *RepairReport // what Open repaired; nil if nothing

	modelMisses atomic.Int64 // roll predictions that the files contradicted
	dirDirty    bool         // a segment was created since the last Sync; guarded by wmu
}

// placed is where the roll model says tidwall writes one entry.
type placed struct {
	seg  uint64 // segment id
	pos  int64
	flen int64
	id   uint64
	h    frameHeader
}

// Open opens the log in dir, creating dir if needed, repairs a damaged
// tail (see Repair) and loads the index. Sealed segments are not read when
// their index sidecars are valid.
func Open(dir string, opts Options) (*Log, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	l := &Log{
		dir:              dir,
		opts:             opts,
		log:              opts.Logger.With("wal", dir),
		interval:         int64(opts.IndexIntervalBytes),
		rollSegmentBytes: int64(opts.SegmentBytes),
	}
	if err := l.open(); err != nil {
		if l.tw != nil {
			_ = l.tw.Close()
		}
		for _, s := range l.segs {
			_ = s.closeFile()
		}
		return nil, err
	}
	return l, nil
}

// openTidwall opens the tidwall log on l.dir.
func (l *Log) openTidwall() (*twal.Log, error) {
	o := twal.Options{
		// Write and Sync are separate steps (Append does both): tidwall
		// never fsyncs on its own, except the segment it seals on a roll.
		NoSync:           true,
		SegmentSize:      l.opts.SegmentBytes,
		LogFormat:        twal.Binary,
		SegmentCacheSize: 1,
		NoCopy:           true,
		AllowEmpty:       true,
	}
	return twal.Open(l.dir, &o) // o is ours: tidwall writes defaults into it
}

// Repair returns what Open dropped from a damaged tail, or nil if Open found
// nothing to repair.
func (l *Log) Repair() *RepairReport {
	if l.repair == nil {
		return nil
	}
	r := *l.repair
	return &r
}

// Append writes entries at the end of the log, all in one tidwall batch and
// one fsync (group commit: pass everything that is waiting). Entries must
// be contiguous: entries[0].BaseOffset == NextOffset(), and each entry
// starts right after the previous one's LastOffset; otherwise it returns
// ErrOutOfOrder and writes nothing. When it returns nil the entries are on
// stable storage, including the directory entry of any segment file created
// on the way (unless Options.UnsafeNoFsync), and readers can see them.
//
// Any write, fsync or index failure is returned and breaks the Log: every
// later call returns ErrBroken, and the caller must Close and Open it again
// (Open repairs a partly written tail). Whether the failed entries are on
// disk is unknown. An empty Append does nothing.
func (l *Log) Append(entries ...Entry) error {
	if err := l.Write(entries...); err != nil {
		return err
	}
	return l.Sync()
}

// Sync makes everything written so far durable: it fsyncs the tail segment
// and, when Write started new segments, the directory (so a power loss
// cannot lose a new file's name). It does nothing with UnsafeNoFsync.
// A failed fsync breaks the Log (ErrBroken): what reached the disk is then
// unknown, and an fsync is never retried.
func (l *Log) Sync() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if l.opts.UnsafeNoFsync {
		l.dirDirty = false
		return nil
	}
	if err := l.tw.Sync(); err != nil {
		return l.fail(fmt.Errorf("fsync: %w", err))
	}
	if l.dirDirty {
		if err := syncDir(l.dir); err != nil {
			return l.fail(fmt.Errorf("fsync directory: %w", err))
		}
		l.dirDirty = false
	}
	return nil
}

// Write appends entries without waiting for the disk: they are readable at
// once, and durable after the next Sync. Append is Write then Sync; the
// partition calls them apart so followers can copy a group while the
// leader fsyncs it.
func (l *Log) Write(entries ...Entry) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	tail := l.segs[len(l.segs)-1]
	next := tail.next
	for i := range entries {
		e := &entries[i]
		if e.BaseOffset != next || e.LastOffset < e.BaseOffset || e.LastOffset == math.MaxInt64 {
			return fmt.Errorf("%w: entry %d covers [%d, %d]; it must start at %d", ErrOutOfOrder, i, e.BaseOffset, e.LastOffset, next)
		}
		next = e.LastOffset + 1
	}

	// Encode the frames and predict where tidwall puts each one. tidwall
	// (v1.2.1 writeBatch) starts a new segment (a) before a batch when the
	// tail holds more than SegmentSize bytes, and (b) right after an entry
	// that brings the tail to SegmentSize bytes or more.
	w := writeBufPool.Get().(*writeBufs)
	defer w.release()
	l.placed, l.rolls = l.placed[:0], l.rolls[:0]
	segID, size, id := tail.id, tail.size, tail.id+tail.count
	if size > l.rollSegmentBytes {
		segID, size = id, 0
		l.rolls = append(l.rolls, segID)
	}
	for _, e := range entries {
		w.scratch = appendFrame(w.scratch[:0], e)
		w.batch.Write(id, w.scratch)
		flen := int64(uvarintLen(uint64(len(w.scratch))) + len(w.scratch))
		l.placed = append(l.placed, placed{seg: segID, pos: size, flen: flen, id: id,
			h: frameHeader{base: e.BaseOffset, last: e.LastOffset, maxTS: e.MaxTimestamp}})
		size += flen
		id++
		if size >= l.rollSegmentBytes {
			segID, size = id, 0
			l.rolls = append(l.rolls, segID)
		}
	}
	if err := l.tw.WriteBatch(&w.batch); err != nil {
		return l.fail(fmt.Errorf("append at offset %d: %w", entries[0].BaseOffset, err))
	}
	if len(l.rolls) == 0 {
		l.publish()
		return nil
	}

	// Segments rolled: the new files' directory entries become durable at
	// the next Sync; drop the sealed segment tidwall cached, and check the
	// prediction.
	l.dirDirty = true
	if err := l.tw.ClearCache(); err != nil {
		return l.fail(fmt.Errorf("clear cache: %w", err))
	}
	if !l.rollsHappened(size) {
		l.modelMisses.Add(1)
		l.log.Error("wal: tidwall did not roll segments where predicted; rebuilding the index from the files (has tidwall changed?)",
			"predicted", l.rolls)
		if err := l.reload(); err != nil {
			return l.fail(fmt.Errorf("rebuild index after a roll misprediction: %w", err))
		}
		return nil
	}
	sealed := l.publish()
	for _, s := range sealed {
		if err := os.WriteFile(sidecarPath(s.path), encodeSidecar(s), 0o640); err != nil {
			l.log.Warn("wal: cannot write index sidecar; Open will rebuild it", "segment", s.path, "err", err)
		}
	}
	return nil
}

// writeBufs are the buffers one Write encodes into: an encoded frame and
// the tidwall batch. They are pooled across logs rather than kept per log,
// so a log being written reuses warm buffers (a group can be up to
// MaxGroupBytes, 16 MiB by default, and growing such buffers anew on every
// Write cost a fifth of a partition's throughput), while a log not being
// written holds none: memory follows the logs written at once, not the logs
// open.
type writeBufs struct {
	scratch []byte
	batch   twal.Batch
}

var writeBufPool = sync.Pool{New: func() any { return new(writeBufs) }}

func (w *writeBufs) release() {
	w.batch.Clear()
	writeBufPool.Put(w)
}

// rollsHappened checks the roll prediction of the current Append: each
// predicted new segment file exists with the predicted size (tailSize for
// the last one). One stat per new segment.
func (l *Log) rollsHappened(tailSize int64) bool {
	for i, id := range l.rolls {
		want := tailSize
		if i < len(l.rolls)-1 {
			want = 0
			for _, p := range l.placed {
				if p.seg == id {
					want += p.flen
				}
			}
		}
		fi, err := os.Stat(filepath.Join(l.dir, segmentName(id)))
		if err != nil || fi.Size() != want {
			return false
		}
	}
	return true
}

// publish makes the placed entries of the current Append visible to readers
// and returns the segments it sealed.
func (l *Log) publish() (sealed []*segment) {
	l.imu.Lock()
	defer l.imu.Unlock()
	tail := l.segs[len(l.segs)-1]
	roll := func(id uint64) {
		tail.sealed = true
		tail.points = slices.Clip(slices.Clone(tail.points)) // drop append's spare capacity
		sealed = append(sealed, tail)
		tail = newSegment(l.dir, id, tail.next)
		l.segs = append(l.segs, tail)
	}
	for _, p := range l.placed {
		if p.seg != tail.id {
			roll(p.seg)
		}
		tail.add(p.h, p.id, p.pos, p.flen, l.interval)
	}
	if n := len(l.rolls); n > 0 && l.rolls[n-1] != tail.id {
		roll(l.rolls[n-1]) // rolled after the last entry: an empty tail
	}
	return sealed
}

// reload rebuilds the whole index from the files, for when the roll model
// was wrong. The tail must be clean. wmu must be held.
func (l *Log) reload() error {
	segs, bad, err := l.loadIndex()
	if err == nil && bad != nil {
		err = &CorruptError{Path: segs[len(segs)-1].path, Pos: bad.pos, Offset: segs[len(segs)-1].next, Reason: bad.reason}
	}
	if err != nil {
		for _, s := range segs {
			_ = s.closeFile()
		}
		return err
	}
	l.rmu.Lock()
	l.imu.Lock()
	old := l.segs
	l.segs = segs
	l.imu.Unlock()
	for _, s := range old {
		_ = s.closeFile()
	}
	l.rmu.Unlock()
	return nil
}

// fail breaks the Log with err and returns err wrapped with ErrBroken.
// wmu must be held.
func (l *Log) fail(err error) error {
	err = fmt.Errorf("%w: %w", ErrBroken, err)
	l.broken.CompareAndSwap(nil, &err)
	return err
}

// usable returns ErrClosed or ErrBroken, or nil. wmu or rmu must be held.
func (l *Log) usable() error {
	if l.closed {
		return ErrClosed
	}
	if p := l.broken.Load(); p != nil {
		return *p
	}
	return nil
}

// NextOffset returns the log end offset: the LastOffset+1 of the last
// entry, or the offset an empty log starts at.
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

// Size returns the bytes in all segment files (sidecars not counted).
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

// Close fsyncs and closes the log. It waits for reads in progress. Later
// calls on the Log return ErrClosed; Close itself is idempotent.
func (l *Log) Close() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.rmu.Lock()
	defer l.rmu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var errs []error
	if err := l.tw.Close(); err != nil {
		errs = append(errs, fmt.Errorf("wal: close %s: %w", l.dir, err))
	}
	for _, s := range l.segs {
		if err := s.closeFile(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
