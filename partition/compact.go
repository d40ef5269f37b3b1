package partition

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/wal"
)

// This file is the log cleaner's work on one partition of a compacted
// topic (cleanup.policy compact): Clean keeps the latest record of every
// key and drops the rest, and drops tombstones (null values) once they are
// older than the delete retention. The broker's cleaner decides when and
// how fast (see broker/cleaner.go).

// ErrCompactionUnsupported: the partition's storage cannot rewrite its
// segments (the journal engine).
var ErrCompactionUnsupported = errors.New("this storage engine does not support compaction (cleanup.policy compact): use the wal engine")

// segmentCompactor is a log that can rewrite a sealed segment in place
// (*wal.Log).
type segmentCompactor interface {
	CompactSegment(base int64, rewrite func(wal.Entry) ([]byte, error)) (before, after int64, err error)
}

// CompactSegment opens the log if needed and forwards to it.
func (l *lazyLog) CompactSegment(base int64, rewrite func(wal.Entry) ([]byte, error)) (int64, int64, error) {
	lg, err := l.get()
	if err != nil {
		return 0, 0, err
	}
	c, ok := lg.(segmentCompactor)
	if !ok {
		return 0, 0, ErrCompactionUnsupported
	}
	return c.CompactSegment(base, rewrite)
}

// CleanOptions configures one cleaning pass.
type CleanOptions struct {
	// DeleteRetention: a tombstone (a record with a null value) that is
	// its key's latest record is removed once its timestamp is older than
	// this (delete.retention.ms). Superseded records go at once.
	DeleteRetention time.Duration
	// MinDirtyRatio: the pass does nothing while the share of the
	// cleanable bytes written since the last pass is below it, unless a
	// tombstone kept by an earlier pass has come of age.
	MinDirtyRatio float64
	// Throttle, if set, is called with the bytes the pass is about to
	// read or has written (the I/O budget); it may sleep.
	Throttle func(bytes int)
}

// CleanResult is what a pass did.
type CleanResult struct {
	Ran             bool  // false: nothing (or not enough) to clean
	Segments        int   // segments rewritten
	BytesRead       int64 // log bytes read (both passes)
	BytesBefore     int64 // size of the rewritten segments before
	BytesAfter      int64 // and after
	Removed         int   // records removed (tombstones included)
	Tombstones      int   // tombstones removed
	CleanableOffset int64 // the pass covered [log start, CleanableOffset)
}

// cleanState is what the cleaner remembers of a partition between passes.
type cleanState struct {
	mu        sync.Mutex
	cleanedTo int64 // offsets below were cleaned by the last pass
	// tombstoneDue: unix ms when the oldest tombstone the last pass kept
	// comes of age; math.MaxInt64 if it kept none.
	tombstoneDue int64
}

// cleanable returns the sealed segments wholly below the high watermark:
// never the tail (active) segment, never an uncommitted record. Pure.
func cleanable(segs []wal.SegmentInfo, hw int64) []wal.SegmentInfo {
	n := 0
	for n < len(segs) && segs[n].Sealed && segs[n].NextOffset <= hw {
		n++
	}
	return segs[:n]
}

// dirtyRatio is the share of the cleanable bytes at or after cleanedTo.
// Pure.
func dirtyRatio(segs []wal.SegmentInfo, cleanedTo int64) float64 {
	var total, dirty int64
	for _, s := range segs {
		total += s.Bytes
		if s.BaseOffset >= cleanedTo {
			dirty += s.Bytes
		}
	}
	if total == 0 {
		return 0
	}
	return float64(dirty) / float64(total)
}

// DirtyRatio is the share of this partition's cleanable log (sealed
// segments below the high watermark) written since the cleaner's last
// pass: 1 before any pass, 0 with nothing cleanable.
func (p *Partition) DirtyRatio() float64 {
	if ll, ok := p.log.(*lazyLog); ok && !ll.isOpen() {
		return 0 // unopened since a clean shutdown: not read for a gauge
	}
	p.mu.Lock()
	hw := p.hw
	p.mu.Unlock()
	p.clean.mu.Lock()
	defer p.clean.mu.Unlock()
	return dirtyRatio(cleanable(p.log.Segments(), hw), p.clean.cleanedTo)
}

// Clean runs one cleaning pass over the sealed segments below the high
// watermark. It first reads them to learn the latest offset of every key,
// then rewrites each segment that holds something to drop
// (wal.Log.CompactSegment: offsets never move, and a crash leaves each
// segment old or new). Records without a key are dropped (a compacted
// topic refuses them; they can only predate the policy). It runs beside
// appends and reads, on the caller's goroutine; passes of one partition
// must not overlap.
func (p *Partition) Clean(opts CleanOptions) (CleanResult, error) {
	var res CleanResult
	comp, ok := p.log.(segmentCompactor)
	if !ok {
		return res, ErrCompactionUnsupported
	}
	if ll, ok := p.log.(*lazyLog); ok {
		lg, err := ll.get()
		if err != nil {
			return res, err
		}
		if _, ok := lg.(segmentCompactor); !ok {
			return res, ErrCompactionUnsupported
		}
	}
	p.mu.Lock()
	hw, closing := p.hw, p.closing
	p.mu.Unlock()
	if closing {
		return res, ErrClosed
	}
	segs := cleanable(p.log.Segments(), hw)
	if len(segs) == 0 {
		return res, nil
	}
	now := p.cfg.Now().UnixMilli()
	p.clean.mu.Lock()
	ratio, due := dirtyRatio(segs, p.clean.cleanedTo), p.clean.tombstoneDue
	p.clean.mu.Unlock()
	if ratio == 0 || ratio < opts.MinDirtyRatio {
		if due == 0 || due > now {
			return res, nil
		}
	}
	res.Ran = true
	start, end := segs[0].BaseOffset, segs[len(segs)-1].NextOffset
	res.CleanableOffset = end
	latest, read, err := p.latestOffsets(start, end, opts.Throttle)
	res.BytesRead += read
	if errors.Is(err, wal.ErrOffsetOutOfRange) {
		return res, nil // retention moved the log start meanwhile: the next pass
	}
	if err != nil {
		return res, err
	}
	horizon := now - opts.DeleteRetention.Milliseconds()
	nextDue := int64(math.MaxInt64)
	var gone []keyAt // tombstones removed, to forget in the key index
	keep := func(off int64, key, value []byte, ts int64) bool {
		if key == nil || latest[string(key)] != off {
			return false
		}
		if value == nil {
			if ts < horizon {
				gone = append(gone, keyAt{string(key), off})
				return false
			}
			nextDue = min(nextDue, ts+opts.DeleteRetention.Milliseconds())
		}
		return true
	}
	for _, s := range segs {
		kept := len(gone) // the tombstones of a segment not swapped in stay
		before, after, err := comp.CompactSegment(s.BaseOffset, func(e wal.Entry) ([]byte, error) {
			if opts.Throttle != nil {
				opts.Throttle(len(e.Data))
			}
			res.BytesRead += int64(len(e.Data))
			n := len(gone)
			out, removed, err := batch.View(e.Data).Filter(keep)
			if err != nil {
				return nil, fmt.Errorf("batch at offset %d: %w", e.BaseOffset, err)
			}
			res.Removed += removed
			res.Tombstones += len(gone) - n
			if out != nil && opts.Throttle != nil {
				opts.Throttle(len(out))
			}
			return out, nil
		})
		if err != nil || after == before {
			gone = gone[:kept]
		}
		if errors.Is(err, wal.ErrSegmentChanged) {
			break // truncated or reset meanwhile: the next pass sees the log as it is
		}
		if errors.Is(err, wal.ErrClosed) {
			return res, ErrClosed // the partition closed meanwhile
		}
		if err != nil {
			return res, fmt.Errorf("%w: compact the segment at offset %d: %v", ErrStorage, s.BaseOffset, p.readFailed(err))
		}
		if after != before {
			res.Segments++
			res.BytesBefore += before
			res.BytesAfter += after
		}
	}
	p.forgetTombstones(gone, latest)
	p.clean.mu.Lock()
	p.clean.cleanedTo, p.clean.tombstoneDue = end, nextDue
	p.clean.mu.Unlock()
	return res, nil
}

type keyAt struct {
	key string
	off int64
}

// latestOffsets reads [start, end) and returns the offset of each key's
// last record in it, and the bytes read.
func (p *Partition) latestOffsets(start, end int64, throttle func(int)) (map[string]int64, int64, error) {
	latest := make(map[string]int64)
	var read int64
	for next := start; next < end; {
		n, err := p.log.ReadEntries(next, 1<<20, end, func(e wal.Entry) error {
			if throttle != nil {
				throttle(len(e.Data))
			}
			read += int64(len(e.Data))
			return batch.View(e.Data).Keys(func(off int64, key []byte) {
				if key != nil && off < end {
					latest[string(key)] = off
				}
			})
		})
		if errors.Is(err, wal.ErrClosed) {
			return nil, read, ErrClosed
		}
		if errors.Is(err, wal.ErrOffsetOutOfRange) {
			return nil, read, err
		}
		if err != nil {
			return nil, read, fmt.Errorf("%w: cleaner: read at offset %d: %v", ErrStorage, next, p.readFailed(err))
		}
		if n <= next {
			break
		}
		next = n
	}
	return latest, read, nil
}

// forgetTombstones drops the key index entries of removed tombstones, so a
// lookup of their keys answers "no record" without reading the log. An
// entry whose hash another key of the log shares is kept (a lookup then
// confirms against the log, which finds the other key's record).
func (p *Partition) forgetTombstones(gone []keyAt, latest map[string]int64) {
	if p.keys == nil || len(gone) == 0 {
		return
	}
	ix := p.keys.lock()
	defer p.keys.unlock()
	hashes := make(map[uint64]int, len(latest))
	for k := range latest {
		hashes[p.keys.hash([]byte(k))]++
	}
	for _, g := range gone {
		if hashes[p.keys.hash([]byte(g.key))] == 1 {
			ix.Forget([]byte(g.key), g.off)
		}
	}
}
