package broker

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/internal/tlsconf"
	"github.com/skeinlog/skein/partition"
)

// Config configures one broker. Start from DefaultConfig.
type Config struct {
	// NodeID is this broker's id, stored in the data directory on first
	// start; a data directory that belongs to another id is refused.
	NodeID int32
	// DataDir holds the metadata and every partition's log.
	DataDir string
	// Addr is the client gRPC listen address. Port 0 picks a free port.
	Addr string
	// AdvertiseAddr is the address clients are told to use; default: the
	// bound Addr.
	AdvertiseAddr string
	// ExternalAddr is an optional second client listener, for clients
	// outside the brokers' network (a host talking to a compose or
	// Kubernetes cluster); ExternalAdvertiseAddr is what those clients are
	// told. Requests arriving on it get every broker's external address.
	ExternalAddr          string
	ExternalAdvertiseAddr string
	// KafkaAddr is the Kafka wire-protocol listen address ("" off; port 0
	// picks a free port). KafkaAdvertiseAddr is the address Kafka clients
	// are told (the Metadata response); default: the bound KafkaAddr, or
	// its port on the advertised client host when bound to all interfaces.
	KafkaAddr          string
	KafkaAdvertiseAddr string
	// PeerAddr is the inter-broker gRPC listener: replication, epoch
	// queries and requests to the controller travel only here, never on a
	// client listener. It belongs on the brokers' private network.
	// PeerAdvertiseAddr is what the other brokers dial; default: the bound
	// PeerAddr (or, bound to every interface, the advertised client host
	// with the peer port).
	PeerAddr          string
	PeerAdvertiseAddr string
	// HTTPAddr serves /metrics, /healthz and /readyz (and /debug/pprof
	// with Pprof); "" off.
	HTTPAddr string
	// Pprof serves the Go profiler on HTTPAddr under /debug/pprof. Off by
	// default: profiles, and the command line (which may hold secrets),
	// are for the operator, not for whoever reaches the HTTP port.
	Pprof bool
	// HTTPInsecurePlaintextPasswords accepts HTTP basic authentication (the
	// console, the profiler) on an HTTP listener without TLS, where the
	// password crosses the network in clear. Off: passwords over HTTPS only.
	HTTPInsecurePlaintextPasswords bool
	// GossipAddr and RaftAddr are the cluster ports: memberlist gossip (TCP
	// and UDP) and the Raft controller quorum. Port 0 picks a free port.
	GossipAddr string
	RaftAddr   string
	// Join lists gossip addresses (host:port, DNS names allowed) of brokers
	// to join; they are retried until one answers. A broker with Join never
	// bootstraps a controller quorum on its own.
	Join []string
	// BootstrapExpect: brokers started together (compose, Kubernetes) wait
	// for this many brokers with the same setting; the lowest id then
	// bootstraps the controller quorum with all of them as voters.
	BootstrapExpect int
	// ControllerVoters is the size of the Raft quorum: 3 (default) or 5.
	ControllerVoters int
	// GossipKey (16, 24 or 32 bytes) encrypts gossip; GossipLabel keeps
	// several clusters on one network apart.
	GossipKey   []byte
	GossipLabel string
	// GossipKeyring holds further gossip keys accepted besides GossipKey
	// (which encrypts what this broker sends): rotate by adding the new
	// key here on every broker, then making it GossipKey, then dropping
	// the old one.
	GossipKeyring [][]byte
	// TLS names the certificate, key and CA files. Given, every listener
	// speaks TLS 1.2 or later: the client, external, Kafka and HTTP
	// listeners with the broker's certificate, the inter-broker and Raft
	// listeners with mutual TLS among broker certificates; and a gossip key
	// is required. The files are re-read when they change.
	TLS tlsconf.Files
	// TLSClientAuth is what the client, external and Kafka listeners ask
	// of clients' certificates (the HTTP listener asks at most "request").
	TLSClientAuth tlsconf.ClientAuth
	// Rack labels the broker for rack-aware replica placement.
	Rack string
	// ReplicaLagTime is replica.lag.time.max: a follower that has not caught
	// up with its leader for this long leaves the ISR (default 10 s).
	ReplicaLagTime time.Duration
	// LoopbackTimings shortens gossip and Raft timeouts for tests on one
	// machine.
	LoopbackTimings bool
	// PeerFault, when set, is consulted before every request this broker
	// sends to another broker (replication, epoch queries, requests to the
	// controller): an error fails the request as if the link were down, a
	// delay holds it first. Tests use it to cut, slow and drop links.
	PeerFault func(from, to int32) (delay time.Duration, err error)
	// Trace, when set, is told as appends pass the steps of replication
	// (partition.Step) on this broker: benchmarks use it to break an
	// acknowledgement's latency down. nil in service.
	Trace partition.Tracer

	// FileHandles, when set, replaces the process's count of open file
	// handles and its limit (ok false: unknown). Tests use it.
	FileHandles func() (open, limit int, ok bool)
	// DiskFree, when set, replaces the free space check of the data
	// directory's file system (ok false: unknown). Tests use it.
	DiskFree func(dir string) (free uint64, ok bool)

	// MaxRequestBytes bounds one gRPC request; larger ones fail with
	// RESOURCE_EXHAUSTED before the broker reads them (default 16 MiB).
	MaxRequestBytes int
	// MaxInflightBytes bounds the fetch and produce data the broker holds
	// at once, over all clients (default 256 MiB; at least MaxRequestBytes).
	// Past it a request waits briefly, then fails with RESOURCE_EXHAUSTED
	// and a retry hint.
	MaxInflightBytes int64
	// MaxStreamsPerConn bounds the concurrent gRPC streams (calls) of one
	// client connection (default 1024); further calls wait for one to end.
	MaxStreamsPerConn int
	// SegmentBytes is the target size of log segment files (default 16 MiB).
	SegmentBytes int
	// StorageEngine is how partition logs are kept (see docs/storage.md):
	// "wal" (default), one tidwall log per partition, each fsynced on its
	// own; or "journal", segment files per partition made durable by
	// journals shared by every partition of the data directory (one fsync
	// per group of appends to any partitions). A data directory keeps the
	// engine it was created with.
	StorageEngine string
	// Journals is how many journals the journal engine keeps in the data
	// directory (default 1; fixed when the directory is created). Each
	// costs JournalSegmentBytes of memory; separate journals' fsyncs can
	// run in parallel.
	Journals int
	// JournalSegmentBytes is the size of a journal's segment files; the
	// tail one is held in memory (default 8 MiB).
	JournalSegmentBytes int
	// JournalCheckpointInterval is how often the journal engine flushes the
	// partitions' segment files and drops the journal records before that
	// point (default 5 s): longer costs a longer replay after a crash,
	// shorter more fsyncs of segment files.
	JournalCheckpointInterval time.Duration
	// UnsafeNoFsync acknowledges writes before they reach the disk: a crash
	// of the machine loses acknowledged records. For throwaway benchmarks only.
	UnsafeNoFsync bool
	// Topic defaults (partitions, retention, record size).
	TopicDefaults cluster.Defaults
	// RetentionCheckInterval is how often retention runs (default 5 m).
	RetentionCheckInterval time.Duration
	// CleanerIOBytesPerSec is the log cleaner's I/O budget: the bytes per
	// second it reads and writes compacting, over all partitions (default
	// 32 MiB/s; negative: unlimited).
	CleanerIOBytesPerSec int64
	// CleanerInterval is how often the log cleaner looks at the compacted
	// partitions (default 15 s).
	CleanerInterval time.Duration
	// ShutdownTimeout bounds the graceful part of a shutdown (default 10 s).
	ShutdownTimeout time.Duration
	// OpenConcurrency is how many partitions open at once at start (default 4).
	OpenConcurrency int
	// ProducerExpiry: partitions forget an idempotent producer id not seen
	// for this long (default 7 days; negative: never).
	ProducerExpiry time.Duration
	// Groups configures consumer groups and the offsets topic.
	Groups GroupsConfig
	// Security configures authentication and ACLs (auth.go).
	Security SecurityConfig

	Logger *slog.Logger
	// LogLevel, when set, is the level Logger's handler uses: the log.level
	// run-time setting changes it. Without it, log.level cannot change.
	LogLevel *slog.LevelVar
}

// DefaultConfig is a single broker on 127.0.0.1 with data under ./data.
func DefaultConfig() Config {
	return Config{
		NodeID:                    1,
		DataDir:                   "./data",
		Addr:                      "127.0.0.1:9420",
		GossipAddr:                "127.0.0.1:9421",
		RaftAddr:                  "127.0.0.1:9422",
		HTTPAddr:                  "127.0.0.1:9423",
		KafkaAddr:                 "127.0.0.1:9092",
		PeerAddr:                  "127.0.0.1:9424",
		MaxRequestBytes:           16 << 20,
		MaxInflightBytes:          256 << 20,
		MaxStreamsPerConn:         1024,
		SegmentBytes:              16 << 20,
		TopicDefaults:             cluster.DefaultDefaults(),
		RetentionCheckInterval:    5 * time.Minute,
		CleanerIOBytesPerSec:      defaultCleanerIOBytesPerSec,
		CleanerInterval:           defaultCleanerInterval,
		ShutdownTimeout:           10 * time.Second,
		OpenConcurrency:           4,
		StorageEngine:             EngineWAL,
		Journals:                  1,
		JournalSegmentBytes:       8 << 20,
		JournalCheckpointInterval: 5 * time.Second,
	}
}

// validate fills zero values from DefaultConfig and rejects contradictions.
func (c *Config) validate() error {
	d := DefaultConfig()
	if c.DataDir == "" {
		return errors.New("config: data directory is empty")
	}
	if c.NodeID < 0 {
		return fmt.Errorf("config: node id %d: must be 0 or more", c.NodeID)
	}
	if c.Addr == "" {
		c.Addr = d.Addr
	}
	for _, check := range []func() error{c.validateAddrs, c.validateKafka, c.validateCluster, c.Security.validate} {
		if err := check(); err != nil {
			return err
		}
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = d.MaxRequestBytes
	}
	if c.MaxRequestBytes < 64<<10 {
		return fmt.Errorf("config: max request bytes %d: at least 64 KiB", c.MaxRequestBytes)
	}
	if err := c.validateBudgets(d); err != nil {
		return err
	}
	if err := c.validateStorage(d); err != nil {
		return err
	}
	if err := c.Groups.validate(); err != nil {
		return err
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// validateAddrs checks the listen and advertised addresses.
func (c *Config) validateAddrs() error {
	for _, a := range []struct{ flag, v string }{{"--addr", c.Addr}, {"--advertise-addr", c.AdvertiseAddr},
		{"--external-addr", c.ExternalAddr}, {"--external-advertise-addr", c.ExternalAdvertiseAddr}, {"--http-addr", c.HTTPAddr},
		{"--gossip-addr", c.GossipAddr}, {"--raft-addr", c.RaftAddr},
		{"--peer-addr", c.PeerAddr}, {"--peer-advertise-addr", c.PeerAdvertiseAddr}} {
		if a.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return fmt.Errorf("config: %s %q: want host:port: %v", a.flag, a.v, err)
		}
	}
	if c.ExternalAddr != "" && c.ExternalAdvertiseAddr == "" {
		return errors.New("config: --external-addr needs --external-advertise-addr: the address outside clients use to reach it")
	}
	if c.ExternalAdvertiseAddr != "" && c.ExternalAddr == "" {
		return errors.New("config: --external-advertise-addr needs --external-addr to listen on")
	}
	if c.GossipAddr == "" || c.RaftAddr == "" || c.PeerAddr == "" {
		return errors.New("config: --gossip-addr, --raft-addr and --peer-addr are required (port 0 picks a free one)")
	}
	return nil
}

// validateCluster checks the membership and controller settings.
func (c *Config) validateCluster() error {
	if c.BootstrapExpect < 0 || c.BootstrapExpect > 100 {
		return fmt.Errorf("config: --bootstrap-expect %d: want 0 (off) or the number of brokers starting together", c.BootstrapExpect)
	}
	if c.ControllerVoters == 0 {
		c.ControllerVoters = 3
	}
	if c.ControllerVoters != 1 && c.ControllerVoters != 3 && c.ControllerVoters != 5 {
		return fmt.Errorf("config: --controller-voters %d: want 3 or 5 (1 for a single broker)", c.ControllerVoters)
	}
	for _, k := range append([][]byte{c.GossipKey}, c.GossipKeyring...) {
		if n := len(k); n != 0 && n != 16 && n != 24 && n != 32 {
			return fmt.Errorf("config: gossip key is %d bytes: want 16, 24 or 32 (base64 of random bytes)", n)
		}
	}
	if len(c.GossipKeyring) > 0 && len(c.GossipKey) == 0 {
		return errors.New("config: further gossip keys given without a primary gossip key")
	}
	if c.TLS.Enabled() && len(c.GossipKey) == 0 {
		return errors.New("config: TLS is on but gossip is not encrypted: give a gossip key (--gossip-key-file FILE or SKEIN_GOSSIP_KEY; make one with: head -c 32 /dev/urandom | base64), the same on every broker, or a node without a certificate could still join the cluster's gossip")
	}
	if c.ReplicaLagTime == 0 {
		c.ReplicaLagTime = 10 * time.Second
	}
	if c.ReplicaLagTime < 100*time.Millisecond {
		return fmt.Errorf("config: --replica-lag-time %v: at least 100ms", c.ReplicaLagTime)
	}
	if len(c.Rack) > 64 {
		return fmt.Errorf("config: --rack is %d bytes, at most 64", len(c.Rack))
	}
	return nil
}

// validateStorage checks segments, topic defaults and the background
// intervals, filling zero values from d.
func (c *Config) validateStorage(d Config) error {
	if c.SegmentBytes == 0 {
		c.SegmentBytes = d.SegmentBytes
	}
	if c.SegmentBytes < 4096 {
		return fmt.Errorf("config: segment bytes %d: at least 4096", c.SegmentBytes)
	}
	if c.TopicDefaults == (cluster.Defaults{}) {
		c.TopicDefaults = d.TopicDefaults
	}
	// A record must fit in a request with its batch and request overhead.
	if lim := int32(c.MaxRequestBytes - 64<<10); c.TopicDefaults.MaxRecordBytesLimit == 0 || c.TopicDefaults.MaxRecordBytesLimit > lim {
		c.TopicDefaults.MaxRecordBytesLimit = lim
	}
	if c.TopicDefaults.MaxRecordBytes > c.TopicDefaults.MaxRecordBytesLimit {
		return fmt.Errorf("config: default max record bytes %d does not fit in max request bytes %d",
			c.TopicDefaults.MaxRecordBytes, c.MaxRequestBytes)
	}
	if c.CleanerIOBytesPerSec == 0 {
		c.CleanerIOBytesPerSec = d.CleanerIOBytesPerSec
	}
	if c.CleanerInterval <= 0 {
		c.CleanerInterval = d.CleanerInterval
	}
	if c.RetentionCheckInterval <= 0 {
		c.RetentionCheckInterval = d.RetentionCheckInterval
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = d.ShutdownTimeout
	}
	if c.OpenConcurrency <= 0 {
		c.OpenConcurrency = d.OpenConcurrency
	}
	return c.validateEngine(d)
}

// validateEngine checks the storage engine's settings.
func (c *Config) validateEngine(d Config) error {
	switch c.StorageEngine {
	case "":
		c.StorageEngine = d.StorageEngine
	case EngineWAL, EngineJournal:
	default:
		return fmt.Errorf("config: --storage-engine %q: want %q or %q", c.StorageEngine, EngineWAL, EngineJournal)
	}
	if c.Journals == 0 {
		c.Journals = d.Journals
	}
	if c.Journals < 1 || c.Journals > 64 {
		return fmt.Errorf("config: --journals %d: between 1 and 64", c.Journals)
	}
	if c.JournalSegmentBytes == 0 {
		c.JournalSegmentBytes = d.JournalSegmentBytes
	}
	if c.JournalSegmentBytes < 1<<20 || c.JournalSegmentBytes > 1<<30 {
		return fmt.Errorf("config: --journal-segment-bytes %d: between 1 MiB and 1 GiB", c.JournalSegmentBytes)
	}
	if c.JournalCheckpointInterval == 0 {
		c.JournalCheckpointInterval = d.JournalCheckpointInterval
	}
	if c.JournalCheckpointInterval < 100*time.Millisecond || c.JournalCheckpointInterval > time.Hour {
		return fmt.Errorf("config: --journal-checkpoint-interval %v: between 100ms and 1h", c.JournalCheckpointInterval)
	}
	return nil
}
