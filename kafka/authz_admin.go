package kafka

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/skeinlog/skein/auth"
)

// auditedAPIs change the cluster: their hooks run even with ACLs off, to
// write the audit log.
var auditedAPIs = map[int16]bool{8: true, 19: true, 20: true, 33: true, 37: true, 42: true, 44: true}

// kerrOf is a Kafka error code as an error (nil for 0).
func kerrOf(code int16) error { return kerr.ErrorForCode(code) }

// createTopicsAuthz: create on the topic or on the cluster; audited.
func createTopicsAuthz(c *conn, r kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	req := r.(*kmsg.CreateTopicsRequest)
	clusterOK := c.quietMay(auth.Create, auth.ClusterResource())
	denied := splitNames(&req.Topics, func(t *kmsg.CreateTopicsRequestTopic) string { return t.Topic },
		func(n string) bool { return clusterOK || c.mayTopic(auth.Create, n) })
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
	mayDelete := func(n string) bool { return c.mayTopic(auth.Delete, n) }
	denied := splitNames(&req.TopicNames, func(n *string) string { return *n }, mayDelete)
	denied = append(denied, splitNames(&req.Topics, func(t *kmsg.DeleteTopicsRequestTopic) string {
		if t.Topic == nil {
			return "*"
		}
		return *t.Topic
	}, mayDelete)...)
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

// createPartitionsAuthz: alter on each topic; audited.
func createPartitionsAuthz(c *conn, r kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	req := r.(*kmsg.CreatePartitionsRequest)
	denied := splitTopics(c, &req.Topics, func(t *kmsg.CreatePartitionsRequestTopic) string { return t.Topic }, auth.Alter)
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.CreatePartitionsResponse)
		for _, t := range resp.Topics {
			c.s.cfg.Authorizer.Audit(c.principal, auth.Alter, auth.TopicResource(t.Topic), kerrOf(t.ErrorCode))
		}
		for _, t := range denied {
			rt := kmsg.NewCreatePartitionsResponseTopic()
			rt.Topic, rt.ErrorCode = t.Topic, topicDenied
			resp.Topics = append(resp.Topics, rt)
		}
	}
}

// configTarget is the permission to alter one config resource: a topic's
// alter, or the cluster's for a broker's.
func configTarget(typ kmsg.ConfigResourceType, name string) (auth.Resource, int16) {
	if typ == kmsg.ConfigResourceTypeTopic {
		return auth.TopicResource(name), topicDenied
	}
	return auth.ClusterResource(), clusterDenied
}

// alterConfigsAuthz serves AlterConfigs and IncrementalAlterConfigs:
// alter on each resource; audited. Refused resources get the error in the
// answer and are not changed.
func alterConfigsAuthz(c *conn, r kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	type refused struct {
		typ  kmsg.ConfigResourceType
		name string
		code int16
	}
	var denied []refused
	keep := func(typ kmsg.ConfigResourceType, name string) bool {
		res, code := configTarget(typ, name)
		ok := c.may(auth.Alter, res)
		if !ok {
			denied = append(denied, refused{typ, name, code})
		}
		return ok
	}
	switch req := r.(type) {
	case *kmsg.AlterConfigsRequest:
		req.Resources = slicesFilter(req.Resources, func(x *kmsg.AlterConfigsRequestResource) bool { return keep(x.ResourceType, x.ResourceName) })
	case *kmsg.IncrementalAlterConfigsRequest:
		req.Resources = slicesFilter(req.Resources, func(x *kmsg.IncrementalAlterConfigsRequestResource) bool { return keep(x.ResourceType, x.ResourceName) })
	}
	return nil, func(r kmsg.Response) {
		switch resp := r.(type) {
		case *kmsg.AlterConfigsResponse:
			for _, x := range resp.Resources {
				res, _ := configTarget(x.ResourceType, x.ResourceName)
				c.s.cfg.Authorizer.Audit(c.principal, auth.Alter, res, kerrOf(x.ErrorCode))
			}
			for _, d := range denied {
				resp.Resources = append(resp.Resources, kmsg.AlterConfigsResponseResource{ErrorCode: d.code, ResourceType: d.typ, ResourceName: d.name})
			}
		case *kmsg.IncrementalAlterConfigsResponse:
			for _, x := range resp.Resources {
				res, _ := configTarget(x.ResourceType, x.ResourceName)
				c.s.cfg.Authorizer.Audit(c.principal, auth.Alter, res, kerrOf(x.ErrorCode))
			}
			for _, d := range denied {
				resp.Resources = append(resp.Resources, kmsg.IncrementalAlterConfigsResponseResource{ErrorCode: d.code, ResourceType: d.typ, ResourceName: d.name})
			}
		}
	}
}

// slicesFilter keeps the elements for which keep is true, in place.
func slicesFilter[T any](s []T, keep func(*T) bool) []T {
	out := s[:0]
	for i := range s {
		if keep(&s[i]) {
			out = append(out, s[i])
		}
	}
	return out
}
