package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Standalone is the controller of a single-broker cluster: it is its own
// controller, leads every partition, and keeps the metadata in one JSON
// file in the data directory (written temp file + fsync + rename). The
// cluster issue replaces it with a Raft-replicated controller behind the
// same methods.
type Standalone struct {
	path     string
	defaults Defaults

	mu      sync.Mutex // guards snap and changed
	snap    *Snapshot
	changed chan struct{}
}

const metadataFile = "metadata.json"

// OpenStandalone loads (or creates) the metadata in dir for broker self.
func OpenStandalone(dir string, self BrokerInfo, d Defaults) (*Standalone, error) {
	s := &Standalone{path: filepath.Join(dir, metadataFile), defaults: d, changed: make(chan struct{})}
	data, err := os.ReadFile(s.path)
	switch {
	case err == nil:
		var snap Snapshot
		if err := json.Unmarshal(data, &snap); err != nil {
			return nil, fmt.Errorf("metadata %s is unreadable: %w", s.path, err)
		}
		if snap.Topics == nil {
			snap.Topics = map[string]Topic{}
		}
		s.snap = &snap
	case errors.Is(err, os.ErrNotExist):
		s.snap = &Snapshot{ClusterID: NewID(), Topics: map[string]Topic{}}
	default:
		return nil, err
	}
	// The broker's address may change between runs.
	s.snap.ControllerID = self.ID
	s.snap.Brokers = []BrokerInfo{self}
	for name, t := range s.snap.Topics {
		for i := range t.Partitions {
			t.Partitions[i].Replicas = []int32{self.ID}
			t.Partitions[i].ISR = []int32{self.ID}
			t.Partitions[i].Leader = self.ID
		}
		s.snap.Topics[name] = t
	}
	if err := s.save(s.snap); err != nil {
		return nil, err
	}
	return s, nil
}

// Snapshot returns the current metadata. Do not modify it.
func (s *Standalone) Snapshot() *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

// Changes returns a channel closed at the next metadata change.
func (s *Standalone) Changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// CreateTopic validates spec, assigns its partitions and commits it.
func (s *Standalone) CreateTopic(_ context.Context, spec TopicSpec) (Topic, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg, err := ResolveConfig(spec, s.defaults, len(s.snap.Brokers))
	if err != nil {
		return Topic{}, err
	}
	if _, ok := s.snap.Topics[spec.Name]; ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrTopicExists, spec.Name)
	}
	t := Topic{Name: spec.Name, ID: NewID(), Config: cfg}
	for i, reps := range AssignReplicas(s.snap.Brokers, cfg.Partitions, cfg.ReplicationFactor, len(s.snap.Topics)) {
		t.Partitions = append(t.Partitions, PartitionMeta{
			Partition: int32(i), Replicas: reps, Leader: reps[0], ISR: append([]int32(nil), reps...),
		})
	}
	next := s.snap.Clone()
	next.Topics[t.Name] = t
	if err := s.commitLocked(next); err != nil {
		return Topic{}, err
	}
	return t, nil
}

// DeleteTopic removes a topic from the metadata.
func (s *Standalone) DeleteTopic(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.snap.Topics[name]; !ok {
		return fmt.Errorf("%w: %q", ErrUnknownTopic, name)
	}
	next := s.snap.Clone()
	delete(next.Topics, name)
	return s.commitLocked(next)
}

// commitLocked persists next and publishes it. s.mu held.
func (s *Standalone) commitLocked(next *Snapshot) error {
	next.Version = s.snap.Version + 1
	if err := s.save(next); err != nil {
		return fmt.Errorf("save metadata: %w", err)
	}
	s.snap = next
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

func (s *Standalone) save(snap *Snapshot) error {
	data, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(s.path, data)
}

// Close releases nothing today; it exists so the broker treats every
// controller alike.
func (s *Standalone) Close() error { return nil }

// WriteFileAtomic writes data to path via a temp file, fsync, rename and a
// directory fsync: after a crash the file is the old or the new, never a mix.
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(tmp)
		return werr
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
