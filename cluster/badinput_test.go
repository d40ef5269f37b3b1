package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// syncBuffer is a log sink several goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startGossip(t *testing.T, id int32, key []byte, label string, seeds []string) (*Membership, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	m, err := StartMembership(MembershipConfig{
		Meta:     MemberMeta{ID: id, Addr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"},
		BindAddr: "127.0.0.1:0", Seeds: seeds, SecretKey: key, Label: label, Local: true,
		RejoinInterval: 200 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m, logs
}

func sees(m *Membership, id int32) bool {
	for _, mem := range m.Members() {
		if mem.Meta.ID == id {
			return true
		}
	}
	return false
}

// A broker whose gossip key or label differs from the cluster's never
// joins it, and its log (at warning level, not debug) says why.
func TestBadInputGossipKeyAndLabel(t *testing.T) {
	k1 := bytes.Repeat([]byte{1}, 32)
	k2 := bytes.Repeat([]byte{2}, 16)
	a, _ := startGossip(t, 1, k1, "prod", nil)
	// A broker with the same key and label joins: the waits below are long
	// enough for a join.
	ok, _ := startGossip(t, 2, k1, "prod", []string{a.LocalAddr()})
	deadline := time.Now().Add(10 * time.Second)
	for !sees(a, 2) || !sees(ok, 1) {
		if time.Now().After(deadline) {
			t.Fatal("a broker with the right key and label did not join")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	cases := []struct {
		name  string
		key   []byte
		label string
	}{
		{"another key", k2, "prod"},
		{"no key", nil, "prod"},
		{"another label", k1, "test"},
		{"no label", k1, ""},
	}
	type joiner struct {
		m    *Membership
		logs *syncBuffer
	}
	var js []joiner
	for i, tc := range cases {
		m, logs := startGossip(t, int32(10+i), tc.key, tc.label, []string{a.LocalAddr()})
		js = append(js, joiner{m, logs})
	}
	// Several join attempts (every 200 ms) and gossip rounds.
	time.Sleep(max(0, 2*time.Second-time.Since(start)))
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := js[i]
			if sees(a, int32(10+i)) || sees(ok, int32(10+i)) || sees(j.m, 1) || sees(j.m, 2) {
				t.Fatalf("joined: the cluster sees %v, the broker sees %v", a.Members(), j.m.Members())
			}
			logs := j.logs.String()
			if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "cannot join the cluster") {
				t.Fatalf("its log does not say why it stays alone:\n%s", logs)
			}
		})
	}
}

// Gossip metadata over memberlist's 512-byte limit is an error at start and
// on change, never memberlist's panic.
func TestBadInputGossipMetaTooLarge(t *testing.T) {
	big := MemberMeta{ID: 1, Addr: strings.Repeat("a", 600) + ":1", RaftAddr: "127.0.0.1:2"}
	_, err := StartMembership(MembershipConfig{Meta: big, BindAddr: "127.0.0.1:0", Local: true})
	if err == nil || !strings.Contains(err.Error(), "512-byte limit") {
		t.Fatalf("start with %d-byte addr: %v", len(big.Addr), err)
	}
	m, _ := startGossip(t, 1, nil, "", nil)
	big.Rack = strings.Repeat("r", memberlist.MetaMaxSize)
	big.Addr = "127.0.0.1:1"
	if err := m.SetMeta(big); err == nil || !strings.Contains(err.Error(), "512-byte limit") {
		t.Fatalf("set meta with a %d-byte rack: %v", len(big.Rack), err)
	}
}
