package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	twal "github.com/tidwall/wal"
)

// Options configures a Journal. Zero fields take the defaults.
type Options struct {
	// SegmentBytes is tidwall's segment size. tidwall keeps the tail
	// segment in memory, so this is the journal's main memory cost, whatever
	// the number of partitions. Default 32 MiB.
	SegmentBytes int
	// MaxPendingBytes bounds the records waiting for the next group commit;
	// writers wait beyond it. Default 64 MiB.
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
	DefaultSegmentBytes       = 32 << 20
	DefaultMaxPendingBytes    = 64 << 20
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
	// ErrBroken: a journal write or fsync failed. Nothing written since the
	// last successful fsync may be durable; the broker must stop (an fsync
	// is never retried).
	ErrBroken = errors.New("journal: broken by a failed write or fsync")
	// ErrNotReplayed: Attach before Replay.
	ErrNotReplayed = errors.New("journal: Replay must run before partitions attach")
)

// Stats counts the journal's work since Open.
type Stats struct {
	Fsyncs  int64 // group commits (one fsync each)
	Records int64 // records made durable
	Bytes   int64 // record bytes made durable
	// Checkpoints and the journal's current first and last index.
	Checkpoints       int64
	FirstIndex, Index uint64
	// PendingBytes is what waits for the next group commit now (bounded by
	// MaxPendingBytes), and TailBytes about how much of tidwall's in-memory
	// tail segment is in use (bounded by SegmentBytes): the journal's
	// memory.
	PendingBytes, TailBytes int64
}

// Journal is one write-ahead journal for many partitions' segment logs: see
// the package doc. Create it with Open, call Replay once, then Attach.
type Journal struct {
	dir  string
	opts Options
	log  *slog.Logger
	tw   *twal.Log

	// mu guards the group being filled and the fields below it.
	mu    sync.Mutex
	space *sync.Cond // signalled when pending bytes drop
	fill  *group     // records waiting for the next commit
	// spare is the batch of the last group committed, cleared: the next
	// group fills it, so its buffer is not grown again from nothing
	// (copying it at every growth) for every group.
	spare    twal.Batch
	next     uint64 // index the next record gets
	scratch  []byte
	broken   error
	closed   bool
	closing  bool // Close has started: no more records
	replayed bool
	// cpBlocked stops checkpoints from advancing (a partition's records
	// could not be made durable in its segments).
	cpBlocked error
	parts     map[string]*Partition
	durable   map[string]int64 // per partition: the NextOffset its last flush made durable

	// tailBytes over-estimates the bytes in tidwall's tail segment, to
	// tell when a write may have started a new segment file (whose name
	// must be fsynced in the directory). Used by the committer only.
	tailBytes int64
	tail      atomic.Int64 // tailBytes, for Stats

	kick chan struct{} // wakes the committer
	stop chan struct{} // closes the background goroutines
	done sync.WaitGroup

	cpMu sync.Mutex // one checkpoint at a time

	fsyncs, records, bytes, checkpoints atomic.Int64
}

// group is the records of one commit (one tidwall batch, one fsync).
type group struct {
	batch twal.Batch
	bytes int
	count int           // records
	last  uint64        // index of its last record
	done  chan struct{} // closed once it is durable or failed
	err   error
}

func newGroup() *group { return &group{done: make(chan struct{})} }

// Ticket is what a write returns: Wait(t) returns once it is durable.
type Ticket struct{ g *group }

// Wait blocks until the records of t are durable, or returns the error
// that stopped the journal. A zero Ticket returns at once.
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
	for j.fill.bytes > j.opts.MaxPendingBytes && j.broken == nil && !j.closing {
		j.space.Wait()
	}
	if j.closing {
		return Ticket{}, ErrClosed
	}
	if err := j.usable(); err != nil {
		return Ticket{}, err
	}
	for _, r := range recs {
		j.scratch = appendRecord(j.scratch[:0], r)
		j.fill.batch.Write(j.next, j.scratch)
		j.fill.bytes += len(j.scratch)
		j.fill.last = j.next
		j.fill.count++
		j.next++
	}
	if cap(j.scratch) > 64<<10 {
		j.scratch = nil
	}
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return Ticket{j.fill}, nil
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

// commit writes and fsyncs the group being filled, if it has records.
func (j *Journal) commit() {
	j.mu.Lock()
	g := j.fill
	if g.count == 0 {
		j.mu.Unlock()
		return
	}
	j.fill = newGroup()
	j.fill.batch, j.spare = j.spare, twal.Batch{}
	j.space.Broadcast()
	err := j.broken
	j.mu.Unlock()

	if err == nil {
		err = j.tw.WriteBatch(&g.batch)
		if err == nil && !j.opts.UnsafeNoFsync {
			err = j.tw.Sync()
		}
		if err == nil {
			err = j.syncNewSegments(g)
		}
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrBroken, err)
			j.mu.Lock()
			j.broken = err
			j.space.Broadcast()
			j.mu.Unlock()
			j.log.Error("journal: write or fsync failed; the journal stops", "err", err)
		}
	}
	if err == nil {
		j.fsyncs.Add(1)
		j.records.Add(int64(g.count))
		j.bytes.Add(int64(g.bytes))
	}
	g.err = err
	if err == nil { // WriteBatch cleared it
		j.mu.Lock()
		j.spare, g.batch = g.batch, twal.Batch{}
		j.mu.Unlock()
	}
	close(g.done)
}

// syncNewSegments fsyncs the journal directory if the group may have
// started a new tidwall segment: tidwall fsyncs the segment it seals but
// not the directory entry of the file it creates, and a power loss could
// then lose a whole segment of acknowledged records.
func (j *Journal) syncNewSegments(g *group) error {
	j.tailBytes += int64(g.bytes) + int64(g.count)*binary.MaxVarintLen32
	j.tail.Store(j.tailBytes)
	if j.tailBytes < int64(j.opts.SegmentBytes) {
		return nil
	}
	_, size, err := lastSegment(j.dir)
	if err != nil {
		return err
	}
	j.tailBytes = size
	j.tail.Store(size)
	if j.opts.UnsafeNoFsync {
		return nil
	}
	return syncFile(j.dir)
}
