package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/group"
)

// The classic group protocol (Kafka's JoinGroup, SyncGroup, Heartbeat,
// LeaveGroup): the decisions are group.Classic's; the coordinator holds
// the groups in their shard, wakes waiting joins and syncs when a group
// changes, and applies time in its loop.
//
// A group is classic or KIP-848 at a time, as in Kafka without a migration
// policy: a JoinGroup for a group with KIP-848 members is
// INCONSISTENT_GROUP_PROTOCOL, a KIP-848 heartbeat for a group with
// classic members GROUP_ID_NOT_FOUND. Once a group has no members either
// protocol may take it; its committed offsets stay.

// changed wakes every request waiting on the shard's classic groups.
// Called with sh.mu held.
func (sh *shard) changed() {
	if sh.wake != nil {
		close(sh.wake)
	}
	sh.wake = make(chan struct{})
}

// await waits, with sh.mu held on entry and exit, until check reports
// done after a change, ctx ends or the time runs out.
func (sh *shard) await(ctx context.Context, limit time.Duration, check func() bool) error {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		if sh.dropped {
			return &notCoordinatorError{LeaderID: -1}
		}
		if sh.wake == nil {
			sh.wake = make(chan struct{})
		}
		ch := sh.wake
		sh.mu.Unlock()
		var err error
		select {
		case <-ch:
		case <-ctx.Done():
			err = ctx.Err()
		case <-timer.C:
			err = context.DeadlineExceeded
		}
		sh.mu.Lock()
		if err != nil {
			return err
		}
		if !sh.dropped && check() {
			return nil
		}
	}
}

// classicOf returns the shard and classic group of a name, creating the
// group when create is set (refusing if KIP-848 members hold it).
func (c *coordinator) classicOf(ctx context.Context, name string, create bool) (*shard, *group.Classic, error) {
	sh, err := c.shardOf(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	sh.mu.Lock()
	g := sh.classic[name]
	if create {
		if kg := sh.groups[name]; kg != nil && kg.Len() > 0 {
			sh.mu.Unlock()
			return nil, nil, fmt.Errorf("%w: group %q has %d member(s) using the consumer protocol (KIP-848, ConsumerGroupHeartbeat); a classic member cannot join it", group.ErrInconsistentProtocol, name, kg.Len())
		}
		if g == nil {
			g = group.NewClassic(name, cluster.NewID)
			sh.classic[name] = g
		}
	}
	if g == nil {
		sh.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: group %q has no classic members; join first", group.ErrUnknownMember, name)
	}
	return sh, g, nil
}

// settle finishes an operation on a classic group: wakes waiters, counts
// rebalances and forgets a group left empty. With sh.mu held.
func (c *coordinator) settle(sh *shard, g *group.Classic, before int32) {
	sh.changed()
	c.metrics.rebalanced(g.Name, before, g.Generation)
	if g.Idle() && g.State == group.StateEmpty && sh.classic[g.Name] == g {
		delete(sh.classic, g.Name)
	}
}

// JoinGroup applies a JoinGroup and waits, at most the rebalance timeout
// and a little, for the rebalance it joined to complete.
func (c *coordinator) JoinGroup(ctx context.Context, name string, req group.JoinRequest) (group.JoinResult, error) {
	sh, g, err := c.classicOf(ctx, name, true)
	if err != nil {
		return group.JoinResult{}, err
	}
	defer sh.mu.Unlock()
	before := g.Generation
	res, done, err := g.Join(time.Now(), req)
	c.settle(sh, g, before)
	if done {
		return res, err
	}
	id := res.MemberID
	werr := sh.await(ctx, req.RebalanceTimeout+5*time.Second, func() bool {
		if sh.classic[name] != g {
			res, done, err = group.JoinResult{}, true, fmt.Errorf("%w: group %q emptied while member %s waited; join again", group.ErrUnknownMember, name, id)
		} else {
			res, done, err = g.JoinAnswer(id)
		}
		return done
	})
	var nc *notCoordinatorError
	if errors.As(werr, &nc) {
		nc.Group = name
		return group.JoinResult{}, werr
	}
	if werr != nil {
		return group.JoinResult{}, fmt.Errorf("%w: the rebalance of group %q did not complete in time; join again", group.ErrRebalanceInProgress, name)
	}
	return res, err
}

// SyncGroup applies a SyncGroup and waits, a follower until the leader's
// assignment arrives.
func (c *coordinator) SyncGroup(ctx context.Context, name string, req group.SyncRequest) ([]byte, error) {
	sh, g, err := c.classicOf(ctx, name, false)
	if err != nil {
		return nil, err
	}
	defer sh.mu.Unlock()
	before := g.Generation
	a, done, err := g.Sync(time.Now(), req)
	c.settle(sh, g, before)
	if done {
		return a, err
	}
	werr := sh.await(ctx, group.MaxRebalanceTimeout, func() bool {
		if sh.classic[name] != g {
			a, done, err = nil, true, fmt.Errorf("%w: group %q emptied; join again", group.ErrUnknownMember, name)
		} else {
			a, done, err = g.SyncAnswer(req.MemberRef)
		}
		return done
	})
	var nc *notCoordinatorError
	if errors.As(werr, &nc) {
		nc.Group = name
		return nil, werr
	}
	if werr != nil {
		return nil, fmt.Errorf("%w: no assignment for group %q yet; join again", group.ErrRebalanceInProgress, name)
	}
	return a, err
}

// ClassicHeartbeat keeps a classic member's session.
func (c *coordinator) ClassicHeartbeat(ctx context.Context, name string, ref group.MemberRef) error {
	sh, g, err := c.classicOf(ctx, name, false)
	if err != nil {
		return err
	}
	defer sh.mu.Unlock()
	return g.Heartbeat(time.Now(), ref)
}

// LeaveGroup removes classic members; one error per member.
func (c *coordinator) LeaveGroup(ctx context.Context, name string, refs []group.MemberRef) ([]error, error) {
	sh, g, err := c.classicOf(ctx, name, false)
	if err != nil {
		return nil, err
	}
	defer sh.mu.Unlock()
	before := g.Generation
	errs := g.Leave(time.Now(), refs)
	c.settle(sh, g, before)
	return errs, nil
}

// tickClassic applies time to a shard's classic groups. With sh.mu held.
func (c *coordinator) tickClassic(sh *shard, now time.Time) {
	for name, g := range sh.classic {
		before := g.Generation
		changed, gone := g.Tick(now)
		if len(gone) > 0 {
			c.b.log.Info("classic group members removed", "group", name, "members", gone, "state", g.State)
		}
		if changed {
			c.settle(sh, g, before)
		}
	}
}

// DescribeKafka describes a group for Kafka's DescribeGroups: a classic
// group as it is, a KIP-848 group with its members' subscriptions and
// assignments, a group with only offsets as Empty, and an unknown one as
// Dead.
func (c *coordinator) DescribeKafka(ctx context.Context, name string) (group.Description, error) {
	sh, err := c.shardOf(ctx, name)
	if err != nil {
		return group.Description{}, err
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if g := sh.classicView(name); g != nil {
		return group.Description{State: g.State, ProtocolType: g.ProtocolType, Protocol: g.Protocol, Members: g.Members()}, nil
	}
	if g := sh.groups[name]; g != nil && g.Len() > 0 {
		d := group.Description{State: g.State(), ProtocolType: "consumer", Protocol: "uniform"}
		for _, m := range g.Members() {
			d.Members = append(d.Members, group.ClassicMember{ID: m.ID, ClientID: m.ClientID, Host: m.Host,
				Topics: m.Topics, Assigned: m.Assigned})
		}
		return d, nil
	}
	if sh.store.Offsets(name) != nil {
		return group.Description{State: group.StateEmpty, ProtocolType: "consumer"}, nil
	}
	return group.Description{State: group.StateDead}, nil
}

// classicView is the group's classic side when it is the one that counts:
// it has members, or the group has no KIP-848 side. With sh.mu held.
func (sh *shard) classicView(name string) *group.Classic {
	g := sh.classic[name]
	if g == nil || g.Len() == 0 && sh.groups[name] != nil {
		return nil
	}
	return g
}
