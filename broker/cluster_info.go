package broker

import (
	"context"
	"slices"
	"sort"

	"github.com/skeinlog/skein/cluster"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// DescribeCluster answers `broker cluster`: every broker with its gossip
// state (as this broker sees it), fence and quorum role, and the partitions
// that need attention.
func (s *server) DescribeCluster(ctx context.Context, req *pb.DescribeClusterRequest) (*pb.DescribeClusterResponse, error) {
	snap := s.b.ctrl.Snapshot()
	resp := &pb.DescribeClusterResponse{ClusterId: snap.ClusterID, ControllerId: s.b.ctrl.ControllerID(), AnsweredBy: s.b.self.ID}
	gossip := map[int32]*pb.ClusterMember{}
	storage := map[int32]string{}
	for _, m := range s.b.ctrl.Members() {
		// Several members may claim one id (a restart not yet noticed, or
		// a node impersonating a broker): the one at the broker's
		// registered gossip address wins.
		if cur, ok := gossip[m.Meta.ID]; ok {
			if bi, reg := snap.Broker(m.Meta.ID); reg && cur.GossipAddr == bi.GossipAddr {
				continue
			}
		}
		gossip[m.Meta.ID] = &pb.ClusterMember{Id: m.Meta.ID, Addr: m.Meta.Addr, Rack: m.Meta.Rack, GossipState: m.State,
			GossipAddr: m.GossipAddr, RaftAddr: m.Meta.RaftAddr}
		storage[m.Meta.ID] = m.Meta.StorageID
	}
	voters := s.b.ctrl.Voters()
	seen := map[int32]bool{}
	add := func(m *pb.ClusterMember) {
		if v, ok := voters[m.Id]; ok {
			m.QuorumRole = map[bool]string{true: "voter", false: "nonvoter"}[v]
		}
		resp.Members = append(resp.Members, m)
		seen[m.Id] = true
	}
	ext := s.b.external(ctx)
	for _, bi := range snap.Brokers {
		m := gossip[bi.ID]
		if m == nil {
			// Gone from gossip: dead once the controller has confirmed it
			// (fenced), suspect until then.
			state := "suspect"
			if bi.Fenced {
				state = "dead"
			}
			m = &pb.ClusterMember{Id: bi.ID, Rack: bi.Rack, GossipState: state}
		}
		m.Addr = clientAddr(bi, ext)
		m.Fenced, m.Draining = bi.Fenced, bi.Draining
		add(m)
	}
	for id, m := range gossip {
		if !seen[id] {
			// Gossiping, not registered: not yet, or no longer (its data
			// directory was decommissioned).
			m.Decommissioned = snap.Decommissioned(id, storage[id])
			add(m)
		}
	}
	sort.Slice(resp.Members, func(i, j int) bool { return resp.Members[i].Id < resp.Members[j].Id })
	for _, name := range snap.TopicNames() {
		t := snap.Topics[name]
		resp.Topics++
		for _, pm := range t.Partitions {
			resp.Partitions++
			problem := ""
			switch {
			case pm.Leader < 0:
				problem = "leaderless"
			case len(pm.ISR) < int(t.Config.MinInsyncReplicas):
				problem = "below-min-isr"
			case underReplicated(pm):
				problem = "under-replicated"
			}
			if problem != "" {
				resp.Problems = append(resp.Problems, &pb.PartitionProblem{Topic: t.Name, Partition: pm.Partition, Leader: pm.Leader,
					Replicas: slices.Clone(pm.Replicas), Isr: slices.Clone(pm.ISR), Problem: problem})
			}
		}
	}
	s.b.brokerLoads(ctx, snap, resp.Members)
	return resp, nil
}

// brokerLoads fills each member's replica, leader and byte counts: the
// counts from the metadata, the bytes asked of each broker (-1 when it
// does not answer).
func (b *Broker) brokerLoads(ctx context.Context, snap *cluster.Snapshot, members []*pb.ClusterMember) {
	ask := map[int32]bool{}
	for _, m := range members {
		ask[m.Id] = m.GossipState == "alive"
	}
	sizes := b.replicaSizes(ctx, ask)
	for _, m := range members {
		m.Bytes = -1
		if s, ok := sizes[m.Id]; ok {
			m.Bytes = 0
			for _, n := range s {
				m.Bytes += n
			}
		}
		for _, t := range snap.Topics {
			for _, pm := range t.Partitions {
				if slices.Contains(pm.Replicas, m.Id) {
					m.Replicas++
				}
				if pm.Leader == m.Id {
					m.Leaders++
				}
			}
		}
	}
}
