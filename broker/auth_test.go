package broker

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/skeinlog/skein/auth"
)

func TestParseBasic(t *testing.T) {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		h, user, pass string
		ok            bool
	}{
		{"Basic " + enc("alice:pw"), "alice", "pw", true},
		{"basic " + enc("alice:p:w"), "alice", "p:w", true},
		{"Bearer " + enc("alice:pw"), "", "", false},
		{"Basic !!!", "", "", false},
		{"Basic " + enc("alice"), "", "", false},
		{"Basic " + enc(":pw"), "", "", false},
	} {
		u, p, err := parseBasic(tc.h)
		if (err == nil) != tc.ok || u != tc.user || p != tc.pass {
			t.Errorf("%q: %q %q %v", tc.h, u, p, err)
		}
		if err != nil && !errors.Is(err, errAuthFailed) {
			t.Errorf("%q: %v is not an authentication failure", tc.h, err)
		}
	}
}

// A password over a plaintext connection from another host is refused
// before it is looked at; without credentials the caller is ANONYMOUS.
func TestPasswordNeedsTLSOrLoopback(t *testing.T) {
	b := &Broker{}
	b.authz = auth.NewAuthorizer(auth.Config{})
	remote := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 5000}})
	ctx := metadata.NewIncomingContext(remote, metadata.Pairs("authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:pw"))))
	if _, err := b.principalOf(ctx); !errors.Is(err, errAuthFailed) {
		t.Fatalf("password over plaintext from 10.1.2.3: %v", err)
	}
	if p, err := b.principalOf(remote); err != nil || p != auth.Anonymous {
		t.Fatalf("no credentials: %v %v", p, err)
	}
	if !isLoopback(&net.TCPAddr{IP: net.ParseIP("::1")}) || isLoopback(&net.TCPAddr{IP: net.ParseIP("10.0.0.1")}) {
		t.Fatal("isLoopback")
	}
}
