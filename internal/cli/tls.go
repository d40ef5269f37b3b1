package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/skeinlog/skein/client"
)

// TLSFlags are the client TLS flags of produce, consume and broker's admin
// commands, each with a SKEIN_TLS_* variable (the broker's own names, so a
// broker's environment also serves `broker healthcheck` beside it).
type TLSFlags struct {
	CAFile, CertFile, KeyFile, ServerName string
}

// Register defines --tls-ca-file, --tls-cert-file, --tls-key-file and
// --tls-server-name on fs.
func (t *TLSFlags) Register(fs *flag.FlagSet) {
	for _, f := range []struct {
		p           *string
		name, usage string
	}{
		{&t.CAFile, "tls-ca-file", "PEM certificate(s) of the CA that signed the brokers' certificates: connect over TLS"},
		{&t.CertFile, "tls-cert-file", "PEM client certificate, for brokers that require one (mutual TLS); its subject CN is your principal"},
		{&t.KeyFile, "tls-key-file", "PEM private key of --tls-cert-file"},
		{&t.ServerName, "tls-server-name", "name to verify the brokers' certificates against (default: the host of each address)"},
	} {
		env := envName(f.name)
		fs.StringVar(f.p, f.name, os.Getenv(env), f.usage+" (env "+env+")")
	}
}

func envName(flag string) string {
	out := []byte("SKEIN_")
	for _, c := range []byte(flag) {
		switch {
		case c == '-':
			c = '_'
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		}
		out = append(out, c)
	}
	return string(out)
}

// Config is the TLS configuration the flags name, or nil (plaintext) when
// none is given. Every error names the flag and what to fix.
func (t *TLSFlags) Config() (*tls.Config, error) {
	if t.CAFile == "" && t.CertFile == "" && t.KeyFile == "" {
		if t.ServerName != "" {
			return nil, errors.New("--tls-server-name needs --tls-ca-file")
		}
		return nil, nil
	}
	if t.CAFile == "" {
		return nil, errors.New("--tls-cert-file and --tls-key-file need --tls-ca-file: the CA that signed the brokers' certificates")
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("--tls-cert-file and --tls-key-file go together: give both")
	}
	ca, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("--tls-ca-file %s holds no PEM certificate", t.CAFile)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: t.ServerName}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert-file %s and --tls-key-file %s: %v (the key must be the certificate's, both PEM)", t.CertFile, t.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// ClientOpts are the client options the flags give: TLS, or none.
func (t *TLSFlags) ClientOpts() ([]client.ClientOpt, error) {
	cfg, err := t.Config()
	if err != nil || cfg == nil {
		return nil, err
	}
	return []client.ClientOpt{client.TLSConfig(cfg)}, nil
}

// TLSUsage documents the TLS flags in a command's usage text.
const TLSUsage = `      --tls-ca-file F     connect over TLS, trusting brokers' certificates signed by the CA in F
      --tls-cert-file F   client certificate for brokers requiring one (mutual TLS); its CN is your principal
      --tls-key-file F    key of --tls-cert-file
      --tls-server-name N name to verify the brokers' certificates against (default: each address's host)
                          (env SKEIN_TLS_CA_FILE, SKEIN_TLS_CERT_FILE, SKEIN_TLS_KEY_FILE, SKEIN_TLS_SERVER_NAME)
`

// ConnectOpts are the client options the user and TLS flags give together.
func ConnectOpts(u *UserFlags, t *TLSFlags) ([]client.ClientOpt, error) {
	userOpts, err := u.ClientOpts()
	if err != nil {
		return nil, err
	}
	tlsOpts, err := t.ClientOpts()
	if err != nil {
		return nil, err
	}
	return append(userOpts, tlsOpts...), nil
}

// Connect makes a client of brokers with the user and TLS flags' options
// and any others.
func Connect(brokers string, u *UserFlags, t *TLSFlags, extra ...client.ClientOpt) (*client.Client, error) {
	opts, err := ConnectOpts(u, t)
	if err != nil {
		return nil, err
	}
	return client.New(append(append(opts, client.Brokers(brokers)), extra...)...)
}
