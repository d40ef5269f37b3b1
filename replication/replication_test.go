package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/skeinlog/skein/internal/chaos"
	"github.com/skeinlog/skein/journal"
	"github.com/skeinlog/skein/partition"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
	"github.com/skeinlog/skein/segment"
	"github.com/skeinlog/skein/wal"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// hub is the in-memory twin of the broker's gRPC replication transport and
// controller (STYLE H5): it routes a follower's requests straight to the
// leader's Leader, and can cut links.
type hub struct {
	mu       sync.Mutex
	leaders  map[int32]*Leader // by broker id
	parts    map[int32]*partition.Partition
	cut      map[[2]int32]bool
	isr      []int32
	history  [][]int32 // every ISR the hub accepted
	pepoch   int32
	requests int
	fetches  map[int32][]int64 // fetch offsets by follower
	// engine is the storage engine the nodes' partitions run on: "wal"
	// (the default) or "journal" (a journal per node).
	engine string
}

// forEachEngine runs a test on each storage engine.
func forEachEngine(t *testing.T, fn func(t *testing.T, engine string)) {
	for _, e := range []string{"wal", "journal"} {
		t.Run(e, func(t *testing.T) { fn(t, e) })
	}
}

// logOpener is the OpenLog of a node's partition on engine: nil for the
// wal engine (the partition's default), else a journal of the node's own,
// closed when the test ends.
func logOpener(t *testing.T, engine string) func(string) (partition.Log, error) {
	if engine != "journal" {
		return nil
	}
	j, _, err := journal.Open(t.TempDir(), journal.Options{UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Replay(func(name string) (*segment.Log, error) { return nil, fmt.Errorf("nothing to replay: %s", name) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return func(dir string) (partition.Log, error) {
		return partition.OpenJournalLog(j, dir, dir, segment.Options{SegmentBytes: 4096}, "")
	}
}

func newHub() *hub {
	return &hub{leaders: map[int32]*Leader{}, parts: map[int32]*partition.Partition{}, cut: map[[2]int32]bool{}}
}

var errCut = errors.New("link cut")

func (h *hub) route(from, to int32) (*Leader, *partition.Partition, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cut[[2]int32{from, to}] || h.cut[[2]int32{to, from}] {
		return nil, nil, errCut
	}
	return h.leaders[to], h.parts[to], nil
}

type hubTransport struct {
	h    *hub
	self int32
}

func (t hubTransport) ReplicaFetch(ctx context.Context, leader int32, req *pb.ReplicaFetchRequest) (*pb.ReplicaFetchResponse, error) {
	t.h.mu.Lock()
	if t.h.fetches == nil {
		t.h.fetches = map[int32][]int64{}
	}
	t.h.fetches[t.self] = append(t.h.fetches[t.self], req.FetchOffset)
	t.h.mu.Unlock()
	l, _, err := t.h.route(t.self, leader)
	if err != nil {
		return nil, err
	}
	if l == nil {
		return &pb.ReplicaFetchResponse{Error: &pb.ErrorDetail{Message: "not leader", Reason: pb.ErrorReason_NOT_LEADER}}, nil
	}
	resp, err := l.HandleFetch(ctx, req)
	if err != nil {
		var oor *partition.OutOfRangeError
		d := &pb.ErrorDetail{Message: err.Error()}
		if errors.As(err, &oor) {
			d.Reason, d.LogStartOffset = pb.ErrorReason_OFFSET_OUT_OF_RANGE, oor.LogStartOffset
		}
		return &pb.ReplicaFetchResponse{Error: d}, nil
	}
	return resp, nil
}

func (t hubTransport) OffsetForLeaderEpoch(ctx context.Context, leader int32, req *pb.OffsetForLeaderEpochRequest) (*pb.OffsetForLeaderEpochResponse, error) {
	_, p, err := t.h.route(t.self, leader)
	if err != nil {
		return nil, err
	}
	e, end := p.EndOffsetForEpoch(req.LeaderEpoch)
	return &pb.OffsetForLeaderEpochResponse{LeaderEpoch: e, EndOffset: end}, nil
}

func (h *hub) AlterPartition(ctx context.Context, req *pb.AlterPartitionRequest) (*pb.AlterPartitionResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests++
	if req.PartitionEpoch != h.pepoch {
		return &pb.AlterPartitionResponse{Error: &pb.ErrorDetail{Message: "stale partition epoch"}}, nil
	}
	h.pepoch++
	h.isr = slices.Clone(req.NewIsr)
	h.history = append(h.history, h.isr)
	return &pb.AlterPartitionResponse{PartitionEpoch: h.pepoch, Partition: &pb.PartitionMetadata{LeaderEpoch: req.LeaderEpoch, Isr: h.isr}}, nil
}

func (h *hub) ISR() []int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.isr)
}

type node struct {
	id  int32
	dir string
	p   *partition.Partition
	l   *Leader
	f   *Follower
}

func openNode(t *testing.T, h *hub, id int32, dir string) *node {
	t.Helper()
	p, err := partition.Open(partition.Config{Dir: dir, Topic: "t", WAL: wal.Options{UnsafeNoFsync: true}, OpenLog: logOpener(t, h.engine)})
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.parts[id] = p
	h.mu.Unlock()
	return &node{id: id, dir: dir, p: p}
}

func (n *node) stop() {
	if n.l != nil {
		n.l.Stop()
	}
	if n.f != nil {
		n.f.Stop()
	}
	n.p.Close()
}

func cfgFor(h *hub, id int32) Config {
	return Config{Self: id, LagTime: 300 * time.Millisecond, FetchWait: 50 * time.Millisecond,
		RetryBackoff: 5 * time.Millisecond, Transport: hubTransport{h, id}, Controller: h}
}

func lead(t *testing.T, h *hub, n *node, epoch int32, replicas, isr []int32, minISR int) {
	t.Helper()
	if err := n.p.BecomeLeader(n.id, partition.LeaderState{Epoch: epoch, ISR: isr, MinISR: minISR}); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.isr = slices.Clone(isr)
	a := Assignment{Topic: "t", LeaderEpoch: epoch, PartitionEpoch: h.pepoch, Replicas: replicas, ISR: isr}
	h.mu.Unlock()
	n.l = NewLeader(cfgFor(h, n.id), n.p, a)
	h.mu.Lock()
	h.leaders[n.id] = n.l
	h.mu.Unlock()
}

func follow(t *testing.T, h *hub, n *node, leader, epoch int32, replicas []int32) {
	t.Helper()
	if err := n.p.BecomeFollower(leader, epoch); err != nil {
		t.Fatal(err)
	}
	n.f = StartFollower(cfgFor(h, n.id), n.p, Assignment{Topic: "t", LeaderEpoch: epoch, Replicas: replicas}, leader)
}

func rec(t *testing.T, v string) []byte {
	b := batch.NewBuilder(batch.None)
	b.Add(&batch.Record{Value: []byte(v)})
	out, err := b.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func logBytes(t *testing.T, p *partition.Partition, upTo int64) []byte {
	t.Helper()
	res, err := p.Read(nil, 0, 1<<30, partition.ReadUncommitted)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for rest := res.Batches; len(rest) > 0; {
		v, r, err := batch.Next(rest)
		if err != nil {
			t.Fatal(err)
		}
		if v.BaseOffset() >= upTo {
			break
		}
		out = append(out, v...)
		rest = r
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestReplicateAcksAllAndShrink(t *testing.T) { forEachEngine(t, testReplicateAcksAllAndShrink) }

func testReplicateAcksAllAndShrink(t *testing.T, engine string) {
	h := newHub()
	h.engine = engine
	nodes := map[int32]*node{}
	for id := int32(1); id <= 3; id++ {
		nodes[id] = openNode(t, h, id, t.TempDir())
	}
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	reps := []int32{1, 2, 3}
	lead(t, h, nodes[1], 0, reps, reps, 2)
	follow(t, h, nodes[2], 1, 0, reps)
	follow(t, h, nodes[3], 1, 0, reps)
	ctx := context.Background()
	for i := range 20 {
		r, err := nodes[1].p.Append(ctx, partition.AppendRequest{Batch: rec(t, fmt.Sprint(i)), LeaderEpoch: 0, ExpectedOffset: -1, Acks: partition.AcksAll})
		if err != nil {
			t.Fatal(err)
		}
		// acks=all: every ISR member has it on disk.
		for _, id := range []int32{2, 3} {
			if _, _, leo := nodes[id].p.Offsets(); leo <= r.LastOffset {
				t.Fatalf("acked offset %d but follower %d ends at %d", r.LastOffset, id, leo)
			}
		}
	}
	// Followers learn the HW; all replicas are byte-identical below it.
	eventually(t, "followers' HW", func() bool {
		_, hw2, _ := nodes[2].p.Offsets()
		_, hw3, _ := nodes[3].p.Offsets()
		return hw2 == 20 && hw3 == 20
	})
	want := logBytes(t, nodes[1].p, 20)
	for _, id := range []int32{2, 3} {
		if !bytes.Equal(logBytes(t, nodes[id].p, 20), want) {
			t.Fatalf("replica %d differs from the leader", id)
		}
	}
	// Cut follower 3 off: acks=all waits, then the leader shrinks the ISR and
	// acks flow again with ISR {1,2} >= min 2.
	h.mu.Lock()
	h.cut[[2]int32{3, 1}] = true
	h.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := nodes[1].p.Append(ctx, partition.AppendRequest{Batch: rec(t, "during cut"), LeaderEpoch: 0, ExpectedOffset: -1, Acks: partition.AcksAll})
		done <- err
	}()
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if isr := h.ISR(); !slices.Equal(isr, []int32{1, 2}) {
				t.Fatalf("acked with ISR %v", isr)
			}
			goto healed
		case <-ticker.C:
			nodes[1].l.Tick()
		case <-time.After(10 * time.Second):
			t.Fatal("no ack after the ISR should have shrunk")
		}
	}
healed:
	// Heal: 3 catches up and rejoins the ISR.
	h.mu.Lock()
	delete(h.cut, [2]int32{3, 1})
	h.mu.Unlock()
	eventually(t, "ISR expansion", func() bool {
		nodes[1].l.Tick()
		return slices.Equal(h.ISR(), []int32{1, 2, 3})
	})
	_, hw, _ := nodes[1].p.Offsets()
	if !bytes.Equal(logBytes(t, nodes[3].p, hw), logBytes(t, nodes[1].p, hw)) {
		t.Fatal("rejoined replica differs below the HW")
	}
}

// A deposed leader with an unreplicated suffix truncates it when it follows
// the new leader, and ends byte-identical.
// takeOver makes n2 (1's follower, cut off from it) leader in epoch 1
// with n2 alone in the ISR, and appends four records "new0".."new3" there.
func takeOver(t *testing.T, h *hub, n1, n2 *node, reps []int32) {
	t.Helper()
	n2.f.Stop()
	n2.f = nil
	n1.l.Stop()
	h.mu.Lock()
	delete(h.leaders, 1)
	h.mu.Unlock()
	n1.l = nil
	lead(t, h, n2, 1, reps, []int32{2}, 1)
	for i := range 4 {
		if _, err := n2.p.Append(context.Background(), partition.AppendRequest{Batch: rec(t, fmt.Sprint("new", i)), LeaderEpoch: 1, ExpectedOffset: -1, Acks: partition.AcksAll}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDivergentSuffixTruncated(t *testing.T) { forEachEngine(t, testDivergentSuffixTruncated) }

func testDivergentSuffixTruncated(t *testing.T, engine string) {
	h := newHub()
	h.engine = engine
	n1 := openNode(t, h, 1, t.TempDir())
	n2 := openNode(t, h, 2, t.TempDir())
	defer n1.stop()
	defer n2.stop()
	reps := []int32{1, 2}
	lead(t, h, n1, 0, reps, reps, 1)
	follow(t, h, n2, 1, 0, reps)
	ctx := context.Background()
	for i := range 5 {
		if _, err := n1.p.Append(ctx, partition.AppendRequest{Batch: rec(t, fmt.Sprint("c", i)), LeaderEpoch: 0, ExpectedOffset: -1, Acks: partition.AcksAll}); err != nil {
			t.Fatal(err)
		}
	}
	// Partition 1 from 2, then 1 writes a suffix nobody else has.
	h.mu.Lock()
	h.cut[[2]int32{1, 2}] = true
	h.mu.Unlock()
	for i := range 3 {
		if _, err := n1.p.Append(ctx, partition.AppendRequest{Batch: rec(t, fmt.Sprint("lost", i)), LeaderEpoch: 0, ExpectedOffset: -1, Acks: partition.AcksLeader}); err != nil {
			t.Fatal(err)
		}
	}
	// 2 becomes leader in epoch 1 and takes new writes.
	takeOver(t, h, n1, n2, reps)
	// Heal; 1 follows 2.
	h.mu.Lock()
	delete(h.cut, [2]int32{1, 2})
	h.mu.Unlock()
	follow(t, h, n1, 2, 1, reps)
	// The new leader may have copied the first "lost" batch before the cut
	// took effect (a fetch already in flight), so it ends at 9 or 10.
	_, _, newLEO := n2.p.Offsets()
	epoch1Start := newLEO - 4
	eventually(t, "old leader converges", func() bool {
		_, _, leo := n1.p.Offsets()
		return leo == newLEO
	})
	if !bytes.Equal(logBytes(t, n1.p, newLEO), logBytes(t, n2.p, newLEO)) {
		t.Fatal("old leader's log differs from the new leader's")
	}
	if e, end := n1.p.EndOffsetForEpoch(0); e != 0 || end != epoch1Start {
		t.Fatalf("epoch 0 on the old leader ends at %d (epoch %d), want %d", end, e, epoch1Start)
	}
}

// Regression: a follower in the ISR that came back with less than it had
// (its disk damaged or replaced) stayed in the ISR until the lag time ran
// out, so it could be elected with committed records missing. The leader
// now drops it at its first fetch below the HW, without waiting for a Tick,
// and lets it rejoin once it has copied everything again.
func TestFollowerThatLostDataLeavesISRAtOnce(t *testing.T) {
	forEachEngine(t, testFollowerThatLostDataLeavesISRAtOnce)
}

func testFollowerThatLostDataLeavesISRAtOnce(t *testing.T, engine string) {
	h := newHub()
	h.engine = engine
	nodes := map[int32]*node{}
	for id := int32(1); id <= 3; id++ {
		nodes[id] = openNode(t, h, id, t.TempDir())
	}
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	reps := []int32{1, 2, 3}
	lead(t, h, nodes[1], 0, reps, reps, 2)
	follow(t, h, nodes[2], 1, 0, reps)
	follow(t, h, nodes[3], 1, 0, reps)
	for i := range 20 {
		if _, err := nodes[1].p.Append(context.Background(), partition.AppendRequest{Batch: rec(t, fmt.Sprint(i)), LeaderEpoch: 0, ExpectedOffset: -1, Acks: partition.AcksAll}); err != nil {
			t.Fatal(err)
		}
	}
	// Follower 3 comes back with an empty log (a wiped disk).
	nodes[3].stop()
	nodes[3] = openNode(t, h, 3, t.TempDir())
	follow(t, h, nodes[3], 1, 0, reps)
	eventually(t, "ISR shrink on a fetch below the HW", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return slices.ContainsFunc(h.history, func(isr []int32) bool { return slices.Equal(isr, []int32{1, 2}) })
	})
	// 3 rejoins once it has copied everything again.
	eventually(t, "ISR expansion", func() bool {
		nodes[1].l.Tick()
		return slices.Equal(h.ISR(), reps)
	})
	if _, _, leo := nodes[3].p.Offsets(); leo < 20 {
		t.Fatalf("rejoined the ISR with its log ending at %d, below the HW 20", leo)
	}
	if !bytes.Equal(logBytes(t, nodes[3].p, 20), logBytes(t, nodes[1].p, 20)) {
		t.Fatal("the re-copied replica differs below the HW")
	}
}

// Regression: after a clean shutdown a follower reported its checkpoint's
// log end to the leader before its log was opened and checked; with an idle
// leader nothing made it open the log, so a replica damaged while stopped
// counted as caught up (in the ISR). The damage changed a file the
// checkpoint stamped, so the restart distrusts the checkpoint: it verifies
// the log, cuts it at the damage, and the follower fetches from its real
// end, never from the checkpoint's.
func TestFollowerDamagedWhileStoppedNeverReportsCheckpointEnd(t *testing.T) {
	h := newHub()
	data3 := t.TempDir()
	dir3 := filepath.Join(data3, "topics", "t", "0")
	nodes := map[int32]*node{1: openNode(t, h, 1, t.TempDir()), 2: openNode(t, h, 2, t.TempDir()), 3: openNode(t, h, 3, dir3)}
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	reps := []int32{1, 2, 3}
	lead(t, h, nodes[1], 0, reps, reps, 2)
	follow(t, h, nodes[2], 1, 0, reps)
	follow(t, h, nodes[3], 1, 0, reps)
	for i := range 20 {
		if _, err := nodes[1].p.Append(context.Background(), partition.AppendRequest{Batch: rec(t, fmt.Sprint(i)), LeaderEpoch: 0, ExpectedOffset: -1, Acks: partition.AcksAll}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "follower 3 at the leader's end", func() bool { _, hw, leo := nodes[3].p.Offsets(); return leo == 20 && hw == 20 })
	// A clean stop (a checkpoint), then a bit flips on its disk.
	nodes[3].stop()
	if _, err := chaos.BitFlip(data3, rand.New(rand.NewPCG(7, 7))); err != nil {
		t.Fatal(err)
	}
	damaged := make(chan error, 1)
	p, err := partition.Open(partition.Config{Dir: dir3, Topic: "t", WAL: wal.Options{UnsafeNoFsync: true}, OnDamage: func(err error) { damaged <- err }})
	if err != nil {
		t.Fatal(err)
	}
	if p.Damage() == nil {
		t.Fatal("the restart did not find the damage done after the clean stop")
	}
	t.Log(p.Damage())
	_, _, cut := p.Offsets()
	if cut >= 20 {
		t.Fatalf("restarted follower's log end %d, want it cut below 20", cut)
	}
	nodes[3] = &node{id: 3, dir: dir3, p: p}
	h.mu.Lock()
	h.parts[3] = p
	delete(h.fetches, 3)
	h.mu.Unlock()
	follow(t, h, nodes[3], 1, 0, reps)
	eventually(t, "follower 3 fetches", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.fetches[3]) > 0
	})
	h.mu.Lock()
	fetched := slices.Clone(h.fetches[3])
	h.mu.Unlock()
	if fetched[0] > cut {
		t.Fatalf("the damaged follower's first fetch at %d, past its cut log end %d (fetches %v)", fetched[0], cut, fetched)
	}
	eventually(t, "follower 3 copies the rest again", func() bool { _, _, leo := nodes[3].p.Offsets(); return leo == 20 })
	select {
	case err := <-damaged:
		t.Fatalf("OnDamage after an unclean open that found the damage: %v", err)
	default:
	}
}

// Regression: a replica fetch with a negative offset (a malformed request)
// was taken as the follower's position, below the HW: the leader dropped an
// in-sync follower from the ISR for it.
func TestNegativeFetchOffsetIsRejectedWithoutISRChange(t *testing.T) {
	h := newHub()
	n := openNode(t, h, 1, t.TempDir())
	defer n.stop()
	reps := []int32{1, 2, 3}
	lead(t, h, n, 0, reps, reps, 1)
	for i := range 3 {
		if _, err := n.p.Append(context.Background(), partition.AppendRequest{Batch: rec(t, fmt.Sprint(i)), LeaderEpoch: 0, ExpectedOffset: -1, Acks: partition.AcksLeader}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []int32{2, 3} { // both in sync: the HW reaches 3
		if _, err := n.l.HandleFetch(context.Background(), &pb.ReplicaFetchRequest{Topic: "t", ReplicaId: id, FetchOffset: 3, MaxWaitMs: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, hw, _ := n.p.Offsets(); hw != 3 {
		t.Fatalf("HW %d, want 3", hw)
	}
	_, err := n.l.HandleFetch(context.Background(), &pb.ReplicaFetchRequest{Topic: "t", ReplicaId: 2, FetchOffset: -1, MaxWaitMs: 1})
	var oor *partition.OutOfRangeError
	if !errors.As(err, &oor) {
		t.Fatalf("fetch at -1: %v", err)
	}
	n.l.Tick()
	h.mu.Lock()
	requests := h.requests
	h.mu.Unlock()
	if requests != 0 || !slices.Equal(h.ISR(), reps) {
		t.Fatalf("ISR changed by a malformed fetch: %v after %d requests", h.ISR(), requests)
	}
}
