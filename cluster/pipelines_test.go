package cluster

import (
	"errors"
	"sync/atomic"
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

// Shutdown closes the Raft store only after quiesce: a heartbeat already
// in Raft's handler is waited for, and later ones are refused without
// reaching Raft (which would write the term to the closed store and panic).
func TestQuiesceFencesHeartbeats(t *testing.T) {
	cfg := func() *raft.NetworkTransportConfig {
		return &raft.NetworkTransportConfig{MaxPool: 2, Timeout: time.Minute}
	}
	ft, err := raft.NewTCPTransportWithConfig("127.0.0.1:0", nil, cfg())
	if err != nil {
		t.Fatal(err)
	}
	follower := newRaftTransport(ft)
	defer follower.Close()
	entered, release := make(chan struct{}, 4), make(chan struct{})
	var calls atomic.Int32
	follower.SetHeartbeatHandler(func(rpc raft.RPC) {
		calls.Add(1)
		entered <- struct{}{}
		<-release
		rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
	})
	leader, err := raft.NewTCPTransportWithConfig("127.0.0.1:0", nil, cfg())
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Close()
	heartbeat := func() error {
		req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("1"), Addr: []byte(leader.LocalAddr())}, Term: 1}
		return leader.AppendEntries("2", follower.LocalAddr(), req, new(raft.AppendEntriesResponse))
	}
	first := make(chan error, 1)
	go func() { first <- heartbeat() }()
	<-entered
	quiesced := make(chan struct{})
	go func() { follower.quiesce(); close(quiesced) }()
	select {
	case <-quiesced:
		t.Fatal("quiesce returned while a heartbeat was in Raft's handler")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	<-quiesced
	if err := <-first; err != nil {
		t.Fatalf("the heartbeat in progress: %v", err)
	}
	if err := heartbeat(); err == nil || calls.Load() != 1 {
		t.Fatalf("heartbeat after quiesce: err %v, handler calls %d; want an error and 1 call", err, calls.Load())
	}
}
