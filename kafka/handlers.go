package kafka

import (
	"context"
	"encoding/hex"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/skeinlog/skein/auth"
	"github.com/skeinlog/skein/internal/topicname"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// conn is one client connection's request context.
type conn struct {
	s        *Server
	ctx      context.Context // cancelled when the connection or the server closes
	remote   string
	handlers *sync.WaitGroup // handler goroutines of this connection
	conv     *converter      // used by the reading goroutine only
	owned    ownedMemo       // group members' owned partitions
	// mutedUntil (Unix ns): over a quota, the connection is not read
	// before then.
	mutedUntil atomic.Int64
	// principal is who the client authenticated as (ANONYMOUS until it
	// does). Written by the reading goroutine only, before it starts the
	// handlers that read it.
	principal auth.Principal
	saslState *saslState // used by the reading goroutine only
}

// dispatch starts work on one decoded request. Produce is started here, on
// the reading goroutine, so appends to a partition keep the order of the
// requests (an idempotent producer relies on it); its answer comes from the
// partition. Everything else runs on its own goroutine, bounded by the
// connection's in-flight limit.
// dispatch returns false when the connection must close after this
// request's answer: a failed authentication, or a request the listener may
// not serve.
func (c *conn) dispatch(p *pending, req kmsg.Request) bool {
	if req == nil {
		return true // answered while decoding
	}
	if ok := c.gate(p, req); !ok || p.resp != nil {
		return ok
	}
	if r, ok := req.(*kmsg.ProduceRequest); ok {
		c.produce(p, r)
		return true
	}
	c.handlers.Add(1)
	go func() {
		defer c.handlers.Done()
		resp := c.handle(p.clientID, req)
		if fr, ok := resp.(*kmsg.FetchResponse); ok {
			c.throttleFetch(p, fr)
		}
		p.answer(resp)
	}()
	return true
}

// gate runs the SASL exchange and the authorization hook on the reading
// goroutine, before a request is worked on. It answers p itself when the
// request is refused or is part of SASL; false means close the connection
// after that answer.
func (c *conn) gate(p *pending, req kmsg.Request) bool {
	if isSASL(req) {
		resp, closeConn := c.sasl(req)
		p.last = closeConn
		p.answer(resp)
		return !closeConn
	}
	if _, versions := req.(*kmsg.ApiVersionsRequest); c.saslPending() && !versions {
		c.s.log.Warn("kafka: closing connection: a request before SASL authentication finished", "remote", c.remote, "api", kmsg.NameForKey(req.Key()))
		p.last = true
		p.answer(nil)
		return false
	}
	deny, post, ok := c.authorize(req)
	if !ok {
		c.s.log.Warn("kafka: closing connection: no authorization hook for this API", "remote", c.remote, "api", kmsg.NameForKey(req.Key()))
		p.last = true
		p.answer(nil)
		return false
	}
	if deny != nil {
		p.answer(deny)
		return true
	}
	p.post = post
	return true
}

func (c *conn) handle(clientID string, req kmsg.Request) kmsg.Response {
	switch r := req.(type) {
	case *kmsg.ApiVersionsRequest:
		return apiVersionsResponse()
	case *kmsg.MetadataRequest:
		return c.metadata(r)
	case *kmsg.FetchRequest:
		return c.fetch(r)
	case *kmsg.ListOffsetsRequest:
		return c.listOffsets(r)
	case *kmsg.CreateTopicsRequest:
		return c.createTopics(r)
	case *kmsg.DeleteTopicsRequest:
		return c.deleteTopics(r)
	case *kmsg.InitProducerIDRequest:
		return c.initProducerID(r)
	case *kmsg.DescribeConfigsRequest:
		return c.describeConfigs(r)
	case *kmsg.FindCoordinatorRequest:
		return c.findCoordinator(r)
	case *kmsg.ConsumerGroupHeartbeatRequest:
		return c.consumerGroupHeartbeat(r)
	case *kmsg.OffsetCommitRequest:
		return c.offsetCommit(r)
	case *kmsg.OffsetFetchRequest:
		return c.offsetFetch(r)
	case *kmsg.ListGroupsRequest:
		return c.listGroups(r)
	case *kmsg.DeleteGroupsRequest:
		return c.deleteGroups(r)
	case *kmsg.JoinGroupRequest:
		return c.joinGroup(clientID, r)
	case *kmsg.SyncGroupRequest:
		return c.syncGroup(r)
	case *kmsg.HeartbeatRequest:
		return c.heartbeat(r)
	case *kmsg.LeaveGroupRequest:
		return c.leaveGroup(r)
	case *kmsg.DescribeGroupsRequest:
		return c.describeGroups(r)
	case *kmsg.CreatePartitionsRequest:
		return c.createPartitions(r)
	case *kmsg.IncrementalAlterConfigsRequest:
		return c.incrementalAlterConfigs(r)
	case *kmsg.AlterConfigsRequest:
		return c.alterConfigsLegacy(r)
	}
	// decodeRequest only passes the keys in supported.
	panic("kafka: no handler for " + kmsg.NameForKey(req.Key()))
}

// ---- metadata ---------------------------------------------------------------

func (c *conn) metadata(req *kmsg.MetadataRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	md, err := c.s.be.Metadata(c.ctx)
	if err != nil {
		md = &pb.MetadataResponse{ControllerId: -1}
	}
	resp.ClusterID = &md.ClusterId
	resp.ControllerID = md.ControllerId
	for _, bi := range md.Brokers {
		host, port, perr := splitHostPort(bi.Addr)
		if perr != nil {
			continue
		}
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID, b.Host, b.Port = bi.Id, host, port
		if bi.Rack != "" {
			b.Rack = &bi.Rack
		}
		resp.Brokers = append(resp.Brokers, b)
	}
	byName := map[string]*pb.TopicMetadata{}
	for _, t := range md.Topics {
		byName[t.Name] = t
	}
	// Null (or, in version 0, empty) asks for every topic.
	if req.Topics == nil || req.Version == 0 && len(req.Topics) == 0 {
		for _, t := range md.Topics {
			resp.Topics = append(resp.Topics, metadataTopic(t.Name, t, nil))
		}
		return resp
	}
	for _, rt := range req.Topics {
		if rt.Topic == nil {
			t := kmsg.NewMetadataResponseTopic()
			t.TopicID = rt.TopicID
			t.ErrorCode = kerr.UnknownTopicID.Code
			resp.Topics = append(resp.Topics, t)
			continue
		}
		name := *rt.Topic
		terr := err
		if terr == nil && byName[name] == nil {
			terr = unknownTopic(name)
		}
		resp.Topics = append(resp.Topics, metadataTopic(name, byName[name], terr))
	}
	return resp
}

// unknownTopic is the error for a topic the metadata lacks: invalid name
// or unknown.
func unknownTopic(name string) error {
	if err := topicname.Check(name); err != nil {
		return &detailError{&pb.ErrorDetail{Reason: pb.ErrorReason_INVALID_TOPIC, Message: err.Error()}}
	}
	return &detailError{&pb.ErrorDetail{Reason: pb.ErrorReason_UNKNOWN_TOPIC, Message: "unknown topic " + name}}
}

func metadataTopic(name string, t *pb.TopicMetadata, err error) kmsg.MetadataResponseTopic {
	rt := kmsg.NewMetadataResponseTopic()
	rt.Topic = &name
	if err != nil || t == nil {
		rt.ErrorCode = errorCode(err)
		return rt
	}
	rt.TopicID = topicID(t.TopicId)
	rt.IsInternal = strings.HasPrefix(name, "__") // the broker's own, such as __consumer_offsets
	for _, pm := range t.Partitions {
		p := kmsg.NewMetadataResponseTopicPartition()
		p.Partition, p.Leader, p.LeaderEpoch = pm.Partition, pm.Leader, pm.LeaderEpoch
		p.Replicas, p.ISR = append([]int32{}, pm.Replicas...), append([]int32{}, pm.Isr...)
		if pm.Leader < 0 {
			p.ErrorCode = kerr.LeaderNotAvailable.Code
		}
		rt.Partitions = append(rt.Partitions, p)
	}
	return rt
}

// topicID is a Skein topic id (32 hex digits) as a Kafka UUID; zero if it
// is not one.
func topicID(id string) [16]byte {
	var u [16]byte
	if b, err := hex.DecodeString(id); err == nil && len(b) == 16 {
		copy(u[:], b)
	}
	return u
}

func splitHostPort(addr string) (string, int32, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return "", 0, err
	}
	return host, int32(port), nil
}

// ---- offsets ----------------------------------------------------------------

const (
	timestampLatest   = -1
	timestampEarliest = -2
)

func (c *conn) listOffsets(req *kmsg.ListOffsetsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		t := kmsg.NewListOffsetsResponseTopic()
		t.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			p := kmsg.NewListOffsetsResponseTopicPartition()
			p.Partition = rp.Partition
			p.Offset, p.Timestamp, p.LeaderEpoch = -1, -1, -1
			q := &pb.ListOffsetsRequest{Topic: rt.Topic, Partition: rp.Partition}
			switch ts := rp.Timestamp; {
			case ts == timestampEarliest:
				q.Spec = &pb.ListOffsetsRequest_Earliest{Earliest: true}
			case ts == timestampLatest:
				q.Spec = &pb.ListOffsetsRequest_Latest{Latest: true}
			case ts >= 0:
				q.Spec = &pb.ListOffsetsRequest_TimestampMs{TimestampMs: ts}
			}
			if q.Spec == nil {
				p.ErrorCode = errorCode(badRequest("timestamp %d: want -2 (earliest), -1 (latest) or a unix time in ms", rp.Timestamp))
			} else if r, err := c.s.be.ListOffsets(c.ctx, q); err != nil {
				p.ErrorCode = errorCode(err)
			} else {
				p.Offset = r.Offset
				if rp.Timestamp >= 0 {
					p.Timestamp = r.TimestampMs
					if r.TimestampMs < 0 {
						p.Offset = -1 // no record at or after it, as Kafka answers
					}
				}
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

// ---- producers --------------------------------------------------------------

func (c *conn) initProducerID(req *kmsg.InitProducerIDRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if req.TransactionalID != nil {
		// No transaction coordinator: a transactional producer cannot work.
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp
	}
	q := &pb.InitProducerRequest{}
	if req.ProducerID >= 0 {
		id := req.ProducerID
		q.ProducerId, q.ProducerEpoch = &id, int32(req.ProducerEpoch)
	}
	r, err := c.s.be.InitProducer(c.ctx, q)
	if err != nil {
		resp.ErrorCode = errorCode(err)
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = r.ProducerId, int16(r.ProducerEpoch)
	return resp
}

// requestTimeout bounds an admin request by the client's timeout.
func (c *conn) requestTimeout(ms int32) (context.Context, context.CancelFunc) {
	d := time.Duration(ms) * time.Millisecond
	if d <= 0 || d > time.Minute {
		d = time.Minute
	}
	return context.WithTimeout(c.ctx, d)
}
