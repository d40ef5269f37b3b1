package cluster

import (
	"sync"

	"github.com/hashicorp/raft"
)

// raftTransport is Raft's network transport with its AppendEntries
// pipelines tracked, so that a shutdown can close them.
//
// hashicorp/raft can leave a leader's replication goroutine blocked for
// good inside a pipeline: when the follower answers with a higher term the
// pipeline's decoder stops, and a send chosen by the same select (a commit
// timeout or a trigger) then waits for room in the pipeline that nobody
// frees. Raft's Shutdown waits for that goroutine, so the broker could
// never stop. Closing the pipelines once Raft is told to shut down ends the
// wait (the send fails with ErrPipelineShutdown), and a transport that is
// shutting down opens no new ones (Raft falls back to single
// AppendEntries calls, which time out).
//
// It also fences Raft's heartbeat fast path: those heartbeats run on the
// transport's connection goroutines, not Raft's, and one that passed Raft's
// shutdown check could write the term to a store already closed, which
// hashicorp/raft answers with a panic. quiesce waits for the ones running
// and refuses later ones, so the store can be closed safely.
type raftTransport struct {
	*raft.NetworkTransport

	mu      sync.Mutex
	closing bool
	pipes   map[*trackedPipeline]struct{}

	hbMu     sync.Mutex
	hbClosed bool
	hbs      sync.WaitGroup
}

// SetHeartbeatHandler installs Raft's heartbeat fast path behind the fence.
func (t *raftTransport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	t.NetworkTransport.SetHeartbeatHandler(func(rpc raft.RPC) {
		t.hbMu.Lock()
		if t.hbClosed {
			t.hbMu.Unlock()
			rpc.Respond(nil, raft.ErrRaftShutdown)
			return
		}
		t.hbs.Add(1)
		t.hbMu.Unlock()
		defer t.hbs.Done()
		cb(rpc)
	})
}

// quiesce refuses heartbeats from now on and waits for those running.
func (t *raftTransport) quiesce() {
	t.hbMu.Lock()
	t.hbClosed = true
	t.hbMu.Unlock()
	t.hbs.Wait()
}

func newRaftTransport(t *raft.NetworkTransport) *raftTransport {
	return &raftTransport{NetworkTransport: t, pipes: map[*trackedPipeline]struct{}{}}
}

// AppendEntriesPipeline opens a pipeline as the network transport does and
// tracks it until it is closed.
func (t *raftTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	t.mu.Lock()
	closing := t.closing
	t.mu.Unlock()
	if closing {
		return nil, raft.ErrTransportShutdown
	}
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	tp := &trackedPipeline{AppendPipeline: p, t: t}
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		p.Close()
		return nil, raft.ErrTransportShutdown
	}
	t.pipes[tp] = struct{}{}
	t.mu.Unlock()
	return tp, nil
}

// closePipelines closes every open pipeline and refuses new ones.
func (t *raftTransport) closePipelines() {
	t.mu.Lock()
	t.closing = true
	pipes := t.pipes
	t.pipes = map[*trackedPipeline]struct{}{}
	t.mu.Unlock()
	for p := range pipes {
		p.AppendPipeline.Close()
	}
}

// openPipelines is the number of pipelines not yet closed.
func (t *raftTransport) openPipelines() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pipes)
}

type trackedPipeline struct {
	raft.AppendPipeline
	t *raftTransport
}

func (p *trackedPipeline) Close() error {
	p.t.mu.Lock()
	delete(p.t.pipes, p)
	p.t.mu.Unlock()
	return p.AppendPipeline.Close()
}
