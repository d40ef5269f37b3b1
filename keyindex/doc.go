// Package keyindex is a partition's key index: for each key (by a 64-bit
// hash of it), the offset of the key's last record in the partition. It
// serves per-key conditional appends ("append only if this key's last
// record is at offset N"), lookups of a key's latest value without a scan,
// and the log cleaner of compacted topics.
//
// The index holds two parts. Offsets below the partition's high watermark
// are committed: they are never truncated, so their entries live in one
// compact open-addressing table of (hash, offset) pairs, 16 bytes a slot.
// Offsets at and above it may still be cut by a truncation to a leader
// epoch's end, so their entries sit in a small overlay that keeps every
// offset of each hash above the watermark; Truncate drops the cut ones and
// what the table said before shows through again. Commit folds the overlay
// below a new watermark into the table.
//
// A hash names a key only probably: two keys may share one. The index
// never answers for a key by itself; it gives the candidate offset, and
// the caller confirms it by reading the record there and comparing its key
// (Resolve, Confirm), falling back to a scan of the log when they differ. A hash
// with no entry proves that no record of the key was indexed.
//
// Checkpoints (Save, Load) write the table and the overlay to a file with
// a checksum, so a clean start reads no log; after an unclean one the
// caller rebuilds the index from the log (NewTrusted: the records of a
// restarted log are taken as committed, and a truncation below them asks
// for another rebuild).
package keyindex
