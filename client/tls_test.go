package client_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/client/internal/fakebroker"
)

// selfSigned returns a server certificate for dnsName and a pool that
// trusts it.
func selfSigned(t *testing.T, dnsName string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TLSConfig makes the client speak TLS, verifying the broker's
// certificate; a plaintext client, or one that does not trust the
// certificate, gets nowhere.
func TestTLSConfig(t *testing.T) {
	cert, pool := selfSigned(t, "fake-1")
	fc, err := fakebroker.New(fakebroker.Options{TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fc.Close)
	fc.CreateTopic("t", 1)

	c := newClient(t, fc, client.TLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	p := newProducer(t, c)
	if err := p.ProduceSync(ctxT(t), &client.Record{Topic: "t", Value: []byte("over tls")}); err != nil {
		t.Fatalf("produce over TLS: %v", err)
	}
	if recs := fc.Records("t", 0); len(recs) != 1 || string(recs[0].Value) != "over tls" {
		t.Fatalf("records %+v", recs)
	}

	for name, opts := range map[string][]client.ClientOpt{
		"plaintext": nil,
		"untrusted": {client.TLSConfig(&tls.Config{MinVersion: tls.VersionTLS12})},
	} {
		bad := newClient(t, fc, append(opts, client.RequestTimeout(5*time.Second))...)
		_, err := bad.ListTopics(ctxT(t))
		if name == "plaintext" && (err == nil || !errors.Is(err, client.ErrUnavailable) && !errors.Is(err, client.ErrTimedOut) || !strings.Contains(err.Error(), "--tls-ca-file")) {
			t.Fatalf("%s client: %v, want unavailable with a hint at TLS", name, err)
		}
		// A certificate the client does not trust cannot become trusted by
		// retrying: the error is final and says why.
		if name == "untrusted" && (err == nil || client.IsRetriable(err) || !strings.Contains(err.Error(), "not signed by the CA this client trusts")) {
			t.Fatalf("untrusted client: %v, want a final error naming the CA", err)
		}
	}
}

// Options are checked by New, with a message saying what to fix.
func TestClientOptionsValidated(t *testing.T) {
	for _, c := range []struct {
		opts []client.ClientOpt
		want string
	}{
		{[]client.ClientOpt{client.Brokers()}, "no broker addresses"},
		{[]client.ClientOpt{client.Brokers(" , ")}, "no broker addresses"},
		{[]client.ClientOpt{client.RequestTimeout(0)}, "must be positive"},
		{[]client.ClientOpt{client.KeepAlive(time.Second, time.Second)}, "below 5s"},
		{[]client.ClientOpt{client.KeepAlive(10*time.Second, 0)}, "keepalive timeout"},
	} {
		if _, err := client.New(c.opts...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%d options: %v, want %q", len(c.opts), err, c.want)
		}
	}
	c, err := client.New(client.KeepAlive(10*time.Second, 5*time.Second), client.TLSConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
