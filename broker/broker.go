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
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/partition"
	pb "github.com/skeinlog/skein/proto/skeinv1"
	"github.com/skeinlog/skein/wal"
)

// Broker is one Skein node: its data directory, controller view, local
// partition replicas and the gRPC and HTTP servers in front of them.
type Broker struct {
	cfg     Config
	log     *slog.Logger
	lock    *os.File // flock on the data directory
	ctrl    controller
	self    cluster.BrokerInfo
	lis     net.Listener
	httpLis net.Listener
	grpc    *grpc.Server
	health  *health.Server
	http    *http.Server
	metrics *metrics

	reconcileMu sync.Mutex // serialises reconcile

	mu       sync.RWMutex // guards replicas and snap
	replicas map[tp]*replica
	snap     *cluster.Snapshot

	ready     atomic.Bool
	stopping  chan struct{} // closed when shutdown begins
	fatalOnce sync.Once
	fatal     chan error
	bg        sync.WaitGroup // background goroutines (dir removal, retention)
	closeOnce sync.Once
	closeErr  error
}

// controller is what the broker needs from the metadata controller.
type controller interface {
	Snapshot() *cluster.Snapshot
	Changes() <-chan struct{}
	CreateTopic(ctx context.Context, spec cluster.TopicSpec) (cluster.Topic, error)
	DeleteTopic(ctx context.Context, name string) error
	Close() error
}

type tp struct {
	topic     string
	partition int32
}

func (t tp) String() string { return fmt.Sprintf("%s-%d", t.topic, t.partition) }

type replica struct {
	p       *partition.Partition
	topicID string
	cfg     cluster.TopicConfig
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
	if cfg.HTTPAddr != "" {
		if b.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("listen on --http-addr %s: %w (choose another with --http-addr)", cfg.HTTPAddr, err)
		}
	}
	adv := cfg.AdvertiseAddr
	if adv == "" {
		adv = lis.Addr().String()
	}
	b.self = cluster.BrokerInfo{ID: cfg.NodeID, Addr: adv, Rack: cfg.Rack}
	ctrl, err := cluster.OpenStandalone(cfg.DataDir, b.self, cfg.TopicDefaults)
	if err != nil {
		return nil, err
	}
	b.ctrl = ctrl
	b.metrics = newMetrics(b)
	b.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(cfg.MaxRequestBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.ChainUnaryInterceptor(b.metrics.unaryInterceptor),
		grpc.ChainStreamInterceptor(b.metrics.streamInterceptor),
	)
	pb.RegisterSkeinServer(b.grpc, &server{b: b})
	b.health = health.NewServer()
	b.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(b.grpc, b.health)
	reflection.Register(b.grpc)
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

	type node struct {
		NodeID int32 `json:"node_id"`
	}
	path := filepath.Join(dir, nodeFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		var n node
		if err := json.Unmarshal(data, &n); err != nil {
			return fmt.Errorf("%s is unreadable: %w", path, err)
		}
		if n.NodeID != b.cfg.NodeID {
			return fmt.Errorf("data directory %s belongs to node %d, not %d: start with --node-id %d or use another --data-dir",
				dir, n.NodeID, b.cfg.NodeID, n.NodeID)
		}
	case errors.Is(err, os.ErrNotExist):
		data, _ := json.Marshal(node{NodeID: b.cfg.NodeID})
		if err := cluster.WriteFileAtomic(path, data); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
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

// Addr is the bound client gRPC address.
func (b *Broker) Addr() string { return b.lis.Addr().String() }

// HTTPAddr is the bound HTTP address, or "".
func (b *Broker) HTTPAddr() string {
	if b.httpLis == nil {
		return ""
	}
	return b.httpLis.Addr().String()
}

// Ready reports whether the broker has opened its partitions and serves.
func (b *Broker) Ready() bool { return b.ready.Load() }

// Run opens the partitions, serves until ctx ends or a fatal error occurs,
// then shuts down gracefully: it stops taking requests, lets in-flight ones
// finish (up to ShutdownTimeout), fsyncs and closes every log. It returns
// nil after a requested stop, or the fatal error.
func (b *Broker) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	if b.http != nil {
		go func() {
			if err := b.http.Serve(b.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http server: %w", err)
			}
		}()
	}
	started := time.Now()
	if err := b.reconcile(b.ctrl.Snapshot()); err != nil {
		b.Close()
		return err
	}
	go func() {
		if err := b.grpc.Serve(b.lis); err != nil {
			errc <- fmt.Errorf("grpc server: %w", err)
		}
	}()
	b.bg.Add(2)
	go b.retentionLoop()
	go b.watchMetadata()
	b.ready.Store(true)
	b.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	b.mu.RLock()
	n := len(b.replicas)
	b.mu.RUnlock()
	b.log.Info("broker ready", "addr", b.Addr(), "http", b.HTTPAddr(), "data_dir", b.cfg.DataDir,
		"partitions", n, "startup", time.Since(started).Round(time.Millisecond))

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

// Close shuts the broker down (see Run). Idempotent; safe without Run.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.ready.Store(false)
		close(b.stopping)
		if b.health != nil {
			b.health.Shutdown()
		}
		if b.grpc != nil {
			done := make(chan struct{})
			go func() { b.grpc.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(b.cfg.ShutdownTimeout):
				b.log.Warn("graceful stop timed out; closing connections", "timeout", b.cfg.ShutdownTimeout)
				b.grpc.Stop()
				<-done
			}
		}
		if b.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			b.http.Shutdown(ctx)
			cancel()
		}
		b.bg.Wait()
		b.mu.Lock()
		reps := b.replicas
		b.replicas = map[tp]*replica{}
		b.mu.Unlock()
		var errs []error
		for t, r := range reps {
			if err := r.p.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", t, err))
			}
		}
		b.closeErr = errors.Join(errs...)
		b.release()
		b.log.Info("broker stopped")
	})
	return b.closeErr
}

// release frees what New took; used by Close and by a failed New.
func (b *Broker) release() {
	if b.ctrl != nil {
		b.ctrl.Close()
	}
	if b.lis != nil {
		b.lis.Close()
	}
	if b.httpLis != nil {
		b.httpLis.Close()
	}
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
		if err := b.reconcile(b.ctrl.Snapshot()); err != nil {
			b.log.Error("applying metadata failed", "err", err)
		}
		select {
		case <-ch:
		case <-b.stopping:
			return
		}
	}
}

// reconcile makes the local replicas match snap: it opens partitions this
// broker now hosts, closes and deletes ones it no longer does, and sets each
// replica's role and epoch.
func (b *Broker) reconcile(snap *cluster.Snapshot) error {
	b.reconcileMu.Lock()
	defer b.reconcileMu.Unlock()
	select {
	case <-b.stopping:
		return errShuttingDown
	default:
	}
	type want struct {
		topic cluster.Topic
		meta  cluster.PartitionMeta
	}
	wanted := map[tp]want{}
	for _, t := range snap.Topics {
		for _, pm := range t.Partitions {
			for _, r := range pm.Replicas {
				if r == b.self.ID {
					wanted[tp{t.Name, pm.Partition}] = want{t, pm}
				}
			}
		}
	}
	// Close replicas that are gone (or belong to a deleted incarnation).
	b.mu.Lock()
	var gone []tp
	goneTopics := map[string]string{} // name -> id of the deleted incarnation
	for k, r := range b.replicas {
		w, ok := wanted[k]
		if !ok || w.topic.ID != r.topicID {
			gone = append(gone, k)
			if t, ok := snap.Topics[k.topic]; !ok || t.ID != r.topicID {
				goneTopics[k.topic] = r.topicID
			}
		}
	}
	closing := make([]*replica, 0, len(gone))
	for _, k := range gone {
		closing = append(closing, b.replicas[k])
		delete(b.replicas, k)
	}
	b.mu.Unlock()
	for _, r := range closing {
		r.p.Close()
	}
	for name, id := range goneTopics {
		b.removeTopicDir(name, id)
	}

	// Open new replicas, a few at a time.
	var toOpen []tp
	b.mu.RLock()
	for k := range wanted {
		if _, ok := b.replicas[k]; !ok {
			toOpen = append(toOpen, k)
		}
	}
	b.mu.RUnlock()
	var errs []error
	dirsDone := map[string]bool{}
	for _, k := range toOpen {
		if t := wanted[k].topic; !dirsDone[t.Name] {
			dirsDone[t.Name] = true
			if err := b.ensureTopicDir(t); err != nil {
				errs = append(errs, fmt.Errorf("topic %s: %w", t.Name, err))
			}
		}
	}
	sem := make(chan struct{}, b.cfg.OpenConcurrency)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	for _, k := range toOpen {
		w := wanted[k]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			p, err := b.openReplica(w.topic, w.meta.Partition)
			if err != nil {
				errMu.Lock()
				errs = append(errs, fmt.Errorf("open %s: %w", k, err))
				errMu.Unlock()
				return
			}
			b.mu.Lock()
			b.replicas[k] = &replica{p: p, topicID: w.topic.ID, cfg: w.topic.Config}
			b.mu.Unlock()
		}()
	}
	wg.Wait()

	// Roles.
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, w := range wanted {
		r, ok := b.replicas[k]
		if !ok {
			continue
		}
		r.cfg = w.topic.Config
		pm := w.meta
		var err error
		if pm.Leader == b.self.ID {
			err = r.p.BecomeLeader(b.self.ID, partition.LeaderState{
				Epoch: pm.LeaderEpoch, ISR: pm.ISR, MinISR: int(w.topic.Config.MinInsyncReplicas),
				Solo: len(pm.Replicas) == 1,
			})
		} else {
			err = r.p.BecomeFollower(pm.Leader, pm.LeaderEpoch)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
	}
	b.snap = snap
	return errors.Join(errs...)
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
		return cluster.WriteFileAtomic(idPath, []byte(t.ID+"\n"))
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
		Observer:       b.metrics,
		Logger:         b.cfg.Logger,
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
	t := time.NewTicker(b.cfg.RetentionCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stopping:
			return
		case <-t.C:
			b.applyRetention()
		}
	}
}

func (b *Broker) applyRetention() {
	b.mu.RLock()
	reps := make(map[tp]*replica, len(b.replicas))
	for k, r := range b.replicas {
		reps[k] = r
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
		hint := &leaderHint{err: &partition.NotLeaderError{LeaderID: pm.Leader, LeaderEpoch: pm.LeaderEpoch}, id: pm.Leader}
		if bi, ok := b.snapshot().Broker(pm.Leader); ok {
			hint.addr = bi.Addr
		}
		if r == nil && pm.Leader == b.self.ID {
			return nil, errNotReady
		}
		return nil, hint
	}
	return r, nil
}
