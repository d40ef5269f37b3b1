package cluster

import (
	"errors"
	"strings"
	"testing"
)

func TestAlterConfig(t *testing.T) {
	d := DefaultDefaults()
	base := TopicConfig{Partitions: 3, ReplicationFactor: 3, MinInsyncReplicas: 2, RetentionMs: 1000, RetentionBytes: -1, MaxRecordBytes: 1 << 20}
	cases := []struct {
		name    string
		a       TopicAlter
		want    func(TopicConfig) TopicConfig
		wantErr string
	}{
		{"nothing to change is refused", TopicAlter{}, nil, "nothing to change"},
		{"partitions grow", TopicAlter{Partitions: i32(6)}, func(c TopicConfig) TopicConfig { c.Partitions = 6; return c }, ""},
		{"the same partition count is allowed", TopicAlter{Partitions: i32(3)}, func(c TopicConfig) TopicConfig { return c }, ""},
		{"partitions never shrink", TopicAlter{Partitions: i32(2)}, nil, "can only grow (it has 3)"},
		{"partitions stay under the maximum", TopicAlter{Partitions: i32(d.MaxPartitions + 1)}, nil, "must be between 1 and"},
		{"min.insync changes within the replication factor", TopicAlter{MinInsyncReplicas: i32(3)}, func(c TopicConfig) TopicConfig { c.MinInsyncReplicas = 3; return c }, ""},
		{"min.insync above the replication factor is refused", TopicAlter{MinInsyncReplicas: i32(4)}, nil, "min.insync.replicas 4"},
		{"retention and size change together", TopicAlter{RetentionMs: i64(-1), RetentionBytes: i64(1 << 30)},
			func(c TopicConfig) TopicConfig { c.RetentionMs, c.RetentionBytes = -1, 1<<30; return c }, ""},
		{"a zero retention is refused", TopicAlter{RetentionMs: i64(0)}, nil, "retention.ms 0"},
		{"max record bytes stays under the request limit", TopicAlter{MaxRecordBytes: i32(d.MaxRecordBytesLimit + 1)}, nil, "max.record.bytes"},
		{"max record bytes changes", TopicAlter{MaxRecordBytes: i32(2 << 20)}, func(c TopicConfig) TopicConfig { c.MaxRecordBytes = 2 << 20; return c }, ""},
		{"the key index cannot be turned on", TopicAlter{KeyIndex: ptrBool(true)}, nil, "key index: it is fixed when a topic is created"},
		{"the key index as it is changes nothing", TopicAlter{KeyIndex: ptrBool(false)}, func(c TopicConfig) TopicConfig { return c }, ""},
		{"cleanup.policy compact", TopicAlter{CleanupPolicy: ptrStr("compact")}, func(c TopicConfig) TopicConfig { c.CleanupPolicy = "compact"; return c }, ""},
		{"cleanup.policy delete,compact is stored as compact,delete", TopicAlter{CleanupPolicy: ptrStr("delete, compact")},
			func(c TopicConfig) TopicConfig { c.CleanupPolicy = "compact,delete"; return c }, ""},
		{"cleanup.policy delete is the default", TopicAlter{CleanupPolicy: ptrStr("delete")}, func(c TopicConfig) TopicConfig { return c }, ""},
		{"an unknown cleanup.policy is refused", TopicAlter{CleanupPolicy: ptrStr("compactt")}, nil, `cleanup.policy "compactt": want delete, compact, or compact,delete`},
		{"an empty cleanup.policy is refused", TopicAlter{CleanupPolicy: ptrStr("")}, nil, "cleanup.policy"},
		{"delete.retention.ms changes", TopicAlter{DeleteRetentionMs: i64(100)}, func(c TopicConfig) TopicConfig { c.DeleteRetentionMs = 100; return c }, ""},
		{"delete.retention.ms 0 is kept apart from the default", TopicAlter{DeleteRetentionMs: i64(0)}, func(c TopicConfig) TopicConfig { c.DeleteRetentionMs = -1; return c }, ""},
		{"a negative delete.retention.ms is refused", TopicAlter{DeleteRetentionMs: i64(-5)}, nil, "delete.retention.ms -5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := AlterConfig("orders", base, c.a, d)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("err %v, want an invalid-config error containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := c.want(base); got != want {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestAlterTopicCommand(t *testing.T) {
	snap := func() *Snapshot {
		return &Snapshot{Topics: map[string]Topic{"orders": {Name: "orders", ID: "id1",
			Config: TopicConfig{Partitions: 2, ReplicationFactor: 1},
			Partitions: []PartitionMeta{
				{Partition: 0, Replicas: []int32{1}, Leader: 1, LeaderEpoch: 7, ISR: []int32{1}},
				{Partition: 1, Replicas: []int32{2}, Leader: 2, LeaderEpoch: 3, ISR: []int32{2}},
			}}}}
	}
	added := []PartitionMeta{{Partition: 2, Replicas: []int32{1}, Leader: 1, ISR: []int32{1}}}
	newCfg := TopicConfig{Partitions: 3, ReplicationFactor: 1, RetentionMs: 5}

	s := snap()
	res := apply(s, &command{Op: opAlterTopic, Topic: &Topic{Name: "orders", ID: "id1", Config: newCfg, Partitions: added}, Count: 2})
	if res.err != nil {
		t.Fatal(res.err)
	}
	got := s.Topics["orders"]
	if got.Config != newCfg || len(got.Partitions) != 3 || got.Partitions[0].LeaderEpoch != 7 || got.Partitions[2].Leader != 1 {
		t.Fatalf("after alter: %+v", got)
	}

	// Computed from a count that changed since: nothing changes.
	s = snap()
	res = apply(s, &command{Op: opAlterTopic, Topic: &Topic{Name: "orders", ID: "id1", Config: newCfg, Partitions: added}, Count: 1})
	if !errors.Is(res.err, ErrConcurrentChange) || len(s.Topics["orders"].Partitions) != 2 {
		t.Fatalf("stale count: err %v, partitions %d", res.err, len(s.Topics["orders"].Partitions))
	}
	// Another incarnation of the topic: unknown.
	res = apply(snap(), &command{Op: opAlterTopic, Topic: &Topic{Name: "orders", ID: "id0", Config: newCfg}, Count: 2})
	if !errors.Is(res.err, ErrUnknownTopic) {
		t.Fatalf("old incarnation: err %v", res.err)
	}
}

func TestAddedPartitionsPlacement(t *testing.T) {
	alive := []BrokerInfo{{ID: 1}, {ID: 2}, {ID: 3}}
	tp := Topic{Name: "orders", Config: TopicConfig{Partitions: 2, ReplicationFactor: 3}, Partitions: make([]PartitionMeta, 2)}
	added, err := addedPartitions(alive, tp, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(added) != 3 || added[0].Partition != 2 || added[2].Partition != 4 {
		t.Fatalf("added %+v", added)
	}
	for _, pm := range added {
		if len(pm.Replicas) != 3 || pm.Leader != pm.Replicas[0] || len(pm.ISR) != 3 {
			t.Fatalf("partition %+v: want 3 distinct replicas, leader first, full ISR", pm)
		}
	}
	if _, err := addedPartitions(alive[:2], tp, 5); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("too few brokers for the replication factor: err %v", err)
	}
	if none, err := addedPartitions(alive, tp, 2); err != nil || none != nil {
		t.Fatalf("no growth: %v %v", none, err)
	}
}

func TestBrokerConfigCommand(t *testing.T) {
	s := &Snapshot{Topics: map[string]Topic{}}
	if res := apply(s, &command{Op: opBrokerConfig, Name: "log.level", Value: "debug"}); res.err != nil || s.BrokerConfig["log.level"] != "debug" {
		t.Fatalf("set: %v %v", res.err, s.BrokerConfig)
	}
	c := s.Clone()
	c.BrokerConfig["log.level"] = "warn"
	if s.BrokerConfig["log.level"] != "debug" {
		t.Fatal("Clone shares the broker settings map")
	}
	if res := apply(s, &command{Op: opBrokerConfig, Name: "log.level"}); res.err != nil || len(s.BrokerConfig) != 0 {
		t.Fatalf("unset: %v %v", res.err, s.BrokerConfig)
	}
}

func ptrBool(b bool) *bool { return &b }

func ptrStr(s string) *string { return &s }

func TestCleanupPolicyAccessors(t *testing.T) {
	for _, c := range []struct {
		policy          string
		compact, delete bool
		kafka           string
	}{{"", false, true, "delete"}, {"compact", true, false, "compact"}, {"compact,delete", true, true, "compact,delete"}} {
		cfg := TopicConfig{CleanupPolicy: c.policy}
		if cfg.Compacted() != c.compact || cfg.Deletes() != c.delete || cfg.Policy() != c.kafka {
			t.Fatalf("%q: compacted %v deletes %v policy %q", c.policy, cfg.Compacted(), cfg.Deletes(), cfg.Policy())
		}
	}
	for stored, want := range map[int64]int64{0: DefaultDeleteRetentionMs, -1: 0, 100: 100} {
		if got := (TopicConfig{DeleteRetentionMs: stored}).DeleteRetention(); got != want {
			t.Fatalf("stored %d: retention %d, want %d", stored, got, want)
		}
	}
}
