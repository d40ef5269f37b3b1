package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/skeinlog/skein/internal/fsutil"
)

// BrokerCN is the subject common name of the broker certificate that
// `broker certs create` issues: the brokers' principal.
const BrokerCN = "broker"

// clockSkew backdates every certificate so that a peer whose clock is a
// little behind still accepts it.
const clockSkew = 5 * time.Minute

// CA is a certificate authority: its certificate and private key.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA makes a self-signed ECDSA P-256 certificate authority valid from
// now (less a little clock skew) until now+lifetime.
func NewCA(name string, now time.Time, lifetime time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Skein"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Leaf is an issued certificate and its key, PEM-encoded.
type Leaf struct {
	CertPEM, KeyPEM []byte
}

// LeafSpec says what a certificate is for.
type LeafSpec struct {
	// CommonName is the subject's CN: the principal of a client.
	CommonName string
	// Hosts become the subject alternative names (IP addresses and DNS
	// names) of a server certificate.
	Hosts []string
	// Server makes it usable as a TLS server certificate; every
	// certificate is usable as a TLS client certificate.
	Server bool
	// NotBefore and NotAfter bound its validity.
	NotBefore, NotAfter time.Time
}

// Issue signs a new ECDSA P-256 certificate for spec.
func (ca *CA) Issue(spec LeafSpec) (Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Leaf{}, err
	}
	serial, err := newSerial()
	if err != nil {
		return Leaf{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: spec.CommonName, Organization: []string{"Skein"}},
		NotBefore:    spec.NotBefore,
		NotAfter:     spec.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if spec.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		for _, h := range spec.Hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Leaf{}, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return Leaf{}, err
	}
	return Leaf{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: keyPEM}, nil
}

// CertPEM and KeyPEM are the CA's certificate and key, PEM-encoded.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

func (ca *CA) KeyPEM() ([]byte, error) { return encodeKey(ca.Key) }

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// CreateOptions are the arguments of `broker certs create`.
type CreateOptions struct {
	Dir     string
	Hosts   []string
	Clients []string
	// Days is the lifetime of the broker and client certificates; the CA
	// lives ten times as long.
	Days  int
	Force bool
	// KeepExisting: when every file is there already, keep them all and
	// write nothing (a container that makes its certificates on first
	// start); when only some are, refuse as without it.
	KeepExisting bool
	Now          time.Time
}

// File is one file Create wrote, and what it is for.
type File struct {
	Path, What string
}

var clientName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)
var hostName = regexp.MustCompile(`^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$`)

// checkCreate refuses options that would make unusable or clashing files.
func checkCreate(o CreateOptions) error {
	if o.Dir == "" {
		return errors.New("--dir is empty: name the directory for the certificates")
	}
	if len(o.Hosts) == 0 {
		return errors.New("--hosts is empty: give every host name and IP address clients and brokers use to reach the brokers (e.g. --hosts 127.0.0.1,localhost,broker-1)")
	}
	for _, h := range o.Hosts {
		if net.ParseIP(h) == nil && !hostName.MatchString(h) {
			return fmt.Errorf("--hosts: %q is neither an IP address nor a DNS name", h)
		}
	}
	if o.Days < 1 || o.Days > 3650 {
		return fmt.Errorf("--days %d: between 1 and 3650", o.Days)
	}
	seen := map[string]bool{}
	for _, c := range o.Clients {
		if !clientName.MatchString(c) {
			return fmt.Errorf("--clients: %q: a client name is 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", c)
		}
		if c == "ca" || c == BrokerCN {
			return fmt.Errorf("--clients: %q is taken by the CA's or the broker's files; choose another name", c)
		}
		if seen[c] {
			return fmt.Errorf("--clients: %q given twice", c)
		}
		seen[c] = true
	}
	return nil
}

// Create writes a new CA, a broker certificate for every host and one
// client certificate per client into o.Dir. Keys are written 0600. It
// refuses to replace any existing file unless o.Force.
func Create(o CreateOptions) ([]File, error) {
	if err := checkCreate(o); err != nil {
		return nil, err
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if done, err := checkExisting(o); done || err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	life := time.Duration(o.Days) * 24 * time.Hour
	ca, err := NewCA("Skein CA", o.Now, 10*life)
	if err != nil {
		return nil, err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	var out []File
	write := func(name string, cert, key []byte, what string) error {
		crt, kf := filepath.Join(o.Dir, name+".crt"), filepath.Join(o.Dir, name+".key")
		if err := fsutil.WriteFileAtomicPerm(kf, key, 0o600); err != nil {
			return err
		}
		if err := fsutil.WriteFileAtomicPerm(crt, cert, 0o644); err != nil {
			return err
		}
		out = append(out, File{crt, what}, File{kf, what})
		return nil
	}
	if err := writeGossipKey(o.Dir); err != nil {
		return nil, err
	}
	out = append(out, File{filepath.Join(o.Dir, "gossip.key"), "the gossip encryption key (every broker's --gossip-key-file)"})
	if err := write("ca", ca.CertPEM(), caKey, "the certificate authority (keep ca.key offline; every broker and client takes ca.crt)"); err != nil {
		return nil, err
	}
	specs := []struct {
		name string
		spec LeafSpec
		what string
	}{{BrokerCN, LeafSpec{CommonName: BrokerCN, Hosts: o.Hosts, Server: true}, "every broker's certificate (server and inter-broker client), for " + strings.Join(o.Hosts, ", ")}}
	for _, c := range o.Clients {
		specs = append(specs, struct {
			name string
			spec LeafSpec
			what string
		}{c, LeafSpec{CommonName: c}, "client certificate of principal " + c})
	}
	for _, s := range specs {
		s.spec.NotBefore, s.spec.NotAfter = o.Now.Add(-clockSkew), o.Now.Add(life)
		leaf, err := ca.Issue(s.spec)
		if err != nil {
			return nil, err
		}
		if err := write(s.name, leaf.CertPEM, leaf.KeyPEM, s.what); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkExisting refuses to replace files unless o.Force; with
// o.KeepExisting and every file there, done is true: nothing to write.
func checkExisting(o CreateOptions) (done bool, err error) {
	if o.Force {
		return false, nil
	}
	paths := []string{filepath.Join(o.Dir, "gossip.key")}
	for _, n := range append([]string{"ca", BrokerCN}, o.Clients...) {
		paths = append(paths, filepath.Join(o.Dir, n+".crt"), filepath.Join(o.Dir, n+".key"))
	}
	var exist []string
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			exist = append(exist, p)
		}
	}
	switch {
	case len(exist) == 0:
		return false, nil
	case o.KeepExisting && len(exist) == len(paths):
		return true, nil
	}
	return false, fmt.Errorf("%s exists: not replacing it (give --force to replace every file, or choose another --dir)", exist[0])
}

// writeGossipKey writes 32 random bytes in base64 to dir/gossip.key, 0600.
func writeGossipKey(dir string) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	return fsutil.WriteFileAtomicPerm(filepath.Join(dir, "gossip.key"), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
}

// IsBrokerCert reports whether cert is a broker's: usable both as a TLS
// server and as a TLS client certificate (as `broker certs create` issues
// them; client certificates carry client use only). The inter-broker and
// Raft listeners accept only these.
func IsBrokerCert(cert *x509.Certificate) bool {
	server, client := len(cert.ExtKeyUsage) == 0, len(cert.ExtKeyUsage) == 0
	for _, u := range cert.ExtKeyUsage {
		server = server || u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny
		client = client || u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny
	}
	return server && client
}
