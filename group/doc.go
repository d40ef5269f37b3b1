// Package group holds the pure parts of consumer groups: the records of the
// internal offsets topic and the committed-offsets store they rebuild
// (Store), the membership state machine of one group (Group: join,
// heartbeat, leave, session expiry, incremental hand-over of partitions,
// fencing by member epoch), and the sticky, balanced assignor (Assign).
//
// Nothing here does I/O or starts goroutines: the broker's coordinator
// feeds it the records it reads from, and appends to, a __consumer_offsets
// partition, passes the time in, and owns the locking. The Kafka listener
// maps Kafka's group APIs onto the same coordinator operations.
//
// # Where a group lives
//
// A group's coordinator is the leader of partition Partition(group, n) of
// __consumer_offsets: FNV-1a (32-bit) of the name's bytes modulo n. The
// hash is part of the on-disk contract: changing it, or the partition count
// of an existing offsets topic, would strand committed offsets.
//
// # Log growth
//
// Every commit appends records; nothing compacts the offsets topic. The
// coordinator instead writes a snapshot record (every committed offset and
// group tombstone of the partition, each with the log offset of the record
// that set it) every SnapshotEvery records and on an interval, and the
// topic keeps a time-based retention well above the snapshot interval.
// Replaying any suffix of the log that starts before the newest snapshot
// rebuilds the same state, because every value carries the log offset it
// came from and a value never replaces one from a later offset (see
// Store.Apply); so retention may drop any prefix of whole segments that
// ends before the newest snapshot.
package group
