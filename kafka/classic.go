package kafka

import (
	"errors"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/skeinlog/skein/group"
)

// The classic group protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup
// and DescribeGroups, over the coordinator's classic groups (the rules are
// group.Classic's). Members compute the assignment themselves (client-side
// assignors); the listener reads the "consumer" protocol's subscriptions
// and assignments only to describe the group.

// groupCode maps an error of a group request to its Kafka code: the
// classic protocol's own errors by name, a coordinator that is loading or
// moving as COORDINATOR_NOT_AVAILABLE (clients look it up again), others
// as errorCode does.
func groupCode(err error) int16 {
	for _, m := range []struct {
		err  error
		code int16
	}{
		{group.ErrUnknownMember, kerr.UnknownMemberID.Code},
		{group.ErrIllegalGeneration, kerr.IllegalGeneration.Code},
		{group.ErrRebalanceInProgress, kerr.RebalanceInProgress.Code},
		{group.ErrMemberIDRequired, kerr.MemberIDRequired.Code},
		{group.ErrInconsistentProtocol, kerr.InconsistentGroupProtocol.Code},
		{group.ErrInvalidSessionTimeout, kerr.InvalidSessionTimeout.Code},
		{group.ErrGroupFull, kerr.GroupMaxSizeReached.Code},
		{group.ErrFencedInstance, kerr.FencedInstanceID.Code},
		{group.ErrNotConsumerGroup, kerr.GroupIDNotFound.Code},
		{group.ErrInvalid, kerr.InvalidRequest.Code},
	} {
		if errors.Is(err, m.err) {
			return m.code
		}
	}
	code := errorCode(err)
	if code == kerr.LeaderNotAvailable.Code {
		return kerr.CoordinatorNotAvailable.Code
	}
	return code
}

func ms(v int32) time.Duration { return time.Duration(v) * time.Millisecond }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// host is the client's address without the port.
func (c *conn) host() string {
	h, _, err := net.SplitHostPort(c.remote)
	if err != nil {
		return c.remote
	}
	return h
}

func (c *conn) joinGroup(clientID string, req *kmsg.JoinGroupRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.Generation = -1
	q := group.JoinRequest{MemberID: req.MemberID, InstanceID: deref(req.InstanceID), ClientID: clientID, Host: c.host(),
		ProtocolType: req.ProtocolType, SessionTimeout: ms(req.SessionTimeoutMillis),
		RebalanceTimeout: ms(req.RebalanceTimeoutMillis), RequireMemberID: req.Version >= 4}
	if req.Version == 0 || req.RebalanceTimeoutMillis <= 0 {
		q.RebalanceTimeout = q.SessionTimeout
	}
	for _, p := range req.Protocols {
		q.Protocols = append(q.Protocols, group.Protocol{Name: p.Name, Metadata: p.Metadata})
	}
	if req.ProtocolType == "consumer" && len(req.Protocols) > 0 {
		var md kmsg.ConsumerMemberMetadata
		if md.ReadFrom(req.Protocols[0].Metadata) == nil {
			q.Topics = md.Topics
		}
	}
	r, err := c.s.be.JoinGroup(c.ctx, req.Group, q)
	resp.MemberID = r.MemberID
	if err != nil {
		resp.ErrorCode = groupCode(err)
		return resp
	}
	resp.Generation, resp.LeaderID = r.Generation, r.Leader
	resp.Protocol, resp.ProtocolType = kmsg.StringPtr(r.Protocol), kmsg.StringPtr(r.ProtocolType)
	for _, m := range r.Members {
		rm := kmsg.NewJoinGroupResponseMember()
		rm.MemberID, rm.ProtocolMetadata = m.ID, m.Metadata
		if m.InstanceID != "" {
			rm.InstanceID = kmsg.StringPtr(m.InstanceID)
		}
		resp.Members = append(resp.Members, rm)
	}
	return resp
}

func (c *conn) syncGroup(req *kmsg.SyncGroupRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	q := group.SyncRequest{MemberRef: group.MemberRef{MemberID: req.MemberID, InstanceID: deref(req.InstanceID), Generation: req.Generation},
		ProtocolType: deref(req.ProtocolType), Protocol: deref(req.Protocol)}
	if len(req.GroupAssignment) > 0 {
		q.Assignments, q.Parsed = map[string][]byte{}, map[string][]group.TopicPartition{}
	}
	for _, a := range req.GroupAssignment {
		q.Assignments[a.MemberID] = a.MemberAssignment
		var ca kmsg.ConsumerMemberAssignment
		if q.ProtocolType != "connect" && ca.ReadFrom(a.MemberAssignment) == nil {
			for _, t := range ca.Topics {
				for _, p := range t.Partitions {
					q.Parsed[a.MemberID] = append(q.Parsed[a.MemberID], group.TopicPartition{Topic: t.Topic, Partition: p})
				}
			}
		}
	}
	a, err := c.s.be.SyncGroup(c.ctx, req.Group, q)
	if err != nil {
		resp.ErrorCode = groupCode(err)
		return resp
	}
	resp.MemberAssignment = a
	resp.ProtocolType, resp.Protocol = req.ProtocolType, req.Protocol
	return resp
}

func (c *conn) heartbeat(req *kmsg.HeartbeatRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	ref := group.MemberRef{MemberID: req.MemberID, InstanceID: deref(req.InstanceID), Generation: req.Generation}
	resp.ErrorCode = groupCode(c.s.be.ClassicHeartbeat(c.ctx, req.Group, ref))
	return resp
}

func (c *conn) leaveGroup(req *kmsg.LeaveGroupRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	refs := []group.MemberRef{{MemberID: req.MemberID}}
	if req.Version >= 3 {
		refs = refs[:0]
		for _, m := range req.Members {
			refs = append(refs, group.MemberRef{MemberID: m.MemberID, InstanceID: deref(m.InstanceID)})
		}
	}
	errs, err := c.s.be.LeaveGroup(c.ctx, req.Group, refs)
	if err != nil {
		resp.ErrorCode = groupCode(err)
	}
	if req.Version < 3 {
		if err == nil && len(errs) == 1 {
			resp.ErrorCode = groupCode(errs[0])
		}
		return resp
	}
	for i, ref := range refs {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID = ref.MemberID
		if ref.InstanceID != "" {
			rm.InstanceID = kmsg.StringPtr(ref.InstanceID)
		}
		if err != nil {
			rm.ErrorCode = resp.ErrorCode
		} else if i < len(errs) {
			rm.ErrorCode = groupCode(errs[i])
		}
		resp.Members = append(resp.Members, rm)
	}
	return resp
}

func (c *conn) describeGroups(req *kmsg.DescribeGroupsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, name := range req.Groups {
		rg := kmsg.NewDescribeGroupsResponseGroup()
		rg.Group = name
		rg.AuthorizedOperations = -2147483648 // not computed
		d, err := c.s.be.DescribeGroup(c.ctx, name)
		if err != nil {
			rg.ErrorCode = groupCode(err)
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		rg.State, rg.ProtocolType, rg.Protocol = d.State, d.ProtocolType, d.Protocol
		for _, m := range d.Members {
			rm := kmsg.NewDescribeGroupsResponseGroupMember()
			rm.MemberID, rm.ClientID, rm.ClientHost = m.ID, m.ClientID, m.Host
			if m.InstanceID != "" {
				rm.InstanceID = kmsg.StringPtr(m.InstanceID)
			}
			rm.ProtocolMetadata, rm.MemberAssignment = m.Metadata, m.Assignment
			if m.Metadata == nil && m.Assignment == nil { // a consumer-protocol (KIP-848) member
				rm.ProtocolMetadata, rm.MemberAssignment = consumerProtocolBytes(m)
			}
			rg.Members = append(rg.Members, rm)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

// consumerProtocolBytes encodes a member's subscription and assignment as
// the classic "consumer" protocol does, so tools decode them alike.
func consumerProtocolBytes(m group.ClassicMember) (metadata, assignment []byte) {
	md := kmsg.NewConsumerMemberMetadata()
	md.Topics = m.Topics
	as := kmsg.NewConsumerMemberAssignment()
	for _, tp := range m.Assigned {
		if n := len(as.Topics); n > 0 && as.Topics[n-1].Topic == tp.Topic {
			as.Topics[n-1].Partitions = append(as.Topics[n-1].Partitions, tp.Partition)
			continue
		}
		t := kmsg.NewConsumerMemberAssignmentTopic()
		t.Topic, t.Partitions = tp.Topic, []int32{tp.Partition}
		as.Topics = append(as.Topics, t)
	}
	return md.AppendTo(nil), as.AppendTo(nil)
}
