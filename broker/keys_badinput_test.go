package broker_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// Bad per-key requests: each refused with its code and a message saying
// what to fix, and nothing appended.
func TestBadInputKeys(t *testing.T) {
	b := brokertest.Start(t)
	c := dial(t, b.Addr())
	ctx := context.Background()
	if _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "keyed", Partitions: 1, KeyIndex: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "plain", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	acct := buildBatch(t, &batch.Record{Key: []byte("acct-7"), Value: []byte("+10")})
	if _, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "keyed", LeaderEpoch: -1, Batch: acct,
		KeyExpectations: []*pb.KeyOffset{{Key: []byte("acct-7"), Offset: -1}}}); err != nil {
		t.Fatal(err)
	}
	check := unchanged(t, b, "keyed", 1)
	checkPlain := unchanged(t, b, "plain", 1)
	expect := func(topic string, kos ...*pb.KeyOffset) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: topic, LeaderEpoch: -1, Batch: acct, KeyExpectations: kos})
			return err
		}
	}
	ko := func(k string, off int64) *pb.KeyOffset { return &pb.KeyOffset{Key: []byte(k), Offset: off} }
	getKey := func(topic string, key []byte) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := c.GetKey(ctx, &pb.GetKeyRequest{Topic: topic, Key: key, LeaderEpoch: -1})
			return err
		}
	}
	ia, fp, ir := codes.InvalidArgument, codes.FailedPrecondition, pb.ErrorReason_INVALID_REQUEST
	zero := int64(0)
	runBad(t, []badCase{
		{"a stale expectation", expect("keyed", ko("acct-7", -1)), codes.Aborted, pb.ErrorReason_KEY_OFFSET_MISMATCH, []string{`key "acct-7" expected none, its last record is at 0`}},
		{"an empty key", expect("keyed", ko("", 0)), ia, ir, []string{"keys are 1 to 65536 bytes"}},
		{"an oversized key", expect("keyed", ko(string(bytes.Repeat([]byte("k"), 70000)), 0)), ia, ir, []string{"70000 bytes"}},
		{"a key not in the batch", expect("keyed", ko("acct-8", -1)), ia, ir, []string{`"acct-8" is not the key of any record`}},
		{"a key named twice", expect("keyed", ko("acct-7", 0), ko("acct-7", 0)), ia, ir, []string{"named twice"}},
		{"an offset below -1", expect("keyed", ko("acct-7", -5)), ia, ir, []string{"expected offset -5"}},
		{"beside a partition offset", func(ctx context.Context) error {
			_, err := c.Produce(ctx, &pb.ProduceRequest{Topic: "keyed", LeaderEpoch: -1, Batch: acct, ExpectedOffset: &zero,
				KeyExpectations: []*pb.KeyOffset{ko("acct-7", 0)}})
			return err
		}, ia, ir, []string{"not both"}},
		{"a topic without the key index", expect("plain", ko("acct-7", -1)), fp, ir, []string{"--key-index"}},
		{"get: a topic without the key index", getKey("plain", []byte("acct-7")), fp, ir, []string{"--key-index"}},
		{"get: an empty key", getKey("keyed", nil), ia, ir, []string{"keys are 1 to"}},
		{"get: an oversized key", getKey("keyed", bytes.Repeat([]byte("k"), 70000)), ia, ir, []string{"70000 bytes"}},
		{"get: an unknown topic", getKey("nope", []byte("k")), codes.NotFound, pb.ErrorReason_UNKNOWN_TOPIC, nil},
		{"get: an unknown partition", func(ctx context.Context) error {
			_, err := c.GetKey(ctx, &pb.GetKeyRequest{Topic: "keyed", Partition: 3, Key: []byte("k"), LeaderEpoch: -1})
			return err
		}, codes.NotFound, pb.ErrorReason_UNKNOWN_PARTITION, nil},
		{"alter: turning the key index on", func(ctx context.Context) error {
			on := true
			_, err := c.AlterTopic(ctx, &pb.AlterTopicRequest{Name: "plain", KeyIndex: &on})
			return err
		}, ia, ir, []string{"fixed when a topic is created"}},
	})
	check()
	checkPlain()
	r, err := c.GetKey(ctx, &pb.GetKeyRequest{Topic: "keyed", Key: []byte("acct-7"), LeaderEpoch: -1})
	if err != nil || !r.Found || r.Offset != 0 || string(r.Value) != "+10" {
		t.Fatalf("GetKey after the bad requests: %v %v", r, err)
	}
	// The key index's size is on /metrics, for key-indexed topics only.
	if l := metric(t, b.HTTPAddr(), `skein_partition_key_index_keys{partition="0",topic="keyed"}`); !strings.HasSuffix(l, " 1") {
		t.Fatalf("key index keys metric: %q", l)
	}
	if l := metric(t, b.HTTPAddr(), `skein_partition_key_index_keys{partition="0",topic="plain"}`); l != "" {
		t.Fatalf("a topic without the key index has a key index metric: %q", l)
	}
	if l := metric(t, b.HTTPAddr(), `skein_produce_errors_total{reason="KEY_OFFSET_MISMATCH"}`); !strings.HasSuffix(l, " 1") {
		t.Fatalf("key mismatches counted: %q", l)
	}
}
