package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
)

// TestKafkaCompactedTopic: a topic created with cleanup.policy=compact
// over the Kafka listener refuses keyless records (INVALID_RECORD) and,
// once the cleaner has run, a franz-go consumer reading it from the start
// gets exactly each key's latest value, across the gaps compaction leaves
// in the offsets (and the batches it emptied).
func TestKafkaCompactedTopic(t *testing.T) {
	b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) {
		c.SegmentBytes = 8 << 10
		c.CleanerInterval = 50 * time.Millisecond
	}))
	addr := b.KafkaAddr()
	cl := kafkaClient(t, addr, kgo.DefaultProduceTopic("kv"))
	adm := kadm.NewClient(cl)
	ctx := ctxFor(t, 60*time.Second)
	created, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact"), "delete.retention.ms": kadm.StringPtr("100")}, "kv")
	if err != nil || created.Err != nil {
		t.Fatalf("create: %v %v", err, created.Err)
	}
	rc, err := adm.DescribeTopicConfigs(ctx, "kv")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := rc.On("kv", nil)
	if configValue(c.Configs, "cleanup.policy") != "compact" || configValue(c.Configs, "delete.retention.ms") != "100" {
		t.Fatalf("configs: %+v", c.Configs)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("no key")}).FirstErr(); !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("keyless record: %v, want INVALID_RECORD", err)
	}
	latest := map[string]string{}
	for round := 0; round < 40; round++ {
		var recs []*kgo.Record
		for k := 0; k < 20; k++ {
			key := fmt.Sprintf("k%d", k)
			v := fmt.Sprintf("v%d-%s", round, strings.Repeat("x", 30))
			if k%7 == 0 && round == 39 {
				v = "" // a tombstone last
			}
			r := &kgo.Record{Key: []byte(key), Value: []byte(v)}
			if v == "" {
				r.Value = nil
				delete(latest, key)
			} else {
				latest[key] = v
			}
			recs = append(recs, r)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// Fill the active segment with other keys, so every update is in a
	// sealed segment.
	for i := 0; i < 300; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(fmt.Sprintf("filler-%d", i)), Value: []byte(strings.Repeat("f", 40))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	hw, err := adm.ListEndOffsets(ctx, "kv")
	if err != nil {
		t.Fatal(err)
	}
	end, _ := hw.Lookup("kv", 0)
	for {
		got, gaps := readCompacted(t, ctx, addr, end.Offset)
		if len(got) == len(latest) && gaps > 0 {
			for k, v := range latest {
				if got[k] != v {
					t.Fatalf("key %s: read %q, latest %q", k, got[k], v)
				}
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("the log never compacted: %d keys read (want %d), %d gaps", len(got), len(latest), gaps)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readCompacted consumes kv from the start to end with a new kgo client
// and returns the keys read (fillers left out), failing on a key read
// twice only once the log is compacted; gaps counts offset jumps.
func readCompacted(t *testing.T, ctx context.Context, addr string, end int64) (map[string]string, int) {
	t.Helper()
	cl := kafkaClient(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"kv": {0: kgo.NewOffset().AtStart()}}))
	defer cl.Close()
	got, gaps, next := map[string]string{}, 0, int64(0)
	seen := map[string]bool{}
	dup := false
	for next < end {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed up to %d of %d: %v", next, end, ctx.Err())
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		for _, r := range fs.Records() {
			if r.Offset < next {
				t.Fatalf("offset %d after %d", r.Offset, next)
			}
			if r.Offset > next {
				gaps++
			}
			next = r.Offset + 1
			k := string(r.Key)
			if strings.HasPrefix(k, "filler-") {
				continue
			}
			dup = dup || seen[k]
			seen[k] = true
			if r.Value == nil {
				delete(got, k)
			} else {
				got[k] = string(r.Value)
			}
		}
	}
	if dup {
		return map[string]string{}, gaps // not compacted yet
	}
	return got, gaps
}
