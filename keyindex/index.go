package keyindex

import (
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// Hash is the key hash the index uses (xxHash64, never 0: 0 marks an
// empty slot). It is stable across processes: checkpoints depend on it.
func Hash(key []byte) uint64 {
	if h := xxhash.Sum64(key); h != 0 {
		return h
	}
	return 1
}

// ErrBelowCommitted is returned by Truncate for a cut below the committed
// offsets: the index cannot undo committed entries; rebuild it.
var ErrBelowCommitted = errors.New("keyindex: truncation below the committed offsets")

// Index maps key hashes to the offset of the key's last record. It is not
// safe for concurrent use: the partition serialises its appends.
type Index struct {
	hash func([]byte) uint64
	base *table
	// The overlay: the entries at and above committed, in offset order,
	// and the latest offset of each of their hashes.
	pending   []entry
	latest    map[uint64]int64
	committed int64 // entries below are in base
	end       int64 // records below are indexed
}

type entry struct {
	h   uint64
	off int64
}

// New returns an empty index of a partition whose log starts (and ends)
// at start. hash nil means Hash.
func New(start int64, hash func([]byte) uint64) *Index {
	if hash == nil {
		hash = Hash
	}
	return &Index{hash: hash, base: newTable(0), latest: map[uint64]int64{}, committed: start, end: start}
}

// NewTrusted returns an empty index of a log starting at start whose
// records up to end will be added with Add and taken as committed at once
// (they go straight into the table): for rebuilding from a log whose high
// watermark is unknown (a restart). A later Truncate below end gives
// ErrBelowCommitted: rebuild again up to the cut.
func NewTrusted(start, end int64, hash func([]byte) uint64) *Index {
	ix := New(start, hash)
	ix.committed = max(start, end)
	return ix
}

// End is the offset after the last record indexed.
func (ix *Index) End() int64 { return ix.end }

// Committed is the offset below which entries can no longer be truncated.
func (ix *Index) Committed() int64 { return ix.committed }

// Len is the number of distinct key hashes indexed.
func (ix *Index) Len() int {
	n := ix.base.n
	for h := range ix.latest {
		if _, ok := ix.base.get(h); !ok {
			n++
		}
	}
	return n
}

// Bytes is about how much memory the index holds.
func (ix *Index) Bytes() int { return ix.base.bytes() + cap(ix.pending)*16 + len(ix.latest)*32 }

// Add indexes the record of key at offset, which must not be below End;
// End moves past it. A nil key is not indexed (Kafka's keyless records).
func (ix *Index) Add(key []byte, offset int64) error {
	if offset < ix.end {
		return fmt.Errorf("keyindex: offset %d below the indexed end %d", offset, ix.end)
	}
	ix.end = offset + 1
	if key == nil {
		return nil
	}
	h := ix.hash(key)
	if offset < ix.committed {
		ix.base.put(h, offset)
		return nil
	}
	ix.pending = append(ix.pending, entry{h, offset})
	ix.latest[h] = offset
	return nil
}

// Skip moves End to offset without indexing anything (a gap, or records
// without keys).
func (ix *Index) Skip(offset int64) {
	ix.end = max(ix.end, offset)
}

// Lookup returns the offset of the last record whose key has key's hash,
// and whether there is one. No entry proves that no record of key was
// indexed; an entry is only a candidate, to confirm against the record's
// key (two keys may share a hash).
func (ix *Index) Lookup(key []byte) (int64, bool) {
	h := ix.hash(key)
	if off, ok := ix.latest[h]; ok {
		return off, true
	}
	return ix.base.get(h)
}

// LookupCommitted is Lookup among the committed entries only (offsets
// below Committed).
func (ix *Index) LookupCommitted(key []byte) (int64, bool) {
	return ix.base.get(ix.hash(key))
}

// Commit makes the entries below hw permanent (hw is the partition's high
// watermark: records below it are never truncated).
func (ix *Index) Commit(hw int64) {
	if hw <= ix.committed {
		return
	}
	ix.committed = min(hw, ix.end)
	i := 0
	for ; i < len(ix.pending) && ix.pending[i].off < ix.committed; i++ {
		e := ix.pending[i]
		ix.base.put(e.h, e.off)
		if ix.latest[e.h] == e.off {
			delete(ix.latest, e.h)
		}
	}
	ix.pending = append(ix.pending[:0], ix.pending[i:]...)
}

// Truncate forgets the records at and above offset (a truncation to a
// leader epoch's end). It refuses to cut committed entries.
func (ix *Index) Truncate(offset int64) error {
	if offset >= ix.end {
		return nil
	}
	if offset < ix.committed {
		return fmt.Errorf("%w: cut at %d, committed up to %d", ErrBelowCommitted, offset, ix.committed)
	}
	j := len(ix.pending)
	for j > 0 && ix.pending[j-1].off >= offset {
		j--
	}
	if j < len(ix.pending) {
		ix.pending = ix.pending[:j]
		// What the cut entries hid shows through again.
		clear(ix.latest)
		for _, e := range ix.pending {
			ix.latest[e.h] = e.off
		}
	}
	ix.end = offset
	return nil
}

// Forget removes key's hash from the index when its entry is at offset
// (the cleaner dropped the key's last record: a tombstone past its
// retention). Only committed entries are forgotten.
func (ix *Index) Forget(key []byte, offset int64) {
	h := ix.hash(key)
	if _, ok := ix.latest[h]; ok {
		return
	}
	if off, ok := ix.base.get(h); ok && off == offset {
		ix.base.del(h)
	}
}
