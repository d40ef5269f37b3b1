package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
)

// follower is a consumer following a partition from its beginning while
// replicas move.
type follower struct {
	mu     sync.Mutex
	recs   []*client.Record
	err    error
	cancel context.CancelFunc
	done   chan struct{}
}

func follow(t *testing.T, cl *client.Client, topic string, part int32) *follower {
	t.Helper()
	k, err := cl.NewConsumer()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	f := &follower{cancel: cancel, done: make(chan struct{})}
	if err := k.Assign(ctx, topic, []int32{part}, client.Beginning()); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(f.done)
		defer k.Close()
		for {
			r, err := k.Next(ctx)
			if err != nil {
				if ctx.Err() == nil {
					f.mu.Lock()
					f.err = err
					f.mu.Unlock()
				}
				return
			}
			f.mu.Lock()
			f.recs = append(f.recs, r)
			f.mu.Unlock()
		}
	}()
	return f
}

// check stops the follower and compares what it saw with the final log:
// the same records at the same offsets, a dense prefix.
func (f *follower) check(t *testing.T, final []*client.Record) {
	t.Helper()
	f.cancel()
	<-f.done
	if f.err != nil {
		t.Fatalf("the following consumer failed: %v", f.err)
	}
	if len(f.recs) == 0 {
		t.Fatal("the following consumer read nothing")
	}
	for i, r := range f.recs {
		if r.Offset != int64(i) || i >= len(final) || string(final[i].Value) != string(r.Value) {
			t.Fatalf("the following consumer read %q at offset %d (position %d); the log has %d records", r.Value, r.Offset, i, len(final))
		}
	}
	t.Logf("the following consumer read %d records, dense, as in the final log", len(f.recs))
}

// waitReassigned waits until no reassignment runs.
func waitReassigned(t *testing.T, cl *client.Client, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last client.ReassignStatus
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cl.ReassignmentStatus(ctx)
		cancel()
		if err == nil && len(st.Partitions) == 0 && len(st.Draining) == 0 {
			return
		}
		if err == nil {
			last = st
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the reassignment did not finish within %v: %+v", d, last)
}

// placement counts replicas and leaders per broker.
func placement(t *testing.T, cl *client.Client, topic string) (replicas, leaders map[int32]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := cl.DescribeTopic(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	replicas, leaders = map[int32]int{}, map[int32]int{}
	for _, p := range d.Partitions {
		leaders[p.Leader]++
		for _, r := range p.Replicas {
			replicas[r]++
		}
	}
	return replicas, leaders
}

// Grow 3 -> 5 brokers and rebalance under an acks=all producer and a
// following consumer: nothing acknowledged is lost, nothing duplicated.
func TestReassignGrowAndRebalance(t *testing.T) {
	c := proctest.StartCluster(t, 3, "--replica-lag-time", "3s")
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "grow", client.TopicConfig{Partitions: 4, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	loads := []*load{startLoad(t, cl, "grow", 0, 300), startLoad(t, cl, "grow", 1, 300)}
	fol := follow(t, cl, "grow", 0)
	time.Sleep(3 * time.Second)
	c.Add()
	c.Add()
	addrs := strings.Join(c.Addrs(), ",")
	r := proctest.CLI(t, "broker", "n\n", "rebalance", "--brokers", addrs)
	if r.Code == 0 || !strings.Contains(r.Stderr, "not confirmed") {
		t.Fatalf("rebalance without a yes: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if reps, _ := placement(t, cl, "grow"); reps[4]+reps[5] != 0 {
		t.Fatalf("an unconfirmed rebalance moved replicas: %v", reps)
	}
	began := time.Now()
	r = proctest.MustCLI(t, "broker", "", "rebalance", "--yes", "--brokers", addrs)
	t.Logf("%s", r.Stdout)
	waitReassigned(t, cl, 2*time.Minute)
	took := time.Since(began)
	time.Sleep(time.Second)
	for _, l := range loads {
		l.finish()
	}
	reps, leads := placement(t, cl, "grow")
	for _, id := range c.IDs {
		if reps[id] < 2 || reps[id] > 3 || leads[id] > 1 {
			t.Errorf("broker %d holds %d replicas and leads %d: not balanced (%v, %v)", id, reps[id], leads[id], reps, leads)
		}
	}
	for i, l := range loads {
		if len(l.failed) > 0 {
			t.Logf("partition %d: %d of %d records failed (not acknowledged), first: %v", i, len(l.failed), l.sent, l.failed[0])
		}
		final := proctest.ReadAll(t, cl, "grow", int32(i))
		checkLog(t, final, l.acked)
		if i == 0 {
			fol.check(t, final)
		}
		t.Logf("partition %d: %d acknowledged records, all read back once at their offsets", i, len(l.acked))
	}
	t.Logf("rebalance 3 -> 5 brokers took %v; replicas %v, leaders %v", took.Round(time.Millisecond), reps, leads)
}

// Decommission a broker under load: its replicas move, it leaves the
// quorum and the cluster, and nothing acknowledged is lost.
func TestReassignDecommission(t *testing.T) {
	c := proctest.StartCluster(t, 4, "--replica-lag-time", "3s")
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "drain", client.TopicConfig{Partitions: 4, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	l := startLoad(t, cl, "drain", 0, 300)
	fol := follow(t, cl, "drain", 0)
	time.Sleep(time.Second)
	addrs := strings.Join(c.Addrs(), ",")
	if r := proctest.CLI(t, "broker", "", "decommission", "9", "--brokers", addrs); r.Code == 0 || !strings.Contains(r.Stderr, "unknown broker 9") {
		t.Fatalf("decommission of an unknown broker: exit %d: %s", r.Code, r.Stderr)
	}
	proctest.MustCLI(t, "broker", "", "decommission", "2", "--brokers", addrs)
	waitReassigned(t, cl, 2*time.Minute)
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := cl.DescribeCluster(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Still running, broker 2 still gossips: it shows as decommissioned.
		i := slices.IndexFunc(d.Members, func(m client.ClusterMember) bool { return m.ID == 2 })
		if i >= 0 && d.Members[i].QuorumRole == "" && d.Members[i].Replicas == 0 && !d.Members[i].Draining && d.Members[i].Decommissioned {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker 2 not shown as decommissioned: %+v", d.Members)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if reps, _ := placement(t, cl, "drain"); reps[2] != 0 {
		t.Fatalf("broker 2 still holds replicas: %v", reps)
	}
	if r := proctest.MustCLI(t, "broker", "", "cluster", "--brokers", c.Brokers[1].Addr); !strings.Contains(r.Stdout, "broker 2 is decommissioned") {
		t.Fatalf("broker cluster does not show broker 2 decommissioned:\n%s", r.Stdout)
	}
	c.Brokers[2].Kill()
	time.Sleep(time.Second)
	l.finish()
	final := proctest.ReadAll(t, cl, "drain", 0)
	checkLog(t, final, l.acked)
	fol.check(t, final)
	r := proctest.MustCLI(t, "broker", "", "cluster", "--brokers", c.Brokers[1].Addr)
	t.Logf("%d acknowledged records through the decommission of broker 2\n%s", len(l.acked), r.Stdout)
}

// Kill the controller, then a broker receiving a replica, in the middle of
// a throttled reassignment: it completes. Bad plans are refused and
// change nothing, also while the reassignment runs.
func TestReassignSurvivesFailover(t *testing.T) {
	c := proctest.StartCluster(t, 4, "--replica-lag-time", "3s")
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "move", client.TopicConfig{Partitions: 1, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	// About 16 MB to copy, at 2 MB/s: long enough to kill brokers during.
	acked := produceAcked(t, cl, "move", 0, 1000, 16<<10)
	d, err := cl.DescribeTopic(ctx, "move")
	if err != nil {
		t.Fatal(err)
	}
	before := d.Partitions[0].Replicas
	desc, err := cl.DescribeCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ctrl := desc.ControllerID
	// The receiving broker is the one without a replica; the one leaving
	// is a follower that is not the controller.
	var recv, leave int32 = -1, -1
	for _, id := range c.IDs {
		if !slices.Contains(before, id) {
			recv = id
		} else if id != ctrl && id != d.Partitions[0].Leader && leave < 0 {
			leave = id
		}
	}
	if recv == ctrl || leave < 0 {
		t.Skipf("placement %v with controller %d leaves no case to test", before, ctrl)
	}
	target := []int32{}
	for _, r := range before {
		if r != leave {
			target = append(target, r)
		}
	}
	target = append(target, recv)
	dir := t.TempDir()
	addrs := strings.Join(c.Addrs(), ",")
	writeJSON := func(name string, parts []client.ReassignTarget) string {
		path := filepath.Join(dir, name)
		data, _ := json.Marshal(client.ReassignPlan{Version: 1, Partitions: parts})
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	bad := []struct {
		name  string
		parts []client.ReassignTarget
		want  string
	}{
		{"unknown-broker", []client.ReassignTarget{{Topic: "move", Partition: 0, Replicas: []int32{1, 2, 9}}}, "unknown broker 9"},
		{"no-topic", []client.ReassignTarget{{Topic: "nope", Partition: 0, Replicas: []int32{1, 2, 3}}}, `unknown topic: "nope"`},
		{"no-partition", []client.ReassignTarget{{Topic: "move", Partition: 5, Replicas: []int32{1, 2, 3}}}, "has no partition 5"},
		{"duplicate", []client.ReassignTarget{{Topic: "move", Partition: 0, Replicas: []int32{1, 2, 2}}}, "broker 2 is named twice"},
		{"below-min-isr", []client.ReassignTarget{{Topic: "move", Partition: 0, Replicas: []int32{1}}}, "fewer than the topic's min.insync.replicas 2"},
	}
	for _, b := range bad {
		r := proctest.CLI(t, "broker", "", "reassign", "execute", writeJSON(b.name, b.parts), "--throttle", "1MB/s", "--brokers", addrs)
		if r.Code == 0 || !strings.Contains(r.Stderr, b.want) {
			t.Errorf("%s: exit %d, stderr %q; want an error with %q", b.name, r.Code, r.Stderr, b.want)
		}
	}
	if r := proctest.CLI(t, "broker", "", "reassign", "plan", "--brokers", "1,2,9", "-b", addrs); r.Code == 0 || !strings.Contains(r.Stderr, "unknown broker 9") {
		t.Errorf("plan with an unknown broker: exit %d: %s", r.Code, r.Stderr)
	}
	if r := proctest.MustCLI(t, "broker", "", "config", "get", "--brokers", addrs); !strings.Contains(r.Stdout, "replication.throttle") ||
		strings.Contains(r.Stdout, "1MB/s") {
		t.Fatalf("a refused plan changed the throttle:\n%s", r.Stdout)
	}
	plan := writeJSON("plan", []client.ReassignTarget{{Topic: "move", Partition: 0, Replicas: target}})
	proctest.MustCLI(t, "broker", "", "reassign", "execute", plan, "--throttle", "2MB/s", "--brokers", addrs)
	if r := proctest.CLI(t, "broker", "", "reassign", "execute", plan, "--brokers", addrs); r.Code == 0 || !strings.Contains(r.Stderr, "already running") {
		t.Errorf("a second execute: exit %d: %s", r.Code, r.Stderr)
	}
	time.Sleep(2 * time.Second)
	st := proctest.MustCLI(t, "broker", "", "reassign", "status", "--brokers", addrs)
	if !strings.Contains(st.Stdout, "catching-up") {
		t.Fatalf("status while catching up:\n%s", st.Stdout)
	}
	t.Logf("status:\n%s", st.Stdout)
	c.Brokers[ctrl].Kill()
	time.Sleep(3 * time.Second)
	c.Restart(ctrl)
	c.Brokers[recv].Kill()
	time.Sleep(2 * time.Second)
	c.Restart(recv)
	waitReassigned(t, c.Client(), 2*time.Minute)
	d, err = cl.DescribeTopic(ctx, "move")
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Partitions[0].Replicas; !slices.Equal(got, target) {
		t.Fatalf("replicas %v after the reassignment, want %v", got, target)
	}
	checkLog(t, proctest.ReadAll(t, cl, "move", 0), acked)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("timed out")
	}
	t.Logf("moved %v -> %v through a controller kill (%d) and a receiving broker kill (%d)", before, target, ctrl, recv)
}

// A broker down while its replica moved away and a topic it held was
// deleted finds their data on its restart and deletes it, once its
// metadata is the controller's; the replicas it still holds keep theirs.
// On both storage engines (the journal's records of the deleted partitions
// are dropped first).
func TestReassignLeftoverDataDeletedOnRestart(t *testing.T) {
	for _, engine := range []string{"wal", "journal"} {
		t.Run(engine, func(t *testing.T) { testLeftoverDataDeleted(t, engine) })
	}
}

func testLeftoverDataDeleted(t *testing.T, engine string) {
	c := proctest.StartCluster(t, 4, "--replica-lag-time", "3s", "--storage-engine", engine)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for name, n := range map[string]int32{"moved": 1, "kept": 4, "dropped": 1} {
		if _, err := cl.CreateTopic(ctx, name, client.TopicConfig{Partitions: n, ReplicationFactor: 3}); err != nil {
			t.Fatal(err)
		}
	}
	acked := map[string]map[string]int64{}
	for _, k := range []struct {
		topic string
		part  int32
	}{{"moved", 0}, {"dropped", 0}, {"kept", 0}, {"kept", 1}, {"kept", 2}, {"kept", 3}} {
		key := fmt.Sprintf("%s-%d", k.topic, k.part)
		acked[key] = produceAcked(t, cl, k.topic, k.part, 200, 0)
	}
	d, err := cl.DescribeTopic(ctx, "moved")
	if err != nil {
		t.Fatal(err)
	}
	desc, err := cl.DescribeCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The broker to stop holds a replica of "moved" and is not the controller.
	before := d.Partitions[0].Replicas
	var gone, recv int32 = -1, -1
	for _, id := range c.IDs {
		switch {
		case !slices.Contains(before, id):
			recv = id
		case id != desc.ControllerID && gone < 0:
			gone = id
		}
	}
	dir := c.Brokers[gone].Dir
	kept := keptPartitions(t, cl, "kept", gone)
	files := map[int32]map[string]uint64{}
	for _, p := range kept {
		files[p] = inodes(t, filepath.Join(dir, "topics", "kept", fmt.Sprint(p)))
	}
	for _, p := range []string{"moved/0", "dropped/0"} {
		if _, err := os.Stat(filepath.Join(dir, "topics", p)); err != nil {
			t.Fatalf("broker %d has no %s before the test: %v", gone, p, err)
		}
	}
	c.Brokers[gone].Kill()
	target := slices.DeleteFunc(slices.Clone(before), func(r int32) bool { return r == gone })
	target = append(target, recv)
	if _, err := cl.ExecuteReassignment(ctx, []client.ReassignTarget{{Topic: "moved", Partition: 0, Replicas: target}}, ""); err != nil {
		t.Fatal(err)
	}
	if err := cl.DeleteTopic(ctx, "dropped"); err != nil {
		t.Fatal(err)
	}
	waitReassigned(t, cl, time.Minute)
	for _, p := range []string{"moved/0", "dropped"} {
		if _, err := os.Stat(filepath.Join(dir, "topics", p)); err != nil {
			t.Fatalf("%s went while broker %d was down: %v", p, gone, err)
		}
	}
	c.Restart(gone)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err1 := os.Stat(filepath.Join(dir, "topics", "moved", "0"))
		_, err2 := os.Stat(filepath.Join(dir, "topics", "dropped"))
		if errors.Is(err1, os.ErrNotExist) && errors.Is(err2, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart broker %d still has moved/0 (%v) or dropped (%v)\n%s", gone, err1, err2, c.Brokers[gone].Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	logs := c.Brokers[gone].Logs()
	for _, want := range []string{"deleting the data of a partition this broker holds no replica of", "deleting the data of a topic this broker holds no replica of"} {
		if !strings.Contains(logs, want) {
			t.Errorf("broker %d did not log %q", gone, want)
		}
	}
	c.WaitHealthy(30 * time.Second)
	for _, p := range kept {
		key := fmt.Sprintf("kept-%d", p)
		now := inodes(t, filepath.Join(dir, "topics", "kept", fmt.Sprint(p)))
		for name, ino := range files[p] {
			if now[name] != ino {
				t.Fatalf("kept/%d/%s was replaced or deleted on broker %d", p, name, gone)
			}
		}
		mine := proctest.ReplicaLog(t, c.Brokers[gone].PeerAddr, "kept", p, int64(len(acked[key])))
		lead := c.Leader(cl, "kept", p, -1, 10*time.Second)
		theirs := proctest.ReplicaLog(t, c.Brokers[lead].PeerAddr, "kept", p, int64(len(acked[key])))
		if string(mine) != string(theirs) {
			t.Fatalf("kept/%d on broker %d differs from the leader's (%d): %d vs %d bytes", p, gone, lead, len(mine), len(theirs))
		}
		checkLog(t, proctest.ReadAll(t, cl, "kept", p), acked[key])
	}
	checkLog(t, proctest.ReadAll(t, cl, "moved", 0), acked["moved-0"])
	t.Logf("broker %d, down while moved/0 went %v -> %v and dropped was deleted, deleted both on restart; kept its replicas of kept %v", gone, before, target, kept)
}

// inodes maps the files of a directory to their inode numbers: a file
// deleted and written again gets another.
func inodes(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && !e.IsDir() {
			out[e.Name()] = st.Ino
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s holds no files", dir)
	}
	return out
}

// produceAcked produces n records (padded by pad bytes) to a partition with
// acks=all and returns their acknowledged offsets.
func produceAcked(t *testing.T, cl *client.Client, topic string, part int32, n, pad int) map[string]int64 {
	t.Helper()
	p, err := cl.NewProducer(client.RecordPartitioner(client.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acked := map[string]int64{}
	var mu sync.Mutex
	for i := range n {
		v := fmt.Sprintf("%s-%d-%05d%s", topic, part, i, strings.Repeat("x", pad))
		p.Produce(ctx, &client.Record{Topic: topic, Partition: part, Value: []byte(v)}, func(r *client.Record, err error) {
			if err == nil {
				mu.Lock()
				acked[v] = r.Offset
				mu.Unlock()
			}
		})
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(acked) != n {
		t.Fatalf("%d of %d records acknowledged", len(acked), n)
	}
	return acked
}

// keptPartitions lists the partitions of a topic broker id holds a replica of.
func keptPartitions(t *testing.T, cl *client.Client, topic string, id int32) []int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := cl.DescribeTopic(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []int32
	for _, p := range d.Partitions {
		if slices.Contains(p.Replicas, id) {
			out = append(out, p.Partition)
		}
	}
	if len(out) == 0 {
		t.Fatalf("broker %d holds no replica of %s", id, topic)
	}
	return out
}
