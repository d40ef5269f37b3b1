package partition

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/wal"
)

// Isolation says how far a read may go.
type Isolation int

const (
	// ReadCommitted stops at the high watermark: what consumers see.
	ReadCommitted Isolation = iota
	// ReadUncommitted stops at the log end offset: what followers copy.
	ReadUncommitted
)

// ReadResult is a run of whole batches and the partition's offsets at the
// time of the read.
type ReadResult struct {
	// Batches holds whole record batches back to back. The first may start
	// before the offset asked for.
	Batches []byte
	// NextOffset is the offset after the last batch returned (the offset
	// asked for when nothing was returned).
	NextOffset     int64
	HighWatermark  int64
	LogStartOffset int64
	LogEndOffset   int64
}

// Read returns whole batches from offset, about maxBytes of them (at least
// one batch when any is available below the isolation limit), appended to
// dst. An offset below the log start or past the LEO is out of range; an
// offset at or past the limit returns no batches.
func (p *Partition) Read(dst []byte, offset int64, maxBytes int, iso Isolation) (ReadResult, error) {
	p.mu.Lock()
	lg, hw, leo, start, closed := p.log, p.hw, p.leo, p.logStart, p.closing
	if iso == ReadUncommitted {
		leo = p.written
	}
	p.mu.Unlock()
	res := ReadResult{NextOffset: offset, HighWatermark: hw, LogStartOffset: start, LogEndOffset: leo, Batches: dst}
	if closed {
		return res, ErrClosed
	}
	if offset < start || offset > leo {
		return res, &OutOfRangeError{Offset: offset, LogStartOffset: start, HighWatermark: hw}
	}
	limit := hw
	if iso == ReadUncommitted {
		limit = leo
	}
	if offset >= limit {
		return res, nil
	}
	out, next, err := lg.Read(dst, offset, maxBytes, limit)
	if err != nil {
		if errors.Is(err, wal.ErrOffsetOutOfRange) {
			// Retention moved the log start under us.
			p.mu.Lock()
			start, hw = p.logStart, p.hw
			p.mu.Unlock()
			return res, &OutOfRangeError{Offset: offset, LogStartOffset: start, HighWatermark: hw}
		}
		if errors.Is(err, wal.ErrClosed) {
			return res, ErrClosed
		}
		// A damaged entry (bit rot: its CRC fails) is never served: the
		// partition reports the damage and its owner reopens it.
		return res, fmt.Errorf("%w: read at offset %d: %v", ErrStorage, offset, p.readFailed(err))
	}
	res.Batches, res.NextOffset = out, next
	return res, nil
}

// OffsetForTimestamp returns the offset of the first committed record whose
// timestamp is at or after ts (unix ms) and that record's timestamp, or the
// HW and -1 when there is none.
func (p *Partition) OffsetForTimestamp(ts int64) (int64, int64, error) {
	p.mu.Lock()
	lg, hw := p.log, p.hw
	p.mu.Unlock()
	off, err := lg.OffsetForTimestamp(ts)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: timestamp lookup: %v", ErrStorage, p.readFailed(err))
	}
	// off is the base of the first batch whose max timestamp reaches ts;
	// find the record inside it, then in later batches if the timestamps
	// inside are out of order.
	for off < hw {
		var found, foundTS int64 = -1, -1
		next, err := lg.ReadEntries(off, 1, hw, func(e wal.Entry) error {
			v, _, err := batch.Next(e.Data)
			if err != nil || v == nil {
				return fmt.Errorf("batch at %d: %v", e.BaseOffset, err)
			}
			recs, err := v.Records(nil)
			if err != nil {
				return fmt.Errorf("batch at %d: %w", e.BaseOffset, err)
			}
			for _, r := range recs {
				if r.Timestamp >= ts && r.Offset < hw {
					found, foundTS = r.Offset, r.Timestamp
					return nil
				}
			}
			return nil
		})
		if err != nil {
			return 0, 0, fmt.Errorf("%w: timestamp lookup: %v", ErrStorage, p.readFailed(err))
		}
		if found >= 0 {
			return found, foundTS, nil
		}
		if next <= off {
			break
		}
		off = next
	}
	return hw, -1, nil
}

// Retention is a topic's retention policy.
type Retention struct {
	// MaxAge: delete segments whose newest record is older (<= 0: forever).
	MaxAge time.Duration
	// MaxBytes: keep the log under this size (< 0: unlimited).
	MaxBytes int64
}

// retentionCutoff returns the offset below which whole sealed segments may
// be deleted under r, or -1. Only committed data (below hw) is ever deleted,
// and segments go oldest first without gaps. Pure.
func retentionCutoff(segs []wal.SegmentInfo, r Retention, now time.Time, hw int64) int64 {
	var total int64
	for _, s := range segs {
		total += s.Bytes
	}
	cutoff := int64(-1)
	oldest := int64(math.MinInt64)
	if r.MaxAge > 0 {
		oldest = now.Add(-r.MaxAge).UnixMilli()
	}
	for _, s := range segs {
		if !s.Sealed || s.NextOffset > hw {
			break
		}
		expired := r.MaxAge > 0 && s.MaxTimestamp < oldest
		oversize := r.MaxBytes >= 0 && total-s.Bytes >= r.MaxBytes
		if !expired && !oversize {
			break
		}
		total -= s.Bytes
		cutoff = s.NextOffset
	}
	return cutoff
}

// ApplyRetention deletes the sealed segments r no longer keeps and returns
// the bytes freed.
func (p *Partition) ApplyRetention(r Retention) (int64, error) {
	var freed int64
	err := p.do(func() error {
		if ll, ok := p.log.(*lazyLog); ok && !ll.mayExpire(r, p.cfg.Now().UnixMilli()) {
			return nil // nothing to delete: leave the log unopened
		}
		p.mu.Lock()
		hw := p.hw
		p.mu.Unlock()
		cutoff := retentionCutoff(p.log.Segments(), r, p.cfg.Now(), hw)
		if cutoff < 0 {
			return nil
		}
		n, err := p.log.DeleteSegmentsBefore(cutoff)
		if err != nil {
			return fmt.Errorf("%w: retention: %v", ErrStorage, err)
		}
		freed = n
		p.mu.Lock()
		leo := p.leo
		p.mu.Unlock()
		// Keep a producer snapshot at or above the new log start, so a
		// restart never needs the deleted batches to rebuild the table.
		p.saveProducers(leo)
		p.mu.Lock()
		defer p.mu.Unlock()
		p.logStart = p.log.StartOffset()
		if p.epochs.truncateBefore(p.logStart) {
			if err := p.saveEpochs(); err != nil {
				return fmt.Errorf("%w: save leader epochs: %v", ErrStorage, err)
			}
		}
		p.broadcastLocked()
		return nil
	})
	return freed, err
}

// EndOffsetForEpoch answers OffsetForLeaderEpoch (Kafka KIP-101): the largest
// epoch <= epoch in this replica's history and the offset where it ended.
// (-1, -1) when none.
func (p *Partition) EndOffsetForEpoch(epoch int32) (int32, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.epochs.endOffsetFor(epoch, p.leo)
}

// TruncateTo cuts the log so it ends at or before offset (a whole batch that
// straddles offset goes), for a follower whose suffix diverged from the
// leader's. It returns the new LEO. The HW never moves back: the caller
// must never truncate below it.
func (p *Partition) TruncateTo(offset int64) (int64, error) {
	var leo int64
	err := p.do(func() error {
		p.mu.Lock()
		hw := p.hw
		p.mu.Unlock()
		if offset < hw {
			return fmt.Errorf("refusing to truncate to %d below the high watermark %d", offset, hw)
		}
		n, err := p.log.TruncateTo(offset)
		if err != nil {
			return fmt.Errorf("%w: truncate to %d: %v", ErrStorage, offset, err)
		}
		p.mu.Lock()
		cut := n != p.leo
		p.leo, p.written, leo = n, n, n
		p.mu.Unlock()
		if err := p.truncateKeys(n); err != nil {
			return fmt.Errorf("%w: truncate to %d: %v", ErrStorage, offset, err)
		}
		// The producer table as of the new end: the newest snapshot at or
		// below it, plus the batches after that snapshot.
		if cut {
			if err := p.loadProducers(n); err != nil {
				return fmt.Errorf("%w: truncate to %d: %v", ErrStorage, offset, err)
			}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.epochs.truncateAfter(n) {
			if err := p.saveEpochs(); err != nil {
				return fmt.Errorf("%w: save leader epochs: %v", ErrStorage, err)
			}
		}
		p.broadcastLocked()
		return nil
	})
	return leo, err
}
