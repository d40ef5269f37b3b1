package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/proto/skeinv1"
)

// TopicConfig is a topic's configuration. In CreateTopic a zero field means
// "the broker's default" (partitions 1, replication factor 1 on a single
// broker, min.insync.replicas min(2, replication factor), retention 7 days
// and unlimited bytes, max record bytes 1 MiB). Retention fields use -1 for
// "never" / "unlimited".
type TopicConfig struct {
	// Partitions is the number of partitions.
	Partitions int32
	// ReplicationFactor is how many brokers hold each partition.
	ReplicationFactor int32
	// MinInsyncReplicas is how many in-sync replicas an acks=all write
	// needs; fewer make it fail with ErrNotEnoughReplicas.
	MinInsyncReplicas int32
	// RetentionMs is how long records are kept (-1: for ever).
	RetentionMs int64
	// RetentionBytes caps each partition's size (-1: unlimited).
	RetentionBytes int64
	// MaxRecordBytes caps a record's key, value and headers.
	MaxRecordBytes int32
	// KeyIndex: each partition keeps a key index, for ProduceIfKeys and
	// GetKey. Fixed when the topic is created.
	KeyIndex bool
	// CleanupPolicy is "delete" (retention deletes old segments; "" in
	// CreateTopic), "compact" (the log cleaner keeps the latest record of
	// every key; every record needs a key) or "compact,delete".
	CleanupPolicy string
	// DeleteRetentionMs is how long a compacted topic keeps a tombstone
	// (a record with a null value) that is its key's latest record (0 in
	// CreateTopic: 24 hours).
	DeleteRetentionMs int64
}

// matches reports whether a topic's configuration is what cfg asks for,
// counting only the settings cfg names (its zero values are defaults).
func (cfg TopicConfig) matches(got TopicConfig) bool {
	same := func(want, have int64) bool { return want == 0 || want == have }
	policy := cfg.CleanupPolicy
	if policy == "delete" {
		policy = ""
	}
	return same(int64(cfg.Partitions), int64(got.Partitions)) && same(int64(cfg.ReplicationFactor), int64(got.ReplicationFactor)) &&
		same(int64(cfg.MinInsyncReplicas), int64(got.MinInsyncReplicas)) && same(cfg.RetentionMs, got.RetentionMs) &&
		same(cfg.RetentionBytes, got.RetentionBytes) && same(int64(cfg.MaxRecordBytes), int64(got.MaxRecordBytes)) &&
		cfg.KeyIndex == got.KeyIndex && same(cfg.DeleteRetentionMs, got.DeleteRetentionMs) &&
		(cfg.CleanupPolicy == "" || policy == got.CleanupPolicy)
}

// TopicInfo is a topic's metadata: its configuration and where its
// partitions are led.
type TopicInfo struct {
	// Name is the topic's name.
	Name string
	// ID is unique per creation: a topic deleted and created again has a
	// new one.
	ID string
	// Config is the topic's configuration, defaults filled in.
	Config TopicConfig
	// Partitions are the topic's partitions, in order.
	Partitions []PartitionInfo
}

// PartitionInfo is one partition's placement.
type PartitionInfo struct {
	// Partition is the partition's number.
	Partition int32
	// Leader is the leading broker's id, -1 when the partition has none.
	Leader int32
	// LeaderEpoch counts the partition's leadership changes.
	LeaderEpoch int32
	// Replicas are the brokers assigned the partition, preferred leader
	// first.
	Replicas []int32
	// ISR are the in-sync replicas: those an acks=all write waits for.
	ISR []int32
}

// PartitionStatus is one partition's live state, from DescribeTopic.
type PartitionStatus struct {
	PartitionInfo
	// LogStartOffset, HighWatermark and LogEndOffset are the oldest
	// record kept, the end of the committed records, and the end of the
	// leader's log.
	LogStartOffset int64
	HighWatermark  int64
	LogEndOffset   int64
	// SizeBytes is the size of the leader's log.
	SizeBytes int64
	// Error is set when the broker could not reach the leader for the
	// offsets; the placement fields are still valid.
	Error string
}

// TopicDescription is a topic with the live state of each partition.
type TopicDescription struct {
	TopicInfo
	// Status is each partition's live state, in order.
	Status []PartitionStatus
}

// BrokerInfo is one broker of the cluster.
type BrokerInfo struct {
	// ID is the broker's id.
	ID int32
	// Addr is the broker's client address, host:port.
	Addr string
	// Rack is the broker's rack, or "".
	Rack string
}

// ClusterMetadata is the answer of Metadata.
type ClusterMetadata struct {
	// ClusterID identifies the cluster.
	ClusterID string
	// ControllerID is the controller's broker id, -1 when none is elected.
	ControllerID int32
	// Brokers are the live brokers.
	Brokers []BrokerInfo
	// Topics are the topics asked for (all of them when none was named).
	Topics []TopicInfo
}

func topicInfoFromProto(t *skeinv1.TopicMetadata) TopicInfo {
	c := t.GetConfig()
	ti := TopicInfo{
		Name: t.GetName(),
		ID:   t.GetTopicId(),
		Config: TopicConfig{
			Partitions:        c.GetPartitions(),
			ReplicationFactor: c.GetReplicationFactor(),
			MinInsyncReplicas: c.GetMinInsyncReplicas(),
			RetentionMs:       c.GetRetentionMs(),
			RetentionBytes:    c.GetRetentionBytes(),
			MaxRecordBytes:    c.GetMaxRecordBytes(),
			KeyIndex:          c.GetKeyIndex(),
			CleanupPolicy:     c.GetCleanupPolicy(),
			DeleteRetentionMs: c.GetDeleteRetentionMs(),
		},
	}
	for _, p := range t.GetPartitions() {
		ti.Partitions = append(ti.Partitions, PartitionInfo{
			Partition:   p.GetPartition(),
			Leader:      p.GetLeader(),
			LeaderEpoch: p.GetLeaderEpoch(),
			Replicas:    p.GetReplicas(),
			ISR:         p.GetIsr(),
		})
	}
	return ti
}

// CreateTopic creates a topic; zero fields of cfg take the broker's
// defaults. It fails with ErrTopicExists or ErrInvalidTopic as the broker
// says.
func (c *Client) CreateTopic(ctx context.Context, name string, cfg TopicConfig) (TopicInfo, error) {
	req := &skeinv1.CreateTopicRequest{
		Name:              name,
		Partitions:        cfg.Partitions,
		ReplicationFactor: cfg.ReplicationFactor,
		KeyIndex:          cfg.KeyIndex,
	}
	if cfg.MinInsyncReplicas != 0 {
		req.MinInsyncReplicas = &cfg.MinInsyncReplicas
	}
	if cfg.RetentionMs != 0 {
		req.RetentionMs = &cfg.RetentionMs
	}
	if cfg.RetentionBytes != 0 {
		req.RetentionBytes = &cfg.RetentionBytes
	}
	if cfg.MaxRecordBytes != 0 {
		req.MaxRecordBytes = &cfg.MaxRecordBytes
	}
	if cfg.CleanupPolicy != "" {
		req.CleanupPolicy = &cfg.CleanupPolicy
	}
	if cfg.DeleteRetentionMs != 0 {
		req.DeleteRetentionMs = &cfg.DeleteRetentionMs
	}
	var resp *skeinv1.CreateTopicResponse
	unsure := false // an attempt got no answer: it may have created the topic
	err := c.callAny(ctx, "create topic", func(ctx context.Context, cl skeinv1.SkeinClient) error {
		var err error
		resp, err = cl.CreateTopic(ctx, req)
		unsure = unsure || isTransport(fromRPC(err))
		return err
	})
	if unsure && errors.Is(err, ErrTopicExists) {
		// The topic an unanswered attempt created is this call's success.
		if d, derr := c.DescribeTopic(ctx, name); derr == nil && cfg.matches(d.Config) {
			return d.TopicInfo, nil
		}
	}
	if err != nil {
		return TopicInfo{}, fmt.Errorf("create topic %q: %w", name, err)
	}
	c.refreshAsync(c.meta.snap.Load().gen)
	return topicInfoFromProto(resp.GetTopic()), nil
}

// TopicAlter names the settings AlterTopic changes; nil fields keep their
// value. Partitions may only grow, and records with a key may map to
// another partition once the count has grown.
type TopicAlter struct {
	Partitions        *int32
	MinInsyncReplicas *int32
	RetentionMs       *int64 // -1: keep forever
	RetentionBytes    *int64 // -1: no size limit
	MaxRecordBytes    *int32
	// KeyIndex is fixed at creation: a value other than the topic's is
	// refused.
	KeyIndex *bool
	// CleanupPolicy: "delete", "compact" or "compact,delete".
	CleanupPolicy *string
	// DeleteRetentionMs: how long a compacted topic keeps tombstones.
	DeleteRetentionMs *int64
}

// AlterTopic changes a topic's settings (applied live on every replica)
// and adds partitions. It fails with ErrUnknownTopic, or ErrInvalidRequest
// naming a setting the broker refused.
func (c *Client) AlterTopic(ctx context.Context, name string, a TopicAlter) (TopicInfo, error) {
	req := &skeinv1.AlterTopicRequest{
		Name: name, Partitions: a.Partitions, MinInsyncReplicas: a.MinInsyncReplicas,
		RetentionMs: a.RetentionMs, RetentionBytes: a.RetentionBytes, MaxRecordBytes: a.MaxRecordBytes, KeyIndex: a.KeyIndex,
		CleanupPolicy: a.CleanupPolicy, DeleteRetentionMs: a.DeleteRetentionMs,
	}
	var resp *skeinv1.AlterTopicResponse
	err := c.callAny(ctx, "alter topic", func(ctx context.Context, cl skeinv1.SkeinClient) error {
		var err error
		resp, err = cl.AlterTopic(ctx, req)
		return err
	})
	if err != nil {
		return TopicInfo{}, fmt.Errorf("alter topic %q: %w", name, err)
	}
	c.refreshAsync(c.meta.snap.Load().gen)
	return topicInfoFromProto(resp.GetTopic()), nil
}

// BrokerSetting is one broker setting that may change at run time.
type BrokerSetting struct {
	Name  string
	Value string
	// Source is "run-time" (set with SetBrokerConfig) or "start-up" (the
	// broker's flag, environment or default).
	Source string
	Doc    string
}

// SetBrokerConfig changes a run-time broker setting on every broker (kept
// across restarts); an empty value goes back to each broker's start-up
// value. An unknown name or a bad value fails with ErrInvalidRequest, whose
// message lists the settings.
func (c *Client) SetBrokerConfig(ctx context.Context, name, value string) error {
	err := c.callAny(ctx, "set broker config", func(ctx context.Context, cl skeinv1.SkeinClient) error {
		_, err := cl.SetBrokerConfig(ctx, &skeinv1.SetBrokerConfigRequest{Name: name, Value: value})
		return err
	})
	if err != nil {
		return fmt.Errorf("set broker config %s: %w", name, err)
	}
	return nil
}

// BrokerConfig lists the run-time settings of the broker that answers, and
// its id.
func (c *Client) BrokerConfig(ctx context.Context) (int32, []BrokerSetting, error) {
	var resp *skeinv1.GetBrokerConfigResponse
	err := c.callAny(ctx, "get broker config", func(ctx context.Context, cl skeinv1.SkeinClient) error {
		var err error
		resp, err = cl.GetBrokerConfig(ctx, &skeinv1.GetBrokerConfigRequest{})
		return err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("get broker config: %w", err)
	}
	var out []BrokerSetting
	for _, e := range resp.GetEntries() {
		out = append(out, BrokerSetting{Name: e.GetName(), Value: e.GetValue(), Source: e.GetSource(), Doc: e.GetDoc()})
	}
	return resp.GetBrokerId(), out, nil
}

// DeleteTopic deletes a topic and all of its data.
func (c *Client) DeleteTopic(ctx context.Context, name string) error {
	err := c.callAny(ctx, "delete topic", func(ctx context.Context, cl skeinv1.SkeinClient) error {
		_, err := cl.DeleteTopic(ctx, &skeinv1.DeleteTopicRequest{Name: name})
		return err
	})
	if err != nil {
		return fmt.Errorf("delete topic %q: %w", name, err)
	}
	c.refreshAsync(c.meta.snap.Load().gen)
	return nil
}

// ListTopics lists every topic.
func (c *Client) ListTopics(ctx context.Context) ([]TopicInfo, error) {
	var resp *skeinv1.ListTopicsResponse
	err := c.callAny(ctx, "list topics", func(ctx context.Context, cl skeinv1.SkeinClient) error {
		var err error
		resp, err = cl.ListTopics(ctx, &skeinv1.ListTopicsRequest{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	out := make([]TopicInfo, 0, len(resp.GetTopics()))
	for _, t := range resp.GetTopics() {
		out = append(out, topicInfoFromProto(t))
	}
	return out, nil
}

// DescribeTopic returns a topic's configuration and each partition's live
// state.
func (c *Client) DescribeTopic(ctx context.Context, name string) (TopicDescription, error) {
	var resp *skeinv1.DescribeTopicResponse
	err := c.callAny(ctx, "describe topic", func(ctx context.Context, cl skeinv1.SkeinClient) error {
		var err error
		resp, err = cl.DescribeTopic(ctx, &skeinv1.DescribeTopicRequest{Name: name})
		return err
	})
	if err != nil {
		return TopicDescription{}, fmt.Errorf("describe topic %q: %w", name, err)
	}
	d := TopicDescription{TopicInfo: topicInfoFromProto(resp.GetTopic())}
	for _, p := range resp.GetPartitions() {
		d.Status = append(d.Status, PartitionStatus{
			PartitionInfo: PartitionInfo{
				Partition:   p.GetPartition(),
				Leader:      p.GetLeader(),
				LeaderEpoch: p.GetLeaderEpoch(),
				Replicas:    p.GetReplicas(),
				ISR:         p.GetIsr(),
			},
			LogStartOffset: p.GetLogStartOffset(),
			HighWatermark:  p.GetHighWatermark(),
			LogEndOffset:   p.GetLogEndOffset(),
			SizeBytes:      p.GetSizeBytes(),
			Error:          p.GetError(),
		})
	}
	return d, nil
}

// Metadata returns the brokers and the named topics (all when none are
// named). An answer for all topics also refreshes the client's cache.
func (c *Client) Metadata(ctx context.Context, topics ...string) (ClusterMetadata, error) {
	var resp *skeinv1.MetadataResponse
	err := c.callAny(ctx, "metadata", func(ctx context.Context, cl skeinv1.SkeinClient) error {
		var err error
		resp, err = cl.Metadata(ctx, &skeinv1.MetadataRequest{Topics: topics})
		return err
	})
	if err != nil {
		return ClusterMetadata{}, fmt.Errorf("metadata: %w", err)
	}
	if len(topics) == 0 {
		c.meta.store(resp)
	}
	md := ClusterMetadata{ClusterID: resp.GetClusterId(), ControllerID: resp.GetControllerId()}
	for _, b := range resp.GetBrokers() {
		md.Brokers = append(md.Brokers, BrokerInfo{ID: b.GetId(), Addr: b.GetAddr(), Rack: b.GetRack()})
	}
	for _, t := range resp.GetTopics() {
		md.Topics = append(md.Topics, topicInfoFromProto(t))
	}
	return md, nil
}

// ListedOffset is the answer of ListOffsets.
type ListedOffset struct {
	// Offset is the resolved offset.
	Offset int64
	// Timestamp of the record at Offset, for AtTime lookups that found one;
	// zero otherwise.
	Timestamp time.Time
	// LogStartOffset and HighWatermark are the partition's readable range
	// when the leader answered.
	LogStartOffset int64
	HighWatermark  int64 // see LogStartOffset
}

// ListOffsets resolves an Offset of a partition at its leader: Beginning()
// to the log start offset, End() to the high watermark, FromEnd(n) to n
// before it (clamped at the log start), AtTime(t) to the first record at or
// after t (the high watermark if none). At(n) is checked against the
// partition's range: outside it, the error matches ErrOffsetOutOfRange and
// names the range.
func (c *Client) ListOffsets(ctx context.Context, topic string, partition int32, o Offset) (ListedOffset, error) {
	if o.kind == offsetFromEnd && o.n < 0 {
		return ListedOffset{}, fmt.Errorf("list offsets of %s/%d: FromEnd(%d): count back 0 or more records", topic, partition, o.n)
	}
	req := &skeinv1.ListOffsetsRequest{Topic: topic, Partition: partition}
	switch o.kind {
	case offsetBeginning:
		req.Spec = &skeinv1.ListOffsetsRequest_Earliest{Earliest: true}
	case offsetTime:
		req.Spec = &skeinv1.ListOffsetsRequest_TimestampMs{TimestampMs: o.t.UnixMilli()}
	default:
		req.Spec = &skeinv1.ListOffsetsRequest_Latest{Latest: true}
	}
	var resp *skeinv1.ListOffsetsResponse
	err := c.callLeader(ctx, topic, partition, func(ctx context.Context, cl skeinv1.SkeinClient, _ int32) error {
		var err error
		resp, err = cl.ListOffsets(ctx, req)
		return err
	})
	if err != nil {
		return ListedOffset{}, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, err)
	}
	lo := ListedOffset{Offset: resp.GetOffset(), LogStartOffset: resp.GetLogStartOffset(), HighWatermark: resp.GetHighWatermark()}
	switch o.kind {
	case offsetTime:
		if ts := resp.GetTimestampMs(); ts >= 0 {
			lo.Timestamp = time.UnixMilli(ts)
		}
	case offsetFromEnd:
		lo.Offset = max(lo.HighWatermark-o.n, lo.LogStartOffset)
	case offsetAt:
		if o.n < lo.LogStartOffset || o.n > lo.HighWatermark {
			return lo, &Error{code: codes.OutOfRange, reason: skeinv1.ErrorReason_OFFSET_OUT_OF_RANGE, LeaderID: -1,
				Message:        fmt.Sprintf("offset %d of %s/%d is outside the log", o.n, topic, partition),
				LogStartOffset: lo.LogStartOffset, HighWatermark: lo.HighWatermark}
		}
		lo.Offset = o.n
	}
	return lo, nil
}

// ClusterMember is one broker in DescribeCluster.
type ClusterMember struct {
	// ID, Addr and Rack are as in BrokerInfo.
	ID   int32
	Addr string
	Rack string
	// GossipState is alive, suspect or dead, as the answering broker's
	// gossip sees it.
	GossipState string
	// Fenced: the controller confirmed it dead, or it is stopping.
	Fenced bool
	// QuorumRole is voter, nonvoter or "" (not in the controller quorum).
	QuorumRole string
	// GossipAddr and RaftAddr are the broker's peer addresses.
	GossipAddr string
	RaftAddr   string
	// Replicas and Leaders count the partitions it holds and leads; Bytes
	// is the size of its replicas (-1: it did not answer).
	Replicas int32
	Leaders  int32
	Bytes    int64
	// Draining: it is being decommissioned.
	Draining bool
	// Decommissioned: removed from the cluster, still running (it can be
	// stopped).
	Decommissioned bool
}

// PartitionProblem is a partition that needs attention.
type PartitionProblem struct {
	// Topic, Partition, Leader, Replicas and ISR are as in PartitionInfo.
	Topic     string
	Partition int32
	Leader    int32
	Replicas  []int32
	ISR       []int32
	// Problem is under-replicated, below-min-isr or leaderless.
	Problem string
}

// ClusterDescription is the answer of DescribeCluster.
type ClusterDescription struct {
	// ClusterID identifies the cluster.
	ClusterID string
	// ControllerID is the controller's broker id, -1 when none is elected.
	ControllerID int32
	// AnsweredBy is the id of the broker that answered.
	AnsweredBy int32
	// Members are the brokers the answering broker knows of.
	Members []ClusterMember
	// Problems are the partitions that need attention.
	Problems []PartitionProblem
	// Topics and Partitions count the cluster's topics and partitions.
	Topics     int32
	Partitions int32
}

// DescribeCluster returns the brokers with their gossip, fence and quorum
// state, the controller, and the partitions that are under-replicated or
// leaderless.
func (c *Client) DescribeCluster(ctx context.Context) (ClusterDescription, error) {
	var resp *skeinv1.DescribeClusterResponse
	err := c.callAny(ctx, "describe cluster", func(ctx context.Context, cl skeinv1.SkeinClient) error {
		var err error
		resp, err = cl.DescribeCluster(ctx, &skeinv1.DescribeClusterRequest{})
		return err
	})
	if err != nil {
		return ClusterDescription{}, fmt.Errorf("describe cluster: %w", err)
	}
	d := ClusterDescription{ClusterID: resp.GetClusterId(), ControllerID: resp.GetControllerId(), AnsweredBy: resp.GetAnsweredBy(),
		Topics: resp.GetTopics(), Partitions: resp.GetPartitions()}
	for _, m := range resp.GetMembers() {
		d.Members = append(d.Members, ClusterMember{ID: m.GetId(), Addr: m.GetAddr(), Rack: m.GetRack(), GossipState: m.GetGossipState(),
			Fenced: m.GetFenced(), QuorumRole: m.GetQuorumRole(), GossipAddr: m.GetGossipAddr(), RaftAddr: m.GetRaftAddr(),
			Replicas: m.GetReplicas(), Leaders: m.GetLeaders(), Bytes: m.GetBytes(), Draining: m.GetDraining(),
			Decommissioned: m.GetDecommissioned()})
	}
	for _, p := range resp.GetProblems() {
		d.Problems = append(d.Problems, PartitionProblem{Topic: p.GetTopic(), Partition: p.GetPartition(), Leader: p.GetLeader(),
			Replicas: p.GetReplicas(), ISR: p.GetIsr(), Problem: p.GetProblem()})
	}
	return d, nil
}
