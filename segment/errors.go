package segment

import (
	"errors"
	"fmt"
)

// Errors returned by the package. Test for them with errors.Is: most are
// wrapped with the offset, file or cause.
var (
	// ErrCorrupt is a checksum, framing or offset failure found in a
	// segment (Open repairs the tail segment itself), or an index that does
	// not match its segment. It is wrapped in a *CorruptError.
	ErrCorrupt = errors.New("segment: corrupt log")

	// ErrOffsetOutOfRange: a read below StartOffset, or a negative offset.
	ErrOffsetOutOfRange = errors.New("segment: offset out of range")

	// ErrOutOfOrder: Write's entries do not start at NextOffset, do not
	// follow each other, or have LastOffset < BaseOffset. Nothing is written.
	ErrOutOfOrder = errors.New("segment: entries out of order")

	// ErrTooLarge: an entry's payload is larger than a frame may be.
	ErrTooLarge = errors.New("segment: entry too large")

	// ErrClosed is returned by every call on a closed Log (except Close).
	ErrClosed = errors.New("segment: log closed")

	// ErrBroken is returned by every call after a write, fsync or truncation
	// failed: what is on disk is unknown. Close the Log and Open it again.
	ErrBroken = errors.New("segment: log broken by an earlier failure; close and reopen it")
)

// CorruptError describes damage found while reading or verifying a segment.
type CorruptError struct {
	Path   string // segment file
	Pos    int64  // byte position of the bad frame in the file
	Offset int64  // the log offset being read or expected there
	Reason string // "checksum mismatch", "bad frame length", "offset discontinuity", ...
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("segment: corrupt log: %s at offset %d (%s, byte %d)", e.Reason, e.Offset, e.Path, e.Pos)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }
