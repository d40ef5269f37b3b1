package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/skeinlog/skein/client"
)

// brokerProc is the broker process under test.
type brokerProc struct {
	cmd      *exec.Cmd
	addr     string
	httpAddr string
	logPath  string
	done     chan error
}

func startBroker(bin, dir string, inflight int64, pprof bool) (*brokerProc, error) {
	b := &brokerProc{addr: "127.0.0.1:19600", httpAddr: "127.0.0.1:19603", logPath: dir + ".log", done: make(chan error, 1)}
	b.cmd = exec.Command(bin, "--node-id", "1", "--data-dir", dir, "--addr", b.addr,
		"--gossip-addr", "127.0.0.1:19601", "--raft-addr", "127.0.0.1:19602", "--http-addr", b.httpAddr,
		"--peer-addr", "127.0.0.1:19604", "--kafka-addr", "", "--log-level", "warn",
		"--max-inflight-bytes", strconv.FormatInt(inflight, 10))
	if pprof {
		b.cmd.Args = append(b.cmd.Args, "--pprof")
	}
	logf, err := os.Create(b.logPath)
	if err != nil {
		return nil, err
	}
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	if err := b.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { b.done <- b.cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + b.httpAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return b, nil
			}
		}
		select {
		case err := <-b.done:
			return nil, fmt.Errorf("broker exited at start (%v); log in %s", err, b.logPath)
		case <-time.After(200 * time.Millisecond):
		}
	}
	b.stop()
	return nil, errors.New("broker not ready within 60 s")
}

func (b *brokerProc) stop() {
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		b.cmd.Process.Kill()
		<-b.done
	}
}

// rss and fds read the broker's resident memory (bytes) and open file
// handles from /proc.
func (b *brokerProc) rss() int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}

func (b *brokerProc) fds() int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", b.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// saveHeap writes the broker's heap profile (/debug/pprof/heap, which
// needs --pprof) to path; a failure is only reported.
func (e *env) saveHeap(path string) {
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + e.b.httpAddr + "/debug/pprof/heap")
	if err == nil && resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		err = fmt.Errorf("status %s", resp.Status)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: heap profile: %v\n", err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(path, data, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: heap profile: %v\n", err)
	}
}

// env is the soak's clients and counters.
type env struct {
	b     *brokerProc
	admin *client.Client
	wg    sync.WaitGroup // normal load goroutines

	phase    atomic.Pointer[string]
	acked    atomic.Int64 // normal records acknowledged
	consumed atomic.Int64 // normal records consumed
	failed   atomic.Int64 // normal records that failed
	abuse    atomic.Int64 // abusive requests made

	errMu  sync.Mutex
	errors map[string]int64 // normal producer errors by message
}

// noteError counts a normal-load producer error by its message (cut at
// 200 bytes), so the summary can say what the producer was told.
func (e *env) noteError(err error) {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	e.errMu.Lock()
	defer e.errMu.Unlock()
	if e.errors == nil {
		e.errors = map[string]int64{}
	}
	if _, ok := e.errors[msg]; !ok && len(e.errors) < 20 {
		fmt.Fprintf(os.Stderr, "soak: normal producer error (phase %s): %s\n", *e.phase.Load(), msg)
	}
	e.errors[msg]++
}

const normalTopic = "normal"

func newEnv(ctx context.Context, b *brokerProc) (*env, error) {
	admin, err := client.New(client.Brokers(b.addr), client.ClientID("soak-admin"))
	if err != nil {
		return nil, err
	}
	e := &env{b: b, admin: admin}
	e.setPhase("calm")
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, t := range []string{normalTopic, "probe"} {
		if _, err := admin.CreateTopic(cctx, t, client.TopicConfig{Partitions: 3, RetentionBytes: 256 << 20}); err != nil {
			admin.Close()
			return nil, fmt.Errorf("create %s: %w", t, err)
		}
	}
	return e, nil
}

// producerErrors is a copy of the normal producer's errors by message.
func (e *env) producerErrors() map[string]int64 {
	e.errMu.Lock()
	defer e.errMu.Unlock()
	return maps.Clone(e.errors)
}

func (e *env) close() { e.admin.Close() }

func (e *env) setPhase(p string) { e.phase.Store(&p) }

// startNormalLoad runs a producer at about 1 MB/s (1 KiB records) and a
// consumer following the topic until ctx ends.
func (e *env) startNormalLoad(ctx context.Context) {
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		p, err := e.admin.NewProducer(client.Linger(10 * time.Millisecond))
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak: normal producer:", err)
			return
		}
		defer p.Close()
		val := make([]byte, 1024)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			<-tick.C
			for range 10 { // 1,000 records/s
				p.Produce(ctx, &client.Record{Topic: normalTopic, Value: val}, func(_ *client.Record, err error) {
					if err != nil {
						e.failed.Add(1)
						e.noteError(err)
						return
					}
					e.acked.Add(1)
				})
			}
		}
	}()
	go func() {
		defer e.wg.Done()
		k, err := e.admin.NewConsumer()
		if err != nil {
			fmt.Fprintln(os.Stderr, "soak: normal consumer:", err)
			return
		}
		defer k.Close()
		if err := k.Assign(ctx, normalTopic, []int32{0, 1, 2}, client.Beginning()); err != nil {
			fmt.Fprintln(os.Stderr, "soak: normal consumer:", err)
			return
		}
		for {
			if _, err := k.Next(ctx); err != nil {
				return
			}
			e.consumed.Add(1)
		}
	}()
}
