package client

import (
	"fmt"
	"time"
)

// Offset names a position in a partition: where a consumer starts reading
// (Consumer.Assign) or what ListOffsets resolves. Make one with Beginning,
// End, At, FromEnd or AtTime; the zero Offset is Beginning().
type Offset struct {
	kind offsetKind
	n    int64
	t    time.Time
}

type offsetKind int8

const (
	offsetBeginning offsetKind = iota
	offsetEnd
	offsetAt
	offsetFromEnd
	offsetTime
)

// Beginning is the partition's log start offset: the oldest record
// retention kept.
func Beginning() Offset { return Offset{kind: offsetBeginning} }

// End is the high watermark: the offset the next committed record will
// have, so a consumer starting there reads only records produced from now
// on.
func End() Offset { return Offset{kind: offsetEnd} }

// At is the absolute offset n. An offset outside the partition's range makes
// the consumer's Next (or ListOffsets) return an error matching
// ErrOffsetOutOfRange that names the range.
func At(n int64) Offset { return Offset{kind: offsetAt, n: n} }

// FromEnd is n records before the high watermark, clamped at the log start.
func FromEnd(n int64) Offset { return Offset{kind: offsetFromEnd, n: n} }

// AtTime is the first record whose timestamp is at or after t (the high
// watermark if there is none).
func AtTime(t time.Time) Offset { return Offset{kind: offsetTime, t: t} }

// String describes the offset: "beginning", "end", "42", "3 before the end"
// or "@" and an RFC 3339 time.
func (o Offset) String() string {
	switch o.kind {
	case offsetBeginning:
		return "beginning"
	case offsetEnd:
		return "end"
	case offsetAt:
		return fmt.Sprintf("%d", o.n)
	case offsetFromEnd:
		return fmt.Sprintf("%d before the end", o.n)
	}
	return "@" + o.t.Format(time.RFC3339Nano)
}
