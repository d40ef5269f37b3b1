// Package replication copies each partition from its leader to its
// followers, Kafka-style, and decides the high watermark and the in-sync
// replica set (ISR).
//
// Followers pull. A Follower (one goroutine per followed partition, owned by
// the Follower and stopped by Stop) first asks the leader where the
// follower's latest epoch ended (OffsetForLeaderEpoch, Kafka KIP-101/279) and
// truncates any suffix the leader does not have; then it long-polls the
// leader with ReplicaFetch from its log end offset, appends and fsyncs what
// it gets, and moves its high watermark to the leader's (never past its own
// log end). A follower's fetch offset is its fsynced log end, so a leader
// never counts a record that is not on the follower's disk.
//
// A Leader tracks each follower's fetched position for one partition it
// leads. The high watermark is the smallest log end offset among the ISR
// (the leader's own is its fsynced end). A follower that has not caught up
// with the leader's log end within LagTime leaves the ISR; one that has
// caught up with the high watermark rejoins it. ISR changes are never made
// locally: the leader asks the controller (AlterPartition) and applies the
// change when it comes back in the committed metadata. While a shrink is
// pending the HW still waits for the departing replica, so a record counted
// committed is on every replica the controller could elect.
//
// Every request carries the leader epoch. A leader answers a follower of
// another epoch with an epoch error; a follower that hears of a newer epoch
// waits for the metadata to say who leads it.
//
// The decisions — the high watermark, who is caught up, who leaves or joins
// the ISR, where to truncate — are pure functions of their inputs (see
// decide.go), tested with tables.
package replication
