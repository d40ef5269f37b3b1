package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Lookup finds a user's credential for a mechanism.
type Lookup func(user string, m Mechanism) (Credential, bool)

// errSCRAM is every failed exchange; the message says what was wrong (for
// the broker's log, never for the client).
var errSCRAM = errors.New("scram")

// SCRAMServer is the server side of one SCRAM exchange (RFC 5802; Kafka's
// SaslAuthenticate rounds) over stored keys: the client-first message
// gets the salt and iterations, the client-final message's proof is
// checked against StoredKey, and the answer proves the server knows
// ServerKey. No channel binding.
type SCRAMServer struct {
	mech   Mechanism
	lookup Lookup

	step        int
	user        string
	cred        Credential
	clientFirst string // client-first-message-bare
	serverFirst string
	nonce       string // client nonce + server nonce
	ok          bool
}

// NewSCRAMServer starts a server conversation for mechanism m.
func NewSCRAMServer(m Mechanism, lookup Lookup) (*SCRAMServer, error) {
	if _, err := ParseMechanism(string(m)); err != nil {
		return nil, err
	}
	return &SCRAMServer{mech: m, lookup: lookup}, nil
}

// Step answers one client message. done is true after the last one; an
// error means authentication failed.
func (s *SCRAMServer) Step(msg []byte) (resp []byte, done bool, err error) {
	s.step++
	switch s.step {
	case 1:
		out, err := s.first(string(msg))
		return []byte(out), false, err
	case 2:
		out, err := s.final(string(msg))
		return []byte(out), true, err
	}
	return nil, true, fmt.Errorf("%w: a message after the exchange finished", errSCRAM)
}

// first handles "n,,n=USER,r=CNONCE[,...]".
func (s *SCRAMServer) first(msg string) (string, error) {
	gs2, bare, ok := cutGS2(msg)
	if !ok || gs2 != "n,," && gs2 != "y,," {
		return "", fmt.Errorf("%w: client-first message: unsupported GS2 header (channel binding or an authzid)", errSCRAM)
	}
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") || len(attrs[1]) < 3 {
		return "", fmt.Errorf("%w: client-first message malformed", errSCRAM)
	}
	user, err := decodeSASLName(attrs[0][2:])
	if err != nil {
		return "", err
	}
	cred, found := s.lookup(user, s.mech)
	if !found {
		return "", fmt.Errorf("%w: unknown user %q or no %s credential", errSCRAM, user, s.mech)
	}
	snonce := make([]byte, 24)
	rand.Read(snonce)
	s.user, s.cred, s.clientFirst = user, cred, bare
	s.nonce = attrs[1][2:] + base64.RawURLEncoding.EncodeToString(snonce)
	s.serverFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(cred.Salt) + ",i=" + strconv.Itoa(cred.Iterations)
	return s.serverFirst, nil
}

// final handles "c=BIND,r=NONCE[,...],p=PROOF".
func (s *SCRAMServer) final(msg string) (string, error) {
	withoutProof, proofB64, ok := strings.Cut(msg, ",p=")
	attrs := strings.Split(withoutProof, ",")
	if !ok || len(attrs) < 2 || !strings.HasPrefix(attrs[0], "c=") || !strings.HasPrefix(attrs[1], "r=") {
		return "", fmt.Errorf("%w: client-final message malformed", errSCRAM)
	}
	if attrs[0] != "c=biws" && attrs[0] != "c=eSws" {
		return "", fmt.Errorf("%w: channel binding is not supported", errSCRAM)
	}
	// The nonce must be ours. Kafka accepts one that ends with it (some
	// librdkafka versions send the client nonce twice): the proof below
	// covers the whole message either way.
	if !strings.HasSuffix(attrs[1][2:], s.nonce) {
		return "", fmt.Errorf("%w: the nonce is not the one this exchange sent", errSCRAM)
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil || len(proof) != s.mech.size() {
		return "", fmt.Errorf("%w: client proof malformed", errSCRAM)
	}
	h := s.mech.hash()
	authMsg := s.clientFirst + "," + s.serverFirst + "," + withoutProof
	sig := hmacOf(h, s.cred.StoredKey, authMsg)
	clientKey := make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ sig[i]
	}
	sum := h()
	sum.Write(clientKey)
	if subtle.ConstantTimeCompare(sum.Sum(nil), s.cred.StoredKey) != 1 {
		return "e=invalid-proof", fmt.Errorf("%w: wrong password for user %q", errSCRAM, s.user)
	}
	s.ok = true
	return "v=" + base64.StdEncoding.EncodeToString(hmacOf(h, s.cred.ServerKey, authMsg)), nil
}

// cutGS2 splits "GS2HEADER BARE" where the header is "flag,[authzid],".
func cutGS2(msg string) (gs2, bare string, ok bool) {
	i := strings.Index(msg, ",")
	if i < 0 {
		return "", "", false
	}
	j := strings.Index(msg[i+1:], ",")
	if j < 0 {
		return "", "", false
	}
	return msg[:i+j+2], msg[i+j+2:], true
}

// decodeSASLName undoes SCRAM's escaping of ',' and '=' in a user name.
func decodeSASLName(s string) (string, error) {
	out := strings.NewReplacer("=2C", ",", "=3D", "=").Replace(s)
	if strings.Count(s, "=") != strings.Count(s, "=2C")+strings.Count(s, "=3D") {
		return "", fmt.Errorf("%w: user name %q badly escaped", errSCRAM, s)
	}
	return out, nil
}

// Principal is the authenticated user, once the exchange succeeded.
func (s *SCRAMServer) Principal() (Principal, bool) {
	if !s.ok {
		return "", false
	}
	return User(s.user), true
}
