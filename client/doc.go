// Package client is the embeddable Go client of Skein: topic administration,
// an asynchronous batching producer, a consumer, and conditional appends for
// optimistic concurrency. It talks to brokers only through the public gRPC
// API (proto/skeinv1) and the record batch format (proto/batch).
//
// # Client
//
// New returns a *Client configured with functional options (WithBrokers,
// WithRequestTimeout, ...; each documents its default). It dials lazily and
// keeps one gRPC connection per broker address. It learns the brokers and
// each partition's leader and leader epoch from Metadata, caches them, and
// refreshes them when a broker answers NotLeader, a fenced epoch or
// Unavailable, or when they are older than WithMetadataMaxAge; one refresh
// runs at a time, spaced by WithRetryBackoff. A NotLeader answer that names
// the new leader updates the cache directly.
//
// # Producer
//
// Producer.Produce queues a record and returns; its callback runs later on
// the producer's single callback goroutine, so callbacks never run
// concurrently, and the callbacks of one partition run in the order the
// records were produced. Records are grouped per partition into batches,
// sent when they reach BatchMaxBytes, when Linger has passed, or on Flush.
// Each partition keeps up to MaxInFlightPerPartition requests in flight on
// the ProduceStream of its leader's connection (one stream per broker,
// requests matched by correlation id), each carrying the leader epoch the
// client knows. Produce blocks, within its context, while MaxBufferedBytes
// of records await completion.
//
// Delivery is at least once. A retriable failure (NotLeader,
// FencedLeaderEpoch, UnknownLeaderEpoch, NotEnoughReplicas, Unavailable, a
// broken connection) makes the partition stop sending, wait for every
// answer in flight, refresh metadata, back off, and resend the failed
// batches in their original order before anything newer; a partition
// switches to another stream (a reconnection, a new leader) only when none
// of its requests is in flight, so a later batch never overtakes an earlier
// one that failed. Since every produce request names the leader epoch, a
// leader change fails all requests in flight to the old leader, and the
// partition's order is kept. Two cases remain before the idempotent
// producer (issue 4) lands: a connection lost after the broker appended a
// batch makes the retry append it again, and a transient refusal of one
// request (NotEnoughReplicas) that the broker does not apply to the next
// ones lets the retry land after them (the producer logs it). A request
// that times out (TIMED_OUT, or no answer within the request timeout) may
// or may not have been appended and is not retried: its records fail with
// ErrTimedOut. A record not acknowledged within DeliveryTimeout fails with
// ErrDeliveryTimeout. Non-retriable failures fail the batch's records with
// an error naming the partition.
//
// Producer.ProduceIf appends records as one batch only if the partition's
// next offset is the expected one, and otherwise fails with an error
// matching ErrOffsetMismatch whose *Error.NextOffset is the actual next
// offset. Reading a partition to its end, deciding, and appending at the
// offset read lets many writers update shared state without a lock: see
// the optimistic-concurrency example.
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
// Broker errors arrive as *Error values carrying the gRPC code, the
// ErrorReason and its details (leader hint, actual next offset, valid offset
// range). They match the sentinel errors (ErrNotLeader, ErrOffsetMismatch,
// ...) with errors.Is; IsRetriable says which ones a request may be retried
// after.
//
// # Goroutines
//
// Every goroutine belongs to the Client, a Producer or a Consumer, and their
// Close methods stop and wait for them. Producer.Close sends what is
// buffered first. Client.Close closes the producers and consumers made from
// it, then the connections. Logging goes to the WithLogger logger, which
// discards everything by default.
package client
