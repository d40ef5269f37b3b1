package kafka

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

	"github.com/skeinlog/skein/proto/batch"
)

// Kafka's record batch codecs (attributes bits 0-2) have the numbers of
// Skein's (batch.Compression), but Kafka frames some differently: LZ4 is
// the LZ4 frame format, snappy may come in the xerial (snappy-java)
// framing, and nothing records the uncompressed length.

var (
	zstdEncOnce sync.Once
	zstdEnc     *zstd.Encoder
	zstdDecOnce sync.Once
	zstdDec     *zstd.Decoder
	gzipWriters = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression); return w }}
	lz4Writers  = sync.Pool{New: func() any { return lz4.NewWriter(nil) }}
)

func zstdEncoder() *zstd.Encoder {
	zstdEncOnce.Do(func() {
		zstdEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	})
	return zstdEnc
}

func zstdDecoder() *zstd.Decoder {
	zstdDecOnce.Do(func() {
		zstdDec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(batch.MaxBatchBytes))
	})
	return zstdDec
}

// xerialMagic starts a snappy-java framed stream.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// kafkaCompress appends recs compressed with codec, in Kafka's framing.
func kafkaCompress(dst []byte, codec batch.Compression, recs []byte) ([]byte, error) {
	switch codec {
	case batch.None:
		return append(dst, recs...), nil
	case batch.Gzip:
		return streamCompress(dst, &gzipWriters, recs)
	case batch.Snappy:
		return append(dst, s2.EncodeSnappy(nil, recs)...), nil
	case batch.LZ4:
		return streamCompress(dst, &lz4Writers, recs)
	case batch.Zstd:
		return zstdEncoder().EncodeAll(recs, dst), nil
	}
	return dst, fmt.Errorf("%w: compression codec %d", errInvalidRecord, codec)
}

// streamWriter is a pooled compressing writer (gzip, LZ4 frame).
type streamWriter interface {
	io.WriteCloser
	Reset(io.Writer)
}

// streamCompress appends recs compressed by a writer from pool to dst.
func streamCompress(dst []byte, pool *sync.Pool, recs []byte) ([]byte, error) {
	w := pool.Get().(streamWriter)
	defer pool.Put(w)
	buf := bytes.NewBuffer(dst)
	w.Reset(buf)
	if _, err := w.Write(recs); err != nil {
		return dst, err
	}
	if err := w.Close(); err != nil {
		return dst, err
	}
	return buf.Bytes(), nil
}

// kafkaDecompress returns the records section of a batch compressed with
// codec, refusing to expand it past limit bytes.
func kafkaDecompress(codec batch.Compression, sec []byte, limit int) ([]byte, error) {
	var out []byte
	var err error
	switch codec {
	case batch.None:
		return sec, nil
	case batch.Gzip:
		var r *gzip.Reader
		if r, err = gzip.NewReader(bytes.NewReader(sec)); err == nil {
			out, err = readLimited(r, limit)
		}
	case batch.Snappy:
		out, err = snappyDecode(sec, limit)
	case batch.LZ4:
		out, err = readLimited(lz4.NewReader(bytes.NewReader(sec)), limit)
	case batch.Zstd:
		out, err = zstdDecoder().DecodeAll(sec, nil)
		if err == nil && len(out) > limit {
			err = errTooLarge
		}
	default:
		return nil, fmt.Errorf("%w: unknown compression codec %d", errCorrupt, codec)
	}
	if err == errTooLarge {
		return nil, fmt.Errorf("%w: records decompress to more than %d bytes", errTooLarge, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s records do not decompress: %v", errCorrupt, codec, err)
	}
	return out, nil
}

func readLimited(r io.Reader, limit int) ([]byte, error) {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if n > int64(limit) {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// snappyDecode reads raw snappy or snappy-java's framing (magic, two
// version ints, then big-endian length-prefixed snappy blocks).
func snappyDecode(sec []byte, limit int) ([]byte, error) {
	if !bytes.HasPrefix(sec, xerialMagic) {
		return snappyBlock(nil, sec, limit)
	}
	if len(sec) < 16 {
		return nil, fmt.Errorf("xerial snappy header truncated")
	}
	var out []byte
	for b := sec[16:]; len(b) > 0; {
		if len(b) < 4 {
			return nil, fmt.Errorf("xerial snappy chunk length truncated")
		}
		n := binary.BigEndian.Uint32(b)
		b = b[4:]
		if uint64(n) > uint64(len(b)) {
			return nil, fmt.Errorf("xerial snappy chunk of %d bytes, %d left", n, len(b))
		}
		var err error
		if out, err = snappyBlock(out, b[:n], limit); err != nil {
			return nil, err
		}
		b = b[n:]
	}
	return out, nil
}

// snappyBlock appends one decoded snappy block to dst.
func snappyBlock(dst, blk []byte, limit int) ([]byte, error) {
	n, err := s2.DecodedLen(blk)
	if err != nil {
		return nil, err
	}
	if len(dst)+n > limit {
		return nil, errTooLarge
	}
	out, err := s2.Decode(nil, blk)
	if err != nil {
		return nil, err
	}
	return append(dst, out...), nil
}
