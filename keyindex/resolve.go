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
	return Confirm(key, off, ix.end, l)
}

// Confirm checks the candidate offset off of key (from Lookup or
// LookupCommitted) against the log: off if the record there has key, none
// if retention removed it, else the last record of key below end found by
// a scan (another key shares the hash). It reads only the log, not the
// index, so the caller may release its lock on the index first.
func Confirm(key []byte, off, end int64, l Log) (int64, bool, error) {
	k, err := l.KeyAt(off)
	switch {
	case err == nil && bytes.Equal(k, key):
		return off, true, nil
	case errors.Is(err, ErrBelowStart):
		// Every record of this hash is below the start: the key's too.
		return -1, false, nil
	}
	// Another key shares the hash (or the record is gone): look.
	return l.LastOf(key, end)
}
