// Package partition is one replica of one topic partition: its log, log end
// offset (LEO), high watermark (HW), leader epoch history, and the append and
// read paths. It knows nothing of the network; the broker and the replication
// package drive it.
//
// # Goroutines
//
// Each open Partition owns one goroutine, the append loop, started by Open
// and stopped by Close. It is the only writer of the log: appends, replicated
// appends, truncation and retention all go through its queue, in order.
// While the loop writes and fsyncs one group, new requests queue up and go
// into the next group together (group commit): one log write and one fsync
// per group, however many producers are waiting. An idle partition's loop is
// parked on a condition variable and costs no CPU.
//
// Reads (Read, Wait, OffsetForTimestamp, State) run on the caller's
// goroutine, concurrently with the loop, and never wait for a write or fsync.
//
// # Durability and ordering
//
// An append completes (its callback runs) only after the log has fsynced it:
// for AcksLeader at once; for AcksAll once the high watermark has passed the
// batch, which the replication layer advances when every in-sync replica has
// fsynced it (with a single replica, the HW follows the leader's own fsynced
// LEO). Offsets are dense and assigned in queue order: the order in which
// Enqueue was called. A conditional append (ExpectedOffset >= 0) is checked
// against the LEO at the moment it is assigned, after every request queued
// before it, so it sees exactly the log it would extend.
//
// Only a leader completes appends, and only the HW of its own leadership:
// when the replica stops leading or changes epoch (BecomeFollower, or a
// group commit that finishes after the change), appends not yet committed
// fail with ErrTimeout wrapping a NotLeaderError (their outcome is
// unknown). A follower's HW is its leader's and completes nothing: the new
// leader's log may hold other records at those offsets.
//
// Consumers read only below the HW, so they never see a record a failover
// could take back. Followers read up to the LEO.
//
// # Idempotent producers
//
// A batch that carries a producer id (see proto/batch) is checked in the
// append loop, in queue order (earlier requests of the same group commit
// included), before a conditional append's expected offset: a batch equal
// to one of the last 5 batches of its producer id and epoch is a retry and
// is not appended again (it completes with the original offsets, after the
// HW passes them for AcksAll); an older epoch than the partition has seen
// for the id fails with ErrProducerFenced; a newer epoch, or an id the
// partition does not know, must start at sequence 0; otherwise the batch
// must start at the sequence after the previous one (sequences wrap from
// MaxInt32 to 0). Anything else fails with ErrOutOfOrderSequence, naming the
// expected sequence. Changes to the producer table are staged per group and
// applied only once the group is on disk.
//
// Followers record the same table from the batch headers they replicate,
// so a new leader deduplicates as the old one did. The table is persisted
// as snapshots beside the log (producer-snapshot-<offset>: the table as of
// that log end offset), written on Close, after every ProducerSnapshotBytes
// appended, and when retention deletes segments; the newest 3 are kept.
// Open loads the newest snapshot at or below the log end and replays the
// batch headers after it, so a clean start replays nothing and a crash
// replays about one snapshot interval. TruncateTo rebuilds the table as of
// the new end the same way (snapshots past it are deleted), and Reset
// forgets every producer. A producer id idle for ProducerExpiry (default 7
// days) is forgotten. The table costs about 170 bytes of heap per producer
// id per partition replica (its epoch and 5 batches; measured by
// TestProducerStateMemory), so 100,000 producers writing to one partition
// hold 17 MB, and a snapshot about 140 bytes per producer.
//
// # Key index
//
// A partition opened with Config.KeyIndex keeps the offset of every key's
// last record (package keyindex; keys.go): the leader adds a group's keys
// once it is on disk, a follower the batches it copies, the high watermark
// commits them, TruncateTo cuts them (rebuilding from the log when the cut
// reaches entries taken as committed), Reset empties them. An append may
// carry KeyExpectations, checked after the producer sequence and counting
// the batches before it (planGroup); Latest reads a key's last committed
// record. Close saves the index beside the log, so a clean start reads no
// log; an unclean one rebuilds it by reading the log once.
//
// # Leader epochs
//
// Every batch is stamped with the leader epoch under which it was appended,
// and the partition keeps the epoch history (the first offset of each epoch)
// in a checkpoint file beside the log, so a follower can find where its log
// diverges from a new leader's (Kafka KIP-101/KIP-279) and truncate there.
//
// # Errors
//
// If the log fails a write or fsync, the group's requests fail. A failed
// fsync is fatal: the partition calls Config.OnFatal and refuses further
// writes, since the state of unsynced data is unknown (an fsync error is never
// retried). A failed write with no space left on the device is recovered by
// reopening the log and cutting it back to the last acknowledged end, after
// which appends may succeed again when space returns. A follower's failed
// replicated append (any write or fsync error) is recovered the same way: it
// reported nothing of the batches to the leader, so it cuts its log back and
// fetches them again later; only a failed recovery stops it.
//
// # Damage
//
// An unclean open (no clean-shutdown checkpoint) verifies the whole log and
// cuts it before the first damaged entry; Damage says what was found. A
// clean close stamps every file of the log (name, size, modification and
// change time, inode) in its checkpoint once the log is closed. The next
// Open stats the log's directory: if any file was added, removed, resized
// or written since (whatever tore, extended or rewrote it while the broker
// was stopped), the checkpoint is not trusted and the open is unclean. If
// every file matches, the log is trusted without reading it, and opened on
// first use, which checks only its tail repair and offsets. Damage that
// leaves sizes and times alone (bit rot) is found when the entry is read:
// its CRC fails, the read fails, and the partition reports it. Damage found
// after Open, either way, makes the partition fail every write and call
// Config.OnDamage; its owner reopens it (uncleanly: no checkpoint is written
// for a damaged log). A damaged replica may lack records it acknowledged,
// so its owner must keep it from leading or counting as in sync until it
// has copied them again; a follower checks Usable before it tells a leader
// its log end.
package partition
