package client

import (
	"crypto/tls"
	"strings"
	"testing"
)

// The client sends a password in plaintext only to this host.
func TestPasswordOnlyOverTLSOrLoopback(t *testing.T) {
	c := defaultClientConfig()
	c.user, c.password = "alice", "pw"
	for _, addr := range []string{"127.0.0.1:9420", "localhost:9420", "[::1]:9420", "dns:///localhost:9420"} {
		if _, err := c.credsFor(addr); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
	_, err := c.credsFor("10.0.0.7:9420")
	if err == nil || !strings.Contains(err.Error(), "without TLS") {
		t.Fatalf("plaintext to 10.0.0.7: %v", err)
	}
	c.tls = &tls.Config{}
	if _, err := c.credsFor("10.0.0.7:9420"); err != nil {
		t.Fatalf("over TLS: %v", err)
	}
	c.user = ""
	if opts, err := c.credsFor("10.0.0.7:9420"); err != nil || opts != nil {
		t.Fatalf("no user: %v %v", opts, err)
	}
}
