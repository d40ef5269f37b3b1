package client

import (
	"context"
	"fmt"
	"slices"

	"github.com/skeinlog/skein/proto/skeinv1"
)

// ReassignTarget is one partition's replica set in a reassignment plan;
// the first replica is its preferred leader. Its JSON form is the plan
// file's (broker reassign plan / execute).
type ReassignTarget struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Replicas  []int32 `json:"replicas"`
}

// ReassignPlan is a plan file.
type ReassignPlan struct {
	Version    int              `json:"version"`
	Partitions []ReassignTarget `json:"partitions"`
}

// ReassignProgress is one moving partition.
type ReassignProgress struct {
	Topic     string
	Partition int32
	Replicas  []int32
	Target    []int32
	ISR       []int32
	Leader    int32
	// State: catching-up, moving-leader, finishing or offline.
	State string
	// BytesLeft the new replicas lack (-1: not known); ETASeconds until
	// caught up (-1: not known).
	BytesLeft  int64
	ETASeconds float64
	Cancelled  bool
}

// ReassignStatus is the reassignment state of the cluster.
type ReassignStatus struct {
	Partitions []ReassignProgress
	Draining   []int32
	Throttle   string
}

func targetsToProto(ts []ReassignTarget) []*skeinv1.ReassignTarget {
	out := make([]*skeinv1.ReassignTarget, len(ts))
	for i, t := range ts {
		out[i] = &skeinv1.ReassignTarget{Topic: t.Topic, Partition: t.Partition, Replicas: slices.Clone(t.Replicas)}
	}
	return out
}

func targetsFromProto(ps []*skeinv1.ReassignTarget) []ReassignTarget {
	out := make([]ReassignTarget, len(ps))
	for i, p := range ps {
		out[i] = ReassignTarget{Topic: p.GetTopic(), Partition: p.GetPartition(), Replicas: p.GetReplicas()}
	}
	return out
}

// PlanReassignment proposes a balanced placement of the topics' replicas
// (all topics when none are named) over the brokers named.
func (c *Client) PlanReassignment(ctx context.Context, brokers []int32, topics []string) ([]ReassignTarget, error) {
	var resp *skeinv1.PlanReassignmentResponse
	err := c.callAny(ctx, "plan reassignment", func(ctx context.Context, cl skeinv1.SkeinClient) (err error) {
		resp, err = cl.PlanReassignment(ctx, &skeinv1.PlanReassignmentRequest{Brokers: brokers, Topics: topics})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("plan reassignment: %w", err)
	}
	return targetsFromProto(resp.GetPartitions()), nil
}

// ExecuteReassignment starts moving the partitions of plan, after setting
// the replication throttle when throttle is not empty ("50MB/s", "off").
// It returns the partitions that move.
func (c *Client) ExecuteReassignment(ctx context.Context, plan []ReassignTarget, throttle string) ([]ReassignTarget, error) {
	var resp *skeinv1.ExecuteReassignmentResponse
	req := &skeinv1.ExecuteReassignmentRequest{Partitions: targetsToProto(plan), Throttle: throttle}
	err := c.callAny(ctx, "execute reassignment", func(ctx context.Context, cl skeinv1.SkeinClient) (err error) {
		resp, err = cl.ExecuteReassignment(ctx, req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("execute reassignment: %w", err)
	}
	c.refreshAsync(c.meta.snap.Load().gen)
	return targetsFromProto(resp.GetMoving()), nil
}

// ReassignmentStatus reports the moving partitions.
func (c *Client) ReassignmentStatus(ctx context.Context) (ReassignStatus, error) {
	var resp *skeinv1.ReassignmentStatusResponse
	err := c.callAny(ctx, "reassignment status", func(ctx context.Context, cl skeinv1.SkeinClient) (err error) {
		resp, err = cl.ReassignmentStatus(ctx, &skeinv1.ReassignmentStatusRequest{})
		return err
	})
	if err != nil {
		return ReassignStatus{}, fmt.Errorf("reassignment status: %w", err)
	}
	st := ReassignStatus{Draining: resp.GetDraining(), Throttle: resp.GetThrottle()}
	for _, p := range resp.GetPartitions() {
		st.Partitions = append(st.Partitions, ReassignProgress{Topic: p.GetTopic(), Partition: p.GetPartition(), Replicas: p.GetReplicas(),
			Target: p.GetTarget(), ISR: p.GetIsr(), Leader: p.GetLeader(), State: p.GetState(), BytesLeft: p.GetBytesLeft(),
			ETASeconds: p.GetEtaSeconds(), Cancelled: p.GetCancelled()})
	}
	return st, nil
}

// CancelReassignment sends the moving partitions back to their original
// replicas and stops any decommission; it returns how many head back.
func (c *Client) CancelReassignment(ctx context.Context) (int, error) {
	var resp *skeinv1.CancelReassignmentResponse
	err := c.callAny(ctx, "cancel reassignment", func(ctx context.Context, cl skeinv1.SkeinClient) (err error) {
		resp, err = cl.CancelReassignment(ctx, &skeinv1.CancelReassignmentRequest{})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("cancel reassignment: %w", err)
	}
	return int(resp.GetPartitions()), nil
}

// Decommission moves every replica off broker id; the controller then
// removes it from its quorum and the cluster. It returns the moves.
func (c *Client) Decommission(ctx context.Context, id int32) ([]ReassignTarget, error) {
	var resp *skeinv1.DecommissionResponse
	err := c.callAny(ctx, "decommission", func(ctx context.Context, cl skeinv1.SkeinClient) (err error) {
		resp, err = cl.Decommission(ctx, &skeinv1.DecommissionRequest{BrokerId: id})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("decommission broker %d: %w", id, err)
	}
	return targetsFromProto(resp.GetMoving()), nil
}
