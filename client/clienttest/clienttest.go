// Package clienttest gives tests outside client/ (the produce and consume
// commands, applications embedding the client) the in-memory fake Skein
// cluster that the client's own tests run against. See
// client/internal/fakebroker for what it models and how to steer it.
package clienttest

import (
	"testing"

	"github.com/skeinlog/skein/client/internal/fakebroker"
)

// Cluster is a fake Skein cluster.
type Cluster = fakebroker.Cluster

// Options configure a Cluster.
type Options = fakebroker.Options

// Action is what a produce hook asks the fake to do with one request.
type Action = fakebroker.Action

// Record is a record as the fake stores it.
type Record = fakebroker.Record

// New starts a fake cluster and stops it when the test ends.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c, err := fakebroker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Start starts a fake cluster outside a test (in examples, or a program
// that demonstrates the client); Close it when done. Connect with
// client.Brokers(c.Addrs()...) and client.Dialer(c.Dialer()).
func Start(opts Options) (*Cluster, error) { return fakebroker.New(opts) }
