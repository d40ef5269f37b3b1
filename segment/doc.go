// Package segment is a partition's log as segment files of Skein's own
// format: written with plain writes (no fsync on the write path), made
// durable by Flush in the background, read with pread through the page
// cache using a sparse offset and time index. It is built to sit under a
// journal (one per broker) that holds durability: an acknowledged entry is
// in the fsynced journal first, and the journal is replayed into the
// segments after a crash, from the offset their last Flush made durable.
// It imports nothing else of Skein's.
//
// # On disk
//
// A log is a directory of segment files named %020d.seg of the BaseOffset
// of their first entry; an empty log is one empty segment named by where it
// starts. Each file is a sequence of frames (little-endian):
//
//	length of the rest        4 bytes
//	CRC-32C (Castagnoli)      4   over the bytes after it
//	version (1)               1
//	BaseOffset                8
//	LastOffset - BaseOffset   8
//	MaxTimestamp (unix ms)    8
//	payload                   ...
//
// Beside a sealed segment, %020d.idx is its sparse index (offset, byte
// position and running maximum timestamp every IndexIntervalBytes), written
// only after Flush has fsynced the segment, so a sidecar vouches that its
// segment reached the disk. A reset marker (file "reset") makes Reset
// atomic across a crash.
//
// # Durability and repair
//
// Write returns once the bytes are in the page cache: a process crash
// loses nothing, an OS crash or power loss may lose or tear anything
// written since the last Flush, in any segment it touched. Flush fsyncs
// those segments (and the directory) without holding up writes, then
// writes the sidecars, and returns the offset that is now durable. Open
// scans the tail and every segment without a sidecar; it cuts the tail
// after its last good frame (torn frame, zero-filled pages, checksum,
// offsets) and reports it (Repair). Damage in a sealed segment is not cut:
// reads that reach it return a *CorruptError (ErrCorrupt) and Verify finds
// it; TruncateTo at or below the damage removes it. A journal replay does
// exactly that: TruncateTo its checkpoint, then Write what followed.
//
// TruncateTo removes newer files first and then shortens the cut one;
// DeleteSegmentsBefore removes oldest first: a crash at any instant leaves
// a contiguous log. Neither fsyncs (the next Flush does); the journal
// records them so that a replay repeats them.
//
// # Concurrency
//
// One writer (Write, Flush, TruncateTo, Reset, DeleteSegmentsBefore,
// Close; they serialize on mutexes). Reads (ReadEntries, Read,
// OffsetForTimestamp, Verify) and the accessors run from any number of
// goroutines, never wait for a Write or a Flush's fsync, and see only
// entries whose Write returned. Truncation and deletion wait for reads in
// progress before they close or cut a file.
//
// # Memory
//
// An open Log holds its index (24 bytes per point: about 0.6% of the log
// with the 4 KiB default, 6 MiB per GiB), a write buffer of up to 64 KiB
// (larger Writes allocate and drop theirs), and one read handle per
// segment read since Open; each read in progress uses a pooled 64 KiB
// window. Segment data lives only in the page cache, whatever the segment
// size: memory does not grow with data written.
package segment
