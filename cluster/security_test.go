package cluster

import (
	"errors"
	"testing"

	"github.com/skeinlog/skein/auth"
)

func TestApplySecurityCommands(t *testing.T) {
	s := &Snapshot{Topics: map[string]Topic{}}
	c256, _ := auth.NewCredential(auth.SCRAMSHA256, "pw", auth.MinIterations)
	c512, _ := auth.NewCredential(auth.SCRAMSHA512, "pw", auth.MinIterations)
	mustApply := func(c *command) {
		t.Helper()
		if res := apply(s, c); res.err != nil {
			t.Fatalf("%s: %v", c.Op, res.err)
		}
	}
	mustApply(&command{Op: opPutUser, Name: "alice", securityCommand: securityCommand{Credentials: []auth.Credential{c256}}})
	before := s.Clone()
	mustApply(&command{Op: opPutUser, Name: "alice", securityCommand: securityCommand{Credentials: []auth.Credential{c512}}})
	if _, ok := s.Credential("alice", auth.SCRAMSHA256); !ok {
		t.Fatal("adding a mechanism dropped the other")
	}
	if _, ok := before.Credential("alice", auth.SCRAMSHA512); ok {
		t.Fatal("apply wrote into a map an older snapshot shares")
	}
	weak := c256
	weak.Iterations = 1000
	if res := apply(s, &command{Op: opPutUser, Name: "bob", securityCommand: securityCommand{Credentials: []auth.Credential{weak}}}); res.err == nil {
		t.Fatal("1000 iterations accepted")
	}
	acl := auth.ACL{Principal: "User:alice", Operation: auth.Read, Type: auth.Topic, Name: "a"}
	mustApply(&command{Op: opAddACL, securityCommand: securityCommand{ACL: &acl}})
	mustApply(&command{Op: opAddACL, securityCommand: securityCommand{ACL: &acl}})
	if len(s.ACLs) != 1 {
		t.Fatalf("acls %v: adding twice must keep one", s.ACLs)
	}
	mustApply(&command{Op: opRemoveACL, securityCommand: securityCommand{ACL: &acl}})
	if res := apply(s, &command{Op: opRemoveACL, securityCommand: securityCommand{ACL: &acl}}); !errors.Is(res.err, ErrUnknownACL) {
		t.Fatalf("remove twice: %v", res.err)
	}
	mustApply(&command{Op: opDeleteUser, Name: "alice"})
	if res := apply(s, &command{Op: opDeleteUser, Name: "alice"}); !errors.Is(res.err, ErrUnknownUser) {
		t.Fatalf("delete twice: %v", res.err)
	}
}
