// Package client is the embeddable Go client of Skein: topic administration,
// an asynchronous batching producer, a consumer, and conditional appends for
// optimistic concurrency. It talks to brokers only through the public gRPC
// API (proto/skeinv1) and the record batch format (proto/batch), neither of
// which appears in its exported API.
//
// # Client
//
// New returns a *Client configured with functional options (Brokers,
// RequestTimeout, TLSConfig, ...; each documents its default). It dials lazily and
// keeps one gRPC connection per broker address. It learns the brokers and
// each partition's leader and leader epoch from Metadata, caches them, and
// refreshes them when a broker answers NotLeader, a fenced epoch or
// Unavailable, or when they are older than MetadataMaxAge; one refresh
// runs at a time, spaced by RetryBackoff. A NotLeader answer that names
// the new leader updates the cache directly.
//
// # Producer
//
// Producer.Produce queues a record and returns; its callback runs later on
// the producer's single callback goroutine, so callbacks never run
// concurrently, and the callbacks of one partition run in the order the
// records were produced. Records are grouped per partition into batches,
// sent when they reach BatchMaxBytes, when Linger has passed, or on Flush.
// Each partition keeps up to MaxInFlightPerPartition (default and most 5)
// requests in flight on the ProduceStream of its leader's connection (one
// stream per broker, requests matched by correlation id), each carrying
// the leader epoch the client knows. Produce blocks, within its context,
// while MaxBufferedBytes of records await completion.
//
// The producer is idempotent by default (Idempotent turns it off; it is
// off with AcksNone). Before its first batch it gets a producer id and
// epoch from the cluster (InitProducer), and it numbers each partition's
// batches with sequences when it seals them. A partition's leader — and
// every replica, from the batch headers it replicates — remembers the last
// 5 batches of each producer id, so a retry of a batch it already appended
// is answered with the original offsets instead of being appended again.
// That makes every failure whose outcome is unknown safe to retry: a
// request that timed out (TIMED_OUT, or no answer within the request
// timeout), a connection lost after the broker appended, a leader change.
// A retriable failure (those, NotLeader, FencedLeaderEpoch,
// UnknownLeaderEpoch, NotEnoughReplicas, Unavailable) makes the partition
// stop sending, wait for every answer in flight, refresh metadata, back
// off, and resend the failed batches, unchanged, in their original order
// before anything newer; a partition switches to another stream (a
// reconnection, a new leader) only when none of its requests is in flight.
// So each record is written once and a partition's records keep their
// produce order, across retries and leader changes.
//
// A batch that follows a gap — one before it failed for good (a
// conditional append that lost its race, an invalid record), or the
// partition lost the producer's state (expired after 7 idle days, or a
// leader change with acks=leader lost acknowledged batches) — is refused
// as out of order, with nothing appended. The producer then does what
// Kafka's does (KIP-360) rather than failing the records: once everything
// in flight is answered, the partition moves to a newer epoch of its
// producer id (a local bump: partitions accept a newer epoch that starts
// at sequence 0; at the last epoch, 32767, InitProducer gives a new id),
// renumbers its unanswered batches from 0 and resends them in order. Those
// batches were all unappended: the oldest was refused, and each of the
// others must follow it. When the batch that failed for good was the last
// one numbered (the usual case for a conditional append), its sequences
// are simply reused and no reset is needed. A producer fenced by a newer
// epoch of its own id (PRODUCER_FENCED: another instance of it is
// writing) stops: every pending and later record fails with
// ErrProducerFenced.
//
// Without idempotence, delivery is at least once: a connection lost after
// the broker appended a batch makes the retry append it again, a transient
// refusal of one request (NotEnoughReplicas) that the broker does not apply
// to the next ones lets the retry land after them (the producer logs it),
// and a request that times out is not retried: its records fail with
// ErrTimedOut. Either way a record not acknowledged within DeliveryTimeout
// fails with ErrDeliveryTimeout, and non-retriable failures fail the
// batch's records with an error naming the partition.
//
// Producer.ProduceIf appends records as one batch only if the partition's
// next offset is the expected one, and otherwise fails with an error
// matching ErrOffsetMismatch whose *Error.NextOffset is the actual next
// offset. The batch goes through the partition's pipeline after what was
// produced before it, carrying the producer id and a sequence, so a retry
// whose first attempt landed returns that attempt's offsets rather than a
// mismatch. Reading a partition to its end, deciding, and appending at the
// offset read lets many writers update shared state without a lock: see
// the optimistic-concurrency example (a counter kept as a log of events,
// incremented by concurrent writers with no lost update).
//
// On a topic created with the key index (TopicConfig.KeyIndex),
// Producer.ProduceIfKeys conditions the batch on the last offsets of keys
// instead (KeyExpectation; NoRecord for a key without records), so writers
// of different keys of a partition never conflict; a mismatch matches
// ErrKeyOffsetMismatch, and *Error.KeyOffsets holds each failing key's
// actual last offset. Client.GetKey reads a key's latest committed record
// from the partition leader's key index.
//
// # Consumer
//
// A Consumer reads assigned partitions from a chosen Offset (Beginning, End,
// At, FromEnd, AtTime). Each partition has one goroutine holding a Fetch
// stream at the partition's leader, which long-polls at the end of the log;
// whole batches are decoded into a bounded per-partition buffer that Next
// and Poll drain. Broken streams, leader changes and Unavailable answers are
// retried from the next offset not yet buffered, so a consumer neither skips
// nor repeats records. An offset outside the log is an error that names the
// valid range; the consumer never resets a position by itself. With
// StopAtEnd, Next returns io.EOF once every partition has been read to the
// high watermark it had when its fetch caught up.
//
// # Errors
//
// Failures are *Error values (or wrap one) carrying the broker's message
// and the details of their class (leader hint, actual next offset, valid
// offset range). They match the sentinel errors (ErrNotLeader,
// ErrOffsetMismatch, ...) with errors.Is. The sentinels fall in classes:
// retriable (IsRetriable; the client retries them by itself), indefinite
// (ErrTimedOut, ErrMaybeAppended: a write may have been applied), fatal to
// the request, and fatal to the producer (ErrProducerFenced); see the
// sentinel block and docs/client.md.
//
// # Goroutines
//
// Every goroutine belongs to the Client, a Producer or a Consumer, and their
// Close methods stop and wait for them. Producer.Close sends what is
// buffered first. Client.Close closes the producers and consumers made from
// it, then the connections. Logging goes to the Logger option's logger, which
// discards everything by default.
package client
