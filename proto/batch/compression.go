package batch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Compression is a batch codec, numbered as in Kafka.
type Compression uint8

const (
	None   Compression = 0
	Gzip   Compression = 1
	Snappy Compression = 2
	LZ4    Compression = 3
	Zstd   Compression = 4
)

func (c Compression) String() string {
	switch c {
	case None:
		return "none"
	case Gzip:
		return "gzip"
	case Snappy:
		return "snappy"
	case LZ4:
		return "lz4"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// ParseCompression maps a codec name (none, gzip, snappy, lz4, zstd) to its
// value.
func ParseCompression(s string) (Compression, error) {
	for c := None; c <= Zstd; c++ {
		if c.String() == s {
			return c, nil
		}
	}
	return None, fmt.Errorf("unknown compression %q (want none, gzip, snappy, lz4 or zstd)", s)
}

var (
	zstdEncOnce sync.Once
	zstdEnc     *zstd.Encoder
	zstdDecOnce sync.Once
	zstdDec     *zstd.Decoder
	gzipWriters = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression); return w }}
)

func zstdEncoder() *zstd.Encoder {
	zstdEncOnce.Do(func() {
		zstdEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	})
	return zstdEnc
}

func zstdDecoder() *zstd.Decoder {
	zstdDecOnce.Do(func() {
		// DecodeAll stops at the capacity of its destination, which
		// decompress sizes to the declared length: a frame that inflates
		// past what its batch declares fails there.
		zstdDec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(MaxBatchBytes),
			zstd.WithDecodeAllCapLimit(true))
	})
	return zstdDec
}

// compress appends the records section for codec to dst: raw for None, else
// uvarint(uncompressed length) followed by the compressed bytes.
func compress(codec Compression, dst, recs []byte) ([]byte, error) {
	if codec == None {
		return append(dst, recs...), nil
	}
	dst = binary.AppendUvarint(dst, uint64(len(recs)))
	switch codec {
	case Gzip:
		w := gzipWriters.Get().(*gzip.Writer)
		defer gzipWriters.Put(w)
		buf := bytes.NewBuffer(dst)
		w.Reset(buf)
		if _, err := w.Write(recs); err != nil {
			return dst, err
		}
		if err := w.Close(); err != nil {
			return dst, err
		}
		return buf.Bytes(), nil
	case Snappy:
		return append(dst, s2.EncodeSnappy(nil, recs)...), nil
	case LZ4:
		bound := lz4.CompressBlockBound(len(recs))
		start := len(dst)
		dst = append(dst, make([]byte, bound)...)
		var c lz4.Compressor
		n, err := c.CompressBlock(recs, dst[start:])
		if err != nil {
			return dst[:start], err
		}
		if n == 0 { // incompressible: lz4 signals with 0; Build stores it raw
			return append(dst[:start], recs...), nil
		}
		return dst[:start+n], nil
	case Zstd:
		return zstdEncoder().EncodeAll(recs, dst), nil
	}
	return dst, fmt.Errorf("unknown compression codec %d", codec)
}

// decompress returns the uncompressed records section, refusing to expand it
// beyond max bytes.
func decompress(codec Compression, sec []byte, max int) ([]byte, error) {
	if codec == None {
		return sec, nil
	}
	n, k := binary.Uvarint(sec)
	if k <= 0 || n > uint64(max) {
		return nil, fmt.Errorf("%w: uncompressed length missing or over %d bytes", ErrInvalid, max)
	}
	body := sec[k:]
	out := make([]byte, 0, n)
	var err error
	switch codec {
	case Gzip:
		var r *gzip.Reader
		r, err = gzip.NewReader(bytes.NewReader(body))
		if err == nil {
			out, err = readExactly(r, out, int(n))
		}
	case Snappy:
		var dl int
		dl, err = s2.DecodedLen(body)
		if err == nil && uint64(dl) != n {
			err = fmt.Errorf("decoded length %d", dl)
		}
		if err == nil {
			out, err = s2.Decode(out[:n], body)
		}
	case LZ4:
		out = out[:n]
		var m int
		m, err = lz4.UncompressBlock(body, out)
		out = out[:max0(m)]
	case Zstd:
		out, err = zstdDecoder().DecodeAll(body, out)
	default:
		return nil, fmt.Errorf("%w: unknown compression codec %d", ErrInvalid, codec)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s decompression failed (the batch declared %d bytes uncompressed; inflating stops there): %v", ErrInvalid, codec, n, err)
	}
	if uint64(len(out)) != n {
		return nil, fmt.Errorf("%w: %s section decompressed to %d bytes, header says %d", ErrInvalid, codec, len(out), n)
	}
	return out, nil
}

// readExactly reads r into dst (of capacity n) and fails when r holds more
// than n bytes, without ever reading past n+1 or growing dst.
func readExactly(r io.Reader, dst []byte, n int) ([]byte, error) {
	dst = dst[:n]
	m, err := io.ReadFull(r, dst)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return dst[:m], nil // shorter than declared: the caller reports it
	}
	if err != nil {
		return dst[:m], err
	}
	var one [1]byte
	switch k, err := io.ReadFull(r, one[:]); {
	case k > 0:
		return dst, fmt.Errorf("inflates past the declared %d bytes", n)
	case err != io.EOF:
		return dst, err // a damaged stream (gzip checks its CRC at the end)
	}
	return dst, nil
}

// DeclaredUncompressedLen is what a batch's compressed records section
// says it inflates to, read without inflating anything; ok is false for an
// uncompressed batch or one too short to say.
func DeclaredUncompressedLen(v View) (n uint64, ok bool) {
	if len(v) <= HeaderSize || v.Compression() == None {
		return 0, false
	}
	n, k := binary.Uvarint(v[HeaderSize:])
	return n, k > 0
}

func max0(n int) int {
	if n < 0 {
		return 0
	}
	return n
}
