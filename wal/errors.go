package wal

import (
	"errors"
	"fmt"
)

// Errors returned by the package. Test for them with errors.Is: most are
// wrapped with the offset, file or cause.
var (
	// ErrCorrupt is a checksum, framing or offset failure found in a segment
	// below the tail (Open repairs the tail itself), or an index that does not
	// match the segment it describes. It is wrapped in a *CorruptError that
	// carries the file, byte position and offset.
	ErrCorrupt = errors.New("wal: corrupt log")

	// ErrOffsetOutOfRange is returned by ReadEntries and Read for an offset
	// below StartOffset, and by Reset for a negative offset.
	ErrOffsetOutOfRange = errors.New("wal: offset out of range")

	// ErrOutOfOrder is returned by Append when the first entry's BaseOffset
	// is not NextOffset, when an entry does not start right after the
	// previous one, or when an entry's LastOffset is below its BaseOffset.
	// Nothing is written.
	ErrOutOfOrder = errors.New("wal: entries out of order")

	// ErrClosed is returned by every call on a closed Log (except Close).
	ErrClosed = errors.New("wal: log closed")

	// ErrBroken is returned by every call after a write, fsync or truncation
	// failed: the on-disk state is unknown and tidwall's in-memory state may
	// disagree with it. Close the Log and Open it again (Open repairs the
	// tail). The error wraps the original cause.
	ErrBroken = errors.New("wal: log broken by an earlier failure; close and reopen it")
)

// CorruptError describes damage found while reading or verifying a segment.
// errors.Is(err, ErrCorrupt) is true for it.
type CorruptError struct {
	Path   string // segment file
	Pos    int64  // byte position of the bad frame in the file
	Offset int64  // the log offset being read or expected there
	Reason string // "checksum mismatch", "torn frame", "offset discontinuity", ...
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: corrupt log: %s at offset %d (%s, byte %d)", e.Reason, e.Offset, e.Path, e.Pos)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }
