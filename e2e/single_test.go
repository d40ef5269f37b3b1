package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/skeinlog/skein/internal/proctest"
)

// The README's quick start, as a new user types it, then the admin
// commands, bad input, the HTTP endpoints and a clean stop.
func TestQuickStart(t *testing.T) {
	b := proctest.StartBroker(t, t.TempDir(), "")
	bk := []string{"--brokers", b.Addr}
	r := proctest.MustCLI(t, "broker", "", append([]string{"topic", "create", "demo", "--partitions", "3"}, bk...)...)
	if !strings.Contains(r.Stdout, `created topic "demo": 3 partition(s)`) {
		t.Fatalf("create said %q", r.Stdout)
	}
	proctest.MustCLI(t, "produce", "k1:hello\nk2:world\n", "-t", "demo", "-K", ":", "-b", b.Addr)
	r = proctest.MustCLI(t, "consume", "", "-t", "demo", "-o", "beginning", "-e", "-b", b.Addr)
	got := strings.Fields(r.Stdout)
	slices.Sort(got)
	if !slices.Equal(got, []string{"hello", "world"}) {
		t.Fatalf("consumed %q", r.Stdout)
	}
	// Keys and partitions: the same key lands in the same partition.
	r = proctest.MustCLI(t, "consume", "", "-t", "demo", "-o", "beginning", "-e", "-f", `%k %p %o %v\n`, "-b", b.Addr)
	if !strings.Contains(r.Stdout, "k1 ") || !strings.Contains(r.Stdout, "k2 ") {
		t.Fatalf("format output %q", r.Stdout)
	}

	r = proctest.MustCLI(t, "broker", "", append([]string{"topic", "alter", "demo", "--partitions", "4", "--retention", "3d"}, bk...)...)
	if !strings.Contains(r.Stdout, `altered topic "demo": 4 partition(s)`) || !strings.Contains(r.Stdout, "retention 3d") ||
		!strings.Contains(r.Stderr, "keys may now map to other partitions") {
		t.Fatalf("alter said %q / %q", r.Stdout, r.Stderr)
	}
	r = proctest.CLI(t, "broker", "", append([]string{"topic", "alter", "demo", "--partitions", "2"}, bk...)...)
	if r.Code != 1 || !strings.Contains(r.Stderr, "can only grow (it has 4)") {
		t.Fatalf("shrink: exit %d, %q", r.Code, r.Stderr)
	}
	r = proctest.MustCLI(t, "broker", "", append([]string{"topic", "list"}, bk...)...)
	if !strings.Contains(r.Stdout, "demo") {
		t.Fatalf("list: %q", r.Stdout)
	}
	r = proctest.MustCLI(t, "broker", "", append([]string{"topic", "describe", "demo"}, bk...)...)
	for _, want := range []string{"PARTITION", "HIGH-WATERMARK", "LOG-START", "ISR"} {
		if !strings.Contains(r.Stdout, want) {
			t.Fatalf("describe lacks %s: %q", want, r.Stdout)
		}
	}

	// Bad input: a clear error, a non-zero exit, and no stray directory.
	r = proctest.CLI(t, "broker", "", append([]string{"topic", "create", "../escape"}, bk...)...)
	if r.Code == 0 || !strings.Contains(r.Stderr, "invalid topic") {
		t.Fatalf("bad topic name: exit %d, %q", r.Code, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(b.Dir, "escape")); err == nil {
		t.Fatal("a directory was created for an invalid topic name")
	}
	if ents, _ := os.ReadDir(filepath.Join(b.Dir, "topics")); len(ents) != 1 {
		t.Fatalf("topics dir holds %d entries, want 1", len(ents))
	}
	r = proctest.CLI(t, "produce", "x\n", "-t", "nope", "-b", b.Addr)
	if r.Code == 0 || !strings.Contains(r.Stderr, "does not exist") {
		t.Fatalf("unknown topic: exit %d, %q", r.Code, r.Stderr)
	}
	r = proctest.CLI(t, "produce", "x\n", "-t", "demo", "-p", "9", "-b", b.Addr)
	if r.Code == 0 || !strings.Contains(r.Stderr, "partition 9") {
		t.Fatalf("unknown partition: exit %d, %q", r.Code, r.Stderr)
	}
	r = proctest.CLI(t, "consume", "", "-t", "demo", "-o", "sideways", "-e", "-b", b.Addr)
	if r.Code != 2 {
		t.Fatalf("bad offset: exit %d, %q", r.Code, r.Stderr)
	}
	r = proctest.CLI(t, "broker", "", append([]string{"topic", "create", "big", "--replication-factor", "3"}, bk...)...)
	if r.Code == 0 || !strings.Contains(r.Stderr, "replication factor 3") {
		t.Fatalf("rf 3 on one broker: exit %d, %q", r.Code, r.Stderr)
	}
	// Over-long line: refused, nothing sent.
	long := strings.Repeat("x", 2<<20) + "\n"
	r = proctest.CLI(t, "produce", long, "-t", "demo", "-p", "0", "--expect-offset", "1", "-b", b.Addr)
	if r.Code == 0 {
		t.Fatalf("a 2 MiB record was accepted: %q", r.Stderr)
	}

	// Conditional append from the shell: exit 3 with the actual offset.
	r = proctest.CLI(t, "produce", "c\n", "-t", "demo", "-p", "1", "--expect-offset", "5", "-b", b.Addr)
	if r.Code != 3 {
		t.Fatalf("--expect-offset mismatch: exit %d, %q", r.Code, r.Stderr)
	}

	// HTTP: metrics, health, readiness.
	for path, want := range map[string]string{"/metrics": "skein_produced_records_total", "/healthz": "ok", "/readyz": "ready"} {
		resp, err := http.Get("http://" + b.HTTPAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
		}
	}

	// SIGTERM: a clean exit, and the data is there after a restart.
	if code := b.Term(); code != 0 {
		t.Fatalf("exit %d after SIGTERM\n%s", code, b.Logs())
	}
	if !strings.Contains(b.Logs(), `"broker stopped"`) {
		t.Fatalf("no clean stop in the logs:\n%s", b.Logs())
	}
	b.Restart()
	r = proctest.MustCLI(t, "consume", "", "-t", "demo", "-o", "beginning", "-e", "--json", "-b", b.Addr)
	if n := strings.Count(r.Stdout, "\n"); n != 2 {
		t.Fatalf("after restart consumed %d records: %q", n, r.Stdout)
	}
	var rec struct {
		Topic     string `json:"topic"`
		Partition int32  `json:"partition"`
		Offset    int64  `json:"offset"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(r.Stdout, "\n", 2)[0]), &rec); err != nil || rec.Topic != "demo" {
		t.Fatalf("json line: %v %+v", err, rec)
	}
}

// Two brokers cannot share a data directory, and a directory remembers its
// node id.
func TestDataDirOwnership(t *testing.T) {
	dir := t.TempDir()
	b := proctest.StartBroker(t, dir, "")
	r := proctest.CLI(t, "broker", "", "--data-dir", dir, "--addr", "127.0.0.1:0", "--http-addr", "")
	if r.Code == 0 || !strings.Contains(r.Stderr, "in use by another broker") {
		t.Fatalf("second broker on the same dir: exit %d %q", r.Code, r.Stderr)
	}
	b.Term()
	r = proctest.CLI(t, "broker", "", "--data-dir", dir, "--addr", "127.0.0.1:0", "--http-addr", "", "--node-id", "2")
	if r.Code == 0 || !strings.Contains(r.Stderr, "belongs to node 1") {
		t.Fatalf("other node id: exit %d %q", r.Code, r.Stderr)
	}
	r = proctest.CLI(t, "broker", "", "--data-dir", dir, "--addr", "nonsense")
	if r.Code == 0 || !strings.Contains(r.Stderr, "--addr") {
		t.Fatalf("bad --addr: exit %d %q", r.Code, r.Stderr)
	}
}

// A script that starts a broker and runs an admin command at once: the
// command waits for the broker (saying so) instead of failing, and gives up
// with a clear message after --timeout when no broker comes.
func TestAdminCommandWaitsForStartingBroker(t *testing.T) {
	b := proctest.StartBroker(t, t.TempDir(), "")
	b.Kill()
	done := make(chan proctest.Result, 1)
	go func() {
		done <- proctest.CLI(t, "broker", "", "topic", "create", "early", "--partitions", "2", "--brokers", b.Addr, "--timeout", "45s")
	}()
	b.Restart()
	r := <-done
	if r.Code != 0 || !strings.Contains(r.Stdout, `created topic "early"`) {
		t.Fatalf("create against a starting broker: exit %d\nstdout %q\nstderr %q", r.Code, r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "cluster not ready") {
		t.Errorf("the command did not say it was waiting: stderr %q", r.Stderr)
	}
	b.Kill()
	r = proctest.CLI(t, "broker", "", "topic", "list", "--brokers", b.Addr, "--timeout", "1s")
	if r.Code != 1 || !strings.Contains(r.Stderr, "gave up after 1s (--timeout)") {
		t.Fatalf("list against a stopped broker: exit %d, stderr %q", r.Code, r.Stderr)
	}
}
