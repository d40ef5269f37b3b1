package broker

import (
	"fmt"
	"time"
)

// GroupsConfig configures the group coordinator.
type GroupsConfig struct {
	// OffsetsPartitions is the partition count of __consumer_offsets,
	// fixed when the topic is created (default 50). Changing it later does
	// not move existing groups: the topic keeps the count it was made with.
	OffsetsPartitions int32
	// SnapshotEvery and SnapshotInterval: an offsets partition's leader
	// writes a snapshot of its groups' offsets after this many commits, or
	// after this long when anything changed (defaults 10,000 and 10 min).
	SnapshotEvery    int
	SnapshotInterval time.Duration
	// OffsetsRetention is the time-based retention of __consumer_offsets
	// (default 7 days). It must be well above SnapshotInterval: the
	// retention may delete a segment only once a newer snapshot exists.
	OffsetsRetention time.Duration
}

func defaultGroupsConfig() GroupsConfig {
	return GroupsConfig{OffsetsPartitions: 50, SnapshotEvery: 10000, SnapshotInterval: 10 * time.Minute, OffsetsRetention: 7 * 24 * time.Hour}
}

// validate fills zero values and rejects contradictions.
func (c *GroupsConfig) validate() error {
	d := defaultGroupsConfig()
	if c.OffsetsPartitions == 0 {
		c.OffsetsPartitions = d.OffsetsPartitions
	}
	if c.OffsetsPartitions < 1 || c.OffsetsPartitions > 1000 {
		return fmt.Errorf("config: --offsets-topic-partitions %d: between 1 and 1000", c.OffsetsPartitions)
	}
	if c.SnapshotEvery <= 0 {
		c.SnapshotEvery = d.SnapshotEvery
	}
	if c.SnapshotInterval <= 0 {
		c.SnapshotInterval = d.SnapshotInterval
	}
	if c.OffsetsRetention <= 0 {
		c.OffsetsRetention = d.OffsetsRetention
	}
	if c.OffsetsRetention < 4*c.SnapshotInterval {
		return fmt.Errorf("config: offsets retention %v must be at least 4 × the snapshot interval %v", c.OffsetsRetention, c.SnapshotInterval)
	}
	return nil
}
