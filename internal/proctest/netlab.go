package proctest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/skeinlog/skein/client"
)

// NetLab is a private network the test builds: one network namespace per
// broker, each with a veth into a bridge in the test's own namespace, so the
// test (the clients) reaches every broker while the brokers can be cut off
// from each other with iptables inside their namespaces. Everything is torn
// down when the test ends.
type NetLab struct {
	t      TB
	tag    string
	subnet int // 10.77.<subnet>.0/24
	bridge string
	nss    map[int32]string
}

func Run(t TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// NewNetLab needs root and iproute2/iptables; without them the test skips,
// except in CI (CI=true), where that is a failure.
func NewNetLab(t TB, n int) *NetLab {
	t.Helper()
	Bins(t) // the e2e gate
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
	l := &NetLab{t: t, tag: fmt.Sprintf("%x", rand.Uint32()&0xfffff), subnet: 100 + rand.IntN(150), nss: map[int32]string{}}
	l.bridge = "skbr" + l.tag
	t.Cleanup(l.teardown)
	Run(t, "ip", "link", "add", l.bridge, "type", "bridge")
	Run(t, "ip", "addr", "add", l.HostIP()+"/24", "dev", l.bridge)
	Run(t, "ip", "link", "set", l.bridge, "up")
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
		Run(t, "ip", "netns", "add", ns)
		l.nss[id] = ns
		Run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", peer)
		Run(t, "ip", "link", "set", peer, "netns", ns)
		Run(t, "ip", "link", "set", host, "master", l.bridge)
		Run(t, "ip", "link", "set", host, "up")
		Run(t, "ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
		Run(t, "ip", "netns", "exec", ns, "ip", "addr", "add", l.IP(id)+"/24", "dev", peer)
		Run(t, "ip", "netns", "exec", ns, "ip", "link", "set", peer, "up")
	}
	return l
}

func (l *NetLab) HostIP() string     { return fmt.Sprintf("10.77.%d.1", l.subnet) }
func (l *NetLab) IP(id int32) string { return fmt.Sprintf("10.77.%d.%d", l.subnet, 10+id) }

// Wrap runs a command inside broker id's namespace.
func (l *NetLab) Wrap(id int32) []string { return []string{"ip", "netns", "exec", l.nss[id]} }

// Isolate drops all traffic between broker id and the other brokers; the
// test's clients still reach it.
func (l *NetLab) Isolate(id int32) {
	for other := range l.nss {
		if other == id {
			continue
		}
		Run(l.t, "ip", "netns", "exec", l.nss[id], "iptables", "-A", "INPUT", "-s", l.IP(other), "-j", "DROP")
		Run(l.t, "ip", "netns", "exec", l.nss[id], "iptables", "-A", "OUTPUT", "-d", l.IP(other), "-j", "DROP")
	}
}

func (l *NetLab) Heal(id int32) {
	Run(l.t, "ip", "netns", "exec", l.nss[id], "iptables", "-F")
}

// Drop makes broker from's packets to broker to vanish (a one-way
// partition: to's packets still reach from). TCP needs both ways, so
// connections from either side stall; gossip's UDP probes from to still
// arrive.
func (l *NetLab) Drop(from, to int32) {
	Run(l.t, "ip", "netns", "exec", l.nss[from], "iptables", "-A", "OUTPUT", "-d", l.IP(to), "-j", "DROP")
}

// Cut drops all traffic between brokers a and b, both ways.
func (l *NetLab) Cut(a, b int32) {
	l.Drop(a, b)
	l.Drop(b, a)
}

// Split cuts every link between the two sides; the clients still reach
// every broker.
func (l *NetLab) Split(side1, side2 []int32) {
	for _, a := range side1 {
		for _, b := range side2 {
			l.Cut(a, b)
		}
	}
}

// HealAll removes every rule the lab added.
func (l *NetLab) HealAll() {
	for id := range l.nss {
		l.Heal(id)
	}
}

func (l *NetLab) teardown() {
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

// StartNetnsCluster starts broker processes inside the lab's namespaces.
func StartNetnsCluster(t TB, l *NetLab, n int, extra ...string) *Cluster {
	t.Helper()
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	return StartNetnsClusterIn(t, l, dirs, nil, extra...)
}

// StartNetnsClusterIn is StartNetnsCluster with the brokers' data
// directories given (broker i+1 uses dirs[i]) and, when logs is not nil,
// files that receive their logs.
func StartNetnsClusterIn(t TB, l *NetLab, dirs, logs []string, extra ...string) *Cluster {
	t.Helper()
	return StartNetnsClusterWith(t, l, dirs, logs, nil, extra...)
}

// StartNetnsClusterWith is StartNetnsClusterIn whose clients (WaitHealthy)
// take opts, such as client.TLSConfig for brokers serving TLS.
func StartNetnsClusterWith(t TB, l *NetLab, dirs, logs []string, opts []client.ClientOpt, extra ...string) *Cluster {
	t.Helper()
	n := len(dirs)
	c := &Cluster{t: t, Brokers: map[int32]*Broker{}, extra: extra, ClientOpts: opts}
	for i := 1; i <= n; i++ {
		id := int32(i)
		ip := l.IP(id)
		args := append([]string{"--node-id", strconv.Itoa(i)}, extra...)
		if i > 1 {
			args = append(args, "--join", l.IP(1)+":9421")
		}
		b := &Broker{t: t, ID: id, Dir: dirs[i-1], args: args, wrap: l.Wrap(id),
			GossipAddr: ip + ":9421", RaftAddr: ip + ":9422", PeerAddr: ip + ":9424"}
		if logs != nil {
			b.LogPath = logs[i-1]
		}
		b.start(ip + ":9420")
		t.Cleanup(b.Kill)
		c.Brokers[id] = b
		c.IDs = append(c.IDs, id)
	}
	c.WaitHealthy(60 * time.Second)
	return c
}

// CleanupStale removes what interrupted labs left behind: their namespaces
// (and the brokers in them) and bridges. It returns what it removed.
func CleanupStale() []string {
	var removed []string
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || !staleNS(f[0]) {
				continue
			}
			if pids, err := exec.Command("ip", "netns", "pids", f[0]).Output(); err == nil {
				for _, p := range strings.Fields(string(pids)) {
					if pid, err := strconv.Atoi(p); err == nil {
						if proc, err := os.FindProcess(pid); err == nil {
							proc.Kill()
						}
					}
				}
			}
			if exec.Command("ip", "netns", "del", f[0]).Run() == nil {
				removed = append(removed, "netns "+f[0])
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show", "type", "bridge").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name := strings.TrimSuffix(f[1], ":")
			if strings.HasPrefix(name, "skbr") && exec.Command("ip", "link", "del", name).Run() == nil {
				removed = append(removed, "bridge "+name)
			}
		}
	}
	return removed
}

// staleNS matches the namespace names NewNetLab makes: sk<hex>-<n>.
func staleNS(name string) bool {
	tag, n, ok := strings.Cut(strings.TrimPrefix(name, "sk"), "-")
	if !ok || !strings.HasPrefix(name, "sk") || tag == "" {
		return false
	}
	if _, err := strconv.ParseUint(tag, 16, 32); err != nil {
		return false
	}
	_, err := strconv.Atoi(n)
	return err == nil
}
