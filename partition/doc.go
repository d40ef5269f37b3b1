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
// Consumers read only below the HW, so they never see a record a failover
// could take back. Followers read up to the LEO.
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
// which appends may succeed again when space returns.
package partition
