package journal

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strconv"
	"time"

	"github.com/skeinlog/skein/segment"
)

// Checkpoint flushes every attached partition's segments, records how far
// each is durable, and truncates the journal in front of the records that
// no replay needs any more. Every record already in the journal when it
// starts was written to its segment log before (Write writes the segment
// first), so once the flushes return, those records are durable in the
// segments and replay can start after them.
func (j *Journal) Checkpoint() error {
	j.cpMu.Lock()
	defer j.cpMu.Unlock()
	j.mu.Lock()
	if err := j.usable(); err != nil {
		j.mu.Unlock()
		return err
	}
	for _, err := range j.cpBlocked {
		j.mu.Unlock()
		return err
	}
	upto := j.next // replay may start here once the flushes below are done
	parts := make([]*Partition, 0, len(j.parts))
	for _, p := range j.parts {
		parts = append(parts, p)
	}
	j.mu.Unlock()

	flushed := make(map[string]int64, len(parts))
	for _, p := range parts {
		d, err := p.seg.Flush()
		if errors.Is(err, segment.ErrClosed) {
			continue // detached meanwhile: Detach recorded its durable offset
		}
		if err != nil {
			return fmt.Errorf("journal: checkpoint: flush %q: %w", p.name, err)
		}
		flushed[p.name] = d
	}
	j.mu.Lock()
	for name, d := range flushed {
		if _, ok := j.parts[name]; ok {
			j.durable[name] = d
		}
	}
	cp := checkpoint{Version: 1, ReplayFrom: upto, Partitions: maps.Clone(j.durable)}
	j.mu.Unlock()
	if err := writeCheckpoint(j.dir, cp); err != nil {
		return err
	}
	j.checkpoints.Add(1)
	return j.truncateFront(upto)
}

// truncateFront drops the journal's records before index, as far as they
// are written (records still waiting for their group stay until the next
// checkpoint) and as far as it costs no rewrite: tidwall rewrites the
// segment file holding the new first entry from that entry on, so the
// journal is cut at the last entry of the segment before the one holding
// index, or wholly when index is past its end. The entries kept before
// index are skipped by replay (the checkpoint says where it starts).
func (j *Journal) truncateFront(index uint64) error {
	j.twMu.Lock()
	defer j.twMu.Unlock()
	first, err1 := j.tw.FirstIndex()
	last, err2 := j.tw.LastIndex()
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	at := min(index, last+1)
	if at <= last {
		segs, err := segmentFiles(j.dir)
		if err != nil {
			return err
		}
		at = first
		for _, s := range segs {
			start, err := strconv.ParseUint(filepath.Base(s), 10, 64)
			if err == nil && start > first && start <= index {
				at = start - 1
			}
		}
	}
	if at <= first {
		return nil
	}
	if err := j.tw.TruncateFront(at); err != nil {
		return fmt.Errorf("journal: truncate front to %d: %w", at, err)
	}
	return j.followTail()
}

// checkpointLoop runs Checkpoint every CheckpointInterval until stop.
func (j *Journal) checkpointLoop() {
	defer j.done.Done()
	t := time.NewTicker(j.opts.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
			if err := j.Checkpoint(); err != nil && !errors.Is(err, ErrClosed) {
				j.log.Error("journal: checkpoint failed; the journal keeps every record until one succeeds", "err", err)
			}
		}
	}
}

// Stats returns the journal's counters.
func (j *Journal) Stats() Stats {
	j.twMu.Lock()
	first, _ := j.tw.FirstIndex()
	last, _ := j.tw.LastIndex()
	j.twMu.Unlock()
	j.mu.Lock()
	pending := int64(len(j.fill.buf) + len(j.owed))
	j.mu.Unlock()
	return Stats{Fsyncs: j.fsyncs.Load(), Records: j.records.Load(), Bytes: j.bytes.Load(),
		Checkpoints: j.checkpoints.Load(), NoSpace: j.noSpace.Load(), FirstIndex: first, Index: last,
		PendingBytes: pending, TailBytes: j.tailBytes.Load()}
}

// Close commits what is waiting, takes a last checkpoint (so that the next
// start replays nothing when every partition was attached), and closes the
// journal. Detach and close the partitions' logs after it.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closing {
		j.mu.Unlock()
		return nil
	}
	j.closing = true // no more records
	j.space.Broadcast()
	j.mu.Unlock()
	close(j.stop)
	j.done.Wait() // the committer has written what was waiting
	var cerr error
	if j.replayed {
		cerr = j.Checkpoint()
	}
	j.mu.Lock()
	j.closed = true
	j.space.Broadcast()
	j.mu.Unlock()
	j.twMu.Lock()
	defer j.twMu.Unlock()
	return errors.Join(cerr, j.tw.Close())
}
