package auth

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	alice, bob, admin := User("alice"), User("bob"), User("admin")
	acls := []ACL{
		{Principal: alice, Operation: Write, Type: Topic, Name: "a"},
		{Principal: alice, Operation: Read, Type: Topic, Name: "a"},
		{Principal: bob, Operation: Read, Type: Topic, Name: "a"},
		{Principal: bob, Operation: All, Type: Topic, Name: "logs.", Prefix: true},
		{Principal: bob, Operation: Write, Type: Topic, Name: "logs.secret", Deny: true},
		{Principal: "User:*", Operation: Describe, Type: Topic, Name: "public"},
		{Principal: alice, Operation: Read, Type: Group, Name: "g1"},
		{Principal: alice, Operation: Create, Type: Cluster},
		{Principal: bob, Operation: All, Type: Topic, Name: "*"},
		{Principal: bob, Operation: All, Type: Topic, Name: "b", Deny: true},
	}
	supers := []Principal{admin}
	cases := []struct {
		name string
		p    Principal
		op   Operation
		r    Resource
		want bool
	}{
		{"allow write", alice, Write, TopicResource("a"), true},
		{"allow read", alice, Read, TopicResource("a"), true},
		{"read implies describe", alice, Describe, TopicResource("a"), true},
		{"no acl: deny by default", alice, Delete, TopicResource("a"), false},
		{"other topic", alice, Read, TopicResource("ab"), false},
		{"literal is not a prefix", alice, Write, TopicResource("a2"), false},
		{"prefix matches", bob, Write, TopicResource("logs.app"), true},
		{"deny wins over prefix allow", bob, Write, TopicResource("logs.secret"), false},
		{"deny of write leaves read", bob, Read, TopicResource("logs.secret"), true},
		{"star wildcard topic", bob, Write, TopicResource("zzz"), true},
		{"deny all wins over star", bob, Read, TopicResource("b"), false},
		{"deny all denies describe", bob, Describe, TopicResource("b"), false},
		{"super user", admin, Delete, TopicResource("anything"), true},
		{"super user cluster action", admin, ClusterAction, ClusterResource(), true},
		{"all does not grant cluster action", bob, ClusterAction, ClusterResource(), false},
		{"anonymous denied", Anonymous, Read, TopicResource("a"), false},
		{"anonymous by User:*", Anonymous, Describe, TopicResource("public"), true},
		{"anonymous may not read public", Anonymous, Read, TopicResource("public"), false},
		{"group read", alice, Read, GroupResource("g1"), true},
		{"other group", alice, Read, GroupResource("g2"), false},
		{"topic acl is not a group acl", bob, Read, GroupResource("a"), false},
		{"cluster create", alice, Create, ClusterResource(), true},
		{"cluster alter", alice, Alter, ClusterResource(), false},
	}
	for _, c := range cases {
		d := Decide(acls, supers, c.p, c.op, c.r)
		if d.Allowed != c.want {
			t.Errorf("%s: %s %s %s: allowed %v (%s), want %v", c.name, c.p, c.op, c.r, d.Allowed, d.Reason, c.want)
		}
	}
}

func TestAuthorizerOffAllowsAndDenialIsAudited(t *testing.T) {
	var nilAuth *Authorizer
	if err := nilAuth.Authorize(Anonymous, Delete, TopicResource("a")); err != nil {
		t.Fatalf("nil authorizer: %v", err)
	}
	if err := NewAuthorizer(Config{}).Authorize(Anonymous, Delete, TopicResource("a")); err != nil {
		t.Fatalf("acls off: %v", err)
	}
	var buf bytes.Buffer
	a := NewAuthorizer(Config{Enabled: true, Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	err := a.Authorize(User("bob"), Write, TopicResource("a"))
	if err == nil || err.Error() != `User:bob is not authorized to write topic "a"` {
		t.Fatalf("err = %v", err)
	}
	line := buf.String()
	for _, want := range []string{`"msg":"audit"`, `"principal":"User:bob"`, `"operation":"write"`, `"resource":"topic \"a\""`, `"result":"denied"`} {
		if !strings.Contains(line, want) {
			t.Errorf("audit line %s lacks %s", line, want)
		}
	}
}

func TestACLValidate(t *testing.T) {
	bad := []ACL{
		{Principal: "alice", Operation: Read, Type: Topic, Name: "a"},
		{Principal: "User:alice", Operation: "fly", Type: Topic, Name: "a"},
		{Principal: "User:alice", Operation: Read, Type: Topic},
		{Principal: "User:alice", Operation: Read, Type: Cluster, Name: "x"},
		{Principal: "User:alice", Operation: Read, Type: "queue", Name: "x"},
		{Principal: "User:alice", Operation: ClusterAction, Type: Cluster},
		{Principal: "User:alice", Operation: Read, Type: Topic, Name: "*", Prefix: true},
	}
	for _, a := range bad {
		if err := a.Validate(); err == nil {
			t.Errorf("%+v: valid", a)
		}
	}
	if err := (ACL{Principal: "User:alice", Operation: Read, Type: Topic, Name: "a"}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestCheckUserName(t *testing.T) {
	for _, n := range []string{"", "a,b", "a=b", "a:b", "ANONYMOUS", "x\n", strings.Repeat("x", 256)} {
		if CheckUserName(n) == nil {
			t.Errorf("%q accepted", n)
		}
	}
	if err := CheckUserName("alice.smith@example"); err != nil {
		t.Fatal(err)
	}
}

// TestAuthorizerIndexAgreesWithDecide checks the per-principal index
// decides as Decide over the whole list, and follows a new list.
func TestAuthorizerIndexAgreesWithDecide(t *testing.T) {
	acls := []ACL{
		{Principal: "User:*", Operation: Read, Type: Topic, Name: "pub"},
		{Principal: User("bob"), Operation: Read, Type: Topic, Name: "pub", Deny: true},
		{Principal: User("alice"), Operation: Write, Type: Topic, Name: "a"},
	}
	cur := acls
	a := NewAuthorizer(Config{Enabled: true, ACLs: func() []ACL { return cur }})
	for _, p := range []Principal{User("alice"), User("bob"), User("carol"), Anonymous} {
		for _, op := range []Operation{Read, Write, Describe} {
			for _, r := range []Resource{TopicResource("pub"), TopicResource("a")} {
				if got, want := a.Decide(p, op, r).Allowed, Decide(cur, nil, p, op, r).Allowed; got != want {
					t.Errorf("%s %s %s: index %v, Decide %v", p, op, r, got, want)
				}
			}
		}
	}
	cur = append([]ACL{}, acls[2:]...)
	if a.Decide(User("carol"), Read, TopicResource("pub")).Allowed {
		t.Fatal("a removed User:* rule still applies")
	}
}
