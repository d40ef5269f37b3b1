package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/partition"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// server implements the public gRPC service over a Broker.
type server struct {
	pb.UnimplementedSkeinServer
	b *Broker
}

const (
	defaultFetchMaxBytes = 1 << 20
	minFetchMaxBytes     = 1 << 10
	maxFetchMaxBytes     = 16 << 20
	defaultFetchWait     = 500 * time.Millisecond
	minFetchWait         = 10 * time.Millisecond
	maxFetchWait         = 30 * time.Second
	maxProduceTimeout    = 5 * time.Minute
	// streamInFlight bounds the produce requests one stream may have
	// waiting for an answer; past it the broker stops reading the stream
	// and HTTP/2 flow control holds the client back.
	streamInFlight = 1024
)

// ---- topics and metadata ----------------------------------------------------

func (s *server) CreateTopic(ctx context.Context, req *pb.CreateTopicRequest) (*pb.CreateTopicResponse, error) {
	spec := cluster.TopicSpec{
		Name:              req.Name,
		Partitions:        req.Partitions,
		ReplicationFactor: req.ReplicationFactor,
		MinInsyncReplicas: req.MinInsyncReplicas,
		RetentionMs:       req.RetentionMs,
		RetentionBytes:    req.RetentionBytes,
		MaxRecordBytes:    req.MaxRecordBytes,
		KeyIndex:          req.KeyIndex,
		CleanupPolicy:     req.CleanupPolicy,
		DeleteRetentionMs: req.DeleteRetentionMs,
	}
	if err := s.b.checkCompactable(req.CleanupPolicy); err != nil {
		return nil, toStatus(err)
	}
	if req.Partitions < 0 {
		return nil, toStatus(invalid("partitions %d: must be at least 1", req.Partitions))
	}
	if req.ReplicationFactor < 0 {
		return nil, toStatus(invalid("replication factor %d: must be at least 1", req.ReplicationFactor))
	}
	if err := s.b.checkTopicHandles(spec); err != nil {
		return nil, toStatus(err)
	}
	t, err := s.b.ctrl.CreateTopic(ctx, spec)
	if errors.Is(err, cluster.ErrNotController) {
		var nc *cluster.NotControllerError
		uncertain := errors.As(err, &nc) && nc.Uncertain
		var resp *pb.CreateTopicResponse
		attempts := 0
		err := s.b.forward(ctx, func(ctx context.Context, c pb.SkeinClient) (err error) {
			attempts++
			resp, err = c.CreateTopic(ctx, req)
			return err
		})
		if err != nil && (uncertain || attempts > 1) && status.Code(err) == codes.AlreadyExists {
			// An earlier attempt may have created it and its answer was
			// lost: the same topic is this create's success.
			s.b.awaitMetadata(ctx, func(snap *cluster.Snapshot) bool { _, ok := snap.Topics[req.Name]; return ok })
			if t, ok := s.b.snapshot().Topics[req.Name]; ok && spec.Matches(t.Config) {
				return &pb.CreateTopicResponse{Topic: topicToPB(t)}, nil
			}
		}
		if err != nil {
			return nil, err
		}
		s.b.awaitMetadata(ctx, func(snap *cluster.Snapshot) bool { _, ok := snap.Topics[req.Name]; return ok })
		return resp, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	// Open the local replicas before answering, and wait (bounded) until
	// every broker with a replica knows the topic, so a produce right after
	// CreateTopic finds it wherever it goes.
	if err := s.b.reconcile(); err != nil {
		return nil, toStatus(err)
	}
	s.b.awaitTopicEverywhere(ctx, t, nil)
	s.b.log.Info("topic created", "topic", t.Name, "partitions", t.Config.Partitions, "replication_factor", t.Config.ReplicationFactor)
	return &pb.CreateTopicResponse{Topic: topicToPB(t)}, nil
}

func (s *server) DeleteTopic(ctx context.Context, req *pb.DeleteTopicRequest) (*pb.DeleteTopicResponse, error) {
	if err := cluster.ValidateTopicName(req.Name); err != nil {
		return nil, toStatus(err)
	}
	err := s.b.ctrl.DeleteTopic(ctx, req.Name)
	if errors.Is(err, cluster.ErrNotController) {
		if err := s.b.forward(ctx, func(ctx context.Context, c pb.SkeinClient) error {
			_, err := c.DeleteTopic(ctx, req)
			return err
		}); err != nil {
			return nil, err
		}
		s.b.awaitMetadata(ctx, func(snap *cluster.Snapshot) bool { _, ok := snap.Topics[req.Name]; return !ok })
		return &pb.DeleteTopicResponse{}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.b.reconcile(); err != nil {
		return nil, toStatus(err)
	}
	s.b.log.Info("topic deleted", "topic", req.Name)
	return &pb.DeleteTopicResponse{}, nil
}

func (s *server) ListTopics(ctx context.Context, req *pb.ListTopicsRequest) (*pb.ListTopicsResponse, error) {
	snap := s.b.snapshot()
	resp := &pb.ListTopicsResponse{}
	for _, name := range snap.TopicNames() {
		if isInternalTopic(name) && !req.Internal {
			continue
		}
		resp.Topics = append(resp.Topics, topicToPB(snap.Topics[name]))
	}
	return resp, nil
}

func (s *server) DescribeTopic(ctx context.Context, req *pb.DescribeTopicRequest) (*pb.DescribeTopicResponse, error) {
	snap := s.b.snapshot()
	t, ok := snap.Topics[req.Name]
	if !ok {
		_, _, _, err := s.b.lookup(req.Name, 0)
		return nil, toStatus(err)
	}
	resp := &pb.DescribeTopicResponse{Topic: topicToPB(t)}
	for _, pm := range t.Partitions {
		ps := &pb.PartitionStatus{
			Partition: pm.Partition, Leader: pm.Leader, LeaderEpoch: pm.LeaderEpoch,
			Replicas: pm.Replicas, Isr: pm.ISR,
			LogStartOffset: -1, HighWatermark: -1, LogEndOffset: -1, SizeBytes: -1,
		}
		r := s.b.localReplica(t.Name, pm.Partition)
		switch {
		case r != nil && pm.Leader == s.b.self.ID:
			st := r.p.State()
			ps.LogStartOffset, ps.HighWatermark, ps.LogEndOffset, ps.SizeBytes = st.LogStartOffset, st.HighWatermark, st.LogEndOffset, st.SizeBytes
		case pm.Leader < 0:
			ps.Error = "no leader: every in-sync replica is down"
		default:
			// Ask the leader for its offsets.
			c, err := s.b.peers.internal(pm.Leader)
			if err == nil {
				var ll *pb.LocalLogResponse
				ll, err = c.LocalLog(ctx, &pb.LocalLogRequest{Topic: t.Name, Partition: pm.Partition})
				if err == nil {
					ps.LogStartOffset, ps.HighWatermark, ps.LogEndOffset = ll.LogStartOffset, ll.HighWatermark, ll.LogEndOffset
					if r != nil {
						ps.SizeBytes = r.p.State().SizeBytes
					}
				}
			}
			if err != nil {
				ps.Error = fmt.Sprintf("leader %d unreachable: %v", pm.Leader, err)
			}
		}
		resp.Partitions = append(resp.Partitions, ps)
	}
	return resp, nil
}

func (s *server) Metadata(ctx context.Context, req *pb.MetadataRequest) (*pb.MetadataResponse, error) {
	snap := s.b.snapshot()
	resp := &pb.MetadataResponse{ClusterId: snap.ClusterID, ControllerId: s.b.ctrl.ControllerID()}
	ext := s.b.external(ctx)
	for _, bi := range snap.Brokers {
		resp.Brokers = append(resp.Brokers, &pb.BrokerInfo{Id: bi.ID, Addr: clientAddr(bi, ext), Rack: bi.Rack})
	}
	names := req.Topics
	if len(names) == 0 {
		names = snap.TopicNames()
	}
	for _, n := range names {
		t, ok := snap.Topics[n]
		if !ok {
			_, _, _, err := s.b.lookup(n, 0)
			return nil, toStatus(err)
		}
		resp.Topics = append(resp.Topics, topicToPB(t))
	}
	return resp, nil
}

func topicToPB(t cluster.Topic) *pb.TopicMetadata {
	m := &pb.TopicMetadata{
		Name:    t.Name,
		TopicId: t.ID,
		Config: &pb.TopicConfig{
			Partitions:        t.Config.Partitions,
			ReplicationFactor: t.Config.ReplicationFactor,
			MinInsyncReplicas: t.Config.MinInsyncReplicas,
			RetentionMs:       t.Config.RetentionMs,
			RetentionBytes:    t.Config.RetentionBytes,
			MaxRecordBytes:    t.Config.MaxRecordBytes,
			KeyIndex:          t.Config.KeyIndex,
			CleanupPolicy:     t.Config.Policy(),
			DeleteRetentionMs: t.Config.DeleteRetention(),
		},
	}
	for _, pm := range t.Partitions {
		m.Partitions = append(m.Partitions, &pb.PartitionMetadata{
			Partition: pm.Partition, Leader: pm.Leader, LeaderEpoch: pm.LeaderEpoch,
			Replicas: pm.Replicas, Isr: pm.ISR, PartitionEpoch: pm.PartitionEpoch,
		})
	}
	return m
}

// ---- produce ----------------------------------------------------------------

// produce starts one produce request; done runs exactly once with the
// response (error inside), possibly on another goroutine, and must not block.
func (s *server) produce(external bool, req *pb.ProduceRequest, answer func(*pb.ProduceResponse)) {
	began := time.Now()
	done := func(resp *pb.ProduceResponse) {
		s.b.metrics.observeRequest("produce", began)
		answer(resp)
	}
	fail := func(err error) {
		done(&pb.ProduceResponse{CorrelationId: req.CorrelationId, BaseOffset: -1, LogStartOffset: -1, LeaderEpoch: -1, Error: s.b.detail(external, err)})
	}
	select {
	case <-s.b.stopping:
		fail(errShuttingDown)
		return
	default:
	}
	acks, expected, err := produceParams(req)
	if err != nil {
		fail(err)
		return
	}
	if isInternalTopic(req.Topic) {
		fail(fmt.Errorf("%w: %q is an internal topic: clients cannot produce to it (commit offsets with a group consumer)", cluster.ErrInvalidTopic, req.Topic))
		return
	}
	r, err := s.b.leaderReplica(req.Topic, req.Partition)
	if err != nil {
		fail(err)
		return
	}
	if err := s.b.checkProducerID(req.Batch); err != nil {
		fail(err)
		return
	}
	timeout := min(time.Duration(req.TimeoutMs)*time.Millisecond, maxProduceTimeout)
	n := len(req.Batch)
	inflated, err := s.b.admitProduce(r, req.Batch)
	if err != nil {
		fail(err)
		return
	}
	r.p.Enqueue(partition.AppendRequest{
		Batch:           req.Batch,
		LeaderEpoch:     req.LeaderEpoch,
		ExpectedOffset:  expected,
		KeyExpectations: keyExpectations(req),
		Acks:            acks,
		Timeout:         timeout,
	}, func(res partition.AppendResult, err error) {
		s.b.inflight.release(int64(n))
		if err != nil {
			s.b.metrics.produceFailed(err)
			fail(err)
			return
		}
		if !res.Duplicate {
			s.b.metrics.produced(res.LastOffset-res.BaseOffset+1, n)
		}
		done(&pb.ProduceResponse{CorrelationId: req.CorrelationId, BaseOffset: res.BaseOffset, LogStartOffset: res.LogStartOffset, LeaderEpoch: res.LeaderEpoch})
	})
	// Enqueue validated (inflated) the batch before it returned.
	s.b.inflight.release(inflated)
}

// produceParams checks a produce request's acks, timeout, leader epoch and
// expected offset, and returns the partition's acks and the expected offset
// (-1: unconditional).
func produceParams(req *pb.ProduceRequest) (partition.Acks, int64, error) {
	var acks partition.Acks
	switch req.Acks {
	case pb.Acks_ACKS_ALL:
		acks = partition.AcksAll
	case pb.Acks_ACKS_LEADER, pb.Acks_ACKS_NONE:
		acks = partition.AcksLeader
	default:
		return 0, 0, invalid("acks %d: want ACKS_ALL (0), ACKS_LEADER (1) or ACKS_NONE (2)", req.Acks)
	}
	if req.TimeoutMs < 0 {
		return 0, 0, invalid("timeout_ms %d: must not be negative", req.TimeoutMs)
	}
	if req.LeaderEpoch < -1 {
		return 0, 0, invalid("leader_epoch %d: -1 (any) or a known epoch", req.LeaderEpoch)
	}
	expected := int64(-1)
	if req.ExpectedOffset != nil {
		if *req.ExpectedOffset < 0 {
			return 0, 0, invalid("expected_offset %d: must not be negative", *req.ExpectedOffset)
		}
		expected = *req.ExpectedOffset
	}
	return acks, expected, nil
}

func (s *server) Produce(ctx context.Context, req *pb.ProduceRequest) (*pb.ProduceResponse, error) {
	c := callerOf(ctx)
	c.note(s.b.quotas.record(c.user, c.clientID, cluster.QuotaProduce, float64(len(req.Batch))))
	ch := make(chan *pb.ProduceResponse, 1)
	s.produce(s.b.external(ctx), req, func(r *pb.ProduceResponse) { ch <- r })
	select {
	case r := <-ch:
		if r.Error != nil {
			return nil, detailStatus(r.Error)
		}
		return r, nil
	case <-ctx.Done():
		return nil, toStatus(ctx.Err())
	}
}

func (s *server) ProduceStream(stream pb.Skein_ProduceStreamServer) error {
	ctx := stream.Context()
	external := s.b.external(ctx)
	c := callerOf(ctx)
	reqs, recvErr := recvProduces(ctx, stream)
	out := make(chan *pb.ProduceResponse, streamInFlight)
	slots := make(chan struct{}, streamInFlight)
	var inflight sync.WaitGroup
	sendErr, sent := sendProduceAnswers(stream, out, slots)
	finish := func(err error) error {
		inflight.Wait()
		close(out)
		<-sent
		select {
		case serr := <-sendErr:
			if err == nil {
				err = serr
			}
		default:
		}
		return err
	}
	for {
		select {
		case req := <-reqs:
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return finish(ctx.Err())
			}
			inflight.Add(1)
			throttle := s.streamThrottle(c, req)
			s.produce(external, req, func(r *pb.ProduceResponse) {
				r.ThrottleTimeMs = throttleMs(throttle)
				out <- r
				inflight.Done()
			})
			// Over a quota: read nothing more for the throttle time, so
			// HTTP/2 flow control holds the producer back.
			if throttle > 0 {
				if err := s.b.throttleWait(ctx, throttle); err != nil {
					return finish(toStatus(err))
				}
			}
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return finish(nil)
			}
			return finish(err)
		case <-s.b.stopping:
			return finish(toStatus(errShuttingDown))
		case err := <-sendErr:
			return finish(err)
		}
	}
}

// recvProduces reads a produce stream on a goroutine of its own, so the
// handler can also watch for shutdown; requests come out in the order they
// arrived, and the read error (io.EOF at the end) on the second channel.
func recvProduces(ctx context.Context, stream pb.Skein_ProduceStreamServer) (<-chan *pb.ProduceRequest, <-chan error) {
	reqs := make(chan *pb.ProduceRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	return reqs, recvErr
}

// sendProduceAnswers sends the answers put on out, freeing a slot for
// each (after a failed send they are dropped); the first send error goes
// on the first channel, and the second closes once out is closed and
// drained.
func sendProduceAnswers(stream pb.Skein_ProduceStreamServer, out <-chan *pb.ProduceResponse, slots <-chan struct{}) (<-chan error, <-chan struct{}) {
	sendErr := make(chan error, 1)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		var failed bool
		for r := range out {
			if !failed {
				if err := stream.Send(r); err != nil {
					failed = true
					sendErr <- err
				}
			}
			<-slots
		}
	}()
	return sendErr, sent
}

// streamThrottle counts one ProduceStream request against its caller's
// request and produce quotas and returns the longer throttle.
func (s *server) streamThrottle(c *caller, req *pb.ProduceRequest) time.Duration {
	q := s.b.quotas
	return max(q.record(c.user, c.clientID, cluster.QuotaRequest, 1),
		q.record(c.user, c.clientID, cluster.QuotaProduce, float64(len(req.Batch))))
}

// ---- fetch ------------------------------------------------------------------

func clampDuration(ms int32, def, lo, hi time.Duration) time.Duration {
	if ms <= 0 {
		return def
	}
	return max(lo, min(hi, time.Duration(ms)*time.Millisecond))
}

// ---- offsets ----------------------------------------------------------------

func (s *server) ListOffsets(ctx context.Context, req *pb.ListOffsetsRequest) (*pb.ListOffsetsResponse, error) {
	r, err := s.b.leaderReplica(req.Topic, req.Partition)
	if err != nil {
		return nil, s.b.status(ctx, err)
	}
	if !r.p.HWReady() {
		return nil, toStatus(fmt.Errorf("%w: the leader is catching up its high watermark after an election; retry", errNotReady))
	}
	st := r.p.State()
	resp := &pb.ListOffsetsResponse{TimestampMs: -1, LogStartOffset: st.LogStartOffset, HighWatermark: st.HighWatermark}
	switch spec := req.Spec.(type) {
	case *pb.ListOffsetsRequest_Earliest:
		resp.Offset = st.LogStartOffset
	case *pb.ListOffsetsRequest_Latest:
		resp.Offset = st.HighWatermark
	case *pb.ListOffsetsRequest_TimestampMs:
		off, ts, err := r.p.OffsetForTimestamp(spec.TimestampMs)
		if err != nil {
			return nil, toStatus(err)
		}
		resp.Offset, resp.TimestampMs = off, ts
	default:
		return nil, toStatus(invalid("spec: set one of earliest, latest or timestamp_ms"))
	}
	return resp, nil
}
