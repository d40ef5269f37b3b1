package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/skeinlog/skein/client"
)

// readBatch reads the whole input of a conditional append (nothing is sent
// unless all of it is valid), checking each record with check. On failure
// it has said why and returns nil and the exit status.
func readBatch(ctx context.Context, rd *reader, stdin io.Reader, logf func(string, ...any), check func(item) error) ([]*client.Record, int) {
	items := make(chan item, 256)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go rd.read(rctx, stdin, items)
	var recs []*client.Record
	for it := range items {
		err := it.err
		if err == nil {
			err = check(it)
		}
		if err != nil {
			logf("%v; nothing was sent", err)
			return nil, exitFailed
		}
		recs = append(recs, it.rec)
	}
	if ctx.Err() != nil {
		logf("interrupted; nothing was sent")
		return nil, exitInterrupted
	}
	if len(recs) == 0 {
		logf("no input records; nothing was sent")
		return nil, exitFailed
	}
	return recs, exitOK
}

// parseKeyOffset parses --expect-key-offset: an offset, or -1 / none for a
// key without records.
func parseKeyOffset(s string) (int64, error) {
	if s == "none" {
		return client.NoRecord, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < client.NoRecord {
		return 0, fmt.Errorf("--expect-key-offset %q: want the offset of the key's last record, or -1 (none) for a key without records", s)
	}
	return n, nil
}

// conditionalKey sends the whole input as one batch, only if the key of
// its records (all the same) has its last record at --expect-key-offset.
func conditionalKey(ctx context.Context, cfg *config, p *client.Producer, rd *reader, stdin io.Reader, out *bufio.Writer, stderr io.Writer, st *stats) int {
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "produce: "+format+"\n", a...) }
	var key []byte
	recs, code := readBatch(ctx, rd, stdin, logf, func(it item) error {
		switch {
		case len(it.rec.Key) == 0:
			return fmt.Errorf("line %d has no key: --expect-key-offset needs records with a key (-K or -k)", it.line)
		case key == nil:
			key = it.rec.Key
		case !bytes.Equal(key, it.rec.Key):
			return fmt.Errorf("line %d has key %q, not %q: --expect-key-offset appends records of one key", it.line, it.rec.Key, key)
		}
		return nil
	})
	if recs == nil {
		return code
	}
	st.start = time.Now()
	st.sent.Add(int64(len(recs)))
	start := time.Now()
	exp := cfg.expectKeyOffset
	base, err := p.ProduceIfKeys(ctx, cfg.topic, []client.KeyExpectation{{Key: key, Offset: exp}}, recs...)
	st.finish()
	var ce *client.Error
	switch {
	case errors.Is(err, client.ErrKeyOffsetMismatch) && errors.As(err, &ce) && len(ce.KeyOffsets) > 0:
		sum := st.summary()
		sum.Failed = int64(len(recs))
		actual := ce.KeyOffsets[0].Offset
		sum.KeyOffset = &actual
		if actual < 0 {
			logf("key offset mismatch: key %q has no record in %s, not one at %d; nothing was appended", key, cfg.topic, exp)
		} else {
			logf("key offset mismatch: the last record of key %q in %s is at offset %d, not %s; nothing was appended", key, cfg.topic, actual, keyOffsetWords(exp))
		}
		st.print(cfg.stats == "json", out, stderr, sum)
		return exitMismatch
	case err != nil:
		logf("conditional append of %d records of key %q to %s failed: %v", len(recs), key, cfg.topic, err)
		return exitFailed
	}
	for i, r := range recs {
		r.Offset = base + int64(i)
		st.done(r, start, fmt.Sprintf("line %d", i+1), nil)
	}
	st.finish()
	last := base + int64(len(recs)) - 1
	sum := st.summary()
	sum.KeyOffset = &last
	out.Flush()
	st.print(cfg.stats == "json", out, stderr, sum)
	return exitOK
}

func keyOffsetWords(off int64) string {
	if off < 0 {
		return "none"
	}
	return strconv.FormatInt(off, 10)
}
