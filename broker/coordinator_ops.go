package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/group"
	"github.com/skeinlog/skein/partition"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// The coordinator's operations, in Go types: the gRPC Groups service and
// the Kafka listener both call these.

// FindCoordinator returns the broker leading a group's offsets partition
// and the partition, creating the offsets topic on first use.
func (c *coordinator) FindCoordinator(ctx context.Context, name string) (leader, part int32, err error) {
	if err := checkGroup(name); err != nil {
		return -1, -1, err
	}
	if err := c.ensureOffsetsTopic(ctx, name); err != nil {
		return -1, -1, err
	}
	t, _ := c.offsetsTopic()
	part = group.Partition(name, t.Config.Partitions)
	leader = t.Partitions[part].Leader
	if leader < 0 {
		return -1, part, fmt.Errorf("%w: the offsets partition of group %q (__consumer_offsets-%d) has no leader now", errNotReady, name, part)
	}
	return leader, part, nil
}

// ensureOffsetsTopic creates __consumer_offsets if it does not exist: on
// the controller directly, else by asking the controller (FindCoordinator
// there creates it).
func (c *coordinator) ensureOffsetsTopic(ctx context.Context, name string) error {
	if _, ok := c.offsetsTopic(); ok {
		return nil
	}
	alive := len(c.b.snapshot().Alive())
	rf := int32(min(3, max(1, alive)))
	minISR := min(2, rf)
	retention := c.cfg.OffsetsRetention.Milliseconds()
	noSize := int64(-1)
	maxRec := c.b.cfg.TopicDefaults.MaxRecordBytesLimit
	t, err := c.b.ctrl.CreateTopic(ctx, cluster.TopicSpec{
		Name: group.OffsetsTopic, Internal: true, Partitions: c.cfg.OffsetsPartitions, ReplicationFactor: rf,
		MinInsyncReplicas: &minISR, RetentionMs: &retention, RetentionBytes: &noSize, MaxRecordBytes: &maxRec,
	})
	switch {
	case err == nil:
		c.b.log.Info("offsets topic created", "partitions", c.cfg.OffsetsPartitions, "replication_factor", rf)
		if err := c.b.reconcile(); err != nil {
			return err
		}
		c.b.awaitTopicEverywhere(ctx, t, nil)
	case errors.Is(err, cluster.ErrTopicExists):
	case errors.Is(err, cluster.ErrNotController):
		err = c.b.peers.toController(ctx, func(ctx context.Context, local bool, _ pb.InternalClient) error {
			id := c.b.ctrl.ControllerID()
			if local || id == c.b.self.ID {
				return &cluster.NotControllerError{LeaderID: id}
			}
			conn, err := c.b.peers.connTo(id)
			if err != nil {
				return err
			}
			_, err = pb.NewGroupsClient(conn).FindCoordinator(ctx, &pb.FindCoordinatorRequest{Group: name})
			return err
		})
		if err != nil {
			return err
		}
	default:
		return err
	}
	c.b.awaitMetadata(ctx, func(s *cluster.Snapshot) bool { _, ok := s.Topics[group.OffsetsTopic]; return ok })
	if err := c.b.reconcile(); err != nil {
		return err
	}
	if _, ok := c.offsetsTopic(); !ok {
		return fmt.Errorf("%w: the offsets topic is being created; retry", errNotReady)
	}
	return nil
}

// Commit stores a group's offsets once the record is committed. A KIP-848
// member commits with its id and epoch (ref.Generation) and only
// partitions it holds, a classic member with its id and generation; an
// empty member id is an administrative commit, allowed only without
// members.
func (c *coordinator) Commit(ctx context.Context, name string, ref group.MemberRef, offsets []group.Entry) error {
	if err := checkGroup(name); err != nil {
		return err
	}
	if len(offsets) == 0 {
		return invalid("no offsets to commit")
	}
	tps := make([]group.TopicPartition, len(offsets))
	for i, e := range offsets {
		tps[i] = group.TopicPartition{Topic: e.Topic, Partition: e.Partition}
		if err := c.checkOffset(ctx, tps[i], e.Offset); err != nil {
			return err
		}
	}
	sh, err := c.shardOf(ctx, name)
	if err != nil {
		return err
	}
	sh.mu.Lock()
	err = checkCommit(sh, name, ref, tps)
	sh.mu.Unlock()
	if err != nil {
		return err
	}
	recs := make([]group.Record, len(offsets))
	now := time.Now().UnixMilli()
	for i, e := range offsets {
		e.Group, e.TimeMs, e.Source = name, now, 0
		recs[i] = group.Record{Type: group.TypeCommit, Entries: []group.Entry{e}}
	}
	start := time.Now()
	at, err := c.append(ctx, sh, recs)
	if err != nil {
		var nc *notCoordinatorError
		if errors.As(err, &nc) {
			nc.Group = name
		}
		return err
	}
	c.metrics.commitLatency.Observe(time.Since(start).Seconds())
	sh.mu.Lock()
	for i, r := range recs {
		sh.store.Apply(r, at+int64(i))
	}
	sh.mu.Unlock()
	return nil
}

// checkCommit applies the rules of the group's protocol to a commit. With
// sh.mu held.
func checkCommit(sh *shard, name string, ref group.MemberRef, tps []group.TopicPartition) error {
	if g := sh.classicView(name); g != nil {
		if ref.MemberID == "" && ref.InstanceID == "" {
			ref.Generation = -1
		}
		return g.CheckCommit(time.Now(), ref)
	}
	if g := sh.groups[name]; g != nil {
		return g.CheckCommit(ref.MemberID, ref.Generation, tps)
	}
	if ref.MemberID != "" {
		// Fenced for native clients, UNKNOWN_MEMBER_ID for Kafka's: both
		// join again.
		return fmt.Errorf("%w: %w: member %q is not in group %q (its session expired, it left, or the coordinator moved); nothing was committed", group.ErrFenced, group.ErrUnknownMember, ref.MemberID, name)
	}
	return nil
}

// checkOffset refuses offsets of partitions that do not exist and offsets
// past the partition's high watermark.
func (c *coordinator) checkOffset(ctx context.Context, tp group.TopicPartition, off int64) error {
	t, ok := c.b.snapshot().Topics[tp.Topic]
	if !ok || isInternalTopic(tp.Topic) {
		return invalid("commit for topic %q: no such topic", tp.Topic)
	}
	if tp.Partition < 0 || tp.Partition >= t.Config.Partitions {
		return invalid("commit for partition %d of topic %q: it has partitions 0 to %d", tp.Partition, tp.Topic, t.Config.Partitions-1)
	}
	if off < 0 {
		return invalid("commit of offset %d for %s: offsets are 0 or more", off, tp)
	}
	hw, err := c.logEnd(ctx, tp, off)
	if err != nil {
		return fmt.Errorf("%w: checking the log end of %s: %v", errNotReady, tp, err)
	}
	if off > hw {
		return invalid("commit of offset %d for %s is beyond its log end: commit an offset between 0 and %d", off, tp, hw)
	}
	return nil
}

// Fetch returns a group's committed offsets: of the given partitions
// (offset -1 for those without one), or all of them.
func (c *coordinator) Fetch(ctx context.Context, name string, tps []group.TopicPartition) (map[group.TopicPartition]group.Committed, error) {
	sh, err := c.shardOf(ctx, name)
	if err != nil {
		return nil, err
	}
	if _, err := c.append(ctx, sh, []group.Record{{Type: group.TypeBarrier}}); err != nil {
		return nil, err
	}
	sh.mu.Lock()
	offs := sh.store.Offsets(name)
	members := sh.members(name)
	sh.mu.Unlock()
	if offs == nil && members == 0 {
		return nil, fmt.Errorf("%w: group %q has no committed offsets and no members", errUnknownGroup, name)
	}
	if len(tps) == 0 {
		return offs, nil
	}
	out := make(map[group.TopicPartition]group.Committed, len(tps))
	for _, tp := range tps {
		if v, ok := offs[tp]; ok {
			out[tp] = v
		} else {
			out[tp] = group.Committed{Offset: -1}
		}
	}
	return out, nil
}

// Heartbeat applies a member heartbeat.
func (c *coordinator) Heartbeat(ctx context.Context, name string, req group.HeartbeatRequest) (group.HeartbeatResult, error) {
	sh, err := c.shardOf(ctx, name)
	if err != nil {
		return group.HeartbeatResult{}, err
	}
	topics := c.topics()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	g := sh.groups[name]
	if cg := sh.classic[name]; g == nil && cg != nil && cg.Len() > 0 && req.MemberEpoch != -1 {
		return group.HeartbeatResult{}, fmt.Errorf("%w: group %q has %d classic member(s) (JoinGroup/SyncGroup); a consumer-protocol member cannot join it until they leave", group.ErrNotConsumerGroup, name, cg.Len())
	}
	if g == nil {
		if req.MemberEpoch == -1 {
			return group.HeartbeatResult{MemberID: req.MemberID, Epoch: -1}, nil
		}
		if req.MemberEpoch != 0 {
			return group.HeartbeatResult{}, fmt.Errorf("%w: member %q is not in group %q (its session expired, it left, or the coordinator moved); rejoin with epoch 0", group.ErrFenced, req.MemberID, name)
		}
		g = group.NewGroup(name, cluster.NewID)
		g.ReplicaRacks = c.fetchRacks
		sh.groups[name] = g
	}
	before := g.Epoch
	res, err := g.Heartbeat(time.Now(), req, topics)
	c.metrics.rebalanced(name, before, g.Epoch)
	if g.Len() == 0 {
		delete(sh.groups, name)
	}
	return res, err
}

// GroupDescription is a group as operators see it.
type GroupDescription struct {
	Group       string
	State       string
	Coordinator int32
	Epoch       int32  // the KIP-848 group epoch, or the classic generation
	Protocol    string // "consumer" (KIP-848) or "classic"
	Members     []group.Member
	Partitions  []PartitionLag
}

// PartitionLag is one partition of a group: its committed offset (-1
// none), log end (high watermark; -1 unknown), lag and owner.
type PartitionLag struct {
	group.TopicPartition
	Committed, LogEnd, Lag int64
	Member                 string
}

// Describe returns a group's members, assignment, offsets and lag.
func (c *coordinator) Describe(ctx context.Context, name string) (GroupDescription, error) {
	sh, err := c.shardOf(ctx, name)
	if err != nil {
		return GroupDescription{}, err
	}
	d := GroupDescription{Group: name, State: "Empty", Coordinator: c.b.self.ID, Protocol: "consumer"}
	sh.mu.Lock()
	offs := sh.store.Offsets(name)
	if g := sh.groups[name]; g != nil {
		d.State, d.Epoch, d.Members = g.State(), g.Epoch, g.Members()
	}
	if g := sh.classicView(name); g != nil {
		d.State, d.Epoch, d.Members, d.Protocol = g.State, g.Generation, g.AsMembers(), "classic"
	}
	sh.mu.Unlock()
	if offs == nil && len(d.Members) == 0 {
		return d, fmt.Errorf("%w: group %q has no committed offsets and no members", errUnknownGroup, name)
	}
	owner := map[group.TopicPartition]string{}
	for _, m := range d.Members {
		for _, tp := range m.Assigned {
			owner[tp] = m.ID
		}
	}
	seen := map[group.TopicPartition]bool{}
	var all []group.TopicPartition
	for tp := range offs {
		seen[tp] = true
		all = append(all, tp)
	}
	for tp := range owner {
		if !seen[tp] {
			all = append(all, tp)
		}
	}
	sortedTPs(all)
	for _, tp := range all {
		pl := PartitionLag{TopicPartition: tp, Committed: -1, LogEnd: -1, Lag: -1, Member: owner[tp]}
		if v, ok := offs[tp]; ok {
			pl.Committed = v.Offset
		}
		if hw, err := c.logEnd(ctx, tp, 1<<62); err == nil {
			pl.LogEnd = hw
			if pl.Committed >= 0 {
				pl.Lag = max(0, hw-pl.Committed)
			}
		}
		d.Partitions = append(d.Partitions, pl)
	}
	return d, nil
}

// GroupSummary is one line of a group list.
type GroupSummary struct {
	Group    string
	State    string
	Members  int
	Protocol string // "consumer" (KIP-848) or "classic"
}

// List returns the groups of every offsets partition this broker leads.
func (c *coordinator) List(ctx context.Context) ([]GroupSummary, error) {
	t, ok := c.offsetsTopic()
	if !ok {
		return nil, nil
	}
	var out []GroupSummary
	for _, pm := range t.Partitions {
		r := c.b.localReplica(group.OffsetsTopic, pm.Partition)
		if r == nil || r.p.Role() != partition.RoleLeader {
			continue
		}
		sh, err := c.shardAt(ctx, pm.Partition)
		if err != nil {
			var nc *notCoordinatorError
			if errors.As(err, &nc) {
				continue
			}
			return nil, err
		}
		sh.mu.Lock()
		names := map[string]bool{}
		for _, g := range sh.store.Groups() {
			names[g] = true
		}
		for g := range sh.groups {
			names[g] = true
		}
		for g := range sh.classic {
			names[g] = true
		}
		for name := range names {
			s := GroupSummary{Group: name, State: "Empty", Protocol: "consumer"}
			if g := sh.groups[name]; g != nil {
				s.State, s.Members = g.State(), g.Len()
			}
			if g := sh.classicView(name); g != nil {
				s.State, s.Members, s.Protocol = g.State, g.Len(), "classic"
			}
			out = append(out, s)
		}
		sh.mu.Unlock()
	}
	return out, nil
}

// Delete removes a group's committed offsets; only without members.
func (c *coordinator) Delete(ctx context.Context, name string) error {
	sh, err := c.shardOf(ctx, name)
	if err != nil {
		return err
	}
	sh.mu.Lock()
	g := sh.groups[name]
	if g != nil {
		err = g.CheckEmpty("delete the group")
	}
	if cg := sh.classic[name]; cg != nil && cg.Len() > 0 {
		err = fmt.Errorf("%w: cannot delete group %q while it has %d classic member(s); stop them first", group.ErrNotEmpty, name, cg.Len())
	}
	exists := sh.store.Offsets(name) != nil
	sh.mu.Unlock()
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("%w: group %q has no committed offsets and no members", errUnknownGroup, name)
	}
	rec := group.Record{Type: group.TypeDelete, Group: name}
	at, err := c.append(ctx, sh, []group.Record{rec})
	if err != nil {
		return err
	}
	sh.mu.Lock()
	sh.store.Apply(rec, at)
	sh.mu.Unlock()
	c.metrics.forget(name)
	return nil
}

// members counts a group's members of either protocol. With sh.mu held.
func (sh *shard) members(name string) int {
	n := 0
	if g := sh.groups[name]; g != nil {
		n += g.Len()
	}
	if g := sh.classic[name]; g != nil {
		n += g.Len()
	}
	return n
}
