package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	grpcmd "google.golang.org/grpc/metadata"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/proto/skeinv1"
)

// DefaultBroker is the address New uses when Brokers is not given.
const DefaultBroker = "127.0.0.1:9420"

// ---- client options -----------------------------------------------------------

// ClientOpt configures a Client; pass them to New. Each option documents its
// default.
type ClientOpt interface{ applyClient(*clientConfig) }

type clientOpt func(*clientConfig)

func (f clientOpt) applyClient(c *clientConfig) { f(c) }

type clientConfig struct {
	brokers        []string
	tls            *tls.Config
	dialer         func(ctx context.Context, addr string) (net.Conn, error)
	keepAlive      time.Duration
	keepAliveWait  time.Duration
	logger         *slog.Logger
	requestTimeout time.Duration
	metadataMaxAge time.Duration
	retryBackoff   time.Duration
	clientID       string
	user, password string // UserPassword
}

func defaultClientConfig() clientConfig {
	return clientConfig{
		brokers:        []string{DefaultBroker},
		logger:         slog.New(slog.DiscardHandler),
		requestTimeout: 30 * time.Second,
		metadataMaxAge: 5 * time.Minute,
		retryBackoff:   100 * time.Millisecond,
	}
}

// minKeepAlive is the shortest keepalive interval brokers accept: they
// close a connection that pings more often (gRPC's keepalive enforcement).
const minKeepAlive = 5 * time.Second

func (c *clientConfig) validate() error {
	switch {
	case len(c.brokers) == 0:
		return fmt.Errorf("skein client: no broker addresses")
	case c.requestTimeout <= 0 || c.metadataMaxAge <= 0 || c.retryBackoff <= 0:
		return fmt.Errorf("skein client: timeouts and backoffs must be positive")
	case c.keepAlive != 0 && c.keepAlive < minKeepAlive:
		return fmt.Errorf("skein client: keepalive interval %v is below %v, which brokers refuse (they close connections that ping more often)", c.keepAlive, minKeepAlive)
	case len(c.clientID) > 255 || strings.ContainsFunc(c.clientID, func(r rune) bool { return r < 0x20 || r >= 0x7f }):
		return fmt.Errorf("skein client: client id %q: at most 255 bytes of printable ASCII", c.clientID)
	case c.keepAlive != 0 && c.keepAliveWait <= 0:
		return fmt.Errorf("skein client: keepalive timeout must be positive")
	}
	return nil
}

// dialOptions are the gRPC options of every connection the client makes.
func (c *clientConfig) dialOptions() []grpc.DialOption {
	creds := insecure.NewCredentials()
	if c.tls != nil {
		creds = credentials.NewTLS(c.tls)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsg)),
	}
	if c.dialer != nil {
		opts = append(opts, grpc.WithContextDialer(c.dialer))
	}
	if id := c.clientID; id != "" {
		opts = append(opts,
			grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
				return invoker(grpcmd.AppendToOutgoingContext(ctx, ClientIDHeader, id), method, req, reply, cc, o...)
			}),
			grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, o ...grpc.CallOption) (grpc.ClientStream, error) {
				return streamer(grpcmd.AppendToOutgoingContext(ctx, ClientIDHeader, id), desc, cc, method, o...)
			}))
	}
	if c.keepAlive > 0 {
		opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: c.keepAlive, Timeout: c.keepAliveWait, PermitWithoutStream: true,
		}))
	}
	return opts
}

// Brokers sets the bootstrap brokers, tried in order, as host:port
// addresses (or gRPC targets such as "dns:///host:port"). Each argument may
// itself be a comma-separated list, as in SKEIN_BROKERS. Default
// "127.0.0.1:9420" (DefaultBroker). The client learns the other brokers
// from Metadata.
func Brokers(addrs ...string) ClientOpt {
	return clientOpt(func(c *clientConfig) {
		c.brokers = c.brokers[:0:0]
		for _, a := range addrs {
			for _, s := range strings.Split(a, ",") {
				if s = strings.TrimSpace(s); s != "" {
					c.brokers = append(c.brokers, s)
				}
			}
		}
	})
}

// TLSConfig makes the client connect to brokers over TLS with cfg (which
// the client does not modify; set ServerName, RootCAs and, for mutual TLS,
// Certificates as your brokers need). Default nil: plaintext connections.
func TLSConfig(cfg *tls.Config) ClientOpt {
	return clientOpt(func(c *clientConfig) {
		if cfg != nil {
			cfg = cfg.Clone()
		}
		c.tls = cfg
	})
}

// Dialer sets the function that opens the network connection to a broker
// address (a proxy, a SOCKS dialer, an in-memory listener in tests). TLS,
// when configured, runs over the connection it returns. Default nil: a
// plain TCP dial bounded by the context.
func Dialer(dial func(ctx context.Context, addr string) (net.Conn, error)) ClientOpt {
	return clientOpt(func(c *clientConfig) { c.dialer = dial })
}

// ClientIDHeader is the request metadata that carries the client id.
const ClientIDHeader = "skein-client-id"

// ClientID names this client to the brokers (Kafka's client.id): brokers
// apply the client quotas set for it (broker quota set --client-id) and
// show it in their quota metrics. At most 255 bytes of printable text.
// Default "": only the default client quota applies.
func ClientID(id string) ClientOpt {
	return clientOpt(func(c *clientConfig) { c.clientID = id })
}

// KeepAlive makes the client ping each broker connection after interval
// without activity, and close it (failing its requests, which the client
// then retries) when no answer comes within timeout. It finds dead
// connections behind NATs and load balancers that drop idle flows silently.
// interval must be at least 5 s: brokers close connections that ping more
// often. Default off (0): a dead connection is found by the request
// timeout.
func KeepAlive(interval, timeout time.Duration) ClientOpt {
	return clientOpt(func(c *clientConfig) { c.keepAlive, c.keepAliveWait = interval, timeout })
}

// Logger sets the logger for the client and its producers and consumers.
// Default: discard everything.
func Logger(l *slog.Logger) ClientOpt {
	return clientOpt(func(c *clientConfig) {
		if l != nil {
			c.logger = l
		}
	})
}

// RequestTimeout bounds each request to a broker: unary calls, and the wait
// for a produce answer (producers may override it with
// ProduceRequestTimeout). Default 30 s.
func RequestTimeout(d time.Duration) ClientOpt {
	return clientOpt(func(c *clientConfig) { c.requestTimeout = d })
}

// MetadataMaxAge is how long cached topic metadata is used before it is
// refreshed in the background; errors such as NotLeader refresh it sooner.
// Default 5 minutes.
func MetadataMaxAge(d time.Duration) ClientOpt {
	return clientOpt(func(c *clientConfig) { c.metadataMaxAge = d })
}

// RetryBackoff is the first backoff between retries of metadata and admin
// requests, and the default of ProduceRetryBackoff and FetchRetryBackoff; it
// doubles to at most 1 s, with jitter. Metadata is never refreshed more
// often than this. Default 100 ms.
func RetryBackoff(d time.Duration) ClientOpt {
	return clientOpt(func(c *clientConfig) { c.retryBackoff = d })
}

// ---- producer options ---------------------------------------------------------

// Acks is how much durability a produce waits for.
type Acks int8

const (
	// AcksAll waits until every in-sync replica has the batch and the ISR has
	// at least min.insync.replicas members.
	AcksAll Acks = iota
	// AcksLeader waits until the leader has the batch on disk.
	AcksLeader
	// AcksNone waits for nothing: callbacks run once the request is written
	// to the stream, with Offset -1.
	AcksNone
)

// String is all, leader or none, as ParseAcks accepts.
func (a Acks) String() string {
	switch a {
	case AcksAll:
		return "all"
	case AcksLeader:
		return "leader"
	case AcksNone:
		return "none"
	}
	return fmt.Sprintf("acks(%d)", int8(a))
}

func (a Acks) proto() skeinv1.Acks {
	switch a {
	case AcksLeader:
		return skeinv1.Acks_ACKS_LEADER
	case AcksNone:
		return skeinv1.Acks_ACKS_NONE
	}
	return skeinv1.Acks_ACKS_ALL
}

// ParseAcks accepts all (or -1), leader (or 1) and none (or 0).
func ParseAcks(s string) (Acks, error) {
	switch strings.ToLower(s) {
	case "all", "-1":
		return AcksAll, nil
	case "leader", "1":
		return AcksLeader, nil
	case "none", "0":
		return AcksNone, nil
	}
	return AcksAll, fmt.Errorf("unknown acks %q (want all, leader, 1, none or 0)", s)
}

// Compression is the codec of produced batches, numbered as in Kafka.
type Compression uint8

// The codecs.
const (
	CompressionNone   Compression = Compression(batch.None)
	CompressionGzip   Compression = Compression(batch.Gzip)
	CompressionSnappy Compression = Compression(batch.Snappy)
	CompressionLZ4    Compression = Compression(batch.LZ4)
	CompressionZstd   Compression = Compression(batch.Zstd)
)

// String is the codec's name: none, gzip, snappy, lz4 or zstd.
func (c Compression) String() string { return batch.Compression(c).String() }

// ParseCompression accepts none, gzip, snappy, lz4 and zstd.
func ParseCompression(s string) (Compression, error) {
	c, err := batch.ParseCompression(s)
	return Compression(c), err
}

// ProducerOpt configures a Producer; pass them to Client.NewProducer. Each
// option documents its default.
type ProducerOpt interface{ applyProducer(*producerConfig) }

type producerOpt func(*producerConfig)

func (f producerOpt) applyProducer(c *producerConfig) { f(c) }

type producerConfig struct {
	linger           time.Duration
	batchMaxBytes    int
	maxBufferedBytes int64
	acks             Acks
	compression      Compression
	requestTimeout   time.Duration // 0: the client's
	deliveryTimeout  time.Duration
	retryBackoff     time.Duration // 0: the client's
	maxInFlight      int
	partitioner      Partitioner
	idempotent       bool
	idempotentSet    bool // Idempotent was called
}

func defaultProducerConfig() producerConfig {
	return producerConfig{
		linger:           5 * time.Millisecond,
		batchMaxBytes:    1 << 20,
		maxBufferedBytes: 64 << 20,
		acks:             AcksAll,
		compression:      CompressionNone,
		deliveryTimeout:  2 * time.Minute,
		maxInFlight:      5,
		partitioner:      DefaultPartitioner(),
		idempotent:       true,
	}
}

// maxIdempotentInFlight is how many batches per producer a partition
// remembers to deduplicate retries: the idempotent producer keeps no more
// than this many requests of a partition in flight.
const maxIdempotentInFlight = 5

func (c *producerConfig) validate() error {
	switch {
	case c.linger < 0:
		return fmt.Errorf("skein producer: negative linger %v", c.linger)
	case c.batchMaxBytes < batch.HeaderSize+64 || c.batchMaxBytes > batch.MaxBatchBytes:
		return fmt.Errorf("skein producer: batch max bytes %d outside [%d, %d]", c.batchMaxBytes, batch.HeaderSize+64, batch.MaxBatchBytes)
	case c.maxBufferedBytes < int64(c.batchMaxBytes):
		return fmt.Errorf("skein producer: max buffered bytes %d below the batch max bytes %d", c.maxBufferedBytes, c.batchMaxBytes)
	case c.acks < AcksAll || c.acks > AcksNone:
		return fmt.Errorf("skein producer: unknown %v", c.acks)
	case c.compression > CompressionZstd:
		return fmt.Errorf("skein producer: unknown compression %v", c.compression)
	case c.requestTimeout < 0 || c.deliveryTimeout <= 0 || c.retryBackoff < 0:
		return fmt.Errorf("skein producer: timeouts and backoffs must be positive")
	case c.maxInFlight < 1:
		return fmt.Errorf("skein producer: max in flight per partition %d, want at least 1", c.maxInFlight)
	case c.partitioner == nil:
		return fmt.Errorf("skein producer: nil partitioner")
	case c.idempotent && c.acks == AcksNone && c.idempotentSet:
		return fmt.Errorf("skein producer: the idempotent producer needs answers: use RequiredAcks(AcksLeader) or AcksAll, or Idempotent(false)")
	}
	if c.acks == AcksNone {
		c.idempotent = false
	}
	if c.idempotent && c.maxInFlight > maxIdempotentInFlight {
		return fmt.Errorf("skein producer: max in flight per partition %d: at most %d with the idempotent producer (brokers remember %d batches per producer to deduplicate retries), or Idempotent(false)",
			c.maxInFlight, maxIdempotentInFlight, maxIdempotentInFlight)
	}
	return nil
}

// Linger is how long a partition's batch waits for more records before it
// is sent, unless it fills first or Flush is called. Default 5 ms.
func Linger(d time.Duration) ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.linger = d })
}

// BatchMaxBytes caps a batch's encoded size before compression; a record
// that does not fit in an empty batch fails with ErrRecordTooLarge. Default
// 1 MiB.
func BatchMaxBytes(n int) ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.batchMaxBytes = n })
}

// MaxBufferedBytes caps the bytes of records produced but not yet
// completed (callback returned). Produce blocks, respecting its context,
// while the buffer is full. Default 64 MiB.
func MaxBufferedBytes(n int64) ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.maxBufferedBytes = n })
}

// RequiredAcks sets the acknowledgement level. Default AcksAll.
func RequiredAcks(a Acks) ProducerOpt { return producerOpt(func(c *producerConfig) { c.acks = a }) }

// BatchCompression sets the codec of produced batches. Default none.
func BatchCompression(codec Compression) ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.compression = codec })
}

// ProduceRequestTimeout bounds the wait for one produce answer; it is also
// sent as the broker's replication timeout. When it expires the connection's
// produce stream is torn down and its requests are retried. Default: the
// client's RequestTimeout (30 s).
func ProduceRequestTimeout(d time.Duration) ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.requestTimeout = d })
}

// DeliveryTimeout is how long the producer keeps trying a record, from its
// Produce call, before failing it with ErrDeliveryTimeout. A request already
// in flight is waited for (up to the request timeout) first. Default 2 min.
func DeliveryTimeout(d time.Duration) ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.deliveryTimeout = d })
}

// ProduceRetryBackoff is the first backoff before a partition's failed
// batches are sent again; it doubles on each consecutive failure up to 1 s
// (or d if larger), with jitter. Default: the client's RetryBackoff
// (100 ms).
func ProduceRetryBackoff(d time.Duration) ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.retryBackoff = d })
}

// MaxInFlightPerPartition caps the produce requests of one partition
// awaiting an answer. Default 5, which is also the most the idempotent
// producer allows.
func MaxInFlightPerPartition(n int) ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.maxInFlight = n })
}

// Idempotent turns the idempotent producer on or off. Default on, except
// with RequiredAcks(AcksNone), which gets no answers to check (asking for
// both is an error).
//
// An idempotent producer gets a producer id from the cluster before its
// first batch (InitProducer), and numbers each partition's batches. A
// partition's leader remembers the last 5 batches of each producer id and
// answers a retry of one of them with its original offsets instead of
// appending it again, and refuses a batch that does not follow the
// previous one. So the producer retries what was unsafe to retry before —
// a timed-out request, a connection lost after the broker appended — and
// still writes every record once, in order, across leader changes.
//
// Off, delivery is at least once: a retry after a lost answer may append a
// batch twice, and a timed-out request fails its records with ErrTimedOut.
// Turn it off only for brokers that predate it, or to save the
// InitProducer round trip of short-lived producers.
func Idempotent(on bool) ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.idempotent, c.idempotentSet = on, true })
}

// RecordPartitioner sets how records are spread over a topic's partitions.
// Default DefaultPartitioner().
func RecordPartitioner(p Partitioner) ProducerOpt {
	return producerOpt(func(c *producerConfig) { c.partitioner = p })
}

// ---- consumer options ---------------------------------------------------------

// ConsumerOpt configures a Consumer; pass them to Client.NewConsumer. Each
// option documents its default.
type ConsumerOpt interface{ applyConsumer(*consumerConfig) }

type consumerOpt func(*consumerConfig)

func (f consumerOpt) applyConsumer(c *consumerConfig) { f(c) }

type consumerConfig struct {
	stopAtEnd       bool
	fetchMaxBytes   int32
	fetchMaxWait    time.Duration
	bufferedBatches int
	retryBackoff    time.Duration // 0: the client's
	group           *groupConfig  // group consumer options (group_config.go); nil: defaults
}

func defaultConsumerConfig() consumerConfig {
	return consumerConfig{
		fetchMaxBytes:   1 << 20,
		fetchMaxWait:    500 * time.Millisecond,
		bufferedBatches: 4,
	}
}

func (c *consumerConfig) validate() error {
	switch {
	case c.fetchMaxBytes < 1:
		return fmt.Errorf("skein consumer: fetch max bytes %d", c.fetchMaxBytes)
	case c.fetchMaxWait < time.Millisecond:
		return fmt.Errorf("skein consumer: fetch max wait %v below 1 ms", c.fetchMaxWait)
	case c.bufferedBatches < 1:
		return fmt.Errorf("skein consumer: buffered batches %d, want at least 1", c.bufferedBatches)
	case c.retryBackoff < 0:
		return fmt.Errorf("skein consumer: negative retry backoff %v", c.retryBackoff)
	}
	return nil
}

// StopAtEnd makes Next and Poll return io.EOF once every assigned partition
// has been read up to the high watermark it had when its fetch first caught
// up. Default off: follow the log for ever.
func StopAtEnd() ConsumerOpt { return consumerOpt(func(c *consumerConfig) { c.stopAtEnd = true }) }

// FetchMaxBytes caps the batch bytes of one fetch response (the broker
// clamps it to [1 KiB, 16 MiB] and always sends at least one batch). Default
// 1 MiB.
func FetchMaxBytes(n int32) ConsumerOpt {
	return consumerOpt(func(c *consumerConfig) { c.fetchMaxBytes = n })
}

// FetchMaxWait is how long the broker waits at the end of the log before a
// heartbeat. A stream silent for three times this long (at least 5 s) is
// considered dead and reopened. Default 500 ms.
func FetchMaxWait(d time.Duration) ConsumerOpt {
	return consumerOpt(func(c *consumerConfig) { c.fetchMaxWait = d })
}

// FetchBufferedBatches is how many fetch responses per partition may wait
// for Next before the partition's fetch stops reading. Default 4.
func FetchBufferedBatches(n int) ConsumerOpt {
	return consumerOpt(func(c *consumerConfig) { c.bufferedBatches = n })
}

// FetchRetryBackoff is the first backoff before a broken fetch stream is
// reopened; it doubles up to 1 s, with jitter. Default: the client's
// RetryBackoff (100 ms).
func FetchRetryBackoff(d time.Duration) ConsumerOpt {
	return consumerOpt(func(c *consumerConfig) { c.retryBackoff = d })
}
