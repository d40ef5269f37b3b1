package kafka

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/skeinlog/skein/auth"
)

// offsetCommitAuthz: read on the group (else every partition is refused
// with GROUP_AUTHORIZATION_FAILED) and on each topic. A commit without a
// member (an offset reset by an admin tool) is audited.
func offsetCommitAuthz(c *conn, r kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	req := r.(*kmsg.OffsetCommitRequest)
	refuse := func(ts []kmsg.OffsetCommitRequestTopic, code int16, resp *kmsg.OffsetCommitResponse) {
		for _, t := range ts {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetCommitResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
	}
	if !c.mayGroup(auth.Read, req.Group) {
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		refuse(req.Topics, groupDenied, resp)
		return resp, nil
	}
	denied := splitTopics(c, &req.Topics, func(t *kmsg.OffsetCommitRequestTopic) string { return t.Topic }, auth.Read)
	admin := req.MemberID == ""
	if len(denied) == 0 && !admin {
		return nil, nil
	}
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.OffsetCommitResponse)
		if admin {
			c.s.cfg.Authorizer.Audit(c.principal, auth.Read, auth.GroupResource(req.Group), firstError(resp))
		}
		refuse(denied, topicDenied, resp)
	}
}

// firstError is the first partition error of an offset commit, as an error.
func firstError(resp *kmsg.OffsetCommitResponse) error {
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerrOf(p.ErrorCode); err != nil {
				return err
			}
		}
	}
	return nil
}

// offsetFetchAuthz: describe on each group asked about.
func offsetFetchAuthz(c *conn, r kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	req := r.(*kmsg.OffsetFetchRequest)
	if req.Version < 8 {
		if c.mayGroup(auth.Describe, req.Group) {
			return nil, nil
		}
		resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
		resp.ErrorCode = groupDenied
		return resp, nil
	}
	denied := splitNames(&req.Groups, func(g *kmsg.OffsetFetchRequestGroup) string { return g.Group },
		func(g string) bool { return c.mayGroup(auth.Describe, g) })
	if len(denied) == 0 {
		return nil, nil
	}
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.OffsetFetchResponse)
		for _, g := range denied {
			rg := kmsg.NewOffsetFetchResponseGroup()
			rg.Group, rg.ErrorCode = g, groupDenied
			resp.Groups = append(resp.Groups, rg)
		}
	}
}

// findCoordinatorAuthz: describe on the group (key type 0); transaction
// coordinators are not served.
func findCoordinatorAuthz(c *conn, r kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	req := r.(*kmsg.FindCoordinatorRequest)
	if req.Version < 4 {
		if c.mayGroup(auth.Describe, req.CoordinatorKey) {
			return nil, nil
		}
		resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
		resp.ErrorCode, resp.NodeID = groupDenied, -1
		return resp, nil
	}
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.FindCoordinatorResponse)
		for i := range resp.Coordinators {
			co := &resp.Coordinators[i]
			if !c.mayGroup(auth.Describe, co.Key) {
				co.ErrorCode, co.NodeID, co.Host, co.Port, co.ErrorMessage = groupDenied, -1, "", -1, nil
			}
		}
	}
}

// groupOf is the group of the classic group requests (join, heartbeat,
// leave, sync).
func groupOf(r kmsg.Request) string {
	switch req := r.(type) {
	case *kmsg.JoinGroupRequest:
		return req.Group
	case *kmsg.HeartbeatRequest:
		return req.Group
	case *kmsg.LeaveGroupRequest:
		return req.Group
	case *kmsg.SyncGroupRequest:
		return req.Group
	}
	return ""
}

// groupReadAuthz: read on the group for the classic group protocol; the
// answer carries GROUP_AUTHORIZATION_FAILED.
func groupReadAuthz(c *conn, r kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	if c.mayGroup(auth.Read, groupOf(r)) {
		return nil, nil
	}
	resp := r.ResponseKind()
	switch x := resp.(type) {
	case *kmsg.JoinGroupResponse:
		x.ErrorCode = groupDenied
	case *kmsg.HeartbeatResponse:
		x.ErrorCode = groupDenied
	case *kmsg.LeaveGroupResponse:
		x.ErrorCode = groupDenied
	case *kmsg.SyncGroupResponse:
		x.ErrorCode = groupDenied
	}
	return resp, nil
}

// describeGroupsAuthz answers, then blanks the groups the principal may
// not describe.
func describeGroupsAuthz(c *conn, _ kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.DescribeGroupsResponse)
		for i := range resp.Groups {
			g := &resp.Groups[i]
			if !c.mayGroup(auth.Describe, g.Group) {
				*g = kmsg.DescribeGroupsResponseGroup{Group: g.Group, ErrorCode: groupDenied}
			}
		}
	}
}

// listGroupsAuthz keeps the groups the principal may describe.
func listGroupsAuthz(c *conn, _ kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.ListGroupsResponse)
		kept := resp.Groups[:0]
		for _, g := range resp.Groups {
			if c.quietMay(auth.Describe, auth.GroupResource(g.Group)) {
				kept = append(kept, g)
			}
		}
		resp.Groups = kept
	}
}

// deleteGroupsAuthz: delete on each group; deletions are audited.
func deleteGroupsAuthz(c *conn, r kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	req := r.(*kmsg.DeleteGroupsRequest)
	denied := splitNames(&req.Groups, func(g *string) string { return *g },
		func(g string) bool { return c.mayGroup(auth.Delete, g) })
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.DeleteGroupsResponse)
		for _, g := range resp.Groups {
			c.s.cfg.Authorizer.Audit(c.principal, auth.Delete, auth.GroupResource(g.Group), kerrOf(g.ErrorCode))
		}
		for _, g := range denied {
			rg := kmsg.NewDeleteGroupsResponseGroup()
			rg.Group, rg.ErrorCode = g, groupDenied
			resp.Groups = append(resp.Groups, rg)
		}
	}
}

// consumerGroupHeartbeatAuthz: read on the group and on each topic
// subscribed to by name.
func consumerGroupHeartbeatAuthz(c *conn, r kmsg.Request) (kmsg.Response, func(kmsg.Response)) {
	req := r.(*kmsg.ConsumerGroupHeartbeatRequest)
	code := int16(0)
	if !c.mayGroup(auth.Read, req.Group) {
		code = groupDenied
	}
	for _, t := range req.SubscribedTopicNames {
		if code == 0 && !c.mayTopic(auth.Read, t) {
			code = topicDenied
		}
	}
	if code == 0 {
		return nil, nil
	}
	resp := req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
	resp.ErrorCode = code
	return resp, nil
}
