package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
)

// ServerConfig is a listener's TLS configuration: the Source's current
// certificate on every handshake, TLS 1.2 and later, and clients' certificates
// asked for and checked against the current CA as auth says. nextProtos
// are the ALPN protocols offered (gRPC adds h2 itself).
func (s *Source) ServerConfig(auth ClientAuth, nextProtos ...string) *tls.Config {
	return s.serverConfig(auth.tlsType(), nil, nextProtos)
}

// PeerServerConfig is the inter-broker and Raft listeners' configuration:
// mutual TLS always, and the client's certificate must be a broker's
// (IsBrokerCert), not a client's.
func (s *Source) PeerServerConfig() *tls.Config {
	return s.serverConfig(tls.RequireAndVerifyClientCert, requireBroker("client"), nil)
}

func (s *Source) serverConfig(auth tls.ClientAuthType, verify func(tls.ConnectionState) error, nextProtos []string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := s.current()
			return &tls.Config{
				MinVersion:       tls.VersionTLS12,
				Certificates:     []tls.Certificate{*cert},
				ClientCAs:        pool,
				ClientAuth:       auth,
				VerifyConnection: verify,
				NextProtos:       nextProtos,
			}, nil
		},
	}
}

// ClientConfig is what a broker dials another broker with: its own
// certificate (as re-read) and the current CA, verifying that the other end
// holds a broker certificate for serverName.
func (s *Source) ClientConfig(serverName string) *tls.Config {
	_, pool := s.current()
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		RootCAs:    pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := s.current()
			return cert, nil
		},
		VerifyConnection: requireBroker("server"),
	}
}

// RaftClientConfig is what a broker dials another's Raft listener with:
// its own certificate, and the other end must hold a broker certificate the
// current CA signed, valid now. Raft addresses are the resolved IP
// addresses brokers advertise, which certificates for DNS names (a
// Kubernetes pod's, a compose service's) do not hold, so the name is not
// checked: every broker certificate is as good as another for Raft.
func (s *Source) RaftClientConfig() *tls.Config {
	_, pool := s.current()
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain is verified in VerifyConnection below, against the CA,
		// without a host name.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := s.current()
			return cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: the server presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("tls: failed to verify the Raft peer's certificate: %w", err)
			}
			if !IsBrokerCert(leaf) {
				return errors.New("tls: the Raft peer's certificate of " + leaf.Subject.CommonName + " is not a broker certificate")
			}
			return nil
		},
	}
}

// requireBroker refuses a verified peer whose certificate is not a
// broker's.
func requireBroker(side string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
			return errors.New("tls: no verified broker certificate")
		}
		if leaf := cs.VerifiedChains[0][0]; !IsBrokerCert(leaf) {
			return errors.New("tls: the " + side + " certificate of " + leaf.Subject.CommonName + " is not a broker certificate (it lacks server or client use)")
		}
		return nil
	}
}

// PeerCN is the subject common name of the verified client certificate of
// a connection: the principal. ok is false when the client presented no
// certificate or it was not verified against the CA.
func PeerCN(cs tls.ConnectionState) (cn string, ok bool) {
	if c := PeerCertificate(cs); c != nil {
		return c.Subject.CommonName, true
	}
	return "", false
}

// PeerCertificate is the verified client certificate of a connection, or
// nil.
func PeerCertificate(cs tls.ConnectionState) *x509.Certificate {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil
	}
	return cs.VerifiedChains[0][0]
}

// HostOf is the host part of addr (host:port), for a ServerName.
func HostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
