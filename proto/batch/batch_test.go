package batch

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func sampleRecords(n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{
			Timestamp: 1_700_000_000_000 + int64(i%7)*3,
			Key:       []byte(fmt.Sprintf("key-%d", i)),
			Value:     []byte(strings.Repeat(fmt.Sprintf("value %d ", i), 1+i%5)),
		}
		if i%3 == 0 {
			recs[i].Headers = []Header{{Key: "trace", Value: []byte("abc")}, {Key: "null", Value: nil}}
		}
		if i%4 == 1 {
			recs[i].Key = nil
		}
		if i%5 == 2 {
			recs[i].Value = []byte{}
		}
	}
	return recs
}

func build(t testing.TB, codec Compression, recs []Record) []byte {
	t.Helper()
	b := NewBuilder(codec)
	for i := range recs {
		b.Add(&recs[i])
	}
	out, err := b.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRoundTripAllCodecs(t *testing.T) {
	recs := sampleRecords(100)
	for _, codec := range []Compression{None, Gzip, Snappy, LZ4, Zstd} {
		t.Run(codec.String(), func(t *testing.T) {
			raw := build(t, codec, recs)
			info, err := Validate(raw, Limits{MaxRecordBytes: 1 << 20})
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if info.Records != len(recs) {
				t.Fatalf("records %d, want %d", info.Records, len(recs))
			}
			v := View(raw)
			if codec != None && v.Compression() != codec {
				t.Fatalf("compression %v, want %v (the data is compressible)", v.Compression(), codec)
			}
			v.SetBaseOffset(1000)
			v.SetLeaderEpoch(7)
			if !v.VerifyCRC() {
				t.Fatal("stamping base offset and epoch broke the CRC")
			}
			got, err := v.Records(nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(recs) {
				t.Fatalf("decoded %d records", len(got))
			}
			for i, r := range got {
				w := recs[i]
				if r.Offset != 1000+int64(i) || r.Timestamp != w.Timestamp ||
					!bytes.Equal(r.Key, w.Key) || (r.Key == nil) != (w.Key == nil) ||
					!bytes.Equal(r.Value, w.Value) || (r.Value == nil) != (w.Value == nil) ||
					len(r.Headers) != len(w.Headers) {
					t.Fatalf("record %d: got %+v want %+v", i, r, w)
				}
				for j := range r.Headers {
					if r.Headers[j].Key != w.Headers[j].Key || !bytes.Equal(r.Headers[j].Value, w.Headers[j].Value) {
						t.Fatalf("record %d header %d differs", i, j)
					}
				}
			}
			if v.LastOffset() != 1000+int64(len(recs)-1) || v.MaxTimestamp() != 1_700_000_000_018 {
				t.Fatalf("last offset %d max ts %d", v.LastOffset(), v.MaxTimestamp())
			}
		})
	}
}

func TestIncompressibleFallsBackToNone(t *testing.T) {
	r := Record{Value: bytes.Repeat([]byte{0x9c, 0x11, 0xf3, 0x42, 0x07}, 3)}
	raw := build(t, LZ4, []Record{r})
	if View(raw).Compression() != None {
		t.Fatalf("tiny incompressible batch stored as %v", View(raw).Compression())
	}
	if _, err := Validate(raw, Limits{}); err != nil {
		t.Fatal(err)
	}
}

func TestValidateRejects(t *testing.T) {
	good := build(t, None, sampleRecords(3))
	big := build(t, None, []Record{{Value: make([]byte, 2000)}})
	cases := []struct {
		name string
		buf  []byte
		lim  Limits
		want error
	}{
		{"empty", nil, Limits{}, ErrInvalid},
		{"short", good[:20], Limits{}, ErrShort},
		{"truncated", good[:len(good)-1], Limits{}, ErrShort},
		{"trailing", append(append([]byte{}, good...), 0), Limits{}, ErrInvalid},
		{"crc", flip(good, len(good)-1), Limits{}, ErrCRC},
		{"magic", set(good, offMagic, 9), Limits{}, ErrInvalid},
		{"too large", big, Limits{MaxRecordBytes: 1000}, ErrTooLarge},
		{"zero count", recrc(set4(good, offRecordCount, 0)), Limits{}, ErrInvalid},
		{"count mismatch", recrc(set4(set4(good, offRecordCount, 4), offLastOffsetDelta, 3)), Limits{}, ErrInvalid},
		{"delta mismatch", recrc(set4(good, offLastOffsetDelta, 5)), Limits{}, ErrInvalid},
		{"max ts", recrc(set8(good, offMaxTimestamp, 1)), Limits{}, ErrInvalid},
		{"attributes", recrc(set(good, offAttributes+1, 0x80)), Limits{}, ErrInvalid},
		{"codec", recrc(set(good, offAttributes, 6)), Limits{}, ErrInvalid},
		{"negative length", set4(good, offLength, 0xffffffff), Limits{}, ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Validate(c.buf, c.lim)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestDecompressionBombRefused(t *testing.T) {
	b := NewBuilder(Zstd)
	b.Add(&Record{Value: make([]byte, 1<<16)})
	raw, err := b.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Validate(raw, Limits{MaxUncompressedBytes: 1 << 10}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("want refusal, got %v", err)
	}
}

func TestNextSplitsConcatenatedBatches(t *testing.T) {
	a := build(t, None, sampleRecords(2))
	b := build(t, Zstd, sampleRecords(5))
	buf := append(append([]byte{}, a...), b...)
	var n int
	for rest := buf; ; {
		v, r, err := Next(rest)
		if err != nil {
			t.Fatal(err)
		}
		if v == nil {
			break
		}
		n++
		rest = r
	}
	if n != 2 {
		t.Fatalf("split %d batches", n)
	}
	if _, _, err := Next(buf[:len(buf)-3]); err != nil {
		t.Fatalf("first batch is whole: %v", err)
	}
	_, rest, _ := Next(buf[:len(buf)-3])
	if _, _, err := Next(rest); !errors.Is(err, ErrShort) {
		t.Fatalf("cut batch: %v", err)
	}
}

func TestSetProducerFields(t *testing.T) {
	raw := build(t, None, sampleRecords(4))
	SetProducerFields(View(raw), 42, 3, 100)
	info, err := Validate(raw, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if info.ProducerID != 42 || info.ProducerEpoch != 3 || info.BaseSequence != 100 || View(raw).LastSequence() != 103 {
		t.Fatalf("%+v", info)
	}
}

func copyOf(b []byte) []byte { return append([]byte{}, b...) }
func flip(b []byte, i int) []byte {
	c := copyOf(b)
	c[i] ^= 1
	return c
}
func set(b []byte, i int, v byte) []byte { c := copyOf(b); c[i] = v; return c }
func set4(b []byte, i int, v uint32) []byte {
	c := copyOf(b)
	c[i], c[i+1], c[i+2], c[i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	return c
}
func set8(b []byte, i int, v uint64) []byte {
	c := set4(b, i, uint32(v))
	return set4(c, i+4, uint32(v>>32))
}
func recrc(b []byte) []byte {
	c := copyOf(b)
	crc := CRC32C(c[crcStart:])
	return set4(c, offCRC, crc)
}

func FuzzValidate(f *testing.F) {
	recs := sampleRecords(5)
	for _, codec := range []Compression{None, Gzip, Snappy, LZ4, Zstd} {
		b := NewBuilder(codec)
		for i := range recs {
			b.Add(&recs[i])
		}
		raw, _ := b.Build(nil)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, buf []byte) {
		info, err := Validate(buf, Limits{MaxRecordBytes: 1 << 20, MaxUncompressedBytes: 1 << 20})
		if err != nil {
			return
		}
		// A batch that validates must decode to exactly its count.
		got, err := View(buf).Records(nil)
		if err != nil || len(got) != info.Records {
			t.Fatalf("validated batch decodes to %d records, err %v", len(got), err)
		}
	})
}

func BenchmarkBuild(b *testing.B) {
	for _, codec := range []Compression{None, LZ4, Zstd} {
		b.Run(codec.String(), func(b *testing.B) {
			rec := Record{Key: []byte("key"), Value: bytes.Repeat([]byte(`{"user":"a","n":1}`), 6)}
			bl := NewBuilder(codec)
			var buf []byte
			b.SetBytes(int64(100 * len(rec.Value)))
			for b.Loop() {
				bl.Reset()
				for range 100 {
					bl.Add(&rec)
				}
				buf, _ = bl.Build(buf[:0])
			}
		})
	}
}

func BenchmarkValidate(b *testing.B) {
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i].Value = make([]byte, 100)
	}
	raw := build(b, None, recs)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := Validate(raw, Limits{MaxRecordBytes: 1 << 20}); err != nil {
			b.Fatal(err)
		}
	}
}
