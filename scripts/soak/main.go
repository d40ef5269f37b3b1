// Command soak runs one broker process under a normal load (a producer and
// a consumer) while abusive clients take turns against it: many unread
// fetch streams, compression bombs, topic floods, slow consumers and a
// producer at ten times its quota. Every second it samples the broker's
// RSS, open file handles, /readyz and the normal load's acknowledged and
// failed records, and writes a CSV, a PNG plot and a summary. It fails
// when RSS passed the memory budget, or when in any 10-second window no
// normal record was acknowledged or more than 1% of them failed.
//
//	go run ./scripts/soak -duration 30m -out soak-out     (make soak DURATION=30m)
//
// Everything runs on 127.0.0.1 (ports 19600-19609). Each abusive pattern is
// bounded in count and runs for one phase (-phase, default a tenth of the
// run, at most 1 minute), then stops and releases what it held.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

type options struct {
	duration time.Duration
	phase    time.Duration
	out      string
	inflight int64 // --max-inflight-bytes of the broker
	pprof    bool  // start the broker with --pprof and save heap profiles
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 30*time.Minute, "how long to run")
	flag.DurationVar(&o.phase, "phase", 0, "how long each abusive pattern runs (default duration/10, at most 1m)")
	flag.StringVar(&o.out, "out", "soak-out", "directory for soak.csv, soak.png and summary.txt")
	flag.Int64Var(&o.inflight, "max-inflight-bytes", 64<<20, "the broker's in-flight byte budget")
	flag.BoolVar(&o.pprof, "pprof", false, "start the broker with --pprof and save a heap profile near the end of each phase (heap-N-PHASE.pprof in -out)")
	flag.Parse()
	if o.phase <= 0 {
		o.phase = min(time.Minute, o.duration/10)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "skein-soak")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	build := exec.Command("go", "build", "-o", tmp+"/", "./cmd/broker")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	b, err := startBroker(filepath.Join(tmp, "broker"), filepath.Join(tmp, "data"), o.inflight, o.pprof)
	if err != nil {
		return err
	}
	defer b.stop()
	fmt.Fprintf(os.Stderr, "soak: broker pid %d on %s, %v in phases of %v, output in %s\n", b.cmd.Process.Pid, b.addr, o.duration, o.phase, o.out)
	env, err := newEnv(ctx, b)
	if err != nil {
		return err
	}
	defer env.close()
	samples := soak(ctx, env, o)
	return report(o, b, samples, env.producerErrors())
}

// soak runs the normal load, the probe, the sampler and the abusive
// phases for o.duration (or until ctx ends) and returns the samples.
func soak(ctx context.Context, env *env, o options) []sample {
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	env.startNormalLoad(ctx)
	samples := make(chan []sample, 1)
	go func() { samples <- env.sampleEverySecond(ctx) }()
	patterns := abusivePatterns()
	for i := 0; ctx.Err() == nil; i++ {
		p := patterns[i%len(patterns)]
		env.setPhase(p.name)
		fmt.Fprintf(os.Stderr, "soak: %s for %v\n", p.name, o.phase)
		pctx, pcancel := context.WithTimeout(ctx, o.phase)
		heap := time.AfterFunc(o.phase*9/10, func() {
			if o.pprof {
				env.saveHeap(filepath.Join(o.out, fmt.Sprintf("heap-%d-%s.pprof", i, p.name)))
			}
		})
		if err := p.run(pctx, env); err != nil && pctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "soak: %s: %v\n", p.name, err)
		}
		pcancel()
		heap.Stop()
		// A calm spell between patterns: the broker should give back
		// what the pattern took.
		env.setPhase("calm")
		select {
		case <-ctx.Done():
		case <-time.After(min(o.phase/3, 10*time.Second)):
		}
	}
	env.wg.Wait()
	return <-samples
}
