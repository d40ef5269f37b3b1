package chaos

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinlog/skein/client"
)

// The group workload: members of one consumer group share the topic's
// partitions, record every record the group delivers (FGroupRead), when a
// member starts a partition (FAssign), and every commit (FCommit, invoke
// then ok / fail / info). Each member instance lives for a while and then
// leaves cleanly, so the group rebalances throughout the run on top of the
// coordinator failovers the nemesis causes.

// groupName is the chaos workload's consumer group.
const groupName = "chaos-group"

// groupWorkload runs cfg.GroupMembers member slots; each slot runs member
// instances one after another until the group has read every partition to
// the high watermark Drain gives it.
type groupWorkload struct {
	w    *Workload
	stop chan struct{} // closes: members stop
	wg   sync.WaitGroup
	// readTo[p]: the offset after the highest record of p the group read.
	readTo []atomic.Int64
}

func (w *Workload) startGroup() *groupWorkload {
	g := &groupWorkload{w: w, stop: make(chan struct{}), readTo: make([]atomic.Int64, w.cfg.Partitions)}
	for i := 0; i < w.cfg.GroupMembers; i++ {
		g.wg.Add(1)
		go g.slot()
	}
	return g
}

// slot runs member instances until the group stops: each lives 8–20 s (or
// until its member fails), then leaves the group.
func (g *groupWorkload) slot() {
	defer g.wg.Done()
	for {
		life := time.Duration(8000+g.w.intn(12000)) * time.Millisecond
		g.member(life)
		select {
		case <-g.stop:
			return
		case <-time.After(time.Duration(200+g.w.intn(800)) * time.Millisecond):
		}
	}
}

// groupMember is one member instance's bookkeeping, used on its Poll
// goroutine only.
type groupMember struct {
	g    *groupWorkload
	proc int
	gc   *client.GroupConsumer
	last map[int32]*client.Record // the highest record returned per partition owned
}

// member joins the group, reads and commits for life (or until the group
// stops, or the member fails), commits what it read and leaves.
func (g *groupWorkload) member(life time.Duration) {
	w := g.w
	m := &groupMember{g: g, proc: w.h.Proc(), last: map[int32]*client.Record{}}
	gc, err := w.cl.NewGroupConsumer(groupName, []string{w.cfg.Topic},
		client.ResetOffset(client.Beginning()), client.AutoCommit(false),
		client.SessionTimeout(6*time.Second), client.FetchMaxWait(300*time.Millisecond),
		client.OnAssigned(m.assigned), client.OnRevoked(m.revoked))
	if err != nil {
		w.report(err)
		return
	}
	m.gc = gc
	defer gc.Close()
	end := time.After(life)
	commitEvery := time.NewTicker(time.Second)
	defer commitEvery.Stop()
	for {
		select {
		case <-g.stop:
			m.commit(m.owned())
			return
		case <-end:
			m.commit(m.owned())
			return
		case <-commitEvery.C:
			m.commit(m.owned())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		recs, err := gc.Poll(ctx)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return // a failed member is replaced by a new instance
		}
		m.record(recs)
	}
}

// record adds the records a Poll returned to the history.
func (m *groupMember) record(recs []*client.Record) {
	for _, r := range recs {
		op := Op{Process: m.proc, Type: OK, F: FGroupRead, Partition: r.Partition, Offset: r.Offset, Epoch: r.LeaderEpoch}
		if v, err := DecodeValue(r.Value); err != nil {
			op.Corrupt, op.Err = true, err.Error()
		} else {
			op.Value = v
		}
		m.g.w.h.Add(op)
		if l := m.last[r.Partition]; l == nil || r.Offset > l.Offset {
			m.last[r.Partition] = r
		}
		to := &m.g.readTo[r.Partition]
		for cur := to.Load(); r.Offset+1 > cur && !to.CompareAndSwap(cur, r.Offset+1); cur = to.Load() {
		}
	}
}

func (m *groupMember) owned() []int32 {
	var ps []int32
	for _, tp := range m.gc.Assignment() {
		ps = append(ps, tp.Partition)
	}
	return ps
}

// assigned records that the member starts each partition: its first read
// of it must not be below any commit acknowledged before.
func (m *groupMember) assigned(tps []client.TopicPartition) {
	for _, tp := range tps {
		delete(m.last, tp.Partition)
		m.g.w.h.Add(Op{Process: m.proc, Type: OK, F: FAssign, Partition: tp.Partition, Offset: -1})
	}
}

// revoked commits what the member read of the partitions it gives up.
func (m *groupMember) revoked(tps []client.TopicPartition) {
	ps := make([]int32, 0, len(tps))
	for _, tp := range tps {
		ps = append(ps, tp.Partition)
	}
	m.commit(ps)
	for _, p := range ps {
		delete(m.last, p)
	}
}

// commit commits, for each partition among ps the member read, the
// position after the last record returned, recording one invoke and one
// completion per partition under a fresh process.
func (m *groupMember) commit(ps []int32) {
	var recs []*client.Record
	for _, p := range ps {
		if r := m.last[p]; r != nil {
			recs = append(recs, r)
		}
	}
	if len(recs) == 0 {
		return
	}
	h := m.g.w.h
	procs := make([]int, len(recs))
	for i, r := range recs {
		procs[i] = h.Proc()
		h.Add(Op{Process: procs[i], Type: Invoke, F: FCommit, Partition: r.Partition, Offset: r.Offset + 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := m.gc.CommitRecords(ctx, recs...)
	cancel()
	typ := classifyCommit(err)
	for i, r := range recs {
		op := Op{Process: procs[i], Type: typ, F: FCommit, Partition: r.Partition, Offset: r.Offset + 1}
		if err != nil {
			op.Err = err.Error()
		}
		h.Add(op)
	}
}

// classifyCommit: a commit the coordinator refused (fenced member, not
// the coordinator, ...) stored nothing; a timeout or a lost connection may
// have.
func classifyCommit(err error) OpType {
	var e *client.Error
	switch {
	case err == nil:
		return OK
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), errors.Is(err, client.ErrClosed):
		return Info
	case errors.As(err, &e) && e.Kind() != nil:
		return Fail
	}
	return Info
}

// drain waits until the group has read every partition up to hw[p] (or
// the time is up), then stops the members.
func (g *groupWorkload) drain(hw map[int32]int64, deadline time.Time) {
	for time.Now().Before(deadline) && g.behind(hw) {
		time.Sleep(100 * time.Millisecond)
	}
	close(g.stop)
	g.wg.Wait()
}

func (g *groupWorkload) behind(hw map[int32]int64) bool {
	for p, want := range hw {
		if g.readTo[p].Load() < want {
			return true
		}
	}
	return false
}
