package kafka

import (
	"context"
	"sort"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// Topic configs that are the broker's, described on every topic and not
// alterable per topic.
const (
	cfgSegmentBytes    = "segment.bytes"     // the broker's --segment-bytes
	cfgMaxMessageBytes = "max.message.bytes" // the largest batch: a produce request's size limit
)

// setConfig applies one name=value to an AlterTopic request.
func setConfig(q *pb.AlterTopicRequest, name, v string) error {
	num := func(bits int) (int64, error) {
		n, err := strconv.ParseInt(v, 10, bits)
		if err != nil {
			return 0, configError("%s=%q: not a number", name, v)
		}
		return n, nil
	}
	switch name {
	case cfgRetentionMs, cfgRetentionBytes, cfgDeleteRetention:
		n, err := num(64)
		if err != nil {
			return err
		}
		switch name {
		case cfgRetentionMs:
			q.RetentionMs = &n
		case cfgRetentionBytes:
			q.RetentionBytes = &n
		default:
			q.DeleteRetentionMs = &n
		}
	case cfgMinInsync, cfgMaxRecordBytes:
		n, err := num(32)
		if err != nil {
			return err
		}
		m := int32(n)
		if name == cfgMinInsync {
			q.MinInsyncReplicas = &m
		} else {
			q.MaxRecordBytes = &m
		}
	case cfgCleanupPolicy:
		if err := checkPolicy(v); err != nil {
			return err
		}
		q.CleanupPolicy = &v
	case cfgSegmentBytes, cfgMaxMessageBytes:
		return configError("%s is the broker's (set at start), not a topic's: it cannot be altered per topic", name)
	default:
		return configError("config %q is not supported (a topic may alter %s, %s, %s, %s, %s, %s)", name,
			cfgRetentionMs, cfgRetentionBytes, cfgMinInsync, cfgMaxRecordBytes, cfgCleanupPolicy, cfgDeleteRetention)
	}
	return nil
}

// alterOp is one config change of an AlterConfigs or
// IncrementalAlterConfigs request.
type alterOp struct {
	name  string
	value *string
	op    int8 // 0 set, 1 delete, 2 append, 3 subtract
}

// alterTopicRequest turns one resource's changes into an AlterTopic
// request, refusing any change Skein cannot make so that nothing of the
// resource is applied.
func alterTopicRequest(topic string, ops []alterOp) (*pb.AlterTopicRequest, error) {
	q := &pb.AlterTopicRequest{Name: topic}
	seen := map[string]bool{}
	for _, o := range ops {
		if seen[o.name] {
			return nil, badRequest("config %q is named more than once", o.name)
		}
		seen[o.name] = true
		switch {
		case o.op == 1:
			return nil, configError("%s: reverting a topic config to the broker default is not supported; set a value", o.name)
		case o.op != 0:
			return nil, configError("%s: append and subtract apply to list configs; Skein's topic configs are single values", o.name)
		case o.value == nil:
			return nil, configError("%s: no value given", o.name)
		}
		if err := setConfig(q, o.name, *o.value); err != nil {
			return nil, err
		}
	}
	return q, nil
}

// alterConfigs applies each topic resource's changes with AlterTopic; one
// error per resource, and a resource refused is left as it was.
func (c *conn) alterConfigs(ctx context.Context, typ int8, name string, ops []alterOp, validateOnly bool) error {
	if typ != resourceTopic {
		return badRequest("only topic configs can be altered; broker configs are set with flags at start (or `broker config set`)")
	}
	q, err := alterTopicRequest(name, ops)
	if err != nil || validateOnly {
		return err
	}
	_, err = c.s.be.AlterTopic(ctx, q)
	return err
}

// alterResource is one resource of an alter request.
type alterResource struct {
	typ  int8
	name string
	ops  []alterOp
}

// alterAll applies each resource; one error (or nil) per resource.
func (c *conn) alterAll(res []alterResource, validateOnly bool) []error {
	ctx, cancel := c.requestTimeout(0)
	defer cancel()
	errs := make([]error, len(res))
	for i, r := range res {
		errs[i] = c.alterConfigs(ctx, r.typ, r.name, r.ops, validateOnly)
	}
	return errs
}

func (c *conn) incrementalAlterConfigs(req *kmsg.IncrementalAlterConfigsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	res := make([]alterResource, len(req.Resources))
	for i, r := range req.Resources {
		res[i] = alterResource{typ: int8(r.ResourceType), name: r.ResourceName}
		for _, cfg := range r.Configs {
			res[i].ops = append(res[i].ops, alterOp{name: cfg.Name, value: cfg.Value, op: int8(cfg.Op)})
		}
	}
	for i, err := range c.alterAll(res, req.ValidateOnly) {
		rr := kmsg.NewIncrementalAlterConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = req.Resources[i].ResourceType, req.Resources[i].ResourceName
		if err != nil {
			rr.ErrorCode, rr.ErrorMessage = errorCode(err), errorMessage(err)
		}
		resp.Resources = append(resp.Resources, rr)
	}
	return resp
}

// alterConfigsLegacy is AlterConfigs: the configs named are set; unlike
// Kafka, the configs not named keep their values rather than reverting to
// the broker defaults.
func (c *conn) alterConfigsLegacy(req *kmsg.AlterConfigsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	res := make([]alterResource, len(req.Resources))
	for i, r := range req.Resources {
		res[i] = alterResource{typ: int8(r.ResourceType), name: r.ResourceName}
		for _, cfg := range r.Configs {
			res[i].ops = append(res[i].ops, alterOp{name: cfg.Name, value: cfg.Value})
		}
	}
	for i, err := range c.alterAll(res, req.ValidateOnly) {
		rr := kmsg.NewAlterConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = req.Resources[i].ResourceType, req.Resources[i].ResourceName
		if err != nil {
			rr.ErrorCode, rr.ErrorMessage = errorCode(err), errorMessage(err)
		}
		resp.Resources = append(resp.Resources, rr)
	}
	return resp
}

// createPartitions grows topics to the partition counts asked for, with
// the broker's AlterTopic; validate-only checks the count against the
// topic's and changes nothing.
func (c *conn) createPartitions(req *kmsg.CreatePartitionsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	ctx, cancel := c.requestTimeout(req.TimeoutMillis)
	defer cancel()
	md, mdErr := c.s.be.Metadata(ctx)
	seen := map[string]int{}
	for _, t := range req.Topics {
		seen[t.Topic]++
	}
	for _, t := range req.Topics {
		rt := kmsg.NewCreatePartitionsResponseTopic()
		rt.Topic = t.Topic
		err := mdErr
		if err == nil {
			err = c.growTopic(ctx, md, t, seen[t.Topic] > 1, req.ValidateOnly)
		}
		if err != nil {
			rt.ErrorCode, rt.ErrorMessage = errorCode(err), errorMessage(err)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func (c *conn) growTopic(ctx context.Context, md *pb.MetadataResponse, t kmsg.CreatePartitionsRequestTopic, dup, validateOnly bool) error {
	var cur *pb.TopicMetadata
	for _, mt := range md.Topics {
		if mt.Name == t.Topic {
			cur = mt
		}
	}
	switch {
	case dup:
		return badRequest("topic %q is named more than once in the request", t.Topic)
	case cur == nil:
		return unknownTopic(t.Topic)
	case len(t.Assignment) > 0:
		return &codeError{kerr.InvalidReplicaAssignment.Code, "manual replica assignment is not supported: give only the new partition count"}
	case t.Count <= cur.Config.GetPartitions():
		return &codeError{kerr.InvalidPartitions.Code, "topic " + t.Topic + " has " + strconv.Itoa(int(cur.Config.GetPartitions())) +
			" partitions; the count must be larger (partitions can only be added)"}
	case validateOnly:
		return nil
	}
	n := t.Count
	_, err := c.s.be.AlterTopic(ctx, &pb.AlterTopicRequest{Name: t.Topic, Partitions: &n})
	return err
}

// codeError is an error with the Kafka code it is answered with.
type codeError struct {
	code int16
	msg  string
}

func (e *codeError) Error() string { return e.msg }

// brokerConfigEntries describes a broker: its settings under Kafka's
// names, sorted, filtered by names when given.
func brokerConfigEntries(cfg map[string]string, names []string) []kmsg.DescribeConfigsResponseResourceConfig {
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, k := range keys {
		if names != nil && !contains(names, k) {
			continue
		}
		rc := kmsg.NewDescribeConfigsResponseResourceConfig()
		rc.Name, rc.Value, rc.ReadOnly = k, kmsg.StringPtr(cfg[k]), true
		rc.Source = kmsg.ConfigSourceStaticBrokerConfig
		out = append(out, rc)
	}
	return out
}
