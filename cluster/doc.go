// Package cluster holds the cluster metadata — brokers, topics, replica
// assignment, partition leaders, leader epochs and ISRs — and the controller
// that changes it. Metadata changes are decisions that must be unique, so
// they are made by one controller and published as immutable Snapshots;
// brokers apply each snapshot to their local replicas.
//
// Every broker runs a Controller: gossip membership (hashicorp/memberlist)
// to find brokers and notice failures, and a seat in the Raft controller
// quorum (hashicorp/raft; voters up to 3 or 5, the rest non-voters) whose
// log holds the metadata. The Raft leader is the controller: it registers
// brokers that gossip announces, places new topics, fences a broker only
// after gossip has reported it dead for a while and a direct probe fails
// (never on one gossip event), elects new partition leaders from the ISR
// (no unclean election), applies leaders' ISR changes, and moves leaderships
// off a broker in controlled shutdown. Gossip drives the choices; the Raft
// commit makes each one unique. Every broker applies the committed log to
// its own copy of the metadata (Snapshot, Changes).
//
// The controller log is stored with raft-boltdb (bbolt), the store Consul
// and Nomad use: the log is small and written rarely, and Raft needs random
// access by index, range deletion and a key-value stable store — not the
// append-and-scan shape of the wal package, which is built for partition
// data.
//
// The pure parts — topic name validation, configuration defaults, replica
// placement, elections, ISR change validation — are functions of their
// inputs, tested with tables (decide.go, metadata.go).
package cluster
