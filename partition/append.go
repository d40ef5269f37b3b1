package partition

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/wal"
)

// Acks says when an append completes.
type Acks int

const (
	// AcksAll: once the HW has passed the batch (every ISR member has it on
	// disk) and the ISR has at least MinISR members.
	AcksAll Acks = iota
	// AcksLeader: once the leader has fsynced the batch.
	AcksLeader
)

// AppendRequest is one producer batch for the leader.
type AppendRequest struct {
	// Batch is one encoded record batch; the partition validates it and
	// stamps its base offset and leader epoch in place.
	Batch []byte
	// LeaderEpoch the client believes current; -1: any.
	LeaderEpoch int32
	// ExpectedOffset >= 0 makes the append conditional on the LEO.
	ExpectedOffset int64
	// KeyExpectations make the append conditional on the last offsets of
	// keys of its records (key-indexed partitions only); see
	// KeyExpectation.
	KeyExpectations []KeyExpectation
	Acks            Acks
	// Timeout bounds the wait for replication under AcksAll (default 30 s).
	Timeout time.Duration
}

// AppendResult is where a batch landed.
type AppendResult struct {
	BaseOffset     int64
	LastOffset     int64
	LogStartOffset int64
	// Duplicate: the batch is a retry of an idempotent producer's batch
	// appended earlier, at these offsets; it was not appended again.
	Duplicate bool
	// LeaderEpoch is the epoch the batch was appended in; -1 for a
	// duplicate.
	LeaderEpoch int32
}

const defaultAckTimeout = 30 * time.Second

type opKind int

const (
	opAppend opKind = iota
	opFunc
)

// op is one unit of work for the loop.
type op struct {
	kind opKind

	// opAppend
	req    AppendRequest
	count  int
	prod   producerBatch // producer id -1: not idempotent
	keys   [][]byte      // the records' keys, key-indexed partitions only
	result AppendResult
	done   func(AppendResult, error)
	over   atomic.Bool // finish has run
	timer  *time.Timer

	// opFunc: runs on the loop with exclusive use of the log.
	fn   func() error
	errc chan error
}

func (o *op) finish(r AppendResult, err error) {
	if !o.over.CompareAndSwap(false, true) {
		return
	}
	if o.timer != nil {
		o.timer.Stop()
	}
	if err != nil {
		r = AppendResult{}
	}
	o.done(r, err)
}

// Enqueue validates req and queues it for the next group commit. done is
// called exactly once: on the caller's goroutine for a request refused at
// once (bad batch, not leader), else later from the partition's goroutines.
// done must not block. Requests from one goroutine are appended in the order
// of their Enqueue calls.
func (p *Partition) Enqueue(req AppendRequest, done func(AppendResult, error)) {
	o := &op{kind: opAppend, req: req, done: done}
	info, err := batch.Validate(req.Batch, batch.Limits{
		MaxRecordBytes:       int(p.maxRecordBytes.Load()),
		MaxUncompressedBytes: batch.MaxBatchBytes,
	})
	if err != nil {
		o.finish(AppendResult{}, batchError(err))
		return
	}
	o.count = info.Records
	o.prod = producerOf(batch.View(req.Batch))
	if p.keys != nil || p.compacted.Load() {
		if o.keys, err = batchKeys(req.Batch, o.count); err != nil {
			o.finish(AppendResult{}, batchError(err))
			return
		}
		if err := p.checkKeyed(o.keys); err != nil {
			o.finish(AppendResult{}, err)
			return
		}
	}
	if err := checkExpectations(req.KeyExpectations, req.ExpectedOffset, o.keys, p.keys != nil); err != nil {
		o.finish(AppendResult{}, err)
		return
	}
	p.mu.Lock()
	if err := p.admitLocked(&req); err != nil {
		p.mu.Unlock()
		o.finish(AppendResult{}, err)
		return
	}
	p.queue = append(p.queue, o)
	p.cond.Signal()
	p.mu.Unlock()
}

// Append is Enqueue that waits for the outcome. If ctx ends first it returns
// ctx.Err(), and the batch may still be appended.
func (p *Partition) Append(ctx context.Context, req AppendRequest) (AppendResult, error) {
	type outcome struct {
		r   AppendResult
		err error
	}
	ch := make(chan outcome, 1)
	p.Enqueue(req, func(r AppendResult, err error) { ch <- outcome{r, err} })
	select {
	case o := <-ch:
		return o.r, o.err
	case <-ctx.Done():
		return AppendResult{}, ctx.Err()
	}
}

// checkKeyed refuses a batch with a record without a key when the topic is
// compacted: the cleaner keeps the latest record of each key, so a keyless
// record could never be kept or looked up.
func (p *Partition) checkKeyed(keys [][]byte) error {
	if !p.compacted.Load() {
		return nil
	}
	for i, k := range keys {
		if k == nil {
			return fmt.Errorf("%w: record %d of the batch has no key: topic %q is compacted (cleanup.policy compact keeps the latest record of each key), so every record needs a key; nothing was appended",
				ErrInvalidBatch, i, p.cfg.Topic)
		}
	}
	return nil
}

func batchError(err error) error {
	if errors.Is(err, batch.ErrTooLarge) {
		return fmt.Errorf("%w: %v", ErrRecordTooLarge, err)
	}
	return fmt.Errorf("%w: %v", ErrInvalidBatch, err)
}

// admitLocked checks that this replica may take req now. p.mu held.
func (p *Partition) admitLocked(req *AppendRequest) error {
	if p.closing {
		return ErrClosed
	}
	return p.appendableLocked(req)
}

// appendableLocked checks that req may be appended now; queued requests
// are still appended while the partition drains for Close. p.mu held.
func (p *Partition) appendableLocked(req *AppendRequest) error {
	st := p.appendStateLocked()
	return st.appendable(req)
}

// appendStateLocked copies what the append checks read. p.mu held.
func (p *Partition) appendStateLocked() appendState {
	return appendState{
		failed: p.failed, role: p.role, handoff: p.handoff, leaderID: p.leaderID, epoch: p.epoch,
		isrSize: p.isrSize, minISR: p.minISR, leo: p.leo, logStart: p.logStart, nowMs: p.cfg.Now().UnixMilli(),
	}
}

// do runs fn on the loop, after everything queued before it, with exclusive
// use of the log.
func (p *Partition) do(fn func() error) error {
	o := &op{kind: opFunc, fn: fn, errc: make(chan error, 1)}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return ErrClosed
	}
	p.queue = append(p.queue, o)
	p.cond.Signal()
	p.mu.Unlock()
	return <-o.errc
}

// run is the append loop: the only goroutine that writes the log.
func (p *Partition) run() {
	defer close(p.done)
	var group []*op
	for {
		p.mu.Lock()
		for len(p.queue) == 0 && !p.closing {
			p.cond.Wait()
		}
		if len(p.queue) == 0 {
			p.mu.Unlock()
			return
		}
		// Take appends up to the group budget, or one func op.
		group = group[:0]
		if p.queue[0].kind == opFunc {
			group = append(group, p.queue[0])
		} else {
			bytes := 0
			for _, o := range p.queue {
				if o.kind != opAppend || (len(group) > 0 && bytes+len(o.req.Batch) > p.cfg.MaxGroupBytes) {
					break
				}
				bytes += len(o.req.Batch)
				group = append(group, o)
			}
		}
		n := copy(p.queue, p.queue[len(group):])
		clear(p.queue[n:])
		p.queue = p.queue[:n]
		p.mu.Unlock()

		if group[0].kind == opFunc {
			group[0].errc <- group[0].fn()
			continue
		}
		p.commitGroup(group)
	}
}

// commitGroup carries out a group of appends: planGroup decides which are
// written (at which offsets), answered as duplicates, or refused; the
// accepted batches are written and fsynced as one log append; the producer
// table changes are applied only once the write succeeded; then each
// request completes, at once or when the HW passes it.
func (p *Partition) commitGroup(group []*op) {
	keys, err := p.resolveExpectations(group)
	if err != nil {
		group = p.failExpecting(group, err)
	}
	p.mu.Lock()
	plan := planGroup(p.appendStateLocked(), &p.producers, keys, group)
	if len(plan.accepted) > 0 {
		// WaitCommitted waits for this group too: its LEO is not counted yet.
		p.writing = true
		defer p.doneWriting()
	}
	p.mu.Unlock()
	for i, o := range plan.refused {
		o.finish(AppendResult{}, plan.refusedErr[i])
	}
	if len(plan.accepted) == 0 && len(plan.dups) == 0 {
		return
	}
	if len(plan.accepted) > 0 && !p.writeGroup(&plan) {
		return
	}
	if len(plan.dups) > 0 && p.cfg.Observer != nil {
		if do, ok := p.cfg.Observer.(DuplicateObserver); ok {
			do.DuplicatesAnswered(len(plan.dups))
		}
	}
	p.completeGroup(&plan)
}

// writeGroup writes and fsyncs the accepted batches of plan, stamped with
// their offsets and epoch, and applies the staged producer state. On a
// failed write it fails the group (writeFailed) and returns false. Loop only.
func (p *Partition) writeGroup(plan *groupPlan) bool {
	if err := p.retryRecovery(); err != nil {
		// An earlier failed write is not cut back yet (no space): nothing
		// else goes in before it is.
		for _, o := range append(plan.accepted, plan.dups...) {
			o.finish(AppendResult{}, err)
		}
		return false
	}
	entries := make([]wal.Entry, len(plan.accepted))
	records, bytes := 0, 0
	for i, o := range plan.accepted {
		v := batch.View(o.req.Batch)
		v.SetBaseOffset(o.result.BaseOffset)
		v.SetLeaderEpoch(plan.epoch)
		entries[i] = wal.Entry{
			BaseOffset:   o.result.BaseOffset,
			LastOffset:   o.result.LastOffset,
			MaxTimestamp: v.MaxTimestamp(),
			Data:         o.req.Batch,
		}
		records += o.count
		bytes += len(o.req.Batch)
	}
	began := time.Now()
	if err := p.log.Write(entries...); err != nil {
		// A duplicate may be of a batch of this group: it fails too
		// (retriable: its retry is checked again).
		p.writeFailed(err, append(plan.accepted, plan.dups...), entries[0].BaseOffset)
		return false
	}
	// Followers may copy the group while it is fsynced here: the HW
	// still counts this replica only up to its fsynced end.
	p.mu.Lock()
	p.written = plan.next
	p.broadcastLocked()
	p.mu.Unlock()
	p.trace(StepWritten, -1, plan.next)
	if err := p.log.Sync(); err != nil {
		p.writeFailed(err, append(plan.accepted, plan.dups...), entries[0].BaseOffset)
		return false
	}
	p.trace(StepSynced, -1, plan.next)
	if p.cfg.Observer != nil {
		p.cfg.Observer.GroupCommitted(len(entries), records, bytes, time.Since(began))
	}
	for id, e := range plan.staged {
		p.producers.entries[id] = e
	}
	p.indexAppended(plan.accepted)
	p.afterAppend(bytes, plan.next)
	return true
}

// completeGroup moves the LEO past a written group and completes its
// requests: acks=leader ones and those the HW already passed at once, the
// others when the HW passes them (or their timeout ends). Loop only.
func (p *Partition) completeGroup(plan *groupPlan) {
	p.mu.Lock()
	p.leo = plan.next
	p.writing = false
	done := append(plan.accepted, plan.dups...)
	if p.role != RoleLeader || p.epoch != plan.epoch {
		// The leadership moved while the group was written. BecomeFollower
		// failed the acknowledgements waiting then, but these were not
		// waiting yet, and must not wait now: the HW this replica learns
		// from here on is another leader's, whose log may hold other
		// records at these offsets (and this replica's suffix is about to
		// be truncated by epoch). Whether the batches survive is unknown.
		if len(plan.accepted) > 0 {
			p.broadcastLocked()
		}
		nl := &NotLeaderError{LeaderID: p.leaderID, LeaderEpoch: p.epoch}
		p.mu.Unlock()
		for _, o := range done {
			o.finish(AppendResult{}, fmt.Errorf("%w: leadership moved (epoch %d) while the batch was written; it may or may not be kept: %w", ErrTimeout, plan.epoch, nl))
		}
		return
	}
	var ready []*op
	if p.solo {
		ready = p.setHWLocked(plan.next)
	} else if len(plan.accepted) > 0 {
		p.broadcastLocked()
	}
	var now []*op
	for _, o := range done {
		if o.req.Acks == AcksLeader || o.result.LastOffset < p.hw {
			now = append(now, o)
			continue
		}
		p.awaitAckLocked(o)
	}
	p.mu.Unlock()
	p.finishAcks(ready)
	for _, o := range now {
		if o.req.Acks == AcksLeader {
			o.finish(o.result, nil)
		} else {
			p.finishAcks([]*op{o})
		}
	}
}

// awaitAckLocked queues an acks=all append until the HW passes it, with a
// timer that fails it after its timeout. p.mu held.
func (p *Partition) awaitAckLocked(o *op) {
	// Keep p.acks in offset order: a duplicate's original may be older
	// than appends already waiting.
	i := len(p.acks)
	for i > 0 && p.acks[i-1].result.LastOffset > o.result.LastOffset {
		i--
	}
	p.acks = slices.Insert(p.acks, i, o)
	timeout := o.req.Timeout
	if timeout <= 0 {
		timeout = defaultAckTimeout
	}
	o.timer = time.AfterFunc(timeout, func() { p.expireAck(o) })
}

// doneWriting ends a group's write (see WaitCommitted).
// A group that got its LEO in has cleared the flag already, under the
// same lock as the wake-up that announced the new LEO; only a failed write
// needs one more.
func (p *Partition) doneWriting() {
	p.mu.Lock()
	if p.writing {
		p.writing = false
		p.broadcastLocked()
	}
	p.mu.Unlock()
}

// expireAck fails an acks=all append that waited too long for replication.
func (p *Partition) expireAck(o *op) {
	p.mu.Lock()
	for i, w := range p.acks {
		if w == o {
			p.acks = append(p.acks[:i], p.acks[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	o.finish(AppendResult{}, fmt.Errorf("%w: batch at offset %d was appended on the leader but not replicated to the ISR in time; it may or may not be kept",
		ErrTimeout, o.result.BaseOffset))
}

// writeFailed handles a failed log append. Out of space: reopen the log
// (its tail repair drops a partial write), cut it back to the last good end
// so no byte of the failed group survives, and keep serving. Anything else,
// or a failed recovery: the partition stops taking writes and OnFatal runs.
func (p *Partition) writeFailed(err error, accepted []*op, prevLEO int64) {
	p.log2.Error("log append failed", "err", err, "batches", len(accepted))
	fail := fmt.Errorf("%w: %v; nothing was appended", ErrStorage, err)
	if errors.Is(err, errDamagedLog) {
		// A lazily opened log found damaged: reported through OnDamage,
		// and the owner reopens the partition. Not a failure of the disk.
		for _, o := range accepted {
			o.finish(AppendResult{}, fail)
		}
		return
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		rerr := p.reopenAt(prevLEO)
		if rerr != nil && (errors.Is(rerr, syscall.ENOSPC) || errors.Is(rerr, syscall.EDQUOT)) {
			// Cutting the log back needs space too. Nothing of the group
			// was acknowledged or counted: keep the partition out of
			// service and cut it back before the next write.
			p.log2.Error("cannot cut the log back yet (disk full); retrying before the next write", "err", rerr, "log_end", prevLEO)
			p.unrecovered = &unrecoveredAppend{leo: prevLEO}
			rerr = nil
		}
		if rerr == nil {
			for _, o := range accepted {
				o.finish(AppendResult{}, fail)
			}
			return
		}
		p.log2.Error("log recovery after a failed write failed", "err", rerr)
	}
	p.mu.Lock()
	p.failed = err
	p.broadcastLocked()
	p.mu.Unlock()
	// Tell the broker before the clients hear of it.
	if p.cfg.OnFatal != nil {
		p.cfg.OnFatal(fmt.Errorf("partition %s-%d: %w", p.cfg.Topic, p.cfg.Partition, err))
	}
	for _, o := range accepted {
		o.finish(AppendResult{}, fmt.Errorf("%w: %v; the write's outcome on disk is unknown and the partition is offline", ErrStorage, err))
	}
}

// reopenAt closes and reopens the log and truncates it to leo. Loop only.
func (p *Partition) reopenAt(leo int64) error {
	_ = p.log.Close()
	lg, err := p.cfg.OpenLog(p.cfg.Dir + "/" + walDirName)
	if err != nil {
		return err
	}
	if lg.NextOffset() > leo {
		if _, err := lg.TruncateTo(leo); err != nil {
			lg.Close()
			return err
		}
	}
	if lg.NextOffset() != leo {
		lg.Close()
		return fmt.Errorf("reopened log ends at %d, want %d", lg.NextOffset(), leo)
	}
	p.mu.Lock()
	p.log = lg
	p.written = leo
	p.mu.Unlock()
	p.unrecovered = nil // the log ends at leo again, whoever asked
	return nil
}
