package cluster

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// blockingHandler holds the first record with message msg about node until
// release is closed, telling held when it got there.
type blockingHandler struct {
	msg     string
	node    string
	once    sync.Once
	held    chan struct{}
	release chan struct{}
}

func (h *blockingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *blockingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *blockingHandler) WithGroup(string) slog.Handler            { return h }
func (h *blockingHandler) Handle(_ context.Context, r slog.Record) error {
	about := false
	r.Attrs(func(a slog.Attr) bool {
		about = about || a.Key == "node" && strings.HasPrefix(a.Value.String(), h.node)
		return true
	})
	if r.Message == h.msg && about {
		h.once.Do(func() {
			close(h.held)
			<-h.release
		})
	}
	return nil
}

// memberlist runs the delegate's callbacks under its node lock, and they
// take Membership.mu. The rejoin loop once asked memberlist for the local
// address while holding mu: a join or update at that moment deadlocked
// gossip, and with it the controller loop (Changed) and Close.
func TestRejoinNeverHoldsTheViewWhileWaitingForMemberlist(t *testing.T) {
	h := &blockingHandler{msg: "gossip: broker joined", node: "skein-2-", held: make(chan struct{}), release: make(chan struct{})}
	released := false
	release := func() {
		if !released {
			released = true
			close(h.release)
		}
	}
	defer release()
	a, err := StartMembership(MembershipConfig{
		Meta:     MemberMeta{ID: 1, Addr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"},
		BindAddr: "127.0.0.1:0", Local: true, RejoinInterval: time.Hour,
		Logger: slog.New(h),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	a.AddKnown("127.0.0.1:1") // something to compare with the local address
	// Broker 2 joins: a's NotifyJoin blocks in its log line, inside
	// memberlist's node lock, as a slow callback would.
	startGossip(t, 2, nil, "", []string{a.LocalAddr()})
	select {
	case <-h.held:
	case <-time.After(10 * time.Second):
		t.Fatal("broker 2 never joined")
	}
	rejoined := make(chan struct{})
	go func() { a.rejoin(); close(rejoined) }()
	time.Sleep(100 * time.Millisecond) // rejoin reaches memberlist's lock
	// The callbacks need the view: it must not be held by a rejoin that
	// waits for memberlist.
	got := make(chan []Member, 1)
	go func() { got <- a.Members() }()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		release() // let the test end
		t.Fatal("the view is held by rejoin while it waits for memberlist's node lock")
	}
	release()
	<-rejoined
}

// Regression: LocalAddr read memberlist's local Node after memberlist had
// released its lock, while a metadata update rewrote it (a data race that
// go test -race ./broker/ reported).
func TestLocalAddrDuringMetaUpdates(t *testing.T) {
	m, _ := startGossip(t, 1, nil, "", nil)
	want := m.LocalAddr()
	if want == "" {
		t.Fatal("no local address after start")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 50 {
			if err := m.SetMeta(MemberMeta{ID: 1, Addr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2", Incarnation: int64(i)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for {
		if got := m.LocalAddr(); got != want {
			t.Fatalf("local address %q, then %q", want, got)
		}
		select {
		case <-done:
			return
		default:
		}
	}
}
