package broker

import (
	"testing"

	"github.com/skeinlog/skein/cluster"
)

func TestPartitionHealth(t *testing.T) {
	cfg := cluster.TopicConfig{MinInsyncReplicas: 2}
	topics := map[string]cluster.Topic{"t": {Name: "t", Config: cfg, Partitions: []cluster.PartitionMeta{
		{Leader: 1, Replicas: []int32{1, 2, 3}, ISR: []int32{1, 2, 3}}, // healthy, led by 1
		{Leader: 1, Replicas: []int32{1, 2, 3}, ISR: []int32{1, 2}},    // under-replicated
		{Leader: 1, Replicas: []int32{1, 2, 3}, ISR: []int32{1}},       // under-replicated and below min.insync
		{Leader: 2, Replicas: []int32{1, 2, 3}, ISR: []int32{2}},       // another broker's problem
		{Leader: -1, Replicas: []int32{1, 2, 3}, ISR: []int32{3}},      // offline
	}}}
	if got, want := partitionHealth(topics, 1, false), (partHealth{leaders: 3, underReplicated: 2, belowMinISR: 1}); got != want {
		t.Fatalf("broker 1: %+v, want %+v", got, want)
	}
	// Only the controller counts offline partitions, so a cluster-wide sum
	// counts each once.
	if got, want := partitionHealth(topics, 2, true), (partHealth{leaders: 1, underReplicated: 1, belowMinISR: 1, offline: 1}); got != want {
		t.Fatalf("broker 2 as controller: %+v, want %+v", got, want)
	}
}
