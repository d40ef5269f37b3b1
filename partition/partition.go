package partition

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/wal"
)

// Log is what a partition needs from its storage. *wal.Log implements it;
// tests use an in-memory twin. Append, TruncateTo, Reset and
// DeleteSegmentsBefore are only called from the partition's loop; the rest
// may be called from any goroutine.
type Log interface {
	Append(entries ...wal.Entry) error
	Write(entries ...wal.Entry) error
	Sync() error
	NextOffset() int64
	StartOffset() int64
	Size() int64
	ReadEntries(offset int64, maxBytes int, limit int64, fn func(wal.Entry) error) (int64, error)
	Read(dst []byte, offset int64, maxBytes int, limit int64) ([]byte, int64, error)
	OffsetForTimestamp(ts int64) (int64, error)
	TruncateTo(offset int64) (int64, error)
	Reset(next int64) error
	Segments() []wal.SegmentInfo
	DeleteSegmentsBefore(offset int64) (int64, error)
	Close() error
}

// Config configures one partition replica. Zero values take defaults.
type Config struct {
	// Dir is the partition's directory; Open creates it if needed.
	Dir       string
	Topic     string
	Partition int32
	// MaxRecordBytes bounds key + value + headers of one record (default 1 MiB).
	MaxRecordBytes int
	// MaxGroupBytes bounds the bytes written by one group commit (default
	// 16 MiB); more waiting requests go into the next group.
	MaxGroupBytes int
	// WAL configures the default log; ignored when OpenLog is set.
	WAL wal.Options
	// OpenLog opens the partition's log in dir (default: wal.Open).
	OpenLog func(dir string) (Log, error)
	// OnFatal is called once if the log fails in a way that must stop the
	// broker (an fsync error). Default: nothing beyond logging.
	OnFatal func(error)
	// OnDamage is called once, on some goroutine of the partition's, if
	// the log is found damaged after Open: by the first open of a log left
	// unopened by a clean shutdown (its tail or offsets not as the
	// checkpoint says), or by a read of an entry failing its CRC. The
	// partition then fails every write, and its owner should Close it and
	// Open it again, which verifies the whole log and cuts it at the
	// damage (see Damage). Damage found by Open itself is reported by
	// Damage, not here.
	OnDamage func(error)
	// Observer receives figures for metrics; optional.
	Observer Observer
	// Trace, when set, is told as appends pass the leader's steps (see
	// Step); for latency breakdowns in benchmarks.
	Trace  Tracer
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// ProducerExpiry: an idempotent producer id not seen for this long is
	// forgotten, so the producer table stays bounded (default 7 days, as
	// Kafka's transactional.id.expiration.ms; negative: never). A producer
	// that comes back later must start again at sequence 0 (the client
	// does so by bumping its epoch).
	ProducerExpiry time.Duration
	// ProducerSnapshotBytes: the producer table is written to a snapshot
	// beside the log after this many bytes were appended (default
	// WAL.SegmentBytes, else 16 MiB), so a restart after a crash replays at
	// most about this much of the log. Close writes one too.
	ProducerSnapshotBytes int64
	// KeyIndex: keep a key index (the topic's key index setting): per-key
	// conditional appends and Latest. See keys.go.
	KeyIndex bool
	// KeyHash is the key index's hash (default keyindex.Hash); tests force
	// collisions with a tiny one.
	KeyHash func([]byte) uint64
	// Compacted: the topic is compacted (cleanup.policy compact): every
	// record needs a key, and Clean may run. SetCompacted changes it live.
	Compacted bool
}

// Observer is told about the work of the append loop.
type Observer interface {
	// GroupCommitted: one log write + fsync of n batches, bytes in all.
	GroupCommitted(batches int, records int, bytes int, took time.Duration)
}

// DuplicateObserver is an Observer that also wants to know how many
// duplicate batches of idempotent producers (retries of batches already
// appended) were answered with their original offsets instead of appended.
type DuplicateObserver interface {
	DuplicatesAnswered(batches int)
}

const (
	defaultMaxRecordBytes = 1 << 20
	defaultMaxGroupBytes  = 16 << 20
	defaultProducerExpiry = 7 * 24 * time.Hour
	walDirName            = "wal"
)

func (c *Config) fill() error {
	if c.Dir == "" {
		return errors.New("partition: Dir is required")
	}
	if c.MaxRecordBytes <= 0 {
		c.MaxRecordBytes = defaultMaxRecordBytes
	}
	if c.MaxGroupBytes <= 0 {
		c.MaxGroupBytes = defaultMaxGroupBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ProducerExpiry == 0 {
		c.ProducerExpiry = defaultProducerExpiry
	}
	if c.ProducerSnapshotBytes <= 0 {
		c.ProducerSnapshotBytes = int64(c.WAL.SegmentBytes)
		if c.ProducerSnapshotBytes <= 0 {
			c.ProducerSnapshotBytes = wal.DefaultSegmentBytes
		}
	}
	if c.OpenLog == nil {
		opts := c.WAL
		opts.Logger = c.Logger
		c.OpenLog = func(dir string) (Log, error) { return wal.Open(dir, opts) }
	}
	return nil
}

// Role is a replica's role for its partition.
type Role int

const (
	// RoleNone: opened but not yet told its role; it serves nothing.
	RoleNone Role = iota
	RoleLeader
	RoleFollower
)

func (r Role) String() string {
	switch r {
	case RoleLeader:
		return "leader"
	case RoleFollower:
		return "follower"
	}
	return "none"
}

// LeaderState is what a replica needs to lead.
type LeaderState struct {
	Epoch int32
	// ISR is the in-sync replica set, the leader included.
	ISR []int32
	// MinISR is min.insync.replicas: acks=all fails when the ISR is smaller.
	MinISR int
	// Solo: no other replica exists, so the HW follows the leader's own
	// fsynced LEO. With followers, the replication layer moves the HW.
	Solo bool
}

// SetMaxRecordBytes changes the largest record the partition accepts from
// producers, for appends validated from now on (a topic's setting changed
// live). n <= 0 is ignored.
func (p *Partition) SetMaxRecordBytes(n int) {
	if n > 0 {
		p.maxRecordBytes.Store(int64(n))
	}
}

// SetCompacted changes whether the topic is compacted (its cleanup.policy
// changed live): from now on, appends without a key are refused when it is.
func (p *Partition) SetCompacted(on bool) { p.compacted.Store(on) }

// Partition is one replica of a topic partition. See the package doc.
type Partition struct {
	cfg  Config
	log  Log
	log2 *slog.Logger
	// maxRecordBytes is cfg.MaxRecordBytes as the topic's setting changes
	// live (SetMaxRecordBytes).
	maxRecordBytes atomic.Int64
	// compacted is cfg.Compacted as the topic's policy changes live.
	compacted atomic.Bool
	// clean is what the log cleaner remembers between passes.
	clean cleanState

	mu       sync.Mutex // guards the fields below
	cond     *sync.Cond // signals the loop: queue non-empty or closing
	role     Role
	epoch    int32 // current leader epoch as this replica knows it
	leaderID int32 // -1 unknown
	isrSize  int
	minISR   int
	solo     bool
	hw       int64
	leo      int64 // end of the fsynced log
	written  int64 // end of the written log (>= leo): followers may copy up to it
	// leaderStart is the LEO when this replica took the current
	// leadership. Until the HW reaches it, the HW may be lower than one the
	// previous leader showed, so consumer reads wait (HWReady).
	leaderStart int64
	logStart    int64
	epochs      epochCache
	queue       []*op
	acks        []*op // acks=all appends waiting for the HW, in offset order
	notify      chan struct{}
	closing     bool
	handoff     bool  // leadership is being handed off: no new appends
	writing     bool  // the loop is writing a group of appends (not yet in leo)
	failed      error // fatal storage failure; no more writes
	// unrecovered: a failed replicated append not cut back yet (the disk
	// was full); only the loop (p.do) touches it.
	unrecovered *unrecoveredAppend

	done      chan struct{} // closed when the loop exits
	closeOnce sync.Once
	// lazy is the log as Open left it when a clean shutdown's checkpoint
	// let it skip opening it (nil otherwise). Set by Open, read-only after.
	lazy *lazyLog
	// damageReported: OnDamage has been called (p.mu guards it).
	damageReported bool

	// Owned by the loop (and by Open before it starts, Close after it
	// ends): no lock.
	producers producerState // idempotent producers: epochs, last batches
	// damage is what Open found wrong with the log (and cut away); nil if
	// nothing. Set before the loop starts, read-only after.
	damage    error
	snapBytes int64 // bytes appended since the last producer snapshot
	// keys is the key index; nil unless Config.KeyIndex. Set by Open.
	keys       *keyState
	lastExpiry time.Time // the last producer expiry pass
}

// Open opens (or creates) the partition in cfg.Dir and starts its loop.
func Open(cfg Config) (*Partition, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("partition %s-%d: %w", cfg.Topic, cfg.Partition, err)
	}
	openLog := func() (Log, error) { return cfg.OpenLog(filepath.Join(cfg.Dir, walDirName)) }
	p := &Partition{
		cfg:      cfg,
		log2:     cfg.Logger.With("topic", cfg.Topic, "partition", cfg.Partition),
		epoch:    -1,
		leaderID: -1,
		notify:   make(chan struct{}),
		done:     make(chan struct{}),
	}
	p.cond = sync.NewCond(&p.mu)
	p.maxRecordBytes.Store(int64(cfg.MaxRecordBytes))
	p.compacted.Store(cfg.Compacted)
	var lg Log
	cp, written := readCheckpoint(cfg.Dir)
	trusted := cp != nil
	if cp != nil {
		if why := trustCheckpoint(cp, filepath.Join(cfg.Dir, walDirName), written); why != nil {
			p.log2.Warn("the log's files changed since the clean shutdown; checking the whole log", "change", why)
			trusted = false
		}
	}
	if trusted {
		// A clean shutdown left the log's offsets, and its files are as
		// it left them: open it on first use.
		p.lazy = newLazyLog(cp, openLog, p.reportDamage)
		lg = p.lazy
	} else {
		var err error
		if lg, err = openLog(); err != nil {
			return nil, fmt.Errorf("partition %s-%d: open log: %w", cfg.Topic, cfg.Partition, err)
		}
		// An unclean start: check the whole log, and cut it at the first
		// damaged entry (the replica must then leave the ISR and copy the
		// rest from the leader: see Damage).
		if p.damage, err = cutAtDamage(lg, p.log2); err != nil {
			lg.Close()
			return nil, fmt.Errorf("partition %s-%d: %w", cfg.Topic, cfg.Partition, err)
		}
		// A log changed since a clean shutdown that no longer holds what
		// that shutdown left (files removed, say) is damaged too.
		if cp != nil && (lg.NextOffset() != cp.NextOffset || lg.StartOffset() != cp.StartOffset) {
			p.damage = errors.Join(p.damage, fmt.Errorf("the log holds [%d, %d) but its clean-shutdown checkpoint said [%d, %d)",
				lg.StartOffset(), lg.NextOffset(), cp.StartOffset, cp.NextOffset))
		}
	}
	p.log = lg
	p.leo = lg.NextOffset()
	p.written = p.leo
	p.logStart = lg.StartOffset()
	p.hw = p.logStart
	if err := p.loadEpochs(); err != nil {
		lg.Close()
		return nil, fmt.Errorf("partition %s-%d: %w", cfg.Topic, cfg.Partition, err)
	}
	if err := p.loadProducers(p.leo); err != nil {
		lg.Close()
		return nil, fmt.Errorf("partition %s-%d: %w", cfg.Topic, cfg.Partition, err)
	}
	if err := p.openKeys(); err != nil {
		lg.Close()
		return nil, fmt.Errorf("partition %s-%d: %w", cfg.Topic, cfg.Partition, err)
	}
	p.lastExpiry = cfg.Now()
	go p.run()
	return p, nil
}

// Damage reports what Open found damaged in the log and cut away: a tail
// repair that dropped bytes, or an entry failing its checks below the tail
// (the log is cut before it). nil when the log was intact, or opened
// lazily (damage found then goes to Config.OnDamage). A damaged replica may
// lack records it had acknowledged to a leader, or committed as a leader:
// it must not lead or count as in sync until it has copied them again.
func (p *Partition) Damage() error { return p.damage }

// reportDamage is the report of damage found after Open: by the first
// open of a lazily opened log, or by a read (an entry failing its CRC).
// The partition takes no more writes, and its owner reopens it (once: later
// reports are only logged).
func (p *Partition) reportDamage(err error) {
	p.mu.Lock()
	if p.failed == nil {
		p.failed = err
	}
	first := !p.damageReported
	p.damageReported = true
	p.broadcastLocked()
	p.mu.Unlock()
	if !first {
		p.log2.Warn("log damaged; the partition is being reopened", "err", err)
		return
	}
	p.log2.Error("log damaged; the partition must be reopened", "err", err)
	if p.cfg.OnDamage != nil {
		p.cfg.OnDamage(fmt.Errorf("partition %s-%d: %w", p.cfg.Topic, p.cfg.Partition, err))
	}
}

// readFailed reports err from a read of the log as damage if it is one (an
// entry failing its checks: bit rot that no stat could see), and returns it.
func (p *Partition) readFailed(err error) error {
	if errors.Is(err, wal.ErrCorrupt) && !errors.Is(err, errDamagedLog) {
		p.reportDamage(err) // errDamagedLog went to reportDamage already
	}
	return err
}

// Usable reports whether the replica's log may be used: nil, the damage
// found since Open (ErrStorage: the owner reopens the partition, see
// Config.OnDamage), or ErrClosed. It never waits: a log Open opened was
// checked in full, and one left unopened by a clean shutdown was trusted
// only because its files are as that shutdown left them. A follower asks
// before it tells a leader its log end.
func (p *Partition) Usable() error {
	if p.lazy != nil {
		if err := p.lazy.damage(); err != nil {
			return fmt.Errorf("%w: %v", ErrStorage, err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closing:
		return ErrClosed
	case p.damageReported:
		return fmt.Errorf("%w: %v", ErrStorage, p.failed)
	}
	return nil
}

// checkLog reports what an open log's tail repair dropped, or the first
// damage Verify finds below the tail; nil if the log is intact. Logs
// without Repair or Verify (in-memory twins) are taken as intact.
func checkLog(lg Log) error {
	var errs []error
	if r, ok := lg.(interface{ Repair() *wal.RepairReport }); ok {
		if rep := r.Repair(); rep != nil {
			errs = append(errs, fmt.Errorf("tail repaired: %s in %s, %d entries and %d bytes dropped (first dropped offset %d)",
				rep.Reason, rep.Segment, rep.DroppedEntries, rep.DroppedBytes, rep.FirstDroppedOffset))
		}
	}
	if v, ok := lg.(interface{ Verify() error }); ok {
		if err := v.Verify(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cutAtDamage checks a freshly opened log (checkLog) and truncates it
// before the first entry Verify finds damaged, so that nothing past the
// damage is served or counted. It returns what it found (nil: intact); err
// is a failure to cut.
func cutAtDamage(lg Log, log *slog.Logger) (damage, err error) {
	damage = checkLog(lg)
	cur := damage
	for i := 0; cur != nil; i++ {
		var ce *wal.CorruptError
		if !errors.As(cur, &ce) {
			break // a repaired tail only: the log is usable as it is
		}
		if i == 3 {
			return damage, fmt.Errorf("the log is still damaged after cutting it: %w", cur)
		}
		// First cut at the damaged entry; if the segment is still
		// damaged (bytes after its last entry, a torn sealed segment), cut
		// before the whole segment; failing that, empty the log.
		at := max(ce.Offset, lg.StartOffset())
		if i > 0 {
			for _, sg := range lg.Segments() {
				if sg.Path == ce.Path {
					at = max(min(at, sg.BaseOffset), lg.StartOffset())
				}
			}
		}
		log.Error("log damaged: cutting it at the damage; the rest must be copied from the leader",
			"err", ce, "cut_at", at, "log_end", lg.NextOffset())
		var err error
		if i < 2 {
			_, err = lg.TruncateTo(at)
		}
		if i == 2 || err != nil {
			log.Error("cannot cut the log at the damage; emptying it", "err", err)
			if err := lg.Reset(lg.StartOffset()); err != nil {
				return damage, fmt.Errorf("empty the damaged log: %w", err)
			}
		}
		cur = nil
		if v, ok := lg.(interface{ Verify() error }); ok {
			cur = v.Verify()
		}
	}
	return damage, nil
}

// loadEpochs reads the epoch checkpoint, or rebuilds it from the batches'
// epochs when it is missing or unreadable, and drops epochs past the LEO.
func (p *Partition) loadEpochs() error {
	data, err := os.ReadFile(filepath.Join(p.cfg.Dir, epochFileName))
	if err == nil {
		entries, derr := decodeEpochs(data)
		if derr == nil {
			p.epochs.entries = entries
		} else {
			p.log2.Warn("leader epoch checkpoint unreadable; rebuilding from the log", "err", derr)
			err = derr
		}
	}
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) || p.leo > p.logStart {
			if err := p.rebuildEpochs(); err != nil {
				return err
			}
		}
	}
	changed := p.epochs.truncateAfter(p.leo)
	changed = p.epochs.truncateBefore(p.logStart) || changed
	if changed {
		return p.saveEpochs()
	}
	return nil
}

func (p *Partition) rebuildEpochs() error {
	var c epochCache
	_, err := p.log.ReadEntries(p.logStart, 1<<62, p.leo, func(e wal.Entry) error {
		v, _, err := batch.Next(e.Data)
		if err != nil || v == nil {
			return fmt.Errorf("batch at offset %d: %v", e.BaseOffset, err)
		}
		c.assign(v.LeaderEpoch(), e.BaseOffset)
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuild leader epochs: %w", err)
	}
	p.epochs = c
	return p.saveEpochs()
}

// saveEpochs persists the epoch cache; p.mu held or the loop not yet started.
func (p *Partition) saveEpochs() error {
	return writeFileAtomic(p.cfg.Dir, epochFileName, encodeEpochs(p.epochs.entries))
}

// State is a snapshot of the replica's offsets and role.
type State struct {
	Role           Role
	LeaderEpoch    int32
	LeaderID       int32
	LogStartOffset int64
	HighWatermark  int64
	LogEndOffset   int64
	SizeBytes      int64
	Epochs         []EpochEntry
}

// WrittenEnd is the end of what the log holds, fsynced or not: followers
// copy up to it, so a leader's fsync and its followers' fetches overlap.
func (p *Partition) WrittenEnd() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.written
}

// Offsets returns the log start offset, HW and LEO (cheaper than State).
func (p *Partition) Offsets() (start, hw, leo int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logStart, p.hw, p.leo
}

// State returns a snapshot.
func (p *Partition) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return State{
		Role:           p.role,
		LeaderEpoch:    p.epoch,
		LeaderID:       p.leaderID,
		LogStartOffset: p.logStart,
		HighWatermark:  p.hw,
		LogEndOffset:   p.leo,
		SizeBytes:      p.log.Size(),
		Epochs:         p.epochs.snapshot(),
	}
}

// Role is the replica's current role.
func (p *Partition) Role() Role {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.role
}

// BecomeLeader makes this replica the leader for st.Epoch, which must not be
// older than the epoch it knows. New appends are stamped with st.Epoch.
func (p *Partition) BecomeLeader(self int32, st LeaderState) error {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return ErrClosed
	}
	if st.Epoch < p.epoch {
		cur := p.epoch
		p.mu.Unlock()
		return &EpochError{Requested: st.Epoch, Current: cur}
	}
	if p.epochs.assign(st.Epoch, p.leo) {
		if err := p.saveEpochs(); err != nil {
			p.mu.Unlock()
			return fmt.Errorf("save leader epochs: %w", err)
		}
	}
	if p.role != RoleLeader || st.Epoch != p.epoch {
		p.leaderStart = p.leo
		p.handoff = false
	}
	p.role, p.epoch, p.leaderID = RoleLeader, st.Epoch, self
	p.isrSize, p.minISR, p.solo = len(st.ISR), st.MinISR, st.Solo
	var ready []*op
	if p.solo {
		ready = p.setHWLocked(p.leo)
	}
	p.broadcastLocked()
	p.mu.Unlock()
	// The ISR may have shrunk to this replica alone: what waited is committed.
	p.finishAcks(ready)
	return nil
}

// BeginHandoff stops a leader from taking new appends (they fail with a
// retriable NotLeader) so that everything already appended can commit
// before the leadership moves: a clean shutdown then strands no
// acknowledgement. It lasts until the replica's role or epoch changes.
func (p *Partition) BeginHandoff() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.role == RoleLeader {
		p.handoff = true
	}
}

// WaitCommitted waits until the HW has reached the LEO and no group is
// being written (nothing appended is waiting for replication), ctx ends, or
// the replica stops leading.
func (p *Partition) WaitCommitted(ctx context.Context) error {
	for {
		p.mu.Lock()
		done := p.hw >= p.leo && !p.writing || p.role != RoleLeader || p.closing
		ch := p.notify
		p.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// HWReady reports whether this replica leads and its HW has caught up with
// everything it held when it took the leadership, so the HW it shows is not
// below one a previous leader showed. Consumer reads wait for it.
func (p *Partition) HWReady() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.role == RoleLeader && p.hw >= p.leaderStart
}

// LeaderStart is the LEO this replica had when it took its current
// leadership: the first offset of its epoch.
func (p *Partition) LeaderStart() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leaderStart
}

// SetSolo says whether this leader is the only member of its (maximal)
// ISR, so that its HW follows its own fsynced LEO. The replication layer
// turns it off before it proposes adding a replica to the ISR.
func (p *Partition) SetSolo(solo bool) {
	p.mu.Lock()
	p.solo = solo
	var ready []*op
	if solo && p.role == RoleLeader {
		ready = p.setHWLocked(p.leo)
	}
	p.mu.Unlock()
	p.finishAcks(ready)
}

// UpdateISR records a new ISR size for the current leadership (the
// replication layer's committed ISR change).
func (p *Partition) UpdateISR(size int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isrSize = size
}

// LatestEpoch is the newest leader epoch in this replica's log history, -1
// if none.
func (p *Partition) LatestEpoch() int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.epochs.latest()
}

// BecomeFollower makes this replica follow leader (-1: unknown) in epoch.
// Appends fail with NotLeader from now on; acks=all appends still waiting
// fail too, as this replica can no longer tell whether they commit.
func (p *Partition) BecomeFollower(leader int32, epoch int32) error {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return ErrClosed
	}
	if epoch < p.epoch {
		cur := p.epoch
		p.mu.Unlock()
		return &EpochError{Requested: epoch, Current: cur}
	}
	p.role, p.epoch, p.leaderID = RoleFollower, epoch, leader
	p.solo = false
	waiting := p.acks
	p.acks = nil
	// An epoch this replica led without appending anything (it starts at
	// the LEO) is unknown to the new leader, whose batches at these
	// offsets carry older epochs: forget it, as a truncation would.
	var saveErr error
	if p.epochs.truncateAfter(p.leo) {
		saveErr = p.saveEpochs()
	}
	p.broadcastLocked()
	p.mu.Unlock()
	if saveErr != nil {
		p.log2.Error("cannot save the leader epochs after dropping an empty one", "err", saveErr)
	}
	nl := &NotLeaderError{LeaderID: leader, LeaderEpoch: epoch}
	for _, o := range waiting {
		o.finish(AppendResult{}, fmt.Errorf("%w: leadership moved before the batch was committed; it may or may not be kept: %w", ErrTimeout, nl))
	}
	return nil
}

// Settle returns once the append loop has finished everything it took
// before the call. A group planned while this replica led is written
// outside the lock and moves the LEO only when its write returns, even if
// the replica became a follower meanwhile: a new follower settles before
// it compares its log with the leader's, or it would compare a log end
// that the old leadership's write is about to move past, and keep that
// write's records as if the leader had them.
func (p *Partition) Settle() error { return p.do(func() error { return nil }) }

// SetHighWatermark moves the HW forward (never back, never past the LEO).
// The replication layer calls it on the leader as followers catch up, and on
// a follower with the leader's HW.
func (p *Partition) SetHighWatermark(hw int64) {
	p.mu.Lock()
	ready := p.setHWLocked(hw)
	p.mu.Unlock()
	p.finishAcks(ready)
}

// finishAcks completes acks=all appends the HW has passed. If the ISR is
// smaller than min.insync.replicas by then, the batch is committed with
// fewer copies than the producer asked for: that is reported as an
// indeterminate failure, never as success.
func (p *Partition) finishAcks(ready []*op) {
	if len(ready) == 0 {
		return
	}
	p.mu.Lock()
	isr, minISR := p.isrSize, p.minISR
	p.mu.Unlock()
	for _, o := range ready {
		if isr < minISR {
			o.finish(AppendResult{}, fmt.Errorf("%w: the ISR shrank to %d replicas, below min.insync.replicas %d, before batch at offset %d was replicated; it may or may not be kept: %w",
				ErrTimeout, isr, minISR, o.result.BaseOffset, ErrNotEnoughReplicas))
			continue
		}
		o.finish(o.result, nil)
	}
}

// setHWLocked advances the HW and returns the acks it completes; the caller
// finishes them after unlocking. p.mu must be held.
func (p *Partition) setHWLocked(hw int64) []*op {
	if hw > p.leo {
		hw = p.leo
	}
	if hw <= p.hw {
		return nil
	}
	p.hw = hw
	p.commitKeysLocked(hw)
	p.broadcastLocked()
	p.trace(StepHighWatermark, -1, hw)
	if p.role != RoleLeader {
		// A follower's HW is its leader's: it says nothing of batches this
		// replica appended as a leader (none wait: see BecomeFollower and
		// commitGroup).
		return nil
	}
	i := 0
	for i < len(p.acks) && p.acks[i].result.LastOffset < hw {
		i++
	}
	ready := p.acks[:i:i]
	p.acks = p.acks[i:]
	return ready
}

// broadcastLocked wakes everything waiting in Watch. p.mu must be held.
func (p *Partition) broadcastLocked() {
	close(p.notify)
	p.notify = make(chan struct{})
}

// Watch returns a channel closed at the next change of the HW, LEO, role or
// epoch. Take it before reading, then wait on it if the read found nothing.
func (p *Partition) Watch() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.notify
}

// Close drains queued requests (they are written and fsynced, or failed),
// stops the loop and closes the log. Acks=all appends still waiting for
// replication fail with ErrClosed. Idempotent.
func (p *Partition) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closing = true
		p.cond.Broadcast()
		p.mu.Unlock()
		<-p.done
		p.mu.Lock()
		waiting := p.acks
		p.acks = nil
		p.role = RoleNone
		leo, failed := p.leo, p.failed
		p.broadcastLocked()
		p.mu.Unlock()
		var cp logCheckpoint
		if failed == nil {
			p.saveProducers(leo)
			p.saveKeys()
			cp = checkpointOf(p.log)
		}
		for _, o := range waiting {
			o.finish(AppendResult{}, fmt.Errorf("%w: broker stopping before replication finished; the batch may or may not be kept", ErrTimeout))
		}
		err = p.log.Close()
		if failed == nil && err == nil {
			// A clean start reads these instead of replaying or even
			// opening the log. Stamped once the log is closed: nothing
			// writes its files after this.
			if cerr := writeCheckpoint(p.cfg.Dir, filepath.Join(p.cfg.Dir, walDirName), cp); cerr != nil {
				p.log2.Warn("could not write the log checkpoint; the next start opens the log", "err", cerr)
			}
		}
	})
	return err
}

// Dir is the partition's directory.
func (p *Partition) Dir() string { return p.cfg.Dir }
