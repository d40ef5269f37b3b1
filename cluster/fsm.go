package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
)

// Command operations committed to the controller's Raft log.
const (
	opCreateTopic    = "create_topic"
	opDeleteTopic    = "delete_topic"
	opAlterTopic     = "alter_topic"
	opBrokerConfig   = "broker_config"
	opRegisterBroker = "register_broker"
	opSetFenced      = "set_fenced"
	opChange         = "change_partitions"
	opProducerIDs    = "allocate_producer_ids"
	opInit           = "init_cluster"
	opReassign       = "reassign"
	opCancelReassign = "cancel_reassign"
	opRemoveBroker   = "remove_broker"
	opQuota          = "alter_quota"
)

// command is one entry of the controller log. Every field a command needs
// is in it: applying it is deterministic, whatever the applier's clock or
// view of gossip.
type command struct {
	Op        string            `json:"op"`
	Topic     *Topic            `json:"topic,omitempty"`
	Name      string            `json:"name,omitempty"`
	Broker    *BrokerInfo       `json:"broker,omitempty"`
	BrokerID  int32             `json:"broker_id,omitempty"`
	Fenced    bool              `json:"fenced,omitempty"`
	Changes   []PartitionChange `json:"changes,omitempty"`
	Count     int64             `json:"count,omitempty"`
	ClusterID string            `json:"cluster_id,omitempty"`
	Value     string            `json:"value,omitempty"`
	Targets   []PartitionTarget `json:"targets,omitempty"`
	// Drain: the broker a reassignment decommissions.
	Drain *int32       `json:"drain,omitempty"`
	Quota *QuotaChange `json:"quota,omitempty"`
	securityCommand
}

// PartitionChange moves a partition's leader or ISR. It applies only if the
// partition's epoch is still FromEpoch (compare-and-set), so a change
// computed from stale metadata is dropped instead of undoing a newer one.
type PartitionChange struct {
	Topic       string  `json:"topic"`
	TopicID     string  `json:"topic_id"`
	Partition   int32   `json:"partition"`
	FromEpoch   int32   `json:"from_epoch"`
	Leader      int32   `json:"leader"`
	LeaderEpoch int32   `json:"leader_epoch"`
	ISR         []int32 `json:"isr"`
	// Replicas, when set, is the partition's new replica set, and
	// EndReassign clears its reassignment (the last step of a move).
	Replicas    []int32 `json:"replicas,omitempty"`
	EndReassign bool    `json:"end_reassign,omitempty"`
}

// applyResult is what Apply returns to the proposer.
type applyResult struct {
	err     error
	applied int   // changes applied
	first   int64 // first producer id allocated
}

// fsm is the controller state machine: the metadata Snapshot. Every broker
// runs one (as a Raft voter or non-voter) and publishes each new snapshot
// to its broker.
type fsm struct {
	mu      sync.Mutex // guards snap and changed
	snap    *Snapshot
	changed chan struct{}
}

func newFSM() *fsm {
	return &fsm{snap: &Snapshot{Topics: map[string]Topic{}}, changed: make(chan struct{})}
}

func (f *fsm) current() *Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap
}

func (f *fsm) changes() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *fsm) publish(next *Snapshot) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snap = next
	close(f.changed)
	f.changed = make(chan struct{})
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return applyResult{}
	}
	var c command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return applyResult{err: fmt.Errorf("undecodable controller command: %w", err)}
	}
	next := f.current().Clone()
	next.Version = l.Index
	res := apply(next, &c)
	if res.err == nil {
		f.publish(next)
	}
	return res
}

// apply changes s by c. Pure and deterministic.
func apply(s *Snapshot, c *command) applyResult {
	if res, ok := applySecurity(s, c); ok {
		return res
	}
	switch c.Op {
	case opInit:
		if s.ClusterID == "" {
			s.ClusterID = c.ClusterID
		}
	case opCreateTopic:
		if c.Topic == nil {
			return applyResult{err: errors.New("create_topic without a topic")}
		}
		if _, ok := s.Topics[c.Topic.Name]; ok {
			return applyResult{err: fmt.Errorf("%w: %q", ErrTopicExists, c.Topic.Name)}
		}
		s.Topics[c.Topic.Name] = *c.Topic
	case opBrokerConfig:
		setBrokerConfig(s, c.Name, c.Value)
	case opAlterTopic:
		return applyResult{err: alterTopic(s, c)}
	case opQuota:
		if c.Quota == nil {
			return applyResult{err: errors.New("alter_quota without a change")}
		}
		q, err := applyQuotaChange(s.Quotas, *c.Quota)
		if err != nil {
			return applyResult{err: err}
		}
		s.Quotas = q
	case opDeleteTopic:
		if _, ok := s.Topics[c.Name]; !ok {
			return applyResult{err: fmt.Errorf("%w: %q", ErrUnknownTopic, c.Name)}
		}
		delete(s.Topics, c.Name)
	case opRegisterBroker:
		registerBroker(s, *c.Broker)
		// A new storage id comes with the broker's removal from ISRs.
		return applyResult{applied: applyChanges(s, c.Changes)}
	case opSetFenced:
		i := slices.IndexFunc(s.Brokers, func(x BrokerInfo) bool { return x.ID == c.BrokerID })
		if i < 0 {
			return applyResult{err: fmt.Errorf("unknown broker %d", c.BrokerID)}
		}
		s.Brokers[i].Fenced = c.Fenced
		return applyResult{applied: applyChanges(s, c.Changes)}
	case opChange:
		return applyResult{applied: applyChanges(s, c.Changes)}
	case opReassign:
		return applyResult{err: startReassign(s, c), applied: len(c.Targets)}
	case opCancelReassign:
		n, err := cancelReassign(s)
		return applyResult{err: err, applied: n}
	case opRemoveBroker:
		return applyResult{err: removeBroker(s, c.BrokerID)}
	case opProducerIDs:
		if c.Count < 1 {
			return applyResult{err: errors.New("allocate_producer_ids needs a positive count")}
		}
		first := s.NextProducerID
		s.NextProducerID += c.Count
		return applyResult{first: first}
	default:
		return applyResult{err: fmt.Errorf("unknown controller command %q", c.Op)}
	}
	return applyResult{}
}

// setBrokerConfig sets a run-time broker setting; an empty value removes
// it (back to each broker's start-up value).
func setBrokerConfig(s *Snapshot, name, value string) {
	if value == "" {
		delete(s.BrokerConfig, name)
		return
	}
	if s.BrokerConfig == nil {
		s.BrokerConfig = map[string]string{}
	}
	s.BrokerConfig[name] = value
}

// registerBroker adds b, or replaces its entry keeping whether it is fenced
// or draining.
func registerBroker(s *Snapshot, b BrokerInfo) {
	i := slices.IndexFunc(s.Brokers, func(x BrokerInfo) bool { return x.ID == b.ID })
	if i < 0 {
		s.Brokers = append(s.Brokers, b)
		slices.SortFunc(s.Brokers, func(a, b BrokerInfo) int { return int(a.ID - b.ID) })
		return
	}
	b.Fenced, b.Draining = s.Brokers[i].Fenced, s.Brokers[i].Draining
	s.Brokers[i] = b
}

// applyChanges applies the changes whose epoch still matches.
func applyChanges(s *Snapshot, changes []PartitionChange) int {
	n := 0
	for _, ch := range changes {
		t, ok := s.Topics[ch.Topic]
		if !ok || t.ID != ch.TopicID || int(ch.Partition) >= len(t.Partitions) || ch.Partition < 0 {
			continue
		}
		pm := &t.Partitions[ch.Partition]
		if pm.PartitionEpoch != ch.FromEpoch {
			continue
		}
		pm.Leader, pm.LeaderEpoch, pm.ISR = ch.Leader, ch.LeaderEpoch, slices.Clone(ch.ISR)
		if ch.Replicas != nil {
			pm.Replicas = slices.Clone(ch.Replicas)
		}
		if ch.EndReassign {
			pm.Target, pm.Origin = nil, nil
		}
		pm.PartitionEpoch++
		n++
	}
	return n
}

// Snapshot implements raft.FSM.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return fsmSnapshot{f.current()}, nil
}

// Restore implements raft.FSM.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var s Snapshot
	if err := json.NewDecoder(rc).Decode(&s); err != nil {
		return fmt.Errorf("restore controller snapshot: %w", err)
	}
	if s.Topics == nil {
		s.Topics = map[string]Topic{}
	}
	f.publish(&s)
	return nil
}

type fsmSnapshot struct{ s *Snapshot }

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (fsmSnapshot) Release() {}

// alterTopic applies an alter_topic command: c.Topic carries the new
// configuration and only the partitions added, c.Count the partition count
// they were computed from. A topic that changed incarnation or count since
// is not touched (the request is retried against the new state); leaders
// and ISRs of existing partitions are never overwritten.
func alterTopic(s *Snapshot, c *command) error {
	if c.Topic == nil {
		return errors.New("alter_topic without a topic")
	}
	t, ok := s.Topics[c.Topic.Name]
	if !ok || t.ID != c.Topic.ID {
		return fmt.Errorf("%w: %q", ErrUnknownTopic, c.Topic.Name)
	}
	if int64(len(t.Partitions)) != c.Count {
		return fmt.Errorf("%w: topic %q has %d partitions now, not %d: try again", ErrConcurrentChange, t.Name, len(t.Partitions), c.Count)
	}
	t.Config = c.Topic.Config
	t.Partitions = append(slices.Clone(t.Partitions), c.Topic.Partitions...)
	s.Topics[t.Name] = t
	return nil
}
