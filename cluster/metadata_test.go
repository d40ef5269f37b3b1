package cluster

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateTopicName(t *testing.T) {
	good := []string{"a", "orders", "Orders.v2", "a_b-c", "x-", "_x", strings.Repeat("a", 249), "a..b"}
	bad := []string{"", ".", "..", "../x", "a/b", "a\x00b", "-x", "__consumer", "a b", "naïve", strings.Repeat("a", 250), "a\\b", "ab:c"}
	for _, n := range good {
		if err := ValidateTopicName(n); err != nil {
			t.Errorf("%q refused: %v", n, err)
		}
	}
	for _, n := range bad {
		if err := ValidateTopicName(n); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("%q accepted (%v)", n, err)
		}
	}
}

func i32(v int32) *int32 { return &v }
func i64(v int64) *int64 { return &v }

func TestResolveConfig(t *testing.T) {
	d := DefaultDefaults()
	c, err := ResolveConfig(TopicSpec{Name: "t"}, d, 1)
	if err != nil {
		t.Fatal(err)
	}
	if c.Partitions != 1 || c.ReplicationFactor != 1 || c.MinInsyncReplicas != 1 || c.RetentionMs != 604800000 || c.RetentionBytes != -1 || c.MaxRecordBytes != 1<<20 {
		t.Fatalf("defaults: %+v", c)
	}
	c, err = ResolveConfig(TopicSpec{Name: "t", Partitions: 6, ReplicationFactor: 3}, d, 3)
	if err != nil || c.MinInsyncReplicas != 2 {
		t.Fatalf("rf 3: %+v %v", c, err)
	}
	bad := []TopicSpec{
		{Name: "t", Partitions: -1},
		{Name: "t", Partitions: d.MaxPartitions + 1},
		{Name: "t", ReplicationFactor: 2},         // one broker
		{Name: "t", MinInsyncReplicas: i32(2)},    // > rf
		{Name: "t", MinInsyncReplicas: i32(0)},    // < 1
		{Name: "t", RetentionMs: i64(0)},          // would delete at once
		{Name: "t", RetentionBytes: i64(-2)},      // not -1
		{Name: "t", MaxRecordBytes: i32(0)},       // nothing fits
		{Name: "t", MaxRecordBytes: i32(1 << 30)}, // over the request limit
	}
	for _, s := range bad {
		if _, err := ResolveConfig(s, d, 1); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v accepted (%v)", s, err)
		}
	}
	if _, err := ResolveConfig(TopicSpec{Name: "../x"}, d, 1); !errors.Is(err, ErrInvalidTopic) {
		t.Errorf("bad name accepted: %v", err)
	}
}

func TestAssignReplicasSpreadsLeaders(t *testing.T) {
	brokers := []BrokerInfo{{ID: 3, Rack: "b"}, {ID: 1, Rack: "a"}, {ID: 2, Rack: "a"}, {ID: 4, Rack: "b"}}
	asg := AssignReplicas(brokers, 8, 3, 0)
	leaders := map[int32]int{}
	for p, reps := range asg {
		if len(reps) != 3 {
			t.Fatalf("partition %d: %v", p, reps)
		}
		seen := map[int32]bool{}
		racks := map[string]bool{}
		for _, r := range reps {
			if seen[r] {
				t.Fatalf("partition %d repeats broker %d: %v", p, r, reps)
			}
			seen[r] = true
			for _, b := range brokers {
				if b.ID == r {
					racks[b.Rack] = true
				}
			}
		}
		if len(racks) != 2 {
			t.Fatalf("partition %d on one rack: %v", p, reps)
		}
		leaders[reps[0]]++
	}
	for id, n := range leaders {
		if n != 2 {
			t.Fatalf("broker %d leads %d of 8 partitions: %v", id, n, leaders)
		}
	}
	if got := AssignReplicas(brokers[:1], 3, 1, 5); len(got) != 3 || got[2][0] != 3 {
		t.Fatalf("single broker: %v", got)
	}
}

// A retried create compares the topic it finds with what it asked for:
// only the settings the request names count.
func TestTopicSpecMatches(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	i64 := func(v int64) *int64 { return &v }
	ptr := func(v string) *string { return &v }
	have := TopicConfig{Partitions: 3, ReplicationFactor: 3, MinInsyncReplicas: 2, RetentionMs: 1000, RetentionBytes: -1, MaxRecordBytes: 1 << 20}
	for _, c := range []struct {
		spec TopicSpec
		want bool
	}{
		{TopicSpec{Name: "a"}, true},
		{TopicSpec{Name: "a", Partitions: 3, ReplicationFactor: 3, MinInsyncReplicas: i32(2), RetentionMs: i64(1000)}, true},
		{TopicSpec{Name: "a", Partitions: 4}, false},
		{TopicSpec{Name: "a", ReplicationFactor: 1}, false},
		{TopicSpec{Name: "a", MinInsyncReplicas: i32(1)}, false},
		{TopicSpec{Name: "a", RetentionMs: i64(5)}, false},
		{TopicSpec{Name: "a", RetentionBytes: i64(10)}, false},
		{TopicSpec{Name: "a", MaxRecordBytes: i32(10)}, false},
		{TopicSpec{Name: "a", KeyIndex: true}, false},
		{TopicSpec{Name: "a", CleanupPolicy: ptr("delete")}, true},
		{TopicSpec{Name: "a", CleanupPolicy: ptr("compact")}, false},
		{TopicSpec{Name: "a", DeleteRetentionMs: i64(5)}, false},
	} {
		if got := c.spec.Matches(have); got != c.want {
			t.Errorf("%+v matches %+v: %v, want %v", c.spec, have, got, c.want)
		}
	}
}
