package client

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/skeinlog/skein/proto/skeinv1"
)

// GroupListing is one group of ListGroups.
type GroupListing struct {
	Group       string
	State       string // Empty, Stable or Reconciling
	Members     int
	Coordinator int32
}

// GroupMember is one member of a group.
type GroupMember struct {
	MemberID   string
	Epoch      int32
	ClientID   string
	Host       string
	Rack       string
	Topics     []string
	TopicRegex string
	Assigned   []TopicPartition
}

// GroupPartition is one partition of a group: its committed offset (-1
// none), the partition's log end (high watermark; -1 unknown), the lag
// (-1 unknown or nothing committed) and the member owning it ("" none).
type GroupPartition struct {
	TopicPartition
	Committed int64
	LogEnd    int64
	Lag       int64
	MemberID  string
}

// GroupDescription is the answer of DescribeGroup.
type GroupDescription struct {
	Group       string
	State       string
	Coordinator int32
	Epoch       int32
	Members     []GroupMember
	Partitions  []GroupPartition
}

// atCoordinator runs fn at the coordinator of group, finding it first and
// again when it moved, retrying retriable failures until ctx is done or,
// without a deadline, the request timeout has passed.
func (c *Client) atCoordinator(ctx context.Context, group string, fn func(context.Context, skeinv1.GroupsClient) error) error {
	if err := CheckGroupName(group); err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = c.withTimeout(ctx)
		defer cancel()
	}
	for attempt := 1; ; attempt++ {
		var fc *skeinv1.FindCoordinatorResponse
		err := c.callAnyGroups(ctx, func(ctx context.Context, gc skeinv1.GroupsClient) (err error) {
			fc, err = gc.FindCoordinator(ctx, &skeinv1.FindCoordinatorRequest{Group: group})
			return err
		})
		if err == nil {
			var gc skeinv1.GroupsClient
			if gc, err = c.groupsConn(fc.Addr); err == nil {
				actx, cancel := c.withTimeout(ctx)
				err = fromRPC(fn(actx, gc))
				cancel()
			}
		}
		if err == nil || !IsRetriable(err) {
			return err
		}
		t := time.NewTimer(backoff(c.cfg.retryBackoff, attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("group %q: %w (last: %v)", group, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// ListGroups lists the cluster's groups: each broker lists the groups it
// coordinates, and every broker is asked.
func (c *Client) ListGroups(ctx context.Context) ([]GroupListing, error) {
	md, err := c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	var out []GroupListing
	for _, b := range md.Brokers {
		gc, err := c.groupsConn(b.Addr)
		if err != nil {
			return nil, err
		}
		actx, cancel := c.withTimeout(ctx)
		resp, err := gc.ListGroups(actx, &skeinv1.ListGroupsRequest{})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("list groups at broker %d (%s): %w", b.ID, b.Addr, fromRPC(err))
		}
		for _, g := range resp.Groups {
			out = append(out, GroupListing{Group: g.Group, State: g.State, Members: int(g.Members), Coordinator: g.Coordinator})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out, nil
}

func fromProtoTPs(in []*skeinv1.TopicPartitions) []TopicPartition {
	var out []TopicPartition
	for _, t := range in {
		for _, p := range t.Partitions {
			out = append(out, TopicPartition{t.Topic, p})
		}
	}
	return out
}

// DescribeGroup returns a group's state, members and, per partition, the
// committed offset, log end and lag. ErrUnknownGroup when it has neither
// members nor committed offsets.
func (c *Client) DescribeGroup(ctx context.Context, group string) (GroupDescription, error) {
	var resp *skeinv1.DescribeGroupResponse
	err := c.atCoordinator(ctx, group, func(ctx context.Context, gc skeinv1.GroupsClient) (err error) {
		resp, err = gc.DescribeGroup(ctx, &skeinv1.DescribeGroupRequest{Group: group})
		return err
	})
	if err != nil {
		return GroupDescription{}, err
	}
	d := GroupDescription{Group: resp.Group, State: resp.State, Coordinator: resp.Coordinator, Epoch: resp.GroupEpoch}
	for _, m := range resp.Members {
		d.Members = append(d.Members, GroupMember{MemberID: m.MemberId, Epoch: m.MemberEpoch, ClientID: m.ClientId, Host: m.Host,
			Rack: m.Rack, Topics: m.Topics, TopicRegex: m.TopicRegex, Assigned: fromProtoTPs(m.Assigned)})
	}
	for _, p := range resp.Partitions {
		d.Partitions = append(d.Partitions, GroupPartition{TopicPartition: TopicPartition{p.Topic, p.Partition},
			Committed: p.CommittedOffset, LogEnd: p.LogEndOffset, Lag: p.Lag, MemberID: p.MemberId})
	}
	return d, nil
}

// DeleteGroup removes a group's committed offsets. It fails with
// ErrGroupNotEmpty while the group has members, ErrUnknownGroup when there
// is nothing to delete.
func (c *Client) DeleteGroup(ctx context.Context, group string) error {
	return c.atCoordinator(ctx, group, func(ctx context.Context, gc skeinv1.GroupsClient) error {
		_, err := gc.DeleteGroup(ctx, &skeinv1.DeleteGroupRequest{Group: group})
		return err
	})
}

// GroupOffsets returns a group's committed offsets.
func (c *Client) GroupOffsets(ctx context.Context, group string) (map[TopicPartition]int64, error) {
	out := map[TopicPartition]int64{}
	err := c.atCoordinator(ctx, group, func(ctx context.Context, gc skeinv1.GroupsClient) error {
		resp, err := gc.FetchOffsets(ctx, &skeinv1.FetchOffsetsRequest{Group: group})
		if err != nil {
			return err
		}
		for _, o := range resp.Offsets {
			out[TopicPartition{o.Topic, o.Partition}] = o.Offset
		}
		return nil
	})
	return out, err
}

// SetGroupOffsets stores committed offsets for a group that has no members
// (Kafka's reset-offsets): ErrGroupNotEmpty, listing them, otherwise. An
// offset past a partition's high watermark, or of a partition that does
// not exist, fails with ErrInvalidRequest naming the valid range; nothing
// is stored then.
func (c *Client) SetGroupOffsets(ctx context.Context, group string, offsets map[TopicPartition]int64) error {
	req := &skeinv1.CommitOffsetsRequest{Group: group}
	for tp, o := range offsets {
		req.Offsets = append(req.Offsets, &skeinv1.OffsetCommit{Topic: tp.Topic, Partition: tp.Partition, Offset: o})
	}
	sort.Slice(req.Offsets, func(i, j int) bool {
		a, b := req.Offsets[i], req.Offsets[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	return c.atCoordinator(ctx, group, func(ctx context.Context, gc skeinv1.GroupsClient) error {
		_, err := gc.CommitOffsets(ctx, req)
		return err
	})
}

// ListInternalTopics lists the brokers' internal topics (names starting
// with "__", such as __consumer_offsets), which ListTopics leaves out.
func (c *Client) ListInternalTopics(ctx context.Context) ([]TopicInfo, error) {
	var resp *skeinv1.ListTopicsResponse
	err := c.callAny(ctx, "list topics", func(ctx context.Context, cl skeinv1.SkeinClient) (err error) {
		resp, err = cl.ListTopics(ctx, &skeinv1.ListTopicsRequest{Internal: true})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var out []TopicInfo
	for _, t := range resp.GetTopics() {
		if strings.HasPrefix(t.GetName(), "__") {
			out = append(out, topicInfoFromProto(t))
		}
	}
	return out, nil
}
