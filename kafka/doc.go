// Package kafka is a Kafka wire-protocol listener for a Skein broker, so that
// Kafka clients and tools (librdkafka and kcat, franz-go, the Java client)
// produce, fetch and administer topics without change.
//
// # An adapter, not a second broker
//
// The listener decodes and encodes every request and response body with
// github.com/twmb/franz-go/pkg/kmsg; only the request header (key, version,
// correlation id, client id, tag section) and the size prefix are read here.
// It declares the operations it needs as Backend, in the native API's own
// message types, and the broker implements Backend with its gRPC handlers
// (broker/kafka.go): a Kafka CreateTopics, InitProducerId, ListOffsets or
// Produce runs the very code a gRPC request runs, with the same validation,
// forwarding to the controller and idempotent-producer state, and fails with
// the same errors, which errorCode maps to Kafka error codes in one place.
// Fetch's long poll is built here from Backend.Read (one non-blocking read
// with the checks Fetch makes) and the partition's change channel.
//
// # Batches: converted at the edge
//
// Skein keeps its own batch format (proto/batch) on disk and on the native
// API; this package converts a produced Kafka record batch v2 to a Skein
// batch after verifying its CRC-32C, and converts stored batches back on
// fetch, with a fresh CRC-32C. Both carry the same fields, so nothing is lost:
// offsets, leader epoch, producer id, epoch and base sequence, timestamps,
// keys and values (null distinct from empty) and headers. The codec is kept
// (gzip, snappy, lz4, zstd); only its framing differs. Storing Kafka's format
// natively would spare the conversion but change the log format, the
// replication and the native client for one listener; the measured cost
// (BenchmarkConvert, docs/kafka.md) is small next to an fsync.
//
// # Connections and goroutines
//
// Server owns an accept loop and, per connection, a reading goroutine, a
// writing goroutine and at most Config.MaxInFlight request goroutines.
// Requests are decoded in order; produce requests are started in order on
// the reading goroutine (so an idempotent producer's batches reach a
// partition in sequence order) and answered when their appends complete;
// other requests run concurrently; answers are written strictly in request
// order, as Kafka requires. A frame over Config.MaxFrameBytes, a truncated
// frame, an unknown API key, an unsupported version (except ApiVersions,
// which is answered with UNSUPPORTED_VERSION and the supported versions) or a
// body that does not decode closes the connection, as Kafka does; it is
// logged once and nothing reaches the broker. Close stops accepting, closes
// every connection and waits for all of these goroutines.
//
// # Semantics
//
// Fetch serves committed records only (up to the high watermark) and treats
// read_committed as read_uncommitted: without transactions they are the
// same records, and the last stable offset is the high watermark. Produce
// acks 0, 1 and -1 map to Skein's none, leader and all; a produce is
// acknowledged only after fsync. A retried batch of an idempotent producer
// is answered with its original offsets, not written twice. Transactions,
// the classic consumer group protocol and fetch sessions are not implemented:
// a transactional InitProducerId fails with INVALID_REQUEST, groups are
// served with KIP-848's ConsumerGroupHeartbeat over the broker's
// coordinator (groups.go), and every fetch is a full fetch (session id 0).
package kafka
