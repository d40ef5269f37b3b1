package auth

import (
	"testing"
	"time"
)

func TestCredentialVerify(t *testing.T) {
	for _, m := range Mechanisms {
		c, err := NewCredential(m, "s3cret", MinIterations)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Verify("s3cret") || c.Verify("s3cret ") || c.Verify("") {
			t.Fatalf("%s: verify wrong", m)
		}
		c2, _ := NewCredential(m, "s3cret", MinIterations)
		if string(c2.Salt) == string(c.Salt) || string(c2.StoredKey) == string(c.StoredKey) {
			t.Fatalf("%s: two credentials share a salt", m)
		}
	}
	if _, err := NewCredential(SCRAMSHA256, "x", 1000); err == nil {
		t.Fatal("1000 iterations accepted")
	}
	if _, err := NewCredential(SCRAMSHA256, "", 0); err == nil {
		t.Fatal("empty password accepted")
	}
}

func TestCacheNeverOutlivesACredentialChange(t *testing.T) {
	c := NewCache(time.Minute, 2)
	old, _ := NewCredential(SCRAMSHA256, "one", MinIterations)
	now := time.Now()
	if !c.Verify("alice", "one", old, now) || c.Verify("alice", "two", old, now) {
		t.Fatal("verify")
	}
	changed, _ := NewCredential(SCRAMSHA256, "two", MinIterations)
	if c.Verify("alice", "one", changed, now) {
		t.Fatal("old password accepted from the cache after a change")
	}
	if !c.Verify("alice", "two", changed, now) {
		t.Fatal("new password refused")
	}
	if !c.Verify("alice", "two", changed, now.Add(2*time.Minute)) {
		t.Fatal("expired entry: should verify again and succeed")
	}
}

// TestSCRAMConversation runs a whole exchange against xdg-go's client, and
// a wrong password, for both mechanisms.
func TestSCRAMConversation(t *testing.T) {
	for _, m := range Mechanisms {
		cred, _ := NewCredential(m, "pw", MinIterations)
		lookup := func(u string, mm Mechanism) (Credential, bool) { return cred, u == "alice" && mm == m }
		for _, tc := range []struct {
			user, pass string
			ok         bool
		}{{"alice", "pw", true}, {"alice", "bad", false}, {"mallory", "pw", false}} {
			srv, err := NewSCRAMServer(m, lookup)
			if err != nil {
				t.Fatal(err)
			}
			cl, _ := m.hash().NewClient(tc.user, tc.pass, "")
			conv := cl.NewConversation()
			msg, _ := conv.Step("")
			var serr error
			for i := 0; i < 3 && !conv.Done(); i++ {
				var resp []byte
				var done bool
				resp, done, serr = srv.Step([]byte(msg))
				if serr != nil || done && i == 0 {
					break
				}
				msg, err = conv.Step(string(resp))
				if err != nil {
					t.Fatalf("%s %v: client: %v", m, tc, err)
				}
				if done {
					break
				}
			}
			p, ok := srv.Principal()
			if ok != tc.ok || serr == nil != tc.ok {
				t.Fatalf("%s %v: ok %v err %v", m, tc, ok, serr)
			}
			if ok && p != "User:alice" {
				t.Fatalf("principal %s", p)
			}
		}
	}
}
