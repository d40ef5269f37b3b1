package broker

import (
	"context"
	"fmt"

	"github.com/skeinlog/skein/partition"
	"github.com/skeinlog/skein/proto/batch"
)

// recordFraming bounds the bytes a record takes in a batch beside its key,
// value and headers (which max.record.bytes counts): its length, attributes,
// timestamp and offset deltas, and the key, value and header lengths.
const recordFraming = 64

// inflationLimit is the most a compressed batch of count records may say it
// inflates to: count records of the topic's max.record.bytes with their
// framing, and never more than the largest request the broker reads (what
// the batch could have been sent as uncompressed). Pure.
func inflationLimit(count, maxRecordBytes int32, maxRequestBytes int) int64 {
	per := int64(maxRecordBytes) + recordFraming
	return min(int64(max(count, 1))*per, int64(maxRequestBytes))
}

// checkInflation reads the uncompressed size a produced batch declares,
// without inflating anything, and refuses it past inflationLimit. It
// returns the declared size (0 for an uncompressed batch), which the
// partition inflates to validate the records. A batch that declares less
// than it holds is refused while inflating, at the declared size.
func (b *Broker) checkInflation(buf []byte, maxRecordBytes int32) (int64, error) {
	v, _, err := batch.Next(buf)
	if err != nil || v == nil || len(v) < batch.HeaderSize {
		return 0, nil // malformed: the partition's validation says how
	}
	n, ok := batch.DeclaredUncompressedLen(v)
	if !ok {
		return 0, nil
	}
	limit := inflationLimit(v.RecordCount(), maxRecordBytes, b.cfg.MaxRequestBytes)
	if n > uint64(limit) {
		return 0, fmt.Errorf("%w: the %s batch says it inflates to %d bytes, over the limit of %d for %d record(s) "+
			"(the topic's max.record.bytes %d plus %d bytes of framing per record, at most --max-request-bytes %d); nothing was appended",
			partition.ErrRecordTooLarge, v.Compression(), n, limit, v.RecordCount(), maxRecordBytes, recordFraming, b.cfg.MaxRequestBytes)
	}
	return int64(n), nil
}

// admitProduce checks a produced batch's declared inflation and takes its
// bytes, and those it inflates to, from the in-flight budget; it returns
// the inflated size, which the caller gives back once the batch is
// validated, and the batch's own bytes once it is answered. The request is
// in memory already; waiting here holds back the next ones (a stream stops
// being read, so flow control slows the client).
func (b *Broker) admitProduce(r *replica, buf []byte) (inflated int64, err error) {
	b.mu.RLock()
	maxRecord := r.cfg.MaxRecordBytes
	b.mu.RUnlock()
	if inflated, err = b.checkInflation(buf, maxRecord); err != nil {
		b.metrics.refused.WithLabelValues(refusedInflation).Inc()
		return 0, err
	}
	if err := b.inflight.acquire(context.Background(), int64(len(buf))+inflated); err != nil {
		b.metrics.refusedRequest(err)
		return 0, err
	}
	return inflated, nil
}
