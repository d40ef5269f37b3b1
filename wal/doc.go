// Package wal is Skein's storage leaf: one durable, checksummed log per
// partition replica, on top of github.com/tidwall/wal (v1.2.1). Each entry
// is an opaque payload (in practice one record batch) tagged with the range
// of offsets it covers; wal imports nothing else of Skein's.
//
// tidwall/wal gives segment files, batched writes with one fsync, and
// truncation at either end. It has no checksum, refuses to open a log whose
// last entry was torn by a crash, opens appended zeros as empty entries, and
// serves flipped bits silently. This package adds a CRC-32C per entry, an
// offset index, tail repair on Open, and a read path that never touches
// tidwall.
//
// # Concurrency
//
// The Log starts no goroutines. It has one writer: Append, Write, Sync,
// TruncateTo, Reset and DeleteSegmentsBefore must not be called concurrently with each
// other (in Skein, the partition's append loop owns them; they also
// serialize on a mutex, so misuse is safe but slow). NextOffset,
// StartOffset, Size, Segments, ReadEntries, Read, OffsetForTimestamp, Verify
// and Repair may be called from any number of goroutines, concurrently with
// anything.
//
// Reads never wait for an Append's write or fsync: tidwall holds its one
// mutex through every write and fsync, so reads do not use tidwall at all.
// They pread (os.File.ReadAt) the segment files at byte positions from this
// package's own index, and only up to the bytes of entries whose Write has
// returned: Write publishes an entry's position under a short lock after
// tidwall's write (before any fsync: the caller decides who may read
// entries that are not durable yet). TruncateTo, Reset and DeleteSegmentsBefore
// exclude readers only for the moment they swap read handles (after
// tidwall's rewrite), and wait for reads in progress to finish first; a read
// in progress while they run may return entries they are removing.
//
// # Durability
//
// When Append returns nil its entries are on stable storage: one tidwall
// WriteBatch and one fsync of the tail file per call (group commit: the
// caller passes everything that is waiting), plus an fsync of the directory
// when a new segment file was created on the way. Append is Write (the
// WriteBatch, entries readable at once) followed by Sync (the fsyncs); a
// caller may do something useful between the two. Options.UnsafeNoFsync
// skips the fsyncs (tests and benchmarks only: an OS crash or power loss
// can lose acknowledged entries). Truncations fsync the directory after
// tidwall's renames; the start offset of an emptied log is written
// temp-file + fsync + rename + directory fsync before the log is emptied.
//
// A failed write or fsync breaks the Log: the call returns the error and
// every later call returns ErrBroken (tidwall's in-memory state is
// inconsistent after a failed write, and an fsync error leaves the page
// cache's state unknown). Close it and Open it again; Open repairs what the
// failure left.
//
// # Repair and corruption
//
// Open repairs the tail segment, the only one a crash can damage: if tidwall
// refuses it (a torn last frame), the file is cut after the last complete
// frame; then every entry of the tail is checked (length, CRC, version,
// offsets contiguous with the previous entry and segment), and the file is
// cut before the first bad one, dropping it and everything after it. Each
// cut is fsynced. Repair reports what was dropped (also logged at WARN).
// Damage below the tail is never repaired, since that would silently drop
// acknowledged entries: reads of damaged entries return a *CorruptError
// (ErrCorrupt) with the offset and file, and Verify scans every segment.
//
// # On disk
//
// A log is a directory of tidwall segment files named %020d of the tidwall
// index (1-based, dense; not an offset) of their first entry. A tidwall
// entry is uvarint(length) followed by this package's frame, little-endian:
//
//	CRC-32C (Castagnoli) of the rest   4 bytes
//	version (1)                        1
//	BaseOffset                         8
//	LastOffset - BaseOffset            8
//	MaxTimestamp (unix ms)             8
//	payload                            ...
//
// Beside them, under names tidwall ignores: %020d.idx, the sparse index of
// a sealed segment (a cache with its own CRC and the segment's size and
// entry count, rebuilt from the segment when missing, stale or torn; not
// fsynced), and start-offset, the log's start offset (NextOffset of an
// empty log; ignored while the log has entries).
//
// tidwall starts a new segment before a batch when the tail holds more than
// SegmentBytes, and right after an entry that brings the tail to
// SegmentBytes or more. Append predicts this to know each entry's segment
// and byte position without asking tidwall, and checks each predicted roll
// with one stat of the new file (rebuilding the index from the files if the
// prediction was wrong). Open loads sealed segments' sidecars and scans only
// the tail segment (which tidwall reads whole anyway).
//
// # Memory
//
// An open Log holds:
//   - tidwall's copy of the tail segment: up to SegmentBytes, grown by
//     append (so up to about 25% spare capacity), plus 16 bytes per tail
//     entry for tidwall's entry positions;
//   - the sparse index: 32 bytes per point, one point per
//     IndexIntervalBytes of log and one per segment, so about 0.8% of the
//     log with the 4 KiB default (8 MiB of index per GiB of log);
//   - no write buffers: Appends encode into buffers pooled across logs, so
//     only logs being written hold them;
//   - a 64 KiB read buffer per concurrent read (pooled).
//
// Measured with the defaults (BenchmarkMemory, TestMemoryCost): a 256 MiB
// log uses 12.1 MiB of heap right after Open with a 10 MiB tail (2.1 MiB of
// it index), and 22 MiB once appends have filled the tail to 16 MiB.
// Growing the tail buffer by append also makes tidwall allocate several
// times the bytes appended over a segment's life (GC work, not live heap).
// BenchmarkManyLogs writes 1.5 segments to each of 64 logs, round robin:
// with 16 MiB segments each log keeps about 8 MiB of heap (its tail), and
// the process's RSS is several times the live heap, because every log's
// tail buffer grows by re-allocation. Memory therefore scales with
// SegmentBytes × logs written; smaller segments cost proportionally less
// (2.1 MiB per log with 4 MiB segments) but roll, fsync and create files
// more often. A broker that must hold thousands of written partitions
// needs the journal design in docs/storage.md.
// TruncateTo and DeleteSegmentsBefore briefly load one sealed segment whole
// (tidwall does). File descriptors: tidwall's tail, plus one read handle per
// segment read since Open (closed when the segment is removed or the Log is
// closed).
package wal
