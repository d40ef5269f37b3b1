package client

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// UserPassword makes the client authenticate as a SCRAM user (created with
// "broker user create") by sending the name and password with every
// request. The password travels only over TLS (TLSConfig), or in plaintext
// to a loopback address (127.0.0.1, ::1, localhost) for local tests: dialling
// another address without TLS fails. Default: no user (the broker sees the
// client certificate's principal, or ANONYMOUS).
func UserPassword(user, password string) ClientOpt {
	return clientOpt(func(c *clientConfig) { c.user, c.password = user, password })
}

// passwordCreds sends "authorization: Basic base64(user:password)".
type passwordCreds struct {
	header    string
	plaintext bool // allowed without TLS: the target is a loopback address
}

func (p passwordCreds) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if !p.plaintext {
		ri, _ := credentials.RequestInfoFromContext(ctx)
		if err := credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity); err != nil {
			return nil, fmt.Errorf("skein client: refusing to send a password without TLS: %w", err)
		}
	}
	return map[string]string{"authorization": p.header}, nil
}

func (passwordCreds) RequireTransportSecurity() bool { return false }

// credsFor are the per-request credentials for addr, or an error when a
// password would go in plaintext to a host that is not this one.
func (c *clientConfig) credsFor(addr string) ([]grpc.DialOption, error) {
	if c.user == "" {
		return nil, nil
	}
	loop := loopbackTarget(addr)
	if c.tls == nil && !loop {
		return nil, fmt.Errorf("skein client: refusing to send the password of user %q to %s without TLS: configure TLS (TLSConfig, --tls-ca-file)", c.user, addr)
	}
	h := "Basic " + base64.StdEncoding.EncodeToString([]byte(c.user+":"+c.password))
	return []grpc.DialOption{grpc.WithPerRPCCredentials(passwordCreds{header: h, plaintext: c.tls == nil && loop})}, nil
}

// loopbackTarget reports whether addr (host:port, or a target such as
// dns:///host:port) names this host.
func loopbackTarget(addr string) bool {
	if i := strings.LastIndex(addr, "/"); i >= 0 {
		addr = addr[i+1:]
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
