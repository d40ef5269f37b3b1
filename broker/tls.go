package broker

import (
	"crypto/tls"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/tlsconf"
)

// With Config.TLS, every listener speaks TLS: the client listeners (gRPC,
// external, Kafka) and HTTP with the broker's certificate, asking clients
// for theirs as TLSClientAuth says; the inter-broker gRPC and Raft
// listeners with mutual TLS, accepting only broker certificates. Brokers
// dial each other with their own certificate. Certificates are re-read
// when their files change.

// openTLS reads the TLS files, if any are named.
func (b *Broker) openTLS() error {
	if !b.cfg.TLS.Enabled() {
		return nil
	}
	src, err := tlsconf.Open(b.cfg.TLS, b.log.With("component", "tls"))
	if err != nil {
		return err
	}
	b.tls = src
	leaf := src.Leaf()
	b.log.Info("TLS on every listener", "subject", leaf.Subject.String(), "not_after", leaf.NotAfter.UTC(),
		"client_auth", b.cfg.TLSClientAuth.String(), "broker_certificate", tlsconf.IsBrokerCert(leaf))
	if !tlsconf.IsBrokerCert(leaf) {
		b.log.Warn("the TLS certificate lacks server or client use: other brokers will refuse it on their inter-broker and Raft listeners")
	}
	return nil
}

// dialCreds are the credentials this broker dials other brokers with.
func (b *Broker) dialCreds() credentials.TransportCredentials {
	if b.tls == nil {
		return insecure.NewCredentials()
	}
	return b.tls.ClientCredentials()
}

// serverCreds is the TLS option of a gRPC server: the client servers ask
// for client certificates per TLSClientAuth, the peer server requires a
// broker's. Refused handshakes are logged once per source host.
func (b *Broker) serverCreds(peer bool) []grpc.ServerOption {
	if b.tls == nil {
		return nil
	}
	if peer {
		return []grpc.ServerOption{grpc.Creds(tlsconf.ServerCredentials(b.tls.PeerServerConfig(), tlsconf.NewRefusals(b.log, "peer")))}
	}
	return []grpc.ServerOption{grpc.Creds(tlsconf.ServerCredentials(b.tls.ServerConfig(b.cfg.TLSClientAuth), tlsconf.NewRefusals(b.log, "client")))}
}

// kafkaTLS is the Kafka listener's TLS configuration, or nil.
func (b *Broker) kafkaTLS() *tls.Config {
	if b.tls == nil {
		return nil
	}
	return b.tls.ServerConfig(b.cfg.TLSClientAuth)
}

// httpListener wraps the HTTP listener in TLS when it is on. Monitoring
// and health probes rarely hold client certificates: HTTP asks for one
// (and checks one given) at most.
func (b *Broker) httpListener(lis net.Listener) net.Listener {
	if b.tls == nil {
		return lis
	}
	return tls.NewListener(lis, b.tls.ServerConfig(min(b.cfg.TLSClientAuth, tlsconf.RequestClientCert), "http/1.1"))
}

// warnPlaintext warns of every listener bound beyond loopback without TLS.
func (b *Broker) warnPlaintext(addrs map[string]string) {
	if b.tls != nil {
		return
	}
	for flag, addr := range addrs {
		if addr == "" {
			continue
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			continue
		}
		b.log.Warn("listening beyond this machine without TLS: anyone who reaches this address can use it; set --tls-cert-file, --tls-key-file and --tls-ca-file (see docs/security.md)", "listener", flag, "addr", addr)
	}
}

// selfClientOpts are the client options for dialling this broker's own
// client listener at addr (the web console's client): with TLS, the
// broker's certificate as client certificate, verifying the listener
// against a name the certificate holds if addr's host is not one.
func (b *Broker) selfClientOpts(addr string) []client.ClientOpt {
	if b.tls == nil {
		return nil
	}
	host := tlsconf.HostOf(addr)
	leaf := b.tls.Leaf()
	name := ""
	if leaf.VerifyHostname(host) != nil {
		switch {
		case len(leaf.DNSNames) > 0:
			name = leaf.DNSNames[0]
		case len(leaf.IPAddresses) > 0:
			name = leaf.IPAddresses[0].String()
		}
	}
	return []client.ClientOpt{client.TLSConfig(b.tls.ClientConfig(name))}
}
