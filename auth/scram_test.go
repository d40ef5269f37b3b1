package auth

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sasl/scram"
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

// TestSCRAMConversation runs whole exchanges against franz-go's SCRAM
// client (what Kafka clients send), for both mechanisms: the right
// password, a wrong one, an unknown user; and the nonce a librdkafka
// version sends (the client nonce twice) is accepted while a foreign one
// is not.
func TestSCRAMConversation(t *testing.T) {
	for _, m := range Mechanisms {
		cred, _ := NewCredential(m, "pw", MinIterations)
		lookup := func(u string, mm Mechanism) (Credential, bool) { return cred, u == "alice" && mm == m }
		for _, tc := range []struct {
			user, pass string
			ok         bool
		}{{"alice", "pw", true}, {"alice", "bad", false}, {"mallory", "pw", false}} {
			p, err := exchange(t, m, lookup, tc.user, tc.pass)
			if (err == nil) != tc.ok {
				t.Fatalf("%s %v: err %v", m, tc, err)
			}
			if tc.ok && p != "User:alice" {
				t.Fatalf("principal %s", p)
			}
		}
	}
}

func exchange(t *testing.T, m Mechanism, lookup Lookup, user, pass string) (Principal, error) {
	a := scram.Auth{User: user, Pass: pass}
	mech := a.AsSha256Mechanism()
	if m == SCRAMSHA512 {
		mech = a.AsSha512Mechanism()
	}
	sess, msg, err := mech.Authenticate(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := NewSCRAMServer(m, lookup)
	for {
		resp, done, err := srv.Step(msg)
		if err != nil {
			return "", err
		}
		cdone, next, cerr := sess.Challenge(resp)
		if cerr != nil {
			t.Fatalf("client refused the server: %v", cerr)
		}
		if done {
			if !cdone {
				t.Fatal("server done, client not")
			}
			p, ok := srv.Principal()
			if !ok {
				t.Fatal("no principal after success")
			}
			return p, nil
		}
		msg = next
	}
}

func TestSCRAMNonce(t *testing.T) {
	cred, _ := NewCredential(SCRAMSHA256, "pw", MinIterations)
	lookup := func(string, Mechanism) (Credential, bool) { return cred, true }
	srv, _ := NewSCRAMServer(SCRAMSHA256, lookup)
	if _, _, err := srv.Step([]byte("n,,n=alice,r=abc")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := srv.Step([]byte("c=biws,r=abcOTHER,p=AAAA")); err == nil {
		t.Fatal("a nonce this exchange did not send was accepted")
	}
	srv, _ = NewSCRAMServer(SCRAMSHA256, lookup)
	if _, _, err := srv.Step([]byte("p=tls-unique,,n=alice,r=abc")); err == nil {
		t.Fatal("channel binding accepted")
	}
}
