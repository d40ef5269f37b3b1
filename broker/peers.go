package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/experimental"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/cluster"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// peers holds one gRPC connection per other broker address, for
// replication and for requests forwarded to the controller.
type peers struct {
	b *Broker

	mu    sync.Mutex // guards conns
	conns map[string]*grpc.ClientConn
}

func newPeers(b *Broker) *peers { return &peers{b: b, conns: map[string]*grpc.ClientConn{}} }

func (p *peers) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr,
		experimental.WithBufferPool(bufferPool),
		grpc.WithTransportCredentials(p.b.dialCreds()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(p.b.cfg.MaxRequestBytes)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
	)
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return c, nil
}

// brokerAddr is a broker's advertised client address (peer false) or
// inter-broker address (peer true) from the metadata.
func (p *peers) brokerAddr(id int32, peer bool) (string, error) {
	bi, ok := p.b.ctrl.Snapshot().Broker(id)
	if !ok || bi.Addr == "" {
		return "", fmt.Errorf("%w: broker %d is not in the cluster metadata", errNotReady, id)
	}
	if !peer {
		return bi.Addr, nil
	}
	if bi.PeerAddr == "" {
		return "", fmt.Errorf("%w: broker %d has registered no inter-broker address (it runs an older version without --peer-addr; upgrade it)", errNotReady, id)
	}
	return bi.PeerAddr, nil
}

// internal is the Internal service of broker id, on its inter-broker
// listener.
func (p *peers) internal(id int32) (pb.InternalClient, error) {
	addr, err := p.brokerAddr(id, true)
	if err != nil {
		return nil, err
	}
	c, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	return pb.NewInternalClient(c), nil
}

// connTo is the connection to broker id's inter-broker listener, for the
// public services a broker calls as a broker (forwarding to the controller,
// metadata probes).
func (p *peers) connTo(id int32) (*grpc.ClientConn, error) {
	addr, err := p.brokerAddr(id, true)
	if err != nil {
		return nil, err
	}
	return p.conn(addr)
}

// public is the Skein service of broker id, on its inter-broker listener.
func (p *peers) public(id int32) (pb.SkeinClient, error) {
	c, err := p.connTo(id)
	if err != nil {
		return nil, err
	}
	return pb.NewSkeinClient(c), nil
}

func (p *peers) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// fault applies the test hook Config.PeerFault to a request to broker to.
func (p *peers) fault(ctx context.Context, to int32) error {
	f := p.b.cfg.PeerFault
	if f == nil {
		return nil
	}
	delay, err := f(p.b.self.ID, to)
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err != nil {
		return status.Error(codes.Unavailable, fmt.Sprintf("link %d->%d: %v", p.b.self.ID, to, err))
	}
	return nil
}

// ReplicaFetch and OffsetForLeaderEpoch implement replication.Transport.
func (p *peers) ReplicaFetch(ctx context.Context, leader int32, req *pb.ReplicaFetchRequest) (*pb.ReplicaFetchResponse, error) {
	if err := p.fault(ctx, leader); err != nil {
		return nil, err
	}
	c, err := p.internal(leader)
	if err != nil {
		return nil, err
	}
	return c.ReplicaFetch(ctx, req)
}

func (p *peers) OffsetForLeaderEpoch(ctx context.Context, leader int32, req *pb.OffsetForLeaderEpochRequest) (*pb.OffsetForLeaderEpochResponse, error) {
	if err := p.fault(ctx, leader); err != nil {
		return nil, err
	}
	c, err := p.internal(leader)
	if err != nil {
		return nil, err
	}
	return c.OffsetForLeaderEpoch(ctx, req)
}

// AlterPartition implements replication.ISRChanger: the local controller if
// this broker is it, else the controller broker.
func (p *peers) AlterPartition(ctx context.Context, req *pb.AlterPartitionRequest) (*pb.AlterPartitionResponse, error) {
	var resp *pb.AlterPartitionResponse
	err := p.toController(ctx, func(ctx context.Context, local bool, c pb.InternalClient) error {
		if local {
			resp = p.b.alterPartitionLocal(ctx, req)
			return nil
		}
		var err error
		resp, err = c.AlterPartition(ctx, req)
		return err
	})
	return resp, err
}

// toController runs fn against the controller: locally when this broker is
// the controller, else over gRPC, retrying while an election is under way.
func (p *peers) toController(ctx context.Context, fn func(ctx context.Context, local bool, c pb.InternalClient) error) error {
	backoff := 50 * time.Millisecond
	for {
		id := p.b.ctrl.ControllerID()
		var err error
		switch {
		case id == p.b.self.ID:
			err = fn(ctx, true, nil)
		case id >= 0:
			var c pb.InternalClient
			if err = p.fault(ctx, id); err == nil {
				if c, err = p.internal(id); err == nil {
					err = fn(ctx, false, c)
				}
			}
		default:
			err = &cluster.NotControllerError{LeaderID: -1}
		}
		if err == nil || !retryController(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(backoff):
			backoff = min(2*backoff, time.Second)
		}
	}
}

func retryController(err error) bool {
	return errors.Is(err, cluster.ErrNotController) || errors.Is(err, errNotReady) || isUnavailable(err)
}

// probe checks that a broker's gRPC server answers at all: any answer of the
// health service, serving or not, means the process is up and reachable.
func (b *Broker) probe(ctx context.Context, addr string) error {
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(b.dialCreds()))
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(false))
	if err != nil && isUnavailable(err) {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// identify asks the inter-broker listener at addr who it is (cluster
// Config.Verify). One connection per question: the address is a gossip
// member's claim, not yet a broker's.
func (b *Broker) identify(ctx context.Context, addr string) (cluster.Identity, error) {
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(b.dialCreds()))
	if err != nil {
		return cluster.Identity{}, err
	}
	defer c.Close()
	r, err := pb.NewInternalClient(c).Identify(ctx, &pb.IdentifyRequest{})
	if err != nil {
		return cluster.Identity{}, err
	}
	return cluster.Identity{ID: r.BrokerId, StorageID: r.StorageId, GossipAddr: r.GossipAddr}, nil
}

// forward sends a public request to the controller broker, retrying while
// an election is under way.
func (b *Broker) forward(ctx context.Context, fn func(ctx context.Context, c pb.SkeinClient) error) error {
	return b.forwardConn(ctx, func(ctx context.Context, c *grpc.ClientConn) error { return fn(ctx, pb.NewSkeinClient(c)) })
}

// atController runs local when this broker is the controller; when it is
// not, it sends the request on with remote to the controller's
// inter-broker listener. Local errors become gRPC statuses; the
// controller's answer comes back as it is. forwarded says which ran.
func atController[R any](b *Broker, ctx context.Context, local func() (R, error),
	remote func(context.Context, pb.SkeinClient) (R, error)) (r R, forwarded bool, err error) {
	r, err = local()
	if errors.Is(err, cluster.ErrNotController) {
		err = b.forward(ctx, func(ctx context.Context, c pb.SkeinClient) (err error) {
			r, err = remote(ctx, c)
			return err
		})
		return r, true, err
	}
	if err != nil {
		return r, false, toStatus(err)
	}
	return r, false, nil
}

// forwardConn is forward with the connection to the controller's
// inter-broker listener, for any of its public services.
func (b *Broker) forwardConn(ctx context.Context, fn func(ctx context.Context, c *grpc.ClientConn) error) error {
	return b.peers.toController(ctx, func(ctx context.Context, local bool, _ pb.InternalClient) error {
		id := b.ctrl.ControllerID()
		if local || id == b.self.ID {
			return &cluster.NotControllerError{LeaderID: id} // became controller meanwhile: the caller's path handles it next time
		}
		c, err := b.peers.connTo(id)
		if err != nil {
			return err
		}
		return fn(ctx, c)
	})
}

// awaitMetadata waits (bounded by ctx and 10 s) until this broker's applied
// metadata satisfies cond.
func (b *Broker) awaitMetadata(ctx context.Context, cond func(*cluster.Snapshot) bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		ch := b.ctrl.Changes()
		if cond(b.ctrl.Snapshot()) {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// external reports whether the request in ctx arrived on the external
// client listener. A listener bound to every interface (0.0.0.0:19420 in a
// container) sees connections on a concrete local address, so only its port
// is compared then: no other listener can hold that port.
func (b *Broker) external(ctx context.Context) bool {
	if b.extLis == nil {
		return false
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	local, ok1 := p.LocalAddr.(*net.TCPAddr)
	ext, ok2 := b.extLis.Addr().(*net.TCPAddr)
	if !ok1 || !ok2 || local.Port != ext.Port {
		return false
	}
	return ext.IP.IsUnspecified() || ext.IP.Equal(local.IP)
}

// clientAddr is the address of broker bi for a client on the internal
// (external=false) or external listener.
func clientAddr(bi cluster.BrokerInfo, external bool) string {
	if external && bi.ExternalAddr != "" {
		return bi.ExternalAddr
	}
	return bi.Addr
}

// detail is errorDetail with the leader's address, as the client who asked
// can reach it, filled into NOT_LEADER answers.
func (b *Broker) detail(external bool, err error) *pb.ErrorDetail {
	d := errorDetail(err)
	if d.LeaderId >= 0 && d.Reason == pb.ErrorReason_NOT_LEADER {
		if bi, ok := b.ctrl.Snapshot().Broker(d.LeaderId); ok {
			d.LeaderAddr = clientAddr(bi, external)
		}
	}
	return d
}

// status is toStatus with the leader's address filled in.
func (b *Broker) status(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	return detailStatus(b.detail(b.external(ctx), err))
}

// awaitTopicEverywhere waits, for up to 10 s, until every broker holding a
// replica of t answers Metadata for it (with applied(answer) true, when
// applied is given): the metadata reaches them through Raft a moment after
// the controller commits it.
func (b *Broker) awaitTopicEverywhere(ctx context.Context, t cluster.Topic, applied func(*pb.TopicMetadata) bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hosts := map[int32]bool{}
	for _, pm := range t.Partitions {
		for _, r := range pm.Replicas {
			if r != b.self.ID {
				hosts[r] = true
			}
		}
	}
	for id := range hosts {
		for ctx.Err() == nil {
			c, err := b.peers.public(id)
			if err == nil {
				cctx, ccancel := context.WithTimeout(ctx, time.Second)
				var resp *pb.MetadataResponse
				resp, err = c.Metadata(cctx, &pb.MetadataRequest{Topics: []string{t.Name}})
				ccancel()
				if err == nil && applied != nil && (len(resp.GetTopics()) != 1 || !applied(resp.GetTopics()[0])) {
					err = errNotReady
				}
			}
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}
