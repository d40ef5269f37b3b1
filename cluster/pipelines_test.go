package cluster

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A pipeline whose answers nobody collects (Raft's decoder stopped after a
// higher term) blocks the next send for good; closing the pipelines at
// shutdown ends the wait, and no new pipeline opens afterwards.
func TestClosePipelinesUnblocksAStuckSend(t *testing.T) {
	quiet := func() *raft.NetworkTransportConfig {
		return &raft.NetworkTransportConfig{MaxPool: 1, Timeout: time.Minute, Logger: nil}
	}
	follower, err := raft.NewTCPTransportWithConfig("127.0.0.1:0", nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer follower.Close()
	go func() { // the follower answers every request
		for rpc := range follower.Consumer() {
			rpc.Respond(&raft.AppendEntriesResponse{Term: 9}, nil)
		}
	}()
	lt, err := raft.NewTCPTransportWithConfig("127.0.0.1:0", nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	leader := newRaftTransport(lt)
	defer leader.Close()

	p, err := leader.AppendEntriesPipeline("2", follower.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	if n := leader.openPipelines(); n != 1 {
		t.Fatalf("open pipelines %d, want 1", n)
	}
	req := func() *raft.AppendEntriesRequest {
		return &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte("1")}, Term: 1}
	}
	if _, err := p.AppendEntries(req(), new(raft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	// p.Consumer() is never read, as after Raft's decoder returned.
	done := make(chan error, 1)
	go func() {
		_, err := p.AppendEntries(req(), new(raft.AppendEntriesResponse))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the second send returned (%v); the test no longer reproduces the stuck pipeline", err)
	case <-time.After(300 * time.Millisecond):
	}
	leader.closePipelines()
	select {
	case err := <-done:
		if !errors.Is(err, raft.ErrPipelineShutdown) {
			t.Fatalf("stuck send ended with %v, want ErrPipelineShutdown", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("closePipelines did not end the stuck send")
	}
	if n := leader.openPipelines(); n != 0 {
		t.Fatalf("open pipelines after close %d, want 0", n)
	}
	if _, err := leader.AppendEntriesPipeline("2", follower.LocalAddr()); !errors.Is(err, raft.ErrTransportShutdown) {
		t.Fatalf("new pipeline while shutting down: %v, want ErrTransportShutdown", err)
	}
}
