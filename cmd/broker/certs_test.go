package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// `broker certs create` writes the files and says which flag takes which;
// a second run without --force changes nothing and says why.
func TestCertsCreateCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"certs", "create", "--dir", dir, "--hosts", "127.0.0.1,localhost", "--clients", "alice"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"--tls-cert-file " + filepath.Join(dir, "broker.crt"), "--tls-ca-file " + filepath.Join(dir, "ca.crt"),
		"--tls-cert-file " + filepath.Join(dir, "alice.crt"), "--gossip-key-file"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"certs", "create", "--dir", dir, "--hosts", "localhost"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "--force") {
		t.Fatalf("second run: exit %d, %s", code, errb.String())
	}
	if code := run(context.Background(), []string{"certs", "delete"}, &out, &errb); code != 2 {
		t.Fatalf("unknown certs subcommand: exit %d", code)
	}
}
