package tlsconf_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/internal/tlsconf"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(path, strings.TrimSuffix(path, ".crt")+".key")
	if err != nil {
		t.Fatalf("%s and its key: %v", path, err)
	}
	return pair.Leaf
}

// Create writes a CA, a broker certificate valid as server for every host
// and as client, and one client certificate per name, keys 0600.
func TestCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	now := time.Now()
	files, err := tlsconf.Create(tlsconf.CreateOptions{Dir: dir, Hosts: []string{"127.0.0.1", "localhost", "broker-1"}, Clients: []string{"alice", "bob"}, Days: 30, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 9 {
		t.Fatalf("%d files: %v", len(files), files)
	}
	for _, f := range files {
		st, err := os.Stat(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o644)
		if strings.HasSuffix(f.Path, ".key") {
			want = 0o600
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", f.Path, st.Mode().Perm(), want)
		}
	}
	ca := readCert(t, filepath.Join(dir, "ca.crt"))
	if !ca.IsCA || ca.NotAfter.Before(now.Add(299*24*time.Hour)) {
		t.Fatalf("CA: IsCA %v, until %v", ca.IsCA, ca.NotAfter)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	broker := readCert(t, filepath.Join(dir, "broker.crt"))
	if _, ok := broker.PublicKey.(*ecdsa.PublicKey); !ok || broker.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Fatalf("broker key is %T, want ECDSA P-256", broker.PublicKey)
	}
	if d := broker.NotAfter.Sub(now); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Fatalf("broker certificate lives %v, want 30 days", d)
	}
	for _, h := range []string{"127.0.0.1", "localhost", "broker-1"} {
		if _, err := broker.Verify(x509.VerifyOptions{DNSName: h, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("broker certificate as server for %s: %v", h, err)
		}
	}
	if _, err := broker.Verify(x509.VerifyOptions{DNSName: "other-host", Roots: pool}); err == nil {
		t.Error("broker certificate valid for a host not given")
	}
	if _, err := broker.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil || !tlsconf.IsBrokerCert(broker) {
		t.Errorf("broker certificate as inter-broker client: %v, IsBrokerCert %v", err, tlsconf.IsBrokerCert(broker))
	}
	for _, name := range []string{"alice", "bob"} {
		c := readCert(t, filepath.Join(dir, name+".crt"))
		if c.Subject.CommonName != name {
			t.Errorf("%s.crt: CN %q", name, c.Subject.CommonName)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s as client: %v", name, err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil || tlsconf.IsBrokerCert(c) {
			t.Errorf("client certificate %s usable as a broker's", name)
		}
	}
}

// Create refuses to replace files unless forced, and refuses bad input
// before writing anything.
func TestCreateRefuses(t *testing.T) {
	dir := t.TempDir()
	o := tlsconf.CreateOptions{Dir: dir, Hosts: []string{"localhost"}, Days: 1}
	if _, err := tlsconf.Create(o); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if _, err := tlsconf.Create(o); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second create: %v, want a refusal naming --force", err)
	}
	keep := o
	keep.KeepExisting = true
	if files, err := tlsconf.Create(keep); err != nil || len(files) != 0 {
		t.Fatalf("create keeping complete files: %v %v", files, err)
	}
	keep.Clients = []string{"carol"} // carol's files are missing: not complete
	if _, err := tlsconf.Create(keep); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("keeping an incomplete set: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "ca.crt")); string(after) != string(before) {
		t.Fatal("refused create changed ca.crt")
	}
	o.Force = true
	if _, err := tlsconf.Create(o); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "ca.crt")); string(after) == string(before) {
		t.Fatal("--force did not replace ca.crt")
	}
	for _, c := range []struct {
		o    tlsconf.CreateOptions
		want string
	}{
		{tlsconf.CreateOptions{Dir: dir, Days: 1}, "--hosts is empty"},
		{tlsconf.CreateOptions{Dir: dir, Hosts: []string{"bad host"}, Days: 1}, "neither an IP address nor a DNS name"},
		{tlsconf.CreateOptions{Dir: dir, Hosts: []string{"h"}, Days: 0}, "--days 0"},
		{tlsconf.CreateOptions{Dir: dir, Hosts: []string{"h"}, Days: 1, Clients: []string{"../x"}}, "a client name is"},
		{tlsconf.CreateOptions{Dir: dir, Hosts: []string{"h"}, Days: 1, Clients: []string{"broker"}}, "is taken"},
		{tlsconf.CreateOptions{Dir: dir, Hosts: []string{"h"}, Days: 1, Clients: []string{"a", "a"}}, "given twice"},
	} {
		if _, err := tlsconf.Create(c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		}
	}
}
