package broker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/skeinlog/skein/auth"
	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/internal/tlsconf"
	"github.com/skeinlog/skein/kafka"
	"github.com/skeinlog/skein/partition"
	"github.com/skeinlog/skein/replication"
)

// Broker is one Skein node: its data directory, controller view, local
// partition replicas and the gRPC and HTTP servers in front of them.
type Broker struct {
	cfg     Config
	log     *slog.Logger
	lock    *os.File // flock on the data directory
	ctrl    controller
	peers   *peers
	repl    replication.Config
	self    cluster.BrokerInfo
	lis     net.Listener
	extLis  net.Listener  // the optional external client listener
	kafka   *kafka.Server // the optional Kafka protocol listener
	peerLis net.Listener  // the inter-broker listener
	httpLis net.Listener
	tls     *tlsconf.Source // the TLS certificate, key and CA; nil: plaintext
	grpc    *grpc.Server    // client listeners: the Skein service only
	peer    *grpc.Server    // inter-broker listener: the Internal service
	health  *health.Server
	http    *http.Server
	metrics *metrics

	inflight   *byteBudget    // fetch and produce bytes in flight (budget.go)
	fetchShare *byteBudget    // the part of inflight fetches may hold (budget.go)
	badMsgs    *badMessages   // requests that did not unmarshal (codec.go)
	quotas     *quotaManager  // client quota buckets (quota.go)
	handleEst  handleEstimate // open handles as topic creation counts them (handles.go)

	reconcileMu sync.Mutex // serialises reconcile
	// sweepFloor is the controller's metadata version learnt after start:
	// leftover partition data is deleted only from metadata at least as new
	// (0: not learnt yet). See stale.go.
	sweepFloor atomic.Uint64
	// swept: a sweep ran at or past sweepFloor and deleted all it found.
	// Leftovers arise only while the broker is down (reconcile deletes
	// what it closes), so later reconciles skip the sweep, which reads
	// every topic directory; a deletion that fails clears it. See stale.go.
	swept atomic.Bool

	mu       sync.RWMutex // guards replicas and snap
	replicas map[tp]*replica
	snap     *cluster.Snapshot

	ready     atomic.Bool
	abrupt    atomic.Bool   // Kill: stop without handing anything off
	stopping  chan struct{} // closed when shutdown begins
	fatalOnce sync.Once
	fatal     chan error
	bg        sync.WaitGroup // background goroutines (dir removal, retention)
	closeOnce sync.Once
	closeErr  error

	pids producerIDs // InitProducer's block of ids

	groups *coordinator // consumer groups of the offsets partitions led here

	console  consoleClient // the web console's admin client
	dyn      dynamicState  // run-time broker settings applied
	progress progress      // reassignment copy rates, for status ETAs

	authz   *auth.Authorizer // ACLs and the audit log (auth.go)
	pwCache *auth.Cache      // recent password verifications

	storageMu sync.Mutex // guards storageID
	storageID string     // this data directory's storage identity (node.json)

	engine *engine // the journal engine's journals; nil for the wal engine
}

// controller is what the broker needs from the metadata controller
// (cluster.Controller).
type controller interface {
	Snapshot() *cluster.Snapshot
	Changes() <-chan struct{}
	IsController() bool
	ControllerID() int32
	CreateTopic(ctx context.Context, spec cluster.TopicSpec) (cluster.Topic, error)
	DeleteTopic(ctx context.Context, name string) error
	AlterTopic(ctx context.Context, name string, a cluster.TopicAlter) (cluster.Topic, error)
	SetBrokerConfig(ctx context.Context, name, value string) error
	AlterQuota(ctx context.Context, ch cluster.QuotaChange) error
	AlterPartition(ctx context.Context, req cluster.AlterRequest) (cluster.PartitionMeta, error)
	ControlledShutdown(ctx context.Context, id int32) (int, error)
	AllocateProducerIDs(ctx context.Context, n int64) (int64, error)
	PutUser(ctx context.Context, name string, creds []auth.Credential) (bool, error)
	DeleteUser(ctx context.Context, name string) error
	AddACL(ctx context.Context, a auth.ACL) error
	RemoveACL(ctx context.Context, a auth.ACL) error
	Members() []cluster.Member
	Voters() map[int32]bool
	GossipAddr() string
	RaftAddr() string
	RaftState() cluster.RaftState
	SetStorageID(id string) error
	CaughtUp() bool
	CommittedVersion(ctx context.Context) (uint64, error)
	Leave(timeout time.Duration)
	Close() error
	reassigner
}

type tp struct {
	topic     string
	partition int32
}

func (t tp) String() string { return fmt.Sprintf("%s-%d", t.topic, t.partition) }

type replica struct {
	p *partition.Partition
	// damaged: the log was found damaged and cut when it was opened. The
	// replica may lack records it acknowledged, so it leads nothing until
	// the controller has registered this broker's renewed storage id (which
	// takes it out of every ISR in the same commit). Guarded by b.mu.
	damaged  bool
	topicID  string
	cfg      cluster.TopicConfig   // guarded by b.mu: metadata changes update it
	leader   *replication.Leader   // while this broker leads it with followers
	follower *replication.Follower // while this broker follows a leader
	// applied is the metadata applyRole last carried out (guarded by
	// b.mu); reconcile skips a replica whose metadata has not changed since.
	applied *assigned
}

const (
	topicsDir     = "topics"
	deletedPrefix = ".deleted-"
	topicIDFile   = "topic.id"
	nodeFile      = "node.json"
	lockFile      = ".lock"
)

// New validates cfg, takes the data directory, loads the metadata and binds
// the listeners. Run starts serving.
func New(cfg Config) (*Broker, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b := &Broker{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.NodeID),
		replicas: map[tp]*replica{},
		stopping: make(chan struct{}),
		fatal:    make(chan error, 1),
		quotas:   newQuotaManager(time.Now),
		pwCache:  auth.NewCache(passwordVerifyTTL, 10000),
	}
	b.authz = b.newAuthorizer()
	b.initDynamic()
	ok := false
	defer func() {
		if !ok {
			b.release()
		}
	}()
	if err := b.openTLS(); err != nil {
		return nil, err
	}
	if err := b.openDataDir(); err != nil {
		return nil, err
	}
	if err := b.openStorage(); err != nil {
		return nil, err
	}
	if err := b.listen(); err != nil {
		return nil, err
	}
	if err := b.openController(); err != nil {
		return nil, err
	}
	b.wire()
	b.warnPlaintext(map[string]string{"--addr": b.Addr(), "--external-addr": b.ExternalListenAddr(), "--peer-addr": b.PeerAddr(),
		"--kafka-addr": b.KafkaAddr(), "--http-addr": b.HTTPAddr(), "--gossip-addr": b.ctrl.GossipAddr(), "--raft-addr": b.ctrl.RaftAddr()})
	ok = true
	return b, nil
}

// openController works out the addresses the broker advertises, binds the
// Kafka listener and opens the controller (gossip and Raft).
func (b *Broker) openController() error {
	cfg := b.cfg
	adv := cfg.AdvertiseAddr
	if adv == "" {
		adv = b.lis.Addr().String()
	}
	gossipAdv, raftAdv, err := advertised(cfg, adv)
	if err != nil {
		return err
	}
	peerAdv, err := peerAdvertised(cfg, adv, b.peerLis.Addr().String())
	if err != nil {
		return err
	}
	b.self = cluster.BrokerInfo{ID: cfg.NodeID, Addr: adv, ExternalAddr: cfg.ExternalAdvertiseAddr, PeerAddr: peerAdv, Rack: cfg.Rack, StorageID: b.storageID}
	if err := b.listenKafka(adv); err != nil {
		return err
	}
	ctrl, err := cluster.Open(cluster.Config{
		Self: b.self, DataDir: cfg.DataDir,
		GossipAddr: cfg.GossipAddr, GossipAdvertise: gossipAdv,
		RaftAddr: cfg.RaftAddr, RaftAdvertise: raftAdv,
		Join: cfg.Join, BootstrapExpect: cfg.BootstrapExpect, MaxVoters: cfg.ControllerVoters,
		GossipKey: cfg.GossipKey, GossipKeyring: cfg.GossipKeyring, GossipLabel: cfg.GossipLabel, Local: cfg.LoopbackTimings,
		TLS: b.tls, Defaults: cfg.TopicDefaults, Probe: b.probe, Verify: b.identify, Logger: cfg.Logger.With("node", cfg.NodeID),
	})
	if err != nil {
		return err
	}
	b.ctrl = ctrl
	return nil
}

// wire builds what serves requests: replication, budgets, metrics, the
// group coordinator, health, and the gRPC and HTTP servers.
func (b *Broker) wire() {
	cfg := b.cfg
	b.peers = newPeers(b)
	b.repl = replication.Config{
		Self: cfg.NodeID, LagTime: cfg.ReplicaLagTime, Transport: b.peers, Controller: b.peers,
		Logger: cfg.Logger.With("node", cfg.NodeID), Trace: cfg.Trace,
		Throttle: &replication.Throttle{Applies: b.catchingUp},
	}
	b.inflight = newByteBudget(cfg.MaxInflightBytes, budgetWait)
	b.fetchShare = newByteBudget(fetchShare(cfg.MaxInflightBytes), budgetWait)
	b.badMsgs = &badMessages{}
	b.metrics = newMetrics(b)
	b.repl.OnISRChange = b.metrics.reassign.isrChanged
	b.metrics.reg.MustRegister(b.quotas)
	b.groups = newCoordinator(b)
	b.health = health.NewServer()
	b.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	b.grpc, b.peer = b.newClientServer(), b.newPeerServer()
	if b.httpLis != nil {
		b.http = &http.Server{Handler: b.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
	}
}

// listen binds the client, external, peer and HTTP listeners.
func (b *Broker) listen() error {
	cfg := b.cfg
	var err error
	if b.lis, err = net.Listen("tcp", cfg.Addr); err != nil {
		return fmt.Errorf("listen on --addr %s: %w (is another broker running? choose another address with --addr)", cfg.Addr, err)
	}
	if cfg.ExternalAddr != "" {
		if b.extLis, err = net.Listen("tcp", cfg.ExternalAddr); err != nil {
			return fmt.Errorf("listen on --external-addr %s: %w", cfg.ExternalAddr, err)
		}
	}
	if b.peerLis, err = net.Listen("tcp", cfg.PeerAddr); err != nil {
		return fmt.Errorf("listen on --peer-addr %s: %w (choose another with --peer-addr)", cfg.PeerAddr, err)
	}
	if cfg.HTTPAddr != "" {
		if b.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("listen on --http-addr %s: %w (choose another with --http-addr)", cfg.HTTPAddr, err)
		}
		b.httpLis = b.httpListener(b.httpLis)
	}
	return nil
}

// nodeRecord is node.json: whose data directory this is, and its storage
// identity.
type nodeRecord struct {
	NodeID    int32  `json:"node_id"`
	StorageID string `json:"storage_id,omitempty"`
}

// Addr is the bound client gRPC address.
func (b *Broker) Addr() string { return b.lis.Addr().String() }

// ExternalListenAddr is the bound external client address, or "".
func (b *Broker) ExternalListenAddr() string {
	if b.extLis == nil {
		return ""
	}
	return b.extLis.Addr().String()
}

// HTTPAddr is the bound HTTP address, or "".
func (b *Broker) HTTPAddr() string {
	if b.httpLis == nil {
		return ""
	}
	return b.httpLis.Addr().String()
}

// errStarting answers client requests that arrive before the broker has
// joined the cluster and opened its partitions.
var errStarting = fmt.Errorf("%w: the broker is starting (joining the cluster, opening partitions); retry shortly", errNotReady)

const publicService = "/skein.v1.Skein/"

func (b *Broker) readyUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !b.ready.Load() && strings.HasPrefix(info.FullMethod, publicService) && !b.closing() {
		return nil, toStatus(errStarting)
	}
	return handler(ctx, req)
}

func (b *Broker) readyStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !b.ready.Load() && strings.HasPrefix(info.FullMethod, publicService) && !b.closing() {
		return toStatus(errStarting)
	}
	return handler(srv, ss)
}

func (b *Broker) closing() bool {
	select {
	case <-b.stopping:
		return true
	default:
		return false
	}
}

// GossipAddr and RaftAddr are the bound cluster addresses.
func (b *Broker) GossipAddr() string { return b.ctrl.GossipAddr() }
func (b *Broker) RaftAddr() string   { return b.ctrl.RaftAddr() }

// Metadata is the cluster metadata this broker has applied. Do not modify it.
func (b *Broker) Metadata() *cluster.Snapshot { return b.ctrl.Snapshot() }

// Partition returns this broker's replica of a partition, or nil. Tests use
// it to inspect replica state.
func (b *Broker) Partition(topic string, part int32) *partition.Partition {
	if r := b.localReplica(topic, part); r != nil {
		return r.p
	}
	return nil
}

// ID is the broker's node id.
func (b *Broker) ID() int32 { return b.self.ID }

// Ready reports whether the broker has opened its partitions and serves.
func (b *Broker) Ready() bool { return b.ready.Load() }

// snapshot is the metadata this broker has applied.
func (b *Broker) snapshot() *cluster.Snapshot {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.snap == nil {
		return b.ctrl.Snapshot()
	}
	return b.snap
}
