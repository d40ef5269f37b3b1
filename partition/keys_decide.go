package partition

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

var (
	// ErrKeyOffsetMismatch: a per-key conditional append found a key's last
	// offset other than expected; see *KeyMismatchError. Nothing was
	// appended.
	ErrKeyOffsetMismatch = errors.New("key offset mismatch")
	// ErrNoKeyIndex: a per-key request to a partition of a topic without a
	// key index.
	ErrNoKeyIndex = errors.New("the topic has no key index: create it with the key index on (broker topic create --key-index) to use per-key conditional appends and key lookups")
	// ErrInvalidExpectation: a key expectation or lookup is malformed.
	// Nothing was appended.
	ErrInvalidExpectation = errors.New("invalid key expectation")
)

// KeyOffset is a key's expected and actual last offset (-1: none).
type KeyOffset struct {
	Key              []byte
	Expected, Actual int64
}

// KeyMismatchError lists the keys of a per-key conditional append whose
// last offset was not the expected one.
type KeyMismatchError struct {
	Keys []KeyOffset
}

func (e *KeyMismatchError) Error() string {
	var b strings.Builder
	b.WriteString(ErrKeyOffsetMismatch.Error())
	for i, k := range e.Keys {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "key %q expected %s, its last record is %s", k.Key, offsetWords(k.Expected), offsetWords(k.Actual))
	}
	return b.String()
}
func (e *KeyMismatchError) Unwrap() error { return ErrKeyOffsetMismatch }

func offsetWords(off int64) string {
	if off < 0 {
		return "none"
	}
	return "at " + strconv.FormatInt(off, 10)
}

// checkExpectations checks the key expectations of an append against its
// batch's record keys (by position) before it is queued: the topic keeps a
// key index; no whole-partition expected offset beside them; each key is
// 1 to MaxKeyBytes bytes, named once, and the key of a record of the
// batch; each offset is -1 or more. Pure.
func checkExpectations(exps []KeyExpectation, expectedOffset int64, keys [][]byte, indexed bool) error {
	if len(exps) == 0 {
		return nil
	}
	if !indexed {
		return ErrNoKeyIndex
	}
	if expectedOffset >= 0 {
		return fmt.Errorf("%w: give either an expected offset of the partition or key expectations, not both", ErrInvalidExpectation)
	}
	inBatch := make(map[string]bool, len(keys))
	for _, k := range keys {
		if k != nil {
			inBatch[string(k)] = true
		}
	}
	seen := make(map[string]bool, len(exps))
	for _, e := range exps {
		switch {
		case len(e.Key) == 0 || len(e.Key) > MaxKeyBytes:
			return fmt.Errorf("%w: a key of %d bytes: keys are 1 to %d bytes", ErrInvalidExpectation, len(e.Key), MaxKeyBytes)
		case e.Offset < -1:
			return fmt.Errorf("%w: key %q: expected offset %d: use -1 for a key without records, or an offset", ErrInvalidExpectation, e.Key, e.Offset)
		case seen[string(e.Key)]:
			return fmt.Errorf("%w: key %q is named twice", ErrInvalidExpectation, e.Key)
		case !inBatch[string(e.Key)]:
			return fmt.Errorf("%w: key %q is not the key of any record of the batch", ErrInvalidExpectation, e.Key)
		}
		seen[string(e.Key)] = true
	}
	return nil
}

// keyMismatches returns the error of an append whose key expectations
// the current last offsets (cur) do not meet, or nil. Pure.
func keyMismatches(exps []KeyExpectation, cur map[string]int64) error {
	var bad []KeyOffset
	for _, e := range exps {
		actual, ok := cur[string(e.Key)]
		if !ok {
			actual = -1
		}
		if actual != e.Offset {
			bad = append(bad, KeyOffset{Key: e.Key, Expected: e.Offset, Actual: actual})
		}
	}
	if bad == nil {
		return nil
	}
	return &KeyMismatchError{Keys: bad}
}

// advanceKeys records in cur the offsets an accepted append gives the keys
// cur tracks (the keys some append of the group expects). Pure but for cur.
func advanceKeys(cur map[string]int64, keys [][]byte, base int64) {
	if cur == nil {
		return
	}
	for i, k := range keys {
		if k == nil {
			continue
		}
		if _, ok := cur[string(k)]; ok {
			cur[string(k)] = base + int64(i)
		}
	}
}
