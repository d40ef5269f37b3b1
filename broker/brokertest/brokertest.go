// Package brokertest runs real brokers inside a test process: on port 0,
// with data under t.TempDir() and logs through t.Log. Stop and Restart
// exercise shutdown and recovery on the same data directory.
package brokertest

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker"
)

// Broker is a running broker owned by a test.
type Broker struct {
	*broker.Broker
	// Dir is the data directory; it survives Stop for Restart.
	Dir string

	t      testing.TB
	cfg    broker.Config
	cancel context.CancelFunc
	done   chan error
	logw   *testWriter
}

// Option adjusts the broker's configuration.
type Option func(*broker.Config)

// WithConfig lets a test change any field of the configuration.
func WithConfig(f func(*broker.Config)) Option { return f }

// WithDataDir runs the broker on an existing data directory.
func WithDataDir(dir string) Option { return func(c *broker.Config) { c.DataDir = dir } }

// WithEngine runs the broker on a storage engine (broker.EngineWAL or
// broker.EngineJournal).
func WithEngine(engine string) Option { return func(c *broker.Config) { c.StorageEngine = engine } }

// Engines are the storage engines, for tests that run on each.
var Engines = []string{broker.EngineWAL, broker.EngineJournal}

// ForEachEngine runs fn as a subtest per storage engine, with the option
// that selects it.
func ForEachEngine(t *testing.T, fn func(t *testing.T, engine Option)) {
	for _, e := range Engines {
		t.Run(e, func(t *testing.T) { fn(t, WithEngine(e)) })
	}
}

// Start starts a broker and stops it when the test ends. It fails the test
// if the broker cannot start or does not become ready in 30 s.
func Start(t testing.TB, opts ...Option) *Broker {
	t.Helper()
	cfg := broker.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Addr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.GossipAddr, cfg.RaftAddr, cfg.PeerAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.KafkaAddr = "127.0.0.1:0"
	cfg.LoopbackTimings = true
	cfg.ShutdownTimeout = 5 * time.Second
	for _, o := range opts {
		o(&cfg)
	}
	b := &Broker{t: t, cfg: cfg, Dir: cfg.DataDir}
	// Registered first: a broker that started but failed to become ready
	// is stopped too, and logs nothing after the test ends.
	t.Cleanup(func() { b.Stop() })
	b.start()
	return b
}

func (b *Broker) start() {
	b.t.Helper()
	b.logw = &testWriter{t: b.t}
	cfg := b.cfg
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(b.logw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	br, err := broker.New(cfg)
	if err != nil {
		b.t.Fatalf("brokertest: start broker: %v", err)
	}
	b.Broker = br
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.done = make(chan error, 1)
	go func() { b.done <- br.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for !br.Ready() {
		select {
		case err := <-b.done:
			b.done <- err
			b.t.Fatalf("brokertest: broker exited during start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("brokertest: broker not ready after 30s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	// Keep the bound ports across restarts.
	b.cfg.Addr = br.Addr()
	b.cfg.GossipAddr, b.cfg.RaftAddr, b.cfg.PeerAddr = br.GossipAddr(), br.RaftAddr(), br.PeerAddr()
	if br.KafkaAddr() != "" {
		b.cfg.KafkaAddr = br.KafkaAddr()
	}
}

// Stop shuts the broker down gracefully and waits; it returns Run's error.
// Stopping a stopped broker returns nil.
func (b *Broker) Stop() error {
	if b.cancel == nil {
		return nil
	}
	b.cancel()
	b.cancel = nil
	err := <-b.done
	b.logw.stop()
	return err
}

// Restart stops the broker if it runs and starts it again on the same data
// directory and address.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.start()
}

// testWriter sends log lines to t.Log until stopped (logging after a test
// ends panics).
type testWriter struct {
	t       testing.TB
	mu      sync.Mutex
	stopped bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}
