package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/skeinlog/skein/cluster"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// Leftover partition data: directories of replicas this broker no longer
// holds that reconcile never saw close — the broker was down when its
// topic was deleted or its replica moved away. A sweep finds and deletes
// them, on start and at every reconcile, but only once this broker's
// metadata has reached the controller's as it was after the broker started
// (sweepFloor): older metadata could lack a topic created since or a
// replica placed here since. planSweep decides; sweepStale does it. Once a
// sweep has deleted all it found, reconciles skip it (swept) until a
// deletion fails: it reads every topic directory, and a reconcile runs at
// every metadata change, so sweeping each time made creating a topic cost
// O(topics) file system calls.

// diskTopic is a topic directory found under the data directory.
type diskTopic struct {
	name       string
	id         string  // its topic.id; "" when the file is missing
	partitions []int32 // its partition directories
}

// sweepPlan is what a sweep deletes.
type sweepPlan struct {
	topics     []staleDir // whole topic directories
	partitions []staleDir // single partition directories
}

// staleDir names one directory to delete and why.
type staleDir struct {
	topic     string
	id        string
	partition int32 // -1 for a whole topic directory
	reason    string
}

// holdsReplica reports whether the metadata names self among a
// partition's replicas, the target of its move or its original set. Pure.
func holdsReplica(pm cluster.PartitionMeta, self int32) bool {
	return slices.Contains(pm.Replicas, self) || slices.Contains(pm.Target, self) || slices.Contains(pm.Origin, self)
}

// planSweep picks the local directories of partitions the metadata gives
// this broker no replica of: a topic's whole directory when the topic is
// gone (or is another incarnation of the name), else the partitions this
// broker holds no replica of. Replicas open here (in reconcile's hands)
// are never picked, nor a topic directory with any of them. Pure.
func planSweep(snap *cluster.Snapshot, self int32, disk []diskTopic, open map[tp]bool) sweepPlan {
	var plan sweepPlan
	for _, d := range disk {
		t, ok := snap.Topics[d.name]
		if !ok || d.id != "" && d.id != t.ID {
			reason := "topic deleted"
			if ok {
				reason = "topic deleted and created again"
			}
			if !slices.ContainsFunc(d.partitions, func(p int32) bool { return open[tp{d.name, p}] }) {
				plan.topics = append(plan.topics, staleDir{topic: d.name, id: d.id, partition: -1, reason: reason})
			}
			continue
		}
		for _, p := range d.partitions {
			if open[tp{d.name, p}] {
				continue
			}
			if int(p) < len(t.Partitions) && holdsReplica(t.Partitions[p], self) {
				continue
			}
			plan.partitions = append(plan.partitions, staleDir{topic: d.name, id: t.ID, partition: p, reason: "replica moved to other brokers"})
		}
	}
	return plan
}

// listTopicDirs reads the topic directories under the data directory
// (skipping those already being deleted) and their partition directories.
func listTopicDirs(dataDir string) ([]diskTopic, error) {
	base := filepath.Join(dataDir, topicsDir)
	ents, err := os.ReadDir(base)
	if err != nil {
		return nil, err
	}
	var out []diskTopic
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), deletedPrefix) {
			continue
		}
		d := diskTopic{name: e.Name()}
		if id, err := os.ReadFile(filepath.Join(base, e.Name(), topicIDFile)); err == nil {
			d.id = strings.TrimSpace(string(id))
		}
		parts, err := os.ReadDir(filepath.Join(base, e.Name()))
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			n, err := strconv.ParseInt(p.Name(), 10, 32)
			if p.IsDir() && err == nil && n >= 0 && strconv.Itoa(int(n)) == p.Name() {
				d.partitions = append(d.partitions, int32(n))
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// sweepStale deletes leftover partition directories (planSweep) once snap
// is at least the controller's metadata of after this broker started, until
// one sweep deleted all it found (b.swept). Called by reconcile, which
// holds reconcileMu.
func (b *Broker) sweepStale(snap *cluster.Snapshot) {
	floor := b.sweepFloor.Load()
	if floor == 0 || snap.Version < floor || b.swept.Load() {
		return
	}
	b.swept.Store(true) // a failed deletion below clears it
	disk, err := listTopicDirs(b.cfg.DataDir)
	if err != nil {
		b.log.Error("could not list the data directory for leftover partitions", "err", err)
		b.swept.Store(false)
		return
	}
	b.mu.RLock()
	open := make(map[tp]bool, len(b.replicas))
	for k := range b.replicas {
		open[k] = true
	}
	b.mu.RUnlock()
	plan := planSweep(snap, b.self.ID, disk, open)
	base := filepath.Join(b.cfg.DataDir, topicsDir)
	for _, d := range plan.topics {
		b.log.Info("deleting the data of a topic this broker holds no replica of", "topic", d.topic, "topic_id", d.id, "reason", d.reason, "metadata_version", snap.Version)
		b.discardDir(filepath.Join(base, d.topic), fmt.Sprintf("%s-%s", d.topic, d.id))
	}
	for _, d := range plan.partitions {
		b.log.Info("deleting the data of a partition this broker holds no replica of", "topic", d.topic, "partition", d.partition, "reason", d.reason, "metadata_version", snap.Version)
		b.discardDir(filepath.Join(base, d.topic, strconv.Itoa(int(d.partition))), fmt.Sprintf("%s-%s-p%d", d.topic, d.id, d.partition))
	}
}

// discardDir has the journals forget the logs of a directory, renames it
// aside under the topics directory (atomic: a crash leaves it whole or
// marked deleted, and a restart finishes the job) and deletes it in the
// background. When that fails the directory stays, and the next reconcile
// sweeps again (b.swept cleared).
func (b *Broker) discardDir(src, label string) {
	if err := b.forgetLogs(src); err != nil {
		// Keep the data: a replay could write deleted records into it.
		b.log.Error("could not record the deletion of the logs in the journal; the directory stays", "dir", src, "err", err)
		b.swept.Store(false)
		return
	}
	dst := filepath.Join(b.cfg.DataDir, topicsDir, fmt.Sprintf("%s%s-%d", deletedPrefix, label, time.Now().UnixNano()))
	if err := os.Rename(src, dst); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			b.log.Error("could not delete a directory", "dir", src, "err", err)
			b.swept.Store(false)
		}
		return
	}
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		if err := os.RemoveAll(dst); err != nil {
			b.log.Error("could not delete a directory", "dir", dst, "err", err)
		}
	}()
}

// learnSweepFloor asks the controller for its metadata version (retrying
// until it answers or the broker stops), records it as the version this
// broker's metadata must reach before a sweep, and reconciles once it has.
func (b *Broker) learnSweepFloor() {
	defer b.bg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-b.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	var v uint64
	err := b.peers.toController(ctx, func(ctx context.Context, local bool, c pb.InternalClient) (err error) {
		if local {
			v, err = b.ctrl.CommittedVersion(ctx)
			return err
		}
		resp, err := c.MetadataVersion(ctx, &pb.MetadataVersionRequest{})
		v = resp.GetVersion()
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("could not learn the controller's metadata version: leftover partition data is kept", "err", err)
		}
		return
	}
	b.sweepFloor.Store(max(v, 1))
	b.awaitMetadata(ctx, func(s *cluster.Snapshot) bool { return s.Version >= v })
	if err := b.reconcile(); err != nil && !errors.Is(err, errShuttingDown) {
		b.log.Error("applying metadata failed", "err", err)
	}
}

// MetadataVersion answers another broker's MetadataVersion (controller only).
func (s *internalServer) MetadataVersion(ctx context.Context, req *pb.MetadataVersionRequest) (*pb.MetadataVersionResponse, error) {
	v, err := s.b.ctrl.CommittedVersion(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.MetadataVersionResponse{Version: v}, nil
}
