package auth

import (
	"crypto/tls"
	"fmt"
	"strings"
)

// Principal names an authenticated caller, "Type:name" as in Kafka:
// "User:alice". The zero value is not a principal; Anonymous is the
// principal of a caller that presented no credentials.
type Principal string

// Anonymous is the principal of a caller without credentials.
const Anonymous Principal = "User:ANONYMOUS"

// User is the principal of a SCRAM user or certificate subject name.
func User(name string) Principal { return Principal("User:" + name) }

// Name is the part after the type: "alice" for User:alice.
func (p Principal) Name() string {
	_, n, _ := strings.Cut(string(p), ":")
	return n
}

// ParsePrincipal checks s is "User:NAME" (or "User:*", every principal,
// in an ACL) and returns it.
func ParsePrincipal(s string) (Principal, error) {
	typ, name, ok := strings.Cut(s, ":")
	if !ok || typ != "User" {
		return "", fmt.Errorf("principal %q: want User:NAME (User:alice, or User:* for everyone)", s)
	}
	if err := checkName("principal name", name); err != nil {
		return "", err
	}
	return Principal(s), nil
}

// ParsePrincipals parses a comma-separated list, such as --super-users.
func ParsePrincipals(s string) ([]Principal, error) {
	var out []Principal
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := ParsePrincipal(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// FromTLS is the principal of a TLS connection's verified client
// certificate: User:<subject CN>. ok is false when the connection is not
// TLS, the client sent no certificate, it was not verified against the
// configured CA, or its CN is empty.
func FromTLS(cs *tls.ConnectionState) (Principal, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", false
	}
	cn := cs.VerifiedChains[0][0].Subject.CommonName
	if checkName("certificate CN", cn) != nil {
		return "", false
	}
	return User(cn), true
}

// checkName refuses empty names, control characters and names too long to
// be a user's.
func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > 255 {
		return fmt.Errorf("%s of %d bytes: at most 255", what, len(s))
	}
	for i, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s %q: control character at byte %d", what, s, i)
		}
	}
	return nil
}

// CheckUserName checks a SCRAM user name: what checkName checks, and no
// ',' or '=' (SCRAM escapes them, Kafka's tools refuse them) or ':' (the
// principal separator), and not ANONYMOUS.
func CheckUserName(name string) error {
	if err := checkName("user name", name); err != nil {
		return err
	}
	if i := strings.IndexAny(name, ",=:* "); i >= 0 {
		return fmt.Errorf("user name %q: %q at byte %d is not allowed (use letters, digits, '.', '_', '-', '@')", name, name[i], i)
	}
	if name == Anonymous.Name() {
		return fmt.Errorf("user name %q is reserved for callers without credentials", name)
	}
	return nil
}
