package broker

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/skeinlog/skein/cluster"
)

// sweepSnap is metadata (version 10) with topic "a" (id A: partition 0 on
// 1,2,3; partition 1 on 2,3,4; partition 2 moving 2,3,4 -> 1,3,4, so on
// 1,3,4,2) and topic "b" (id B: partition 0 on 2,3,4, a cancelled move
// heading back there).
func sweepSnap() *cluster.Snapshot {
	return &cluster.Snapshot{Version: 10, Topics: map[string]cluster.Topic{
		"a": {Name: "a", ID: "A", Partitions: []cluster.PartitionMeta{
			{Partition: 0, Replicas: []int32{1, 2, 3}},
			{Partition: 1, Replicas: []int32{2, 3, 4}},
			{Partition: 2, Replicas: []int32{1, 3, 4, 2}, Target: []int32{1, 3, 4}, Origin: []int32{2, 3, 4}},
		}},
		"b": {Name: "b", ID: "B", Partitions: []cluster.PartitionMeta{
			{Partition: 0, Replicas: []int32{2, 3, 4}, Target: []int32{2, 3, 4}},
		}},
	}}
}

// The sweep's rules, one case each (broker 1 is self).
func TestPlanSweep(t *testing.T) {
	snap := sweepSnap()
	cases := []struct {
		name       string
		disk       []diskTopic
		open       map[tp]bool
		topics     []string // whole topic directories deleted
		partitions []tp     // partition directories deleted
	}{
		{"replicas in the metadata stay", []diskTopic{{name: "a", id: "A", partitions: []int32{0}}}, nil, nil, nil},
		{"a replica being added by a move stays", []diskTopic{{name: "a", id: "A", partitions: []int32{2}}}, nil, nil, nil},
		{"a replica moved away goes", []diskTopic{{name: "a", id: "A", partitions: []int32{0, 1}}}, nil, nil, []tp{{"a", 1}}},
		{"a partition the topic does not have goes", []diskTopic{{name: "a", id: "A", partitions: []int32{0, 7}}}, nil, nil, []tp{{"a", 7}}},
		{"a partition dir of the current topic without its id file: same rules",
			[]diskTopic{{name: "a", partitions: []int32{0, 1}}}, nil, nil, []tp{{"a", 1}}},
		{"a deleted topic goes whole", []diskTopic{{name: "gone", id: "G", partitions: []int32{0, 1}}}, nil, []string{"gone"}, nil},
		{"a deleted topic without its id file goes whole", []diskTopic{{name: "gone", partitions: []int32{0}}}, nil, []string{"gone"}, nil},
		{"an earlier topic of the same name goes whole", []diskTopic{{name: "b", id: "OLD", partitions: []int32{0}}}, nil, []string{"b"}, nil},
		{"an open replica is reconcile's: never swept", []diskTopic{{name: "a", id: "A", partitions: []int32{1}}},
			map[tp]bool{{"a", 1}: true}, nil, nil},
		{"nor the topic directory holding one", []diskTopic{{name: "gone", id: "G", partitions: []int32{0, 1}}},
			map[tp]bool{{"gone", 1}: true}, nil, nil},
		{"a replica in none of replicas, target, origin goes", []diskTopic{{name: "b", id: "B", partitions: []int32{0}}}, nil, nil, []tp{{"b", 0}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan := planSweep(snap, 1, tc.disk, tc.open)
			var topics []string
			for _, d := range plan.topics {
				topics = append(topics, d.topic)
				if d.partition != -1 || d.reason == "" {
					t.Errorf("topic entry %+v", d)
				}
			}
			var parts []tp
			for _, d := range plan.partitions {
				parts = append(parts, tp{d.topic, d.partition})
				if d.id != snap.Topics[d.topic].ID || d.reason == "" {
					t.Errorf("partition entry %+v", d)
				}
			}
			if !slices.Equal(topics, tc.topics) || !slices.Equal(parts, tc.partitions) {
				t.Fatalf("deletes topics %v partitions %v; want %v %v", topics, parts, tc.topics, tc.partitions)
			}
		})
	}
}

func mkdirs(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// The sweep deletes nothing until the metadata has reached the version the
// controller had after the start, then exactly the leftovers; what it
// deletes is renamed aside first and then gone.
func TestSweepStaleWaitsForCurrentMetadata(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, topicsDir)
	mkdirs(t, filepath.Join(base, "a", "0"), filepath.Join(base, "a", "1"), filepath.Join(base, "gone", "0"), filepath.Join(base, "a", "notapartition"))
	for name, id := range map[string]string{"a": "A", "gone": "G"} {
		if err := os.WriteFile(filepath.Join(base, name, topicIDFile), []byte(id+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := &Broker{cfg: Config{DataDir: dir}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), replicas: map[tp]*replica{}}
	b.self.ID = 1
	exists := func(p string) bool { _, err := os.Stat(filepath.Join(base, p)); return err == nil }
	all := []string{"a/0", "a/1", "gone/0", "a/notapartition"}

	snap := sweepSnap()
	b.sweepStale(snap) // no floor learnt yet
	b.sweepFloor.Store(11)
	b.sweepStale(snap) // metadata older than the controller's
	b.bg.Wait()
	for _, p := range all {
		if !exists(p) {
			t.Fatalf("%s deleted before the metadata was current", p)
		}
	}
	snap.Version = 11
	b.sweepStale(snap)
	b.bg.Wait()
	for p, want := range map[string]bool{"a/0": true, "a/1": false, "gone": false, "a/notapartition": true, "a/" + topicIDFile: true} {
		if exists(p) != want {
			t.Errorf("%s exists: %v, want %v", p, exists(p), want)
		}
	}
	ents, _ := os.ReadDir(base)
	if len(ents) != 1 || ents[0].Name() != "a" {
		t.Errorf("left in %s: %v; want only a (nothing renamed aside left over)", base, ents)
	}

	// Swept once: later metadata changes do not read the data directory
	// again (reconcile deletes what it closes itself), so a leftover made
	// behind the broker's back now stays until a restart.
	mkdirs(t, filepath.Join(base, "late", "0"))
	snap.Version = 12
	b.sweepStale(snap)
	b.bg.Wait()
	if !exists("late/0") {
		t.Fatal("a second sweep ran after one that deleted all it found")
	}
	// A deletion that failed makes the next reconcile sweep again.
	b.swept.Store(false)
	b.sweepStale(snap)
	b.bg.Wait()
	if exists("late") {
		t.Fatal("the sweep after a failed deletion did not run")
	}
}
