package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// ClientAuth is what a listener asks of its clients' certificates.
type ClientAuth int

const (
	// NoClientCert: clients are not asked for a certificate.
	NoClientCert ClientAuth = iota
	// RequestClientCert: a client may present a certificate; one that does
	// must present one the CA signed, valid now.
	RequestClientCert
	// RequireClientCert: every client must present a certificate the CA
	// signed, valid now (mutual TLS).
	RequireClientCert
)

// ParseClientAuth reads --tls-client-auth: none, request or require.
func ParseClientAuth(s string) (ClientAuth, error) {
	switch s {
	case "none", "":
		return NoClientCert, nil
	case "request":
		return RequestClientCert, nil
	case "require":
		return RequireClientCert, nil
	}
	return 0, fmt.Errorf("--tls-client-auth %q: want none, request or require", s)
}

func (a ClientAuth) String() string {
	return [...]string{"none", "request", "require"}[a]
}

func (a ClientAuth) tlsType() tls.ClientAuthType {
	return [...]tls.ClientAuthType{tls.NoClientCert, tls.VerifyClientCertIfGiven, tls.RequireAndVerifyClientCert}[a]
}

// Files names a certificate, its key and the CA that signs every
// certificate of the cluster.
type Files struct {
	CertFile, KeyFile, CAFile string
}

// Enabled reports whether any file is named (TLS is on).
func (f Files) Enabled() bool { return f.CertFile != "" || f.KeyFile != "" || f.CAFile != "" }

// checkInterval bounds how often a Source looks at its files' times.
const checkInterval = time.Second

// Source is a certificate, its key and a CA pool read from Files, read
// again when a file's modification time or size changes (looked at most
// once a second, on use): certificates rotate without a restart. A
// rotation that does not load (a key that does not match, a file half
// written) is logged and the previous certificate kept.
type Source struct {
	files Files
	log   *slog.Logger
	now   func() time.Time

	mu        sync.Mutex // guards the fields below
	cert      *tls.Certificate
	pool      *x509.CertPool
	stamp     [3]fileStamp
	lastCheck time.Time
	badStamp  [3]fileStamp // the stamps of the last rotation that failed, logged once
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// Open reads f, checking that the certificate matches its key, is valid
// now and is signed by the CA; log receives rotations. Every error names
// the file and what to fix.
func Open(f Files, log *slog.Logger) (*Source, error) {
	switch {
	case f.CertFile == "" || f.KeyFile == "":
		return nil, errors.New("--tls-cert-file and --tls-key-file go together: give both (and --tls-ca-file)")
	case f.CAFile == "":
		return nil, errors.New("--tls-ca-file is required with TLS: brokers verify each other's certificates, and clients' if asked, against it")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Source{files: f, log: log, now: time.Now}
	stamp, err := s.stamps()
	if err != nil {
		return nil, err
	}
	cert, pool, err := load(f, s.now())
	if err != nil {
		return nil, err
	}
	s.cert, s.pool, s.stamp, s.lastCheck = cert, pool, stamp, s.now()
	return s, nil
}

// stamps are the files' modification times and sizes.
func (s *Source) stamps() ([3]fileStamp, error) {
	var out [3]fileStamp
	for i, p := range []struct{ flag, path string }{{"--tls-cert-file", s.files.CertFile}, {"--tls-key-file", s.files.KeyFile}, {"--tls-ca-file", s.files.CAFile}} {
		st, err := os.Stat(p.path)
		if err != nil {
			return out, fmt.Errorf("%s: %w", p.flag, err)
		}
		out[i] = fileStamp{st.ModTime(), st.Size()}
	}
	return out, nil
}

// load reads and checks the certificate, key and CA.
func load(f Files, now time.Time) (*tls.Certificate, *x509.CertPool, error) {
	caPEM, err := os.ReadFile(f.CAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--tls-ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("--tls-ca-file %s holds no PEM certificate", f.CAFile)
	}
	for _, p := range []struct{ flag, path string }{{"--tls-cert-file", f.CertFile}, {"--tls-key-file", f.KeyFile}} {
		if _, err := os.ReadFile(p.path); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p.flag, err)
		}
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--tls-cert-file %s and --tls-key-file %s: %v (the key must be the certificate's, both PEM)", f.CertFile, f.KeyFile, err)
	}
	leaf := cert.Leaf
	switch {
	case now.Before(leaf.NotBefore):
		return nil, nil, fmt.Errorf("--tls-cert-file %s is not valid before %v", f.CertFile, leaf.NotBefore.UTC())
	case now.After(leaf.NotAfter):
		return nil, nil, fmt.Errorf("--tls-cert-file %s expired at %v: issue a new one", f.CertFile, leaf.NotAfter.UTC())
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, nil, fmt.Errorf("--tls-cert-file %s is not signed by --tls-ca-file %s: %v", f.CertFile, f.CAFile, err)
	}
	return &cert, pool, nil
}

// current is the certificate and CA pool, read again first if a file
// changed since the last look (at most once a second).
func (s *Source) current() (*tls.Certificate, *x509.CertPool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if now.Sub(s.lastCheck) < checkInterval {
		return s.cert, s.pool
	}
	s.lastCheck = now
	stamp, err := s.stamps()
	if err != nil || stamp == s.stamp {
		if err != nil && stamp != s.badStamp {
			s.badStamp = stamp
			s.log.Warn("TLS files unreadable: keeping the certificate in use", "err", err)
		}
		return s.cert, s.pool
	}
	cert, pool, err := load(s.files, now)
	if err != nil {
		if stamp != s.badStamp {
			s.badStamp = stamp
			s.log.Warn("TLS files changed but do not load: keeping the certificate in use", "err", err)
		}
		return s.cert, s.pool
	}
	s.cert, s.pool, s.stamp = cert, pool, stamp
	s.log.Info("TLS certificate reloaded", "cert", s.files.CertFile, "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter.UTC())
	return s.cert, s.pool
}

// Leaf is the certificate in use.
func (s *Source) Leaf() *x509.Certificate {
	c, _ := s.current()
	return c.Leaf
}
