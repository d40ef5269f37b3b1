// Package proctest runs real Skein broker processes for tests and for the
// fault-injection suite (cmd/chaos): brokers on 127.0.0.1 or inside network
// namespaces the caller builds, clusters of them, the CLIs, and the
// network faults between them. Everything it starts is stopped through the
// TB's Cleanup.
package proctest

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
	"time"
)

// TB is the part of testing.TB the harness uses; cmd/chaos supplies its
// own (Fatalf ends the run, not the program).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// SetBins names the directory with the broker, produce and consume binaries,
// for programs that build them themselves (cmd/chaos).
func SetBins(dir string) {
	buildOnce.Do(func() { binDir = dir })
}

// Bins returns the directory with broker, produce and consume. In tests it
// is the multi-process tier's gate: without SKEIN_E2E=1 the test skips.
// SKEIN_BIN names a directory with the binaries, else they are built once.
func Bins(t TB) string {
	t.Helper()
	if os.Getenv("SKEIN_E2E") != "1" && binDir == "" {
		t.Skipf("multi-process tier: set SKEIN_E2E=1 (make test does)")
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
		t.Fatalf("%v", buildErr)
	}
	return binDir
}

// SyncBuffer is a bytes.Buffer safe for a writer goroutine and readers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Broker is a broker process owned by a test.
type Broker struct {
	t          TB
	Dir        string
	Addr       string
	HTTPAddr   string
	GossipAddr string
	RaftAddr   string
	// KafkaAddr is the bound Kafka listener address ("" when off).
	KafkaAddr string
	// PeerAddr is the inter-broker listener (the Internal service).
	PeerAddr string
	// ID is the broker's node id when a Cluster started it.
	ID int32
	// LogPath, when set before a start, receives the broker's log lines
	// (appended) besides Logs.
	LogPath string
	args    []string
	// wrap, when set, prefixes the command (ip netns exec NS ...).
	wrap []string
	cmd  *exec.Cmd
	logs *SyncBuffer
	done chan error
}

// Args returns the arguments the broker was last started with, beyond the
// addresses and data directory.
func (b *Broker) Args() []string { return b.args }

// Logs returns what the broker has logged since its last start.
func (b *Broker) Logs() string {
	if b.logs == nil {
		return ""
	}
	return b.logs.String()
}

// Pid is the running process's id, or 0.
func (b *Broker) Pid() int {
	if b.cmd == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// StartBroker runs a broker on dir; addr "" picks a free port.
func StartBroker(t TB, dir, addr string, extra ...string) *Broker {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	b := &Broker{t: t, Dir: dir, args: extra}
	b.start(addr)
	t.Cleanup(func() { b.Kill() })
	return b
}

// TryStartBroker runs a broker on dir like StartBroker, but returns an
// error, with what it logged, if it is not ready within d (the process is
// then killed) or exits first.
func TryStartBroker(t TB, dir, addr string, d time.Duration, extra ...string) (*Broker, error) {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	b := &Broker{t: t, Dir: dir, args: extra}
	t.Cleanup(func() { b.Kill() })
	return b, b.tryStartWithin(addr, d)
}

func (b *Broker) start(addr string) {
	b.t.Helper()
	if err := b.tryStart(addr); err != nil {
		b.t.Fatalf("%v", err)
	}
}

// tryStart starts the process and waits until it logs "broker ready".
func (b *Broker) tryStart(addr string) error { return b.tryStartWithin(addr, 30*time.Second) }

func (b *Broker) tryStartWithin(addr string, d time.Duration) error {
	gossip, raft, peer := b.GossipAddr, b.RaftAddr, b.PeerAddr
	if gossip == "" {
		gossip, raft = "127.0.0.1:0", "127.0.0.1:0"
	}
	if peer == "" {
		peer = "127.0.0.1:0"
	}
	args := append([]string{"--data-dir", b.Dir, "--addr", addr, "--http-addr", "127.0.0.1:0", "--log-format", "json",
		"--gossip-addr", gossip, "--raft-addr", raft, "--kafka-addr", "127.0.0.1:0", "--peer-addr", peer}, b.args...)
	bin := filepath.Join(Bins(b.t), "broker")
	var cmd *exec.Cmd
	if len(b.wrap) > 0 {
		cmd = exec.Command(b.wrap[0], append(append(b.wrap[1:], bin), args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	var logFile *os.File
	if b.LogPath != "" {
		if logFile, err = os.OpenFile(b.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
			return err
		}
	}
	if err := cmd.Start(); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return err
	}
	b.cmd, b.logs, b.done = cmd, &SyncBuffer{}, make(chan error, 1)
	ready := make(chan [6]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			withNL := append(line, '\n')
			b.logs.Write(withNL)
			if logFile != nil {
				logFile.Write(withNL)
			}
			var m struct{ Msg, Addr, HTTP, Gossip, Raft, Kafka, Peer string }
			if json.Unmarshal(line, &m) == nil && m.Msg == "broker ready" {
				select {
				case ready <- [6]string{m.Addr, m.HTTP, m.Gossip, m.Raft, m.Kafka, m.Peer}:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
		err := cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		b.done <- err
	}()
	select {
	case a := <-ready:
		b.Addr, b.HTTPAddr, b.GossipAddr, b.RaftAddr, b.KafkaAddr, b.PeerAddr = a[0], a[1], a[2], a[3], a[4], a[5]
		return nil
	case err := <-b.done:
		b.cmd = nil
		return fmt.Errorf("broker exited during start (%v):\n%s", err, b.logs.String())
	case <-time.After(d):
		b.Kill()
		return fmt.Errorf("broker not ready after %v:\n%s", d, b.logs.String())
	}
}

// Kill sends SIGKILL and waits. Killing a stopped broker does nothing.
func (b *Broker) Kill() {
	if b.cmd == nil {
		return
	}
	b.cmd.Process.Signal(syscall.SIGKILL)
	<-b.done
	b.cmd = nil
}

// Term sends SIGTERM, waits up to 30 s, and returns the exit code.
func (b *Broker) Term() int {
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
func (b *Broker) Restart(extra ...string) {
	b.t.Helper()
	if len(extra) > 0 {
		b.args = extra
	}
	b.start(b.Addr)
}

// TryRestart is Restart returning the error instead of failing the TB.
func (b *Broker) TryRestart(extra ...string) error {
	if len(extra) > 0 {
		b.args = extra
	}
	return b.tryStart(b.Addr)
}

// Pause and Resume send SIGSTOP and SIGCONT.
func (b *Broker) Pause()  { b.cmd.Process.Signal(syscall.SIGSTOP) }
func (b *Broker) Resume() { b.cmd.Process.Signal(syscall.SIGCONT) }

// Exited reports whether the process ended by itself (it was started and
// not stopped through Kill or Term), and its error.
func (b *Broker) Exited() (bool, error) {
	if b.cmd == nil {
		return false, nil
	}
	select {
	case err := <-b.done:
		b.done <- err
		return true, err
	default:
		return false, nil
	}
}

// Forget marks an exited process as stopped, so Restart starts it again.
func (b *Broker) Forget() {
	if exited, _ := b.Exited(); exited {
		<-b.done
		b.cmd = nil
	}
}

// Running reports whether the process is up.
func (b *Broker) Running() bool { return b.cmd != nil }

// result is what a CLI run printed and how it exited.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// cli runs one of the binaries with stdin, bounded by 60 s.
func CLI(t TB, name, stdin string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(Bins(t), name), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
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
func MustCLI(t TB, name, stdin string, args ...string) Result {
	t.Helper()
	r := CLI(t, name, stdin, args...)
	if r.Code != 0 {
		t.Fatalf("%s %v: exit %d\nstdout: %s\nstderr: %s", name, args, r.Code, r.Stdout, r.Stderr)
	}
	return r
}
