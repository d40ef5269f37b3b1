package broker

import (
	"github.com/skeinlog/skein/auth"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// check is one permission a request needs: op on res, or — with anyOf —
// on res or any of anyOf (creating a topic: create on the topic or on the
// cluster). anyTopic asks for op on some topic (an idempotent producer id).
type check struct {
	op       auth.Operation
	res      auth.Resource
	anyOf    []auth.Resource
	anyTopic bool
}

// rpcRule is what one public RPC needs. checks derives the permissions
// from the request (each message, for a stream); audit, when set, says
// whether the call is an admin change to write to the audit log; filter
// drops from an answer what the caller may not see.
type rpcRule struct {
	checks func(req any) []check
	audit  func(req any) bool
	filter func(a *auth.Authorizer, p auth.Principal, resp any)
}

// rpcRules maps every public RPC to the permissions it needs: the one
// place authorization is decided for the gRPC API. An RPC missing here is
// refused (TestEveryRPCHasARule fails first).
var rpcRules = map[string]rpcRule{
	"/skein.v1.Skein/CreateTopic": {checks: func(r any) []check {
		return []check{{op: auth.Create, res: auth.TopicResource(r.(*pb.CreateTopicRequest).Name), anyOf: []auth.Resource{auth.ClusterResource()}}}
	}, audit: always},
	"/skein.v1.Skein/DeleteTopic":     {checks: topicCheck(auth.Delete, func(r any) string { return r.(*pb.DeleteTopicRequest).Name }), audit: always},
	"/skein.v1.Skein/AlterTopic":      {checks: topicCheck(auth.Alter, func(r any) string { return r.(*pb.AlterTopicRequest).Name }), audit: always},
	"/skein.v1.Skein/SetBrokerConfig": {checks: clusterCheck(auth.Alter), audit: always},
	"/skein.v1.Skein/GetBrokerConfig": {checks: clusterCheck(auth.Describe)},
	"/skein.v1.Skein/ListTopics":      {checks: none, filter: filterTopics},
	"/skein.v1.Skein/DescribeTopic":   {checks: topicCheck(auth.Describe, func(r any) string { return r.(*pb.DescribeTopicRequest).Name })},
	"/skein.v1.Skein/Metadata":        {checks: metadataChecks, filter: filterTopics},
	"/skein.v1.Skein/InitProducer": {checks: func(any) []check {
		return []check{{op: auth.Write, anyTopic: true}}
	}},
	"/skein.v1.Skein/Produce":             {checks: topicCheck(auth.Write, func(r any) string { return r.(*pb.ProduceRequest).Topic })},
	"/skein.v1.Skein/ProduceStream":       {checks: topicCheck(auth.Write, func(r any) string { return r.(*pb.ProduceRequest).Topic })},
	"/skein.v1.Skein/Fetch":               {checks: topicCheck(auth.Read, func(r any) string { return r.(*pb.FetchRequest).Topic })},
	"/skein.v1.Skein/GetKey":              {checks: topicCheck(auth.Read, func(r any) string { return r.(*pb.GetKeyRequest).Topic })},
	"/skein.v1.Skein/ListOffsets":         {checks: topicCheck(auth.Describe, func(r any) string { return r.(*pb.ListOffsetsRequest).Topic })},
	"/skein.v1.Skein/DescribeCluster":     {checks: clusterCheck(auth.Describe)},
	"/skein.v1.Skein/ListQuotas":          {checks: clusterCheck(auth.Describe)},
	"/skein.v1.Skein/AlterQuota":          {checks: clusterCheck(auth.Alter), audit: always},
	"/skein.v1.Skein/PlanReassignment":    {checks: clusterCheck(auth.Describe)},
	"/skein.v1.Skein/ReassignmentStatus":  {checks: clusterCheck(auth.Describe)},
	"/skein.v1.Skein/ExecuteReassignment": {checks: clusterCheck(auth.Alter), audit: always},
	"/skein.v1.Skein/CancelReassignment":  {checks: clusterCheck(auth.Alter), audit: always},
	"/skein.v1.Skein/Decommission":        {checks: clusterCheck(auth.Alter), audit: always},

	"/skein.v1.Groups/FindCoordinator": {checks: groupCheck(auth.Describe, func(r any) string { return r.(*pb.FindCoordinatorRequest).Group })},
	"/skein.v1.Groups/Heartbeat":       {checks: heartbeatChecks},
	"/skein.v1.Groups/CommitOffsets":   {checks: commitChecks, audit: adminCommit},
	"/skein.v1.Groups/FetchOffsets":    {checks: groupCheck(auth.Describe, func(r any) string { return r.(*pb.FetchOffsetsRequest).Group })},
	"/skein.v1.Groups/ListGroups":      {checks: none, filter: filterGroups},
	"/skein.v1.Groups/DescribeGroup":   {checks: groupCheck(auth.Describe, func(r any) string { return r.(*pb.DescribeGroupRequest).Group })},
	"/skein.v1.Groups/DeleteGroup":     {checks: groupCheck(auth.Delete, func(r any) string { return r.(*pb.DeleteGroupRequest).Group }), audit: always},

	"/skein.v1.Security/PutUser":    {checks: clusterCheck(auth.Alter), audit: always},
	"/skein.v1.Security/DeleteUser": {checks: clusterCheck(auth.Alter), audit: always},
	"/skein.v1.Security/ListUsers":  {checks: clusterCheck(auth.Describe)},
	"/skein.v1.Security/AddACL":     {checks: clusterCheck(auth.Alter), audit: always},
	"/skein.v1.Security/RemoveACL":  {checks: clusterCheck(auth.Alter), audit: always},
	"/skein.v1.Security/ListACLs":   {checks: clusterCheck(auth.Describe)},
}

func always(any) bool        { return true }
func none(any) []check       { return nil }
func adminCommit(r any) bool { return r.(*pb.CommitOffsetsRequest).MemberId == "" }

// topicNeed is op on topic name; on an internal topic (the offsets topic)
// anything but describe is cluster_action: only the brokers and super
// users may write or read it directly.
func topicNeed(op auth.Operation, name string) check {
	if isInternalTopic(name) && op != auth.Describe {
		return check{op: auth.ClusterAction, res: auth.ClusterResource()}
	}
	return check{op: op, res: auth.TopicResource(name)}
}

func topicCheck(op auth.Operation, name func(any) string) func(any) []check {
	return func(r any) []check { return []check{topicNeed(op, name(r))} }
}

func groupCheck(op auth.Operation, name func(any) string) func(any) []check {
	return func(r any) []check { return []check{{op: op, res: auth.GroupResource(name(r))}} }
}

func clusterCheck(op auth.Operation) func(any) []check {
	return func(any) []check { return []check{{op: op, res: auth.ClusterResource()}} }
}

// metadataChecks: describe on each topic named; asking for every topic
// needs nothing (the answer is filtered).
func metadataChecks(r any) []check {
	var out []check
	for _, t := range r.(*pb.MetadataRequest).Topics {
		out = append(out, topicNeed(auth.Describe, t))
	}
	return out
}

// heartbeatChecks: a member needs read on its group and on each topic it
// subscribes to by name. A regular expression subscription is checked when
// the member fetches.
func heartbeatChecks(r any) []check {
	req := r.(*pb.GroupHeartbeatRequest)
	out := []check{{op: auth.Read, res: auth.GroupResource(req.Group)}}
	for _, t := range req.Topics {
		out = append(out, topicNeed(auth.Read, t))
	}
	return out
}

// commitChecks: read on the group and on each topic committed for.
func commitChecks(r any) []check {
	req := r.(*pb.CommitOffsetsRequest)
	out := []check{{op: auth.Read, res: auth.GroupResource(req.Group)}}
	seen := map[string]bool{}
	for _, o := range req.Offsets {
		if !seen[o.Topic] {
			seen[o.Topic] = true
			out = append(out, topicNeed(auth.Read, o.Topic))
		}
	}
	return out
}

// filterTopics keeps the topics p may describe.
func filterTopics(a *auth.Authorizer, p auth.Principal, resp any) {
	keep := func(ts []*pb.TopicMetadata) []*pb.TopicMetadata {
		out := ts[:0]
		for _, t := range ts {
			if a.Decide(p, auth.Describe, auth.TopicResource(t.Name)).Allowed {
				out = append(out, t)
			}
		}
		return out
	}
	switch r := resp.(type) {
	case *pb.ListTopicsResponse:
		r.Topics = keep(r.Topics)
	case *pb.MetadataResponse:
		r.Topics = keep(r.Topics)
	}
}

// filterGroups keeps the groups p may describe.
func filterGroups(a *auth.Authorizer, p auth.Principal, resp any) {
	r := resp.(*pb.ListGroupsResponse)
	out := r.Groups[:0]
	for _, g := range r.Groups {
		if a.Decide(p, auth.Describe, auth.GroupResource(g.Group)).Allowed {
			out = append(out, g)
		}
	}
	r.Groups = out
}
