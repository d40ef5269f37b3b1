package cluster

import (
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemberMeta is what a broker gossips about itself. It must stay under
// memberlist's 512-byte limit (checked at start: memberlist would panic).
type MemberMeta struct {
	ID       int32  `json:"i"`
	Addr     string `json:"a"`           // advertised client gRPC address
	External string `json:"x,omitempty"` // advertised external client address
	PeerAddr string `json:"p,omitempty"` // advertised inter-broker address
	RaftAddr string `json:"r"`           // advertised Raft address
	Rack     string `json:"k,omitempty"`
	// Incarnation tells restarts apart: the process start time.
	Incarnation     int64 `json:"n"`
	BootstrapExpect int   `json:"b,omitempty"`
	// HasQuorum: this broker belongs to a controller quorum already (it
	// has Raft state). A broker started with --bootstrap-expect never
	// bootstraps while any broker it sees says so: it joins that quorum.
	HasQuorum bool `json:"q,omitempty"`
	// StorageID is the broker's storage identity (BrokerInfo.StorageID).
	StorageID string `json:"s,omitempty"`
	// Kafka is the advertised Kafka listener address ("" when off).
	Kafka string `json:"kf,omitempty"`
}

func (m MemberMeta) encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("gossip metadata is %d bytes, over memberlist's %d-byte limit: shorten the advertised addresses or --rack", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// Member is one broker as gossip sees it.
type Member struct {
	Name       string // gossip node name (unique per start)
	Meta       MemberMeta
	GossipAddr string
	State      string // alive, suspect, dead, left
}

// MembershipConfig configures gossip.
type MembershipConfig struct {
	Meta MemberMeta
	// BindAddr and AdvertiseAddr: host:port for gossip (TCP and UDP).
	BindAddr      string
	AdvertiseAddr string
	// Seeds are gossip addresses to join; they are retried until one
	// answers, and re-joined periodically with every known peer so the
	// cluster re-merges after a long partition.
	Seeds []string
	// SecretKey (16, 24 or 32 bytes) encrypts gossip; Label tags every
	// packet so clusters sharing a network ignore each other.
	SecretKey []byte
	// Keyring holds further keys accepted besides SecretKey, which
	// encrypts what this node sends (key rotation).
	Keyring [][]byte
	Label   string
	// Local tunes failure detection for loopback tests.
	Local          bool
	RejoinInterval time.Duration
	Logger         *slog.Logger
}

// Membership is a broker's gossip view. It owns memberlist's goroutines and
// one rejoin goroutine, until Shutdown.
type Membership struct {
	cfg MembershipConfig
	ml  *memberlist.Memberlist
	log *slog.Logger

	// mu guards the fields below. It is never held while calling into
	// memberlist: memberlist runs the delegate's callbacks (NotifyJoin,
	// NotifyUpdate, NotifyLeave), which take mu, under its own node lock,
	// so holding mu across a memberlist call (even LocalNode) can deadlock.
	mu      sync.Mutex
	known   map[string]bool   // gossip addresses ever seen
	view    map[string]Member // alive members by node name
	changed chan struct{}
	// self is this broker's gossip address, from memberlist's report of
	// the local node (during memberlist.Create): memberlist's own Node
	// values change under its lock and cannot be read afterwards.
	self string

	stop chan struct{}
	done chan struct{}
	d    *delegate
	name string // this broker's node name, unique to this start

	// Owned by the rejoin loop: the last join failure warned about.
	joinErr    string
	joinWarned time.Time
}

// SetMeta changes what this broker gossips about itself and tells the
// others.
func (m *Membership) SetMeta(meta MemberMeta) error {
	b, err := meta.encode()
	if err != nil {
		return err
	}
	m.d.mu.Lock()
	m.d.meta = b
	m.d.mu.Unlock()
	// Our own entry in the view too: memberlist may not report an update
	// of the local node, and the controller reads its own meta here.
	m.mu.Lock()
	if mem, ok := m.view[m.name]; ok {
		mem.Meta = meta
		m.view[m.name] = mem
	}
	m.mu.Unlock()
	m.notify()
	return m.ml.UpdateNode(time.Second)
}

// nodeName is a broker's gossip node name: its id and its incarnation, so
// each start has a name of its own. Nothing is decided by the name: a
// gossip member is a broker only once the controller has registered it
// (checked through its inter-broker listener), and a node that takes a
// broker's name, or its id, cannot keep that broker out of gossip.
func nodeName(id int32, incarnation int64) string {
	return "skein-" + strconv.Itoa(int(id)) + "-" + strconv.FormatInt(incarnation, 36)
}

// StartMembership starts gossip and begins joining the seeds.
func StartMembership(cfg MembershipConfig) (*Membership, error) {
	meta, err := cfg.Meta.encode()
	if err != nil {
		return nil, err
	}
	var mc *memberlist.Config
	if cfg.Local {
		mc = memberlist.DefaultLocalConfig()
	} else {
		mc = memberlist.DefaultLANConfig()
	}
	host, port, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("--gossip-addr %q: %w", cfg.BindAddr, err)
	}
	mc.Name = nodeName(cfg.Meta.ID, cfg.Meta.Incarnation)
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if cfg.AdvertiseAddr != "" {
		if mc.AdvertiseAddr, mc.AdvertisePort, err = gossipAdvertise(cfg.AdvertiseAddr); err != nil {
			return nil, err
		}
	}
	// A broker that comes back at a new address (a rescheduled pod) is
	// accepted once its old self has been dead this long.
	mc.DeadNodeReclaimTime = 10 * time.Second
	if len(cfg.SecretKey) > 0 {
		mc.SecretKey = cfg.SecretKey
		kr, err := memberlist.NewKeyring(cfg.Keyring, cfg.SecretKey)
		if err != nil {
			return nil, fmt.Errorf("gossip keys: %w", err)
		}
		mc.Keyring = kr
	}
	mc.Label = cfg.Label
	if cfg.RejoinInterval <= 0 {
		cfg.RejoinInterval = 15 * time.Second
		if cfg.Local {
			cfg.RejoinInterval = 2 * time.Second
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Membership{
		cfg: cfg, log: cfg.Logger.With("component", "gossip"),
		known: map[string]bool{}, view: map[string]Member{}, changed: make(chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{}), name: mc.Name,
	}
	// Before memberlist starts: its callbacks (record) write known too.
	for _, s := range cfg.Seeds {
		m.known[s] = true
	}
	d := &delegate{m: m, meta: meta}
	m.d = d
	mc.Delegate, mc.Events, mc.Conflict = d, d, d
	mc.Logger = log.New(&logWriter{l: m.log}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.BindAddr, err)
	}
	m.ml = ml
	go m.rejoinLoop()
	return m, nil
}

// gossipAdvertise is the IP and port memberlist advertises for addr (it
// advertises an IP: a host name is resolved once, preferring IPv4).
func gossipAdvertise(addr string) (string, int, error) {
	ahost, aport, err := splitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("gossip advertise address %q: %w", addr, err)
	}
	if net.ParseIP(ahost) != nil {
		return ahost, aport, nil
	}
	ips, err := net.LookupIP(ahost)
	if err != nil || len(ips) == 0 {
		return "", 0, fmt.Errorf("gossip advertise host %q does not resolve: %v", ahost, err)
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip.String(), aport, nil
		}
	}
	return ips[0].String(), aport, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// LocalAddr is the bound gossip address.
func (m *Membership) LocalAddr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.self
}

// Changed returns a channel closed at the next membership change.
func (m *Membership) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

func (m *Membership) notify() {
	m.mu.Lock()
	defer m.mu.Unlock()
	close(m.changed)
	m.changed = make(chan struct{})
}

// Members returns the brokers gossip knows as alive. It reads this
// package's own copy, kept from memberlist's events (the nodes memberlist
// itself returns are updated under its lock and cannot be read safely
// afterwards).
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.view))
	for _, mem := range m.view {
		out = append(out, mem)
	}
	return out
}

// record updates the view from a node memberlist reports alive. Called
// from memberlist's event callbacks, while the node is stable.
func (m *Membership) record(n *memberlist.Node) {
	if n.Name == m.name {
		m.mu.Lock()
		m.self = n.Address()
		m.mu.Unlock()
	}
	var meta MemberMeta
	if err := json.Unmarshal(n.Meta, &meta); err != nil {
		return
	}
	m.mu.Lock()
	m.view[n.Name] = Member{Name: n.Name, Meta: meta, GossipAddr: n.Address(), State: "alive"}
	m.known[n.Address()] = true
	m.mu.Unlock()
}

func (m *Membership) forget(n *memberlist.Node) {
	m.mu.Lock()
	delete(m.view, n.Name)
	m.mu.Unlock()
}

// AddKnown adds a gossip address to those the rejoin loop tries.
func (m *Membership) AddKnown(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.known[addr] = true
}

// Join joins the given gossip addresses now.
func (m *Membership) Join(addrs []string) (int, error) {
	return m.ml.Join(addrs)
}

// rejoinLoop keeps trying the seeds until the broker has company, then
// periodically re-joins known peers that gossip no longer lists, so two
// sides of a long partition merge again (memberlist stops gossiping to the
// dead after GossipToTheDeadTime).
func (m *Membership) rejoinLoop() {
	defer close(m.done)
	interval := time.Second
	for {
		m.rejoin()
		m.mu.Lock()
		company := len(m.view) > 1
		m.mu.Unlock()
		if company {
			interval = m.cfg.RejoinInterval
		}
		select {
		case <-m.stop:
			return
		case <-time.After(interval):
		}
	}
}

func (m *Membership) rejoin() {
	current := map[string]bool{}
	m.mu.Lock()
	for _, mem := range m.view {
		current[mem.GossipAddr] = true
	}
	var targets []string
	for a := range m.known {
		if !current[a] && a != m.self {
			targets = append(targets, a)
		}
	}
	m.mu.Unlock()
	if len(targets) == 0 {
		return
	}
	n, err := m.ml.Join(targets)
	if err == nil || n > 0 {
		m.joinErr = ""
		return
	}
	m.mu.Lock()
	alone := len(m.view) <= 1
	m.mu.Unlock()
	msg := strings.Join(strings.Fields(err.Error()), " ")
	// Alone, a failing join is worth a warning: a seed that is up but
	// refuses us (another --gossip-key or --gossip-label: "no installed keys
	// could decrypt", "remote state is encrypted", or EOF when the labels
	// differ) would otherwise keep the broker waiting in silence. Once per
	// error text, and again every 30 s.
	if alone && (msg != m.joinErr || time.Since(m.joinWarned) > 30*time.Second) {
		m.joinErr, m.joinWarned = msg, time.Now()
		m.log.Warn("gossip: cannot join the cluster yet; if these brokers are up, check that --gossip-key and --gossip-label match theirs",
			"addrs", strings.Join(targets, ","), "err", msg)
		return
	}
	m.log.Debug("gossip join found no one yet", "addrs", strings.Join(targets, ","), "err", msg)
}

// Leave announces a graceful departure.
func (m *Membership) Leave(timeout time.Duration) error {
	return m.ml.Leave(timeout)
}

// Shutdown stops gossip (without leaving, like a crash, unless Leave ran).
func (m *Membership) Shutdown() error {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
	return m.ml.Shutdown()
}

// delegate receives memberlist's callbacks.
type delegate struct {
	m    *Membership
	mu   sync.Mutex // guards meta
	meta []byte
}

func (d *delegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.meta) > limit {
		return nil // checked when set; never reached
	}
	return d.meta
}
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

func (d *delegate) NotifyJoin(n *memberlist.Node) {
	d.m.record(n)
	d.m.log.Info("gossip: broker joined", "node", n.Name, "addr", n.Address())
	d.m.notify()
}

func (d *delegate) NotifyLeave(n *memberlist.Node) {
	d.m.forget(n)
	d.m.log.Warn("gossip: broker left or failed", "node", n.Name, "addr", n.Address(), "state", n.State)
	d.m.notify()
}

func (d *delegate) NotifyUpdate(n *memberlist.Node) {
	d.m.record(n)
	d.m.notify()
}

// NotifyConflict is logged only: gossip is not trusted to stop a broker.
// Two brokers with one id are told apart at registration (storage id and
// address), where the controller refuses the second.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.m.log.Warn("gossip: two nodes use one name; ignoring the other", "node", existing.Name, "addr", existing.Address(), "other_addr", other.Address())
}

// logWriter sends a library's log lines to slog: memberlist and Raft write
// "[LEVEL] message". Their errors during a failure repeat many times a
// second (every retry of a dead peer), so warnings are rate-limited to one
// a second; the rest go to debug.
type logWriter struct {
	l *slog.Logger

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (w *logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	if !strings.Contains(line, "[ERR") && !strings.Contains(line, "[WARN") {
		w.l.Debug(line)
		return len(p), nil
	}
	w.mu.Lock()
	now := time.Now()
	if now.Sub(w.last) < time.Second {
		w.suppressed++
		w.mu.Unlock()
		w.l.Debug(line)
		return len(p), nil
	}
	n := w.suppressed
	w.last, w.suppressed = now, 0
	w.mu.Unlock()
	if n > 0 {
		w.l.Warn(line, "similar_suppressed", n)
	} else {
		w.l.Warn(line)
	}
	return len(p), nil
}
