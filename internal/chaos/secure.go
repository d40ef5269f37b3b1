package chaos

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
)

// secureUser is the SCRAM user the workload and the checker's reads run as
// in a secure run; secureAdmin is the client certificate (a super user)
// that creates it and its ACLs, and watches the cluster's health.
const (
	secureUser  = "chaos"
	secureAdmin = "chaos-admin"
)

// security is a secure run's set-up (Config.Secure): certificates made by
// the product's own `broker certs create`, TLS on every listener (mutual
// TLS between brokers, always), encrypted gossip, ACLs on, and the
// workload authenticated as a SCRAM user that ACLs allow only the test's
// topics, its group and the cluster.
type security struct {
	dir      string
	password string
	// brokerArgs turn TLS, the gossip key and ACLs on.
	brokerArgs []string
	// admin is the admin client certificate's options; user the SCRAM
	// user's over TLS (the CA only, no certificate).
	admin, user []client.ClientOpt
	// peer dials a broker's inter-broker listener with the broker
	// certificate (the test-only LocalLog the checker reads replicas with).
	peer credentials.TransportCredentials
}

// newSecurity makes the certificates (valid for hosts), the gossip key and
// the user's password under dir.
func newSecurity(t proctest.TB, dir string, hosts []string) (*security, error) {
	proctest.MustCLI(t, "broker", "", "certs", "create", "--dir", dir, "--hosts", strings.Join(hosts, ","), "--clients", secureAdmin)
	pw := make([]byte, 18)
	rand.Read(pw)
	s := &security{dir: dir, password: hex.EncodeToString(pw)}
	if err := os.WriteFile(s.file("chaos.pw"), []byte(s.password+"\n"), 0o600); err != nil {
		return nil, err
	}
	s.brokerArgs = []string{"--tls-cert-file", s.file("broker.crt"), "--tls-key-file", s.file("broker.key"), "--tls-ca-file", s.file("ca.crt"),
		"--tls-client-auth", "request", "--gossip-key-file", s.file("gossip.key"),
		"--authorizer", "acl", "--super-users", "User:" + secureAdmin}
	ca, err := os.ReadFile(s.file("ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificate in %s", s.file("ca.crt"))
	}
	adminCert, err := tls.LoadX509KeyPair(s.file(secureAdmin+".crt"), s.file(secureAdmin+".key"))
	if err != nil {
		return nil, err
	}
	brokerCert, err := tls.LoadX509KeyPair(s.file("broker.crt"), s.file("broker.key"))
	if err != nil {
		return nil, err
	}
	s.admin = []client.ClientOpt{client.TLSConfig(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{adminCert}, MinVersion: tls.VersionTLS12})}
	s.user = []client.ClientOpt{client.TLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}), client.UserPassword(secureUser, s.password)}
	s.peer = credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{brokerCert}, MinVersion: tls.VersionTLS12})
	return s, nil
}

func (s *security) file(name string) string { return filepath.Join(s.dir, name) }

// createUser creates the SCRAM user and its ACLs with the product's CLI,
// as the admin certificate: everything on the test's topics (the prefix
// covers the key-indexed one) and group, and on the cluster (describe for
// health, alter for the replica moves).
func (s *security) createUser(t proctest.TB, brokers []string) {
	as := []string{"-b", strings.Join(brokers, ","), "--tls-ca-file", s.file("ca.crt"),
		"--tls-cert-file", s.file(secureAdmin + ".crt"), "--tls-key-file", s.file(secureAdmin + ".key")}
	proctest.MustCLI(t, "broker", "", append([]string{"user", "create", secureUser, "--password-file", s.file("chaos.pw")}, as...)...)
	for _, res := range [][]string{{"--topic-prefix", "chaos"}, {"--group-prefix", "chaos"}, {"--cluster"}} {
		proctest.MustCLI(t, "broker", "", append(append([]string{"acl", "add", "--principal", "User:" + secureUser, "--operation", "all"}, res...), as...)...)
	}
}

// peerDialOption is how the checker dials inter-broker listeners: plain,
// or with the broker certificate in a secure run.
func (s *security) peerDialOption() grpc.DialOption {
	if s == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(s.peer)
}

// checkRefusals makes sure security is on before the faults start, so a
// secure run cannot pass with it silently off: a client without a user
// (TLS, CA only) may not write the test topic, a wrong password is refused,
// and a plaintext client gets no answer.
func (s *security) checkRefusals(brokers []string, topic string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	try := func(opts ...client.ClientOpt) error {
		cl, err := client.New(append([]client.ClientOpt{client.Brokers(brokers...), client.RequestTimeout(3 * time.Second)}, opts...)...)
		if err != nil {
			return err
		}
		defer cl.Close()
		p, err := cl.NewProducer(client.Idempotent(false), client.DeliveryTimeout(5*time.Second))
		if err != nil {
			return err
		}
		defer p.Close()
		return p.ProduceSync(ctx, &client.Record{Topic: topic, Value: []byte("intruder")})
	}
	caOnly := s.user[:1]
	// ANONYMOUS may not even describe the topic: it is left out of its
	// metadata, so the client reports it unknown.
	if err := try(caOnly...); !errors.Is(err, client.ErrNotAuthorized) && !errors.Is(err, client.ErrUnknownTopic) {
		return fmt.Errorf("a client without a user wrote %s: %v, want not authorized (or an unknown topic)", topic, err)
	}
	if err := try(caOnly[0], client.UserPassword(secureUser, "wrong")); !errors.Is(err, client.ErrAuthentication) {
		return fmt.Errorf("a wrong password: %v, want an authentication failure", err)
	}
	if err := try(); err == nil {
		return errors.New("a plaintext client wrote to a TLS broker")
	}
	return nil
}
