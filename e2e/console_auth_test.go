package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/console"
	"github.com/skeinlog/skein/internal/proctest"
)

// consoleGet fetches path from a console with basic authentication as user
// (none when user is ""), over TLS when cfg is not nil.
func consoleGet(t *testing.T, httpAddr, path, user, pw string, cfg *tls.Config) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	scheme, hc := "http", &http.Client{}
	if cfg != nil {
		scheme, hc = "https", &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		defer hc.CloseIdleConnections()
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", scheme+"://"+httpAddr+path, nil)
	if user != "" {
		req.SetBasicAuth(user, pw)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s as %q: %v", path, user, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// consoleTopics is the overview's topic names, and whether the cluster is
// hidden from the caller.
func consoleTopics(t *testing.T, body string) (names []string, hidden bool) {
	t.Helper()
	var ov console.Overview
	if err := json.Unmarshal([]byte(body), &ov); err != nil {
		t.Fatalf("overview %q: %v", body, err)
	}
	for _, tp := range ov.Topics {
		names = append(names, tp.Name)
	}
	return names, ov.ClusterHidden
}

// The console of a broker with ACLs on (no TLS): nobody gets in without a
// user; a password sent in plain text is refused unless the broker was
// told --http-insecure-plaintext-passwords (not even from loopback); a
// wrong password is 401 and audited; alice sees topic a (she may read it)
// but not topic hidden, and not the cluster; admin, a super user, sees
// everything; the console refuses writes.
func TestConsoleNeedsAUserWithACLs(t *testing.T) {
	b := proctest.StartBroker(t, t.TempDir(), "")
	setUpUsers(t, b.Addr)
	proctest.MustCLI(t, "broker", "", "topic", "create", "hidden", "-b", b.Addr)
	b.Term()
	b.Restart("--authorizer", "acl", "--super-users", "User:admin")

	const ov = "/ui/api/overview"
	for _, path := range []string{"/ui/", "/ui/app.js", ov} {
		if code, _ := consoleGet(t, b.HTTPAddr, path, "", "", nil); code != http.StatusUnauthorized {
			t.Fatalf("anonymous GET %s: %d, want 401", path, code)
		}
	}
	if code, body := consoleGet(t, b.HTTPAddr, ov, "alice", "alice-pw", nil); code != http.StatusUnauthorized || !strings.Contains(body, "only over HTTPS") {
		t.Fatalf("a password over plain HTTP (loopback): %d %q, want 401 naming HTTPS", code, body)
	}

	b.Term()
	b.Restart("--authorizer", "acl", "--super-users", "User:admin", "--http-insecure-plaintext-passwords")
	if code, _ := consoleGet(t, b.HTTPAddr, ov, "", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("anonymous with the insecure flag: %d, want 401", code)
	}
	if code, _ := consoleGet(t, b.HTTPAddr, ov, "alice", "wrong", nil); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d, want 401", code)
	}
	if code, _ := consoleGet(t, b.HTTPAddr, ov, "mallory", "alice-pw", nil); code != http.StatusUnauthorized {
		t.Fatalf("unknown user: %d, want 401", code)
	}
	waitUntil(t, 10*time.Second, "an audit line for the wrong console password", func() bool {
		return auditLine(b.Logs(), "User:alice", "authenticate", "cluster", "failed: authentication failed")
	})
	code, body := consoleGet(t, b.HTTPAddr, ov, "alice", "alice-pw", nil)
	if names, hidden := consoleTopics(t, body); code != 200 || strings.Join(names, ",") != "a" || !hidden || strings.Contains(body, b.Addr) {
		t.Fatalf("alice's console: %d topics %v cluster hidden %v\n%s", code, names, hidden, body)
	}
	code, body = consoleGet(t, b.HTTPAddr, ov, "admin", "admin-pw", nil)
	if names, hidden := consoleTopics(t, body); code != 200 || strings.Join(names, ",") != "a,hidden" || hidden {
		t.Fatalf("admin's console: %d topics %v cluster hidden %v", code, names, hidden)
	}
	if code, _ := consoleGet(t, b.HTTPAddr, "/ui/", "bob", "bob-pw", nil); code != 200 {
		t.Fatalf("bob's page: %d", code)
	}
	req, _ := http.NewRequest("DELETE", "http://"+b.HTTPAddr+ov, nil)
	req.SetBasicAuth("admin", "admin-pw")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE as admin: %v %v, want 405", resp, err)
	}
	t.Run("browser", func(t *testing.T) {
		// In a real browser: alice's page (the credentials in the address,
		// as a browser sends them after its sign-in prompt) polls the
		// overview with them and renders topic a only, and who she is.
		dom := chromium(t, "http://alice:alice-pw@"+b.HTTPAddr+"/ui/", 2*time.Second, "--dump-dom")
		if !strings.Contains(dom, `data-topic="a"`) || strings.Contains(dom, `data-topic="hidden"`) || !strings.Contains(dom, "User:alice") {
			t.Fatalf("alice's console in the browser:\n%s", dom)
		}
	})
	if logs := b.Logs(); strings.Contains(logs, "alice-pw") || strings.Contains(logs, "admin-pw") {
		t.Fatal("a password in the broker's log")
	}
}

// consoleOverTLS checks the console of a TLS cluster with ACLs on (from
// TestMTLSPrincipalsWithACLs: alice may read a, carol has a password and
// no rule, admin is a super user): without a certificate or a password it
// is 401; a client certificate is a principal, as a password over HTTPS
// is, and each sees what it may describe; plain HTTP gets nothing.
func consoleOverTLS(t *testing.T, p pki, httpAddr string) {
	const ov = "/ui/api/overview"
	if code, _ := consoleGet(t, httpAddr, ov, "", "", p.tlsConfig(t, "")); code != http.StatusUnauthorized {
		t.Fatalf("HTTPS without a certificate or a password: %d, want 401", code)
	}
	if code, _ := consoleGet(t, httpAddr, ov, "carol", "wrong", p.tlsConfig(t, "")); code != http.StatusUnauthorized {
		t.Fatalf("carol's wrong password over HTTPS: %d, want 401", code)
	}
	code, body := consoleGet(t, httpAddr, ov, "", "", p.tlsConfig(t, "alice"))
	if names, hidden := consoleTopics(t, body); code != 200 || strings.Join(names, ",") != "a" || !hidden {
		t.Fatalf("alice's certificate: %d topics %v cluster hidden %v", code, names, hidden)
	}
	code, body = consoleGet(t, httpAddr, ov, "carol", "carol-pw", p.tlsConfig(t, ""))
	if names, hidden := consoleTopics(t, body); code != 200 || len(names) != 0 || !hidden {
		t.Fatalf("carol's password: %d topics %v cluster hidden %v", code, names, hidden)
	}
	code, body = consoleGet(t, httpAddr, ov, "", "", p.tlsConfig(t, "admin"))
	if names, hidden := consoleTopics(t, body); code != 200 || strings.Join(names, ",") != "a,hidden" || hidden {
		t.Fatalf("admin's certificate: %d topics %v cluster hidden %v", code, names, hidden)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	if resp, err := hc.Get("http://" + httpAddr + ov); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP to the HTTPS port answered 200")
		}
	}
}
