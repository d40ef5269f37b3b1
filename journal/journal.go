package journal

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	twal "github.com/tidwall/wal"
)

// Options configures a Journal. Zero fields take the defaults.
type Options struct {
	// SegmentBytes is tidwall's segment size. tidwall keeps the tail
	// segment in memory, so this is the journal's main memory cost, whatever
	// the number of partitions. Default 8 MiB.
	SegmentBytes int
	// MaxPendingBytes bounds the records waiting for the next group commit
	// (a group is one tidwall entry); writers wait beyond it. Default 16 MiB.
	MaxPendingBytes int
	// CheckpointInterval is how often the background checkpoint flushes
	// the partitions' segments and truncates the journal. Default 5 s;
	// negative: no background checkpoints (call Checkpoint).
	CheckpointInterval time.Duration
	// UnsafeNoFsync skips the journal's fsync: acknowledged records can be
	// lost on an OS crash or power loss. Tests and benchmarks only.
	UnsafeNoFsync bool
	// Logger receives repair and replay reports. Default: discard.
	Logger *slog.Logger
}

const (
	DefaultSegmentBytes       = 8 << 20
	DefaultMaxPendingBytes    = 16 << 20
	DefaultCheckpointInterval = 5 * time.Second
)

func (o Options) withDefaults() Options {
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Errors of the package.
var (
	ErrClosed = errors.New("journal: closed")
	// ErrBroken: a journal write or fsync failed and the journal could not
	// be put back as it was before it. Nothing written since the last
	// successful fsync may be durable; the broker must stop (an fsync is
	// never retried). A write refused for want of space (ENOSPC, EDQUOT)
	// does not break the journal: see ErrNoSpace.
	ErrBroken = errors.New("journal: broken by a failed write or fsync")
	// ErrNoSpace: the group holding the records was refused for want of
	// space and cut back; nothing of it is in the journal, which takes the
	// next group as if it had never been written. The error also matches
	// the system's (syscall.ENOSPC or EDQUOT).
	ErrNoSpace = errors.New("journal: group not written: no space")
	// ErrNotReplayed: Attach before Replay.
	ErrNotReplayed = errors.New("journal: Replay must run before partitions attach")
)

// Stats counts the journal's work since Open.
type Stats struct {
	Fsyncs  int64 // group commits (one fsync each)
	Records int64 // records made durable
	Bytes   int64 // record bytes made durable
	// NoSpace counts groups refused for want of space (and cut back).
	NoSpace int64
	// Checkpoints and the journal's current first and last entry index
	// (one entry per group commit).
	Checkpoints       int64
	FirstIndex, Index uint64
	// PendingBytes is what waits for the next group commit now (bounded by
	// MaxPendingBytes), and TailBytes how much of tidwall's in-memory tail
	// segment is in use (below SegmentBytes plus one group): the journal's
	// memory.
	PendingBytes, TailBytes int64
}

// Journal is one write-ahead journal for many partitions' segment logs: see
// the package doc. Create it with Open, call Replay once, then Attach.
type Journal struct {
	dir  string
	opts Options
	log  *slog.Logger

	// twMu guards tw (replaced when a write refused for want of space is
	// undone) and serializes what changes tidwall's files: the committer's
	// write and fsync, and truncateFront.
	twMu sync.Mutex
	tw   *twal.Log
	// tail is the committer's view of tidwall's tail segment file, so that
	// a write refused for want of space can be cut back (twMu held).
	tail tailFile

	// mu guards the group being filled and the fields below it.
	mu    sync.Mutex
	space *sync.Cond // signalled when pending bytes drop
	fill  *group     // records waiting for the next commit
	// spare is the buffer of the last group committed, emptied: the next
	// group fills it, so it is not grown again from nothing for every
	// group.
	spare []byte
	// next is the index the next group's entry gets; it moves only when an
	// entry is written, so an index is never skipped or reused.
	next uint64
	// owed are records of operations applied to a partition's segments
	// whose own group was refused for want of space (a truncation, say):
	// they go first in the next group written, before anything the
	// partition writes after them, so that a replay never undoes them.
	owed     []byte
	broken   error
	closed   bool
	closing  bool // Close has started: no more records
	replayed bool
	// cpBlocked stops checkpoints from advancing, by partition: its
	// records could not be made durable in its segments (it was detached
	// unflushed, say by a failed write). Attaching it again clears it: the
	// next checkpoint flushes what its segments hold.
	cpBlocked map[string]error
	parts     map[string]*Partition
	durable   map[string]int64 // per partition: the NextOffset its last flush made durable

	tailBytes atomic.Int64 // bytes in tidwall's tail segment, for Stats

	kick chan struct{} // wakes the committer
	stop chan struct{} // closes the background goroutines
	done sync.WaitGroup

	cpMu sync.Mutex // one checkpoint at a time

	fsyncs, records, bytes, checkpoints, noSpace atomic.Int64
}

// group is the records of one commit: one tidwall entry, one fsync.
type group struct {
	buf   []byte // the records, each framed (appendFramed)
	count int    // records
	// wrote is closed once the entry is written (werr nil) or refused;
	// done once it is durable (err nil) or failed. The committer sets the
	// errors before closing.
	wrote, done chan struct{}
	werr, err   error
	isWritten   bool // wrote is closed (committer only)
}

func newGroup() *group { return &group{wrote: make(chan struct{}), done: make(chan struct{})} }

// written closes g.wrote with err, once. Committer only.
func (g *group) written(err error) {
	if !g.isWritten {
		g.werr, g.isWritten = err, true
		close(g.wrote)
	}
}

// Ticket is what a write returns: Wait(t) returns once it is durable.
type Ticket struct{ g *group }

// Written blocks until the records of t are written to the journal file
// (not yet fsynced), or returns why they are not: ErrNoSpace (nothing of
// them was written; the journal goes on) or the error that stopped the
// journal. Once it returns nil, the records can only be lost with the
// journal (a failed fsync stops it), so they may be shown to others (a
// follower may copy them); before, a refused group may still be cut back.
// A zero Ticket returns at once.
func (t Ticket) Written() error {
	if t.g == nil {
		return nil
	}
	<-t.g.wrote
	return t.g.werr
}

// Wait blocks until the records of t are durable, or returns why they are
// not: ErrNoSpace (nothing of them was written; the journal goes on) or the
// error that stopped the journal. A zero Ticket returns at once.
func (t Ticket) Wait() error {
	if t.g == nil {
		return nil
	}
	<-t.g.done
	return t.g.err
}

// enqueue adds records to the group being filled and returns its ticket.
// It waits while the pending bytes exceed MaxPendingBytes.
func (j *Journal) enqueue(recs ...record) (Ticket, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for len(j.fill.buf) > j.opts.MaxPendingBytes && j.broken == nil && !j.closing {
		j.space.Wait()
	}
	if j.closing {
		return Ticket{}, ErrClosed
	}
	if err := j.usable(); err != nil {
		return Ticket{}, err
	}
	for _, r := range recs {
		j.fill.buf = appendFramed(j.fill.buf, r)
		j.fill.count++
	}
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return Ticket{j.fill}, nil
}

// owe keeps rec to be written first in the next group (see Journal.owed).
func (j *Journal) owe(rec record) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.owed = appendFramed(j.owed, rec)
}

func (j *Journal) usable() error {
	if j.closed {
		return ErrClosed
	}
	return j.broken
}

// commitLoop writes and fsyncs groups until stop: whatever arrived while
// the previous group was being fsynced goes into the next one.
func (j *Journal) commitLoop() {
	defer j.done.Done()
	for {
		select {
		case <-j.kick:
		case <-j.stop:
			j.commit() // what is left
			return
		}
		j.commit()
	}
}

// commit writes the group being filled, if it has records, as one tidwall
// entry and fsyncs it. A write or fsync refused for want of space is cut
// back (undoWrite): the group fails with ErrNoSpace and the journal goes
// on. Any other failure, or a failed cut, breaks the journal.
func (j *Journal) commit() {
	j.mu.Lock()
	g := j.fill
	if g.count == 0 {
		j.mu.Unlock()
		return
	}
	j.fill = newGroup()
	j.fill.buf, j.spare = j.spare, nil
	j.space.Broadcast()
	err := j.broken
	index := j.next
	data, owed := g.buf, len(j.owed)
	if owed > 0 {
		data = append(slices.Clip(j.owed), g.buf...)
	}
	j.mu.Unlock()

	if err == nil {
		err = j.write(index, data, g)
	}
	j.mu.Lock()
	switch {
	case err == nil:
		j.next = index + 1
		j.owed = j.owed[owed:]
		if len(j.owed) == 0 {
			j.owed = nil
		}
	case errors.Is(err, ErrNoSpace):
	case j.broken == nil:
		j.broken = fmt.Errorf("%w: %w", ErrBroken, err)
		err = j.broken
		j.space.Broadcast()
		j.log.Error("journal: write or fsync failed; the journal stops", "err", err)
	}
	if cap(g.buf) <= 2*j.opts.MaxPendingBytes {
		j.spare = g.buf[:0]
	}
	j.mu.Unlock()
	if err == nil {
		j.fsyncs.Add(1)
		j.records.Add(int64(g.count))
		j.bytes.Add(int64(len(g.buf)))
	}
	g.buf, g.err = nil, err
	g.written(err)
	close(g.done)
}

// write writes data as the entry index (then g is written) and fsyncs it.
// If the file system refuses the write for want of space, it cuts the
// journal back to what it held before and returns an error matching
// ErrNoSpace and the system's. A failed fsync is not cut back: the group
// may have been shown to others once written, and an fsync is never
// retried; the journal stops.
func (j *Journal) write(index uint64, data []byte, g *group) error {
	j.twMu.Lock()
	defer j.twMu.Unlock()
	before := j.tail
	if err := j.tw.Write(index, data); err != nil {
		if !isNoSpace(err) {
			return err
		}
		j.noSpace.Add(1)
		if uerr := j.undoWrite(before); uerr != nil {
			return fmt.Errorf("%w; cutting the journal back failed: %w", err, uerr)
		}
		j.log.Warn("journal: group refused for want of space; cut back, the journal goes on", "err", err)
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	g.written(nil)
	if !j.opts.UnsafeNoFsync {
		if err := j.tw.Sync(); err != nil {
			return err
		}
	}
	return j.wrote(index, len(data))
}

// isNoSpace reports whether err is the file system running out of space.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// tailFile is tidwall's tail segment: its file and size.
type tailFile struct {
	path string
	size int64
}

// wrote follows tidwall's tail after entry index of n bytes was written:
// tidwall appends the uvarint length and the data, and starts a new
// segment file (named by the next index) once the tail reaches the
// segment size. A new file's name must be fsynced in the directory
// (tidwall fsyncs the segment it seals but not the directory), or a power
// loss could lose a whole segment of acknowledged records. twMu held.
func (j *Journal) wrote(index uint64, n int) error {
	if j.tail.size > int64(j.opts.SegmentBytes) {
		// tidwall started a new segment before writing (a tail larger
		// than the segment size, from a larger setting before).
		j.tail = tailFile{path: filepath.Join(j.dir, segmentName(index))}
		if err := j.syncDir(); err != nil {
			return err
		}
	}
	j.tail.size += int64(uvarintLen(uint64(n)) + n)
	if j.tail.size >= int64(j.opts.SegmentBytes) {
		j.tail = tailFile{path: filepath.Join(j.dir, segmentName(index+1))}
		// The sealed segment's entries stay in tidwall's cache otherwise.
		if err := j.tw.ClearCache(); err != nil {
			return err
		}
		if err := j.syncDir(); err != nil {
			return err
		}
	}
	j.tailBytes.Store(j.tail.size)
	return nil
}

func (j *Journal) syncDir() error {
	if j.opts.UnsafeNoFsync {
		return nil
	}
	return syncFile(j.dir)
}

// undoWrite puts the journal back as it was before a write refused for
// want of space: tidwall's memory no longer matches its files, so it is
// closed, the files are cut back to the tail as it was (a segment the
// write started is removed, the tail shortened), and tidwall opens again.
// Removing and shortening files needs no space. twMu held.
func (j *Journal) undoWrite(before tailFile) error {
	if before.path == "" {
		return errors.New("the tail segment is not known")
	}
	_ = j.tw.Close() // its memory is wrong; the files are cut below
	segs, err := segmentFiles(j.dir)
	if err != nil {
		return err
	}
	for _, s := range segs {
		if s > before.path {
			if err := os.Remove(s); err != nil {
				return err
			}
		}
	}
	if err := os.Truncate(before.path, before.size); err != nil {
		return err
	}
	if err := errors.Join(syncFile(before.path), syncFile(j.dir)); err != nil {
		return err
	}
	tw, err := openTidwall(j.dir, j.opts)
	if err != nil {
		return err
	}
	j.tw = tw
	// Whatever tidwall said before (an entry that got in before a new
	// segment could not be created, say), its files now end where they
	// did before the write.
	want := j.lastWritten()
	if got, err := tw.LastIndex(); err != nil || got != want {
		return fmt.Errorf("reopened journal ends at %d (%v), want %d", got, err, want)
	}
	return nil
}

// lastWritten is the index of the last entry written.
func (j *Journal) lastWritten() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.next - 1
}

func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}
