package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
)

// passwordFile writes a password file for "broker user create".
func passwordFile(t *testing.T, pw string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// setUpUsers creates admin, alice and bob and the rules of the scenario
// (alice may write and read a, bob may only read a, both through group g)
// through broker addr, while ACLs are still off.
func setUpUsers(t *testing.T, addr string) {
	t.Helper()
	for _, u := range []string{"admin", "alice", "bob"} {
		out := proctest.MustCLI(t, "broker", "", "user", "create", u, "--password-file", passwordFile(t, u+"-pw"), "-b", addr).Stdout
		if strings.Contains(out, u+"-pw") {
			t.Fatalf("user create printed the password: %s", out)
		}
	}
	proctest.MustCLI(t, "broker", "", "topic", "create", "a", "--partitions", "1", "-b", addr)
	for _, rule := range [][]string{
		{"--principal", "User:alice", "--operation", "write", "--topic", "a"},
		{"--principal", "User:alice", "--operation", "read", "--topic", "a"},
		{"--principal", "User:bob", "--operation", "read", "--topic", "a"},
		{"--principal", "User:bob", "--operation", "read", "--group", "g"},
	} {
		proctest.MustCLI(t, "broker", "", append([]string{"acl", "add", "-b", addr}, rule...)...)
	}
}

// as returns the CLI flags authenticating as user.
func as(user string) []string { return []string{"--user", user, "--password", user + "-pw"} }

// endOffset is partition 0 of a's log end, read as admin.
func endOffset(t *testing.T, addrs []string) int64 {
	t.Helper()
	cl, err := client.New(client.Brokers(addrs...), client.UserPassword("admin", "admin-pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lo, err := cl.ListOffsets(ctx, "a", 0, client.End())
	if err != nil {
		t.Fatal(err)
	}
	return lo.Offset
}

// Three brokers with ACLs on: users and rules made through a broker that
// may not be the controller (forwarded on the inter-broker listener), kept
// across a restart of every broker; alice writes and reads a, bob only
// reads it: bob's produce is refused with PERMISSION_DENIED naming him,
// the operation and the topic, the log end offset does not move, and the
// denial is one audit line; a wrong password and an anonymous admin
// command are refused.
func TestACLsAliceBob(t *testing.T) {
	c := proctest.StartCluster(t, 3)
	setUpUsers(t, c.Brokers[2].Addr)
	for _, id := range c.IDs {
		c.Brokers[id].Term()
		var join string
		for _, o := range c.IDs {
			if o != id {
				join = c.Brokers[o].GossipAddr
			}
		}
		c.Brokers[id].Restart("--node-id", strconv.Itoa(int(id)), "--join", join, "--authorizer", "acl", "--super-users", "User:admin")
	}
	addrs := strings.Join(c.Addrs(), ",")
	waitUntil(t, 60*time.Second, "the cluster answers admin after the restart with ACLs", func() bool {
		return proctest.CLI(t, "broker", "", append([]string{"cluster", "-b", addrs, "--timeout", "2s"}, as("admin")...)...).Code == 0
	})

	proctest.MustCLI(t, "produce", "one\ntwo\n", append([]string{"-t", "a", "-b", addrs}, as("alice")...)...)
	before := endOffset(t, c.Addrs())
	if before != 2 {
		t.Fatalf("log end %d after alice's 2 records", before)
	}
	r := proctest.CLI(t, "produce", "three\n", append([]string{"-t", "a", "-b", addrs, "--delivery-timeout", "5s", "--idempotent=false"}, as("bob")...)...)
	if r.Code == 0 || !strings.Contains(r.Stderr, "PermissionDenied") || !strings.Contains(r.Stderr, `User:bob is not authorized to write topic "a"`) {
		t.Fatalf("bob's produce: exit %d\n%s", r.Code, r.Stderr)
	}
	if after := endOffset(t, c.Addrs()); after != before {
		t.Fatalf("log end moved from %d to %d after a refused produce", before, after)
	}
	out := proctest.MustCLI(t, "consume", "", append([]string{"-t", "a", "-b", addrs, "-o", "beginning", "-e"}, as("bob")...)...).Stdout
	if out != "one\ntwo\n" {
		t.Fatalf("bob read %q", out)
	}
	r = proctest.CLI(t, "consume", "", "-t", "a", "-b", addrs, "-o", "beginning", "-e", "--user", "bob", "--password", "wrong")
	if r.Code == 0 || !strings.Contains(r.Stderr, "Unauthenticated") {
		t.Fatalf("wrong password: exit %d\n%s", r.Code, r.Stderr)
	}
	r = proctest.CLI(t, "broker", "", "topic", "delete", "a", "-b", addrs, "--timeout", "2s")
	if r.Code == 0 || !strings.Contains(r.Stderr, "User:ANONYMOUS is not authorized to delete topic") {
		t.Fatalf("anonymous delete: exit %d\n%s", r.Code, r.Stderr)
	}
	var audit bool
	for _, id := range c.IDs {
		logs := c.Brokers[id].Logs()
		if strings.Contains(logs, "bob-pw") || strings.Contains(logs, "alice-pw") {
			t.Fatalf("a password in broker %d's log", id)
		}
		audit = audit || auditLine(logs, "User:bob", "write", `topic "a"`, "denied")
	}
	if !audit {
		t.Fatal("no audit line for bob's refused write")
	}
}

// One broker: Kafka clients authenticate with SCRAM (franz-go with
// SHA-256, kcat with SHA-512), ACLs apply to them (bob's produce gets
// TOPIC_AUTHORIZATION_FAILED), a wrong password closes the connection
// with an authentication error; a deleted user stays deleted across a
// restart; the profiler needs a user with cluster describe.
func TestSASLKafkaAndUsersAcrossRestart(t *testing.T) {
	b := proctest.StartBroker(t, t.TempDir(), "")
	proctest.MustCLI(t, "broker", "", "topic", "create", "warmup", "-b", b.Addr)
	proctest.MustCLI(t, "produce", "anon\n", "-t", "warmup", "-b", b.Addr) // no ACLs: as today
	setUpUsers(t, b.Addr)
	b.Term()
	b.Restart("--authorizer", "acl", "--super-users", "User:admin", "--pprof", "--http-insecure-plaintext-passwords")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	sasl := func(user, pw string) kgo.Opt {
		return kgo.SASL(scram.Auth{User: user, Pass: pw}.AsSha256Mechanism())
	}
	alice := kgoClient(t, []string{b.KafkaAddr}, sasl("alice", "alice-pw"), kgo.DefaultProduceTopic("a"))
	if err := alice.ProduceSync(ctx, &kgo.Record{Value: []byte("franz")}).FirstErr(); err != nil {
		t.Fatalf("alice over SASL: %v", err)
	}
	bob := kgoClient(t, []string{b.KafkaAddr}, sasl("bob", "bob-pw"), kgo.DefaultProduceTopic("a"), kgo.DisableIdempotentWrite(), kgo.RecordRetries(1))
	if err := bob.ProduceSync(ctx, &kgo.Record{Value: []byte("no")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("bob's produce: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	// Bob's admin requests over Kafka: each refused by name, nothing changed.
	badm := kadm.NewClient(bob)
	if r, err := badm.DeleteTopics(ctx, "a"); err != nil || !errors.Is(r["a"].Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("bob deleting a: %v %v, want TOPIC_AUTHORIZATION_FAILED", r, err)
	}
	if r, err := badm.CreateTopics(ctx, 1, 1, nil, "bobs"); err != nil || !errors.Is(r["bobs"].Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("bob creating bobs: %v %v, want TOPIC_AUTHORIZATION_FAILED", r, err)
	}
	if r, _ := badm.DeleteGroups(ctx, "g"); !errors.Is(r["g"].Err, kerr.GroupAuthorizationFailed) { // read on g, not delete
		t.Fatalf("bob deleting g: %v, want GROUP_AUTHORIZATION_FAILED", r)
	}
	if r := badm.FetchManyOffsets(ctx, "other"); !errors.Is(r["other"].Err, kerr.GroupAuthorizationFailed) {
		t.Fatalf("bob fetching other's offsets: %+v, want GROUP_AUTHORIZATION_FAILED", r["other"])
	}
	if ts, err := kadm.NewClient(alice).ListTopics(ctx); err != nil || !ts.Has("a") || ts.Has("bobs") {
		t.Fatalf("topics after bob's requests: %v %v", ts.Names(), err)
	}
	wrong := kgoClient(t, []string{b.KafkaAddr}, sasl("alice", "nope"))
	if err := wrong.Ping(ctx); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("wrong password: %v, want SASL_AUTHENTICATION_FAILED", err)
	}

	if _, err := os.Stat("/usr/bin/kcat"); err == nil || os.Getenv("CI") != "" {
		sasl512 := []string{"-b", b.KafkaAddr, "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=SCRAM-SHA-512"}
		kcat(t, "kcat-line\n", append(sasl512, "-X", "sasl.username=alice", "-X", "sasl.password=alice-pw", "-t", "a", "-P")...)
		got := kcat(t, "", append(sasl512, "-X", "sasl.username=bob", "-X", "sasl.password=bob-pw", "-t", "a", "-C", "-e", "-o", "beginning", "-f", `%s\n`)...)
		if got != "franz\nkcat-line\n" {
			t.Fatalf("kcat as bob read %q", got)
		}
	}

	pprof := func(user, pw string) int {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+b.HTTPAddr+"/debug/pprof/cmdline", nil)
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if a, bb, ad := pprof("", ""), pprof("bob", "bob-pw"), pprof("admin", "admin-pw"); a != 401 || bb != 403 || ad != 200 {
		t.Fatalf("pprof: anonymous %d, bob %d, admin %d; want 401, 403, 200", a, bb, ad)
	}
	if resp, err := http.Get("http://" + b.HTTPAddr + "/metrics"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics: %v %v", resp, err)
	}

	proctest.MustCLI(t, "broker", "", append([]string{"user", "delete", "bob", "-b", b.Addr}, as("admin")...)...)
	if !auditLine(b.Logs(), "User:admin", "alter", "cluster", "ok") {
		t.Fatalf("no audit line for the user deletion:\n%s", b.Logs())
	}
	b.Term()
	b.Restart("--authorizer", "acl", "--super-users", "User:admin")
	users := proctest.MustCLI(t, "broker", "", append([]string{"user", "list", "-b", b.Addr}, as("admin")...)...).Stdout
	if strings.Contains(users, "bob") || !strings.Contains(users, "alice") {
		t.Fatalf("users after restart:\n%s", users)
	}
	gone := kgoClient(t, []string{b.KafkaAddr}, sasl("bob", "bob-pw"))
	if err := gone.Ping(ctx); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("deleted user after restart: %v, want SASL_AUTHENTICATION_FAILED", err)
	}
}

// auditLine reports whether logs (JSON lines) have an audit line with
// these fields.
func auditLine(logs, principal, op, resource, result string) bool {
	for _, l := range strings.Split(logs, "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(l), &e) == nil && e["msg"] == "audit" && e["principal"] == principal &&
			e["operation"] == op && e["resource"] == resource && e["result"] == result {
			return true
		}
	}
	return false
}

// A TLS cluster of three brokers with ACLs on, clients identified by their
// certificates (mutual TLS, CN = principal): alice may write and read a,
// bob may only read it. Bob's produce is PERMISSION_DENIED on gRPC and
// TOPIC_AUTHORIZATION_FAILED on the Kafka listener, the log end offset does
// not move; a password sent with a certificate wins over it.
func TestMTLSPrincipalsWithACLs(t *testing.T) {
	p := newPKI(t, "admin", "alice", "bob")
	args := append(p.brokerArgs(), "--authorizer", "acl", "--super-users", "User:admin")
	c := proctest.StartClusterWith(t, 3, []client.ClientOpt{client.TLSConfig(p.tlsConfig(t, "admin"))}, args...)
	addrs := strings.Join(c.Addrs(), ",")
	admin := func(a ...string) {
		proctest.MustCLI(t, "broker", "", append(append(a, "-b", addrs), p.cliArgs("admin")...)...)
	}
	admin("topic", "create", "a", "--partitions", "1", "--replication-factor", "3")
	admin("acl", "add", "--principal", "User:alice", "--operation", "write", "--topic", "a")
	admin("acl", "add", "--principal", "User:alice", "--operation", "read", "--topic", "a")
	admin("acl", "add", "--principal", "User:bob", "--operation", "read", "--topic", "a")
	admin("user", "create", "carol", "--password-file", passwordFile(t, "carol-pw"))
	admin("topic", "create", "hidden", "--partitions", "1", "--replication-factor", "1")
	consoleOverTLS(t, p, c.Brokers[1].HTTPAddr)

	proctest.MustCLI(t, "produce", "one\n", append([]string{"-t", "a", "-b", addrs}, p.cliArgs("alice")...)...)
	end := func() int64 {
		cl, err := client.New(client.Brokers(c.Addrs()...), client.TLSConfig(p.tlsConfig(t, "admin")))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		lo, err := cl.ListOffsets(ctx, "a", 0, client.End())
		if err != nil {
			t.Fatal(err)
		}
		return lo.Offset
	}
	before := end()
	r := proctest.CLI(t, "produce", "two\n", append([]string{"-t", "a", "-b", addrs, "--idempotent=false", "--delivery-timeout", "5s"}, p.cliArgs("bob")...)...)
	if r.Code == 0 || !strings.Contains(r.Stderr, `User:bob is not authorized to write topic "a"`) {
		t.Fatalf("bob's produce: exit %d\n%s", r.Code, r.Stderr)
	}
	r = proctest.CLI(t, "consume", "", append([]string{"-t", "a", "-b", addrs, "-o", "beginning", "-e", "--user", "carol", "--password", "carol-pw"}, p.cliArgs("bob")...)...)
	// carol may not even describe a: it is not in her metadata.
	if r.Code == 0 || !strings.Contains(r.Stderr, `topic "a" does not exist`) {
		t.Fatalf("carol's password over bob's certificate: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if out := proctest.MustCLI(t, "consume", "", append([]string{"-t", "a", "-b", addrs, "-o", "beginning", "-e"}, p.cliArgs("bob")...)...).Stdout; out != "one\n" {
		t.Fatalf("bob read %q", out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bob := kgoClient(t, []string{c.Brokers[1].KafkaAddr}, kgo.DialTLSConfig(p.tlsConfig(t, "bob")), kgo.DefaultProduceTopic("a"),
		kgo.DisableIdempotentWrite(), kgo.RecordRetries(1))
	if err := bob.ProduceSync(ctx, &kgo.Record{Value: []byte("no")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("bob over Kafka TLS: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	alice := kgoClient(t, []string{c.Brokers[1].KafkaAddr}, kgo.DialTLSConfig(p.tlsConfig(t, "alice")), kgo.DefaultProduceTopic("a"))
	if err := alice.ProduceSync(ctx, &kgo.Record{Value: []byte("kafka")}).FirstErr(); err != nil {
		t.Fatalf("alice over Kafka TLS: %v", err)
	}
	if after := end(); after != before+1 {
		t.Fatalf("log end %d, want %d: only alice's Kafka record added", after, before+1)
	}
}
