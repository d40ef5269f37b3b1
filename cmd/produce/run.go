package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/cli"
)

// run is the whole command, with its streams passed in; it returns the exit
// status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "produce: "+format+"\n", a...) }

	c, err := cli.Connect(cfg.brokers, &cfg.user, &cfg.tls, client.Logger(cli.Logger(stderr)))
	if err != nil {
		logf("%v", err)
		return exitUsage
	}
	defer c.Close()

	topic, code := learnTopic(ctx, c, cfg, logf)
	if topic == nil {
		return code
	}
	nparts := len(topic.Partitions)
	maxBytes := cfg.maxRecordBytes
	if maxBytes == 0 {
		maxBytes = int(topic.Config.MaxRecordBytes)
		if maxBytes <= 0 {
			maxBytes = 1 << 20
		}
	}

	p, err := c.NewProducer(
		client.Linger(cfg.linger),
		client.BatchMaxBytes(cfg.batchBytes),
		client.MaxBufferedBytes(max(64<<20, 2*int64(cfg.batchBytes))),
		client.RequiredAcks(cfg.acks),
		client.BatchCompression(cfg.compression),
		client.DeliveryTimeout(cfg.timeout),
		client.RecordPartitioner(client.ExplicitPartitioner(client.DefaultPartitioner())),
		client.Idempotent(cfg.idempotent),
	)
	if err != nil {
		logf("%v", err)
		return exitUsage
	}
	defer p.Close()

	st := newStats(cfg.topic)
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	var outMu sync.Mutex
	if cfg.report {
		st.report, st.reportMu = out, &outMu
	}
	rd := &reader{cfg: cfg, maxBytes: maxBytes}

	if cfg.expectOffset >= 0 {
		return conditional(ctx, cfg, p, rd, nparts, stdin, out, stderr, st)
	}
	if cfg.expectKey {
		return conditionalKey(ctx, cfg, p, rd, stdin, out, stderr, st)
	}

	return produceAll(ctx, cfg, p, rd, stdin, out, &outMu, stderr, st)
}

// learnTopic gets the topic's metadata first, so that a typo or a dead
// broker is one clear message rather than one failure per record. On
// failure it has said why, and returns nil and the exit status.
func learnTopic(ctx context.Context, c *client.Client, cfg *config, logf func(string, ...any)) (*client.TopicInfo, int) {
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	md, err := c.Metadata(mctx, cfg.topic)
	cancel()
	var topic *client.TopicInfo
	for i := range md.Topics {
		if md.Topics[i].Name == cfg.topic {
			topic = &md.Topics[i]
		}
	}
	switch {
	case errors.Is(err, client.ErrUnknownTopic) || (err == nil && topic == nil):
		logf("topic %q does not exist (create it with: broker topic create %s)", cfg.topic, cfg.topic)
		return nil, exitFailed
	case ctx.Err() != nil:
		return nil, exitInterrupted
	case err != nil:
		logf("cannot get the metadata of %q from %s: %v", cfg.topic, cfg.brokers, err)
		return nil, exitFailed
	}
	if nparts := len(topic.Partitions); cfg.partition >= nparts {
		logf("partition %d does not exist: topic %q has %d partitions (0 to %d)", cfg.partition, cfg.topic, nparts, nparts-1)
		return nil, exitFailed
	}
	return topic, exitOK
}

// produceAll produces the whole input (or the generated records), waits
// for every answer and prints the summary; it returns the exit status.
func produceAll(ctx context.Context, cfg *config, p *client.Producer, rd *reader, stdin io.Reader, out *bufio.Writer, outMu *sync.Mutex, stderr io.Writer, st *stats) int {
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "produce: "+format+"\n", a...) }
	stopProgress := progress(stderr, st)
	interrupted, inputErr := feed(ctx, cfg, p, rd, stdin, st)
	if err := p.Flush(context.Background()); err != nil {
		logf("flush: %v", err)
	}
	st.finish()
	stopProgress()
	if inputErr != nil {
		logf("%v", inputErr)
	}
	sum := st.summary()
	sum.Interrupted = interrupted
	sum.Idempotent = cfg.idempotent
	sum.ProducerID, sum.ProducerEpoch = p.ProducerID()
	outMu.Lock()
	out.Flush()
	st.print(cfg.stats == "json", out, stderr, sum)
	out.Flush()
	outMu.Unlock()
	switch {
	case interrupted:
		return exitInterrupted
	case inputErr != nil || sum.Failed > 0:
		return exitFailed
	}
	return exitOK
}

// testHookProduced, when set by a test, is called after each record is
// handed to the producer.
var testHookProduced func()

// feed produces every input record. It reports whether ctx ended it and
// the error that stopped the input early.
func feed(ctx context.Context, cfg *config, p *client.Producer, rd *reader, stdin io.Reader, st *stats) (bool, error) {
	produce := func(r *client.Record, what string) {
		start := time.Now()
		st.sent.Add(1)
		p.Produce(ctx, r, func(r *client.Record, err error) { st.done(r, start, what, err) })
		if testHookProduced != nil {
			testHookProduced()
		}
	}
	if cfg.count > 0 {
		g := newGenerator(cfg)
		var pace time.Time
		for i := int64(0); i < cfg.count; i++ {
			if ctx.Err() != nil {
				return true, nil
			}
			if cfg.rate > 0 {
				// Sleep only when more than a millisecond ahead of the
				// rate: never a busy loop, few timers.
				pace = st.start.Add(time.Duration(float64(i) / cfg.rate * float64(time.Second)))
				if d := time.Until(pace); d > time.Millisecond {
					t := time.NewTimer(d)
					select {
					case <-ctx.Done():
						t.Stop()
						return true, nil
					case <-t.C:
					}
				}
			}
			produce(g.record(i), fmt.Sprintf("record %d", i))
		}
		return false, nil
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	items := make(chan item, 256)
	go rd.read(rctx, stdin, items)
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case it, ok := <-items:
			if !ok {
				return ctx.Err() != nil, nil
			}
			if it.err != nil {
				return false, it.err
			}
			produce(it.rec, fmt.Sprintf("line %d", it.line))
		}
	}
}

// conditional sends the whole input as one batch with an expected offset.
func conditional(ctx context.Context, cfg *config, p *client.Producer, rd *reader, nparts int, stdin io.Reader, out *bufio.Writer, stderr io.Writer, st *stats) int {
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "produce: "+format+"\n", a...) }
	part := cfg.partition
	if part < 0 {
		if nparts != 1 {
			logf("--expect-offset appends to one partition: add -p (topic %q has %d partitions)", cfg.topic, nparts)
			return exitUsage
		}
		part = 0
	}
	recs, code := readBatch(ctx, rd, stdin, logf, func(it item) error {
		if it.rec.Partition >= 0 && int(it.rec.Partition) != part {
			return fmt.Errorf("line %d asks for partition %d, but --expect-offset appends to partition %d", it.line, it.rec.Partition, part)
		}
		it.rec.Partition = int32(part)
		return nil
	})
	if recs == nil {
		return code
	}
	st.start = time.Now()
	st.sent.Add(int64(len(recs)))
	start := time.Now()
	base, err := p.ProduceIf(ctx, cfg.topic, int32(part), cfg.expectOffset, recs...)
	st.finish()
	sum := st.summary()
	sum.Idempotent = cfg.idempotent
	sum.ProducerID, sum.ProducerEpoch = p.ProducerID()
	exp := cfg.expectOffset
	sum.ExpectedOffset = &exp
	var ce *client.Error
	switch {
	case errors.Is(err, client.ErrOffsetMismatch) && errors.As(err, &ce):
		next := ce.NextOffset
		sum.NextOffset = &next
		sum.Failed = int64(len(recs))
		logf("offset mismatch: the next offset of %s/%d is %d, not %d; nothing was appended", cfg.topic, part, next, exp)
		st.print(cfg.stats == "json", out, stderr, sum)
		return exitMismatch
	case err != nil:
		logf("conditional append of %d records to %s/%d failed: %v", len(recs), cfg.topic, part, err)
		return exitFailed
	}
	for i, r := range recs {
		r.Offset = base + int64(i)
		st.done(r, start, fmt.Sprintf("line %d", i+1), nil)
	}
	st.finish()
	next := base + int64(len(recs))
	sum = st.summary()
	sum.Idempotent = cfg.idempotent
	sum.ProducerID, sum.ProducerEpoch = p.ProducerID()
	sum.ExpectedOffset, sum.NextOffset = &exp, &next
	out.Flush()
	st.print(cfg.stats == "json", out, stderr, sum)
	return exitOK
}

// progress prints a live progress line on stderr when it is a terminal, and
// returns the function that stops and clears it.
func progress(stderr io.Writer, st *stats) func() {
	f, ok := stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				fmt.Fprint(f, "\r\033[K")
				return
			case <-t.C:
				st.mu.Lock()
				acked, failed := st.acked, st.failed
				st.mu.Unlock()
				secs := time.Since(st.start).Seconds()
				fmt.Fprintf(f, "\r\033[K%d sent, %d acknowledged, %d failed, %.0f records/s", st.sent.Load(), acked, failed, float64(acked)/secs)
			}
		}
	}()
	return func() {
		close(stop)
		<-done
	}
}
