package broker

// This file holds the data directory (its lock and node.json) and the
// storage identity: renewed when a replica's log is found damaged, and
// registered with the controller before the broker serves.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/internal/fsutil"
)

// openDataDir creates and locks the data directory and checks that it
// belongs to this node id.
func (b *Broker) openDataDir() error {
	dir := b.cfg.DataDir
	if err := os.MkdirAll(filepath.Join(dir, topicsDir), 0o755); err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(f.Name())
		f.Close()
		return fmt.Errorf("data directory %s is in use by another broker (pid %s); give each broker its own --data-dir",
			dir, strings.TrimSpace(string(pid)))
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	b.lock = f

	path := filepath.Join(dir, nodeFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		var n nodeRecord
		if err := json.Unmarshal(data, &n); err != nil {
			return fmt.Errorf("%s is unreadable: %w", path, err)
		}
		if n.NodeID != b.cfg.NodeID {
			return fmt.Errorf("data directory %s belongs to node %d, not %d: start with --node-id %d or use another --data-dir",
				dir, n.NodeID, b.cfg.NodeID, n.NodeID)
		}
		b.storageID = n.StorageID
		if b.storageID == "" { // written by an older version
			if err := b.writeNodeFile(cluster.NewID()); err != nil {
				return err
			}
		}
	case errors.Is(err, os.ErrNotExist):
		// A new (or wiped) data directory: a new storage identity, so the
		// controller knows this broker holds none of what it had.
		if err := b.writeNodeFile(cluster.NewID()); err != nil {
			return err
		}
	default:
		return err
	}
	// Finish deletions a crash interrupted.
	ents, _ := os.ReadDir(filepath.Join(dir, topicsDir))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), deletedPrefix) {
			os.RemoveAll(filepath.Join(dir, topicsDir, e.Name()))
		}
	}
	return nil
}

// writeNodeFile records storage id id in node.json (atomically) and makes
// it the broker's.
func (b *Broker) writeNodeFile(id string) error {
	path := filepath.Join(b.cfg.DataDir, nodeFile)
	data, _ := json.Marshal(nodeRecord{NodeID: b.cfg.NodeID, StorageID: id})
	if err := fsutil.WriteFileAtomic(path, data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	b.storageMu.Lock()
	b.storageID = id
	b.storageMu.Unlock()
	return nil
}

// currentStorageID is this data directory's storage identity.
func (b *Broker) currentStorageID() string {
	b.storageMu.Lock()
	defer b.storageMu.Unlock()
	return b.storageID
}

// renewStorageID gives the data directory a new storage identity because a
// replica's log was found damaged, and gossips it: the controller then
// takes this broker out of every ISR until it has copied its partitions
// again (cluster.BrokerInfo.StorageID).
func (b *Broker) renewStorageID(why error) {
	id := cluster.NewID()
	if err := b.writeNodeFile(id); err != nil {
		b.log.Error("cannot record a new storage id after finding damage", "err", err)
		return
	}
	if err := b.ctrl.SetStorageID(id); err != nil {
		b.log.Error("cannot gossip the new storage id", "err", err)
	}
	b.log.Warn("local data found damaged: new storage id; leaving every ISR until the partitions are copied again", "storage_id", id, "cause", why)
}

// storageRegistered reports whether the metadata has this broker's current
// storage id (so the ISR changes a renewal implies are committed).
func (b *Broker) storageRegistered(s *cluster.Snapshot) bool {
	bi, ok := s.Broker(b.self.ID)
	return ok && bi.StorageID == b.currentStorageID()
}

// replicaDamaged handles damage found by a lazily opened log after the
// start: the replica is closed and opened again, which cuts its log at the
// damage and marks it damaged.
func (b *Broker) replicaDamaged(k tp, err error) {
	if b.closing() {
		return
	}
	b.log.Error("replica found damaged; reopening it", "partition", k.String(), "err", err)
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		b.reconcileMu.Lock()
		b.mu.Lock()
		r := b.replicas[k]
		delete(b.replicas, k)
		b.mu.Unlock()
		if r != nil {
			r.stopReplication()
			r.p.Close()
		}
		b.reconcileMu.Unlock()
		if err := b.reconcile(); err != nil && !errors.Is(err, errShuttingDown) {
			b.log.Error("reopening a damaged replica failed", "partition", k.String(), "err", err)
		}
	}()
}
