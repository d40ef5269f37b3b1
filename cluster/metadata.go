package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/skeinlog/skein/auth"
	"github.com/skeinlog/skein/internal/topicname"
)

// BrokerInfo is what a broker tells the cluster about itself.
type BrokerInfo struct {
	ID   int32  `json:"id"`
	Addr string `json:"addr"` // advertised client gRPC address
	// ExternalAddr is the address for clients outside the brokers'
	// network, when the broker has a second listener for them.
	ExternalAddr string `json:"external_addr,omitempty"`
	// KafkaAddr is the advertised address of its Kafka protocol listener;
	// empty when it has none.
	KafkaAddr string `json:"kafka_addr,omitempty"`
	// PeerAddr is the advertised inter-broker address: the other brokers
	// replicate from it and send it controller requests.
	PeerAddr string `json:"peer_addr,omitempty"`
	Rack     string `json:"rack,omitempty"`
	// GossipAddr is where its gossip listens: a restarted broker re-joins
	// the cluster through the brokers the metadata lists.
	GossipAddr string `json:"gossip_addr,omitempty"`
	// StorageID identifies the broker's data: random, written in its data
	// directory when the directory is created, and renewed when the broker
	// finds its data damaged. A broker registering with another storage id
	// than before has lost data: the controller takes it out of every ISR
	// (and leadership) in the same commit, so it copies the partitions
	// again before it counts as in sync. Empty: not known (older brokers).
	StorageID string `json:"storage_id,omitempty"`
	// Fenced: the controller confirmed the broker dead, or it is stopping
	// (controlled shutdown). A fenced broker leads nothing and joins no ISR
	// until it is back.
	Fenced bool `json:"fenced,omitempty"`
	// Draining: the broker is being decommissioned. Its replicas move to
	// other brokers; no new replica is placed on it; once it holds none it
	// leaves the controller quorum and the cluster.
	Draining bool `json:"draining,omitempty"`
}

// RemovedBroker is a decommissioned broker. The same data directory
// (storage id) is never registered again; a broker with that id and new
// data may join as a new broker.
type RemovedBroker struct {
	ID        int32  `json:"id"`
	StorageID string `json:"storage_id"`
}

// TopicConfig is a topic's resolved configuration (no zero "defaults").
type TopicConfig struct {
	Partitions        int32 `json:"partitions"`
	ReplicationFactor int32 `json:"replication_factor"`
	MinInsyncReplicas int32 `json:"min_insync_replicas"`
	RetentionMs       int64 `json:"retention_ms"`    // -1: forever
	RetentionBytes    int64 `json:"retention_bytes"` // -1: unlimited
	MaxRecordBytes    int32 `json:"max_record_bytes"`
	// KeyIndex: each partition keeps a key index (per-key conditional
	// appends, latest-value lookups). Fixed at creation.
	KeyIndex bool `json:"key_index,omitempty"`
	// CleanupPolicy is "" (delete: retention deletes old segments),
	// "compact" or "compact,delete" (the log cleaner keeps the latest
	// record of every key). See NormalizeCleanupPolicy.
	CleanupPolicy string `json:"cleanup_policy,omitempty"`
	// DeleteRetentionMs: how long the cleaner keeps a tombstone that is its
	// key's latest record; 0: DefaultDeleteRetentionMs.
	DeleteRetentionMs int64 `json:"delete_retention_ms,omitempty"`
}

// Cleanup policies.
const (
	PolicyDelete        = "delete"
	PolicyCompact       = "compact"
	PolicyCompactDelete = "compact,delete"
	// DefaultDeleteRetentionMs is delete.retention.ms's default (24 h,
	// as Kafka's).
	DefaultDeleteRetentionMs = 24 * 3600 * 1000
)

// NormalizeCleanupPolicy checks a cleanup.policy value ("delete",
// "compact", "compact,delete" or "delete,compact"; spaces around the
// comma allowed) and returns its stored form: "" for delete, "compact",
// or "compact,delete". Pure.
func NormalizeCleanupPolicy(v string) (string, error) {
	var compact, del bool
	for _, part := range strings.Split(v, ",") {
		switch strings.TrimSpace(part) {
		case PolicyCompact:
			compact = true
		case PolicyDelete:
			del = true
		default:
			return "", fmt.Errorf("%w: cleanup.policy %q: want delete, compact, or compact,delete", ErrInvalidConfig, v)
		}
	}
	switch {
	case compact && del:
		return PolicyCompactDelete, nil
	case compact:
		return PolicyCompact, nil
	}
	return "", nil
}

// Compacted reports whether the log cleaner compacts the topic.
func (c TopicConfig) Compacted() bool { return c.CleanupPolicy != "" }

// Deletes reports whether retention deletes the topic's old segments
// (policy delete or compact,delete).
func (c TopicConfig) Deletes() bool { return c.CleanupPolicy != PolicyCompact }

// Policy is the cleanup.policy as Kafka spells it.
func (c TopicConfig) Policy() string {
	if c.CleanupPolicy == "" {
		return PolicyDelete
	}
	return c.CleanupPolicy
}

// DeleteRetention is the tombstone retention in ms, the default filled in
// (stored: 0 for the default, -1 for a retention of 0).
func (c TopicConfig) DeleteRetention() int64 {
	switch {
	case c.DeleteRetentionMs == 0:
		return DefaultDeleteRetentionMs
	case c.DeleteRetentionMs < 0:
		return 0
	}
	return c.DeleteRetentionMs
}

// PartitionMeta is one partition's placement and leadership.
type PartitionMeta struct {
	Partition   int32   `json:"partition"`
	Replicas    []int32 `json:"replicas"`
	Leader      int32   `json:"leader"` // -1: none
	LeaderEpoch int32   `json:"leader_epoch"`
	ISR         []int32 `json:"isr"`
	// PartitionEpoch is bumped by every change of leader or ISR; a change
	// request names the one it was computed from.
	PartitionEpoch int32 `json:"partition_epoch"`
	// Target is the replica set a reassignment moves the partition to;
	// empty when none runs. While it runs, Replicas holds Target followed
	// by the replicas being removed, and Origin the replica set before it
	// started (empty once cancelled: Target is then the original set).
	Target []int32 `json:"target,omitempty"`
	Origin []int32 `json:"origin,omitempty"`
}

// Topic is a topic's committed metadata.
type Topic struct {
	Name       string          `json:"name"`
	ID         string          `json:"id"`
	Config     TopicConfig     `json:"config"`
	Partitions []PartitionMeta `json:"partitions"`
}

// Snapshot is an immutable view of the cluster metadata. Never modify one
// you were given; Clone it.
type Snapshot struct {
	Version      uint64           `json:"version"`
	ClusterID    string           `json:"cluster_id"`
	ControllerID int32            `json:"controller_id"`
	Brokers      []BrokerInfo     `json:"brokers"`
	Topics       map[string]Topic `json:"topics"`
	// NextProducerID is the first producer id not yet handed out.
	NextProducerID int64 `json:"next_producer_id,omitempty"`
	// BrokerConfig holds the broker settings changed at run time (broker
	// config set), for every broker: name → value.
	BrokerConfig map[string]string `json:"broker_config,omitempty"`
	// Removed lists decommissioned brokers.
	Removed []RemovedBroker `json:"removed,omitempty"`
	// Users are the SCRAM users: name → mechanism → salted keys. apply
	// replaces the maps it changes, never writes into them.
	Users map[string]map[auth.Mechanism]auth.Credential `json:"users,omitempty"`
	// ACLs are the access rules the acl authorizer applies.
	ACLs []auth.ACL `json:"acls,omitempty"`
	// Quotas are the client quotas, sorted by entity.
	Quotas []Quota `json:"quotas,omitempty"`
}

// Clone returns a deep copy.
func (s *Snapshot) Clone() *Snapshot {
	c := *s
	c.Brokers = slices.Clone(s.Brokers)
	c.BrokerConfig = maps.Clone(s.BrokerConfig)
	c.Removed = slices.Clone(s.Removed)
	c.Users = maps.Clone(s.Users)
	c.ACLs = slices.Clone(s.ACLs)
	c.Quotas = slices.Clone(s.Quotas)
	c.Topics = make(map[string]Topic, len(s.Topics))
	for n, t := range s.Topics {
		t.Partitions = slices.Clone(t.Partitions)
		for i := range t.Partitions {
			t.Partitions[i].Replicas = slices.Clone(t.Partitions[i].Replicas)
			t.Partitions[i].ISR = slices.Clone(t.Partitions[i].ISR)
			t.Partitions[i].Target = slices.Clone(t.Partitions[i].Target)
			t.Partitions[i].Origin = slices.Clone(t.Partitions[i].Origin)
		}
		c.Topics[n] = t
	}
	return &c
}

// Broker returns the broker with id, if known.
func (s *Snapshot) Broker(id int32) (BrokerInfo, bool) {
	for _, b := range s.Brokers {
		if b.ID == id {
			return b, true
		}
	}
	return BrokerInfo{}, false
}

// Alive returns the brokers that are not fenced and not draining: those
// new replicas may be placed on.
func (s *Snapshot) Alive() []BrokerInfo {
	var out []BrokerInfo
	for _, b := range s.Brokers {
		if !b.Fenced && !b.Draining {
			out = append(out, b)
		}
	}
	return out
}

// TopicNames returns the topic names, sorted.
func (s *Snapshot) TopicNames() []string {
	names := make([]string, 0, len(s.Topics))
	for n := range s.Topics {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// TopicSpec is a create-topic request; zero or negative-one fields as
// documented take the defaults in Defaults.
type TopicSpec struct {
	Name              string
	Partitions        int32  // 0: default
	ReplicationFactor int32  // 0: default
	MinInsyncReplicas *int32 // nil: min(2, replication factor)
	RetentionMs       *int64 // nil: default
	RetentionBytes    *int64 // nil: default
	MaxRecordBytes    *int32 // nil: default
	KeyIndex          bool
	CleanupPolicy     *string // nil: delete
	DeleteRetentionMs *int64  // nil: 24 h
	// Internal allows a reserved "__" name (the broker's own topics, such
	// as __consumer_offsets); never set from a client request.
	Internal bool
}

// Matches reports whether a topic's configuration is what spec asks for,
// counting only what spec sets. A create that was retried after an answer
// was lost (the controller changed while committing it) finds its own
// topic; when it matches, the create succeeded.
func (s TopicSpec) Matches(c TopicConfig) bool {
	eq32 := func(want *int32, got int32) bool { return want == nil || *want == got }
	eq64 := func(want *int64, got int64) bool { return want == nil || *want == got }
	return (s.Partitions == 0 || s.Partitions == c.Partitions) &&
		(s.ReplicationFactor == 0 || s.ReplicationFactor == c.ReplicationFactor) &&
		eq32(s.MinInsyncReplicas, c.MinInsyncReplicas) && eq64(s.RetentionMs, c.RetentionMs) &&
		eq64(s.RetentionBytes, c.RetentionBytes) && eq32(s.MaxRecordBytes, c.MaxRecordBytes) &&
		s.KeyIndex == c.KeyIndex && eq64(s.DeleteRetentionMs, c.DeleteRetentionMs) && s.samePolicy(c.CleanupPolicy)
}

func (s TopicSpec) samePolicy(stored string) bool {
	if s.CleanupPolicy == nil {
		return true
	}
	want, err := NormalizeCleanupPolicy(*s.CleanupPolicy)
	return err == nil && want == stored
}

// Defaults for topic configuration.
type Defaults struct {
	Partitions        int32
	ReplicationFactor int32
	RetentionMs       int64
	RetentionBytes    int64
	MaxRecordBytes    int32
	// MaxRecordBytesLimit is the largest max.record.bytes a topic may set
	// (bounded by the broker's request size).
	MaxRecordBytesLimit int32
	// MaxPartitions bounds partitions per topic.
	MaxPartitions int32
}

// DefaultDefaults are Kafka's: 1 partition, 7 days, unlimited size, 1 MiB records.
func DefaultDefaults() Defaults {
	return Defaults{
		Partitions:          1,
		ReplicationFactor:   1,
		RetentionMs:         7 * 24 * 3600 * 1000,
		RetentionBytes:      -1,
		MaxRecordBytes:      1 << 20,
		MaxRecordBytesLimit: 15 << 20,
		MaxPartitions:       10000,
	}
}

// Errors from metadata validation and changes.
var (
	ErrInvalidTopic  = errors.New("invalid topic name")
	ErrInvalidConfig = errors.New("invalid topic configuration")
	ErrTopicExists   = errors.New("topic already exists")
	ErrUnknownTopic  = errors.New("unknown topic")
	// ErrConcurrentChange: the metadata changed while a request was
	// computed from it; retrying computes it anew.
	ErrConcurrentChange = errors.New("the metadata changed concurrently")
)

// ValidateTopicName enforces the topic name rule of package topicname:
// [a-zA-Z0-9._-]{1,249}, not "." or "..", no leading "-", no reserved "__"
// prefix. Topic names become directory names, so this is also what keeps
// path tricks out of the data directory.
func ValidateTopicName(name string) error {
	if err := topicname.Check(name); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidTopic, err)
	}
	return nil
}

// ResolveConfig applies defaults to spec and checks it against the number of
// brokers available. Pure.
func ResolveConfig(spec TopicSpec, d Defaults, brokers int) (TopicConfig, error) {
	if spec.Internal {
		if !strings.HasPrefix(spec.Name, "__") || topicname.Check(spec.Name[2:]) != nil {
			return TopicConfig{}, fmt.Errorf("%w: internal topic %q: want \"__\" and a valid name", ErrInvalidTopic, spec.Name)
		}
	} else if err := ValidateTopicName(spec.Name); err != nil {
		return TopicConfig{}, err
	}
	c := TopicConfig{
		Partitions:        spec.Partitions,
		ReplicationFactor: spec.ReplicationFactor,
		RetentionMs:       d.RetentionMs,
		RetentionBytes:    d.RetentionBytes,
		MaxRecordBytes:    d.MaxRecordBytes,
		KeyIndex:          spec.KeyIndex,
	}
	if c.Partitions == 0 {
		c.Partitions = d.Partitions
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = d.ReplicationFactor
	}
	if c.Partitions < 1 || c.Partitions > d.MaxPartitions {
		return c, fmt.Errorf("%w: partitions %d: must be between 1 and %d", ErrInvalidConfig, c.Partitions, d.MaxPartitions)
	}
	if c.ReplicationFactor < 1 {
		return c, fmt.Errorf("%w: replication factor %d: must be at least 1", ErrInvalidConfig, c.ReplicationFactor)
	}
	if int(c.ReplicationFactor) > brokers {
		return c, fmt.Errorf("%w: replication factor %d is more than the %d broker(s) in the cluster", ErrInvalidConfig, c.ReplicationFactor, brokers)
	}
	c.MinInsyncReplicas = min(2, c.ReplicationFactor)
	if spec.MinInsyncReplicas != nil {
		c.MinInsyncReplicas = *spec.MinInsyncReplicas
	}
	if c.MinInsyncReplicas < 1 || c.MinInsyncReplicas > c.ReplicationFactor {
		return c, fmt.Errorf("%w: min.insync.replicas %d: must be between 1 and the replication factor %d", ErrInvalidConfig, c.MinInsyncReplicas, c.ReplicationFactor)
	}
	if spec.RetentionMs != nil {
		c.RetentionMs = *spec.RetentionMs
	}
	if c.RetentionMs != -1 && c.RetentionMs < 1 {
		return c, fmt.Errorf("%w: retention.ms %d: must be positive, or -1 to keep records forever", ErrInvalidConfig, c.RetentionMs)
	}
	if spec.RetentionBytes != nil {
		c.RetentionBytes = *spec.RetentionBytes
	}
	if c.RetentionBytes != -1 && c.RetentionBytes < 1 {
		return c, fmt.Errorf("%w: retention.bytes %d: must be positive, or -1 for no size limit", ErrInvalidConfig, c.RetentionBytes)
	}
	if spec.MaxRecordBytes != nil {
		c.MaxRecordBytes = *spec.MaxRecordBytes
	}
	if c.MaxRecordBytes < 1 || c.MaxRecordBytes > d.MaxRecordBytesLimit {
		return c, fmt.Errorf("%w: max.record.bytes %d: must be between 1 and %d (the broker's request size limit)", ErrInvalidConfig, c.MaxRecordBytes, d.MaxRecordBytesLimit)
	}
	if spec.CleanupPolicy != nil {
		p, err := NormalizeCleanupPolicy(*spec.CleanupPolicy)
		if err != nil {
			return c, err
		}
		c.CleanupPolicy = p
	}
	if spec.DeleteRetentionMs != nil {
		if *spec.DeleteRetentionMs < 0 {
			return c, fmt.Errorf("%w: delete.retention.ms %d: must be 0 or more", ErrInvalidConfig, *spec.DeleteRetentionMs)
		}
		c.DeleteRetentionMs = *spec.DeleteRetentionMs
		if c.DeleteRetentionMs == DefaultDeleteRetentionMs {
			c.DeleteRetentionMs = 0
		} else if c.DeleteRetentionMs == 0 {
			c.DeleteRetentionMs = -1 // "remove tombstones at the first pass", kept apart from the default
		}
	}
	return c, nil
}

// TopicAlter changes a topic's configuration; nil fields keep their value.
// Partitions may only grow: the key → partition mapping of keyed records
// changes with the count, so shrinking would scatter a key's history.
type TopicAlter struct {
	Partitions        *int32
	MinInsyncReplicas *int32
	RetentionMs       *int64
	RetentionBytes    *int64
	MaxRecordBytes    *int32
	// KeyIndex must equal the topic's: the index is fixed at creation.
	KeyIndex          *bool
	CleanupPolicy     *string
	DeleteRetentionMs *int64
}

// Empty reports whether a changes nothing.
func (a TopicAlter) Empty() bool { return a == TopicAlter{} }

// AlterConfig returns cfg of topic name changed by a, checked by the rules
// of ResolveConfig (the replication factor stays as it is). Pure.
func AlterConfig(name string, cfg TopicConfig, a TopicAlter, d Defaults) (TopicConfig, error) {
	if a.Empty() {
		return cfg, fmt.Errorf("%w: nothing to change: give at least one setting", ErrInvalidConfig)
	}
	spec := TopicSpec{
		Name: name, Partitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor,
		MinInsyncReplicas: &cfg.MinInsyncReplicas, RetentionMs: &cfg.RetentionMs,
		RetentionBytes: &cfg.RetentionBytes, MaxRecordBytes: &cfg.MaxRecordBytes,
		KeyIndex: cfg.KeyIndex, CleanupPolicy: &cfg.CleanupPolicy, DeleteRetentionMs: &cfg.DeleteRetentionMs,
	}
	if cfg.CleanupPolicy == "" {
		spec.CleanupPolicy = nil
	}
	if cfg.DeleteRetentionMs == 0 {
		spec.DeleteRetentionMs = nil
	} else if cfg.DeleteRetentionMs < 0 {
		zero := int64(0)
		spec.DeleteRetentionMs = &zero
	}
	if a.CleanupPolicy != nil {
		spec.CleanupPolicy = a.CleanupPolicy
	}
	if a.DeleteRetentionMs != nil {
		spec.DeleteRetentionMs = a.DeleteRetentionMs
	}
	if a.KeyIndex != nil && *a.KeyIndex != cfg.KeyIndex {
		return cfg, fmt.Errorf("%w: key index: it is fixed when a topic is created (topic %q has it %s); create a new topic with the setting you want and copy the records",
			ErrInvalidConfig, name, onOff(cfg.KeyIndex))
	}
	if a.Partitions != nil {
		if *a.Partitions < cfg.Partitions {
			return cfg, fmt.Errorf("%w: partitions %d: a topic's partitions can only grow (it has %d)", ErrInvalidConfig, *a.Partitions, cfg.Partitions)
		}
		spec.Partitions = *a.Partitions
	}
	if a.MinInsyncReplicas != nil {
		spec.MinInsyncReplicas = a.MinInsyncReplicas
	}
	if a.RetentionMs != nil {
		spec.RetentionMs = a.RetentionMs
	}
	if a.RetentionBytes != nil {
		spec.RetentionBytes = a.RetentionBytes
	}
	if a.MaxRecordBytes != nil {
		spec.MaxRecordBytes = a.MaxRecordBytes
	}
	if spec.Partitions == 0 {
		return cfg, fmt.Errorf("%w: partitions 0: must be at least 1", ErrInvalidConfig)
	}
	return ResolveConfig(spec, d, int(cfg.ReplicationFactor))
}

// AssignReplicas places partitions on brokers: leaders round-robin from a
// start index, and each partition's followers on the next brokers in an
// order that alternates racks when brokers have them. Pure; brokers are
// sorted by id first, so the result depends only on its inputs.
func AssignReplicas(brokers []BrokerInfo, partitions, rf int32, start int) [][]int32 {
	bs := slices.Clone(brokers)
	sort.Slice(bs, func(i, j int) bool { return bs[i].ID < bs[j].ID })
	bs = rackAlternating(bs)
	n := len(bs)
	out := make([][]int32, partitions)
	for p := range partitions {
		first := (start + int(p)) % n
		// Shift followers by p/n so replicas of consecutive rounds differ.
		shift := 1 + (int(p)/n)%max(1, n-1)
		reps := []int32{bs[first].ID}
		for r := 1; r < int(rf); r++ {
			reps = append(reps, bs[(first+shift+r-1)%n].ID)
		}
		out[p] = dedupe(reps, bs, first)
	}
	return out
}

// dedupe replaces repeated brokers (possible when shift wraps) with the next
// unused ones, keeping the leader first.
func dedupe(reps []int32, bs []BrokerInfo, first int) []int32 {
	seen := map[int32]bool{}
	out := reps[:0]
	for _, r := range reps {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	for i := 1; len(out) < len(reps) && i <= len(bs); i++ {
		id := bs[(first+i)%len(bs)].ID
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// rackAlternating orders brokers so consecutive ones are on different racks
// where possible (Kafka's rack-aware assignment idea).
func rackAlternating(bs []BrokerInfo) []BrokerInfo {
	byRack := map[string][]BrokerInfo{}
	var racks []string
	for _, b := range bs {
		if _, ok := byRack[b.Rack]; !ok {
			racks = append(racks, b.Rack)
		}
		byRack[b.Rack] = append(byRack[b.Rack], b)
	}
	if len(racks) <= 1 {
		return bs
	}
	sort.Strings(racks)
	out := make([]BrokerInfo, 0, len(bs))
	for len(out) < len(bs) {
		for _, r := range racks {
			if l := byRack[r]; len(l) > 0 {
				out = append(out, l[0])
				byRack[r] = l[1:]
			}
		}
	}
	return out
}

// NewID returns a random 128-bit id in hex, for topics and clusters.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
