package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/skeinlog/skein/auth"
	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/internal/tlsconf"
)

// envFlags registers flags whose defaults come from SKEIN_* variables.
type envFlags struct {
	fs   *flag.FlagSet
	errs []error
}

func envName(flagName string) string {
	return "SKEIN_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// given reports whether a flag was set on the command line or through its
// variable.
func (e *envFlags) given(name string) bool {
	if _, ok := os.LookupEnv(envName(name)); ok {
		return true
	}
	set := false
	e.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func (e *envFlags) str(p *string, name, def, usage string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		def = v
	}
	e.fs.StringVar(p, name, def, usage+" (env "+envName(name)+")")
}

func (e *envFlags) int(p *int, name string, def int, usage string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s=%q: not an integer", envName(name), v))
		}
		def = n
	}
	e.fs.IntVar(p, name, def, usage+" (env "+envName(name)+")")
}

func (e *envFlags) bool(p *bool, name string, def bool, usage string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s=%q: not a boolean", envName(name), v))
		}
		def = b
	}
	e.fs.BoolVar(p, name, def, usage+" (env "+envName(name)+")")
}

// serveFlags are the serve flags that need converting into broker.Config
// (the others are parsed straight into it).
type serveFlags struct {
	nodeID, maxRequest, segment, bootstrapExpect, voters int
	maxInflight, maxStreams, offsetsParts                int
	join, logLevel, logFormat, gossipKey, lagTime        string
	producerExpiry, gossipKeyFile, journalCheckpoint     string
	tlsClientAuth                                        string
	unsafeNoFsync                                        bool
	superUsers, cleanerIO, cleanerInterval               string
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := broker.DefaultConfig()
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ef := &envFlags{fs: fs}
	var sf serveFlags
	registerServeFlags(ef, &cfg, &sf)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "broker: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if len(ef.errs) > 0 {
		fmt.Fprintf(stderr, "broker: %v\n", errors.Join(ef.errs...))
		return 2
	}
	logger, level, err := newLogger(stderr, sf.logLevel, sf.logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "broker: %v\n", err)
		return 2
	}
	cfg.Logger, cfg.LogLevel = logger, level
	if err := applyServeFlags(ef, &cfg, sf); err != nil {
		fmt.Fprintf(stderr, "broker: %v\n", err)
		return 2
	}
	onCmdline := false
	ef.fs.Visit(func(f *flag.Flag) { onCmdline = onCmdline || f.Name == "gossip-key" })
	if onCmdline && sf.gossipKey != "" {
		logger.Warn("--gossip-key on the command line is visible to every user of this machine in the process list: use SKEIN_GOSSIP_KEY or --gossip-key-file instead")
	}
	if sf.unsafeNoFsync {
		logger.Warn("--unsafe-no-fsync: writes are acknowledged before they are on disk; a machine crash loses acknowledged records")
	}
	broker.ApplyProcessLimits(cfg, logger)
	b, err := broker.New(cfg)
	if err != nil {
		logger.Error("cannot start", "err", err)
		return 1
	}
	if err := b.Run(ctx); err != nil {
		logger.Error("broker stopped with an error", "err", err)
		return 1
	}
	return 0
}

// registerServeFlags defines every serve flag, each with its variable.
func registerServeFlags(ef *envFlags, cfg *broker.Config, sf *serveFlags) {
	ef.int(&sf.nodeID, "node-id", int(cfg.NodeID), "this broker's id, stored in the data directory")
	ef.str(&cfg.DataDir, "data-dir", cfg.DataDir, "where the metadata and logs live")
	ef.str(&cfg.Addr, "addr", cfg.Addr, "client gRPC listen address")
	ef.str(&cfg.AdvertiseAddr, "advertise-addr", "", "address clients are told to use (default: the bound --addr)")
	ef.str(&cfg.ExternalAddr, "external-addr", "", "optional second client listener for clients outside the brokers' network (e.g. the host of a compose cluster)")
	ef.str(&cfg.ExternalAdvertiseAddr, "external-advertise-addr", "", "the address clients on --external-addr are told (e.g. localhost:19420)")
	ef.str(&cfg.KafkaAddr, "kafka-addr", cfg.KafkaAddr, "Kafka wire-protocol listen address (\"\" turns it off; with --join or --bootstrap-expect the default is a free port on the --addr host; see docs/kafka.md)")
	ef.str(&cfg.KafkaAdvertiseAddr, "kafka-advertise-addr", "", "address Kafka clients are told to use (default: the bound --kafka-addr)")
	ef.str(&cfg.PeerAddr, "peer-addr", cfg.PeerAddr, "inter-broker gRPC listen address (replication, controller requests; with --join or --bootstrap-expect the default is a free port on the --addr host): keep it on the brokers' private network, never expose it to clients")
	ef.str(&cfg.PeerAdvertiseAddr, "peer-advertise-addr", "", "address the other brokers dial for --peer-addr (default: the bound --peer-addr, or the --advertise-addr host with its port)")
	ef.str(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "HTTP address for /metrics, /healthz, /readyz, the /ui/ console and, with --pprof, /debug/pprof (\"\" turns it off)")
	ef.str(&cfg.GossipAddr, "gossip-addr", cfg.GossipAddr, "gossip address (memberlist, TCP and UDP)")
	ef.str(&cfg.RaftAddr, "raft-addr", cfg.RaftAddr, "controller quorum address (Raft)")
	ef.str(&sf.join, "join", "", "comma-separated gossip addresses (host:port) of brokers to join; retried until one answers")
	ef.int(&sf.bootstrapExpect, "bootstrap-expect", 0, "brokers started together: wait for this many (each with the same setting), then the lowest id bootstraps the controller quorum")
	ef.int(&sf.voters, "controller-voters", 3, "size of the Raft controller quorum: 3 or 5; further brokers follow it as non-voters")
	ef.str(&sf.gossipKey, "gossip-key", "", "base64 of 16, 24 or 32 random bytes: encrypts gossip (every broker needs the same key); on the command line it is visible in the process list: prefer the variable or --gossip-key-file")
	ef.str(&sf.gossipKeyFile, "gossip-key-file", "", "file holding the gossip key (base64, as for --gossip-key); several keys one per line rotate: the first encrypts, all are accepted")
	ef.str(&cfg.TLS.CertFile, "tls-cert-file", "", "PEM certificate of this broker (server, and client to other brokers): with --tls-key-file and --tls-ca-file turns TLS on for every listener; re-read when it changes")
	ef.str(&cfg.TLS.KeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	ef.str(&cfg.TLS.CAFile, "tls-ca-file", "", "PEM certificate(s) of the CA that signs brokers' and clients' certificates")
	ef.str(&sf.tlsClientAuth, "tls-client-auth", "none", "client certificates on the client, external and Kafka listeners: none, request (checked if given) or require (mutual TLS); brokers always require each other's")
	ef.bool(&cfg.Pprof, "pprof", false, "serve the Go profiler under /debug/pprof on --http-addr (off by default)")
	ef.bool(&cfg.HTTPInsecurePlaintextPasswords, "http-insecure-plaintext-passwords", false, "INSECURE: accept passwords (HTTP basic authentication for the console and the profiler) on --http-addr without TLS, where they cross the network in clear; for tests on one host")
	ef.str(&cfg.GossipLabel, "gossip-label", "", "label on every gossip packet, so clusters sharing a network ignore each other")
	ef.str(&cfg.Rack, "rack", "", "rack label for rack-aware replica placement")
	ef.str(&sf.lagTime, "replica-lag-time", "10s", "replica.lag.time.max: a follower behind for this long leaves the ISR")
	ef.int(&sf.maxRequest, "max-request-bytes", cfg.MaxRequestBytes, "largest request the broker reads")
	ef.int(&sf.maxInflight, "max-inflight-bytes", int(cfg.MaxInflightBytes), "budget of fetch and produce bytes held at once; past it requests wait briefly, then get RESOURCE_EXHAUSTED with a retry hint")
	ef.int(&sf.maxStreams, "max-streams-per-connection", cfg.MaxStreamsPerConn, "concurrent gRPC calls (streams) one client connection may have open")
	ef.int(&sf.segment, "segment-bytes", cfg.SegmentBytes, "target size of log segment files")
	ef.str(&cfg.StorageEngine, "storage-engine", cfg.StorageEngine, "how partition logs are kept: wal (a log per partition, each fsynced alone) or journal (segment files per partition, made durable by journals shared by every partition: one fsync per group of appends to any partitions); a data directory keeps the engine it was created with (see docs/storage.md)")
	ef.int(&cfg.Journals, "journals", cfg.Journals, "journal engine: journals in the data directory, fixed when it is created; each holds --journal-segment-bytes in memory, and separate journals fsync in parallel")
	ef.int(&cfg.JournalSegmentBytes, "journal-segment-bytes", cfg.JournalSegmentBytes, "journal engine: size of a journal's segment files; the tail one of each journal is held in memory")
	ef.str(&sf.journalCheckpoint, "journal-checkpoint-interval", cfg.JournalCheckpointInterval.String(), "journal engine: how often the partitions' segment files are flushed and the journal cut in front (longer: longer replay after a crash; shorter: more fsyncs)")
	ef.int(&sf.offsetsParts, "offsets-topic-partitions", 50, "partitions of __consumer_offsets, the consumer groups' internal topic, fixed when the first group is used")
	ef.str(&sf.cleanerIO, "cleaner-io-mb-per-s", "32", "log cleaner: MiB per second it may read and write compacting the partitions of compacted topics, over all of them (-1: unlimited)")
	ef.str(&sf.cleanerInterval, "cleaner-interval", "15s", "log cleaner: how often it looks for compacted partitions to clean")
	ef.str(&sf.producerExpiry, "producer-id-expiry", "168h", "forget an idempotent producer id idle this long (Go duration; -1s: never)")
	ef.bool(&sf.unsafeNoFsync, "unsafe-no-fsync", false, "acknowledge writes before they reach the disk: a machine crash LOSES acknowledged records; benchmarks only")
	ef.str(&sf.logLevel, "log-level", "info", "debug, info, warn or error")
	ef.str(&sf.logFormat, "log-format", "text", "text or json")
	ef.str(&cfg.Security.Authorizer, "authorizer", "", "acl: check every request against the ACLs (broker acl), deny by default; unset: no ACLs")
	ef.str(&sf.superUsers, "super-users", "", "comma-separated principals allowed everything, e.g. User:admin (User:broker, the brokers, always is)")
}

// applyServeFlags converts and checks the flags that need it into cfg.
func applyServeFlags(ef *envFlags, cfg *broker.Config, sf serveFlags) error {
	if sf.nodeID < 0 || sf.nodeID > 1<<31-1 {
		return fmt.Errorf("--node-id %d: must be between 0 and 2147483647", sf.nodeID)
	}
	cfg.NodeID = int32(sf.nodeID)
	cfg.BootstrapExpect, cfg.ControllerVoters = sf.bootstrapExpect, sf.voters
	var err error
	if cfg.GossipKey, cfg.GossipKeyring, err = readGossipKey(sf.gossipKey, sf.gossipKeyFile); err != nil {
		return err
	}
	if cfg.TLSClientAuth, err = tlsconf.ParseClientAuth(sf.tlsClientAuth); err != nil {
		return err
	}
	if !cfg.TLS.Enabled() && ef.given("tls-client-auth") {
		return errors.New("--tls-client-auth needs TLS: give --tls-cert-file, --tls-key-file and --tls-ca-file")
	}
	if cfg.ReplicaLagTime, err = time.ParseDuration(sf.lagTime); err != nil {
		return fmt.Errorf("--replica-lag-time %q: %v", sf.lagTime, err)
	}
	cfg.MaxRequestBytes, cfg.SegmentBytes = sf.maxRequest, sf.segment
	cfg.MaxInflightBytes, cfg.MaxStreamsPerConn = int64(sf.maxInflight), sf.maxStreams
	cfg.UnsafeNoFsync = sf.unsafeNoFsync
	if cfg.JournalCheckpointInterval, err = time.ParseDuration(sf.journalCheckpoint); err != nil {
		return fmt.Errorf("--journal-checkpoint-interval %q: %v", sf.journalCheckpoint, err)
	}
	if sf.offsetsParts < 1 || sf.offsetsParts > 1000 {
		return fmt.Errorf("--offsets-topic-partitions %d: between 1 and 1000", sf.offsetsParts)
	}
	cfg.Groups.OffsetsPartitions = int32(sf.offsetsParts)
	if cfg.CleanerIOBytesPerSec, cfg.CleanerInterval, err = cleanerFlags(sf.cleanerIO, sf.cleanerInterval); err != nil {
		return err
	}
	if cfg.ProducerExpiry, err = time.ParseDuration(sf.producerExpiry); err != nil || cfg.ProducerExpiry == 0 {
		return fmt.Errorf("--producer-id-expiry %q: want a duration such as 168h (negative: never)", sf.producerExpiry)
	}
	if cfg.Security.SuperUsers, err = auth.ParsePrincipals(sf.superUsers); err != nil {
		return fmt.Errorf("--super-users: %v", err)
	}
	cfg.Join = append(cfg.Join, splitList(sf.join)...)
	if len(cfg.Join) > 0 || cfg.BootstrapExpect > 0 {
		// Brokers of a cluster often share a host: the single-broker
		// default ports of the peer and Kafka listeners would collide.
		// Unless given, each takes a free port on the client listener's
		// host, which the broker gossips.
		if !ef.given("peer-addr") {
			cfg.PeerAddr = freePortOn(cfg.Addr)
		}
		if !ef.given("kafka-addr") {
			cfg.KafkaAddr = freePortOn(cfg.Addr)
		}
	}
	return nil
}

// freePortOn is addr's host with port 0 (a free port), or "" if addr has
// no host part.
func freePortOn(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return net.JoinHostPort(host, "0")
}

// readGossipKey decodes the gossip keys from --gossip-key (or its
// variable) or from the file --gossip-key-file names (one key per line; the
// first encrypts, all are accepted: rotation); neither: no key.
func readGossipKey(key, file string) (primary []byte, more [][]byte, err error) {
	const how = "make one with: head -c 32 /dev/urandom | base64"
	what := "--gossip-key"
	lines := []string{key}
	switch {
	case key != "" && file != "":
		return nil, nil, errors.New("--gossip-key and --gossip-key-file both given: give one")
	case file != "":
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, nil, fmt.Errorf("--gossip-key-file: %w", err)
		}
		lines = splitOn(string(data), "\n")
		if len(lines) == 0 {
			return nil, nil, fmt.Errorf("--gossip-key-file %s is empty: it holds the key in base64 (%s)", file, how)
		}
		what = "--gossip-key-file " + file
	case key == "":
		return nil, nil, nil
	}
	var keys [][]byte
	for i, line := range lines {
		which := what
		if len(lines) > 1 {
			which = fmt.Sprintf("%s: key %d", what, i+1)
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: not base64: %v (%s)", which, err, how)
		}
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, nil, fmt.Errorf("%s: the key is %d bytes, want 16, 24 or 32 (%s)", which, n, how)
		}
		keys = append(keys, k)
	}
	return keys[0], keys[1:], nil
}

// newLogger builds the broker's logger, with its level in a LevelVar that
// the log.level run-time setting changes.
func newLogger(w io.Writer, level, format string) (*slog.Logger, *slog.LevelVar, error) {
	lv := new(slog.LevelVar)
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), lv, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), lv, nil
	}
	return nil, nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// cleanerFlags reads --cleaner-io-mb-per-s and --cleaner-interval.
func cleanerFlags(io, interval string) (int64, time.Duration, error) {
	mb, err := strconv.ParseFloat(io, 64)
	if err != nil || math.IsNaN(mb) || math.IsInf(mb, 0) || mb == 0 || (mb < 0 && mb != -1) || mb > 1<<20 {
		return 0, 0, fmt.Errorf("--cleaner-io-mb-per-s %q: want MiB per second, like 32 or 0.5, or -1 for unlimited", io)
	}
	d, err := time.ParseDuration(interval)
	if err != nil || d < 10*time.Millisecond {
		return 0, 0, fmt.Errorf("--cleaner-interval %q: want a duration of at least 10ms, like 15s", interval)
	}
	if mb < 0 {
		return -1, d, nil
	}
	return int64(mb * (1 << 20)), d, nil
}
