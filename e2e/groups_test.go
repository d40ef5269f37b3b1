package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
)

// member is one `consume -G` process.
type member struct {
	cmd  *exec.Cmd
	out  proctest.SyncBuffer
	errb proctest.SyncBuffer
	done chan struct{}
}

func startMember(t *testing.T, addr, group, topic string, extra ...string) *member {
	t.Helper()
	args := append([]string{"-b", addr, "-t", topic, "-G", group, "-f", `%p %o %v\n`,
		"--reset", "beginning", "--commit-interval", "300ms", "--session-timeout", "3s"}, extra...)
	m := &member{cmd: exec.Command(filepath.Join(proctest.Bins(t), "consume"), args...), done: make(chan struct{})}
	m.cmd.Stdout, m.cmd.Stderr = &m.out, &m.errb
	m.cmd.Env = append(os.Environ(), "SKEIN_LOG=warn")
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.cmd.Wait(); close(m.done) }()
	t.Cleanup(func() { m.signal(syscall.SIGKILL) })
	return m
}

func (m *member) signal(s syscall.Signal) {
	select {
	case <-m.done:
	default:
		m.cmd.Process.Signal(s)
		<-m.done
	}
}

// assignment returns how many partitions each member owns.
func assignment(ctx context.Context, cl *client.Client, group string) ([]int, error) {
	d, err := cl.DescribeGroup(ctx, group)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, m := range d.Members {
		out = append(out, len(m.Assigned))
	}
	return out, nil
}

// waitAssigned waits until the group has members owning want partitions
// each (in any order) and returns how long it took.
func waitAssigned(t *testing.T, cl *client.Client, group string, want []int, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var got []int
	for time.Since(start) < d {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		got, _ = assignment(ctx, cl, group)
		cancel()
		if fmt.Sprint(sortedInts(got)) == fmt.Sprint(sortedInts(want)) {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("group %s: assignment %v, want %v within %v", group, got, want, d)
	return 0
}

func sortedInts(s []int) []int {
	out := append([]int(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// offsetWatch polls the group's committed offsets and records any that
// went backwards.
type offsetWatch struct {
	mu         sync.Mutex
	last       map[client.TopicPartition]int64
	regressed  []string
	stop, done chan struct{}
}

func watchOffsets(cl *client.Client, group string) *offsetWatch {
	w := &offsetWatch{last: map[client.TopicPartition]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			offs, err := cl.GroupOffsets(ctx, group)
			cancel()
			if err != nil {
				continue
			}
			w.mu.Lock()
			for tp, o := range offs {
				if prev, ok := w.last[tp]; ok && o < prev {
					w.regressed = append(w.regressed, fmt.Sprintf("%s: %d after %d", tp, o, prev))
				}
				w.last[tp] = o
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// Three members share a 6-partition topic under a steady producer; one is
// killed, one stopped, one added back. Every acknowledged record is written
// by some member, committed offsets never go back, and after a clean stop a
// restart reads nothing.
func TestGroupMembersShareAndHandOver(t *testing.T) {
	b := proctest.StartBroker(t, t.TempDir(), "", "--offsets-topic-partitions", "4")
	cl, err := client.New(client.Brokers(b.Addr), client.RequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "orders", client.TopicConfig{Partitions: 6}); err != nil {
		t.Fatal(err)
	}
	var loads []*load
	for p := range int32(6) {
		loads = append(loads, startLoad(t, cl, "orders", p, 50))
	}
	watch := watchOffsets(cl, "billing")
	ms := []*member{startMember(t, b.Addr, "billing", "orders"), startMember(t, b.Addr, "billing", "orders"), startMember(t, b.Addr, "billing", "orders")}
	took := waitAssigned(t, cl, "billing", []int{2, 2, 2}, 20*time.Second)
	t.Logf("three members own 2 partitions each after %v", took)
	time.Sleep(time.Second)
	ms[0].signal(syscall.SIGKILL)
	took = waitAssigned(t, cl, "billing", []int{3, 3}, 15*time.Second)
	t.Logf("rebalance after SIGKILL (session timeout 3s): %v", took)
	time.Sleep(time.Second)
	ms[1].signal(syscall.SIGTERM)
	took = waitAssigned(t, cl, "billing", []int{6}, 5*time.Second)
	t.Logf("rebalance after SIGTERM: %v", took)
	if took > 2*time.Second {
		t.Errorf("a member that left took %v to hand over its partitions", took)
	}
	ms = append(ms, startMember(t, b.Addr, "billing", "orders"))
	waitAssigned(t, cl, "billing", []int{3, 3}, 15*time.Second)
	time.Sleep(time.Second)
	finishGroupRun(ctx, t, cl, b.Addr, ms, loads, watch)
}

// finishGroupRun stops the producers, waits until the members have
// committed everything, stops them cleanly and checks the run: committed
// offsets never went back, every acknowledged record was written by a
// member, and a restart of the group reads nothing.
func finishGroupRun(ctx context.Context, t *testing.T, cl *client.Client, addrs string, ms []*member, loads []*load, watch *offsetWatch) {
	t.Helper()
	for _, l := range loads {
		l.finish()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		d, err := cl.DescribeGroup(ctx, "billing")
		caught := err == nil && len(d.Partitions) == len(loads)
		for _, p := range d.Partitions {
			caught = caught && p.Lag == 0
		}
		if caught {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag did not reach 0: %+v %v", d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, m := range ms {
		m.signal(syscall.SIGTERM)
	}
	close(watch.stop)
	<-watch.done
	if len(watch.regressed) > 0 {
		t.Errorf("committed offsets went back: %v", watch.regressed)
	}
	checkDelivered(t, ms, loads)
	r := proctest.MustCLI(t, "consume", "", "-b", addrs, "-t", "orders", "-G", "billing", "-e")
	if r.Stdout != "" {
		t.Fatalf("after a clean stop, a restart read %d bytes: %.200s", len(r.Stdout), r.Stdout)
	}
}

// checkDelivered: every acknowledged record was written by some member.
func checkDelivered(t *testing.T, ms []*member, loads []*load) {
	t.Helper()
	written := map[string]int{}
	for _, m := range ms {
		for _, line := range strings.Split(m.out.String(), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 {
				continue
			}
			written[f[0]+"/"+f[2]]++
		}
	}
	acked, dups, missing := 0, 0, 0
	for p, l := range loads {
		l.mu.Lock()
		for v := range l.acked {
			acked++
			switch n := written[strconv.Itoa(p)+"/"+v]; {
			case n == 0:
				missing++
				if missing < 5 {
					t.Errorf("partition %d: acknowledged %s never written by a member", p, v)
				}
			case n > 1:
				dups++
			}
		}
		l.mu.Unlock()
	}
	t.Logf("%d acknowledged records; %d written more than once (redelivered from the last commit after a member or the coordinator was killed)", acked, dups)
	if missing > 0 {
		t.Fatalf("%d acknowledged records never delivered to the group", missing)
	}
}

// A member paused past its session timeout (SIGSTOP) loses its partitions
// to the others; when it wakes up (SIGCONT) its commits are fenced, so it
// cannot write over its successor's progress, and it rejoins.
func TestGroupPausedMemberIsFenced(t *testing.T) {
	b := proctest.StartBroker(t, t.TempDir(), "", "--offsets-topic-partitions", "2")
	cl, err := client.New(client.Brokers(b.Addr), client.RequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "orders", client.TopicConfig{Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	var loads []*load
	for p := range int32(4) {
		loads = append(loads, startLoad(t, cl, "orders", p, 50))
	}
	watch := watchOffsets(cl, "billing")
	ms := []*member{startMember(t, b.Addr, "billing", "orders"), startMember(t, b.Addr, "billing", "orders")}
	waitAssigned(t, cl, "billing", []int{2, 2}, 20*time.Second)
	time.Sleep(time.Second)
	ms[0].cmd.Process.Signal(syscall.SIGSTOP)
	took := waitAssigned(t, cl, "billing", []int{4}, 15*time.Second)
	t.Logf("partitions of the paused member moved after %v", took)
	time.Sleep(2 * time.Second) // the successor makes progress past the paused member's position
	ms[0].cmd.Process.Signal(syscall.SIGCONT)
	waitAssigned(t, cl, "billing", []int{2, 2}, 20*time.Second)
	time.Sleep(time.Second)
	finishGroupRun(ctx, t, cl, b.Addr, ms, loads, watch)
	if log := ms[0].errb.String(); !strings.Contains(log, "fenced") {
		t.Errorf("the woken member's log does not say it was fenced:\n%s", log)
	}
}
