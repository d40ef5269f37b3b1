package broker

// This file is the broker's lifecycle: Run (register, take up roles,
// serve), the background loops, and Close, Kill and the controlled
// shutdown that hands leaderships off first.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/skeinlog/skein/partition"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

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
	b.bg.Add(6)
	go b.cleanerLoop()
	go b.groups.run()
	go b.learnSweepFloor()
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
		if err := b.closeStorage(); err != nil {
			errs = append(errs, fmt.Errorf("close the journals: %w", err))
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
	if err := b.closeStorage(); err != nil {
		b.log.Error("closing the journals", "err", err)
	}
	if b.lock != nil {
		syscall.Flock(int(b.lock.Fd()), syscall.LOCK_UN)
		b.lock.Close()
	}
}

func (b *Broker) onFatal(err error) {
	b.fatalOnce.Do(func() { b.fatal <- err })
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
