package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/skeinlog/skein/client"
)

// parseOffset parses the -o argument.
func parseOffset(s string) (client.Offset, error) {
	switch strings.ToLower(s) {
	case "beginning", "earliest":
		return client.Beginning(), nil
	case "end", "latest":
		return client.End(), nil
	}
	if ts, ok := strings.CutPrefix(s, "@"); ok {
		if ms, err := strconv.ParseInt(ts, 10, 64); err == nil {
			return client.AtTime(time.UnixMilli(ms)), nil
		}
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return client.Offset{}, fmt.Errorf("offset %q: after @ comes an RFC 3339 time (2024-05-01T12:00:00Z) or unix milliseconds", s)
		}
		return client.AtTime(t), nil
	}
	if n, ok := strings.CutPrefix(s, "-"); ok {
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil || v < 0 {
			return client.Offset{}, fmt.Errorf("offset %q: -N is N records before the end, N a number", s)
		}
		return client.FromEnd(v), nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return client.Offset{}, fmt.Errorf("offset %q: want beginning, end, N, -N or @TIME", s)
	}
	return client.At(v), nil
}

// parsePartitions parses the -p argument: "0,2", ranges "0-3"; empty means
// all.
func parsePartitions(s string) ([]int32, error) {
	if s == "" {
		return nil, nil
	}
	var out []int32
	seen := map[int32]bool{}
	for _, f := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(f), "-")
		a, err := strconv.ParseInt(lo, 10, 32)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("partition %q: want a number, 0 or more", f)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseInt(hi, 10, 32); err != nil || b < a {
				return nil, fmt.Errorf("partition range %q: want LOW-HIGH", f)
			}
		}
		for p := int32(a); p <= int32(b); p++ {
			if seen[p] {
				return nil, fmt.Errorf("partition %d listed twice", p)
			}
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// formatOp is one piece of a compiled -f format: literal text, or a field.
type formatOp struct {
	lit   string
	field byte // 0 for literal text
}

// compileFormat parses a -f format.
func compileFormat(s string) ([]formatOp, error) {
	var ops []formatOp
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			ops = append(ops, formatOp{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%', '\\':
			i++
			if i == len(s) {
				return nil, fmt.Errorf("format %q ends in a lone %c", s, c)
			}
			d := s[i]
			if c == '\\' {
				e, ok := map[byte]byte{'n': '\n', 't': '\t', 'r': '\r', '0': 0, '\\': '\\'}[d]
				if !ok {
					return nil, fmt.Errorf(`format %q: unknown escape \%c (known: \n \t \r \0 \\)`, s, d)
				}
				lit.WriteByte(e)
				continue
			}
			if d == '%' {
				lit.WriteByte('%')
				continue
			}
			if !strings.ContainsRune("tpokvhT", rune(d)) {
				return nil, fmt.Errorf("format %q: unknown field %%%c (known: %%t %%p %%o %%k %%v %%h %%T %%%%)", s, d)
			}
			flush()
			ops = append(ops, formatOp{field: d})
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	// An empty format prints nothing per record: for counting and
	// benchmarks with --stats.
	return ops, nil
}

// render appends r formatted by ops to dst.
func render(dst []byte, ops []formatOp, r *client.Record) []byte {
	for _, op := range ops {
		switch op.field {
		case 0:
			dst = append(dst, op.lit...)
		case 't':
			dst = append(dst, r.Topic...)
		case 'p':
			dst = strconv.AppendInt(dst, int64(r.Partition), 10)
		case 'o':
			dst = strconv.AppendInt(dst, r.Offset, 10)
		case 'k':
			dst = append(dst, r.Key...)
		case 'v':
			dst = append(dst, r.Value...)
		case 'T':
			dst = strconv.AppendInt(dst, r.Timestamp.UnixMilli(), 10)
		case 'h':
			for i, h := range r.Headers {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = append(dst, h.Key...)
				dst = append(dst, '=')
				dst = append(dst, h.Value...)
			}
		}
	}
	return dst
}
