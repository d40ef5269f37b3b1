package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"fmt"
	"strings"

	"github.com/xdg-go/scram"
)

// Mechanism is a SASL SCRAM mechanism.
type Mechanism string

// The supported mechanisms.
const (
	SCRAMSHA256 Mechanism = "SCRAM-SHA-256"
	SCRAMSHA512 Mechanism = "SCRAM-SHA-512"
)

// Mechanisms lists the supported mechanisms.
var Mechanisms = []Mechanism{SCRAMSHA256, SCRAMSHA512}

// MinIterations is the fewest PBKDF2 iterations a credential may have
// (Kafka's and RFC 7677's minimum); DefaultIterations is what new
// credentials get.
const (
	MinIterations     = 4096
	DefaultIterations = 8192
	saltBytes         = 24
	minSaltBytes      = 16
)

// ParseMechanism parses a mechanism name, case-insensitively.
func ParseMechanism(s string) (Mechanism, error) {
	m := Mechanism(strings.ToUpper(s))
	switch m {
	case SCRAMSHA256, SCRAMSHA512:
		return m, nil
	}
	return "", fmt.Errorf("mechanism %q: want SCRAM-SHA-256 or SCRAM-SHA-512", s)
}

func (m Mechanism) hash() scram.HashGeneratorFcn {
	if m == SCRAMSHA512 {
		return scram.HashGeneratorFcn(sha512.New)
	}
	return scram.HashGeneratorFcn(sha256.New)
}

func (m Mechanism) size() int {
	if m == SCRAMSHA512 {
		return sha512.Size
	}
	return sha256.Size
}

// Credential is a user's SCRAM secret as the broker stores it (RFC 5802):
// the salt, the iteration count, StoredKey = H(HMAC(SaltedPassword,
// "Client Key")) and ServerKey = HMAC(SaltedPassword, "Server Key"). The
// password cannot be recovered from it.
type Credential struct {
	Mechanism  Mechanism `json:"mechanism"`
	Salt       []byte    `json:"salt"`
	Iterations int       `json:"iterations"`
	StoredKey  []byte    `json:"stored_key"`
	ServerKey  []byte    `json:"server_key"`
}

// NewCredential derives a credential for password with a fresh random
// salt. iterations 0 means DefaultIterations.
func NewCredential(m Mechanism, password string, iterations int) (Credential, error) {
	if iterations == 0 {
		iterations = DefaultIterations
	}
	salt := make([]byte, saltBytes)
	rand.Read(salt)
	c := Credential{Mechanism: m, Salt: salt, Iterations: iterations}
	if _, err := ParseMechanism(string(m)); err != nil {
		return Credential{}, err
	}
	if password == "" {
		return Credential{}, fmt.Errorf("empty password")
	}
	sc, err := c.derive(password)
	if err != nil {
		return Credential{}, err
	}
	c.StoredKey, c.ServerKey = sc.StoredKey, sc.ServerKey
	return c, c.Validate()
}

func (c Credential) derive(password string) (scram.StoredCredentials, error) {
	cl, err := c.Mechanism.hash().NewClient("", password, "")
	if err != nil {
		return scram.StoredCredentials{}, fmt.Errorf("password: %w", err)
	}
	return cl.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(c.Salt), Iters: c.Iterations})
}

// Validate checks a credential is complete and strong enough.
func (c Credential) Validate() error {
	if _, err := ParseMechanism(string(c.Mechanism)); err != nil {
		return err
	}
	if c.Iterations < MinIterations || c.Iterations > 1<<24 {
		return fmt.Errorf("%s credential: %d iterations: want %d to %d", c.Mechanism, c.Iterations, MinIterations, 1<<24)
	}
	if len(c.Salt) < minSaltBytes || len(c.Salt) > 1024 {
		return fmt.Errorf("%s credential: a salt of %d bytes: want %d to 1024", c.Mechanism, len(c.Salt), minSaltBytes)
	}
	if n := c.Mechanism.size(); len(c.StoredKey) != n || len(c.ServerKey) != n {
		return fmt.Errorf("%s credential: keys of %d and %d bytes: want %d", c.Mechanism, len(c.StoredKey), len(c.ServerKey), n)
	}
	return nil
}

// Verify reports whether password is the one c was derived from. It pays
// the full key derivation: see Cache.
func (c Credential) Verify(password string) bool {
	sc, err := c.derive(password)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(sc.StoredKey, c.StoredKey) == 1
}

func (c Credential) stored() scram.StoredCredentials {
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(c.Salt), Iters: c.Iterations},
		StoredKey:  c.StoredKey,
		ServerKey:  c.ServerKey,
	}
}

// Lookup finds a user's credential for a mechanism.
type Lookup func(user string, m Mechanism) (Credential, bool)

// SCRAMServer is the server side of one SCRAM exchange (Kafka's
// SaslAuthenticate rounds).
type SCRAMServer struct {
	conv *scram.ServerConversation
}

// NewSCRAMServer starts a server conversation for mechanism m.
func NewSCRAMServer(m Mechanism, lookup Lookup) (*SCRAMServer, error) {
	if _, err := ParseMechanism(string(m)); err != nil {
		return nil, err
	}
	srv, err := m.hash().NewServer(func(user string) (scram.StoredCredentials, error) {
		c, ok := lookup(user, m)
		if !ok {
			return scram.StoredCredentials{}, fmt.Errorf("unknown user or no %s credential", m)
		}
		return c.stored(), nil
	})
	if err != nil {
		return nil, err
	}
	return &SCRAMServer{conv: srv.NewConversation()}, nil
}

// Step answers one client message. Done is true after the last one;
// an error means authentication failed.
func (s *SCRAMServer) Step(msg []byte) (resp []byte, done bool, err error) {
	out, err := s.conv.Step(string(msg))
	return []byte(out), s.conv.Done(), err
}

// Principal is the authenticated user, once Done without error.
func (s *SCRAMServer) Principal() (Principal, bool) {
	if !s.conv.Done() || !s.conv.Valid() {
		return "", false
	}
	return User(s.conv.Username()), true
}
