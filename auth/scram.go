package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"fmt"
	"hash"
	"strings"
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

func (m Mechanism) hash() func() hash.Hash {
	if m == SCRAMSHA512 {
		return sha512.New
	}
	return sha256.New
}

func (m Mechanism) size() int {
	if m == SCRAMSHA512 {
		return sha512.Size
	}
	return sha256.Size
}

// Credential is a user's SCRAM secret as the broker stores it (RFC 5802):
// the salt, the iteration count, StoredKey = H(HMAC(SaltedPassword,
// "Client Key")) and ServerKey = HMAC(SaltedPassword, "Server Key"), with
// SaltedPassword = PBKDF2(password, salt, iterations). The password cannot
// be recovered from it. The password is used as its UTF-8 bytes, without
// SASLprep, as Kafka does.
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
	if _, err := ParseMechanism(string(m)); err != nil {
		return Credential{}, err
	}
	if password == "" {
		return Credential{}, fmt.Errorf("empty password")
	}
	c := Credential{Mechanism: m, Salt: make([]byte, saltBytes), Iterations: iterations}
	rand.Read(c.Salt)
	if iterations < MinIterations {
		return Credential{}, fmt.Errorf("%d iterations: at least %d", iterations, MinIterations)
	}
	var err error
	if c.StoredKey, c.ServerKey, err = c.derive(password); err != nil {
		return Credential{}, err
	}
	return c, c.Validate()
}

// derive computes StoredKey and ServerKey for password with c's salt and
// iterations.
func (c Credential) derive(password string) (storedKey, serverKey []byte, err error) {
	h := c.Mechanism.hash()
	salted, err := pbkdf2.Key(h, password, c.Salt, c.Iterations, c.Mechanism.size())
	if err != nil {
		return nil, nil, err
	}
	clientKey := hmacOf(h, salted, "Client Key")
	sum := h()
	sum.Write(clientKey)
	return sum.Sum(nil), hmacOf(h, salted, "Server Key"), nil
}

func hmacOf(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
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
	stored, _, err := c.derive(password)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(stored, c.StoredKey) == 1
}
