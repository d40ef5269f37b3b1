// Package e2e is the multi-process test tier: it runs the real broker,
// produce and consume binaries on 127.0.0.1 and drives them as a user would.
// It runs only with SKEIN_E2E=1 (make test sets it); SKEIN_BIN names a
// directory with the binaries, else they are built once per run.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// bins returns the directory with broker, produce and consume.
func bins(t testing.TB) string {
	t.Helper()
	if os.Getenv("SKEIN_E2E") != "1" {
		t.Skip("multi-process tier: set SKEIN_E2E=1 (make test does)")
	}
	buildOnce.Do(func() {
		if d := os.Getenv("SKEIN_BIN"); d != "" {
			binDir = d
			return
		}
		binDir, buildErr = os.MkdirTemp("", "skein-e2e-bin")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/", "github.com/skeinlog/skein/cmd/...")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// brokerProc is a broker process owned by a test.
type brokerProc struct {
	t          testing.TB
	Dir        string
	Addr       string
	HTTPAddr   string
	GossipAddr string
	RaftAddr   string
	args       []string
	// wrap, when set, prefixes the command (ip netns exec NS ...).
	wrap []string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan error
}

// startBroker runs a broker on dir; addr "" picks a free port.
func startBroker(t testing.TB, dir, addr string, extra ...string) *brokerProc {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	b := &brokerProc{t: t, Dir: dir, args: extra}
	b.start(addr)
	t.Cleanup(func() { b.Kill() })
	return b
}

func (b *brokerProc) start(addr string) {
	b.t.Helper()
	gossip, raft := b.GossipAddr, b.RaftAddr
	if gossip == "" {
		gossip, raft = "127.0.0.1:0", "127.0.0.1:0"
	}
	args := append([]string{"--data-dir", b.Dir, "--addr", addr, "--http-addr", "127.0.0.1:0", "--log-format", "json",
		"--gossip-addr", gossip, "--raft-addr", raft}, b.args...)
	bin := filepath.Join(bins(b.t), "broker")
	var cmd *exec.Cmd
	if len(b.wrap) > 0 {
		cmd = exec.Command(b.wrap[0], append(append(b.wrap[1:], bin), args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.cmd, b.logs, b.done = cmd, &syncBuffer{}, make(chan error, 1)
	ready := make(chan [4]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			b.logs.Write(append(line, '\n'))
			var m struct{ Msg, Addr, HTTP, Gossip, Raft string }
			if json.Unmarshal(line, &m) == nil && m.Msg == "broker ready" {
				select {
				case ready <- [4]string{m.Addr, m.HTTP, m.Gossip, m.Raft}:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
		b.done <- cmd.Wait()
	}()
	select {
	case a := <-ready:
		b.Addr, b.HTTPAddr, b.GossipAddr, b.RaftAddr = a[0], a[1], a[2], a[3]
	case err := <-b.done:
		b.done <- err
		b.t.Fatalf("broker exited during start (%v):\n%s", err, b.logs.String())
	case <-time.After(30 * time.Second):
		b.t.Fatalf("broker not ready after 30s:\n%s", b.logs.String())
	}
}

// Kill sends SIGKILL and waits. Killing a stopped broker does nothing.
func (b *brokerProc) Kill() {
	if b.cmd == nil {
		return
	}
	b.cmd.Process.Signal(syscall.SIGKILL)
	<-b.done
	b.cmd = nil
}

// Term sends SIGTERM, waits up to 30 s, and returns the exit code.
func (b *brokerProc) Term() int {
	b.t.Helper()
	if b.cmd == nil {
		return -1
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		b.t.Errorf("broker did not stop within 30s of SIGTERM:\n%s", b.logs.String())
		b.Kill()
		return -1
	}
	code := b.cmd.ProcessState.ExitCode()
	b.cmd = nil
	return code
}

// Restart starts the broker again on the same data directory and
// addresses, with extra arguments replacing the original ones if given.
func (b *brokerProc) Restart(extra ...string) {
	b.t.Helper()
	if len(extra) > 0 {
		b.args = extra
	}
	b.start(b.Addr)
}

// Pause and Resume send SIGSTOP and SIGCONT.
func (b *brokerProc) Pause()  { b.cmd.Process.Signal(syscall.SIGSTOP) }
func (b *brokerProc) Resume() { b.cmd.Process.Signal(syscall.SIGCONT) }

// Running reports whether the process is up.
func (b *brokerProc) Running() bool { return b.cmd != nil }

// result is what a CLI run printed and how it exited.
type result struct {
	Stdout, Stderr string
	Code           int
}

// cli runs one of the binaries with stdin, bounded by 60 s.
func cli(t testing.TB, name, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bins(t), name), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{Stdout: out.String(), Stderr: errb.String()}
	if ctx.Err() != nil {
		t.Fatalf("%s %v: timed out\nstderr: %s", name, args, r.Stderr)
	}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			r.Code = ee.ExitCode()
		} else {
			t.Fatalf("%s: %v", name, err)
		}
	}
	return r
}

// mustCLI is cli that fails the test on a non-zero exit.
func mustCLI(t testing.TB, name, stdin string, args ...string) result {
	t.Helper()
	r := cli(t, name, stdin, args...)
	if r.Code != 0 {
		t.Fatalf("%s %v: exit %d\nstdout: %s\nstderr: %s", name, args, r.Code, r.Stdout, r.Stderr)
	}
	return r
}
