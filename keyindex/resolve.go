package keyindex

import (
	"bytes"
	"errors"
)

// ErrBelowStart is what a Log's KeyAt returns for an offset below the
// log's start (retention removed it).
var ErrBelowStart = errors.New("keyindex: offset below the log start")

// Log is what Resolve reads to confirm a candidate.
type Log interface {
	// KeyAt returns the key of the record at offset: ErrBelowStart when
	// retention removed it, another error when no record is there.
	KeyAt(offset int64) ([]byte, error)
	// LastOf scans the log backwards from below for key's last record (the
	// slow path, after a hash collision).
	LastOf(key []byte, below int64) (int64, bool, error)
}

// Resolve returns the offset of key's last record, and whether it has one,
// confirming the index's candidate against the log: two keys sharing a
// hash never make it answer for the wrong one. A key whose last record is
// below the log start has none.
func (ix *Index) Resolve(key []byte, l Log) (int64, bool, error) {
	off, ok := ix.Lookup(key)
	if !ok {
		return -1, false, nil
	}
	k, err := l.KeyAt(off)
	switch {
	case err == nil && bytes.Equal(k, key):
		return off, true, nil
	case errors.Is(err, ErrBelowStart):
		// Every record of this hash is below the start: the key's too.
		return -1, false, nil
	}
	// Another key shares the hash (or the record is gone): look.
	return l.LastOf(key, ix.end)
}
