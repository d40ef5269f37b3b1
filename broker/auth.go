package broker

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/skeinlog/skein/auth"
)

// SecurityConfig turns on ACLs and names the super users.
type SecurityConfig struct {
	// Authorizer is "" (everyone may do everything) or "acl": every
	// request is checked against the controller's ACLs, deny by default.
	Authorizer string
	// SuperUsers may do everything. BrokerPrincipal always is one.
	SuperUsers []auth.Principal
}

// BrokerPrincipal is the principal of a broker: the subject CN of the
// broker certificate ("broker certs create" gives every broker this CN).
// It is always a super user. Brokers reached over a connection without
// TLS (the inter-broker listener on a private network) count as it too.
const BrokerPrincipal auth.Principal = "User:broker"

func (c SecurityConfig) validate() error {
	if c.Authorizer != "" && c.Authorizer != "acl" {
		return fmt.Errorf("config: --authorizer %q: want acl (or leave it unset for no ACLs)", c.Authorizer)
	}
	return nil
}

// Authentication errors: UNAUTHENTICATED to a gRPC client, a closed
// connection to a Kafka one.
var (
	errAuthFailed = errors.New("authentication failed")
	// passwordVerifyTTL is how long a verified password is remembered.
	passwordVerifyTTL = time.Minute
)

// newAuthorizer builds the broker's authorizer over the controller's ACLs.
func (b *Broker) newAuthorizer() *auth.Authorizer {
	supers := append([]auth.Principal{BrokerPrincipal}, b.cfg.Security.SuperUsers...)
	return auth.NewAuthorizer(auth.Config{
		Enabled:    b.cfg.Security.Authorizer == "acl",
		SuperUsers: supers,
		ACLs:       func() []auth.ACL { return b.ctrl.Snapshot().ACLs },
		Logger:     b.log,
	})
}

// lookupCredential finds a user's SCRAM credential in the controller's
// state.
func (b *Broker) lookupCredential(user string, m auth.Mechanism) (auth.Credential, bool) {
	return b.ctrl.Snapshot().Credential(user, m)
}

// verifyPassword checks user's password against its stored SCRAM keys
// (the strongest mechanism it has), through the verification cache.
func (b *Broker) verifyPassword(user, password string) bool {
	snap := b.ctrl.Snapshot()
	for _, m := range []auth.Mechanism{auth.SCRAMSHA512, auth.SCRAMSHA256} {
		if c, ok := snap.Credential(user, m); ok {
			return b.pwCache.Verify(user, password, c, time.Now())
		}
	}
	return false
}

// principalOf authenticates the caller of a gRPC request on a client
// listener: a username and password in the "authorization" metadata
// ("Basic base64(user:password)", verified against the stored SCRAM keys),
// else a verified client certificate's CN, else ANONYMOUS. A password is
// accepted only over TLS or from a loopback address.
func (b *Broker) principalOf(ctx context.Context) (auth.Principal, error) {
	pr, _ := peer.FromContext(ctx)
	var tlsInfo *credentials.TLSInfo
	if pr != nil {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok {
			tlsInfo = &ti
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if h := md.Get("authorization"); len(h) > 0 {
		user, pass, err := parseBasic(h[0])
		if err != nil {
			return "", err
		}
		if tlsInfo == nil && (pr == nil || !isLoopback(pr.Addr)) {
			return "", fmt.Errorf("%w: a password is accepted only over TLS (or from this host on a plaintext listener): turn on TLS", errAuthFailed)
		}
		if !b.verifyPassword(user, pass) {
			b.authz.Audit(auth.User(user), "authenticate", auth.ClusterResource(), errAuthFailed)
			return "", fmt.Errorf("%w for user %q: unknown user or wrong password", errAuthFailed, user)
		}
		return auth.User(user), nil
	}
	if tlsInfo != nil {
		if p, ok := auth.FromTLS(&tlsInfo.State); ok {
			return p, nil
		}
	}
	return auth.Anonymous, nil
}

// parseBasic parses "Basic base64(user:password)".
func parseBasic(h string) (user, pass string, err error) {
	scheme, enc, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "basic") {
		return "", "", fmt.Errorf("%w: the authorization metadata must be \"Basic base64(user:password)\"", errAuthFailed)
	}
	raw, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if derr != nil {
		return "", "", fmt.Errorf("%w: the authorization metadata is not base64", errAuthFailed)
	}
	user, pass, ok = strings.Cut(string(raw), ":")
	if !ok || user == "" {
		return "", "", fmt.Errorf("%w: the authorization metadata must carry user:password", errAuthFailed)
	}
	return user, pass, nil
}

func isLoopback(a net.Addr) bool {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// principalKey carries the authenticated principal in a request's context.
type principalKey struct{}
