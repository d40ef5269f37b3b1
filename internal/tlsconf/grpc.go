package tlsconf

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Refusals logs refused TLS handshakes on a listener: at most one line per
// source host per RefusalLogInterval, so a scanner or a misconfigured peer
// retrying cannot flood the log.
type Refusals struct {
	log      *slog.Logger
	listener string
	now      func() time.Time

	mu   sync.Mutex
	seen map[string]time.Time
}

// RefusalLogInterval is how long a source host's refused handshakes stay
// quiet after one is logged.
const RefusalLogInterval = 10 * time.Minute

// NewRefusals logs listener's refused handshakes to log.
func NewRefusals(log *slog.Logger, listener string) *Refusals {
	return &Refusals{log: log, listener: listener, now: time.Now, seen: map[string]time.Time{}}
}

// Log records a refused handshake from remote.
func (r *Refusals) Log(remote net.Addr, err error) {
	host := remote.String()
	if h, _, e := net.SplitHostPort(host); e == nil {
		host = h
	}
	now := r.now()
	r.mu.Lock()
	last, ok := r.seen[host]
	if ok && now.Sub(last) < RefusalLogInterval {
		r.mu.Unlock()
		return
	}
	if len(r.seen) > 10000 { // bound the memory a spray of sources can take
		clear(r.seen)
	}
	r.seen[host] = now
	r.mu.Unlock()
	r.log.Warn("TLS handshake refused (further refusals from this host are not logged for a while)",
		"listener", r.listener, "from", remote.String(), "err", err)
}

// ServerCredentials are gRPC server credentials for cfg that log every
// refused handshake through r.
func ServerCredentials(cfg *tls.Config, r *Refusals) credentials.TransportCredentials {
	return serverCreds{TransportCredentials: credentials.NewTLS(cfg), r: r}
}

type serverCreds struct {
	credentials.TransportCredentials
	r *Refusals
}

func (c serverCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	dc := &drainOnClose{Conn: conn}
	dc.handshaking.Store(true)
	out, info, err := c.TransportCredentials.ServerHandshake(dc)
	dc.handshaking.Store(false)
	if err != nil {
		c.r.Log(conn.RemoteAddr(), err)
		conn.Close()
	}
	return out, info, err
}

// drainOnClose, closed during a refused handshake, first reads (briefly
// and boundedly) what the client sent: with TLS 1.3 a client whose
// certificate is refused has already sent its first request, and closing a
// socket with unread data resets the connection — a reset that can destroy
// the alert saying why before the client reads it. Drained, the client
// gets the alert and a clean end.
type drainOnClose struct {
	net.Conn
	handshaking atomic.Bool
}

func (d *drainOnClose) Close() error {
	if d.handshaking.Load() {
		d.Conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		io.Copy(io.Discard, io.LimitReader(d.Conn, 64<<10))
	}
	return d.Conn.Close()
}

func (c serverCreds) Clone() credentials.TransportCredentials {
	return serverCreds{TransportCredentials: c.TransportCredentials.Clone(), r: c.r}
}

// ClientCredentials are the gRPC credentials a broker dials other brokers
// with: each handshake takes the Source's current certificate and CA.
func (s *Source) ClientCredentials() credentials.TransportCredentials {
	return clientCreds{s: s}
}

type clientCreds struct{ s *Source }

func (c clientCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(c.s.ClientConfig(HostOf(authority))).ClientHandshake(ctx, authority, conn)
}

func (c clientCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, net.ErrClosed
}

func (c clientCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (c clientCreds) Clone() credentials.TransportCredentials { return c }

// OverrideServerName is part of credentials.TransportCredentials.
func (c clientCreds) OverrideServerName(string) error { return nil }

// PeerCNFromContext is the verified client certificate's subject CN of a
// gRPC call's connection (see PeerCN).
func PeerCNFromContext(ctx context.Context) (cn string, ok bool) {
	p, found := peer.FromContext(ctx)
	if !found {
		return "", false
	}
	info, isTLS := p.AuthInfo.(credentials.TLSInfo)
	if !isTLS {
		return "", false
	}
	return PeerCN(info.State)
}
