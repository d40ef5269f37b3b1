package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/skeinlog/skein/proto/batch"
)

// FuzzRequest feeds arbitrary frames to the request decoder and, for a
// produce request, every partition's records to the batch converter. Nothing
// may panic; a batch the converter accepts must be a valid Skein batch that
// converts back to Kafka's format.
func FuzzRequest(f *testing.F) {
	seed := func(r kmsg.Request) { f.Add(frame(r, 42)[4:]) }
	for _, v := range []int16{3, 7, 9} {
		for _, codec := range []batch.Compression{batch.None, batch.Gzip, batch.Snappy, batch.LZ4, batch.Zstd} {
			req := produceRequest(kafkaBatch(f, codec, 3))
			req.SetVersion(v)
			seed(req)
		}
	}
	for _, r := range []kmsg.Request{kmsg.NewPtrApiVersionsRequest(), kmsg.NewPtrMetadataRequest(), kmsg.NewPtrFetchRequest(),
		kmsg.NewPtrListOffsetsRequest(), kmsg.NewPtrCreateTopicsRequest(), kmsg.NewPtrDeleteTopicsRequest(),
		kmsg.NewPtrInitProducerIDRequest(), kmsg.NewPtrDescribeConfigsRequest(), kmsg.NewPtrOffsetCommitRequest(),
		kmsg.NewPtrOffsetFetchRequest(), kmsg.NewPtrFindCoordinatorRequest(), kmsg.NewPtrListGroupsRequest(),
		kmsg.NewPtrDeleteGroupsRequest(), kmsg.NewPtrConsumerGroupHeartbeatRequest(), kmsg.NewPtrJoinGroupRequest(),
		kmsg.NewPtrSyncGroupRequest(), kmsg.NewPtrHeartbeatRequest(), kmsg.NewPtrLeaveGroupRequest(), kmsg.NewPtrDescribeGroupsRequest(),
		kmsg.NewPtrCreatePartitionsRequest(), kmsg.NewPtrAlterConfigsRequest(), kmsg.NewPtrIncrementalAlterConfigsRequest()} {
		vr := supported[r.Key()]
		r.SetVersion(vr.max)
		seed(r)
		r.SetVersion(vr.min)
		seed(r)
	}
	f.Add([]byte{0, 0})
	f.Add([]byte{0, 18, 0, 99, 0, 0, 0, 1, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, fr []byte) {
		p, req, err := decodeRequest(fr)
		if err != nil {
			return
		}
		if req == nil {
			if p.resp == nil {
				t.Fatal("neither a request nor an answer")
			}
			return
		}
		pr, ok := req.(*kmsg.ProduceRequest)
		if !ok {
			return
		}
		cv := newConverter(1 << 20)
		for _, rt := range pr.Topics {
			for _, rp := range rt.Partitions {
				sk, err := cv.toSkein(rp.Records)
				if err != nil {
					continue
				}
				if _, err := batch.Validate(sk, batch.Limits{}); err != nil {
					t.Fatalf("converted batch invalid: %v", err)
				}
				if _, err := appendKafka(nil, sk); err != nil {
					t.Fatalf("converted batch does not convert back: %v", err)
				}
			}
		}
	})
}

// BenchmarkConvert measures the edge conversion per produced and fetched
// batch: 100 records of 1 KiB (key, value, one header), uncompressed and
// with each codec. Bytes are the records' uncompressed size.
func BenchmarkConvert(b *testing.B) {
	for _, codec := range []batch.Compression{batch.None, batch.Snappy, batch.LZ4, batch.Zstd, batch.Gzip} {
		bb := batch.NewBuilder(codec)
		value := make([]byte, 1000)
		for i := range value {
			value[i] = byte('a' + i%7*i%13)
		}
		for i := 0; i < 100; i++ {
			bb.Add(&batch.Record{Timestamp: 1700000000000 + int64(i), Key: []byte("key-0001"), Value: value, Headers: []batch.Header{{Key: "h", Value: []byte("v")}}})
		}
		sk, err := bb.Build(nil)
		if err != nil {
			b.Fatal(err)
		}
		kb, err := appendKafka(nil, sk)
		if err != nil {
			b.Fatal(err)
		}
		size := int64(100 * 1024)
		b.Run("kafka-to-skein/"+codec.String(), func(b *testing.B) {
			cv := newConverter(64 << 20)
			b.SetBytes(size)
			for b.Loop() {
				if _, err := cv.toSkein(kb); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("skein-to-kafka/"+codec.String(), func(b *testing.B) {
			b.SetBytes(size)
			var dst []byte
			for b.Loop() {
				if dst, err = appendKafka(dst[:0], sk); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
