package batch

import "fmt"

// Keys calls fn with the offset and key of each record of the batch, in
// order (key nil for a null key), decompressing as needed; the key aliases
// v or the decompressed buffer. It checks the CRC and record framing, like
// Records, without decoding values and headers.
func (v View) Keys(fn func(offset int64, key []byte)) error {
	if len(v) < HeaderSize {
		return ErrShort
	}
	if v.MagicByte() != Magic {
		return fmt.Errorf("%w: magic %d", ErrInvalid, v.MagicByte())
	}
	if !v.VerifyCRC() {
		return ErrCRC
	}
	recs, err := decompress(v.Compression(), v[HeaderSize:], MaxBatchBytes)
	if err != nil {
		return err
	}
	base := v.BaseOffset()
	return walk(recs, func(r *rawRecord) error {
		fn(base+r.offsetDelta, r.key)
		return nil
	})
}
