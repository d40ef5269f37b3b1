package broker

import (
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// The broker serves two gRPC servers. The client server (--addr and
// --external-addr) has the public Skein and Groups services, health and
// reflection; the
// peer server (--peer-addr) has the broker-to-broker Internal service and
// health. An Internal call on a client listener is answered UNIMPLEMENTED:
// no client can fetch as a follower, change an ISR or fence a broker.

func (b *Broker) serverOptions(client bool) []grpc.ServerOption {
	unary := []grpc.UnaryServerInterceptor{b.metrics.unaryInterceptor, b.malformedUnary, b.readyUnary}
	stream := []grpc.StreamServerInterceptor{b.metrics.streamInterceptor, b.malformedStream, b.readyStream}
	return append(b.serverCreds(!client),
		experimental.BufferPool(bufferPool),
		grpc.MaxRecvMsgSize(b.cfg.MaxRequestBytes),
		grpc.MaxConcurrentStreams(uint32(b.cfg.MaxStreamsPerConn)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.ForceServerCodecV2(newLenientCodec(b.badMsgs)),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	)
}

// newClientServer is the server of the client listeners.
func (b *Broker) newClientServer() *grpc.Server {
	// Quotas after authentication: a user's quota needs its principal.
	opts := append(append(b.serverOptions(true), b.clientAuthOptions()...),
		grpc.ChainUnaryInterceptor(b.quotaUnary), grpc.ChainStreamInterceptor(b.quotaStream))
	s := grpc.NewServer(opts...)
	pb.RegisterSkeinServer(s, &server{b: b})
	pb.RegisterGroupsServer(s, &groupsServer{b: b})
	pb.RegisterSecurityServer(s, &securityServer{b: b})
	healthpb.RegisterHealthServer(s, b.health)
	reflection.Register(s)
	return s
}

// newPeerServer is the server of the inter-broker listener.
func (b *Broker) newPeerServer() *grpc.Server {
	s := grpc.NewServer(append(b.serverOptions(false), b.peerAuthOptions()...)...)
	pb.RegisterInternalServer(s, &internalServer{b: b})
	// The public services too, for the requests a broker forwards to the
	// controller and its metadata probes: they travel among brokers, as
	// brokers, never through a client port.
	pb.RegisterSkeinServer(s, &server{b: b})
	pb.RegisterGroupsServer(s, &groupsServer{b: b})
	pb.RegisterSecurityServer(s, &securityServer{b: b})
	healthpb.RegisterHealthServer(s, b.health)
	return s
}

// stopServers stops both gRPC servers: at once after Kill, else gracefully
// (in-flight requests finish) for up to ShutdownTimeout.
func (b *Broker) stopServers() {
	var wg sync.WaitGroup
	for _, s := range []*grpc.Server{b.grpc, b.peer} {
		if s == nil {
			continue
		}
		if b.abrupt.Load() {
			s.Stop()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := make(chan struct{})
			go func() { s.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(b.cfg.ShutdownTimeout):
				b.log.Warn("graceful stop timed out; closing connections", "timeout", b.cfg.ShutdownTimeout)
				s.Stop()
				<-done
			}
		}()
	}
	wg.Wait()
}

// PeerAddr is the bound inter-broker address.
func (b *Broker) PeerAddr() string { return b.peerLis.Addr().String() }

// peerAdvertised is the inter-broker address the other brokers dial:
// --peer-advertise-addr; else the bound address; else, bound to every
// interface, the advertised client host with the bound peer port.
func peerAdvertised(cfg Config, clientAdv, bound string) (string, error) {
	if cfg.PeerAdvertiseAddr != "" {
		return cfg.PeerAdvertiseAddr, nil
	}
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return bound, nil
	}
	advHost, _, _ := net.SplitHostPort(clientAdv)
	if ip := net.ParseIP(advHost); advHost == "" || ip != nil && ip.IsUnspecified() {
		return "", fmt.Errorf("--peer-addr %s is bound to all interfaces: set --peer-advertise-addr (or --advertise-addr) to this broker's reachable host", cfg.PeerAddr)
	}
	return net.JoinHostPort(advHost, port), nil
}
