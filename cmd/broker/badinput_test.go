package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// Flags that contradict each other or make no sense: the broker refuses to
// start, exits non-zero and says which flag is wrong. Nothing serves.
func TestBadInputServeFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--node-id", "-1"}, "--node-id -1"},
		{[]string{"--node-id", "4294967296"}, "--node-id"},
		{[]string{"--bootstrap-expect", "-1"}, "--bootstrap-expect -1"},
		{[]string{"--controller-voters", "4"}, "--controller-voters 4"},
		{[]string{"--gossip-key", "not base64!"}, "--gossip-key: not base64"},
		{[]string{"--gossip-key", "c2hvcnQ="}, "the key is 5 bytes"},
		{[]string{"--gossip-key-file", "/nonexistent/key"}, "--gossip-key-file: open /nonexistent/key"},
		{[]string{"--gossip-key", "c2hvcnQ=", "--gossip-key-file", "/k"}, "both given"},
		{[]string{"--replica-lag-time", "soon"}, "--replica-lag-time"},
		{[]string{"--rack", strings.Repeat("r", 100)}, "--rack is 100 bytes"},
		{[]string{"--advertise-addr", strings.Repeat("a", 600) + ":9420"}, "512-byte limit"},
		{[]string{"--max-request-bytes", "10"}, "max request bytes 10"},
		{[]string{"--producer-id-expiry", "0s"}, "--producer-id-expiry"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--tls-client-auth", "yes"}, "want none, request or require"},
		{[]string{"--tls-client-auth", "require"}, "--tls-client-auth needs TLS"},
		{[]string{"--tls-cert-file", "/c", "--tls-key-file", "/k", "--tls-ca-file", "/ca"}, "TLS is on but gossip is not encrypted"},
		{[]string{"--tls-cert-file", "/c", "--gossip-key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}, "--tls-cert-file and --tls-key-file go together"},
		{[]string{"--tls-cert-file", "/nonexistent/c", "--tls-key-file", "/k", "--tls-ca-file", "/ca", "--gossip-key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}, "--tls-cert-file: stat /nonexistent/c"},
	} {
		t.Run(strings.Join(tc.args, " ")[:min(40, len(strings.Join(tc.args, " ")))], func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"--data-dir", dir, "--addr", "127.0.0.1:0", "--http-addr", "", "--gossip-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0"}, tc.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			code := run(ctx, args, &out, &errb)
			if code == 0 || ctx.Err() != nil {
				t.Fatalf("exit %d (ctx %v): %s", code, ctx.Err(), errb.String())
			}
			if !strings.Contains(errb.String(), tc.says) {
				t.Fatalf("stderr does not say %q:\n%s", tc.says, errb.String())
			}
			// A flag error is found before the data directory is touched.
			if ents, _ := os.ReadDir(dir); code == 2 && len(ents) > 0 {
				t.Fatalf("a flag error wrote to the data directory: %v", ents)
			}
		})
	}
}
