package wal

import (
	"fmt"
	"log/slog"
)

// Defaults filled in by Open for zero Options fields.
const (
	DefaultSegmentBytes       = 16 << 20
	DefaultIndexIntervalBytes = 4096
)

// Options configures a Log. Zero fields take the defaults of DefaultOptions.
type Options struct {
	// SegmentBytes is the target segment file size (tidwall's SegmentSize):
	// a segment is sealed after the entry that brings it to this size.
	// tidwall keeps the whole tail segment in memory, so this is also the
	// main memory cost of an open Log. Default 16 MiB.
	SegmentBytes int

	// IndexIntervalBytes is the spacing of the in-memory sparse index: one
	// point per this many bytes of log, plus the first entry of every
	// segment. A read scans at most this many bytes (plus one entry) past
	// the point it starts from. Default 4096.
	IndexIntervalBytes int

	// UnsafeNoFsync skips the fsync of the file and directory on Append:
	// acknowledged data can be lost on an OS crash or power loss (a process
	// crash loses nothing). Tests and benchmarks only.
	UnsafeNoFsync bool

	// Logger receives repair reports (WARN), damaged segments (ERROR) and
	// index rebuilds (INFO). Default: discard.
	Logger *slog.Logger
}

// DefaultOptions returns the options Open uses for zero fields.
func DefaultOptions() Options {
	return Options{
		SegmentBytes:       DefaultSegmentBytes,
		IndexIntervalBytes: DefaultIndexIntervalBytes,
		Logger:             slog.New(slog.DiscardHandler),
	}
}

// withDefaults returns a copy of o with zero fields filled in, or an error
// for values that make no sense.
func (o Options) withDefaults() (Options, error) {
	d := DefaultOptions()
	if o.SegmentBytes < 0 {
		return o, fmt.Errorf("wal: SegmentBytes %d < 0", o.SegmentBytes)
	}
	if o.IndexIntervalBytes < 0 {
		return o, fmt.Errorf("wal: IndexIntervalBytes %d < 0", o.IndexIntervalBytes)
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = d.SegmentBytes
	}
	if o.IndexIntervalBytes == 0 {
		o.IndexIntervalBytes = d.IndexIntervalBytes
	}
	if o.Logger == nil {
		o.Logger = d.Logger
	}
	return o, nil
}
