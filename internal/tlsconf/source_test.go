package tlsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI writes a CA and issues certificates into a directory.
type testPKI struct {
	t   *testing.T
	dir string
	ca  *CA
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := NewCA("test CA", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{t: t, dir: t.TempDir(), ca: ca}
	p.write("ca.crt", ca.CertPEM())
	return p
}

func (p *testPKI) write(name string, data []byte) string {
	p.t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// issue writes name.crt and name.key: a broker certificate (server) for
// 127.0.0.1 or a client one, valid from nb to na.
func (p *testPKI) issue(name string, server bool, nb, na time.Time) Files {
	p.t.Helper()
	leaf, err := p.ca.Issue(LeafSpec{CommonName: name, Hosts: []string{"127.0.0.1"}, Server: server, NotBefore: nb, NotAfter: na})
	if err != nil {
		p.t.Fatal(err)
	}
	return Files{CertFile: p.write(name+".crt", leaf.CertPEM), KeyFile: p.write(name+".key", leaf.KeyPEM), CAFile: filepath.Join(p.dir, "ca.crt")}
}

func hour(n int) time.Time { return time.Now().Add(time.Duration(n) * time.Hour) }

// Open refuses missing, unreadable, mismatched, expired and foreign files,
// naming the flag and what to fix.
func TestOpenRefuses(t *testing.T) {
	p := newPKI(t)
	good := p.issue("broker", true, hour(-1), hour(1))
	other := newPKI(t).issue("broker", true, hour(-1), hour(1))
	expired := p.issue("old", true, hour(-3), hour(-1))
	mismatch := good
	mismatch.KeyFile = other.KeyFile
	foreign := other
	foreign.CAFile = good.CAFile
	missing := good
	missing.KeyFile = filepath.Join(p.dir, "nope.key")
	noCA := good
	noCA.CAFile = ""
	notPEM := good
	notPEM.CAFile = p.write("junk.crt", []byte("junk"))
	for _, c := range []struct {
		f    Files
		want string
	}{
		{Files{CertFile: good.CertFile}, "go together"},
		{noCA, "--tls-ca-file is required"},
		{missing, "--tls-key-file: stat"},
		{mismatch, "the key must be the certificate's"},
		{expired, "expired at"},
		{foreign, "is not signed by --tls-ca-file"},
		{notPEM, "holds no PEM certificate"},
	} {
		if _, err := Open(c.f, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.f, err, c.want)
		}
	}
	if _, err := Open(good, nil); err != nil {
		t.Fatal(err)
	}
}

// handshake connects a client with cfg to a server with srv over loopback
// TCP and returns the server's state, the server certificate the client saw
// and each side's error.
func handshake(srv, cfg *tls.Config) (serverState tls.ConnectionState, clientCert *x509.Certificate, serverErr, clientErr error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return tls.ConnectionState{}, nil, err, err
	}
	defer lis.Close()
	type result struct {
		st  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		a, err := lis.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer a.Close()
		s := tls.Server(a, srv)
		s.SetDeadline(time.Now().Add(5 * time.Second))
		err = s.Handshake()
		if err == nil {
			// TLS 1.3: the client's certificate is checked after the
			// client's handshake ends; read to see the outcome.
			s.Write([]byte{1})
		}
		done <- result{s.ConnectionState(), err}
	}()
	b, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		return tls.ConnectionState{}, nil, err, err
	}
	defer b.Close()
	c := tls.Client(b, cfg)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	clientErr = c.Handshake()
	if clientErr == nil {
		clientCert = c.ConnectionState().PeerCertificates[0]
		_, clientErr = c.Read(make([]byte, 1))
	}
	r := <-done
	return r.st, clientCert, r.err, clientErr
}

// A certificate replaced on disk is served from the next handshake after
// the next look (at most a second); a replacement that does not load is
// logged once and the previous certificate kept.
func TestSourceReloads(t *testing.T) {
	p := newPKI(t)
	f := p.issue("broker", true, hour(-1), hour(1))
	var logs bytes.Buffer
	s, err := Open(f, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	s.now = func() time.Time { return clock }
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	client := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	serial := func() string {
		t.Helper()
		_, cert, serr, cerr := handshake(s.ServerConfig(NoClientCert), client)
		if serr != nil || cerr != nil {
			t.Fatalf("handshake: server %v, client %v", serr, cerr)
		}
		return cert.SerialNumber.String()
	}
	first := serial()

	// Rotate: a new certificate and key in place.
	rotated := p.issue("broker", true, hour(-1), hour(2))
	if got := serial(); got != first {
		t.Fatal("reloaded before a second passed")
	}
	clock = clock.Add(2 * time.Second)
	second := serial()
	if second == first {
		t.Fatal("rotated certificate not served")
	}

	// A broken rotation: the certificate of another key. Kept, logged once.
	leaf, _ := p.ca.Issue(LeafSpec{CommonName: "broker", Hosts: []string{"127.0.0.1"}, Server: true, NotBefore: hour(-1), NotAfter: hour(3)})
	p.write("broker.crt", leaf.CertPEM)
	for range 3 {
		clock = clock.Add(2 * time.Second)
		if got := serial(); got != second {
			t.Fatal("a certificate that does not match its key was served")
		}
	}
	if n := strings.Count(logs.String(), "do not load"); n != 1 {
		t.Fatalf("broken rotation logged %d times:\n%s", n, logs.String())
	}
	// Its key arrives: served.
	p.write("broker.key", leaf.KeyPEM)
	clock = clock.Add(2 * time.Second)
	if got := serial(); got == second {
		t.Fatal("completed rotation not served")
	}
	_ = rotated
}

// The inter-broker configuration requires a broker certificate from the
// CA: no certificate, a client's certificate, another CA's or an expired
// one are refused; a broker's is accepted and its CN is the principal.
func TestPeerServerConfig(t *testing.T) {
	p := newPKI(t)
	s, err := Open(p.issue("broker", true, hour(-1), hour(1)), nil)
	if err != nil {
		t.Fatal(err)
	}
	other := newPKI(t)
	dial := func(f *Files) (tls.ConnectionState, error, error) {
		cfg := &tls.Config{ServerName: "127.0.0.1", RootCAs: x509.NewCertPool()}
		cfg.RootCAs.AddCert(p.ca.Cert)
		if f != nil {
			pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		st, _, serr, cerr := handshake(s.PeerServerConfig(), cfg)
		return st, serr, cerr
	}
	alice := p.issue("alice", false, hour(-1), hour(1))
	foreign := other.issue("broker", true, hour(-1), hour(1))
	expired := p.issue("old", true, hour(-3), hour(-1))
	for name, f := range map[string]*Files{"none": nil, "client": &alice, "other CA": &foreign, "expired": &expired} {
		if _, serr, _ := dial(f); serr == nil {
			t.Errorf("%s certificate accepted on the inter-broker listener", name)
		}
	}
	b2 := p.issue("broker-2", true, hour(-1), hour(1))
	st, serr, cerr := dial(&b2)
	if serr != nil || cerr != nil {
		t.Fatalf("broker certificate: server %v, client %v", serr, cerr)
	}
	if cn, ok := PeerCN(st); !ok || cn != "broker-2" {
		t.Fatalf("PeerCN %q %v", cn, ok)
	}

	// A client config (a broker dialling) refuses a server whose
	// certificate another CA signed.
	o, err := Open(foreign, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, cerr := handshake(o.ServerConfig(NoClientCert), s.ClientConfig("127.0.0.1")); cerr == nil {
		t.Fatal("a broker trusted another CA's broker")
	}

	// Raft dials check the chain and broker use, not the name: a broker
	// certificate without the dialled address is accepted, another CA's or
	// a client's is not.
	noIP := p.issue("broker-x", true, hour(-1), hour(1))
	leaf, _ := p.ca.Issue(LeafSpec{CommonName: "broker-x", Hosts: []string{"broker-x.example"}, Server: true, NotBefore: hour(-1), NotAfter: hour(1)})
	p.write("broker-x.crt", leaf.CertPEM)
	p.write("broker-x.key", leaf.KeyPEM)
	named, err := Open(noIP, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, serr, cerr := handshake(named.PeerServerConfig(), s.RaftClientConfig()); serr != nil || cerr != nil {
		t.Fatalf("raft dial to a broker certificate without the address: server %v, client %v", serr, cerr)
	}
	if _, _, _, cerr := handshake(o.PeerServerConfig(), s.RaftClientConfig()); cerr == nil {
		t.Fatal("raft dial trusted another CA's broker")
	}
	aliceSrc, err := Open(alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, cerr := handshake(aliceSrc.ServerConfig(NoClientCert), s.RaftClientConfig()); cerr == nil {
		t.Fatalf("raft dial to a client certificate: %v", cerr)
	}
}

// Refused handshakes are logged once per source host per interval.
func TestRefusalsRateLimited(t *testing.T) {
	var logs bytes.Buffer
	r := NewRefusals(slog.New(slog.NewTextHandler(&logs, nil)), "raft")
	clock := time.Now()
	r.now = func() time.Time { return clock }
	a1 := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1000}
	a2 := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1001}
	b := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 1000}
	for _, a := range []net.Addr{a1, a2, a1, b, b} {
		r.Log(a, errors.New("bad certificate"))
	}
	if n := strings.Count(logs.String(), "handshake refused"); n != 2 {
		t.Fatalf("%d lines, want 2 (one per host):\n%s", n, logs.String())
	}
	clock = clock.Add(RefusalLogInterval + time.Second)
	r.Log(a1, errors.New("bad certificate"))
	if n := strings.Count(logs.String(), "handshake refused"); n != 3 {
		t.Fatalf("%d lines after the interval, want 3", n)
	}
}

func TestParseClientAuth(t *testing.T) {
	for s, want := range map[string]ClientAuth{"none": NoClientCert, "request": RequestClientCert, "require": RequireClientCert} {
		if got, err := ParseClientAuth(s); err != nil || got != want || got.String() != s {
			t.Errorf("%s: %v %v", s, got, err)
		}
	}
	if _, err := ParseClientAuth("yes"); err == nil || !strings.Contains(err.Error(), "want none, request or require") {
		t.Fatal(err)
	}
}
