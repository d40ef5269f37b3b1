package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/skeinlog/skein/internal/tlsconf"
)

// Config configures a broker's controller: its gossip membership and its
// seat in the Raft controller quorum.
type Config struct {
	// Self is this broker; Self.Addr is its advertised client address.
	Self BrokerInfo
	// DataDir holds the Raft log and snapshots (under raft/).
	DataDir string
	// GossipAddr / GossipAdvertise and RaftAddr / RaftAdvertise: host:port.
	// Port 0 picks a free port (tests).
	GossipAddr      string
	GossipAdvertise string
	RaftAddr        string
	RaftAdvertise   string
	// Join lists gossip addresses of brokers to join. A broker with Join
	// never bootstraps a controller quorum by itself.
	Join []string
	// BootstrapExpect: brokers started together wait until gossip shows this
	// many brokers with the same setting; then the one with the lowest id
	// bootstraps the quorum with all of them as voters. 0: off.
	BootstrapExpect int
	// MaxVoters is the size of the voting quorum (3 or 5); further brokers
	// follow the metadata as non-voters (default 3).
	MaxVoters int
	// GossipKey (16, 24 or 32 bytes) encrypts gossip; GossipLabel keeps
	// clusters on one network apart.
	GossipKey   []byte
	GossipLabel string
	// GossipKeyring holds further gossip keys accepted (rotation).
	GossipKeyring [][]byte
	// TLS, when set, runs the Raft transport over mutual TLS: this broker
	// dials with its certificate and accepts only broker certificates the
	// CA signed.
	TLS *tlsconf.Source
	// Local tunes gossip and Raft timings for loopback tests.
	Local bool
	// Defaults for new topics.
	Defaults Defaults
	// ConfirmDeath is how long a broker must stay dead in gossip, and
	// unreachable by Probe, before the controller fences it (default 1 s).
	ConfirmDeath time.Duration
	// Probe checks a broker directly (its gRPC health); nil: gossip alone.
	Probe func(ctx context.Context, addr string) error
	// Verify asks the inter-broker listener a gossip member advertises who
	// it is. The controller registers a member as a broker only when the
	// answer matches what it gossips; nil: gossip alone (tests).
	Verify func(ctx context.Context, peerAddr string) (Identity, error)
	// RebalanceInterval: how often leadership returns to preferred replicas
	// (default 30 s; negative: never).
	RebalanceInterval time.Duration
	Logger            *slog.Logger
}

// Controller is a broker's view of, and seat in, the controller quorum. On
// every broker it applies the committed metadata (Snapshot, Changes). On the
// Raft leader — the controller — it also registers brokers, places new
// topics, fences confirmed-dead brokers and elects new partition leaders.
// It owns the Raft and gossip goroutines and one loop goroutine; Close
// stops them.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	fsm     *fsm
	raft    *raft.Raft
	trans   *raftTransport
	store   *raftboltdb.BoltStore
	members *Membership

	mu            sync.Mutex // guards the fields below
	suspects      map[int32]time.Time
	shuttingDown  map[int32]int64 // broker id -> incarnation that asked for controlled shutdown
	lastRebalance time.Time
	wasLeader     bool
	bootstrapped  bool
	meta          MemberMeta           // what this broker gossips
	fastElection  bool                 // single-voter timeouts are in effect
	startIndex    uint64               // the last Raft index on disk at start
	refused       map[string]time.Time // gossip node name -> when its registration was last refused
	registerErr   map[string]string    // gossip node name -> the last error registering it

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Open starts gossip and Raft for this broker. A broker with no Join and no
// BootstrapExpect, and no Raft state yet, bootstraps a one-voter quorum.
func Open(cfg Config) (*Controller, error) {
	if cfg.MaxVoters == 0 {
		cfg.MaxVoters = 3
	}
	if cfg.MaxVoters != 1 && cfg.MaxVoters != 3 && cfg.MaxVoters != 5 {
		return nil, fmt.Errorf("controller voters %d: want 1, 3 or 5", cfg.MaxVoters)
	}
	if cfg.ConfirmDeath <= 0 {
		cfg.ConfirmDeath = time.Second
	}
	if cfg.RebalanceInterval == 0 {
		cfg.RebalanceInterval = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Defaults == (Defaults{}) {
		cfg.Defaults = DefaultDefaults()
	}
	if k := len(cfg.GossipKey); k != 0 && k != 16 && k != 24 && k != 32 {
		return nil, fmt.Errorf("gossip key is %d bytes: want 16, 24 or 32", k)
	}
	c := &Controller{
		cfg: cfg, log: cfg.Logger.With("component", "controller"), fsm: newFSM(),
		suspects: map[int32]time.Time{}, shuttingDown: map[int32]int64{}, refused: map[string]time.Time{}, registerErr: map[string]string{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	ok := false
	defer func() {
		if !ok {
			c.shutdown()
		}
	}()
	if err := c.openRaft(); err != nil {
		return nil, err
	}
	meta := MemberMeta{
		ID: cfg.Self.ID, Addr: cfg.Self.Addr, External: cfg.Self.ExternalAddr, Kafka: cfg.Self.KafkaAddr, PeerAddr: cfg.Self.PeerAddr, Rack: cfg.Self.Rack,
		RaftAddr: string(c.trans.LocalAddr()), Incarnation: time.Now().UnixNano(),
		BootstrapExpect: cfg.BootstrapExpect, HasQuorum: c.bootstrapped, StorageID: cfg.Self.StorageID,
	}
	c.meta = meta
	m, err := StartMembership(MembershipConfig{
		Meta: meta, BindAddr: cfg.GossipAddr, AdvertiseAddr: cfg.GossipAdvertise,
		Seeds: cfg.Join, SecretKey: cfg.GossipKey, Keyring: cfg.GossipKeyring, Label: cfg.GossipLabel, Local: cfg.Local, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.members = m
	c.mu.Unlock()
	if err := c.maybeBootstrap(); err != nil {
		return nil, err
	}
	go c.loop()
	ok = true
	return c, nil
}

func (c *Controller) openRaft() error {
	dir := filepath.Join(c.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Output: &logWriter{l: c.log.With("component", "raft")}, Level: hclog.Info})
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return fmt.Errorf("open controller log %s: %w", dir, err)
	}
	c.store = store
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hl)
	if err != nil {
		return err
	}
	var adv net.Addr
	if c.cfg.RaftAdvertise != "" {
		if adv, err = net.ResolveTCPAddr("tcp", c.cfg.RaftAdvertise); err != nil {
			return fmt.Errorf("raft advertise address %q: %w", c.cfg.RaftAdvertise, err)
		}
	}
	tc := &raft.NetworkTransportConfig{
		// Peers are dialled at the Raft address they gossip now, not the one
		// stored in the Raft configuration: a broker back at a new address
		// (a rescheduled pod, a compose restart) is reachable at once.
		ServerAddressProvider: gossipAddrs{c},
		MaxPool:               3,
		Timeout:               10 * time.Second,
		Logger:                hl,
	}
	var trans *raft.NetworkTransport
	if c.cfg.TLS != nil {
		var stream raft.StreamLayer
		if stream, err = listenTLSStream(c.cfg.RaftAddr, adv, c.cfg.TLS, c.log); err == nil {
			tc.Stream = stream
			trans = raft.NewNetworkTransportWithConfig(tc)
		}
	} else {
		trans, err = raft.NewTCPTransportWithConfig(c.cfg.RaftAddr, adv, tc)
	}
	if err != nil {
		return fmt.Errorf("listen on --raft-addr %s: %w", c.cfg.RaftAddr, err)
	}
	c.trans = newRaftTransport(trans)
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(strconv.Itoa(int(c.cfg.Self.ID)))
	rc.Logger = hl
	if c.cfg.Local {
		rc.HeartbeatTimeout = 300 * time.Millisecond
		rc.ElectionTimeout = 300 * time.Millisecond
		rc.LeaderLeaseTimeout = 150 * time.Millisecond
		rc.CommitTimeout = 10 * time.Millisecond
	}
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return err
	}
	c.bootstrapped = has
	// A quorum of one waits for no one: elect at once instead of after a
	// heartbeat timeout, so a single broker starts in milliseconds. The
	// timeouts go back to normal when a second voter joins (manageVoters).
	if !c.cfg.Local && c.aloneInQuorum(has, rc, store, snaps) {
		c.fastElection = true
		rc.HeartbeatTimeout, rc.ElectionTimeout = 150*time.Millisecond, 150*time.Millisecond
		rc.LeaderLeaseTimeout = 100 * time.Millisecond
	}
	logs, err := raft.NewLogCache(256, store)
	if err != nil {
		return err
	}
	r, err := raft.NewRaft(rc, c.fsm, logs, store, snaps, c.trans)
	if err != nil {
		return fmt.Errorf("start controller raft: %w", err)
	}
	c.raft = r
	c.startIndex = lastCommand(store)
	return nil
}

// aloneInQuorum reports whether this broker is, or will bootstrap as, the
// only voter of its controller quorum.
func (c *Controller) aloneInQuorum(has bool, rc *raft.Config, store *raftboltdb.BoltStore, snaps raft.SnapshotStore) bool {
	if !has {
		return len(c.cfg.Join) == 0 && c.cfg.BootstrapExpect <= 1
	}
	probe := *rc
	_, trans := raft.NewInmemTransport("")
	conf, err := raft.GetConfiguration(&probe, newFSM(), store, store, snaps, trans)
	if err != nil {
		return false
	}
	voters := 0
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter {
			voters++
			if s.ID != rc.LocalID {
				return false
			}
		}
	}
	return voters == 1
}

// SetStorageID gossips a new storage identity for this broker (its data
// was found damaged): the controller takes it out of every ISR when it
// registers the new id.
func (c *Controller) SetStorageID(id string) error {
	c.mu.Lock()
	m := c.members
	c.meta.StorageID = id
	meta := c.meta
	c.mu.Unlock()
	if m == nil {
		return errors.New("gossip not started")
	}
	return m.SetMeta(meta)
}

// announceQuorum gossips that this broker now belongs to a quorum.
func (c *Controller) announceQuorum() {
	c.mu.Lock()
	m := c.members
	c.meta.HasQuorum = true
	meta := c.meta
	c.mu.Unlock()
	if m != nil {
		if err := m.SetMeta(meta); err != nil {
			c.log.Warn("could not update gossip metadata", "err", err)
		}
	}
}

// gossipAddrs resolves a Raft server id to the Raft address its broker
// gossips (implements raft.ServerAddressProvider).
type gossipAddrs struct{ c *Controller }

func (g gossipAddrs) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	m := g.c.membership()
	if m == nil {
		return "", errors.New("gossip not started")
	}
	// Only the member at the broker's registered gossip address: a node
	// that claims the id elsewhere never receives its Raft traffic.
	for _, mem := range verifiedMembers(g.c.Snapshot(), m.Members()) {
		if strconv.Itoa(int(mem.Meta.ID)) == string(id) && mem.Meta.RaftAddr != "" {
			return raft.ServerAddress(mem.Meta.RaftAddr), nil
		}
	}
	return "", fmt.Errorf("broker %s is not in gossip at its registered address", id)
}

// membership is the gossip view once it has started, else nil.
func (c *Controller) membership() *Membership {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members
}

// lastCommand is the index of the last metadata command in the log: Raft
// also logs no-ops and configuration changes, which the FSM never sees.
func lastCommand(store raft.LogStore) uint64 {
	last, err := store.LastIndex()
	if err != nil {
		return 0
	}
	first, _ := store.FirstIndex()
	for i := last; i >= first && i > 0 && last-i < 4096; i-- {
		var l raft.Log
		if store.GetLog(i, &l) == nil && l.Type == raft.LogCommand {
			return i
		}
	}
	return 0
}

// CaughtUp reports whether this broker has applied every metadata change
// its own log held when it started: before that, a restarted broker's
// metadata is older than what it showed before the restart. (Raft's own
// AppliedIndex runs ahead of the FSM, so the FSM's version is the measure.)
func (c *Controller) CaughtUp() bool { return c.fsm.current().Version >= c.startIndex }

// CommittedVersion is, on the controller, the version of the metadata with
// everything committed so far applied (a Raft barrier first): a broker
// whose own metadata has reached it knows every change made before it
// asked. Other brokers answer a NotControllerError.
func (c *Controller) CommittedVersion(ctx context.Context) (uint64, error) {
	if !c.IsController() {
		return 0, &NotControllerError{LeaderID: c.ControllerID()}
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if err := c.raft.Barrier(timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, &NotControllerError{LeaderID: c.ControllerID()}
		}
		return 0, fmt.Errorf("apply the committed metadata: %w", err)
	}
	return c.fsm.current().Version, nil
}

// maybeBootstrap creates the quorum when this broker is the one to do it.
// A data directory that holds Raft state never bootstraps again.
func (c *Controller) maybeBootstrap() error {
	if c.bootstrapped || len(c.cfg.Join) > 0 && c.cfg.BootstrapExpect == 0 {
		return nil
	}
	if c.cfg.BootstrapExpect <= 1 {
		return c.bootstrap([]raft.Server{c.selfServer()})
	}
	return nil // the loop bootstraps once gossip shows enough brokers
}

func (c *Controller) selfServer() raft.Server {
	return raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(strconv.Itoa(int(c.cfg.Self.ID))), Address: c.trans.LocalAddr()}
}

func (c *Controller) bootstrap(servers []raft.Server) error {
	if err := c.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("bootstrap the controller quorum: %w", err)
	}
	c.mu.Lock()
	c.bootstrapped = true
	c.mu.Unlock()
	c.announceQuorum()
	ids := make([]string, len(servers))
	for i, s := range servers {
		ids[i] = string(s.ID)
	}
	c.log.Info("bootstrapped the controller quorum", "voters", ids)
	return nil
}

// tryBootstrapExpect bootstraps when gossip shows BootstrapExpect brokers
// started with the same setting and this broker has the lowest id.
func (c *Controller) tryBootstrapExpect() {
	c.mu.Lock()
	done := c.bootstrapped
	c.mu.Unlock()
	if done || c.cfg.BootstrapExpect <= 1 {
		return
	}
	var servers []raft.Server
	lowest := c.cfg.Self.ID
	latest := map[int32]Member{} // one member per id: its latest start
	for _, m := range c.members.Members() {
		if cur, ok := latest[m.Meta.ID]; !ok || m.Meta.Incarnation > cur.Meta.Incarnation {
			latest[m.Meta.ID] = m
		}
	}
	for _, m := range latest {
		if m.Meta.HasQuorum && m.Meta.ID != c.cfg.Self.ID {
			// A quorum exists already (this broker lost its data, or joined
			// late): never bootstrap a second one; its controller adds us.
			return
		}
		if m.Meta.BootstrapExpect != c.cfg.BootstrapExpect || m.State != "alive" {
			continue
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(strconv.Itoa(int(m.Meta.ID))), Address: raft.ServerAddress(m.Meta.RaftAddr)})
		lowest = min(lowest, m.Meta.ID)
	}
	if len(servers) < c.cfg.BootstrapExpect || lowest != c.cfg.Self.ID {
		return
	}
	slices.SortFunc(servers, func(a, b raft.Server) int { return compareIDs(a.ID, b.ID) })
	if err := c.bootstrap(servers[:c.cfg.BootstrapExpect]); err != nil {
		c.log.Error("bootstrap failed", "err", err)
	}
}

func compareIDs(a, b raft.ServerID) int {
	x, _ := strconv.Atoi(string(a))
	y, _ := strconv.Atoi(string(b))
	return x - y
}

// ---- the metadata every broker applies --------------------------------------

// Snapshot returns the committed metadata this broker has applied.
func (c *Controller) Snapshot() *Snapshot { return c.fsm.current() }

// Changes returns a channel closed at the next metadata change.
func (c *Controller) Changes() <-chan struct{} { return c.fsm.changes() }

// IsController reports whether this broker is the Raft leader.
func (c *Controller) IsController() bool { return c.raft.State() == raft.Leader }

// ControllerID is the current controller's broker id, or -1.
func (c *Controller) ControllerID() int32 {
	_, id := c.raft.LeaderWithID()
	if id == "" {
		return -1
	}
	n, err := strconv.Atoi(string(id))
	if err != nil {
		return -1
	}
	return int32(n)
}

// Members is gossip's view, for `broker cluster`.
func (c *Controller) Members() []Member { return c.members.Members() }

// GossipAddr and RaftAddr are the bound addresses.
func (c *Controller) GossipAddr() string { return c.members.LocalAddr() }
func (c *Controller) RaftAddr() string   { return string(c.trans.LocalAddr()) }

// RaftState is this broker's view of the controller quorum, for metrics.
type RaftState struct {
	Leader       bool   // this broker is the controller
	Term         uint64 // the current Raft term
	AppliedIndex uint64 // the last controller log entry applied here
}

// RaftState reports this broker's Raft term and applied index.
func (c *Controller) RaftState() RaftState {
	return RaftState{Leader: c.IsController(), Term: c.raft.CurrentTerm(), AppliedIndex: c.raft.AppliedIndex()}
}

// Voters lists the Raft configuration: id -> voter (true) or non-voter.
func (c *Controller) Voters() map[int32]bool {
	out := map[int32]bool{}
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return out
	}
	for _, s := range f.Configuration().Servers {
		n, _ := strconv.Atoi(string(s.ID))
		out[int32(n)] = s.Suffrage == raft.Voter
	}
	return out
}

// NotControllerError says which broker is the controller.
type NotControllerError struct {
	LeaderID int32
	// Uncertain: leadership was lost while the command was being
	// committed, so it may have been committed all the same.
	Uncertain bool
}

func (e *NotControllerError) Error() string {
	if e.LeaderID < 0 {
		return "no controller is elected yet; retry shortly"
	}
	return fmt.Sprintf("broker %d is the controller", e.LeaderID)
}
func (e *NotControllerError) Unwrap() error { return ErrNotController }

// propose commits a command through Raft; only the controller may.
func (c *Controller) propose(ctx context.Context, cmd *command) (applyResult, error) {
	if !c.IsController() {
		return applyResult{}, &NotControllerError{LeaderID: c.ControllerID()}
	}
	data, err := json.Marshal(cmd)
	if err != nil {
		return applyResult{}, err
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	f := c.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return applyResult{}, &NotControllerError{LeaderID: c.ControllerID(), Uncertain: errors.Is(err, raft.ErrLeadershipLost)}
		}
		return applyResult{}, fmt.Errorf("commit to the controller log: %w", err)
	}
	res, _ := f.Response().(applyResult)
	return res, res.err
}

// ---- requests the controller serves -----------------------------------------

// CreateTopic validates spec, places its partitions on the unfenced brokers
// and commits it.
func (c *Controller) CreateTopic(ctx context.Context, spec TopicSpec) (Topic, error) {
	if !c.IsController() {
		return Topic{}, &NotControllerError{LeaderID: c.ControllerID()}
	}
	s := c.Snapshot()
	alive := s.Alive()
	cfg, err := ResolveConfig(spec, c.cfg.Defaults, len(alive))
	if err != nil {
		return Topic{}, err
	}
	if _, ok := s.Topics[spec.Name]; ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrTopicExists, spec.Name)
	}
	t := Topic{Name: spec.Name, ID: NewID(), Config: cfg}
	for i, reps := range AssignReplicas(alive, cfg.Partitions, cfg.ReplicationFactor, int(s.Version%uint64(max(1, len(alive))))) {
		t.Partitions = append(t.Partitions, PartitionMeta{
			Partition: int32(i), Replicas: reps, Leader: reps[0], ISR: slices.Clone(reps),
		})
	}
	if _, err := c.propose(ctx, &command{Op: opCreateTopic, Topic: &t}); err != nil {
		return Topic{}, err
	}
	return t, nil
}

// AlterTopic changes a topic's configuration and adds partitions (placed
// on the unfenced brokers, continuing the topic's round-robin), and commits
// the change. Brokers apply it live.
func (c *Controller) AlterTopic(ctx context.Context, name string, a TopicAlter) (Topic, error) {
	if !c.IsController() {
		return Topic{}, &NotControllerError{LeaderID: c.ControllerID()}
	}
	s := c.Snapshot()
	t, ok := s.Topics[name]
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	cfg, err := AlterConfig(name, t.Config, a, c.cfg.Defaults)
	if err != nil {
		return Topic{}, err
	}
	added, err := addedPartitions(s.Alive(), t, cfg.Partitions)
	if err != nil {
		return Topic{}, err
	}
	cmd := &command{Op: opAlterTopic, Topic: &Topic{Name: name, ID: t.ID, Config: cfg, Partitions: added}, Count: int64(len(t.Partitions))}
	if _, err := c.propose(ctx, cmd); err != nil {
		return Topic{}, err
	}
	return c.Snapshot().Topics[name], nil
}

// addedPartitions places the partitions a topic grows by (from its count
// to n) on the alive brokers. Pure.
func addedPartitions(alive []BrokerInfo, t Topic, n int32) ([]PartitionMeta, error) {
	have := int32(len(t.Partitions))
	if n <= have {
		return nil, nil
	}
	if int(t.Config.ReplicationFactor) > len(alive) {
		return nil, fmt.Errorf("%w: the new partitions need %d brokers (replication factor) and %d are available",
			ErrInvalidConfig, t.Config.ReplicationFactor, len(alive))
	}
	var added []PartitionMeta
	for i, reps := range AssignReplicas(alive, n, t.Config.ReplicationFactor, 0)[have:] {
		added = append(added, PartitionMeta{Partition: have + int32(i), Replicas: reps, Leader: reps[0], ISR: slices.Clone(reps)})
	}
	return added, nil
}

// SetBrokerConfig commits a run-time broker setting for every broker; an
// empty value removes it. The caller validates name and value.
func (c *Controller) SetBrokerConfig(ctx context.Context, name, value string) error {
	_, err := c.propose(ctx, &command{Op: opBrokerConfig, Name: name, Value: value})
	return err
}

// AlterQuota commits a change of one entity's client quotas.
func (c *Controller) AlterQuota(ctx context.Context, ch QuotaChange) error {
	if err := ValidateQuotaChange(ch); err != nil {
		return err
	}
	_, err := c.propose(ctx, &command{Op: opQuota, Quota: &ch})
	return err
}

// DeleteTopic removes a topic.
func (c *Controller) DeleteTopic(ctx context.Context, name string) error {
	if _, ok := c.Snapshot().Topics[name]; !ok {
		return fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	_, err := c.propose(ctx, &command{Op: opDeleteTopic, Name: name})
	return err
}

// AlterPartition applies a leader's ISR change and returns the new state.
func (c *Controller) AlterPartition(ctx context.Context, req AlterRequest) (PartitionMeta, error) {
	s := c.Snapshot()
	ch, err := alterPartition(s, req, usableIn(s))
	if err != nil {
		return PartitionMeta{}, err
	}
	res, err := c.propose(ctx, &command{Op: opChange, Changes: []PartitionChange{ch}})
	if err != nil {
		return PartitionMeta{}, err
	}
	if res.applied != 1 {
		return PartitionMeta{}, fmt.Errorf("%w: the partition changed meanwhile", ErrStaleEpoch)
	}
	return c.Snapshot().Topics[req.Topic].Partitions[req.Partition], nil
}

// ControlledShutdown fences a broker that is about to stop and moves its
// leaderships to other in-sync replicas. It returns how many partitions it
// still leads (those with no other in-sync replica).
func (c *Controller) ControlledShutdown(ctx context.Context, id int32) (int, error) {
	s := c.Snapshot()
	if _, ok := s.Broker(id); !ok {
		return 0, fmt.Errorf("unknown broker %d", id)
	}
	inc := int64(0)
	if m, ok := verifiedMembers(s, c.members.Members())[id]; ok {
		inc = m.Meta.Incarnation
	}
	c.mu.Lock()
	c.shuttingDown[id] = inc
	c.mu.Unlock()
	usable := usableIn(s)
	changes, remaining := shutdownMoves(s, id, func(b int32) bool { return b != id && usable(b) })
	if _, err := c.propose(ctx, &command{Op: opSetFenced, BrokerID: id, Fenced: true, Changes: changes}); err != nil {
		return 0, err
	}
	c.log.Info("controlled shutdown", "broker", id, "moved", len(changes), "remaining_leaderships", remaining)
	return remaining, nil
}

// AllocateProducerIDs reserves n consecutive producer ids and returns the
// first.
func (c *Controller) AllocateProducerIDs(ctx context.Context, n int64) (int64, error) {
	res, err := c.propose(ctx, &command{Op: opProducerIDs, Count: n})
	return res.first, err
}

// ---- the controller loop ----------------------------------------------------

func (c *Controller) loop() {
	defer close(c.done)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		case <-c.members.Changed():
		case <-c.raft.LeaderCh():
		}
		c.tryBootstrapExpect()
		c.mu.Lock()
		announced := c.meta.HasQuorum
		c.mu.Unlock()
		if !announced && c.raft.LastIndex() > 0 {
			c.announceQuorum() // joined a quorum: its log reached us
		}
		// Brokers the metadata lists are gossip seeds too: a restarted
		// broker finds the others without waiting for them to find it.
		for _, b := range c.Snapshot().Brokers {
			if b.ID != c.cfg.Self.ID && b.GossipAddr != "" {
				c.members.AddKnown(b.GossipAddr)
			}
		}
		if c.IsController() {
			c.act()
		} else {
			c.mu.Lock()
			c.wasLeader = false
			clear(c.suspects)
			c.mu.Unlock()
		}
	}
}

// act is one round of the controller's duties. Every decision is committed
// through Raft before anyone acts on it.
func (c *Controller) act() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.mu.Lock()
	first := !c.wasLeader
	c.wasLeader = true
	c.mu.Unlock()
	if first {
		// Apply everything committed before acting on it.
		if err := c.raft.Barrier(5 * time.Second).Error(); err != nil {
			c.mu.Lock()
			c.wasLeader = false
			c.mu.Unlock()
			return
		}
		c.log.Info("this broker is the controller")
	}
	s := c.Snapshot()
	if s.ClusterID == "" {
		if _, err := c.propose(ctx, &command{Op: opInit, ClusterID: NewID()}); err != nil {
			return
		}
	}
	members := c.members.Members()
	c.registerBrokers(ctx, s, members)
	alive := verifiedMembers(c.Snapshot(), members)
	c.manageVoters(alive)
	c.promoteNonvoters(alive)
	s = c.Snapshot()
	c.fenceDead(ctx, s, alive)
	c.unfenceReturned(ctx, c.Snapshot(), alive)
	s = c.Snapshot()
	if changes := reassign(s, usableIn(s)); len(changes) > 0 {
		if res, err := c.propose(ctx, &command{Op: opChange, Changes: changes}); err == nil {
			c.log.Info("partition leaders and ISRs changed", "changes", res.applied)
		}
	}
	c.driveReassignments(ctx)
	c.removeDrained(ctx)
	c.rebalance(ctx)
}

// registerBrokers registers gossip members as brokers: new ones, and
// registered ones whose details changed (a new address, a new storage id
// after lost data). Each is first verified through its inter-broker
// listener (Config.Verify); a member that claims a registered broker's
// identity from elsewhere is refused and logged, and gets nothing.
func (c *Controller) registerBrokers(ctx context.Context, s *Snapshot, members []Member) {
	registeredAlive := map[int32]bool{}
	for id := range verifiedMembers(s, members) {
		registeredAlive[id] = true
	}
	for _, m := range members {
		if m.State != "alive" || superseded(m, members) {
			continue
		}
		id := m.Meta.ID
		live := registeredAlive[id]
		if b, ok := s.Broker(id); ok && b.GossipAddr == m.GossipAddr {
			live = false // that is this member
		}
		decision, why := admit(s, m, live)
		if decision == admitKnown || !c.mayRetry(m) {
			continue
		}
		if decision == admitRefuse {
			c.refuse(m, why)
			continue
		}
		if err := c.verify(ctx, m); err != nil {
			c.refuse(m, fmt.Sprintf("not verified as broker %d: %v", id, err))
			continue
		}
		if !c.register(ctx, s, m) {
			return
		}
		s = c.Snapshot()
	}
}

// mayRetry reports whether member m's registration may be tried now: a
// refused member is tried again after a while (it may have been starting).
func (c *Controller) mayRetry(m Member) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.refused[m.Name]
	return !ok || time.Since(t) > 5*time.Second
}

// refuse logs a refused registration (once per member) and holds it off.
func (c *Controller) refuse(m Member, why string) {
	c.mu.Lock()
	_, again := c.refused[m.Name]
	c.refused[m.Name] = time.Now()
	if len(c.refused) > 1024 {
		clear(c.refused)
	}
	c.mu.Unlock()
	if !again {
		c.log.Warn("gossip member refused as a broker", "node", m.Name, "gossip_addr", m.GossipAddr, "claims_broker", m.Meta.ID, "reason", why)
	} else {
		c.log.Debug("gossip member refused again", "node", m.Name, "claims_broker", m.Meta.ID, "reason", why)
	}
}

// verify asks member m's inter-broker listener who it is. This broker's
// own member needs no asking.
func (c *Controller) verify(ctx context.Context, m Member) error {
	if m.Meta.ID == c.cfg.Self.ID && m.GossipAddr == c.members.LocalAddr() {
		return nil
	}
	if c.cfg.Verify == nil {
		return nil
	}
	if m.Meta.PeerAddr == "" {
		return errors.New("it advertises no inter-broker address")
	}
	vctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	id, err := c.cfg.Verify(vctx, m.Meta.PeerAddr)
	if err != nil {
		return fmt.Errorf("its inter-broker listener %s: %w", m.Meta.PeerAddr, err)
	}
	return checkIdentity(m, id)
}

// register commits member m's registration; a new storage id takes the
// broker out of every ISR in the same commit. It reports success.
func (c *Controller) register(ctx context.Context, s *Snapshot, m Member) bool {
	info := memberInfo(m)
	id := info.ID
	b, ok := s.Broker(id)
	var changes []PartitionChange
	lost := ok && b.StorageID != "" && b.StorageID != info.StorageID
	if lost {
		// Its data is not what it was: out of every ISR at once, in
		// the same commit as the new id it waits for.
		changes = storageLost(s, id, func(r int32) bool { return r != id && usableIn(s)(r) })
		if id != c.cfg.Self.ID {
			c.resetVoter(id)
		}
	}
	if _, err := c.propose(ctx, &command{Op: opRegisterBroker, Broker: &info, Changes: changes}); err != nil {
		// Retried at the next tick; said once per member and reason.
		c.mu.Lock()
		said := c.registerErr[m.Name] == err.Error()
		c.registerErr[m.Name] = err.Error()
		if len(c.registerErr) > 1024 {
			clear(c.registerErr)
		}
		c.mu.Unlock()
		if !said {
			c.log.Warn("could not register broker; retrying", "broker", id, "node", m.Name, "err", err)
		}
		return false
	}
	c.mu.Lock()
	delete(c.refused, m.Name)
	c.mu.Unlock()
	if lost {
		c.log.Warn("broker's storage changed (wiped or damaged): out of every ISR until it has copied its partitions again",
			"broker", id, "old_storage_id", b.StorageID, "storage_id", info.StorageID, "isr_changes", len(changes))
	}
	c.log.Info("broker registered", "broker", id, "addr", info.Addr, "gossip_addr", info.GossipAddr, "rack", info.Rack)
	return true
}

// resetVoter removes a voter whose storage changed from the Raft
// configuration (manageVoters adds it again): if its data directory was
// wiped, its Raft state is gone too, and a voter that forgot its log and
// votes must not count toward a quorum until it has caught up.
func (c *Controller) resetVoter(id int32) {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	sid := raft.ServerID(strconv.Itoa(int(id)))
	for _, srv := range f.Configuration().Servers {
		if srv.ID == sid && srv.Suffrage == raft.Voter {
			if err := c.raft.RemoveServer(sid, 0, 5*time.Second).Error(); err != nil {
				c.log.Warn("could not remove a broker with new storage from the controller quorum", "broker", id, "err", err)
				return
			}
			c.log.Info("broker with new storage removed from the controller quorum; it is added again", "broker", id)
		}
	}
}

// manageVoters adds brokers gossip shows to the Raft configuration: as
// voters up to MaxVoters, then as non-voters that only follow the metadata.
func (c *Controller) manageVoters(alive map[int32]Member) {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	voters := 0
	in := map[string]raft.Server{}
	for _, s := range f.Configuration().Servers {
		in[string(s.ID)] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	ids := make([]int32, 0, len(alive))
	for id := range alive {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		m := alive[id]
		sid := raft.ServerID(strconv.Itoa(int(id)))
		if m.Meta.RaftAddr == "" {
			continue
		}
		if cur, ok := in[string(sid)]; ok {
			if string(cur.Address) == m.Meta.RaftAddr {
				continue
			}
			// Back at a new address: re-adding the id updates it.
			var fut raft.IndexFuture
			if cur.Suffrage == raft.Voter {
				fut = c.raft.AddVoter(sid, raft.ServerAddress(m.Meta.RaftAddr), 0, 5*time.Second)
			} else {
				fut = c.raft.AddNonvoter(sid, raft.ServerAddress(m.Meta.RaftAddr), 0, 5*time.Second)
			}
			if err := fut.Error(); err == nil {
				c.log.Info("broker's controller address changed", "broker", id, "raft_addr", m.Meta.RaftAddr)
			}
			continue
		}
		var fut raft.IndexFuture
		if voters < c.cfg.MaxVoters {
			fut = c.raft.AddVoter(sid, raft.ServerAddress(m.Meta.RaftAddr), 0, 5*time.Second)
			voters++
		} else {
			fut = c.raft.AddNonvoter(sid, raft.ServerAddress(m.Meta.RaftAddr), 0, 5*time.Second)
		}
		if err := fut.Error(); err != nil {
			c.log.Warn("could not add broker to the controller quorum", "broker", id, "err", err)
			return
		}
		c.normalElection()
		c.log.Info("broker added to the controller quorum", "broker", id, "voter", voters <= c.cfg.MaxVoters)
	}
}

// normalElection restores Raft's usual timeouts once the quorum has more
// than one voter (a lone broker starts with short ones).
func (c *Controller) normalElection() {
	c.mu.Lock()
	fast := c.fastElection
	c.fastElection = false
	c.mu.Unlock()
	if !fast {
		return
	}
	rc := c.raft.ReloadableConfig()
	d := raft.DefaultConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout = d.HeartbeatTimeout, d.ElectionTimeout
	if err := c.raft.ReloadConfig(rc); err != nil {
		c.log.Warn("could not restore the controller's election timeouts", "err", err)
	}
}

// fenceDead fences brokers that gossip has reported dead for ConfirmDeath
// and that do not answer a direct probe: one gossip event alone never moves
// a leader.
func (c *Controller) fenceDead(ctx context.Context, s *Snapshot, alive map[int32]Member) {
	now := time.Now()
	for _, b := range s.Brokers {
		if b.Fenced || b.ID == c.cfg.Self.ID {
			continue
		}
		if _, ok := alive[b.ID]; ok {
			c.mu.Lock()
			delete(c.suspects, b.ID)
			c.mu.Unlock()
			continue
		}
		c.mu.Lock()
		since, ok := c.suspects[b.ID]
		if !ok {
			c.suspects[b.ID] = now
		}
		c.mu.Unlock()
		if !ok || now.Sub(since) < c.cfg.ConfirmDeath {
			continue
		}
		if c.cfg.Probe != nil {
			pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			err := c.cfg.Probe(pctx, b.Addr)
			cancel()
			if err == nil {
				c.log.Warn("gossip says a broker is dead but it answers; not fencing it", "broker", b.ID)
				continue
			}
		}
		next := s.Clone()
		for i := range next.Brokers {
			if next.Brokers[i].ID == b.ID {
				next.Brokers[i].Fenced = true
			}
		}
		changes := reassign(next, usableIn(next))
		if res, err := c.propose(ctx, &command{Op: opSetFenced, BrokerID: b.ID, Fenced: true, Changes: changes}); err == nil {
			c.log.Warn("broker confirmed dead: fenced, its leaderships moved", "broker", b.ID, "changes", res.applied)
			c.mu.Lock()
			delete(c.suspects, b.ID)
			c.mu.Unlock()
		}
		return // one fence per round; the next round sees the new metadata
	}
}

// unfenceReturned lets a fenced broker that is alive again (and not the
// same incarnation that asked to shut down) lead and rejoin ISRs.
func (c *Controller) unfenceReturned(ctx context.Context, s *Snapshot, alive map[int32]Member) {
	for _, b := range s.Brokers {
		if !b.Fenced {
			continue
		}
		m, ok := alive[b.ID]
		if !ok || m.State != "alive" {
			continue
		}
		c.mu.Lock()
		inc, stopping := c.shuttingDown[b.ID]
		c.mu.Unlock()
		if stopping && inc == m.Meta.Incarnation {
			continue
		}
		if c.cfg.Probe != nil {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			err := c.cfg.Probe(pctx, m.Meta.Addr)
			cancel()
			if err != nil {
				continue
			}
		}
		next := s.Clone()
		for i := range next.Brokers {
			if next.Brokers[i].ID == b.ID {
				next.Brokers[i].Fenced = false
			}
		}
		changes := reassign(next, usableIn(next))
		if _, err := c.propose(ctx, &command{Op: opSetFenced, BrokerID: b.ID, Fenced: false, Changes: changes}); err == nil {
			c.log.Info("broker is back: unfenced", "broker", b.ID)
			c.mu.Lock()
			delete(c.shuttingDown, b.ID)
			c.mu.Unlock()
		}
		return
	}
}

// rebalance returns leadership to preferred replicas now and then.
func (c *Controller) rebalance(ctx context.Context) {
	if c.cfg.RebalanceInterval < 0 {
		return
	}
	c.mu.Lock()
	due := time.Since(c.lastRebalance) >= c.cfg.RebalanceInterval
	if due {
		c.lastRebalance = time.Now()
	}
	c.mu.Unlock()
	if !due {
		return
	}
	s := c.Snapshot()
	if changes := preferredLeaders(s, usableIn(s)); len(changes) > 0 {
		if res, err := c.propose(ctx, &command{Op: opChange, Changes: changes}); err == nil {
			c.log.Info("leadership returned to preferred replicas", "partitions", res.applied)
		}
	}
}

// ---- lifecycle --------------------------------------------------------------

// Leave prepares a clean stop: hands the controller role to another voter
// and tells gossip this broker is leaving.
func (c *Controller) Leave(timeout time.Duration) {
	if c.IsController() && len(c.Voters()) > 1 {
		if err := c.raft.LeadershipTransfer().Error(); err != nil {
			c.log.Warn("could not hand off the controller role", "err", err)
		}
	}
	if err := c.members.Leave(timeout); err != nil {
		c.log.Debug("gossip leave", "err", err)
	}
}

// Close stops the loop, Raft and gossip. Idempotent.
func (c *Controller) Close() error {
	var err error
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		err = c.shutdown()
	})
	return err
}

func (c *Controller) shutdown() error {
	var errs []error
	if c.members != nil {
		errs = append(errs, c.members.Shutdown())
	}
	if c.raft != nil {
		f := c.raft.Shutdown()
		c.trans.closePipelines() // see raftTransport
		errs = append(errs, f.Error())
		c.trans.quiesce() // no heartbeat writes to the store once it is closed
	}
	if c.trans != nil {
		errs = append(errs, c.trans.Close())
	}
	if c.store != nil {
		errs = append(errs, c.store.Close())
	}
	return errors.Join(errs...)
}
