package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/skeinlog/skein/client"
)

// item is one input record, or the error that ends the input.
type item struct {
	rec  *client.Record
	line int64 // 1-based line (record) number in the input
	err  error
}

// splitOn splits input at delim; a last record without a delimiter counts.
func splitOn(delim []byte) bufio.SplitFunc {
	return func(data []byte, atEOF bool) (int, []byte, error) {
		var i int
		if len(delim) == 1 {
			i = bytes.IndexByte(data, delim[0])
		} else {
			i = bytes.Index(data, delim)
		}
		if i >= 0 {
			return i + len(delim), data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	}
}

// reader turns input lines into records.
type reader struct {
	cfg      *config
	maxBytes int // the longest record accepted (key + value + headers)
}

// lineLimit is the longest line the scanner accepts: a record's bytes, or
// for JSON room for base64 and quoting.
func (rd *reader) lineLimit() int {
	if rd.cfg.json {
		return 2*rd.maxBytes + 64<<10
	}
	return rd.maxBytes
}

// read sends the input's records to out, then closes it. It stops at the
// first bad line (sending its error) or when ctx is done.
func (rd *reader) read(ctx context.Context, in io.Reader, out chan<- item) {
	defer close(out)
	send := func(it item) bool {
		select {
		case out <- it:
			return true
		case <-ctx.Done():
			return false
		}
	}
	limit := rd.lineLimit()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, min(64<<10, limit+len(rd.cfg.delim))), limit+len(rd.cfg.delim))
	sc.Split(splitOn(rd.cfg.delim))
	var line int64
	for sc.Scan() {
		line++
		rec, err := rd.record(sc.Bytes())
		if err != nil {
			send(item{line: line, err: fmt.Errorf("line %d: %w", line, err)})
			return
		}
		if !send(item{rec: rec, line: line}) {
			return
		}
	}
	if err := sc.Err(); err != nil {
		if err == bufio.ErrTooLong {
			err = fmt.Errorf("line %d is longer than %d bytes, the largest record accepted (see --max-record-bytes)", line+1, limit)
		} else {
			err = fmt.Errorf("reading input after line %d: %w", line, err)
		}
		send(item{line: line + 1, err: err})
	}
}

// record builds the record of one input line.
func (rd *reader) record(line []byte) (*client.Record, error) {
	cfg := rd.cfg
	r := &client.Record{Topic: cfg.topic, Partition: int32(cfg.partition)}
	if cfg.json {
		if err := json.Unmarshal(line, r); err != nil {
			return nil, err
		}
		r.Topic, r.Offset = cfg.topic, -1
		if r.Partition < 0 {
			r.Partition = int32(cfg.partition)
		}
		r.Headers = append(r.Headers, cfg.headers...)
	} else {
		v := bytes.Clone(line)
		if v == nil {
			v = []byte{}
		}
		switch {
		case cfg.keySep != nil:
			if i := bytes.Index(v, cfg.keySep); i >= 0 {
				r.Key, v = v[:i:i], v[i+len(cfg.keySep):]
			}
		case cfg.key != nil:
			r.Key = cfg.key
		}
		r.Value = v
		r.Headers = cfg.headers
	}
	if n := recordSize(r); n > rd.maxBytes {
		return nil, fmt.Errorf("record of %d bytes (key+value+headers) is over the %d-byte limit (see --max-record-bytes)", n, rd.maxBytes)
	}
	return r, nil
}

func recordSize(r *client.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// generator makes bench-mode records.
type generator struct {
	cfg  *config
	pool []byte // random printable bytes that values are cut from
	rng  *rand.Rand
}

func newGenerator(cfg *config) *generator {
	g := &generator{cfg: cfg, rng: rand.New(rand.NewPCG(1, 2))}
	if cfg.payload == "random" {
		const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		g.pool = make([]byte, max(1<<20, 2*cfg.size))
		for i := range g.pool {
			g.pool[i] = letters[g.rng.IntN(len(letters))]
		}
	}
	return g
}

var events = []string{"view", "click", "add_to_cart", "purchase", "search", "logout"}

// record returns generated record i.
func (g *generator) record(i int64) *client.Record {
	cfg := g.cfg
	r := &client.Record{Topic: cfg.topic, Partition: int32(cfg.partition), Key: cfg.key, Headers: cfg.headers}
	if cfg.payload == "random" {
		off := g.rng.IntN(len(g.pool) - cfg.size + 1)
		r.Value = g.pool[off : off+cfg.size : off+cfg.size]
		return r
	}
	// A compressible JSON-like event, padded or cut to the size.
	var b strings.Builder
	b.Grow(cfg.size + 128)
	b.WriteString(`{"id":`)
	b.WriteString(strconv.FormatInt(i, 10))
	b.WriteString(`,"user":"user-`)
	b.WriteString(strconv.Itoa(g.rng.IntN(10000)))
	b.WriteString(`","event":"`)
	b.WriteString(events[g.rng.IntN(len(events))])
	b.WriteString(`","page":"/products/`)
	b.WriteString(strconv.Itoa(g.rng.IntN(500)))
	b.WriteString(`","pad":"`)
	for b.Len() < cfg.size-2 {
		b.WriteString("lorem ipsum dolor sit amet ")
	}
	v := []byte(b.String())
	if len(v) > cfg.size-2 {
		v = v[:max(cfg.size-2, 0)]
	}
	if cfg.size >= 2 {
		v = append(v, '"', '}')
	}
	r.Value = v[:cfg.size]
	return r
}
