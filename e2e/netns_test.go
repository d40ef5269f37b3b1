package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
)

// netLab is a private network the test builds: one network namespace per
// broker, each with a veth into a bridge in the test's own namespace, so the
// test (the clients) reaches every broker while the brokers can be cut off
// from each other with iptables inside their namespaces. Everything is torn
// down when the test ends.
type netLab struct {
	t      testing.TB
	tag    string
	subnet int // 10.77.<subnet>.0/24
	bridge string
	nss    map[int32]string
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetLab needs root and iproute2/iptables; without them the test skips,
// except in CI (CI=true), where that is a failure.
func newNetLab(t testing.TB, n int) *netLab {
	t.Helper()
	bins(t) // the e2e gate
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root"
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = tool
		}
	}
	if missing != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("network-namespace tests need %s, which CI must provide", missing)
		}
		t.Skipf("network-namespace tests need %s", missing)
	}
	l := &netLab{t: t, tag: fmt.Sprintf("%x", rand.Uint32()&0xfffff), subnet: 100 + rand.IntN(150), nss: map[int32]string{}}
	l.bridge = "skbr" + l.tag
	t.Cleanup(l.teardown)
	run(t, "ip", "link", "add", l.bridge, "type", "bridge")
	run(t, "ip", "addr", "add", l.hostIP()+"/24", "dev", l.bridge)
	run(t, "ip", "link", "set", l.bridge, "up")
	// Docker sets the FORWARD policy to DROP and bridged traffic passes
	// through it (br_netfilter): let this bridge's traffic through.
	for _, ipt := range []string{"iptables", "iptables-legacy"} {
		if _, err := exec.LookPath(ipt); err == nil {
			exec.Command(ipt, "-I", "FORWARD", "-i", l.bridge, "-o", l.bridge, "-j", "ACCEPT").Run()
		}
	}
	for i := 1; i <= n; i++ {
		id := int32(i)
		ns := fmt.Sprintf("sk%s-%d", l.tag, i)
		host, peer := fmt.Sprintf("skh%s%d", l.tag, i), fmt.Sprintf("skp%s%d", l.tag, i)
		run(t, "ip", "netns", "add", ns)
		l.nss[id] = ns
		run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", peer)
		run(t, "ip", "link", "set", peer, "netns", ns)
		run(t, "ip", "link", "set", host, "master", l.bridge)
		run(t, "ip", "link", "set", host, "up")
		run(t, "ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
		run(t, "ip", "netns", "exec", ns, "ip", "addr", "add", l.ip(id)+"/24", "dev", peer)
		run(t, "ip", "netns", "exec", ns, "ip", "link", "set", peer, "up")
	}
	return l
}

func (l *netLab) hostIP() string     { return fmt.Sprintf("10.77.%d.1", l.subnet) }
func (l *netLab) ip(id int32) string { return fmt.Sprintf("10.77.%d.%d", l.subnet, 10+id) }

// wrap runs a command inside broker id's namespace.
func (l *netLab) wrap(id int32) []string { return []string{"ip", "netns", "exec", l.nss[id]} }

// isolate drops all traffic between broker id and the other brokers; the
// test's clients still reach it.
func (l *netLab) isolate(id int32) {
	for other := range l.nss {
		if other == id {
			continue
		}
		run(l.t, "ip", "netns", "exec", l.nss[id], "iptables", "-A", "INPUT", "-s", l.ip(other), "-j", "DROP")
		run(l.t, "ip", "netns", "exec", l.nss[id], "iptables", "-A", "OUTPUT", "-d", l.ip(other), "-j", "DROP")
	}
}

func (l *netLab) heal(id int32) {
	run(l.t, "ip", "netns", "exec", l.nss[id], "iptables", "-F")
}

func (l *netLab) teardown() {
	for _, ns := range l.nss {
		exec.Command("ip", "netns", "pids", ns).Run()
		if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, p := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(p); err == nil {
					if proc, err := os.FindProcess(pid); err == nil {
						proc.Kill()
					}
				}
			}
		}
		exec.Command("ip", "netns", "del", ns).Run()
	}
	for _, ipt := range []string{"iptables", "iptables-legacy"} {
		if _, err := exec.LookPath(ipt); err == nil {
			exec.Command(ipt, "-D", "FORWARD", "-i", l.bridge, "-o", l.bridge, "-j", "ACCEPT").Run()
		}
	}
	exec.Command("ip", "link", "del", l.bridge).Run()
}

// startNetnsCluster starts broker processes inside the lab's namespaces.
func startNetnsCluster(t testing.TB, l *netLab, n int, extra ...string) *procCluster {
	t.Helper()
	c := &procCluster{t: t, brokers: map[int32]*brokerProc{}, extra: extra}
	for i := 1; i <= n; i++ {
		id := int32(i)
		ip := l.ip(id)
		args := append([]string{"--node-id", strconv.Itoa(i)}, extra...)
		if i > 1 {
			args = append(args, "--join", l.ip(1)+":9421")
		}
		b := &brokerProc{t: t, Dir: t.TempDir(), args: args, wrap: l.wrap(id),
			GossipAddr: ip + ":9421", RaftAddr: ip + ":9422"}
		b.start(ip + ":9420")
		t.Cleanup(b.Kill)
		c.brokers[id] = b
		c.ids = append(c.ids, id)
	}
	c.waitHealthy(60 * time.Second)
	return c
}

// Isolate a partition's leader from the other brokers while clients still
// reach it: it stops acknowledging acks=all, the majority elects a new
// leader, and on heal the old leader truncates what it appended alone,
// catches up, and every replica is byte-identical below the HW.
func TestNetnsIsolatedLeader(t *testing.T) {
	l := newNetLab(t, 3)
	c := startNetnsCluster(t, l, 3, "--replica-lag-time", "3s")
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "iso", client.TopicConfig{Partitions: 1, ReplicationFactor: 3, MinInsyncReplicas: 2}); err != nil {
		t.Fatal(err)
	}
	ld := startLoad(t, cl, "iso", 0, 500)
	time.Sleep(time.Second)
	leader := c.leader(cl, "iso", 0, -1, 20*time.Second)

	// A client that can only talk to the isolated leader.
	lc, err := client.New(client.WithBrokers(c.brokers[leader].Addr), client.WithRequestTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	// Not idempotent, so its timed-out requests fail instead of being
	// retried: a retry refreshes metadata from whichever broker answered
	// last, which can be on the majority side (clients reach every broker),
	// and then a new leader's acks would be counted below.
	p, err := lc.NewProducer(client.DeliveryTimeout(3*time.Second), client.WithPartitioner(client.ManualPartitioner()), client.Idempotent(false))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	isolated := time.Now()
	l.isolate(leader)
	t.Logf("isolated leader %d", leader)
	// It must not acknowledge acks=all any more.
	acksOnIsolated := 0
	for time.Since(isolated) < 10*time.Second {
		err := p.ProduceSync(ctx, &client.Record{Topic: "iso", Partition: 0, Value: []byte(fmt.Sprint("alone-", time.Now().UnixNano()))})
		if err == nil && time.Since(isolated) > 500*time.Millisecond {
			acksOnIsolated++
		}
	}
	if acksOnIsolated > 0 {
		t.Fatalf("the isolated leader acknowledged %d acks=all writes", acksOnIsolated)
	}
	// The majority side elects a new leader.
	others := []string{}
	for _, id := range c.ids {
		if id != leader {
			others = append(others, c.brokers[id].Addr)
		}
	}
	mc, err := client.New(client.WithBrokers(others...), client.WithRequestTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	newLeader := c.leader(mc, "iso", 0, leader, 30*time.Second)
	t.Logf("broker %d leads after %v", newLeader, time.Since(isolated).Round(100*time.Millisecond))

	l.heal(leader)
	c.waitHealthy(60 * time.Second)
	ld.finish()
	// The main load's client could reach everyone: its records may have
	// failed only while the isolated leader held them (indeterminate).
	recs := readAll(t, cl, "iso", 0)
	n := checkLogNoDupCheck(t, recs, ld.acked)
	for _, id := range c.ids {
		want := replicaLog(t, c.brokers[newLeader].Addr, "iso", 0, n)
		if got := replicaLog(t, c.brokers[id].Addr, "iso", 0, n); string(got) != string(want) {
			t.Fatalf("replica %d differs below offset %d after the heal", id, n)
		}
	}
	for _, r := range recs {
		if strings.HasPrefix(string(r.Value), "alone-") {
			// Written only on the isolated leader, never acknowledged:
			// it must have been truncated away.
			t.Fatalf("a write the isolated leader took alone survived at offset %d", r.Offset)
		}
	}
	t.Logf("%d acknowledged records intact; %d failed during the isolation", len(ld.acked), len(ld.failed))
}

// checkLogNoDupCheck is checkLog without the duplicate check: a producer
// that is not idempotent may legitimately write a retried record twice.
func checkLogNoDupCheck(t testing.TB, recs []*client.Record, acked map[string]int64) int64 {
	t.Helper()
	at := map[int64]string{}
	for i, r := range recs {
		if r.Offset != int64(i) {
			t.Fatalf("offset %d at position %d: not dense", r.Offset, i)
		}
		at[r.Offset] = string(r.Value)
	}
	for v, off := range acked {
		if at[off] != v {
			t.Fatalf("acknowledged %q at offset %d; offset holds %q", v, off, at[off])
		}
	}
	return int64(len(recs))
}
