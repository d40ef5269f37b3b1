package kafka

import (
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// Topic configs Skein has, by their Kafka names. max.record.bytes is
// Skein's own: a limit per record (key, value and headers), not per batch
// as Kafka's max.message.bytes.
const (
	cfgRetentionMs     = "retention.ms"
	cfgRetentionBytes  = "retention.bytes"
	cfgMinInsync       = "min.insync.replicas"
	cfgMaxRecordBytes  = "max.record.bytes"
	cfgCleanupPolicy   = "cleanup.policy"
	cfgDeleteRetention = "delete.retention.ms"
)

// checkPolicy checks a cleanup.policy value before it goes to the broker
// (which checks it again), so that a validate-only request refuses it too.
func checkPolicy(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p := strings.TrimSpace(p); p != "delete" && p != "compact" {
			return configError("cleanup.policy %q: want delete, compact, or compact,delete", v)
		}
	}
	return nil
}

// createSpec turns one CreateTopics entry into the native request.
func createSpec(rt *kmsg.CreateTopicsRequestTopic) (*pb.CreateTopicRequest, error) {
	if len(rt.ReplicaAssignment) > 0 {
		return nil, badRequest("manual replica assignment is not supported: give a partition count and replication factor")
	}
	q := &pb.CreateTopicRequest{Name: rt.Topic, Partitions: max(rt.NumPartitions, 0), ReplicationFactor: int32(max(rt.ReplicationFactor, 0))}
	for _, c := range rt.Configs {
		if c.Value == nil {
			continue
		}
		v := *c.Value
		var err error
		switch c.Name {
		case cfgRetentionMs:
			var n int64
			n, err = strconv.ParseInt(v, 10, 64)
			q.RetentionMs = &n
		case cfgRetentionBytes:
			var n int64
			n, err = strconv.ParseInt(v, 10, 64)
			q.RetentionBytes = &n
		case cfgMinInsync:
			var n int64
			n, err = strconv.ParseInt(v, 10, 32)
			m := int32(n)
			q.MinInsyncReplicas = &m
		case cfgMaxRecordBytes:
			var n int64
			n, err = strconv.ParseInt(v, 10, 32)
			m := int32(n)
			q.MaxRecordBytes = &m
		case cfgCleanupPolicy:
			if err := checkPolicy(v); err != nil {
				return nil, err
			}
			q.CleanupPolicy = &v
		case cfgDeleteRetention:
			var n int64
			n, err = strconv.ParseInt(v, 10, 64)
			q.DeleteRetentionMs = &n
		default:
			return nil, configError("config %q is not supported (Skein has %s, %s, %s, %s, %s, %s)", c.Name,
				cfgRetentionMs, cfgRetentionBytes, cfgMinInsync, cfgMaxRecordBytes, cfgCleanupPolicy, cfgDeleteRetention)
		}
		if err != nil {
			return nil, configError("config %s=%q: not a number", c.Name, v)
		}
	}
	return q, nil
}

func (c *conn) createTopics(req *kmsg.CreateTopicsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	ctx, cancel := c.requestTimeout(req.TimeoutMillis)
	defer cancel()
	seen := map[string]int{}
	for _, rt := range req.Topics {
		seen[rt.Topic]++
	}
	for i := range req.Topics {
		rt := &req.Topics[i]
		t := kmsg.NewCreateTopicsResponseTopic()
		t.Topic = rt.Topic
		var err error
		var q *pb.CreateTopicRequest
		switch {
		case seen[rt.Topic] > 1:
			err = badRequest("topic %q is named more than once in the request", rt.Topic)
		case req.ValidateOnly:
			err = badRequest("validate-only topic creation is not supported")
		default:
			q, err = createSpec(rt)
		}
		var r *pb.CreateTopicResponse
		if err == nil {
			r, err = c.s.be.CreateTopic(ctx, q)
		}
		if err != nil {
			t.ErrorCode, t.ErrorMessage = errorCode(err), errorMessage(err)
			t.NumPartitions, t.ReplicationFactor = -1, -1
		} else {
			cfg := r.Topic.GetConfig()
			t.NumPartitions, t.ReplicationFactor = cfg.GetPartitions(), int16(cfg.GetReplicationFactor())
			t.TopicID = topicID(r.Topic.GetTopicId())
			for _, e := range topicConfigs(cfg, c.s.be.BrokerConfigs()) {
				rc := kmsg.NewCreateTopicsResponseTopicConfig()
				rc.Name, rc.Value, rc.ReadOnly = e.name, kmsg.StringPtr(e.value), e.readOnly
				t.Configs = append(t.Configs, rc)
			}
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

func (c *conn) deleteTopics(req *kmsg.DeleteTopicsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	ctx, cancel := c.requestTimeout(req.TimeoutMillis)
	defer cancel()
	names := req.TopicNames
	if req.Version >= 6 {
		names = names[:0]
		for _, t := range req.Topics {
			if t.Topic == nil {
				rt := kmsg.NewDeleteTopicsResponseTopic()
				rt.TopicID, rt.ErrorCode = t.TopicID, kerr.UnsupportedVersion.Code
				rt.ErrorMessage = kmsg.StringPtr("delete topics by name; deleting by topic id is not supported")
				resp.Topics = append(resp.Topics, rt)
				continue
			}
			names = append(names, *t.Topic)
		}
	}
	for _, name := range names {
		rt := kmsg.NewDeleteTopicsResponseTopic()
		rt.Topic = kmsg.StringPtr(name)
		if _, err := c.s.be.DeleteTopic(ctx, &pb.DeleteTopicRequest{Name: name}); err != nil {
			rt.ErrorCode, rt.ErrorMessage = errorCode(err), errorMessage(err)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

type configEntry struct {
	name, value string
	readOnly    bool
}

// topicConfigs are a topic's settings under their Kafka names, with the
// broker's that apply to every topic (from the broker's configs).
func topicConfigs(cfg *pb.TopicConfig, broker map[string]string) []configEntry {
	return []configEntry{
		{cfgCleanupPolicy, policyOf(cfg), false},
		{cfgDeleteRetention, strconv.FormatInt(cfg.GetDeleteRetentionMs(), 10), false},
		{cfgMaxMessageBytes, broker[brokerMaxMessageBytes], true},
		{cfgMaxRecordBytes, strconv.Itoa(int(cfg.GetMaxRecordBytes())), false},
		{cfgMinInsync, strconv.Itoa(int(cfg.GetMinInsyncReplicas())), false},
		{cfgRetentionBytes, strconv.FormatInt(cfg.GetRetentionBytes(), 10), false},
		{cfgRetentionMs, strconv.FormatInt(cfg.GetRetentionMs(), 10), false},
		{cfgSegmentBytes, broker[brokerSegmentBytes], true},
	}
}

// policyOf is a topic's cleanup.policy ("delete" when the broker says
// nothing).
func policyOf(cfg *pb.TopicConfig) string {
	if p := cfg.GetCleanupPolicy(); p != "" {
		return p
	}
	return "delete"
}

// Broker config names the topic configs take values from.
const (
	brokerMaxMessageBytes = "message.max.bytes"
	brokerSegmentBytes    = "log.segment.bytes"
)

const (
	resourceTopic  = 2
	resourceBroker = 4
)

// describeConfigs answers for topics with their settings and for brokers
// with theirs (read-only: set at start).
func (c *conn) describeConfigs(req *kmsg.DescribeConfigsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	md, mdErr := c.s.be.Metadata(c.ctx)
	for _, rr := range req.Resources {
		r := kmsg.NewDescribeConfigsResponseResource()
		r.ResourceType, r.ResourceName = rr.ResourceType, rr.ResourceName
		switch rr.ResourceType {
		case resourceBroker:
			r.Configs = brokerConfigEntries(c.s.be.BrokerConfigs(), rr.ConfigNames)
		case resourceTopic:
			var t *pb.TopicMetadata
			if mdErr == nil {
				for _, mt := range md.Topics {
					if mt.Name == rr.ResourceName {
						t = mt
					}
				}
			}
			err := mdErr
			if err == nil && t == nil {
				err = unknownTopic(rr.ResourceName)
			}
			if err != nil {
				r.ErrorCode, r.ErrorMessage = errorCode(err), errorMessage(err)
				break
			}
			for _, e := range topicConfigs(t.Config, c.s.be.BrokerConfigs()) {
				if rr.ConfigNames != nil && !contains(rr.ConfigNames, e.name) {
					continue
				}
				rc := kmsg.NewDescribeConfigsResponseResourceConfig()
				rc.Name, rc.Value, rc.ReadOnly = e.name, kmsg.StringPtr(e.value), e.readOnly
				rc.Source = kmsg.ConfigSourceDynamicTopicConfig
				if e.readOnly {
					rc.Source = kmsg.ConfigSourceDefaultConfig
				}
				r.Configs = append(r.Configs, rc)
			}
		default:
			r.ErrorCode = kerr.InvalidRequest.Code
			r.ErrorMessage = kmsg.StringPtr("only topic and broker resources are described")
		}
		resp.Resources = append(resp.Resources, r)
	}
	return resp
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
