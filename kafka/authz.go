package kafka

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/skeinlog/skein/auth"
)

// authzHook is the authorization of one request API, the one place the
// Kafka listener decides what a principal may do. It returns the answer
// when the whole request is refused, or, when only some of its topics or
// groups are, it removes those from the request and returns post, which
// adds them back to the answer with the authorization error. Read-only
// requests may instead be answered and then scrubbed by post.
type authzHook func(c *conn, req kmsg.Request) (deny kmsg.Response, post func(kmsg.Response))

// authzHooks has a hook for every API in supported (TestEveryAPIHasAHook).
var authzHooks = map[int16]authzHook{
	0:  produceAuthz,
	1:  fetchAuthz,
	2:  listOffsetsAuthz,
	3:  metadataAuthz,
	8:  offsetCommitAuthz,
	9:  offsetFetchAuthz,
	10: findCoordinatorAuthz,
	11: groupReadAuthz,
	12: groupReadAuthz,
	13: groupReadAuthz,
	14: groupReadAuthz,
	15: describeGroupsAuthz,
	16: listGroupsAuthz,
	17: noAuthz, // SaslHandshake
	18: noAuthz, // ApiVersions
	19: createTopicsAuthz,
	20: deleteTopicsAuthz,
	22: initProducerIDAuthz,
	32: describeConfigsAuthz,
	33: alterConfigsAuthz,
	37: createPartitionsAuthz,
	44: alterConfigsAuthz,
	36: noAuthz, // SaslAuthenticate
	42: deleteGroupsAuthz,
	68: consumerGroupHeartbeatAuthz,
}

var (
	topicDenied   = kerr.TopicAuthorizationFailed.Code
	groupDenied   = kerr.GroupAuthorizationFailed.Code
	clusterDenied = kerr.ClusterAuthorizationFailed.Code
)

func noAuthz(*conn, kmsg.Request) (kmsg.Response, func(kmsg.Response)) { return nil, nil }

// authorize runs req's hook. With ACLs off only the hooks of the admin
// changes run, for the audit log. ok is false for an API without a hook,
// which must not be served.
func (c *conn) authorize(req kmsg.Request) (deny kmsg.Response, post func(kmsg.Response), ok bool) {
	if c.s.cfg.Authorizer == nil || !c.s.cfg.Authorizer.Enabled() && !auditedAPIs[req.Key()] {
		return nil, nil, true
	}
	h, ok := authzHooks[req.Key()]
	if !ok {
		return nil, nil, false
	}
	deny, post = h(c, req)
	return deny, post, true
}

// may reports whether the connection's principal may perform op on r,
// writing a denial to the audit log.
func (c *conn) may(op auth.Operation, r auth.Resource) bool {
	return c.s.cfg.Authorizer.Authorize(c.principal, op, r) == nil
}

// mayTopic is may for a topic; the internal topics (the offsets topic)
// are the brokers' own: anything but describe needs cluster_action.
func (c *conn) mayTopic(op auth.Operation, name string) bool {
	if len(name) >= 2 && name[:2] == "__" && op != auth.Describe {
		return c.may(auth.ClusterAction, auth.ClusterResource())
	}
	return c.may(op, auth.TopicResource(name))
}

func (c *conn) mayGroup(op auth.Operation, name string) bool {
	return c.may(op, auth.GroupResource(name))
}

// quietMay is may without the audit line, for filtering listings.
func (c *conn) quietMay(op auth.Operation, r auth.Resource) bool {
	return c.s.cfg.Authorizer.Decide(c.principal, op, r).Allowed
}

// splitTopics keeps in *ts the elements whose topic c may use with op and
// returns the others.
func splitTopics[T any](c *conn, ts *[]T, name func(*T) string, op auth.Operation) (denied []T) {
	return split(ts, func(t *T) bool { return c.mayTopic(op, name(t)) })
}

// split keeps in *s the elements ok accepts and returns the others.
func split[T any](s *[]T, ok func(*T) bool) (denied []T) {
	kept := (*s)[:0]
	for _, e := range *s {
		if ok(&e) {
			kept = append(kept, e)
		} else {
			denied = append(denied, e)
		}
	}
	*s = kept
	return denied
}

// splitNames is split returning the names of the elements it refused.
func splitNames[T any](s *[]T, name func(*T) string, ok func(string) bool) (denied []string) {
	for _, e := range split(s, func(e *T) bool { return ok(name(e)) }) {
		denied = append(denied, name(&e))
	}
	return denied
}

func produceAuthz(c *conn, r kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	req := r.(*kmsg.ProduceRequest)
	denied := splitTopics(c, &req.Topics, func(t *kmsg.ProduceRequestTopic) string { return t.Topic }, auth.Write)
	if len(denied) == 0 {
		return nil, nil
	}
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.ProduceResponse)
		for _, t := range denied {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition, rp.ErrorCode, rp.BaseOffset, rp.LogStartOffset = p.Partition, topicDenied, -1, -1
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
	}
}

func fetchAuthz(c *conn, r kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	req := r.(*kmsg.FetchRequest)
	denied := splitTopics(c, &req.Topics, func(t *kmsg.FetchRequestTopic) string { return t.Topic }, auth.Read)
	if len(denied) == 0 {
		return nil, nil
	}
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.FetchResponse)
		for _, t := range denied {
			rt := kmsg.NewFetchResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewFetchResponseTopicPartition()
				rp.Partition, rp.ErrorCode, rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = p.Partition, topicDenied, -1, -1, -1
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
	}
}

func listOffsetsAuthz(c *conn, r kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	req := r.(*kmsg.ListOffsetsRequest)
	denied := splitTopics(c, &req.Topics, func(t *kmsg.ListOffsetsRequestTopic) string { return t.Topic }, auth.Describe)
	if len(denied) == 0 {
		return nil, nil
	}
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.ListOffsetsResponse)
		for _, t := range denied {
			rt := kmsg.NewListOffsetsResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewListOffsetsResponseTopicPartition()
				rp.Partition, rp.ErrorCode, rp.Offset, rp.Timestamp = p.Partition, topicDenied, -1, -1
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
	}
}

// metadataAuthz answers, then drops from a listing of every topic those
// the principal may not describe, and marks the named ones refused.
func metadataAuthz(c *conn, r kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	req := r.(*kmsg.MetadataRequest)
	all := req.Topics == nil || req.Version == 0 && len(req.Topics) == 0
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.MetadataResponse)
		kept := resp.Topics[:0]
		for _, t := range resp.Topics {
			name := ""
			if t.Topic != nil {
				name = *t.Topic
			}
			switch {
			case all && c.quietMay(auth.Describe, auth.TopicResource(name)):
			case all:
				continue
			case !c.mayTopic(auth.Describe, name):
				t.ErrorCode, t.Partitions, t.IsInternal = topicDenied, nil, false
			}
			kept = append(kept, t)
		}
		resp.Topics = kept
	}
}
