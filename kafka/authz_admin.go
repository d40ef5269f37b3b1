package kafka

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/skeinlog/skein/auth"
)

// auditedAPIs change the cluster: their hooks run even with ACLs off, to
// write the audit log.
var auditedAPIs = map[int16]bool{8: true, 19: true, 20: true, 42: true}

// kerrOf is a Kafka error code as an error (nil for 0).
func kerrOf(code int16) error { return kerr.ErrorForCode(code) }

// createTopicsAuthz: create on the topic or on the cluster; audited.
func createTopicsAuthz(c *conn, r kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	req := r.(*kmsg.CreateTopicsRequest)
	clusterOK := c.quietMay(auth.Create, auth.ClusterResource())
	var denied []string
	kept := req.Topics[:0]
	for _, t := range req.Topics {
		if clusterOK || c.mayTopic(auth.Create, t.Topic) {
			kept = append(kept, t)
		} else {
			denied = append(denied, t.Topic)
		}
	}
	req.Topics = kept
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.CreateTopicsResponse)
		for _, t := range resp.Topics {
			c.s.cfg.Authorizer.Audit(c.principal, auth.Create, auth.TopicResource(t.Topic), kerrOf(t.ErrorCode))
		}
		for _, name := range denied {
			rt := kmsg.NewCreateTopicsResponseTopic()
			rt.Topic, rt.ErrorCode, rt.NumPartitions, rt.ReplicationFactor = name, topicDenied, -1, -1
			resp.Topics = append(resp.Topics, rt)
		}
	}
}

// deleteTopicsAuthz: delete on each topic named; audited. Topics named by
// id alone (version 6) are checked by name once resolved: refused here
// unless the principal may delete every topic.
func deleteTopicsAuthz(c *conn, r kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	req := r.(*kmsg.DeleteTopicsRequest)
	var denied []string
	kept := req.TopicNames[:0]
	for _, n := range req.TopicNames {
		if c.mayTopic(auth.Delete, n) {
			kept = append(kept, n)
		} else {
			denied = append(denied, n)
		}
	}
	req.TopicNames = kept
	keptT := req.Topics[:0]
	for _, t := range req.Topics {
		name := "*"
		if t.Topic != nil {
			name = *t.Topic
		}
		if c.mayTopic(auth.Delete, name) {
			keptT = append(keptT, t)
		} else {
			denied = append(denied, name)
		}
	}
	req.Topics = keptT
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.DeleteTopicsResponse)
		for _, t := range resp.Topics {
			if t.Topic != nil {
				c.s.cfg.Authorizer.Audit(c.principal, auth.Delete, auth.TopicResource(*t.Topic), kerrOf(t.ErrorCode))
			}
		}
		for _, name := range denied {
			rt := kmsg.NewDeleteTopicsResponseTopic()
			rt.Topic, rt.ErrorCode = kmsg.StringPtr(name), topicDenied
			resp.Topics = append(resp.Topics, rt)
		}
	}
}

// initProducerIDAuthz: an idempotent producer id needs write on some
// topic (as in Kafka since idempotence is on by default);
// CLUSTER_AUTHORIZATION_FAILED otherwise.
func initProducerIDAuthz(c *conn, r kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	if c.s.cfg.Authorizer.AuthorizeAny(c.principal, auth.Write, auth.Topic) == nil {
		return nil, nil
	}
	resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ErrorCode, resp.ProducerID, resp.ProducerEpoch = clusterDenied, -1, -1
	return resp, nil
}

// describeConfigsAuthz answers, then blanks the resources the principal
// may not describe (a topic's describe; a broker's needs cluster describe).
func describeConfigsAuthz(c *conn, _ kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.DescribeConfigsResponse)
		for i := range resp.Resources {
			res := &resp.Resources[i]
			ok, code := true, int16(0)
			switch res.ResourceType {
			case kmsg.ConfigResourceTypeTopic:
				ok, code = c.mayTopic(auth.Describe, res.ResourceName), topicDenied
			default:
				ok, code = c.may(auth.Describe, auth.ClusterResource()), clusterDenied
			}
			if !ok {
				res.ErrorCode, res.ErrorMessage, res.Configs = code, nil, nil
			}
		}
	}
}
