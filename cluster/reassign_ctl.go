package cluster

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// Reassign checks targets against the metadata and commits them as a
// reassignment; the controller loop drives it to completion. It returns
// the partitions that move (targets equal to the current replicas are
// left out; none at all is an error).
func (c *Controller) Reassign(ctx context.Context, targets []PartitionTarget) ([]PartitionTarget, error) {
	if !c.IsController() {
		return nil, &NotControllerError{LeaderID: c.ControllerID()}
	}
	moving, err := ValidateTargets(c.Snapshot(), targets)
	if err != nil {
		return nil, err
	}
	if len(moving) == 0 {
		return nil, fmt.Errorf("%w: every partition of the plan already has the replicas it names: nothing to move", ErrInvalidReassign)
	}
	if _, err := c.propose(ctx, &command{Op: opReassign, Targets: moving}); err != nil {
		return nil, err
	}
	c.log.Info("reassignment started", "partitions", len(moving))
	return moving, nil
}

// CancelReassign turns every running reassignment back to its original
// replicas (the replicas added so far are removed) and stops draining.
// It returns how many partitions head back.
func (c *Controller) CancelReassign(ctx context.Context) (int, error) {
	if !c.IsController() {
		return 0, &NotControllerError{LeaderID: c.ControllerID()}
	}
	if s := c.Snapshot(); !s.Reassigning() && !slices.ContainsFunc(s.Brokers, func(b BrokerInfo) bool { return b.Draining }) {
		return 0, fmt.Errorf("%w: nothing to cancel", ErrNoReassign)
	}
	res, err := c.propose(ctx, &command{Op: opCancelReassign})
	if err == nil {
		c.log.Info("reassignment cancelled", "partitions", res.applied)
	}
	return res.applied, err
}

// Decommission starts moving every replica off broker id; once it holds
// none, the controller removes it from its quorum and from the cluster.
// It returns the partitions that move.
func (c *Controller) Decommission(ctx context.Context, id int32) ([]PartitionTarget, error) {
	if !c.IsController() {
		return nil, &NotControllerError{LeaderID: c.ControllerID()}
	}
	s := c.Snapshot()
	if b, ok := s.Broker(id); ok && b.Draining {
		return nil, fmt.Errorf("%w: broker %d is being decommissioned already", ErrReassignRunning, id)
	}
	if s.Reassigning() {
		return nil, fmt.Errorf("%w: wait for it to finish (broker reassign status) or cancel it (broker reassign cancel)", ErrReassignRunning)
	}
	plan, err := PlanDecommission(s, id)
	if err != nil {
		return nil, err
	}
	moving, err := ValidateTargets(s, plan)
	if err != nil && len(plan) > 0 {
		return nil, err
	}
	if _, err := c.propose(ctx, &command{Op: opReassign, Targets: moving, Drain: &id}); err != nil {
		return nil, err
	}
	c.log.Info("decommission started", "broker", id, "partitions", len(moving))
	return moving, nil
}

// driveReassignments commits the next step of every running reassignment.
func (c *Controller) driveReassignments(ctx context.Context) {
	s := c.Snapshot()
	changes := reassignSteps(s, usableIn(s))
	if len(changes) == 0 {
		return
	}
	res, err := c.propose(ctx, &command{Op: opChange, Changes: changes})
	if err != nil {
		return
	}
	done := 0
	for _, ch := range changes {
		if ch.EndReassign {
			done++
		}
	}
	c.log.Info("reassignment steps", "applied", res.applied, "partitions_finished", done)
}

// removeDrained takes decommissioned brokers that hold no replica out of
// the cluster and then out of the controller quorum. The controller
// itself hands its role over first; its successor removes it.
func (c *Controller) removeDrained(ctx context.Context) {
	for _, id := range drained(c.Snapshot()) {
		if id == c.cfg.Self.ID {
			c.log.Info("this broker is decommissioned: handing the controller role over")
			if err := c.raft.LeadershipTransfer().Error(); err != nil {
				c.log.Warn("could not hand off the controller role", "err", err)
			}
			return
		}
		if _, err := c.propose(ctx, &command{Op: opRemoveBroker, BrokerID: id}); err != nil {
			return
		}
		c.log.Info("decommissioned broker removed from the cluster", "broker", id)
	}
	c.dropRemovedServers()
}

// dropRemovedServers removes decommissioned brokers from the Raft
// configuration.
func (c *Controller) dropRemovedServers() {
	s := c.Snapshot()
	if len(s.Removed) == 0 {
		return
	}
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	for _, srv := range f.Configuration().Servers {
		n, err := strconv.Atoi(string(srv.ID))
		if err != nil || !slices.ContainsFunc(s.Removed, func(r RemovedBroker) bool { return r.ID == int32(n) }) {
			continue
		}
		if _, registered := s.Broker(int32(n)); registered {
			continue // an id reused by a new broker
		}
		if err := c.raft.RemoveServer(srv.ID, 0, 5*time.Second).Error(); err != nil {
			c.log.Warn("could not remove a decommissioned broker from the controller quorum", "broker", n, "err", err)
			return
		}
		c.log.Info("decommissioned broker removed from the controller quorum", "broker", n)
	}
}

// promoteNonvoters makes non-voters voters while the quorum has fewer than
// MaxVoters (after a voter was decommissioned).
func (c *Controller) promoteNonvoters(alive map[int32]Member) {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	voters := 0
	var candidates []raft.Server
	for _, srv := range f.Configuration().Servers {
		n, _ := strconv.Atoi(string(srv.ID))
		if srv.Suffrage == raft.Voter {
			voters++
		} else if m, ok := alive[int32(n)]; ok && m.Meta.RaftAddr == string(srv.Address) {
			candidates = append(candidates, srv)
		}
	}
	for _, srv := range candidates {
		if voters >= c.cfg.MaxVoters {
			return
		}
		if err := c.raft.AddVoter(srv.ID, srv.Address, 0, 5*time.Second).Error(); err != nil {
			c.log.Warn("could not promote a broker to controller voter", "broker", srv.ID, "err", err)
			return
		}
		voters++
		c.log.Info("broker promoted to controller voter", "broker", srv.ID)
	}
}
