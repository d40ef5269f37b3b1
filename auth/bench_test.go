package auth

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkDecide is one authorization against 1000 ACLs (the match is
// the last rule).
func BenchmarkDecide(b *testing.B) {
	var acls []ACL
	for i := range 1000 {
		acls = append(acls, ACL{Principal: User(fmt.Sprintf("u%d", i)), Operation: Write, Type: Topic, Name: fmt.Sprintf("t%d", i)})
	}
	p, r := User("u999"), TopicResource("t999")
	for b.Loop() {
		if !Decide(acls, nil, p, Write, r).Allowed {
			b.Fatal("denied")
		}
	}
}

// BenchmarkPasswordCached is a request's password check once verified
// (the cache), against BenchmarkPasswordVerify, the key derivation each
// request would pay without it.
func BenchmarkPasswordCached(b *testing.B) {
	cred, _ := NewCredential(SCRAMSHA512, "pw", DefaultIterations)
	c := NewCache(time.Minute, 100)
	now := time.Now()
	c.Verify("alice", "pw", cred, now)
	for b.Loop() {
		if !c.Verify("alice", "pw", cred, now) {
			b.Fatal("refused")
		}
	}
}

func BenchmarkPasswordVerify(b *testing.B) {
	cred, _ := NewCredential(SCRAMSHA512, "pw", DefaultIterations)
	for b.Loop() {
		if !cred.Verify("pw") {
			b.Fatal("refused")
		}
	}
}

// BenchmarkAuthorizer is BenchmarkDecide through the Authorizer, which
// looks only at the principal's own and User:* rules.
func BenchmarkAuthorizer(b *testing.B) {
	var acls []ACL
	for i := range 1000 {
		acls = append(acls, ACL{Principal: User(fmt.Sprintf("u%d", i)), Operation: Write, Type: Topic, Name: fmt.Sprintf("t%d", i)})
	}
	a := NewAuthorizer(Config{Enabled: true, ACLs: func() []ACL { return acls }})
	p, r := User("u999"), TopicResource("t999")
	for b.Loop() {
		if !a.Decide(p, Write, r).Allowed {
			b.Fatal("denied")
		}
	}
}
