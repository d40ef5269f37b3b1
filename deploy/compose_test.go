// Package deploy_test is the container tier. It runs deploy/docker-compose.yml
// on the Docker engine under a project name and host ports of its own, and
// drives the cluster as a user would: with the host's produce, consume and
// broker commands through the brokers' external listeners, and with the same
// commands in containers on the cluster's network. Then it kills a broker
// container, shows that produce and consume carry on and nothing
// acknowledged is lost, restarts it and watches it rejoin every ISR, stops
// and starts the whole cluster on its volumes, and removes everything.
//
// scripts/test-deploy.sh builds the image and the host binaries and runs this
// with SKEIN_DEPLOY_PROJECT, SKEIN_IMAGE and SKEIN_BIN set (make test does);
// without them it skips.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
)

const topic = "deploy"

var services = []string{"broker1", "broker2", "broker3"}

// composeCluster is one compose project of deploy/docker-compose.yml.
type composeCluster struct {
	t         *testing.T
	project   string
	image     string
	bin       string   // host binaries: broker, produce, consume
	files     []string // deploy/docker-compose.yml, and overrides
	env       []string // for docker-compose: image, ports, subnet
	ports     []int    // host ports of the external listeners, by service
	httpPorts []int    // host ports of the HTTP listeners, by service
	network   string
}

// result is what a command printed and how it exited.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// run runs a command bounded by timeout; running out of time fails the test.
func run(t testing.TB, timeout time.Duration, env []string, stdin string, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ctx.Err() != nil {
		t.Fatalf("%s %s: no answer within %s\n%s", name, strings.Join(args, " "), timeout, r)
	}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", name, err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

func must(t testing.TB, r result, what string) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: %s", what, r)
	}
	return r
}

// newComposeCluster is deploy/docker-compose.yml with the override files
// given (their project name takes suffix).
func newComposeCluster(t *testing.T, suffix string, overrides ...string) *composeCluster {
	project := os.Getenv("SKEIN_DEPLOY_PROJECT")
	if project == "" {
		t.Skip("container tier: scripts/test-deploy.sh runs it (make test does)")
	}
	image, bin := os.Getenv("SKEIN_IMAGE"), os.Getenv("SKEIN_BIN")
	if image == "" || bin == "" {
		t.Fatal("SKEIN_DEPLOY_PROJECT needs SKEIN_IMAGE (the image to run) and SKEIN_BIN (host binaries)")
	}
	project += suffix
	var files []string
	for _, f := range append([]string{"docker-compose.yml"}, overrides...) {
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, abs)
	}
	c := &composeCluster{t: t, project: project, image: image, bin: bin, files: files, network: project + "_default"}
	c.ports = freePorts(t, 2*len(services))
	prefix := freeSubnet(t)
	c.env = append(os.Environ(), "SKEIN_IMAGE="+image, "SKEIN_NET_PREFIX="+prefix)
	for i := range services {
		c.env = append(c.env,
			fmt.Sprintf("SKEIN_BROKER%d_PORT=%d", i+1, c.ports[i]),
			fmt.Sprintf("SKEIN_BROKER%d_HTTP_PORT=%d", i+1, c.ports[len(services)+i]))
	}
	c.ports, c.httpPorts = c.ports[:len(services)], c.ports[len(services):]
	t.Logf("project %s, image %s, network %s.0/24, external ports %v", project, image, prefix, c.ports)
	t.Cleanup(c.teardown)
	return c
}

// freePorts returns n TCP ports free on the loopback interface just now.
func freePorts(t *testing.T, n int) []int {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// freeSubnet picks a 172.28.N.0/24 that no Docker network and no interface
// of this machine uses, and returns "172.28.N".
func freeSubnet(t *testing.T) string {
	var used []*net.IPNet
	ids := strings.Fields(must(t, run(t, 20*time.Second, nil, "", "docker", "network", "ls", "-q"), "docker network ls").stdout)
	if len(ids) > 0 {
		args := append([]string{"network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}"}, ids...)
		for _, s := range strings.Fields(must(t, run(t, 20*time.Second, nil, "", "docker", args...), "docker network inspect").stdout) {
			if _, n, err := net.ParseCIDR(s); err == nil {
				used = append(used, n)
			}
		}
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			used = append(used, n)
		}
	}
	for range 100 {
		third := 100 + rand.IntN(150)
		_, cand, _ := net.ParseCIDR(fmt.Sprintf("172.28.%d.0/24", third))
		if !slices.ContainsFunc(used, func(n *net.IPNet) bool { return n.Contains(cand.IP) || cand.Contains(n.IP) }) {
			return fmt.Sprintf("172.28.%d", third)
		}
	}
	t.Fatal("no free 172.28.N.0/24 subnet")
	return ""
}

func (c *composeCluster) compose(timeout time.Duration, args ...string) result {
	c.t.Helper()
	all := []string{"-p", c.project}
	for _, f := range c.files {
		all = append(all, "-f", f)
	}
	return run(c.t, timeout, c.env, "", "docker-compose", append(all, args...)...)
}

// teardown removes the project's containers, network and volumes, and the
// client containers, then checks that nothing of the project is left.
func (c *composeCluster) teardown() {
	t := c.t
	if t.Failed() {
		r := c.compose(time.Minute, "logs", "--no-color", "--tail", "150")
		t.Logf("broker logs:\n%s", r.stdout)
	}
	if ids := strings.Fields(run(t, 20*time.Second, nil, "", "docker", "ps", "-aq", "--filter", "label=skein.test="+c.project).stdout); len(ids) > 0 {
		run(t, time.Minute, nil, "", "docker", append([]string{"rm", "-f", "-v"}, ids...)...)
	}
	must(t, c.compose(2*time.Minute, "down", "-v", "--remove-orphans", "-t", "10"), "docker-compose down")
	label := "label=com.docker.compose.project=" + c.project
	for _, what := range [][]string{
		{"ps", "-aq", "--filter", label},
		{"volume", "ls", "-q", "--filter", label},
		{"network", "ls", "-q", "--filter", label},
		{"ps", "-aq", "--filter", "label=skein.test=" + c.project},
	} {
		if left := strings.TrimSpace(run(t, 20*time.Second, nil, "", "docker", what...).stdout); left != "" {
			t.Errorf("left behind after teardown (docker %s): %s", strings.Join(what, " "), left)
		}
	}
}

func (c *composeCluster) container(svc string) string {
	c.t.Helper()
	id := strings.TrimSpace(must(c.t, c.compose(30*time.Second, "ps", "-q", svc), "docker-compose ps").stdout)
	if id == "" {
		c.t.Fatalf("no container for %s", svc)
	}
	return id
}

func (c *composeCluster) health(id string) string {
	r := run(c.t, 20*time.Second, nil, "", "docker", "inspect", "-f", "{{.State.Status}}/{{.State.Health.Status}}", id)
	return strings.TrimSpace(r.stdout)
}

// waitHealthy waits until Docker's health check passes on every service
// named, and returns how long that took.
func (c *composeCluster) waitHealthy(timeout time.Duration, svcs ...string) time.Duration {
	c.t.Helper()
	start := time.Now()
	ids := map[string]string{}
	for _, s := range svcs {
		ids[s] = c.container(s)
	}
	for {
		var waiting []string
		for _, s := range svcs {
			if h := c.health(ids[s]); h != "running/healthy" {
				waiting = append(waiting, s+" "+h)
			}
		}
		if len(waiting) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			c.t.Fatalf("not healthy after %s: %v", timeout, waiting)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitServing waits until the brokers' gRPC health services, asked from the
// host through their external listeners, say SERVING, and returns how long
// that took. Docker notices on its next health check (every 5 s).
func (c *composeCluster) waitServing(timeout time.Duration, idx ...int) time.Duration {
	c.t.Helper()
	start := time.Now()
	for _, i := range idx {
		for {
			r := run(c.t, 20*time.Second, nil, "", filepath.Join(c.bin, "broker"), "healthcheck",
				"--addr", fmt.Sprintf("localhost:%d", c.ports[i]), "--timeout", "1s")
			if r.code == 0 {
				break
			}
			if time.Since(start) > timeout {
				c.t.Fatalf("%s not serving after %s: %s", services[i], timeout, r)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return time.Since(start)
}

// hostBrokers is the bootstrap list of a client on the host.
func (c *composeCluster) hostBrokers() string {
	var s []string
	for _, p := range c.ports {
		s = append(s, fmt.Sprintf("localhost:%d", p))
	}
	return strings.Join(s, ",")
}

const netBrokers = "broker1:9420,broker2:9420,broker3:9420"

// host runs one of the host binaries against the external listeners.
func (c *composeCluster) host(stdin, name string, args ...string) result {
	c.t.Helper()
	env := append(os.Environ(), "SKEIN_BROKERS="+c.hostBrokers())
	return run(c.t, 3*time.Minute, env, stdin, filepath.Join(c.bin, name), args...)
}

// inNet runs a command of the image in a container on the cluster's network.
func (c *composeCluster) inNet(stdin, name string, args ...string) result {
	c.t.Helper()
	return run(c.t, 3*time.Minute, nil, stdin, "docker", c.dockerRun(name, args...)...)
}

func (c *composeCluster) dockerRun(name string, args ...string) []string {
	return append([]string{"run", "--rm", "-i", "--network", c.network, "--label", "skein.test=" + c.project,
		"-e", "SKEIN_BROKERS=" + netBrokers, c.image, name}, args...)
}

// partitionState is one row of broker topic describe.
type partitionState struct {
	partition, leader int
	replicas, isr     []int
}

func ids(s string) []int {
	var v []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(f); err == nil {
			v = append(v, n)
		}
	}
	return v
}

func (c *composeCluster) describe() ([]partitionState, result) {
	r := c.host("", "broker", "topic", "describe", topic)
	var ps []partitionState
	rows := false
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "PARTITION" {
			rows = true
			continue
		}
		if !rows || len(f) < 5 {
			continue
		}
		p, _ := strconv.Atoi(f[0])
		l, _ := strconv.Atoi(f[1])
		ps = append(ps, partitionState{partition: p, leader: l, replicas: ids(f[3]), isr: ids(f[4])})
	}
	return ps, r
}

// waitISR waits until every partition has a leader other than notLeader and
// an ISR of the given size, and returns how long that took.
func (c *composeCluster) waitISR(timeout time.Duration, size, notLeader int) time.Duration {
	c.t.Helper()
	start := time.Now()
	for {
		ps, r := c.describe()
		ok := r.code == 0 && len(ps) > 0
		for _, p := range ps {
			if p.leader < 0 || p.leader == notLeader || len(p.isr) != size {
				ok = false
			}
		}
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			c.t.Fatalf("partitions not led with an ISR of %d (leader not %d) after %s:\n%s", size, notLeader, timeout, r)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// position is where a record was acknowledged.
type position struct {
	partition int32
	offset    int64
}

// acks parses produce --report output ("partition offset line N") into
// value → position, given the values of the input lines.
func acks(t *testing.T, report string, lines []string) map[string]position {
	t.Helper()
	got := map[string]position{}
	for _, l := range strings.Split(strings.TrimSpace(report), "\n") {
		var p int32
		var o int64
		var n int
		if _, err := fmt.Sscanf(l, "%d %d line %d", &p, &o, &n); err != nil || n < 1 || n > len(lines) {
			t.Fatalf("unexpected report line %q (%v)", l, err)
		}
		got[lines[n-1]] = position{p, o}
	}
	return got
}

func produceLines(prefix string, n int) []string {
	var v []string
	for i := range n {
		v = append(v, fmt.Sprintf("%s-%04d", prefix, i))
	}
	return v
}

// records parses consume --json output.
func records(t *testing.T, out string) []client.Record {
	t.Helper()
	var recs []client.Record
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r client.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("consume --json line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// check compares what a consumer read with every acknowledged record: each
// acknowledged record at its offset, nothing else, nothing twice, offsets
// dense from 0 in every partition.
func check(t *testing.T, who string, got []client.Record, acked map[string]position) {
	t.Helper()
	seen := map[string]bool{}
	offsets := map[int32][]int64{}
	bad := 0
	report := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(who+": "+format, args...)
		}
	}
	for _, r := range got {
		v := string(r.Value)
		offsets[r.Partition] = append(offsets[r.Partition], r.Offset)
		if seen[v] {
			report("%q read twice (again at %d/%d)", v, r.Partition, r.Offset)
		}
		seen[v] = true
		want, ok := acked[v]
		switch {
		case !ok:
			report("%q at %d/%d was never acknowledged", v, r.Partition, r.Offset)
		case want != (position{r.Partition, r.Offset}):
			report("%q acknowledged at %d/%d, read at %d/%d", v, want.partition, want.offset, r.Partition, r.Offset)
		}
	}
	for v, p := range acked {
		if !seen[v] {
			report("acknowledged %q (%d/%d) is missing", v, p.partition, p.offset)
		}
	}
	for p, offs := range offsets {
		slices.Sort(offs)
		for i, o := range offs {
			if o != int64(i) {
				report("partition %d: offsets not dense from 0 (position %d holds offset %d)", p, i, o)
				break
			}
		}
	}
	if bad > 10 {
		t.Errorf("%s: %d problems in all", who, bad)
	}
	if bad == 0 {
		t.Logf("%s: %d records, every acknowledged one at its offset", who, len(got))
	}
}

// stream is a produce process fed one line at a time.
type stream struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	out     proctest.SyncBuffer
	errb    proctest.SyncBuffer
	mu      sync.Mutex // guards written
	written []string
	stop    chan struct{}
	fed     chan struct{}
	done    chan error
}

func (s *stream) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.written)
}

func (s *stream) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.written)
}

// startStream starts a host producer fed one line every interval until
// stopped.
func (c *composeCluster) startStream(prefix string, interval time.Duration) *stream {
	c.t.Helper()
	s := &stream{stop: make(chan struct{}), fed: make(chan struct{}), done: make(chan error, 1)}
	s.cmd = exec.Command(filepath.Join(c.bin, "produce"), "-t", topic, "--report", "--linger", "2ms")
	s.cmd.Env = append(os.Environ(), "SKEIN_BROKERS="+c.hostBrokers())
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.errb
	var err error
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		c.t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { s.cmd.Process.Kill() })
	go func() { s.done <- s.cmd.Wait() }()
	go func() {
		defer close(s.fed)
		defer s.stdin.Close()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			line := fmt.Sprintf("%s-%05d", prefix, i)
			if _, err := io.WriteString(s.stdin, line+"\n"); err != nil {
				return
			}
			s.mu.Lock()
			s.written = append(s.written, line)
			s.mu.Unlock()
		}
	}()
	return s
}

func TestImage(t *testing.T) {
	if os.Getenv("SKEIN_DEPLOY_PROJECT") == "" {
		t.Skip("container tier: scripts/test-deploy.sh runs it (make test does)")
	}
	image := os.Getenv("SKEIN_IMAGE")
	var cfg struct {
		Size   int64
		Config struct {
			User         string
			ExposedPorts map[string]struct{}
			Volumes      map[string]struct{}
			Healthcheck  struct{ Test []string }
			Env          []string
		}
	}
	out := must(t, run(t, 20*time.Second, nil, "", "docker", "image", "inspect", "-f", "{{json .}}", image), "docker image inspect").stdout
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatal(err)
	}
	t.Logf("figure: image %s is %.1f MiB", image, float64(cfg.Size)/(1<<20))
	if cfg.Config.User != "10001:10001" {
		t.Errorf("user %q, want the numeric non-root 10001:10001", cfg.Config.User)
	}
	if _, ok := cfg.Config.Volumes["/data"]; !ok {
		t.Errorf("no /data volume: %v", cfg.Config.Volumes)
	}
	for _, p := range []string{"9420/tcp", "9421/tcp", "9421/udp", "9422/tcp", "9423/tcp", "9424/tcp"} {
		if _, ok := cfg.Config.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed: %v", p, cfg.Config.ExposedPorts)
		}
	}
	if hc := cfg.Config.Healthcheck.Test; len(hc) < 3 || hc[0] != "CMD" || !strings.HasSuffix(hc[1], "/broker") || hc[2] != "healthcheck" {
		t.Errorf("health check %q: want the exec form of broker healthcheck", hc)
	}
	// Nothing but the three commands: no shell to run.
	if r := run(t, time.Minute, nil, "", "docker", "run", "--rm", "--label", "skein.test="+os.Getenv("SKEIN_DEPLOY_PROJECT"),
		"--entrypoint", "/bin/sh", image, "-c", "true"); r.code == 0 {
		t.Error("the image has a shell")
	}
	for _, name := range []string{"broker", "produce", "consume"} {
		if r := run(t, time.Minute, nil, "", "docker", "run", "--rm", "--label", "skein.test="+os.Getenv("SKEIN_DEPLOY_PROJECT"),
			image, name, "-h"); r.code != 0 || !strings.Contains(r.stdout+r.stderr, "SKEIN_BROKERS") && name != "broker" {
			t.Errorf("%s -h in the image: %s", name, r)
		}
	}
}

func TestComposeCluster(t *testing.T) {
	c := newComposeCluster(t, "")
	must(t, c.compose(30*time.Second, "config", "-q"), "docker-compose config")

	// 1. Up: three brokers bootstrap the controller quorum together.
	start := time.Now()
	must(t, c.compose(3*time.Minute, "up", "-d"), "docker-compose up")
	c.waitServing(2*time.Minute, 0, 1, 2)
	serving := time.Since(start)
	c.waitHealthy(2*time.Minute, services...)
	t.Logf("figure: docker-compose up to three brokers serving: %.1f s, healthy in Docker: %.1f s", serving.Seconds(), time.Since(start).Seconds())

	// The host is told the external addresses, the network the internal ones.
	r := must(t, c.host("", "broker", "cluster"), "broker cluster (host)")
	for _, p := range c.ports {
		if !strings.Contains(r.stdout, fmt.Sprintf("localhost:%d", p)) {
			t.Errorf("broker cluster from the host does not show localhost:%d:\n%s", p, r.stdout)
		}
	}
	if strings.Count(r.stdout, " alive ") != 3 || !strings.Contains(r.stdout, "(controller)") {
		t.Errorf("want three live brokers and a controller:\n%s", r.stdout)
	}
	r = must(t, c.inNet("", "broker", "cluster"), "broker cluster (network)")
	for _, s := range services {
		if !strings.Contains(r.stdout, s+":9420") {
			t.Errorf("broker cluster in the network does not show %s:9420:\n%s", s, r.stdout)
		}
	}

	// 2. A topic with replication factor 3.
	must(t, c.host("", "broker", "topic", "create", topic, "--partitions", "3", "--replication-factor", "3", "--min-insync", "2"), "topic create")
	c.waitISR(time.Minute, 3, -1)

	// 3. Produce from the host and from a container on the network; read
	// both back from both places.
	acked := map[string]position{}
	hostLines := produceLines("host", 150)
	r = must(t, c.host(strings.Join(hostLines, "\n")+"\n", "produce", "-t", topic, "--report"), "produce (host)")
	maps.Copy(acked, acks(t, r.stdout, hostLines))
	netLines := produceLines("net", 150)
	r = must(t, c.inNet(strings.Join(netLines, "\n")+"\n", "produce", "-t", topic, "--report"), "produce (network)")
	maps.Copy(acked, acks(t, r.stdout, netLines))
	if len(acked) != 300 {
		t.Fatalf("%d of 300 records acknowledged", len(acked))
	}
	check(t, "consume (host)", records(t, must(t, c.host("", "consume", "-t", topic, "-o", "beginning", "-e", "--json"), "consume (host)").stdout), acked)
	check(t, "consume (network)", records(t, must(t, c.inNet("", "consume", "-t", topic, "-o", "beginning", "-e", "--json"), "consume (network)").stdout), acked)
	if t.Failed() {
		return
	}

	// 4. Kill the broker that leads partition 0 while a producer on the host
	// and a consumer in the network are running.
	ps, r := c.describe()
	if len(ps) == 0 {
		t.Fatalf("topic describe: %s", r)
	}
	victim := ps[0].leader
	svc := fmt.Sprintf("broker%d", victim)
	victimID := c.container(svc)

	var folOut, folErr proctest.SyncBuffer
	folDone := make(chan error, 1)
	fol := exec.Command("docker", "run", "--rm", "--name", c.project+"_follow", "--network", c.network,
		"--label", "skein.test="+c.project, "-e", "SKEIN_BROKERS="+netBrokers, c.image,
		"consume", "-t", topic, "-o", "beginning", "--json")
	fol.Stdout, fol.Stderr = &folOut, &folErr
	if err := fol.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fol.Process.Kill() })
	go func() { folDone <- fol.Wait() }()

	st := c.startStream("stream", 20*time.Millisecond)
	time.Sleep(2 * time.Second)
	beforeKill := st.count()
	must(t, run(t, 30*time.Second, nil, "", "docker", "kill", victimID), "docker kill")
	killed := time.Now()
	t.Logf("killed %s (leader of partition 0) after %d streamed records", svc, beforeKill)

	// One producer per partition, started at the kill: each finishes once its
	// partition accepts acks=all writes again.
	var wg sync.WaitGroup
	probes := make([]result, 3)
	probeTook := make([]time.Duration, 3)
	probeLines := make([][]string, 3)
	for p := range 3 {
		probeLines[p] = produceLines(fmt.Sprintf("probe%d", p), 10)
		wg.Go(func() {
			s := time.Now()
			probes[p] = c.host(strings.Join(probeLines[p], "\n")+"\n", "produce", "-t", topic, "-p", strconv.Itoa(p), "--report")
			probeTook[p] = time.Since(s)
		})
	}
	wg.Wait()
	for p := range 3 {
		must(t, probes[p], fmt.Sprintf("produce -p %d after the kill", p))
		maps.Copy(acked, acks(t, probes[p].stdout, probeLines[p]))
	}
	t.Logf("figure: after the kill, acks=all produce to the partitions completed in %.1f s, %.1f s, %.1f s (partition 0 was led by the killed broker)",
		probeTook[0].Seconds(), probeTook[1].Seconds(), probeTook[2].Seconds())
	c.waitISR(time.Minute, 2, victim)
	t.Logf("figure: %.1f s after the kill, every partition has a leader and the killed broker is out of every ISR", time.Since(killed).Seconds())
	r = must(t, c.host("", "broker", "cluster"), "broker cluster")
	if !strings.Contains(r.stdout, "under-replicated") {
		t.Errorf("with %s down, broker cluster should list under-replicated partitions:\n%s", svc, r.stdout)
	}
	t.Logf("with %s down:\n%s", svc, r.stdout)
	duringKill := st.count()

	// The consumer in the network, started before the kill, goes on reading:
	// it gets the records produced after the kill while the broker is down.
	deadline := time.Now().Add(30 * time.Second)
	var unread []string
	for {
		unread = unread[:0]
		out := folOut.String()
		for _, lines := range probeLines {
			for _, v := range lines {
				if !strings.Contains(out, `"`+v+`"`) {
					unread = append(unread, v)
				}
			}
		}
		if len(unread) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(unread) > 0 {
		t.Fatalf("with %s down, the consumer following in the network has not read %d records produced after the kill: %v\n%s",
			svc, len(unread), unread, folErr.String())
	}

	// 5. Restart it: it catches up and rejoins every ISR.
	restarted := time.Now()
	must(t, c.compose(time.Minute, "start", svc), "docker-compose start")
	c.waitServing(2*time.Minute, victim-1)
	serving = time.Since(restarted)
	c.waitISR(2*time.Minute, 3, -1)
	inISR := time.Since(restarted)
	c.waitHealthy(2*time.Minute, svc)
	t.Logf("figure: killed broker restarted: serving after %.1f s, back in every ISR after %.1f s, healthy in Docker after %.1f s",
		serving.Seconds(), inISR.Seconds(), time.Since(restarted).Seconds())
	r = must(t, c.host("", "broker", "cluster"), "broker cluster")
	if strings.Count(r.stdout, " alive ") != 3 || !strings.Contains(r.stdout, "every partition has a leader and a full ISR") {
		t.Errorf("after the restart: want three live brokers and full ISRs:\n%s", r.stdout)
	}

	// The producer ran through all of it.
	time.Sleep(time.Second)
	close(st.stop)
	<-st.fed
	select {
	case err := <-st.done:
		if err != nil {
			t.Fatalf("streaming producer: %v\n%s\n%s", err, st.errb.String(), st.out.String())
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("streaming producer did not finish within 3 minutes of its input")
	}
	written := st.lines()
	streamed := acks(t, st.out.String(), written)
	if len(streamed) != len(written) {
		t.Fatalf("streaming producer: %d of %d records acknowledged", len(streamed), len(written))
	}
	maps.Copy(acked, streamed)
	t.Logf("streaming producer: %d records acknowledged (%d before the kill, %d while %s was down, %d after its restart)",
		len(written), beforeKill, duringKill-beforeKill, svc, len(written)-duringKill)

	// The consumer in the network, started before the kill, reads them all.
	deadline = time.Now().Add(time.Minute)
	for strings.Count(folOut.String(), "\n") < len(acked) && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
	}
	must(t, run(t, time.Minute, nil, "", "docker", "stop", "-t", "10", c.project+"_follow"), "docker stop (consumer)")
	select {
	case err := <-folDone:
		if err != nil {
			t.Errorf("following consumer: %v\n%s", err, folErr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("following consumer did not exit")
	}
	check(t, "consumer following through the kill (network)", records(t, folOut.String()), acked)

	// Everything is there when read from the host too.
	check(t, "consume after the restart (host)", records(t, must(t, c.host("", "consume", "-t", topic, "-o", "beginning", "-e", "--json"), "consume").stdout), acked)

	// 6. Stop and start the whole cluster on its volumes.
	start = time.Now()
	must(t, c.compose(2*time.Minute, "stop", "-t", "30"), "docker-compose stop")
	stopped := time.Since(start)
	start = time.Now()
	must(t, c.compose(2*time.Minute, "start"), "docker-compose start")
	c.waitServing(2*time.Minute, 0, 1, 2)
	c.waitISR(time.Minute, 3, -1)
	serving = time.Since(start)
	c.waitHealthy(2*time.Minute, services...)
	t.Logf("figure: whole cluster stopped (SIGTERM) in %.1f s; started again: serving with full ISRs after %.1f s, healthy in Docker after %.1f s",
		stopped.Seconds(), serving.Seconds(), time.Since(start).Seconds())
	check(t, "consume after stopping and starting the cluster (host)", records(t, must(t, c.host("", "consume", "-t", topic, "-o", "beginning", "-e", "--json"), "consume").stdout), acked)
}
