package deploy_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecureComposeCluster runs deploy/docker-compose.yml with
// docker-compose.secure.yml: the certs service makes the certificates, the
// brokers come up with TLS, mutual TLS between them, encrypted gossip and
// ACLs. From the host, the admin certificate (the super user) creates the
// SCRAM user alice, a topic and alice's ACLs; alice produces and consumes
// over TLS with her password. A plaintext client, a TLS client without a
// user, a wrong password and a client from the network without
// certificates are refused and change nothing; the console over HTTPS
// wants a user.
//
// It takes longer than the container tier may add (about 110 s on the
// loaded development machine), so it runs only with SKEIN_DEPLOY_SECURE=1:
// make test-deploy-secure.
func TestSecureComposeCluster(t *testing.T) {
	if os.Getenv("SKEIN_DEPLOY_SECURE") != "1" {
		t.Skip("the secure compose cluster runs with SKEIN_DEPLOY_SECURE=1 (make test-deploy-secure)")
	}
	c := newComposeCluster(t, "s", "docker-compose.secure.yml")
	start := time.Now()
	must(t, c.compose(3*time.Minute, "up", "-d"), "docker-compose up")
	c.waitHealthy(2*time.Minute, services...)
	t.Logf("figure: secure docker-compose up to three healthy brokers: %.1f s", time.Since(start).Seconds())

	certs := filepath.Join(t.TempDir(), "certs")
	must(t, run(t, time.Minute, nil, "", "docker", "cp", c.container("broker1")+":/certs", certs), "docker cp /certs")
	ca := filepath.Join(certs, "ca.crt")
	admin := []string{"--tls-ca-file", ca, "--tls-cert-file", filepath.Join(certs, "admin.crt"), "--tls-key-file", filepath.Join(certs, "admin.key")}
	pwFile := filepath.Join(t.TempDir(), "alice.pw")
	if err := os.WriteFile(pwFile, []byte("alice-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	must(t, c.host("", "broker", append([]string{"user", "create", "alice", "--password-file", pwFile}, admin...)...), "user create (admin certificate)")
	must(t, c.host("", "broker", append([]string{"topic", "create", topic, "--partitions", "1", "--replication-factor", "3", "--min-insync", "2"}, admin...)...), "topic create")
	for _, op := range []string{"write", "read"} {
		must(t, c.host("", "broker", append([]string{"acl", "add", "--principal", "User:alice", "--operation", op, "--topic", topic}, admin...)...), "acl add")
	}

	alice := []string{"--tls-ca-file", ca, "--user", "alice", "--password", "alice-secret"}
	lines := produceLines("secure", 20)
	r := must(t, c.host(strings.Join(lines, "\n")+"\n", "produce", append([]string{"-t", topic, "--report"}, alice...)...), "produce (alice, TLS + SCRAM)")
	acked := acks(t, r.stdout, lines)
	if len(acked) != len(lines) {
		t.Fatalf("%d of %d records acknowledged", len(acked), len(lines))
	}

	// Refused, each changing nothing.
	refused := []struct {
		what string
		args []string
		want string
	}{
		{"plaintext", nil, "--tls-ca-file"},
		{"TLS without a user", []string{"--tls-ca-file", ca}, "User:ANONYMOUS is not authorized"},
		{"a wrong password", []string{"--tls-ca-file", ca, "--user", "alice", "--password", "wrong"}, "Unauthenticated"},
	}
	for _, x := range refused {
		r := c.host("intruder\n", "produce", append([]string{"-t", topic, "--idempotent=false", "--delivery-timeout", "5s"}, x.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, x.want) {
			t.Errorf("produce, %s: want a refusal naming %q, got %s", x.what, x.want, r)
		}
	}
	// From the compose network, without any certificate.
	if r := c.inNet("intruder\n", "produce", "-t", topic, "--idempotent=false", "--delivery-timeout", "5s"); r.code == 0 {
		t.Errorf("plaintext produce from the network succeeded: %s", r)
	}
	check(t, "consume (alice)", records(t, must(t, c.host("", "consume", append([]string{"-t", topic, "-o", "beginning", "-e", "--json"}, alice...)...), "consume (alice)").stdout), acked)

	// The console over HTTPS: no user, 401; alice sees her topic.
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	url := fmt.Sprintf("https://localhost:%d/ui/api/overview", c.httpPorts[0])
	for _, user := range []string{"", "alice"} {
		req, _ := http.NewRequest("GET", url, nil)
		if user != "" {
			req.SetBasicAuth(user, "alice-secret")
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("console as %q: %v", user, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if user == "" && resp.StatusCode != http.StatusUnauthorized || user != "" && (resp.StatusCode != 200 || !strings.Contains(string(body), `"`+topic+`"`)) {
			t.Errorf("console as %q: %d %s", user, resp.StatusCode, body)
		}
	}
	t.Logf("figure: secure compose test up to teardown: %.1f s", time.Since(start).Seconds())
}
