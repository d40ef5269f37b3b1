package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/internal/fsutil"
	"github.com/skeinlog/skein/kafka"
	"github.com/skeinlog/skein/partition"
	pb "github.com/skeinlog/skein/proto/skeinv1"
	"github.com/skeinlog/skein/replication"
	"github.com/skeinlog/skein/wal"
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
	grpc    *grpc.Server // client listeners: the Skein service only
	peer    *grpc.Server // inter-broker listener: the Internal service
	health  *health.Server
	http    *http.Server
	metrics *metrics

	inflight *byteBudget  // fetch and produce bytes in flight (budget.go)
	badMsgs  *badMessages // requests that did not unmarshal (codec.go)

	reconcileMu sync.Mutex // serialises reconcile

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

	console consoleClient // the web console's admin client
	dyn     dynamicState  // run-time broker settings applied

	storageMu sync.Mutex // guards storageID
	storageID string     // this data directory's storage identity (node.json)
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
	AlterPartition(ctx context.Context, req cluster.AlterRequest) (cluster.PartitionMeta, error)
	ControlledShutdown(ctx context.Context, id int32) (int, error)
	AllocateProducerIDs(ctx context.Context, n int64) (int64, error)
	Members() []cluster.Member
	Voters() map[int32]bool
	GossipAddr() string
	RaftAddr() string
	RaftState() cluster.RaftState
	SetStorageID(id string) error
	CaughtUp() bool
	Leave(timeout time.Duration)
	Close() error
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
	}
	b.initDynamic()
	ok := false
	defer func() {
		if !ok {
			b.release()
		}
	}()
	if err := b.openDataDir(); err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on --addr %s: %w (is another broker running? choose another address with --addr)", cfg.Addr, err)
	}
	b.lis = lis
	if cfg.ExternalAddr != "" {
		if b.extLis, err = net.Listen("tcp", cfg.ExternalAddr); err != nil {
			return nil, fmt.Errorf("listen on --external-addr %s: %w", cfg.ExternalAddr, err)
		}
	}
	if b.peerLis, err = net.Listen("tcp", cfg.PeerAddr); err != nil {
		return nil, fmt.Errorf("listen on --peer-addr %s: %w (choose another with --peer-addr)", cfg.PeerAddr, err)
	}
	if cfg.HTTPAddr != "" {
		if b.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("listen on --http-addr %s: %w (choose another with --http-addr)", cfg.HTTPAddr, err)
		}
	}
	adv := cfg.AdvertiseAddr
	if adv == "" {
		adv = lis.Addr().String()
	}
	gossipAdv, raftAdv, err := advertised(cfg, adv)
	if err != nil {
		return nil, err
	}
	peerAdv, err := peerAdvertised(cfg, adv, b.peerLis.Addr().String())
	if err != nil {
		return nil, err
	}
	b.self = cluster.BrokerInfo{ID: cfg.NodeID, Addr: adv, ExternalAddr: cfg.ExternalAdvertiseAddr, PeerAddr: peerAdv, Rack: cfg.Rack, StorageID: b.storageID}
	if err := b.listenKafka(adv); err != nil {
		return nil, err
	}
	ctrl, err := cluster.Open(cluster.Config{
		Self: b.self, DataDir: cfg.DataDir,
		GossipAddr: cfg.GossipAddr, GossipAdvertise: gossipAdv,
		RaftAddr: cfg.RaftAddr, RaftAdvertise: raftAdv,
		Join: cfg.Join, BootstrapExpect: cfg.BootstrapExpect, MaxVoters: cfg.ControllerVoters,
		GossipKey: cfg.GossipKey, GossipLabel: cfg.GossipLabel, Local: cfg.LoopbackTimings,
		Defaults: cfg.TopicDefaults, Probe: probe, Verify: identify, Logger: cfg.Logger.With("node", cfg.NodeID),
	})
	if err != nil {
		return nil, err
	}
	b.ctrl = ctrl
	b.peers = newPeers(b)
	b.repl = replication.Config{
		Self: cfg.NodeID, LagTime: cfg.ReplicaLagTime, Transport: b.peers, Controller: b.peers,
		Logger: cfg.Logger.With("node", cfg.NodeID), Trace: cfg.Trace,
	}
	b.inflight = newByteBudget(cfg.MaxInflightBytes, budgetWait)
	b.badMsgs = &badMessages{}
	b.metrics = newMetrics(b)
	b.groups = newCoordinator(b)
	b.health = health.NewServer()
	b.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	b.grpc, b.peer = b.newClientServer(), b.newPeerServer()
	if b.httpLis != nil {
		b.http = &http.Server{Handler: b.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
	}
	ok = true
	return b, nil
}

// openDataDir creates and locks the data directory and checks that it
// belongs to this node id.
func (b *Broker) openDataDir() error {
	dir := b.cfg.DataDir
	if err := os.MkdirAll(filepath.Join(dir, topicsDir), 0o755); err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(f.Name())
		f.Close()
		return fmt.Errorf("data directory %s is in use by another broker (pid %s); give each broker its own --data-dir",
			dir, strings.TrimSpace(string(pid)))
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	b.lock = f

	path := filepath.Join(dir, nodeFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		var n nodeRecord
		if err := json.Unmarshal(data, &n); err != nil {
			return fmt.Errorf("%s is unreadable: %w", path, err)
		}
		if n.NodeID != b.cfg.NodeID {
			return fmt.Errorf("data directory %s belongs to node %d, not %d: start with --node-id %d or use another --data-dir",
				dir, n.NodeID, b.cfg.NodeID, n.NodeID)
		}
		b.storageID = n.StorageID
		if b.storageID == "" { // written by an older version
			if err := b.writeNodeFile(cluster.NewID()); err != nil {
				return err
			}
		}
	case errors.Is(err, os.ErrNotExist):
		// A new (or wiped) data directory: a new storage identity, so the
		// controller knows this broker holds none of what it had.
		if err := b.writeNodeFile(cluster.NewID()); err != nil {
			return err
		}
	default:
		return err
	}
	// Finish deletions a crash interrupted.
	ents, _ := os.ReadDir(filepath.Join(dir, topicsDir))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), deletedPrefix) {
			os.RemoveAll(filepath.Join(dir, topicsDir, e.Name()))
		}
	}
	return nil
}

// nodeRecord is node.json: whose data directory this is, and its storage
// identity.
type nodeRecord struct {
	NodeID    int32  `json:"node_id"`
	StorageID string `json:"storage_id,omitempty"`
}

// writeNodeFile records storage id id in node.json (atomically) and makes
// it the broker's.
func (b *Broker) writeNodeFile(id string) error {
	path := filepath.Join(b.cfg.DataDir, nodeFile)
	data, _ := json.Marshal(nodeRecord{NodeID: b.cfg.NodeID, StorageID: id})
	if err := fsutil.WriteFileAtomic(path, data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	b.storageMu.Lock()
	b.storageID = id
	b.storageMu.Unlock()
	return nil
}

// currentStorageID is this data directory's storage identity.
func (b *Broker) currentStorageID() string {
	b.storageMu.Lock()
	defer b.storageMu.Unlock()
	return b.storageID
}

// renewStorageID gives the data directory a new storage identity because a
// replica's log was found damaged, and gossips it: the controller then
// takes this broker out of every ISR until it has copied its partitions
// again (cluster.BrokerInfo.StorageID).
func (b *Broker) renewStorageID(why error) {
	id := cluster.NewID()
	if err := b.writeNodeFile(id); err != nil {
		b.log.Error("cannot record a new storage id after finding damage", "err", err)
		return
	}
	if err := b.ctrl.SetStorageID(id); err != nil {
		b.log.Error("cannot gossip the new storage id", "err", err)
	}
	b.log.Warn("local data found damaged: new storage id; leaving every ISR until the partitions are copied again", "storage_id", id, "cause", why)
}

// storageRegistered reports whether the metadata has this broker's current
// storage id (so the ISR changes a renewal implies are committed).
func (b *Broker) storageRegistered(s *cluster.Snapshot) bool {
	bi, ok := s.Broker(b.self.ID)
	return ok && bi.StorageID == b.currentStorageID()
}

// replicaDamaged handles damage found by a lazily opened log after the
// start: the replica is closed and opened again, which cuts its log at the
// damage and marks it damaged.
func (b *Broker) replicaDamaged(k tp, err error) {
	if b.closing() {
		return
	}
	b.log.Error("replica found damaged; reopening it", "partition", k.String(), "err", err)
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		b.reconcileMu.Lock()
		b.mu.Lock()
		r := b.replicas[k]
		delete(b.replicas, k)
		b.mu.Unlock()
		if r != nil {
			r.stopReplication()
			r.p.Close()
		}
		b.reconcileMu.Unlock()
		if err := b.reconcile(); err != nil && !errors.Is(err, errShuttingDown) {
			b.log.Error("reopening a damaged replica failed", "partition", k.String(), "err", err)
		}
	}()
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

// Run opens the partitions, serves until ctx ends or a fatal error occurs,
// then shuts down gracefully: it stops taking requests, lets in-flight ones
// finish (up to ShutdownTimeout), fsyncs and closes every log. It returns
// nil after a requested stop, or the fatal error.
func (b *Broker) Run(ctx context.Context) error {
	errc := make(chan error, 5)
	if b.http != nil {
		go func() {
			if err := b.http.Serve(b.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http server: %w", err)
			}
		}()
	}
	// Serve gRPC from the start: other brokers and the controller's probe
	// reach this one while it joins; health says NOT_SERVING until ready.
	go func() {
		if err := b.grpc.Serve(b.lis); err != nil {
			errc <- fmt.Errorf("grpc server: %w", err)
		}
	}()
	if b.kafka != nil {
		go func() {
			if err := b.kafka.Serve(); err != nil {
				errc <- err
			}
		}()
	}
	if b.extLis != nil {
		go func() {
			if err := b.grpc.Serve(b.extLis); err != nil {
				errc <- fmt.Errorf("grpc server (external): %w", err)
			}
		}()
	}
	go func() {
		if err := b.peer.Serve(b.peerLis); err != nil {
			errc <- fmt.Errorf("grpc server (peer): %w", err)
		}
	}()
	started := time.Now()
	// Register and take up the roles; if a replica was found damaged on
	// open (a new storage id), once more: serve only after the controller
	// has taken this broker out of the ISRs.
	for first := true; first || !b.storageRegistered(b.ctrl.Snapshot()); first = false {
		if err := b.awaitRegistration(ctx); err != nil {
			b.Close()
			return err
		}
		if err := b.reconcile(); err != nil {
			b.Close()
			return err
		}
		if !first {
			break
		}
	}
	b.bg.Add(4)
	go b.groups.run()
	go b.retentionLoop()
	go b.watchMetadata()
	go b.tickLeaders()
	b.ready.Store(true)
	b.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	b.mu.RLock()
	n := len(b.replicas)
	b.mu.RUnlock()
	b.log.Info("broker ready", "addr", b.Addr(), "peer", b.PeerAddr(), "http", b.HTTPAddr(), "kafka", b.KafkaAddr(), "gossip", b.ctrl.GossipAddr(), "raft", b.ctrl.RaftAddr(),
		"data_dir", b.cfg.DataDir, "partitions", n, "controller", b.ctrl.ControllerID(), "startup", time.Since(started).Round(time.Millisecond))

	var cause error
	select {
	case <-ctx.Done():
		b.log.Info("shutting down")
	case cause = <-errc:
		b.log.Error("server failed; shutting down", "err", cause)
	case cause = <-b.fatal:
		b.log.Error("fatal storage error; shutting down", "err", cause)
	}
	if err := b.Close(); err != nil && cause == nil {
		cause = err
	}
	return cause
}

// awaitRegistration waits until the controller quorum knows this broker:
// at once for a broker alone, after the join for one joining a cluster.
func (b *Broker) awaitRegistration(ctx context.Context) error {
	last := time.Now()
	for {
		// The storage id too: a new one (a wiped data directory) is
		// registered together with this broker's removal from every ISR.
		bi, ok := b.ctrl.Snapshot().Broker(b.self.ID)
		if ok && bi.Addr == b.self.Addr && bi.KafkaAddr == b.self.KafkaAddr && bi.PeerAddr == b.self.PeerAddr && b.ctrl.CaughtUp() && bi.StorageID == b.currentStorageID() {
			return nil
		}
		if time.Since(last) > 5*time.Second {
			last = time.Now()
			b.log.Info("waiting to join the cluster", "join", strings.Join(b.cfg.Join, ","), "bootstrap_expect", b.cfg.BootstrapExpect,
				"controller", b.ctrl.ControllerID())
			if ok && bi.StorageID != b.currentStorageID() && bi.GossipAddr != b.ctrl.GossipAddr() {
				b.log.Warn("this broker's id is registered at another address with other data: the controller refuses this one until that changes (another broker with the same --node-id?)",
					"registered_gossip_addr", bi.GossipAddr, "registered_addr", bi.Addr)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped before joining the cluster: %w", ctx.Err())
		case <-b.ctrl.Changes():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// advertised derives the gossip and Raft addresses other brokers use: the
// bound host, or the host of the advertised client address when bound to
// all interfaces.
func advertised(cfg Config, clientAdv string) (gossip, raft string, err error) {
	advHost, _, _ := net.SplitHostPort(clientAdv)
	derive := func(bind string) (string, error) {
		host, port, err := net.SplitHostPort(bind)
		if err != nil {
			return "", err
		}
		ip := net.ParseIP(host)
		if host != "" && (ip == nil || !ip.IsUnspecified()) {
			return "", nil // bound to one address: it is the advertised one
		}
		if advHost == "" || net.ParseIP(advHost) != nil && net.ParseIP(advHost).IsUnspecified() {
			return "", fmt.Errorf("%s is bound to all interfaces: set --advertise-addr to this broker's reachable host:port", bind)
		}
		return net.JoinHostPort(advHost, port), nil
	}
	if gossip, err = derive(cfg.GossipAddr); err != nil {
		return "", "", err
	}
	if raft, err = derive(cfg.RaftAddr); err != nil {
		return "", "", err
	}
	return gossip, raft, nil
}

// tickLeaders lets every leader look for followers that fell out of sync.
func (b *Broker) tickLeaders() {
	defer b.bg.Done()
	t := time.NewTicker(max(b.cfg.ReplicaLagTime/4, 50*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-b.stopping:
			return
		case <-t.C:
		}
		b.mu.RLock()
		for _, r := range b.replicas {
			if r.leader != nil {
				r.leader.Tick()
			}
		}
		b.mu.RUnlock()
	}
}

// Close shuts the broker down (see Run). Idempotent; safe without Run.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		if b.ready.Load() && !b.abrupt.Load() {
			b.handOff()
		}
		b.ready.Store(false)
		close(b.stopping)
		if b.kafka != nil {
			b.kafka.Close()
		}
		if b.health != nil {
			b.health.Shutdown()
		}
		b.stopServers()
		if b.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			b.http.Shutdown(ctx)
			cancel()
		}
		b.closeConsole()
		b.bg.Wait()
		b.mu.Lock()
		reps := b.replicas
		b.replicas = map[tp]*replica{}
		b.mu.Unlock()
		var errs []error
		for _, r := range reps {
			r.stopReplication()
		}
		for t, r := range reps {
			if err := r.p.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", t, err))
			}
		}
		if b.peers != nil {
			b.peers.close()
		}
		b.closeErr = errors.Join(errs...)
		b.release()
		b.log.Info("broker stopped")
	})
	return b.closeErr
}

// handOff is the clean part of a shutdown in a cluster: ask the controller
// to move this broker's leaderships to other in-sync replicas and wait for
// the metadata to say so, then hand over the controller role and leave
// gossip. Producers see NotLeader and move on; nothing fails.
func (b *Broker) handOff() {
	if len(b.ctrl.Snapshot().Brokers) < 2 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.ShutdownTimeout/2)
	defer cancel()
	// First let what was appended commit: stop new appends on partitions
	// another in-sync replica will take over, and wait for their HW.
	var draining []*partition.Partition
	b.mu.RLock()
	for _, t := range b.ctrl.Snapshot().Topics {
		for _, pm := range t.Partitions {
			if pm.Leader == b.self.ID && len(pm.ISR) > 1 {
				if r := b.replicas[tp{t.Name, pm.Partition}]; r != nil {
					r.p.BeginHandoff()
					draining = append(draining, r.p)
				}
			}
		}
	}
	b.mu.RUnlock()
	dctx, dcancel := context.WithTimeout(ctx, b.cfg.ShutdownTimeout/4)
	for _, p := range draining {
		p.WaitCommitted(dctx)
	}
	dcancel()
	var remaining int32
	err := b.peers.toController(ctx, func(ctx context.Context, local bool, c pb.InternalClient) error {
		if local {
			n, err := b.ctrl.ControlledShutdown(ctx, b.self.ID)
			remaining = int32(n)
			return err
		}
		resp, err := c.ControlledShutdown(ctx, &pb.ControlledShutdownRequest{BrokerId: b.self.ID})
		if err == nil && resp.Error != nil {
			err = errors.New(resp.Error.Message)
		}
		remaining = resp.GetRemainingLeaderships()
		return err
	})
	if err != nil {
		b.log.Warn("controlled shutdown failed; stopping anyway", "err", err)
	} else {
		// Wait until this broker's metadata shows the moves.
		for ctx.Err() == nil && b.leadsSharedPartitions() {
			select {
			case <-b.ctrl.Changes():
			case <-ctx.Done():
			}
		}
		b.log.Info("leaderships handed off", "remaining", remaining)
	}
	b.ctrl.Leave(time.Second)
}

// leadsSharedPartitions reports whether the metadata still has this broker
// leading a partition that another in-sync replica could lead.
func (b *Broker) leadsSharedPartitions() bool {
	s := b.ctrl.Snapshot()
	for _, t := range s.Topics {
		for _, pm := range t.Partitions {
			if pm.Leader == b.self.ID && len(pm.ISR) > 1 {
				return true
			}
		}
	}
	return false
}

// Kill stops the broker the way a crash would look to the others: no
// leadership hand-off, no gossip leave, connections cut. In-flight
// requests fail. Tests use it; a real crash is kill -9 of the process.
func (b *Broker) Kill() error {
	b.abrupt.Store(true)
	return b.Close()
}

// release frees what New took; used by Close and by a failed New.
func (b *Broker) release() {
	if b.ctrl != nil {
		b.ctrl.Close()
	}
	if b.lis != nil {
		b.lis.Close()
	}
	if b.extLis != nil {
		b.extLis.Close()
	}
	if b.kafka != nil {
		b.kafka.Close()
	}
	if b.peerLis != nil {
		b.peerLis.Close()
	}
	if b.httpLis != nil {
		b.httpLis.Close()
	}
	b.closeConsole()
	if b.lock != nil {
		syscall.Flock(int(b.lock.Fd()), syscall.LOCK_UN)
		b.lock.Close()
	}
}

func (b *Broker) onFatal(err error) {
	b.fatalOnce.Do(func() { b.fatal <- err })
}

// snapshot is the metadata this broker has applied.
func (b *Broker) snapshot() *cluster.Snapshot {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.snap == nil {
		return b.ctrl.Snapshot()
	}
	return b.snap
}

// watchMetadata reconciles local replicas with every metadata change.
func (b *Broker) watchMetadata() {
	defer b.bg.Done()
	for {
		ch := b.ctrl.Changes()
		if err := b.reconcile(); err != nil {
			b.log.Error("applying metadata failed", "err", err)
		}
		select {
		case <-ch:
		case <-b.stopping:
			return
		}
	}
}

// ensureTopicDir creates a topic's directory with its id file. A directory
// left by an earlier topic of the same name is moved aside first.
func (b *Broker) ensureTopicDir(t cluster.Topic) error {
	tdir := filepath.Join(b.cfg.DataDir, topicsDir, t.Name)
	idPath := filepath.Join(tdir, topicIDFile)
	if id, err := os.ReadFile(idPath); err == nil && strings.TrimSpace(string(id)) != t.ID {
		b.log.Warn("moving aside data of an earlier topic with the same name", "topic", t.Name, "old_id", strings.TrimSpace(string(id)))
		b.removeTopicDir(t.Name, strings.TrimSpace(string(id)))
	}
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(idPath); errors.Is(err, os.ErrNotExist) {
		return fsutil.WriteFileAtomic(idPath, []byte(t.ID+"\n"))
	}
	return nil
}

// openReplica opens one partition replica; its topic directory exists.
func (b *Broker) openReplica(t cluster.Topic, part int32) (*partition.Partition, error) {
	return partition.Open(partition.Config{
		Dir:            filepath.Join(b.cfg.DataDir, topicsDir, t.Name, strconv.Itoa(int(part))),
		Topic:          t.Name,
		Partition:      part,
		MaxRecordBytes: int(t.Config.MaxRecordBytes),
		WAL:            wal.Options{SegmentBytes: b.cfg.SegmentBytes, UnsafeNoFsync: b.cfg.UnsafeNoFsync},
		OnFatal:        b.onFatal,
		OnDamage:       func(err error) { b.replicaDamaged(tp{t.Name, part}, err) },
		Observer:       b.metrics,
		Trace:          b.cfg.Trace,
		Logger:         b.cfg.Logger,
		ProducerExpiry: b.cfg.ProducerExpiry,
	})
}

// removeTopicDir renames a topic's directory aside (atomic, so a crash
// cannot leave half a topic under its name) and deletes it in the background.
func (b *Broker) removeTopicDir(name, id string) {
	base := filepath.Join(b.cfg.DataDir, topicsDir)
	src := filepath.Join(base, name)
	dst := filepath.Join(base, deletedPrefix+name+"-"+id)
	if err := os.Rename(src, dst); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			b.log.Error("could not remove topic directory", "dir", src, "err", err)
		}
		return
	}
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		if err := os.RemoveAll(dst); err != nil {
			b.log.Error("could not remove topic directory", "dir", dst, "err", err)
		}
	}()
}

// retentionLoop applies each topic's retention to every local replica.
func (b *Broker) retentionLoop() {
	defer b.bg.Done()
	t := time.NewTimer(b.dyn.retentionInterval())
	defer t.Stop()
	for {
		select {
		case <-b.stopping:
			return
		case <-b.dyn.retentionReset: // the interval changed at run time
			t.Reset(b.dyn.retentionInterval())
		case <-t.C:
			b.applyRetention()
			t.Reset(b.dyn.retentionInterval())
		}
	}
}

func (b *Broker) applyRetention() {
	type target struct {
		p   *partition.Partition
		cfg cluster.TopicConfig
	}
	b.mu.RLock()
	reps := make(map[tp]target, len(b.replicas))
	for k, r := range b.replicas {
		reps[k] = target{r.p, r.cfg} // r.cfg changes under b.mu
	}
	b.mu.RUnlock()
	for k, r := range reps {
		pol := partition.Retention{MaxBytes: r.cfg.RetentionBytes}
		if r.cfg.RetentionMs > 0 {
			pol.MaxAge = time.Duration(r.cfg.RetentionMs) * time.Millisecond
		}
		freed, err := r.p.ApplyRetention(pol)
		if err != nil && !errors.Is(err, partition.ErrClosed) {
			b.log.Warn("retention failed", "partition", k.String(), "err", err)
		}
		if freed > 0 {
			b.log.Info("retention deleted segments", "partition", k.String(), "bytes", freed)
		}
	}
}

// lookup finds a partition's metadata and, if this broker hosts it, its
// replica. Unknown topics and out-of-range partitions are errors.
func (b *Broker) lookup(topic string, part int32) (cluster.Topic, cluster.PartitionMeta, *replica, error) {
	snap := b.snapshot()
	t, ok := snap.Topics[topic]
	if !ok {
		if err := cluster.ValidateTopicName(topic); err != nil {
			return t, cluster.PartitionMeta{}, nil, err
		}
		return t, cluster.PartitionMeta{}, nil, fmt.Errorf("%w: %q does not exist (create it with: broker topic create %s)", cluster.ErrUnknownTopic, topic, topic)
	}
	if part < 0 {
		return t, cluster.PartitionMeta{}, nil, invalid("partition %d: partitions are numbered from 0", part)
	}
	if int(part) >= len(t.Partitions) {
		return t, cluster.PartitionMeta{}, nil, fmt.Errorf("%w: partition %d of %q: the topic has %d partitions (0..%d)",
			errUnknownPartition, part, topic, len(t.Partitions), len(t.Partitions)-1)
	}
	pm := t.Partitions[part]
	b.mu.RLock()
	r := b.replicas[tp{topic, part}]
	b.mu.RUnlock()
	return t, pm, r, nil
}

// leaderReplica returns the local leader replica of a partition, or an
// error that tells the client where the leader is.
func (b *Broker) leaderReplica(topic string, part int32) (*replica, error) {
	_, pm, r, err := b.lookup(topic, part)
	if err != nil {
		return nil, err
	}
	if r == nil || pm.Leader != b.self.ID {
		if r == nil && pm.Leader == b.self.ID {
			return nil, errNotReady
		}
		return nil, &partition.NotLeaderError{LeaderID: pm.Leader, LeaderEpoch: pm.LeaderEpoch}
	}
	return r, nil
}
