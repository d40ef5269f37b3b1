package partition

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinlog/skein/keyindex"
	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/wal"
)

// This file keeps a key-indexed partition's key index (Config.KeyIndex):
// the offset of each key's last record, for per-key conditional appends
// and latest-value lookups. The index sees every batch the log takes (the
// leader's group commits and a follower's replicated appends), commits as
// the high watermark moves, is cut back by truncations and emptied by
// Reset. Retention needs nothing: a key whose last record is below the log
// start has none (keyindex.Resolve). A clean Close saves it beside the log
// (keyIndexFile); Open loads it and indexes the records after its end, or,
// without a checkpoint it can trust, rebuilds it from the whole log.

// keyIndexFile is the key index checkpoint in the partition directory.
const keyIndexFile = "key-index"

// MaxKeyBytes bounds a key named in a key expectation or a lookup.
const MaxKeyBytes = 64 << 10

// KeyExpectation is one condition of a per-key conditional append: the
// key's last record in the partition is at Offset (-1: it has none).
type KeyExpectation struct {
	Key    []byte
	Offset int64
}

// keyState is a partition's key index. The loop is its only writer, but
// the high watermark (which commits it) moves on other goroutines and
// lookups run on the callers': mu guards ix, and the high watermark waits
// in hw until the next holder of mu applies it, so that mu is never taken
// under p.mu. No log is read while mu is held.
type keyState struct {
	mu   sync.Mutex
	ix   *keyindex.Index
	hw   atomic.Int64
	hash func([]byte) uint64
	path string
}

// lock takes mu and commits the index up to the high watermark.
func (k *keyState) lock() *keyindex.Index {
	k.mu.Lock()
	k.ix.Commit(k.hw.Load())
	return k.ix
}

func (k *keyState) unlock() { k.mu.Unlock() }

// replace swaps in a new index (a rebuild, a Reset).
func (k *keyState) replace(ix *keyindex.Index) {
	k.mu.Lock()
	k.ix = ix
	k.mu.Unlock()
}

// keyLog is what keyindex reads to confirm candidates: the partition's log.
type keyLog struct{ l Log }

// KeyAt reads the key of the record at offset (a copy), walking only the
// keys of its batch.
func (k keyLog) KeyAt(offset int64) ([]byte, error) {
	if offset < k.l.StartOffset() {
		return nil, keyindex.ErrBelowStart
	}
	var key []byte
	found := false
	_, err := k.l.ReadEntries(offset, 1, offset+1, func(e wal.Entry) error {
		return batch.View(e.Data).Keys(func(off int64, k []byte) {
			if off == offset {
				key, found = append([]byte(nil), k...), true
			}
		})
	})
	switch {
	case errors.Is(err, wal.ErrOffsetOutOfRange):
		return nil, keyindex.ErrBelowStart
	case err != nil:
		return nil, err
	case !found:
		return nil, fmt.Errorf("no record at offset %d", offset)
	}
	return key, nil
}

// LastOf scans the log from its start to below for key's last record (the
// slow path after a hash collision).
func (k keyLog) LastOf(key []byte, below int64) (int64, bool, error) {
	last := int64(-1)
	_, err := k.l.ReadEntries(k.l.StartOffset(), math.MaxInt, below, func(e wal.Entry) error {
		return batch.View(e.Data).Keys(func(off int64, k []byte) {
			if off < below && k != nil && string(k) == string(key) {
				last = off
			}
		})
	})
	if errors.Is(err, wal.ErrOffsetOutOfRange) {
		err = nil // retention moved the start meanwhile: look again next time
	}
	return last, last >= 0, err
}

// recordAt reads the record at offset (a copy: the log's buffers are
// reused). keyindex.ErrBelowStart when retention removed it.
func recordAt(l Log, offset int64) (batch.Record, error) {
	if offset < l.StartOffset() {
		return batch.Record{}, keyindex.ErrBelowStart
	}
	var out batch.Record
	found := false
	_, err := l.ReadEntries(offset, 1, offset+1, func(e wal.Entry) error {
		recs, err := batch.View(e.Data).Records(nil)
		if err != nil {
			return fmt.Errorf("batch at offset %d: %w", e.BaseOffset, err)
		}
		for _, r := range recs {
			if r.Offset == offset {
				out, found = copyRecord(r), true
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, wal.ErrOffsetOutOfRange):
		return batch.Record{}, keyindex.ErrBelowStart
	case err != nil:
		return batch.Record{}, err
	case !found:
		return batch.Record{}, fmt.Errorf("no record at offset %d", offset)
	}
	return out, nil
}

func copyRecord(r batch.Record) batch.Record {
	c := batch.Record{Offset: r.Offset, Timestamp: r.Timestamp}
	if r.Key != nil {
		c.Key = append([]byte{}, r.Key...)
	}
	if r.Value != nil {
		c.Value = append([]byte{}, r.Value...)
	}
	for _, h := range r.Headers {
		c.Headers = append(c.Headers, batch.Header{Key: h.Key, Value: append([]byte(nil), h.Value...)})
	}
	return c
}

// indexBatch adds the keys of one stored batch to ix; records below its
// end (indexed already) are skipped.
func indexBatch(ix *keyindex.Index, data []byte) error {
	v := batch.View(data)
	var addErr error
	err := v.Keys(func(off int64, key []byte) {
		if off >= ix.End() && addErr == nil {
			addErr = ix.Add(key, off)
		}
	})
	if err == nil {
		err = addErr
	}
	if err != nil {
		return fmt.Errorf("key index: batch at offset %d: %w", v.BaseOffset(), err)
	}
	ix.Skip(v.NextOffset())
	return nil
}

// indexLog adds the records of lg from ix's end to end.
func indexLog(ix *keyindex.Index, lg Log, end int64) error {
	if ix.End() >= end {
		return nil
	}
	_, err := lg.ReadEntries(max(ix.End(), lg.StartOffset()), math.MaxInt, end, func(e wal.Entry) error {
		return indexBatch(ix, e.Data)
	})
	return err
}

// rebuildKeys builds the index of the log up to end from the log start,
// taken as committed (a truncation below end rebuilds again).
func (p *Partition) rebuildKeys(end int64) (*keyindex.Index, error) {
	began := time.Now()
	start := p.log.StartOffset()
	ix := keyindex.NewTrusted(start, end, p.keys.hash)
	if err := indexLog(ix, p.log, end); err != nil {
		return nil, fmt.Errorf("rebuild the key index: %w", err)
	}
	ix.Skip(end)
	p.log2.Info("key index rebuilt from the log", "from", start, "to", end, "keys", ix.Len(),
		"took", time.Since(began).Round(time.Millisecond))
	return ix, nil
}

// openKeys loads the key index at Open: from the checkpoint a clean Close
// left, when the log was trusted as that Close left it, indexing only the
// records after the checkpoint's end; otherwise by a scan of the whole log.
// The checkpoint is removed once read, so a crash later never finds a
// stale one.
func (p *Partition) openKeys() error {
	if !p.cfg.KeyIndex {
		return nil
	}
	p.keys = &keyState{hash: p.cfg.KeyHash, path: filepath.Join(p.cfg.Dir, keyIndexFile)}
	if p.keys.hash == nil {
		p.keys.hash = keyindex.Hash
	}
	ix, err := keyindex.Load(p.keys.path, p.keys.hash)
	switch {
	case err == nil && p.lazy != nil && ix.End() <= p.leo && ix.Committed() <= p.leo:
		if err := indexLog(ix, p.log, p.leo); err != nil {
			return fmt.Errorf("key index: index the log after the checkpoint: %w", err)
		}
		ix.Skip(p.leo)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		p.log2.Warn("key index checkpoint unusable; rebuilding from the log", "err", err)
		fallthrough
	default:
		if ix, err = p.rebuildKeys(p.leo); err != nil {
			return err
		}
	}
	if err := os.Remove(p.keys.path); err == nil {
		if err := syncDir(p.cfg.Dir); err != nil {
			return fmt.Errorf("key index: %w", err)
		}
	}
	p.keys.ix = ix
	p.keys.hw.Store(p.hw)
	return nil
}

// saveKeys writes the key index checkpoint (Close, once the loop ended).
func (p *Partition) saveKeys() {
	if p.keys == nil {
		return
	}
	ix := p.keys.lock()
	defer p.keys.unlock()
	if err := ix.Save(p.keys.path); err != nil {
		p.log2.Warn("could not save the key index; the next start rebuilds it from the log", "err", err)
	}
}

// commitKeys tells the index the high watermark; p.mu held (the index
// applies it when next locked).
func (p *Partition) commitKeysLocked(hw int64) {
	if p.keys != nil {
		p.keys.hw.Store(hw)
	}
}

// indexAppended adds the keys of a written group's accepted batches
// (their keys were read at Enqueue). Loop only.
func (p *Partition) indexAppended(accepted []*op) {
	if p.keys == nil {
		return
	}
	ix := p.keys.lock()
	defer p.keys.unlock()
	for _, o := range accepted {
		for i, k := range o.keys {
			// Offsets only move forward here: Add cannot fail.
			_ = ix.Add(k, o.result.BaseOffset+int64(i))
		}
		ix.Skip(o.result.LastOffset + 1)
	}
}

// indexReplicated adds the keys of batches a follower appended. Loop only.
func (p *Partition) indexReplicated(entries []wal.Entry) error {
	if p.keys == nil {
		return nil
	}
	ix := p.keys.lock()
	defer p.keys.unlock()
	for _, e := range entries {
		if err := indexBatch(ix, e.Data); err != nil {
			// The caller cuts the log back to where the append began.
			return errors.Join(err, ix.Truncate(entries[0].BaseOffset))
		}
	}
	return nil
}

// truncateKeys cuts the index back to a truncated log's end n, rebuilding
// it when the cut reaches entries it took as committed. Loop only.
func (p *Partition) truncateKeys(n int64) error {
	if p.keys == nil {
		return nil
	}
	ix := p.keys.lock()
	err := ix.Truncate(n)
	p.keys.unlock()
	if !errors.Is(err, keyindex.ErrBelowCommitted) {
		return err
	}
	p.log2.Info("truncation below the key index's committed entries; rebuilding it", "cut", n)
	rebuilt, err := p.rebuildKeys(n)
	if err != nil {
		return err
	}
	p.keys.replace(rebuilt)
	return nil
}

// resetKeys empties the index of a log restarted at next. Loop only.
func (p *Partition) resetKeys(next int64) {
	if p.keys == nil {
		return
	}
	p.keys.hw.Store(next)
	p.keys.replace(keyindex.New(next, p.keys.hash))
}

// batchKeys returns the key of each record of an append's batch, by
// position (nil for a null key). Called at Enqueue for key-indexed
// partitions.
func batchKeys(b []byte, n int) ([][]byte, error) {
	keys := make([][]byte, 0, n)
	err := batch.View(b).Keys(func(_ int64, k []byte) { keys = append(keys, k) })
	return keys, err
}

// resolveExpectations reads, for each key some append of the group
// expects, the offset of its last record (-1: none): the state planGroup
// checks expectations against. nil when no append of the group has any.
// Loop only: the index and the log do not change meanwhile.
func (p *Partition) resolveExpectations(group []*op) (map[string]int64, error) {
	var cur map[string]int64
	for _, o := range group {
		for _, e := range o.req.KeyExpectations {
			if _, ok := cur[string(e.Key)]; ok {
				continue
			}
			if cur == nil {
				cur = make(map[string]int64)
			}
			off, err := p.lastOf(p.log, e.Key, false)
			if err != nil {
				return nil, err
			}
			cur[string(e.Key)] = off
		}
	}
	return cur, nil
}

// lastOf returns the offset of key's last record (-1: none), among the
// committed records only if committed. Collisions are confirmed against
// the log lg, outside the index's lock.
func (p *Partition) lastOf(lg Log, key []byte, committed bool) (int64, error) {
	ix := p.keys.lock()
	off, ok := ix.Lookup(key)
	end := ix.End()
	if committed {
		off, ok = ix.LookupCommitted(key)
		end = ix.Committed()
	}
	p.keys.unlock()
	if !ok {
		return -1, nil
	}
	off, ok, err := keyindex.Confirm(key, off, end, keyLog{lg})
	if err != nil {
		return -1, fmt.Errorf("%w: key index: read the log: %v", ErrStorage, err)
	}
	if !ok {
		return -1, nil
	}
	return off, nil
}

// KeyRecord is the latest committed record of a key (Latest).
type KeyRecord struct {
	Found         bool
	Record        batch.Record
	HighWatermark int64
}

// Latest returns key's last committed record (below the high watermark)
// from the key index, reading the log only at the candidate's offset (and
// scanning it only when another key shares the key's hash). ErrNoKeyIndex
// when the partition keeps none; ErrNotLeader unless it leads with a high
// watermark a consumer may read at.
func (p *Partition) Latest(key []byte) (KeyRecord, error) {
	if p.keys == nil {
		return KeyRecord{}, ErrNoKeyIndex
	}
	if len(key) == 0 || len(key) > MaxKeyBytes {
		return KeyRecord{}, fmt.Errorf("%w: key of %d bytes: must be 1 to %d bytes", ErrInvalidExpectation, len(key), MaxKeyBytes)
	}
	p.mu.Lock()
	role, epoch, leader, ready, hw, lg := p.role, p.epoch, p.leaderID, p.hw >= p.leaderStart, p.hw, p.log
	p.mu.Unlock()
	if role != RoleLeader || !ready {
		return KeyRecord{}, &NotLeaderError{LeaderID: leader, LeaderEpoch: epoch}
	}
	off, err := p.lastOf(lg, key, true)
	if err != nil || off < 0 {
		return KeyRecord{HighWatermark: hw}, err
	}
	r, err := recordAt(lg, off)
	if errors.Is(err, keyindex.ErrBelowStart) {
		return KeyRecord{HighWatermark: hw}, nil
	}
	if err != nil {
		return KeyRecord{}, p.readFailed(fmt.Errorf("%w: read offset %d: %w", ErrStorage, off, err))
	}
	return KeyRecord{Found: true, Record: r, HighWatermark: hw}, nil
}

// KeyIndexStats is the size of a partition's key index.
type KeyIndexStats struct {
	Enabled bool // the partition keeps a key index
	Keys    int  // distinct key hashes
	Bytes   int  // heap bytes, about
}

// KeyIndexStats reports the key index's size (zero without one).
func (p *Partition) KeyIndexStats() KeyIndexStats {
	if p.keys == nil {
		return KeyIndexStats{}
	}
	ix := p.keys.lock()
	defer p.keys.unlock()
	return KeyIndexStats{Enabled: true, Keys: ix.Len(), Bytes: ix.Bytes()}
}

// failExpecting fails the appends of group that carry key expectations
// (their keys' offsets could not be read) and returns the others.
func (p *Partition) failExpecting(group []*op, err error) []*op {
	rest := group[:0:0]
	for _, o := range group {
		if len(o.req.KeyExpectations) > 0 {
			o.finish(AppendResult{}, err)
			continue
		}
		rest = append(rest, o)
	}
	return rest
}
