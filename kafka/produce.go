package kafka

import (
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// acksFor maps Kafka's acks to Skein's: 0 (no answer), 1 (the leader has
// it on disk), -1 (every in-sync replica has it on disk). ok is false for
// any other value.
func acksFor(acks int16) (pb.Acks, bool) {
	switch acks {
	case 0:
		return pb.Acks_ACKS_NONE, true
	case 1:
		return pb.Acks_ACKS_LEADER, true
	case -1:
		return pb.Acks_ACKS_ALL, true
	}
	return 0, false
}

// produce converts each partition's batch and starts its append; the
// answer is set when the last append completes. With acks 0 nothing is
// answered, as in Kafka.
func (c *conn) produce(p *pending, req *kmsg.ProduceRequest) {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	acks, okAcks := acksFor(req.Acks)
	var parts []*kmsg.ProduceResponseTopicPartition
	for _, rt := range req.Topics {
		t := kmsg.NewProduceResponseTopic()
		t.Topic = rt.Topic
		t.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		resp.Topics = append(resp.Topics, t)
	}
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			rp := &resp.Topics[i].Partitions[j]
			rp.Default()
			rp.Partition = req.Topics[i].Partitions[j].Partition
			rp.BaseOffset, rp.LogStartOffset = -1, -1
			parts = append(parts, rp)
		}
	}
	remaining := atomic.Int32{}
	remaining.Store(int32(len(parts)) + 1)
	finish := func() {
		if remaining.Add(-1) == 0 && req.Acks != 0 {
			p.answer(resp)
		}
	}
	if req.Acks == 0 {
		p.answer(nil)
	}
	fail := func(rp *kmsg.ProduceResponseTopicPartition, err error) {
		rp.ErrorCode, rp.ErrorMessage = errorCode(err), errorMessage(err)
		finish()
	}
	k := 0
	for _, rt := range req.Topics {
		for _, part := range rt.Partitions {
			rp := parts[k]
			k++
			if !okAcks {
				rp.ErrorCode = kerr.InvalidRequiredAcks.Code
				finish()
				continue
			}
			if req.TransactionID != nil {
				fail(rp, badRequest("transactions are not supported"))
				continue
			}
			b, err := c.conv.toSkein(part.Records)
			if err != nil {
				c.s.log.Warn("kafka: produce refused", "remote", c.remote, "topic", rt.Topic, "partition", part.Partition, "err", err)
				fail(rp, err)
				continue
			}
			c.s.be.Produce(&pb.ProduceRequest{
				Topic: rt.Topic, Partition: part.Partition, Acks: acks, TimeoutMs: max(req.TimeoutMillis, 0),
				LeaderEpoch: -1, Batch: b,
			}, func(r *pb.ProduceResponse) {
				if r.Error != nil {
					if req.Acks == 0 { // no answer tells the client
						c.s.log.Warn("kafka: produce with acks=0 failed", "remote", c.remote, "topic", rt.Topic, "partition", rp.Partition, "err", r.Error.GetMessage())
					}
					fail(rp, &detailError{r.Error})
					return
				}
				rp.BaseOffset, rp.LogStartOffset = r.BaseOffset, r.LogStartOffset
				finish()
			})
		}
	}
	finish()
}
