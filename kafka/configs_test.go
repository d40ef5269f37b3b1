package kafka_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/skeinlog/skein/broker/brokertest"
)

// kadm grows a topic's partitions, describes topic and broker configs and
// alters the topic configs Skein has; changes it cannot make are refused
// per resource with a message, and change nothing.
func TestKafkaPartitionsAndConfigs(t *testing.T) {
	b := brokertest.Start(t)
	ctx := ctxFor(t, 60*time.Second)
	cl := kafkaClient(t, b.KafkaAddr())
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "cfg"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "other"); err != nil {
		t.Fatal(err)
	}
	partitions := func(topic string) int {
		td, err := adm.ListTopics(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		return len(td[topic].Partitions)
	}

	// CreatePartitions: grow, refuse shrinking, validate-only changes nothing.
	r, err := adm.CreatePartitions(ctx, 3, "cfg") // adds 3: 5 in all
	if err != nil || r["cfg"].Err != nil {
		t.Fatalf("create partitions: %v %v", err, r["cfg"].Err)
	}
	if n := partitions("cfg"); n != 5 {
		t.Fatalf("%d partitions after adding 3 to 2", n)
	}
	r, _ = adm.UpdatePartitions(ctx, 4, "cfg")
	if r["cfg"].Err != kerr.InvalidPartitions || r["cfg"].ErrMessage == "" {
		t.Fatalf("shrinking: %v %q", r["cfg"].Err, r["cfg"].ErrMessage)
	}
	r, _ = adm.ValidateCreatePartitions(ctx, 2, "cfg")
	if r["cfg"].Err != nil || partitions("cfg") != 5 {
		t.Fatalf("validate only: %v, %d partitions", r["cfg"].Err, partitions("cfg"))
	}
	r, _ = adm.UpdatePartitions(ctx, 3, "nosuch")
	if r["nosuch"].Err != kerr.UnknownTopicOrPartition {
		t.Fatalf("unknown topic: %v", r["nosuch"].Err)
	}

	// DescribeConfigs: topic and broker.
	rc, err := adm.DescribeTopicConfigs(ctx, "cfg")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := rc.On("cfg", nil)
	for name, want := range map[string]string{"cleanup.policy": "delete", "retention.ms": "604800000", "retention.bytes": "-1",
		"min.insync.replicas": "1", "max.message.bytes": "16777216", "segment.bytes": "16777216"} {
		if got := configValue(c.Configs, name); got != want {
			t.Errorf("topic config %s = %q, want %q", name, got, want)
		}
	}
	bc, err := adm.DescribeBrokerConfigs(ctx)
	if err != nil || len(bc) != 1 || configValue(bc[0].Configs, "log.segment.bytes") != "16777216" ||
		configValue(bc[0].Configs, "message.max.bytes") != "16777216" {
		t.Fatalf("broker configs: %+v %v", bc, err)
	}

	// IncrementalAlterConfigs: set what AlterTopic supports.
	set := func(name, v string) kadm.AlterConfig { return kadm.AlterConfig{Name: name, Value: kadm.StringPtr(v)} }
	ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{set("retention.ms", "3600000"), set("retention.bytes", "1048576"),
		set("cleanup.policy", "delete")}, "cfg")
	if err != nil || ar[0].Err != nil {
		t.Fatalf("alter: %v %+v", err, ar)
	}
	// Refusals, each per resource and leaving the topic as it was.
	for _, tc := range []struct {
		name string
		cfgs []kadm.AlterConfig
		want *kerr.Error
	}{
		{"unknown config", []kadm.AlterConfig{set("retention.ms", "1"), set("compression.type", "zstd")}, kerr.InvalidConfig},
		{"read-only", []kadm.AlterConfig{set("segment.bytes", "1024")}, kerr.InvalidConfig},
		{"unknown cleanup.policy", []kadm.AlterConfig{set("cleanup.policy", "compact,shred")}, kerr.InvalidConfig},
		{"not a number", []kadm.AlterConfig{set("retention.ms", "soon")}, kerr.InvalidConfig},
		{"delete op", []kadm.AlterConfig{{Op: kadm.DeleteConfig, Name: "retention.ms"}}, kerr.InvalidConfig},
		{"append op", []kadm.AlterConfig{{Op: kadm.AppendConfig, Name: "retention.ms", Value: kadm.StringPtr("1")}}, kerr.InvalidConfig},
		{"min.insync above the replicas", []kadm.AlterConfig{set("min.insync.replicas", "3")}, kerr.InvalidRequest},
	} {
		ar, err := adm.AlterTopicConfigs(ctx, tc.cfgs, "cfg", "other")
		if err != nil {
			t.Fatal(err)
		}
		for _, res := range ar {
			switch {
			case res.Name == "cfg" && tc.name != "min.insync above the replicas" && (res.Err != tc.want || res.ErrMessage == ""):
				t.Errorf("%s: %v %q, want %v", tc.name, res.Err, res.ErrMessage, tc.want)
			case tc.name == "min.insync above the replicas" && res.Err == nil:
				t.Errorf("%s on %s: accepted", tc.name, res.Name)
			}
		}
	}
	rc, _ = adm.DescribeTopicConfigs(ctx, "cfg", "other")
	c, _ = rc.On("cfg", nil)
	o, _ := rc.On("other", nil)
	if configValue(c.Configs, "retention.ms") != "3600000" || configValue(c.Configs, "retention.bytes") != "1048576" ||
		configValue(c.Configs, "min.insync.replicas") != "1" || configValue(o.Configs, "retention.ms") != "604800000" {
		t.Fatalf("after refusals: cfg %+v other %+v", c.Configs, o.Configs)
	}

	// Legacy AlterConfigs sets what it names; a broker resource is refused.
	legacy := kmsg.NewPtrAlterConfigsRequest()
	for _, res := range []struct {
		typ  kmsg.ConfigResourceType
		name string
	}{{kmsg.ConfigResourceTypeTopic, "cfg"}, {kmsg.ConfigResourceTypeBroker, "1"}} {
		lr := kmsg.NewAlterConfigsRequestResource()
		lr.ResourceType, lr.ResourceName = res.typ, res.name
		lc := kmsg.NewAlterConfigsRequestResourceConfig()
		lc.Name, lc.Value = "max.record.bytes", kmsg.StringPtr("2048")
		lr.Configs = append(lr.Configs, lc)
		legacy.Resources = append(legacy.Resources, lr)
	}
	lresp, err := legacy.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range lresp.Resources {
		want := int16(0)
		if res.ResourceType == kmsg.ConfigResourceTypeBroker {
			want = kerr.InvalidRequest.Code
		}
		if res.ErrorCode != want {
			t.Fatalf("legacy alter of %v %s: %v", res.ResourceType, res.ResourceName, kerr.ErrorForCode(res.ErrorCode))
		}
	}
	rc, _ = adm.DescribeTopicConfigs(ctx, "cfg")
	c, _ = rc.On("cfg", nil)
	if configValue(c.Configs, "max.record.bytes") != "2048" || configValue(c.Configs, "retention.ms") != "3600000" {
		t.Fatalf("after legacy alter: %+v", c.Configs)
	}
}
