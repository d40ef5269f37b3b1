// Package cluster holds the cluster metadata — brokers, topics, replica
// assignment, partition leaders, leader epochs and ISRs — and the controller
// that changes it. Metadata changes are decisions that must be unique, so
// they are made by one controller and published as immutable Snapshots;
// brokers apply each snapshot to their local replicas.
//
// Today the only controller is Standalone, for a single broker, which
// persists the metadata in one JSON file. The cluster work adds gossip
// membership (hashicorp/memberlist) and a Raft-replicated controller
// (hashicorp/raft) behind the same methods: Snapshot, Changes, CreateTopic,
// DeleteTopic, Close.
//
// The pure parts — topic name validation, configuration defaults, replica
// placement — are functions of their inputs, tested with tables.
package cluster
