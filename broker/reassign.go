package broker

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/skeinlog/skein/cluster"
	pb "github.com/skeinlog/skein/proto/skeinv1"
	"github.com/skeinlog/skein/replication"
)

// Replica reassignment as the admin API serves it. The controller holds
// and drives the state (package cluster); this file turns requests into
// it, reports progress, and throttles the replicas catching up.

const throttleSetting = "replication.throttle"

// reassigner is the controller's part in reassignments.
type reassigner interface {
	Reassign(ctx context.Context, targets []cluster.PartitionTarget) ([]cluster.PartitionTarget, error)
	CancelReassign(ctx context.Context) (int, error)
	Decommission(ctx context.Context, id int32) ([]cluster.PartitionTarget, error)
}

func targetsFromPB(ps []*pb.ReassignTarget) []cluster.PartitionTarget {
	out := make([]cluster.PartitionTarget, len(ps))
	for i, p := range ps {
		out[i] = cluster.PartitionTarget{Topic: p.GetTopic(), Partition: p.GetPartition(), Replicas: slices.Clone(p.GetReplicas())}
	}
	return out
}

func targetsToPB(ts []cluster.PartitionTarget) []*pb.ReassignTarget {
	out := make([]*pb.ReassignTarget, len(ts))
	for i, t := range ts {
		out[i] = &pb.ReassignTarget{Topic: t.Topic, Partition: t.Partition, Replicas: slices.Clone(t.Replicas)}
	}
	return out
}

// PlanReassignment proposes a placement from this broker's metadata.
func (s *server) PlanReassignment(ctx context.Context, req *pb.PlanReassignmentRequest) (*pb.PlanReassignmentResponse, error) {
	plan, err := cluster.PlanReassignment(s.b.ctrl.Snapshot(), cluster.PlanOptions{Brokers: req.Brokers, Topics: req.Topics})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.PlanReassignmentResponse{Partitions: targetsToPB(plan)}, nil
}

// ExecuteReassignment checks the plan, sets the throttle if asked, and has
// the controller start the moves (forwarding to it).
func (s *server) ExecuteReassignment(ctx context.Context, req *pb.ExecuteReassignmentRequest) (*pb.ExecuteReassignmentResponse, error) {
	targets := targetsFromPB(req.Partitions)
	if _, err := cluster.ValidateTargets(s.b.ctrl.Snapshot(), targets); err != nil {
		return nil, toStatus(err)
	}
	if req.Throttle != "" {
		if err := checkBrokerConfig(throttleSetting, req.Throttle); err != nil {
			return nil, toStatus(err)
		}
		if _, err := s.SetBrokerConfig(ctx, &pb.SetBrokerConfigRequest{Name: throttleSetting, Value: req.Throttle}); err != nil {
			return nil, err
		}
	}
	resp, forwarded, err := atController(s.b, ctx, func() (*pb.ExecuteReassignmentResponse, error) {
		moving, err := s.b.ctrl.Reassign(ctx, targets)
		return &pb.ExecuteReassignmentResponse{Moving: targetsToPB(moving)}, err
	}, func(ctx context.Context, c pb.SkeinClient) (*pb.ExecuteReassignmentResponse, error) {
		return c.ExecuteReassignment(ctx, &pb.ExecuteReassignmentRequest{Partitions: req.Partitions})
	})
	if err != nil {
		return nil, err
	}
	if forwarded {
		s.b.awaitMetadata(ctx, func(snap *cluster.Snapshot) bool { return snap.Reassigning() })
	}
	return resp, nil
}

// CancelReassignment sends the moving partitions back (through the controller).
func (s *server) CancelReassignment(ctx context.Context, req *pb.CancelReassignmentRequest) (*pb.CancelReassignmentResponse, error) {
	resp, _, err := atController(s.b, ctx, func() (*pb.CancelReassignmentResponse, error) {
		n, err := s.b.ctrl.CancelReassign(ctx)
		return &pb.CancelReassignmentResponse{Partitions: int32(n)}, err
	}, func(ctx context.Context, c pb.SkeinClient) (*pb.CancelReassignmentResponse, error) {
		return c.CancelReassignment(ctx, req)
	})
	return resp, err
}

// Decommission starts draining a broker (through the controller).
func (s *server) Decommission(ctx context.Context, req *pb.DecommissionRequest) (*pb.DecommissionResponse, error) {
	resp, _, err := atController(s.b, ctx, func() (*pb.DecommissionResponse, error) {
		moving, err := s.b.ctrl.Decommission(ctx, req.BrokerId)
		return &pb.DecommissionResponse{Moving: targetsToPB(moving)}, err
	}, func(ctx context.Context, c pb.SkeinClient) (*pb.DecommissionResponse, error) {
		return c.Decommission(ctx, req)
	})
	return resp, err
}

// reassignState names the step a moving partition is at. Pure.
func reassignState(pm cluster.PartitionMeta) string {
	switch {
	case pm.Leader < 0:
		return "offline"
	case slices.ContainsFunc(pm.Target, func(r int32) bool { return !slices.Contains(pm.ISR, r) }):
		return "catching-up"
	case pm.Leader != pm.Target[0]:
		return "moving-leader"
	default:
		return "finishing"
	}
}

// progressSample is the bytes a partition lacked when last asked.
type progressSample struct {
	left int64
	at   time.Time
}

// progress remembers the last samples, for the copy rate behind an ETA.
type progress struct {
	mu   sync.Mutex
	last map[tp]progressSample
}

// eta estimates the seconds until left bytes are copied, from the rate
// since the last sample, else from the throttle; -1: not known.
func (p *progress) eta(k tp, left int64, now time.Time, throttle int64) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil {
		p.last = map[tp]progressSample{}
	}
	prev, ok := p.last[k]
	p.last[k] = progressSample{left, now}
	switch {
	case left == 0:
		return 0
	case left < 0:
		return -1
	case ok && prev.left > left && now.After(prev.at):
		return float64(left) / (float64(prev.left-left) / now.Sub(prev.at).Seconds())
	case throttle > 0:
		return float64(left) / float64(throttle)
	}
	return -1
}

// ReassignmentStatus reports every moving partition: its step, the bytes
// its new replicas lack (asked of the brokers involved) and an ETA.
func (s *server) ReassignmentStatus(ctx context.Context, req *pb.ReassignmentStatusRequest) (*pb.ReassignmentStatusResponse, error) {
	snap := s.b.ctrl.Snapshot()
	resp := &pb.ReassignmentStatusResponse{Throttle: s.b.dyn.current(throttleSetting)}
	for _, b := range snap.Brokers {
		if b.Draining {
			resp.Draining = append(resp.Draining, b.ID)
		}
	}
	involved := map[int32]bool{}
	for _, name := range snap.TopicNames() {
		for _, pm := range snap.Topics[name].Partitions {
			if len(pm.Target) > 0 {
				involved[pm.Leader] = true
				for _, r := range pm.Target {
					involved[r] = true
				}
			}
		}
	}
	sizes := s.b.replicaSizes(ctx, involved)
	now := time.Now()
	for _, name := range snap.TopicNames() {
		for _, pm := range snap.Topics[name].Partitions {
			if len(pm.Target) == 0 {
				continue
			}
			k := tp{name, pm.Partition}
			left := bytesLeft(pm, k, sizes)
			resp.Partitions = append(resp.Partitions, &pb.ReassignmentProgress{
				Topic: name, Partition: pm.Partition, Replicas: pm.Replicas, Target: pm.Target, Isr: pm.ISR, Leader: pm.Leader,
				State: reassignState(pm), BytesLeft: left, EtaSeconds: s.b.progress.eta(k, left, now, s.b.repl.Throttle.Rate()),
				Cancelled: len(pm.Origin) == 0,
			})
		}
	}
	return resp, nil
}

// bytesLeft is what the target replicas outside the ISR lack of the
// leader's log; -1 when a size is not known. Pure.
func bytesLeft(pm cluster.PartitionMeta, k tp, sizes map[int32]map[tp]int64) int64 {
	var left int64
	for _, r := range pm.Target {
		if slices.Contains(pm.ISR, r) {
			continue
		}
		lead, ok := sizes[pm.Leader][k]
		if !ok {
			return -1
		}
		left += max(0, lead-sizes[r][k]) // a replica not open yet holds 0
	}
	return left
}

// replicaSizes asks the brokers given for the sizes of their replicas
// (each for up to 2 s; a broker that does not answer is left out).
func (b *Broker) replicaSizes(ctx context.Context, brokers map[int32]bool) map[int32]map[tp]int64 {
	out := map[int32]map[tp]int64{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id, yes := range brokers {
		if id < 0 || !yes {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var list []*pb.ReplicaSize
			if id == b.self.ID {
				list = b.localSizes()
			} else {
				c, err := b.peers.internal(id)
				if err != nil {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				resp, err := c.ReplicaSizes(cctx, &pb.ReplicaSizesRequest{})
				cancel()
				if err != nil {
					return
				}
				list = resp.Replicas
			}
			m := map[tp]int64{}
			for _, r := range list {
				m[tp{r.Topic, r.Partition}] = r.SizeBytes
			}
			mu.Lock()
			out[id] = m
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// localSizes lists this broker's replicas with their sizes.
func (b *Broker) localSizes() []*pb.ReplicaSize {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]*pb.ReplicaSize, 0, len(b.replicas))
	for k, r := range b.replicas {
		st := r.p.State()
		out = append(out, &pb.ReplicaSize{Topic: k.topic, Partition: k.partition, SizeBytes: st.SizeBytes, LogEndOffset: st.LogEndOffset})
	}
	return out
}

// ReplicaSizes answers another broker's ReplicaSizes.
func (s *internalServer) ReplicaSizes(ctx context.Context, req *pb.ReplicaSizesRequest) (*pb.ReplicaSizesResponse, error) {
	return &pb.ReplicaSizesResponse{Replicas: s.b.localSizes()}, nil
}

// catchingUp reports whether this broker's replica of a partition is a
// new one of a reassignment, still outside the ISR: the replication
// throttle applies to it. (It reads the controller's snapshot, not b.mu,
// which reconcile holds while it stops followers.)
func (b *Broker) catchingUp(topic string, part int32) bool {
	t, ok := b.ctrl.Snapshot().Topics[topic]
	if !ok || part < 0 || int(part) >= len(t.Partitions) {
		return false
	}
	pm := t.Partitions[part]
	return slices.Contains(pm.Target, b.self.ID) && !slices.Contains(pm.ISR, b.self.ID)
}

// throttleSettingDef is the run-time setting for the replication throttle.
var throttleSettingDef = dynamicSetting{
	name: throttleSetting, doc: "bytes a second this broker's replicas catching up in a reassignment may fetch, together (50MB/s, 10MiB/s; off); in-sync followers are never throttled",
	check:   func(v string) error { _, err := replication.ParseRate(v); return err },
	startup: func(b *Broker) string { return "off" },
	apply: func(b *Broker, v string) error {
		r, err := replication.ParseRate(v)
		if err != nil {
			return err
		}
		b.repl.Throttle.SetRate(r)
		return nil
	},
}

// removePartitionDir deletes the data of a replica this broker no longer
// holds (moved elsewhere).
func (b *Broker) removePartitionDir(k tp, topicID string) {
	src := filepath.Join(b.cfg.DataDir, topicsDir, k.topic, strconv.Itoa(int(k.partition)))
	b.log.Info("replica moved to other brokers: its data is deleted", "topic", k.topic, "partition", k.partition)
	b.discardDir(src, fmt.Sprintf("%s-%s-p%d", k.topic, topicID, k.partition))
}
