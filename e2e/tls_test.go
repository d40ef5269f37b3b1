package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
	"github.com/skeinlog/skein/internal/tlsconf"
)

// pki is a directory of certificates made by `broker certs create`, and a
// gossip key file.
type pki struct {
	dir, gossipKey string
}

func newPKI(t *testing.T, clients ...string) pki {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	args := []string{"certs", "create", "--dir", dir, "--hosts", "127.0.0.1,localhost"}
	if len(clients) > 0 {
		args = append(args, "--clients", strings.Join(clients, ","))
	}
	proctest.MustCLI(t, "broker", "", args...)
	key := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(key, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return pki{dir: dir, gossipKey: key}
}

func (p pki) file(name string) string { return filepath.Join(p.dir, name) }

// brokerArgs turn TLS on with mutual TLS for clients too.
func (p pki) brokerArgs() []string {
	return []string{"--tls-cert-file", p.file("broker.crt"), "--tls-key-file", p.file("broker.key"), "--tls-ca-file", p.file("ca.crt"),
		"--tls-client-auth", "require", "--gossip-key-file", p.gossipKey}
}

// cliArgs are a CLI's TLS flags as client name ("" for none: CA only).
func (p pki) cliArgs(name string) []string {
	args := []string{"--tls-ca-file", p.file("ca.crt")}
	if name != "" {
		args = append(args, "--tls-cert-file", p.file(name+".crt"), "--tls-key-file", p.file(name+".key"))
	}
	return args
}

// tlsConfig is a client's TLS configuration as client name.
func (p pki) tlsConfig(t *testing.T, name string) *tls.Config {
	t.Helper()
	ca, err := os.ReadFile(p.file("ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if name != "" {
		cert, err := tls.LoadX509KeyPair(p.file(name+".crt"), p.file(name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

// ca is the PKI's certificate authority, to issue further certificates.
func (p pki) ca(t *testing.T) *tlsconf.CA {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(p.file("ca.crt"), p.file("ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &tlsconf.CA{Cert: pair.Leaf, Key: pair.PrivateKey.(*ecdsa.PrivateKey)}
}

// issue writes name.crt and name.key signed by the PKI's CA, valid from nb
// to na; server makes it a broker certificate. Files are replaced
// atomically, as a secret mount or a careful operator does.
func (p pki) issue(t *testing.T, name string, server bool, nb, na time.Time) {
	t.Helper()
	leaf, err := p.ca(t).Issue(tlsconf.LeafSpec{CommonName: name, Hosts: []string{"127.0.0.1", "localhost"}, Server: server, NotBefore: nb, NotAfter: na})
	if err != nil {
		t.Fatal(err)
	}
	for ext, data := range map[string][]byte{".key": leaf.KeyPEM, ".crt": leaf.CertPEM} {
		tmp := p.file(name + ext + ".new")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p.file(name+ext)); err != nil {
			t.Fatal(err)
		}
	}
}

// serverSerial is the serial number of the certificate a TLS listener
// presents now.
func serverSerial(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// A three-broker cluster with TLS on every listener and mutual TLS among
// brokers and for clients: produce and consume with acks=all through the
// CLIs and the Kafka listener; clients without the right certificates get
// clear errors at once; peers without a broker certificate reach neither
// replication nor Raft; an expired certificate is refused; and the broker
// certificate rotates under load without losing an acknowledged record.
func TestTLSCluster(t *testing.T) {
	p := newPKI(t, "alice")
	c := proctest.StartClusterWith(t, 3, []client.ClientOpt{client.TLSConfig(p.tlsConfig(t, "alice"))}, p.brokerArgs()...)
	brokers := strings.Join(c.Addrs(), ",")
	admin := append([]string{"topic", "create", "sec", "--partitions", "1", "--replication-factor", "3", "--min-insync", "2", "-b", brokers}, p.cliArgs("alice")...)
	proctest.MustCLI(t, "broker", "", admin...)
	in := "one\ntwo\nthree\n"
	proctest.MustCLI(t, "produce", in, append([]string{"-t", "sec", "--acks", "all", "-b", brokers}, p.cliArgs("alice")...)...)
	if out := proctest.MustCLI(t, "consume", "", append([]string{"-t", "sec", "-o", "beginning", "-e", "-b", brokers}, p.cliArgs("alice")...)...).Stdout; out != in {
		t.Fatalf("consumed %q, want %q", out, in)
	}
	t.Run("clients", func(t *testing.T) { tlsClientRefusals(t, p, c) })
	t.Run("peers", func(t *testing.T) { tlsPeerRefusals(t, p, c) })
	t.Run("rotation", func(t *testing.T) { tlsRotationUnderLoad(t, p, c) })
}

// tlsClientRefusals: every client lacking what the brokers require fails
// at once with a message naming what to fix; Kafka and HTTP speak TLS too.
func tlsClientRefusals(t *testing.T, p pki, c *proctest.Cluster) {
	b := c.Brokers[1]
	other := newPKI(t, "mallory")
	p.issue(t, "expired", false, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"plaintext", nil, "if it serves TLS, give --tls-ca-file"},
		{"no client certificate", p.cliArgs(""), "requires a client certificate"},
		{"wrong CA", other.cliArgs(""), "not signed by the CA this client trusts"},
		{"client certificate of another CA", append(p.cliArgs(""), "--tls-cert-file", other.file("mallory.crt"), "--tls-key-file", other.file("mallory.key")), "refused this client's certificate"},
		{"expired client certificate", p.cliArgs("expired"), "refused this client's certificate"},
	} {
		start := time.Now()
		r := proctest.CLI(t, "consume", "", append([]string{"-t", "sec", "-o", "beginning", "-e", "-b", b.Addr}, tc.args...)...)
		if r.Code == 0 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q, want %q", tc.name, r.Code, r.Stderr, tc.want)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: took %v to fail", tc.name, d)
		}
	}

	// Kafka: TLS with a client certificate works, plaintext does not.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kc := kgoClient(t, []string{b.KafkaAddr}, kgo.DialTLSConfig(p.tlsConfig(t, "alice")), kgo.ConsumeTopics("sec"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs := kc.PollRecords(ctx, 3)
	if err := fs.Err(); err != nil || fs.NumRecords() == 0 || string(fs.Records()[0].Value) != "one" {
		t.Fatalf("kafka over TLS: %v, %d records", err, fs.NumRecords())
	}
	plain := kgoClient(t, []string{b.KafkaAddr}, kgo.RequestRetries(0))
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	if err := plain.Ping(pctx); err == nil {
		t.Fatal("plaintext Kafka client answered on a TLS listener")
	}

	// HTTP: /healthz over TLS without a client certificate (probes have
	// none); plain HTTP is answered with a TLS complaint, nothing else.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: p.tlsConfig(t, "")}}
	resp, err := hc.Get("https://" + b.HTTPAddr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("https /healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	// With TLS on the console needs a principal: none is 401; alice's
	// certificate (no ACLs: she sees everything) gets the overview, which
	// the broker reads through its own inter-broker listener (mutual TLS
	// with its own certificate).
	if code, _ := consoleGet(t, b.HTTPAddr, "/ui/api/overview", "", "", p.tlsConfig(t, "")); code != http.StatusUnauthorized {
		t.Fatalf("console over TLS without a principal: %d, want 401", code)
	}
	if code, body := consoleGet(t, b.HTTPAddr, "/ui/api/overview", "", "", p.tlsConfig(t, "alice")); code != 200 || !strings.Contains(body, `"sec"`) {
		t.Fatalf("console over TLS as alice: %d %s", code, body)
	}
	resp, err = (&http.Client{Timeout: 5 * time.Second}).Get("http://" + b.HTTPAddr + "/metrics")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP /metrics answered on a TLS listener")
		}
	}
}

// tlsPeerRefusals: the inter-broker and Raft listeners take only broker
// certificates of the cluster's CA. A client's certificate, another CA's
// broker certificate or an expired broker certificate is refused; a broker
// started with another CA's certificate (but the gossip key) cannot join,
// and the cluster's state does not change.
func tlsPeerRefusals(t *testing.T, p pki, c *proctest.Cluster) {
	other := newPKI(t)
	p.issue(t, "old-broker", true, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	alice := p.tlsConfig(t, "alice")
	foreign := other.tlsConfig(t, "broker")
	foreign.RootCAs = alice.RootCAs // it trusts our CA: only its own certificate is wrong
	expired := p.tlsConfig(t, "old-broker")
	for _, b := range c.Brokers {
		for _, addr := range []string{b.PeerAddr, b.RaftAddr} {
			for name, cfg := range map[string]*tls.Config{"client certificate": alice, "other CA's broker certificate": foreign, "expired broker certificate": expired} {
				conn, err := tls.Dial("tcp", addr, cfg)
				if err == nil {
					// TLS 1.3: the server's verdict on the client's
					// certificate arrives with the first read.
					conn.SetReadDeadline(time.Now().Add(5 * time.Second))
					_, err = conn.Read(make([]byte, 1))
					conn.Close()
				}
				if err == nil || !strings.Contains(err.Error(), "tls") {
					t.Errorf("%s with a %s: %v, want a refused handshake", addr, name, err)
				}
			}
		}
	}
	if !strings.Contains(c.Brokers[1].Logs(), "TLS handshake refused") {
		t.Error("refused handshakes not logged")
	}

	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before, err := cl.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--node-id", "4", "--join", c.Brokers[1].GossipAddr, "--tls-cert-file", other.file("broker.crt"),
		"--tls-key-file", other.file("broker.key"), "--tls-ca-file", other.file("ca.crt"), "--gossip-key-file", p.gossipKey}
	rogue, err := proctest.TryStartBroker(t, t.TempDir(), "", 15*time.Second, args...)
	if err == nil {
		t.Fatalf("a broker with another CA's certificate became ready:\n%s", rogue.Logs())
	}
	after, err := cl.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Brokers) != len(before.Brokers) {
		t.Fatalf("registered brokers changed: before %+v, after %+v", before.Brokers, after.Brokers)
	}
	for _, bi := range after.Brokers {
		if bi.ID == 4 {
			t.Fatalf("the foreign broker is registered: %+v", bi)
		}
	}
	// The controller may change hands on a loaded machine, but the quorum
	// is still the three brokers and no one else.
	desc, err := cl.DescribeCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range desc.Members {
		if want := map[bool]string{true: "", false: "voter"}[m.ID == 4]; m.QuorumRole != want {
			t.Errorf("member %d: quorum role %q, want %q", m.ID, m.QuorumRole, want)
		}
	}
	md, err := cl.Metadata(ctx, "sec")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range md.Topics[0].Partitions[0].Replicas {
		if r == 4 {
			t.Fatal("the foreign broker holds a replica")
		}
	}
}

// tlsRotationUnderLoad replaces the broker certificate on disk under an
// acks=all load: new handshakes get the new certificate without a restart,
// a broker restarted afterwards rejoins with it, and every acknowledged
// record is read back.
func tlsRotationUnderLoad(t *testing.T, p pki, c *proctest.Cluster) {
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "rot", client.TopicConfig{Partitions: 1, ReplicationFactor: 3, MinInsyncReplicas: 2}); err != nil {
		t.Fatal(err)
	}
	c.Leader(cl, "rot", 0, -1, 20*time.Second)
	alice := p.tlsConfig(t, "alice")
	old := serverSerial(t, c.Brokers[1].Addr, alice)
	l := startLoad(t, cl, "rot", 0, 200)
	time.Sleep(2 * time.Second)
	p.issue(t, "broker", true, time.Now().Add(-time.Minute), time.Now().Add(30*24*time.Hour))
	deadline := time.Now().Add(10 * time.Second)
	for _, b := range c.Brokers {
		for serverSerial(t, b.Addr, alice) == old {
			if time.Now().After(deadline) {
				l.finish()
				t.Fatalf("broker at %s still serves the old certificate", b.Addr)
			}
			time.Sleep(200 * time.Millisecond)
		}
		for !strings.Contains(b.Logs(), "TLS certificate reloaded") {
			if time.Now().After(deadline) {
				t.Errorf("broker at %s did not log the reload", b.Addr)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// A restarted broker dials the others and is dialled with the new
	// certificate only.
	c.Brokers[3].Term()
	c.Restart(3)
	time.Sleep(2 * time.Second)
	l.finish()
	if err := c.TryWaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	acked, failed := l.acked, l.failed
	l.mu.Unlock()
	if len(acked) < 500 {
		t.Fatalf("only %d records acknowledged (%d failed: %v)", len(acked), len(failed), failed[:min(3, len(failed))])
	}
	n := checkLog(t, proctest.ReadAll(t, cl, "rot", 0), acked)
	t.Logf("%d acknowledged, %d failed, %d in the log", len(acked), len(failed), n)
}
