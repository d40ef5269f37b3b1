// Package batch is Skein's record batch format: the unit a producer sends, the
// broker stores as one write-ahead-log entry, a follower replicates and a
// consumer fetches. The broker never re-encodes a batch; it validates it,
// stamps its base offset and leader epoch in place, and serves the stored
// bytes.
//
// The layout follows Kafka's v2 record batch, little-endian:
//
//	offset size field
//	 0      8   base offset          set by the leader
//	 8      4   batch length         bytes after this field
//	12      4   leader epoch         set by the leader
//	16      1   magic                1
//	17      4   CRC-32C (Castagnoli) over bytes [21, end)
//	21      2   attributes           bits 0-2: compression codec
//	23      4   last offset delta    record count - 1
//	27      8   first timestamp      unix milliseconds
//	35      8   max timestamp        unix milliseconds
//	43      8   producer id          -1: not idempotent
//	51      2   producer epoch
//	53      4   base sequence        -1: not idempotent
//	57      4   record count
//	61      ... records, compressed as a whole when a codec is set
//
// The CRC leaves out the base offset, length, leader epoch and magic, so the
// leader can stamp a batch without recomputing it; the write-ahead log adds
// its own checksum over the whole entry.
//
// A compressed records section starts with the uncompressed length (uvarint)
// so a decoder can refuse a decompression bomb before allocating. Each record
// is:
//
//	varint  length of the rest of the record
//	int8    attributes (0)
//	varint  timestamp delta from the first timestamp
//	varint  offset delta (0, 1, 2, ...)
//	varint  key length (-1: null), key
//	varint  value length (-1: null), value
//	uvarint header count, then per header:
//	        varint key length, key, varint value length (-1: null), value
//
// Varints are zig-zag (encoding/binary's Varint). Decoded records alias the
// batch buffer (or the decompressed buffer): copy what you keep.
package batch
