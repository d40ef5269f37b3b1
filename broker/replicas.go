package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/internal/fsutil"
	"github.com/skeinlog/skein/partition"
	"github.com/skeinlog/skein/replication"
)

// This file keeps the local replicas in step with the controller's
// metadata. The decisions are pure (planReconcile, decideRole) and tested
// with tables; reconcile and applyRole carry them out.

// assigned is one partition this broker hosts, as the metadata says.
type assigned struct {
	topic cluster.Topic
	meta  cluster.PartitionMeta
}

// reconcilePlan is what reconcile does to match the metadata.
type reconcilePlan struct {
	// wanted: every partition the metadata gives this broker a replica of.
	wanted map[tp]assigned
	// close: local replicas no longer wanted, or of a deleted incarnation
	// of their topic (same name, another id).
	close []tp
	// removeDirs: topics whose local data goes, name → the id of the
	// incarnation that was deleted.
	removeDirs map[string]string
	// open: wanted replicas not open here yet.
	open []tp
	// movedAway: closed replicas of a topic that still exists (moved to
	// other brokers by a reassignment): their data goes. tp → topic id.
	movedAway map[tp]string
}

// planReconcile compares the metadata with the local replicas (tp → the
// topic id each was opened for). Pure.
func planReconcile(snap *cluster.Snapshot, self int32, local map[tp]string) reconcilePlan {
	plan := reconcilePlan{wanted: map[tp]assigned{}, removeDirs: map[string]string{}, movedAway: map[tp]string{}}
	for _, t := range snap.Topics {
		for _, pm := range t.Partitions {
			for _, r := range pm.Replicas {
				if r == self {
					plan.wanted[tp{t.Name, pm.Partition}] = assigned{t, pm}
				}
			}
		}
	}
	for k, topicID := range local {
		w, ok := plan.wanted[k]
		if ok && w.topic.ID == topicID {
			continue
		}
		plan.close = append(plan.close, k)
		if t, ok := snap.Topics[k.topic]; !ok || t.ID != topicID {
			plan.removeDirs[k.topic] = topicID
		} else {
			plan.movedAway[k] = topicID
		}
	}
	for k := range plan.wanted {
		if id, ok := local[k]; !ok || id != plan.wanted[k].topic.ID {
			plan.open = append(plan.open, k)
		}
	}
	return plan
}

// reconcile makes the local replicas match the metadata: it closes replicas
// this broker no longer hosts (deleting their data), opens the ones it now
// hosts, and sets each replica's role and epoch.
func (b *Broker) reconcile() error {
	b.reconcileMu.Lock()
	defer b.reconcileMu.Unlock()
	// The latest metadata, read under the lock: reconciling with an older
	// snapshot than one already applied would undo newer changes.
	snap := b.ctrl.Snapshot()
	select {
	case <-b.stopping:
		return errShuttingDown
	default:
	}
	b.mu.Lock()
	local := make(map[tp]string, len(b.replicas))
	for k, r := range b.replicas {
		local[k] = r.topicID
	}
	plan := planReconcile(snap, b.self.ID, local)
	closing := make([]*replica, 0, len(plan.close))
	for _, k := range plan.close {
		closing = append(closing, b.replicas[k])
		delete(b.replicas, k)
	}
	b.mu.Unlock()
	for _, r := range closing {
		r.stopReplication()
		r.p.Close()
	}
	for name, id := range plan.removeDirs {
		b.removeTopicDir(name, id)
	}
	for k, id := range plan.movedAway {
		b.removePartitionDir(k, id)
	}
	errs := b.openReplicas(plan)
	b.sweepStale(snap)

	b.mu.Lock()
	defer b.mu.Unlock()
	for k, w := range plan.wanted {
		r, ok := b.replicas[k]
		if !ok || (!r.damaged && unchanged(r.applied, w)) {
			continue
		}
		r.cfg = w.topic.Config
		r.p.SetMaxRecordBytes(int(w.topic.Config.MaxRecordBytes))
		r.p.SetCompacted(w.topic.Config.Compacted())
		r.applied = nil
		if err := b.applyRole(r, w.topic, w.meta); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
			continue
		}
		r.applied = &assigned{topic: cluster.Topic{ID: w.topic.ID, Config: w.topic.Config}, meta: w.meta}
	}
	b.snap = snap
	b.applyDynamicConfig(snap)
	b.quotas.setQuotas(snap.Quotas)
	return errors.Join(errs...)
}

// unchanged reports whether a replica's metadata w is what applyRole last
// carried out (prev): same topic incarnation and configuration, same
// partition state. Applying it again would change nothing, and costs a
// pass over every local replica at each metadata change. Pure.
func unchanged(prev *assigned, w assigned) bool {
	if prev == nil {
		return false
	}
	a, b := prev.meta, w.meta
	return prev.topic.ID == w.topic.ID && prev.topic.Config == w.topic.Config &&
		a.Leader == b.Leader && a.LeaderEpoch == b.LeaderEpoch && a.PartitionEpoch == b.PartitionEpoch &&
		slices.Equal(a.Replicas, b.Replicas) && slices.Equal(a.ISR, b.ISR)
}

// openReplicas opens plan.open, OpenConcurrency at a time, creating topic
// directories first. A replica found damaged renews the storage id.
func (b *Broker) openReplicas(plan reconcilePlan) []error {
	var errs []error
	dirsDone := map[string]bool{}
	for _, k := range plan.open {
		if t := plan.wanted[k].topic; !dirsDone[t.Name] {
			dirsDone[t.Name] = true
			if err := b.ensureTopicDir(t); err != nil {
				errs = append(errs, fmt.Errorf("topic %s: %w", t.Name, err))
			}
		}
	}
	sem := make(chan struct{}, b.cfg.OpenConcurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex // guards errs and damaged
	var damaged []error
	for _, k := range plan.open {
		w := plan.wanted[k]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			p, err := b.openReplica(w.topic, w.meta.Partition)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("open %s: %w", k, err))
				mu.Unlock()
				return
			}
			damage := p.Damage()
			b.mu.Lock()
			b.replicas[k] = &replica{p: p, damaged: damage != nil, topicID: w.topic.ID, cfg: w.topic.Config}
			b.mu.Unlock()
			if damage != nil {
				mu.Lock()
				damaged = append(damaged, fmt.Errorf("%s: %w", k, damage))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(damaged) > 0 {
		b.renewStorageID(errors.Join(damaged...))
	}
	return errs
}

// replAction is what happens to a replica's leader tracking or following.
type replAction int

const (
	replStop   replAction = iota // stop it (if running)
	replKeep                     // leave it as it is
	replUpdate                   // same epoch: give it the new ISR and replicas
	replStart                    // stop the old one (if any) and start anew
)

// replicaRoles is what runs for a replica now.
type replicaRoles struct {
	leading        bool  // a replication.Leader runs
	leaderEpoch    int32 // its epoch
	following      bool  // a replication.Follower runs
	followerLeader int32 // whom it follows
	followerEpoch  int32 // in which epoch
}

// roleDecision is what applyRole does to a replica.
type roleDecision struct {
	clearDamaged bool  // the renewed storage id is registered: the replica may lead again
	waitDamaged  bool  // named leader while damaged: lead nothing until the leadership moves
	lead         bool  // become leader; else follower of leaderID
	leaderID     int32 // for a follower: the leader (-1 none)
	tracker      replAction
	follower     replAction
}

// decideRole decides a replica's role from its partition's metadata: a
// damaged replica never leads (until the controller has registered the
// renewed storage id, which took this broker out of every ISR); the leader
// tracks its followers when it has any (a new tracker per epoch); a
// follower follows the named leader (a new follower per leader and
// epoch), or no one while there is no leader. Pure.
func decideRole(self int32, pm cluster.PartitionMeta, damaged, storageRegistered bool, now replicaRoles) roleDecision {
	d := roleDecision{leaderID: pm.Leader, tracker: replStop, follower: replStop}
	if damaged && storageRegistered {
		d.clearDamaged, damaged = true, false
	}
	switch {
	case pm.Leader == self && damaged:
		d.waitDamaged, d.leaderID = true, -1
	case pm.Leader == self:
		d.lead = true
		switch {
		case len(pm.Replicas) == 1:
			d.tracker = replKeep
		case now.leading && now.leaderEpoch == pm.LeaderEpoch:
			d.tracker = replUpdate
		default:
			d.tracker = replStart
		}
	case pm.Leader < 0:
	case now.following && now.followerLeader == pm.Leader && now.followerEpoch == pm.LeaderEpoch:
		d.follower = replKeep
	default:
		d.follower = replStart
	}
	return d
}

func (r *replica) roles() replicaRoles {
	var n replicaRoles
	if r.leader != nil {
		n.leading, n.leaderEpoch = true, r.leader.Epoch()
	}
	if r.follower != nil {
		n.following, n.followerLeader, n.followerEpoch = true, r.follower.Leader(), r.follower.Epoch()
	}
	return n
}

// applyRole makes a replica lead or follow as the metadata says, and starts
// or stops its replication (decideRole decides). b.mu held.
func (b *Broker) applyRole(r *replica, t cluster.Topic, pm cluster.PartitionMeta) error {
	registered := r.damaged && b.storageRegistered(b.ctrl.Snapshot())
	d := decideRole(b.self.ID, pm, r.damaged, registered, r.roles())
	if d.clearDamaged {
		// The controller has taken this broker out of every ISR it shared:
		// what it leads now, it is the only in-sync replica of.
		r.damaged = false
	}
	if d.waitDamaged {
		b.log.Warn("not leading a damaged replica until the controller moves the leadership", "topic", t.Name, "partition", pm.Partition)
	}
	if d.follower == replStop || d.follower == replStart {
		r.stopFollower()
	}
	if d.tracker == replStop || d.tracker == replStart {
		r.stopLeader()
	}
	var err error
	if d.lead {
		err = r.p.BecomeLeader(b.self.ID, partition.LeaderState{
			Epoch: pm.LeaderEpoch, ISR: pm.ISR, MinISR: int(t.Config.MinInsyncReplicas), Solo: len(pm.Replicas) == 1,
		})
	} else {
		err = r.p.BecomeFollower(d.leaderID, pm.LeaderEpoch)
	}
	if err != nil {
		return err
	}
	a := replication.Assignment{Topic: t.Name, Partition: pm.Partition, LeaderEpoch: pm.LeaderEpoch,
		PartitionEpoch: pm.PartitionEpoch, Replicas: pm.Replicas, ISR: pm.ISR}
	switch d.tracker {
	case replStart:
		r.leader = replication.NewLeader(b.repl, r.p, a)
	case replUpdate:
		r.leader.Update(a)
	}
	if d.follower == replStart {
		r.follower = replication.StartFollower(b.repl, r.p, a, pm.Leader)
	}
	return nil
}

// stopReplication stops the replica's leader tracking and following.
func (r *replica) stopReplication() {
	r.stopLeader()
	r.stopFollower()
}

func (r *replica) stopLeader() {
	if r.leader != nil {
		r.leader.Stop()
		r.leader = nil
	}
}

func (r *replica) stopFollower() {
	if r.follower != nil {
		r.follower.Stop()
		r.follower = nil
	}
}

// ensureTopicDir creates a topic's directory with its id file. A directory
// left by an earlier topic of the same name is moved aside first.
func (b *Broker) ensureTopicDir(t cluster.Topic) error {
	tdir := filepath.Join(b.cfg.DataDir, topicsDir, t.Name)
	idPath := filepath.Join(tdir, topicIDFile)
	if id, err := os.ReadFile(idPath); err == nil && strings.TrimSpace(string(id)) != t.ID {
		b.log.Warn("moving aside data of an earlier topic with the same name", "topic", t.Name, "old_id", strings.TrimSpace(string(id)))
		b.removeTopicDir(t.Name, strings.TrimSpace(string(id)))
	}
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(idPath); errors.Is(err, os.ErrNotExist) {
		return fsutil.WriteFileAtomic(idPath, []byte(t.ID+"\n"))
	}
	return nil
}

// openReplica opens one partition replica; its topic directory exists.
func (b *Broker) openReplica(t cluster.Topic, part int32) (*partition.Partition, error) {
	return partition.Open(partition.Config{
		Dir:            filepath.Join(b.cfg.DataDir, topicsDir, t.Name, strconv.Itoa(int(part))),
		Topic:          t.Name,
		Partition:      part,
		MaxRecordBytes: int(t.Config.MaxRecordBytes),
		KeyIndex:       t.Config.KeyIndex,
		Compacted:      t.Config.Compacted(),
		WAL:            b.walOptions(),
		OpenLog:        b.logOpener(),
		OnFatal:        b.onFatal,
		OnDamage:       func(err error) { b.replicaDamaged(tp{t.Name, part}, err) },
		Observer:       b.metrics,
		Trace:          b.cfg.Trace,
		Logger:         b.cfg.Logger,
		ProducerExpiry: b.cfg.ProducerExpiry,
	})
}

// removeTopicDir deletes a topic's directory (discardDir).
func (b *Broker) removeTopicDir(name, id string) {
	b.discardDir(filepath.Join(b.cfg.DataDir, topicsDir, name), name+"-"+id)
}

// lookup finds a partition's metadata and, if this broker hosts it, its
// replica. Unknown topics and out-of-range partitions are errors.
func (b *Broker) lookup(topic string, part int32) (cluster.Topic, cluster.PartitionMeta, *replica, error) {
	snap := b.snapshot()
	t, ok := snap.Topics[topic]
	if !ok {
		if err := cluster.ValidateTopicName(topic); err != nil {
			return t, cluster.PartitionMeta{}, nil, err
		}
		return t, cluster.PartitionMeta{}, nil, fmt.Errorf("%w: %q does not exist (create it with: broker topic create %s)", cluster.ErrUnknownTopic, topic, topic)
	}
	if part < 0 {
		return t, cluster.PartitionMeta{}, nil, invalid("partition %d: partitions are numbered from 0", part)
	}
	if int(part) >= len(t.Partitions) {
		return t, cluster.PartitionMeta{}, nil, fmt.Errorf("%w: partition %d of %q: the topic has %d partitions (0..%d)",
			errUnknownPartition, part, topic, len(t.Partitions), len(t.Partitions)-1)
	}
	pm := t.Partitions[part]
	b.mu.RLock()
	r := b.replicas[tp{topic, part}]
	b.mu.RUnlock()
	return t, pm, r, nil
}

// leaderReplica returns the local leader replica of a partition, or an
// error that tells the client where the leader is.
func (b *Broker) leaderReplica(topic string, part int32) (*replica, error) {
	_, pm, r, err := b.lookup(topic, part)
	if err != nil {
		return nil, err
	}
	if r == nil || pm.Leader != b.self.ID {
		if r == nil && pm.Leader == b.self.ID {
			return nil, errNotReady
		}
		return nil, &partition.NotLeaderError{LeaderID: pm.Leader, LeaderEpoch: pm.LeaderEpoch}
	}
	return r, nil
}
