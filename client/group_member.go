package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/skeinlog/skein/proto/skeinv1"
)

// run is the heartbeat loop: it joins, heartbeats at the interval the
// coordinator asks for (at once after Poll released partitions), and
// applies each answer. It ends with Close.
func (g *GroupConsumer) run() {
	defer g.loop.Done()
	wait, failures := time.Duration(0), 0
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		t.Reset(wait)
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		case <-g.beat:
			if !t.Stop() {
				<-t.C
			}
		}
		resp, err := g.heartbeat()
		if err == nil {
			failures = 0
			wait = max(10*time.Millisecond, time.Duration(resp.HeartbeatIntervalMs)*time.Millisecond)
			g.apply(resp)
			continue
		}
		if g.ctx.Err() != nil {
			return
		}
		failures++
		wait = backoff(g.cfg.retryBackoff, failures)
		switch {
		case errors.Is(err, ErrFencedMemberEpoch):
			g.log.Warn("skein: fenced by the group coordinator: its partitions are dropped, and the records since their last commit will be delivered again; rejoining", "err", err)
			g.fenced()
			wait = 0
		case IsRetriable(err) || errors.Is(err, ErrUnknownTopic):
			g.log.Debug("skein: heartbeat failed; retrying", "err", err)
		default:
			g.mu.Lock()
			g.failure = fmt.Errorf("group %q: heartbeat: %w", g.group, err)
			g.mu.Unlock()
			signal(g.wake)
			return
		}
	}
}

// heartbeat sends one heartbeat with the partitions the member owns.
func (g *GroupConsumer) heartbeat() (*skeinv1.GroupHeartbeatResponse, error) {
	g.mu.Lock()
	req := &skeinv1.GroupHeartbeatRequest{Group: g.group, MemberId: g.memberID, MemberEpoch: g.epoch,
		ClientId: g.gcfg.clientID, Rack: g.gcfg.rack, SessionTimeoutMs: int32(g.gcfg.sessionTimeout.Milliseconds())}
	if g.epoch == 0 {
		req.Topics, req.TopicRegex = g.topics, g.gcfg.regex
	}
	var owned []TopicPartition
	for tp := range g.parts {
		owned = append(owned, tp)
	}
	g.mu.Unlock()
	sortTPs(owned)
	req.Owned = toTopicPartitions(owned)
	var resp *skeinv1.GroupHeartbeatResponse
	err := g.coordCall(g.ctx, "heartbeat", func(ctx context.Context, gc skeinv1.GroupsClient) (err error) {
		resp, err = gc.Heartbeat(ctx, req)
		return err
	})
	return resp, err
}

func toTopicPartitions(tps []TopicPartition) []*skeinv1.TopicPartitions {
	var out []*skeinv1.TopicPartitions
	for _, tp := range tps {
		if n := len(out); n > 0 && out[n-1].Topic == tp.Topic {
			out[n-1].Partitions = append(out[n-1].Partitions, tp.Partition)
			continue
		}
		out = append(out, &skeinv1.TopicPartitions{Topic: tp.Topic, Partitions: []int32{tp.Partition}})
	}
	return out
}

// apply takes the coordinator's answer: partitions no longer assigned stop
// and wait for Poll to release them; new ones start.
func (g *GroupConsumer) apply(resp *skeinv1.GroupHeartbeatResponse) {
	assigned := map[TopicPartition]bool{}
	for _, t := range resp.Assignment {
		for _, p := range t.Partitions {
			assigned[TopicPartition{t.Topic, p}] = true
		}
	}
	var start []TopicPartition
	g.mu.Lock()
	g.memberID, g.epoch = resp.MemberId, resp.MemberEpoch
	for tp, gp := range g.parts {
		if !assigned[tp] && !gp.revoking {
			g.revokeLocked(gp, false)
		}
	}
	for tp := range assigned {
		if _, ok := g.parts[tp]; !ok {
			start = append(start, tp)
		}
	}
	g.mu.Unlock()
	if len(start) > 0 {
		sortTPs(start)
		g.start(start)
	}
	g.mu.Lock()
	g.settled = resp.HeartbeatIntervalMs >= 1000
	for tp := range assigned {
		if gp := g.parts[tp]; gp == nil || gp.revoking {
			g.settled = false
		}
	}
	g.mu.Unlock()
	signal(g.wake)
}

// revokeLocked stops a partition's fetching and queues it for Poll to
// release (lost: without committing). g.mu held.
func (g *GroupConsumer) revokeLocked(gp *groupPart, lost bool) {
	gp.revoking, gp.lost = true, lost
	gp.stop()
	g.revoked = append(g.revoked, gp)
}

// fenced drops every partition without committing and rejoins.
func (g *GroupConsumer) fenced() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, gp := range g.parts {
		if !gp.revoking {
			g.revokeLocked(gp, true)
		} else {
			gp.lost = true
		}
	}
	g.memberID, g.epoch, g.settled = "", 0, false
	signal(g.wake)
}

// start begins fetching new partitions from the group's committed offsets
// (ResetOffset where there are none).
func (g *GroupConsumer) start(tps []TopicPartition) {
	offs, err := g.committed(tps)
	if err != nil {
		// Try again at the next heartbeat: nothing was started.
		g.log.Warn("skein: reading the committed offsets failed; retrying", "partitions", tps, "err", err)
		return
	}
	var started []TopicPartition
	for _, tp := range tps {
		gp, err := g.open(tp, offs[tp])
		if err != nil {
			g.log.Warn("skein: starting a partition failed; retrying at the next heartbeat", "partition", tp, "err", err)
			continue
		}
		g.mu.Lock()
		if g.closed {
			g.mu.Unlock()
			gp.stop()
			gp.k.Close()
			return
		}
		g.parts[tp] = gp
		g.assigned = append(g.assigned, tp)
		gp.run()
		g.mu.Unlock()
		started = append(started, tp)
	}
	g.log.Debug("skein: partitions assigned", "partitions", started)
}

// committed fetches the group's committed offsets of tps (-1: none).
func (g *GroupConsumer) committed(tps []TopicPartition) (map[TopicPartition]int64, error) {
	out := map[TopicPartition]int64{}
	for _, tp := range tps {
		out[tp] = -1
	}
	err := g.coordCall(g.ctx, "fetch offsets", func(ctx context.Context, gc skeinv1.GroupsClient) error {
		resp, err := gc.FetchOffsets(ctx, &skeinv1.FetchOffsetsRequest{Group: g.group, Partitions: toTopicPartitions(tps)})
		if err != nil {
			return err
		}
		for _, o := range resp.Offsets {
			out[TopicPartition{o.Topic, o.Partition}] = o.Offset
		}
		return nil
	})
	if errors.Is(err, ErrUnknownGroup) {
		return out, nil
	}
	return out, err
}

// open starts a partition at its committed offset, or at ResetOffset.
func (g *GroupConsumer) open(tp TopicPartition, committed int64) (*groupPart, error) {
	startAt := g.gcfg.reset
	if committed >= 0 {
		startAt = At(committed)
	}
	k, err := g.c.NewConsumer(consumerOpt(func(c *consumerConfig) { *c = g.cfg; c.group = nil }))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.c.cfg.requestTimeout)
	defer cancel()
	if err := k.Assign(ctx, tp.Topic, []int32{tp.Partition}, startAt); err != nil {
		k.Close()
		return nil, err
	}
	pos := k.Positions()[0].Offset
	pctx, stop := context.WithCancel(g.ctx)
	gp := &groupPart{tp: tp, k: k, done: make(chan struct{}), ret: pos, proc: pos, commit: max(committed, 0)}
	if committed < 0 {
		gp.commit = -1
	}
	gp.stop = stop // the pump ends with its context and closes k
	gp.run = func() {
		g.pumps.Add(1)
		go g.pump(gp, pctx)
	}
	return gp, nil
}

// restart reopens a partition at ResetOffset (its position left the log).
func (g *GroupConsumer) restart(old *groupPart) {
	old.stop()
	gp, err := g.open(old.tp, -1)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil || g.parts[old.tp] != old {
		if gp != nil {
			gp.stop()
			gp.k.Close()
		}
		if err != nil {
			g.failure = fmt.Errorf("group %q: restarting %s: %w", g.group, old.tp, err)
		}
		return
	}
	gp.commit = old.commit
	g.parts[old.tp] = gp
	gp.run()
}

// pump hands a partition's records to Poll until its context ends.
func (g *GroupConsumer) pump(gp *groupPart, ctx context.Context) {
	defer g.pumps.Done()
	defer close(gp.done)
	defer gp.k.Close()
	for {
		recs, err := gp.k.Poll(ctx)
		it := groupItem{gp: gp, recs: recs}
		switch {
		case ctx.Err() != nil || errors.Is(err, ErrClosed):
			return
		case err == io.EOF:
			it.atEnd = true
		case err != nil:
			it.err = err
		}
		select {
		case g.items <- it:
		case <-ctx.Done():
			return
		}
		if it.atEnd || it.err != nil {
			return
		}
	}
}

// coordCall runs fn at the group's coordinator, finding it first and again
// when it moved, retrying retriable failures within ctx and the request
// timeout.
func (g *GroupConsumer) coordCall(ctx context.Context, what string, fn func(context.Context, skeinv1.GroupsClient) error) error {
	ctx, cancel := g.c.withTimeout(ctx)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := g.coordAttempt(ctx, fn)
		if err == nil || !IsRetriable(err) {
			return err
		}
		g.mu.Lock()
		g.coord = ""
		g.mu.Unlock()
		t := time.NewTimer(backoff(g.cfg.retryBackoff, attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s for group %q: %w", what, g.group, err)
		case <-t.C:
		}
	}
}

func (g *GroupConsumer) coordAttempt(ctx context.Context, fn func(context.Context, skeinv1.GroupsClient) error) error {
	g.mu.Lock()
	addr := g.coord
	g.mu.Unlock()
	if addr == "" {
		var fc *skeinv1.FindCoordinatorResponse
		err := g.c.callAnyGroups(ctx, func(ctx context.Context, gc skeinv1.GroupsClient) (err error) {
			fc, err = gc.FindCoordinator(ctx, &skeinv1.FindCoordinatorRequest{Group: g.group})
			return err
		})
		if err != nil {
			return err
		}
		addr = fc.Addr
		g.mu.Lock()
		g.coord = addr
		g.mu.Unlock()
	}
	gc, err := g.c.groupsConn(addr)
	if err != nil {
		return err
	}
	return fromRPC(fn(ctx, gc))
}

// Close leaves the group: it stops fetching, commits (with automatic
// commits) the positions of the records the caller has finished with —
// those returned before its latest Poll or Next call; call Commit first to
// include the records of that call too —, tells the coordinator the member
// leaves, so its partitions go to the other members at once, and waits for
// its goroutines. Idempotent.
func (g *GroupConsumer) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	var gps []*groupPart
	for _, gp := range g.parts {
		gp.stop()
		if !gp.lost {
			gps = append(gps, gp)
		}
	}
	g.mu.Unlock()
	g.cancel()
	g.loop.Wait()
	g.pumps.Wait()
	var err error
	ctx, cancel := context.WithTimeout(context.Background(), g.c.cfg.requestTimeout)
	defer cancel()
	if !g.gcfg.noAutoCommit {
		err = g.commitParts(ctx, gps, func(gp *groupPart) int64 { return gp.proc })
	}
	g.mu.Lock()
	id := g.memberID
	g.mu.Unlock()
	if id != "" {
		lerr := g.coordCall(ctx, "leave group", func(ctx context.Context, gc skeinv1.GroupsClient) error {
			_, err := gc.Heartbeat(ctx, &skeinv1.GroupHeartbeatRequest{Group: g.group, MemberId: id, MemberEpoch: -1})
			return err
		})
		err = errors.Join(err, lerr)
	}
	g.c.unregister(g)
	return err
}
