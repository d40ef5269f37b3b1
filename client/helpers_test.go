package client_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/client/internal/fakebroker"
)

func TestMain(m *testing.M) {
	// The in-process brokers of the broker and conformance tests run raft,
	// whose network transport leaves a connection's handler running until
	// the peer's side closes; on a loaded machine that can outlast
	// goleak's retries. Those goroutines are the brokers', not the
	// client's, whose own are still all checked.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/hashicorp/raft.(*NetworkTransport).handleConn"))
}

// newCluster starts a fake cluster of n nodes over bufconn.
func newCluster(t testing.TB, n int) *fakebroker.Cluster {
	t.Helper()
	fc, err := fakebroker.New(fakebroker.Options{Nodes: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fc.Close)
	return fc
}

// newClient returns a client bootstrapped from the cluster's first node,
// with fast backoffs and its log in the test log.
func newClient(t testing.TB, fc *fakebroker.Cluster, opts ...client.ClientOpt) *client.Client {
	t.Helper()
	base := []client.ClientOpt{
		client.Brokers(fc.Addrs()[0]),
		client.Dialer(fc.Dialer()),
		client.RetryBackoff(5 * time.Millisecond),
		client.Logger(testLogger(t)),
	}
	c, err := client.New(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newProducer(t testing.TB, c *client.Client, opts ...client.ProducerOpt) *client.Producer {
	t.Helper()
	base := []client.ProducerOpt{client.ProduceRetryBackoff(5 * time.Millisecond), client.Linger(time.Millisecond)}
	p, err := c.NewProducer(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newConsumer(t testing.TB, c *client.Client, opts ...client.ConsumerOpt) *client.Consumer {
	t.Helper()
	base := []client.ConsumerOpt{client.FetchRetryBackoff(5 * time.Millisecond), client.FetchMaxWait(50 * time.Millisecond)}
	k, err := c.NewConsumer(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
