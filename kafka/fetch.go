package kafka

import (
	"reflect"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	pb "github.com/skeinlog/skein/proto/skeinv1"
)

const (
	maxFetchWait        = 30 * time.Second
	defaultFetchMaxByte = 50 << 20 // Kafka's fetch.max.bytes default
)

// fetch answers a Fetch: committed batches (up to the high watermark) of
// every partition asked for, converted to Kafka batches. It waits up to
// MaxWaitMillis for MinBytes of data, waking when any of the partitions
// changes. read_committed is served as read_uncommitted: without
// transactions the two are the same records, and the last stable offset is
// the high watermark.
func (c *conn) fetch(req *kmsg.FetchRequest) kmsg.Response {
	wait := min(time.Duration(max(req.MaxWaitMillis, 0))*time.Millisecond, maxFetchWait)
	deadline := time.Now().Add(wait)
	var timer *time.Timer
	for {
		resp, total, watches, failed := c.fetchOnce(req)
		if total >= int(req.MinBytes) || failed || !time.Now().Before(deadline) {
			return resp
		}
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
			defer timer.Stop()
		}
		cases := make([]reflect.SelectCase, 0, len(watches)+2)
		cases = append(cases,
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(c.ctx.Done())})
		for _, w := range watches {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w)})
		}
		if i, _, _ := reflect.Select(cases); i < 2 {
			resp, _, _, _ = c.fetchOnce(req)
			return resp
		}
	}
}

// fetchOnce reads every partition once: the response, its record bytes,
// the partitions' change channels, and whether a partition failed (the
// client has to act on the error before waiting makes sense).
func (c *conn) fetchOnce(req *kmsg.FetchRequest) (*kmsg.FetchResponse, int, []<-chan struct{}, bool) {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	budget := int(req.MaxBytes)
	if budget <= 0 {
		budget = defaultFetchMaxByte
	}
	total := 0
	var watches []<-chan struct{}
	failed := false
	for _, rt := range req.Topics {
		t := kmsg.NewFetchResponseTopic()
		t.Topic, t.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			p := kmsg.NewFetchResponseTopicPartition()
			p.Partition = rp.Partition
			p.HighWatermark, p.LastStableOffset, p.LogStartOffset = -1, -1, -1
			max := int(rp.PartitionMaxBytes)
			if total > 0 {
				max = min(max, budget-total)
			}
			rr, err := c.s.be.Read(&pb.FetchRequest{
				Topic: rt.Topic, Partition: rp.Partition, Offset: rp.FetchOffset,
				MaxBytes: int32(max), LeaderEpoch: rp.CurrentLeaderEpoch,
			})
			if err == nil && len(rr.Batches) > 0 && (max <= 0 || total >= budget) {
				rr.Batches = nil // over the response budget: offsets only
			}
			if err == nil && len(rr.Batches) > 0 {
				p.RecordBatches, err = appendKafka(nil, rr.Batches)
			}
			if p.RecordBatches == nil {
				p.RecordBatches = []byte{} // null is not an empty set to librdkafka
			}
			if err != nil {
				p.ErrorCode = errorCode(err)
				failed = true
			} else {
				p.HighWatermark, p.LastStableOffset, p.LogStartOffset = rr.HighWatermark, rr.HighWatermark, rr.LogStartOffset
				total += len(p.RecordBatches)
				watches = append(watches, rr.Watch)
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp, total, watches, failed
}
