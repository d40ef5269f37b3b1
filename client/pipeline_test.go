package client

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/skeinlog/skein/proto/batch"
)

// newBareProducer is a Producer with no client and no goroutines, enough for
// the accumulator and completion logic.
func newBareProducer(t testing.TB, opts ...ProducerOpt) *Producer {
	cfg := defaultProducerConfig()
	cfg.requestTimeout = time.Second
	for _, o := range opts {
		o.applyProducer(&cfg)
	}
	if cfg.retryBackoff == 0 {
		cfg.retryBackoff = 100 * time.Millisecond
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	p := &Producer{cfg: cfg, bufFreed: make(chan struct{})}
	p.builders.New = func() any { return batch.NewBuilder(batch.Compression(cfg.compression)) }
	p.cbs.init()
	return p
}

func addRecord(pp *partProducer, r *Record) {
	var br batch.Record
	r.toBatch(&br)
	enc := batch.EncodedRecordSize(&br)
	pp.add(pendingRec{r: r, cb: func(*Record, error) {}}, &br, enc, int64(enc))
}

func TestAccumulatorCutsBatchesAtMaxBytes(t *testing.T) {
	const maxBytes = 1024
	p := newBareProducer(t, BatchMaxBytes(maxBytes))
	pp := newPartProducer(p, "t", 0)
	pp.st.pid, pp.st.pepoch, pp.st.sequence = 42, 3, math.MaxInt32-250 // sequences wrap to 0 on the way
	const n = 100
	for i := 0; i < n; i++ {
		addRecord(pp, &Record{Key: []byte(fmt.Sprint(i)), Value: make([]byte, 100), Timestamp: time.UnixMilli(int64(i))})
	}
	if len(pp.queue) < 2 {
		t.Fatalf("%d batches for %d records of 100 bytes in 1 KiB batches", len(pp.queue), n)
	}
	next := 0
	for i, b := range pp.queue {
		if last := i == len(pp.queue)-1; b.full == last || (b == pp.open) != last {
			t.Errorf("batch %d: full=%v open=%v", i, b.full, b == pp.open)
		}
		if err := pp.seal(b); err != nil {
			t.Fatal(err)
		}
		if len(b.wire) > maxBytes {
			t.Errorf("batch %d is %d bytes, over %d", i, len(b.wire), maxBytes)
		}
		v := batch.View(b.wire)
		// Sealed batches are numbered in order: each starts where the
		// one before ended.
		if want := addSequence(math.MaxInt32-250, next); v.ProducerID() != 42 || v.BaseSequence() != want || v.ProducerEpoch() != 3 {
			t.Errorf("batch %d: producer fields %d/%d/%d, want 42/3/%d", i, v.ProducerID(), v.ProducerEpoch(), v.BaseSequence(), want)
		}
		recs, err := v.Records(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != len(b.recs) {
			t.Fatalf("batch %d encodes %d records, holds %d", i, len(recs), len(b.recs))
		}
		for _, r := range recs {
			if string(r.Key) != fmt.Sprint(next) || r.Timestamp != int64(next) {
				t.Fatalf("record %d out of order: key %q ts %d", next, r.Key, r.Timestamp)
			}
			next++
		}
		// A batch is cut only when the next record would not fit.
		if b.full && len(b.wire)+len(recs[0].Value)+len(recs[0].Key)+batch.HeaderSize/4 < maxBytes-2*batch.EncodedRecordSize(&recs[0]) {
			t.Errorf("batch %d cut early at %d bytes", i, len(b.wire))
		}
	}
	if next != n {
		t.Fatalf("%d records in batches, want %d", next, n)
	}
}

func TestAccumulatorLingerAndFlush(t *testing.T) {
	p := newBareProducer(t, Linger(time.Hour))
	pp := newPartProducer(p, "t", 0)
	addRecord(pp, &Record{Value: []byte("a")})
	now := time.Now()
	if b, until := pp.ready(now); b != nil || until.Before(now.Add(59*time.Minute)) {
		t.Fatalf("open batch ready before its linger: %v %v", b, until)
	}
	if b, _ := pp.ready(now.Add(time.Hour + time.Second)); b == nil {
		t.Fatal("batch not ready after its linger")
	}
	p.flushing.Add(1)
	if b, _ := pp.ready(now); b == nil {
		t.Fatal("batch not ready while flushing")
	}
	p.flushing.Add(-1)
	// Linger 0 sends at once.
	p0 := newBareProducer(t, Linger(0))
	pp0 := newPartProducer(p0, "t", 0)
	addRecord(pp0, &Record{Value: []byte("a")})
	if b, _ := pp0.ready(time.Now()); b == nil {
		t.Fatal("linger 0: batch not ready")
	}
	// Popping the open batch closes it: the next record opens a new one.
	b, _ := pp0.ready(time.Now())
	pp0.pop(b)
	addRecord(pp0, &Record{Value: []byte("b")})
	if len(pp0.queue) != 1 || pp0.queue[0] == b || len(b.recs) != 1 {
		t.Fatal("a record joined a batch that was already taken for sending")
	}
}

func TestCompletionsStayInBatchOrder(t *testing.T) {
	p := newBareProducer(t, BatchMaxBytes(200))
	pp := newPartProducer(p, "t", 3)
	for i := 0; i < 12; i++ {
		addRecord(pp, &Record{Value: make([]byte, 60)})
	}
	bs := append([]*pbatch(nil), pp.queue...)
	if len(bs) < 3 {
		t.Fatalf("%d batches", len(bs))
	}
	// Complete the last batches first, as a retry of the first would.
	for i := len(bs) - 1; i >= 0; i-- {
		pp.complete(bs[i], int64(100*i), nil)
	}
	got := p.cbs.take(nil)
	if len(got) != len(bs) {
		t.Fatalf("%d completions, want %d", len(got), len(bs))
	}
	for i, c := range got {
		if c.base != int64(100*i) || c.partition != 3 {
			t.Fatalf("completion %d: base %d partition %d", i, c.base, c.partition)
		}
	}
}

func TestExpireFailsOldBatchesWithLastError(t *testing.T) {
	p := newBareProducer(t, DeliveryTimeout(time.Second), BatchMaxBytes(200))
	pp := newPartProducer(p, "t", 0)
	for i := 0; i < 6; i++ {
		addRecord(pp, &Record{Value: make([]byte, 60)})
	}
	last := transportError("b:1", errors.New("refused"))
	pp.noteWaiting(last)
	created := pp.queue[0].created
	if _, ok := pp.expire(created.Add(500 * time.Millisecond)); !ok || len(pp.queue) == 0 {
		t.Fatal("expired too early")
	}
	n := len(pp.queue)
	next, ok := pp.expire(created.Add(2 * time.Second))
	if ok || !next.IsZero() || len(pp.queue) != 0 {
		t.Fatalf("batches left after their delivery timeout: %d", len(pp.queue))
	}
	got := p.cbs.take(nil)
	if len(got) != n {
		t.Fatalf("%d completions, want %d", len(got), n)
	}
	for _, c := range got {
		if !errors.Is(c.err, ErrDeliveryTimeout) || !errors.Is(c.err, ErrUnavailable) {
			t.Fatalf("expiry error %v does not wrap the timeout and the last error", c.err)
		}
	}
}

// BenchmarkAccumulator measures records per second through the producer's
// accumulator and batch encoding, with no network: add 100-byte records,
// seal each full batch as the loop would.
func BenchmarkAccumulator(b *testing.B) {
	for _, codec := range []Compression{CompressionNone, CompressionLZ4, CompressionZstd} {
		b.Run(codec.String(), func(b *testing.B) {
			p := newBareProducer(b, BatchCompression(codec))
			pp := newPartProducer(p, "t", 0)
			value := []byte(`{"id":12345,"user":"user-42","event":"click","page":"/index.html","ms":17}`)
			value = append(value, make([]byte, 100-len(value))...)
			key := []byte("user-42")
			r := &Record{Key: key, Value: value, Timestamp: time.Now()}
			var br batch.Record
			b.SetBytes(int64(len(key) + len(value)))
			b.ReportAllocs()
			b.ResetTimer()
			batches := 0
			for i := 0; i < b.N; i++ {
				r.toBatch(&br)
				enc := batch.EncodedRecordSize(&br)
				pp.add(pendingRec{r: r}, &br, enc, int64(enc))
				if len(pp.queue) > 1 {
					sb := pp.queue[0]
					pp.pop(sb)
					if err := pp.seal(sb); err != nil {
						b.Fatal(err)
					}
					batches++
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			if batches > 0 {
				b.ReportMetric(float64(b.N)/float64(batches), "records/batch")
			}
		})
	}
}

func TestSealWithoutIdempotence(t *testing.T) {
	p := newBareProducer(t, Idempotent(false))
	pp := newPartProducer(p, "t", 0)
	for i := range 3 {
		addRecord(pp, &Record{Value: []byte{byte(i)}})
	}
	b := pp.queue[0]
	if err := pp.seal(b); err != nil {
		t.Fatal(err)
	}
	if v := batch.View(b.wire); v.ProducerID() != batch.NoProducerID || v.BaseSequence() != batch.NoSequence || v.ProducerEpoch() != 0 {
		t.Errorf("producer fields %d/%d/%d, want -1/0/-1", v.ProducerID(), v.ProducerEpoch(), v.BaseSequence())
	}
}

func TestAddSequenceWraps(t *testing.T) {
	for _, c := range []struct {
		seq  int32
		n    int
		want int32
	}{{0, 5, 5}, {math.MaxInt32, 1, 0}, {math.MaxInt32 - 2, 5, 2}, {math.MaxInt32 - 4, 5, 0}} {
		if got := addSequence(c.seq, c.n); got != c.want {
			t.Errorf("addSequence(%d, %d) = %d, want %d", c.seq, c.n, got, c.want)
		}
	}
}

func TestProducerConfigIdempotence(t *testing.T) {
	for _, c := range []struct {
		opts []ProducerOpt
		want bool
		bad  bool
	}{
		{nil, true, false},
		{[]ProducerOpt{Idempotent(false)}, false, false},
		{[]ProducerOpt{RequiredAcks(AcksLeader)}, true, false},
		{[]ProducerOpt{RequiredAcks(AcksNone)}, false, false},
		{[]ProducerOpt{RequiredAcks(AcksNone), Idempotent(true)}, false, true},
		{[]ProducerOpt{MaxInFlightPerPartition(6)}, false, true},
		{[]ProducerOpt{MaxInFlightPerPartition(6), Idempotent(false)}, false, false},
	} {
		cfg := defaultProducerConfig()
		cfg.requestTimeout = time.Second
		for _, o := range c.opts {
			o.applyProducer(&cfg)
		}
		err := cfg.validate()
		if (err != nil) != c.bad || (err == nil && cfg.idempotent != c.want) {
			t.Errorf("%d options: idempotent %v, err %v; want %v, bad %v", len(c.opts), cfg.idempotent, err, c.want, c.bad)
		}
	}
}
