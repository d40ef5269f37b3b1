// Package fakebroker is an in-memory twin of a Skein cluster for client
// tests: one or more nodes serving the public skein.v1 API over gRPC (on
// bufconn listeners, or loopback TCP for tests of binaries), sharing one
// in-memory state. Each partition keeps its log as a list of stamped record
// batches and has a leader node and a leader epoch; produce requests are
// checked as the real broker checks them (leader, epoch, batch validity,
// expected offset) and fetch streams long-poll at the high watermark.
//
// Tests steer it: move a partition's leader (bumping its epoch), leave a
// partition leaderless, delay, fail or block produce requests through a
// hook, lose the answer to a request it processed, drop every open stream,
// or move a log's start offset. Every record is committed as soon as it is
// appended (the high watermark is the log end offset), as on a single
// broker with acks after append.
//
// Idempotent producers get ids from InitProducer, and each partition keeps
// its own simple model of the broker's producer rules (the client must not
// import the broker's): per producer id the epoch and the last 5 batches;
// a batch equal to one of them is answered with its original offset and
// not appended; an older epoch is PRODUCER_FENCED; a new epoch or unknown
// id must start at sequence 0, and otherwise a batch must follow the
// previous one, else OUT_OF_ORDER_SEQUENCE; all before the expected-offset
// check.
//
// The fake does not import the client: it maps errors to gRPC statuses on
// its own, as the broker does, so the client's decoding is tested against an
// independent encoding.
package fakebroker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/proto/skeinv1"
)

// Options configure a Cluster.
type Options struct {
	// Nodes is the number of brokers, with ids 1..Nodes. Default 1.
	Nodes int
	// TCP serves on 127.0.0.1 ports chosen by the kernel instead of
	// bufconn, so that other processes (or code dialling real addresses)
	// can reach it.
	TCP bool
	// MaxRecordBytes is the default max record bytes of new topics.
	// Default 1 MiB.
	MaxRecordBytes int32
	// TLS, when set, makes the nodes serve TLS with this configuration.
	TLS *tls.Config
}

// Action is what a produce hook asks the fake to do with one request.
type Action struct {
	// Delay holds the request (and, on a stream, the ones after it) this
	// long before it is processed.
	Delay time.Duration
	// Block, when not nil, holds the request until the channel is closed.
	Block <-chan struct{}
	// Fail answers the request with this error instead of processing it.
	Fail *skeinv1.ErrorDetail
	// Drop ends the request's stream (or fails the unary call) with
	// UNAVAILABLE, without processing it.
	Drop bool
	// LoseAnswer processes the request (it may be appended) and then ends
	// its stream (or fails the unary call) with UNAVAILABLE instead of
	// answering: the broker wrote, the client cannot know.
	LoseAnswer bool
}

// Cluster is the fake cluster.
type Cluster struct {
	opts  Options
	nodes []*node

	mu          sync.Mutex // guards the fields below
	topics      map[string]*topic
	produceHook func(node int32, req *skeinv1.ProduceRequest) Action
	metaHook    func(node int32, resp *skeinv1.MetadataResponse)
	fetchHook   func(node int32, req *skeinv1.FetchRequest) *skeinv1.ErrorDetail
	streams     map[int]context.CancelFunc
	nextStream  int
	metaCalls   int
	produceReqs int
	pipelined   int // max requests one ProduceStream had received and not yet answered
	closed      bool
	nextPID     int64 // the next producer id InitProducer hands out
	initCalls   int
	initHook    func() *skeinv1.ErrorDetail
	duplicates  int // batches answered as duplicates
}

type node struct {
	id   int32
	addr string
	lis  net.Listener
	buf  *bufconn.Listener // nil with TCP
	srv  *grpc.Server
	c    *Cluster
	skeinv1.UnimplementedSkeinServer
}

type topic struct {
	name  string
	id    string
	cfg   *skeinv1.TopicConfig
	parts []*partition
}

type partition struct {
	leader    int32
	epoch     int32
	batches   []stored
	logStart  int64
	leo       int64
	changed   chan struct{} // closed and replaced on every append or leader change
	producers map[int64]*producerState
}

// producerState is the fake's model of what a partition knows of one
// producer id.
type producerState struct {
	epoch   int16
	batches []seqBatch // the last 5, oldest first
}

type seqBatch struct {
	first, last int32
	base        int64
}

type stored struct {
	base, next int64
	data       []byte
}

// New starts a cluster. Close it when done.
func New(opts Options) (*Cluster, error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 1
	}
	if opts.MaxRecordBytes == 0 {
		opts.MaxRecordBytes = 1 << 20
	}
	c := &Cluster{opts: opts, topics: map[string]*topic{}, streams: map[int]context.CancelFunc{}}
	for i := 1; i <= opts.Nodes; i++ {
		n := &node{id: int32(i), c: c}
		if opts.TCP {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				c.Close()
				return nil, err
			}
			n.lis, n.addr = lis, lis.Addr().String()
		} else {
			n.buf = bufconn.Listen(1 << 20)
			n.lis, n.addr = n.buf, fmt.Sprintf("fake-%d:9420", i)
		}
		sopts := []grpc.ServerOption{grpc.MaxRecvMsgSize(batch.MaxBatchBytes + 1<<20)}
		if opts.TLS != nil {
			sopts = append(sopts, grpc.Creds(credentials.NewTLS(opts.TLS)))
		}
		n.srv = grpc.NewServer(sopts...)
		skeinv1.RegisterSkeinServer(n.srv, n)
		go n.srv.Serve(n.lis)
		c.nodes = append(c.nodes, n)
	}
	return c, nil
}

// Close stops every node.
func (c *Cluster) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	for _, n := range c.nodes {
		n.srv.Stop()
	}
}

// Addrs returns the nodes' client addresses, node 1 first.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr
	}
	return out
}

// Dialer connects to the nodes by their addresses: over bufconn, or with
// TCP by dialling the loopback address. Pass it to client.Dialer.
func (c *Cluster) Dialer() func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if c.opts.TCP {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
		for _, n := range c.nodes {
			if n.addr == addr {
				return n.buf.DialContext(ctx)
			}
		}
		return nil, fmt.Errorf("fakebroker: no node at %s", addr)
	}
}

// ---- steering -----------------------------------------------------------------

// CreateTopic creates a topic with n partitions, led round-robin by the
// nodes, epoch 0.
func (c *Cluster) CreateTopic(name string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.createLocked(name, &skeinv1.TopicConfig{Partitions: int32(n), ReplicationFactor: 1, MinInsyncReplicas: 1,
		RetentionMs: 7 * 24 * 3600 * 1000, RetentionBytes: -1, MaxRecordBytes: c.opts.MaxRecordBytes})
}

func (c *Cluster) createLocked(name string, cfg *skeinv1.TopicConfig) *topic {
	var id [8]byte
	rand.Read(id[:])
	t := &topic{name: name, id: hex.EncodeToString(id[:]), cfg: cfg}
	for i := 0; i < int(cfg.Partitions); i++ {
		t.parts = append(t.parts, &partition{leader: int32(i%len(c.nodes)) + 1, changed: make(chan struct{}), producers: map[int64]*producerState{}})
	}
	c.topics[name] = t
	return t
}

// SetProduceHook installs a hook consulted for every produce request before
// it is processed (nil removes it). It runs with no lock held.
func (c *Cluster) SetProduceHook(h func(node int32, req *skeinv1.ProduceRequest) Action) {
	c.mu.Lock()
	c.produceHook = h
	c.mu.Unlock()
}

// SetMetadataHook lets h rewrite every Metadata answer of a node before it
// is sent (a stale view, say).
func (c *Cluster) SetMetadataHook(h func(node int32, resp *skeinv1.MetadataResponse)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.metaHook = h
}

// SetFetchHook installs a hook consulted when a fetch stream opens; a
// non-nil answer fails the stream with that error.
func (c *Cluster) SetFetchHook(h func(node int32, req *skeinv1.FetchRequest) *skeinv1.ErrorDetail) {
	c.mu.Lock()
	c.fetchHook = h
	c.mu.Unlock()
}

// MoveLeader makes node the partition's leader (-1: no leader) and bumps
// its epoch, as a leader election does.
func (c *Cluster) MoveLeader(topicName string, p int32, nodeID int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	part := c.topics[topicName].parts[p]
	part.leader = nodeID
	part.epoch++
	part.notify()
}

// Leader returns a partition's leader and epoch.
func (c *Cluster) Leader(topicName string, p int32) (int32, int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	part := c.topics[topicName].parts[p]
	return part.leader, part.epoch
}

// SetLogStart drops the batches wholly below offset, as retention does.
func (c *Cluster) SetLogStart(topicName string, p int32, offset int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	part := c.topics[topicName].parts[p]
	for len(part.batches) > 0 && part.batches[0].next <= offset {
		part.batches = part.batches[1:]
	}
	part.logStart = offset
	if len(part.batches) > 0 {
		part.logStart = min(offset, part.batches[0].base)
	}
}

// DropStreams ends every open ProduceStream and Fetch stream with
// UNAVAILABLE and returns how many it ended.
func (c *Cluster) DropStreams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.streams)
	for id, cancel := range c.streams {
		cancel()
		delete(c.streams, id)
	}
	return n
}

// OpenStreams is the number of streams open now.
func (c *Cluster) OpenStreams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.streams)
}

// MetadataCalls counts Metadata requests served.
func (c *Cluster) MetadataCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.metaCalls
}

// MaxPipelined is the largest number of requests one ProduceStream has had
// received and not yet answered.
func (c *Cluster) MaxPipelined() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pipelined
}

// ProduceRequests counts produce requests received (unary and streamed).
func (c *Cluster) ProduceRequests() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.produceReqs
}

// SetInitProducerHook installs a hook consulted for every InitProducer
// request; a non-nil answer fails the request with that error.
func (c *Cluster) SetInitProducerHook(h func() *skeinv1.ErrorDetail) {
	c.mu.Lock()
	c.initHook = h
	c.mu.Unlock()
}

// InitProducerCalls counts InitProducer requests served.
func (c *Cluster) InitProducerCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.initCalls
}

// Duplicates counts produce requests answered as duplicates of a batch
// already appended.
func (c *Cluster) Duplicates() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.duplicates
}

// Record is a record as stored.
type Record struct {
	Offset        int64
	Timestamp     int64
	Key, Value    []byte
	Headers       []batch.Header
	LeaderEpoch   int32
	Producer      int64 // producer id of its batch
	ProducerEpoch int16
	Sequence      int32 // -1 without a producer id
}

// Records decodes a partition's log.
func (c *Cluster) Records(topicName string, p int32) []Record {
	c.mu.Lock()
	bs := append([]stored(nil), c.topics[topicName].parts[p].batches...)
	c.mu.Unlock()
	var out []Record
	for _, s := range bs {
		v := batch.View(s.data)
		recs, err := v.Records(nil)
		if err != nil {
			panic(fmt.Sprintf("fakebroker: stored batch does not decode: %v", err))
		}
		for i, r := range recs {
			seq := int32(-1)
			if v.BaseSequence() >= 0 {
				seq = int32((int64(v.BaseSequence()) + int64(i)) % (math.MaxInt32 + 1))
			}
			out = append(out, Record{Offset: r.Offset, Timestamp: r.Timestamp, Key: r.Key, Value: r.Value,
				Headers: r.Headers, LeaderEpoch: v.LeaderEpoch(), Producer: v.ProducerID(), ProducerEpoch: v.ProducerEpoch(), Sequence: seq})
		}
	}
	return out
}

// Batches returns how many batches a partition's log holds.
func (c *Cluster) Batches(topicName string, p int32) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.topics[topicName].parts[p].batches)
}

// EndOffset returns a partition's log end offset.
func (c *Cluster) EndOffset(topicName string, p int32) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.topics[topicName].parts[p].leo
}

func (p *partition) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// ---- errors -------------------------------------------------------------------

func detail(code codes.Code, reason skeinv1.ErrorReason, format string, args ...any) *skeinv1.ErrorDetail {
	return &skeinv1.ErrorDetail{Code: uint32(code), Reason: reason, Message: fmt.Sprintf(format, args...), LeaderId: -1}
}

func statusOf(d *skeinv1.ErrorDetail) error {
	st, err := status.New(codes.Code(d.GetCode()), d.GetMessage()).WithDetails(d)
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	return st.Err()
}

// partitionFor finds a topic's partition and checks that n leads it and
// that epoch (unless -1) is current; c.mu must be held.
func (c *Cluster) partitionFor(n *node, topicName string, p int32, epoch int32) (*topic, *partition, *skeinv1.ErrorDetail) {
	t, ok := c.topics[topicName]
	if !ok {
		return nil, nil, detail(codes.NotFound, skeinv1.ErrorReason_UNKNOWN_TOPIC, "topic %q does not exist", topicName)
	}
	if p < 0 || int(p) >= len(t.parts) {
		return nil, nil, detail(codes.NotFound, skeinv1.ErrorReason_UNKNOWN_PARTITION, "partition %d of %q does not exist (it has %d)", p, topicName, len(t.parts))
	}
	part := t.parts[p]
	if part.leader != n.id {
		d := detail(codes.FailedPrecondition, skeinv1.ErrorReason_NOT_LEADER, "broker %d does not lead %s/%d", n.id, topicName, p)
		if part.leader > 0 {
			d.LeaderId = part.leader
			d.LeaderAddr = c.nodes[part.leader-1].addr
			d.LeaderEpoch = part.epoch
		} else {
			d.Code = uint32(codes.Unavailable)
		}
		return nil, nil, d
	}
	if epoch >= 0 && epoch < part.epoch {
		return nil, nil, detail(codes.FailedPrecondition, skeinv1.ErrorReason_FENCED_LEADER_EPOCH, "epoch %d is older than the current %d", epoch, part.epoch)
	}
	if epoch > part.epoch {
		return nil, nil, detail(codes.FailedPrecondition, skeinv1.ErrorReason_UNKNOWN_LEADER_EPOCH, "epoch %d is newer than the current %d", epoch, part.epoch)
	}
	return t, part, nil
}

// ---- admin --------------------------------------------------------------------

var validName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

func (n *node) CreateTopic(_ context.Context, req *skeinv1.CreateTopicRequest) (*skeinv1.CreateTopicResponse, error) {
	c := n.c
	name := req.GetName()
	if !validName.MatchString(name) || name == "." || name == ".." || strings.HasPrefix(name, "-") || strings.HasPrefix(name, "__") {
		return nil, statusOf(detail(codes.InvalidArgument, skeinv1.ErrorReason_INVALID_TOPIC, "invalid topic name %q", name))
	}
	cfg := &skeinv1.TopicConfig{Partitions: max(req.GetPartitions(), 1), ReplicationFactor: 1, MinInsyncReplicas: 1,
		RetentionMs: 7 * 24 * 3600 * 1000, RetentionBytes: -1, MaxRecordBytes: c.opts.MaxRecordBytes}
	if req.GetPartitions() < 0 || req.GetReplicationFactor() > int32(len(c.nodes)) {
		return nil, statusOf(detail(codes.InvalidArgument, skeinv1.ErrorReason_INVALID_TOPIC, "invalid partitions %d or replication factor %d", req.GetPartitions(), req.GetReplicationFactor()))
	}
	if req.RetentionMs != nil {
		cfg.RetentionMs = req.GetRetentionMs()
	}
	if req.RetentionBytes != nil {
		cfg.RetentionBytes = req.GetRetentionBytes()
	}
	if req.MaxRecordBytes != nil {
		cfg.MaxRecordBytes = req.GetMaxRecordBytes()
	}
	if req.MinInsyncReplicas != nil {
		cfg.MinInsyncReplicas = req.GetMinInsyncReplicas()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.topics[name]; ok {
		return nil, statusOf(detail(codes.AlreadyExists, skeinv1.ErrorReason_TOPIC_EXISTS, "topic %q already exists", name))
	}
	t := c.createLocked(name, cfg)
	return &skeinv1.CreateTopicResponse{Topic: c.topicMetaLocked(t)}, nil
}

func (n *node) DeleteTopic(_ context.Context, req *skeinv1.DeleteTopicRequest) (*skeinv1.DeleteTopicResponse, error) {
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.topics[req.GetName()]
	if !ok {
		return nil, statusOf(detail(codes.NotFound, skeinv1.ErrorReason_UNKNOWN_TOPIC, "topic %q does not exist", req.GetName()))
	}
	delete(c.topics, req.GetName())
	for _, p := range t.parts {
		p.leader = -1
		p.notify()
	}
	return &skeinv1.DeleteTopicResponse{}, nil
}

func (c *Cluster) topicMetaLocked(t *topic) *skeinv1.TopicMetadata {
	tm := &skeinv1.TopicMetadata{Name: t.name, TopicId: t.id, Config: t.cfg}
	for i, p := range t.parts {
		tm.Partitions = append(tm.Partitions, &skeinv1.PartitionMetadata{Partition: int32(i), Leader: p.leader, LeaderEpoch: p.epoch,
			Replicas: []int32{max(p.leader, 1)}, Isr: []int32{max(p.leader, 1)}})
	}
	return tm
}

func (c *Cluster) sortedTopicsLocked() []*topic {
	var ts []*topic
	for _, t := range c.topics {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].name < ts[j].name })
	return ts
}

func (n *node) ListTopics(context.Context, *skeinv1.ListTopicsRequest) (*skeinv1.ListTopicsResponse, error) {
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	resp := &skeinv1.ListTopicsResponse{}
	for _, t := range c.sortedTopicsLocked() {
		resp.Topics = append(resp.Topics, c.topicMetaLocked(t))
	}
	return resp, nil
}

func (n *node) DescribeTopic(_ context.Context, req *skeinv1.DescribeTopicRequest) (*skeinv1.DescribeTopicResponse, error) {
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.topics[req.GetName()]
	if !ok {
		return nil, statusOf(detail(codes.NotFound, skeinv1.ErrorReason_UNKNOWN_TOPIC, "topic %q does not exist", req.GetName()))
	}
	resp := &skeinv1.DescribeTopicResponse{Topic: c.topicMetaLocked(t)}
	for i, p := range t.parts {
		var size int64
		for _, b := range p.batches {
			size += int64(len(b.data))
		}
		resp.Partitions = append(resp.Partitions, &skeinv1.PartitionStatus{Partition: int32(i), Leader: p.leader, LeaderEpoch: p.epoch,
			LogStartOffset: p.logStart, HighWatermark: p.leo, LogEndOffset: p.leo, SizeBytes: size})
	}
	return resp, nil
}

func (n *node) Metadata(_ context.Context, req *skeinv1.MetadataRequest) (*skeinv1.MetadataResponse, error) {
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.metaCalls++
	resp := &skeinv1.MetadataResponse{ClusterId: "fake", ControllerId: 1}
	for _, nd := range c.nodes {
		resp.Brokers = append(resp.Brokers, &skeinv1.BrokerInfo{Id: nd.id, Addr: nd.addr})
	}
	if len(req.GetTopics()) == 0 {
		for _, t := range c.sortedTopicsLocked() {
			resp.Topics = append(resp.Topics, c.topicMetaLocked(t))
		}
		if c.metaHook != nil {
			c.metaHook(n.id, resp)
		}
		return resp, nil
	}
	for _, name := range req.GetTopics() {
		t, ok := c.topics[name]
		if !ok {
			return nil, statusOf(detail(codes.NotFound, skeinv1.ErrorReason_UNKNOWN_TOPIC, "topic %q does not exist", name))
		}
		resp.Topics = append(resp.Topics, c.topicMetaLocked(t))
	}
	return resp, nil
}

func (n *node) ListOffsets(_ context.Context, req *skeinv1.ListOffsetsRequest) (*skeinv1.ListOffsetsResponse, error) {
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	_, p, d := c.partitionFor(n, req.GetTopic(), req.GetPartition(), -1)
	if d != nil {
		return nil, statusOf(d)
	}
	resp := &skeinv1.ListOffsetsResponse{TimestampMs: -1, LogStartOffset: p.logStart, HighWatermark: p.leo}
	switch s := req.GetSpec().(type) {
	case *skeinv1.ListOffsetsRequest_Earliest:
		resp.Offset = p.logStart
	case *skeinv1.ListOffsetsRequest_Latest:
		resp.Offset = p.leo
	case *skeinv1.ListOffsetsRequest_TimestampMs:
		resp.Offset = p.leo
	scan:
		for _, b := range p.batches {
			recs, _ := batch.View(b.data).Records(nil)
			for _, r := range recs {
				if r.Offset >= p.logStart && r.Timestamp >= s.TimestampMs {
					resp.Offset, resp.TimestampMs = r.Offset, r.Timestamp
					break scan
				}
			}
		}
	default:
		return nil, statusOf(detail(codes.InvalidArgument, skeinv1.ErrorReason_INVALID_REQUEST, "no offset spec"))
	}
	return resp, nil
}

// ---- produce ------------------------------------------------------------------

// produce processes one request; hooks have been applied.
func (c *Cluster) produce(n *node, req *skeinv1.ProduceRequest) (*skeinv1.ProduceResponse, *skeinv1.ErrorDetail) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, p, d := c.partitionFor(n, req.GetTopic(), req.GetPartition(), req.GetLeaderEpoch())
	if d != nil {
		return nil, d
	}
	info, err := batch.Validate(req.GetBatch(), batch.Limits{MaxRecordBytes: int(t.cfg.MaxRecordBytes)})
	if err != nil {
		reason := skeinv1.ErrorReason_INVALID_RECORD
		if strings.Contains(err.Error(), batch.ErrTooLarge.Error()) {
			reason = skeinv1.ErrorReason_RECORD_TOO_LARGE
		}
		return nil, detail(codes.InvalidArgument, reason, "%v", err)
	}
	v := batch.View(req.GetBatch())
	pid := v.ProducerID()
	if pid >= 0 {
		st := p.producers[pid]
		first, last := v.BaseSequence(), v.LastSequence()
		switch {
		case st != nil && v.ProducerEpoch() < st.epoch:
			return nil, detail(codes.FailedPrecondition, skeinv1.ErrorReason_PRODUCER_FENCED, "producer %d epoch %d is fenced by epoch %d", pid, v.ProducerEpoch(), st.epoch)
		case st == nil || v.ProducerEpoch() > st.epoch:
			if first != 0 {
				return nil, detail(codes.FailedPrecondition, skeinv1.ErrorReason_OUT_OF_ORDER_SEQUENCE, "producer %d epoch %d: expected sequence 0, got %d", pid, v.ProducerEpoch(), first)
			}
		default:
			for _, b := range st.batches {
				if b.first == first && b.last == last {
					c.duplicates++
					return &skeinv1.ProduceResponse{CorrelationId: req.GetCorrelationId(), BaseOffset: b.base, LogStartOffset: p.logStart, LeaderEpoch: -1}, nil
				}
			}
			want := int32((int64(st.batches[len(st.batches)-1].last) + 1) % (math.MaxInt32 + 1))
			if first != want {
				return nil, detail(codes.FailedPrecondition, skeinv1.ErrorReason_OUT_OF_ORDER_SEQUENCE, "producer %d epoch %d: expected sequence %d, got %d", pid, v.ProducerEpoch(), want, first)
			}
		}
	}
	if req.ExpectedOffset != nil && req.GetExpectedOffset() != p.leo {
		d := detail(codes.FailedPrecondition, skeinv1.ErrorReason_OFFSET_MISMATCH, "expected offset %d, the log ends at %d", req.GetExpectedOffset(), p.leo)
		d.NextOffset = p.leo
		return nil, d
	}
	data := append([]byte(nil), req.GetBatch()...)
	v = batch.View(data)
	v.SetBaseOffset(p.leo)
	v.SetLeaderEpoch(p.epoch)
	base := p.leo
	p.batches = append(p.batches, stored{base: base, next: base + int64(info.Records), data: data})
	p.leo += int64(info.Records)
	if pid >= 0 {
		st := p.producers[pid]
		if st == nil || v.ProducerEpoch() != st.epoch {
			st = &producerState{epoch: v.ProducerEpoch()}
			p.producers[pid] = st
		}
		st.batches = append(st.batches, seqBatch{first: v.BaseSequence(), last: v.LastSequence(), base: base})
		if len(st.batches) > 5 {
			st.batches = st.batches[1:]
		}
	}
	p.notify()
	return &skeinv1.ProduceResponse{CorrelationId: req.GetCorrelationId(), BaseOffset: base, LogStartOffset: p.logStart, LeaderEpoch: p.epoch}, nil
}

// hook consults the produce hook and applies delays; it returns the error
// to answer with, or drop, or lose the answer.
func (c *Cluster) hook(ctx context.Context, n *node, req *skeinv1.ProduceRequest) (fail *skeinv1.ErrorDetail, drop, lose bool) {
	c.mu.Lock()
	c.produceReqs++
	h := c.produceHook
	c.mu.Unlock()
	if h == nil {
		return nil, false, false
	}
	a := h(n.id, req)
	if a.Delay > 0 {
		t := time.NewTimer(a.Delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, true, false
		case <-t.C:
		}
	}
	if a.Block != nil {
		select {
		case <-ctx.Done():
			return nil, true, false
		case <-a.Block:
		}
	}
	return a.Fail, a.Drop, a.LoseAnswer
}

func (n *node) Produce(ctx context.Context, req *skeinv1.ProduceRequest) (*skeinv1.ProduceResponse, error) {
	fail, drop, lose := n.c.hook(ctx, n, req)
	if drop {
		return nil, status.Error(codes.Unavailable, "fakebroker: request dropped")
	}
	if fail != nil {
		return nil, statusOf(fail)
	}
	resp, d := n.c.produce(n, req)
	if lose {
		return nil, status.Error(codes.Unavailable, "fakebroker: answer lost")
	}
	if d != nil {
		return nil, statusOf(d)
	}
	return resp, nil
}

// InitProducer hands out producer ids from 1000 up, and bumps epochs.
func (n *node) InitProducer(_ context.Context, req *skeinv1.InitProducerRequest) (*skeinv1.InitProducerResponse, error) {
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.initCalls++
	if c.initHook != nil {
		if d := c.initHook(); d != nil {
			return nil, statusOf(d)
		}
	}
	if req.ProducerId != nil && req.GetProducerEpoch() < math.MaxInt16 {
		return &skeinv1.InitProducerResponse{ProducerId: req.GetProducerId(), ProducerEpoch: req.GetProducerEpoch() + 1}, nil
	}
	id := 1000 + c.nextPID
	c.nextPID++
	return &skeinv1.InitProducerResponse{ProducerId: id}, nil
}

// track registers a stream so DropStreams can end it.
func (c *Cluster) track(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	id := c.nextStream
	c.nextStream++
	c.streams[id] = cancel
	c.mu.Unlock()
	return ctx, func() {
		c.mu.Lock()
		delete(c.streams, id)
		c.mu.Unlock()
		cancel()
	}
}

var errDropped = status.Error(codes.Unavailable, "fakebroker: stream dropped")

func (n *node) ProduceStream(st skeinv1.Skein_ProduceStreamServer) error {
	ctx, done := n.c.track(st.Context())
	defer done()
	type recvd struct {
		req *skeinv1.ProduceRequest
		err error
	}
	// Read ahead, as a real server's transport does, so the requests a
	// client has in flight are visible (MaxPipelined).
	in := make(chan recvd, 64)
	var mu sync.Mutex
	waiting := 0
	go func() {
		for {
			req, err := st.Recv()
			if err == nil {
				mu.Lock()
				waiting++
				w := waiting
				mu.Unlock()
				n.c.mu.Lock()
				n.c.pipelined = max(n.c.pipelined, w)
				n.c.mu.Unlock()
			}
			select {
			case in <- recvd{req, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		var r recvd
		select {
		case <-ctx.Done():
			return errDropped
		case r = <-in:
		}
		if r.err != nil {
			return nil // the client closed its side
		}
		req := r.req
		fail, drop, lose := n.c.hook(ctx, n, req)
		if drop {
			return errDropped
		}
		var resp *skeinv1.ProduceResponse
		if fail != nil {
			resp = &skeinv1.ProduceResponse{CorrelationId: req.GetCorrelationId(), Error: fail}
		} else {
			var d *skeinv1.ErrorDetail
			resp, d = n.c.produce(n, req)
			if d != nil {
				resp = &skeinv1.ProduceResponse{CorrelationId: req.GetCorrelationId(), Error: d}
			}
		}
		if lose {
			return errDropped
		}
		mu.Lock()
		waiting--
		mu.Unlock()
		if req.GetAcks() != skeinv1.Acks_ACKS_NONE {
			if err := st.Send(resp); err != nil {
				return err
			}
		}
	}
}

// ---- fetch --------------------------------------------------------------------

// fetchLimits are a fetch's byte cap and long-poll wait, clamped as the
// broker clamps them.
func fetchLimits(req *skeinv1.FetchRequest) (maxBytes int, wait time.Duration) {
	maxBytes = int(req.GetMaxBytes())
	if maxBytes <= 0 {
		maxBytes = 1 << 20
	}
	maxBytes = min(max(maxBytes, 1<<10), 16<<20)
	wait = time.Duration(req.GetMaxWaitMs()) * time.Millisecond
	if wait <= 0 {
		wait = 500 * time.Millisecond
	}
	return maxBytes, min(max(wait, 10*time.Millisecond), 30*time.Second)
}

// read returns the whole batches from offset off, up to maxBytes (at least
// one batch), and the offset after them; the cluster's mu must be held.
func (p *partition) read(off int64, maxBytes int) ([]byte, int64) {
	var out []byte
	next := off
	for _, b := range p.batches {
		if b.next <= next {
			continue
		}
		if len(out) > 0 && len(out)+len(b.data) > maxBytes {
			break
		}
		out = append(out, b.data...)
		next = b.next
	}
	return out, next
}

func (n *node) Fetch(req *skeinv1.FetchRequest, st skeinv1.Skein_FetchServer) error {
	c := n.c
	ctx, done := c.track(st.Context())
	defer done()
	c.mu.Lock()
	h := c.fetchHook
	c.mu.Unlock()
	if h != nil {
		if d := h(n.id, req); d != nil {
			return statusOf(d)
		}
	}
	maxBytes, wait := fetchLimits(req)
	off := req.GetOffset()

	c.mu.Lock()
	_, p, d := c.partitionFor(n, req.GetTopic(), req.GetPartition(), req.GetLeaderEpoch())
	if d == nil && (off < p.logStart || off > p.leo) {
		d = detail(codes.OutOfRange, skeinv1.ErrorReason_OFFSET_OUT_OF_RANGE, "offset %d is outside the log of %s/%d", off, req.GetTopic(), req.GetPartition())
		d.LogStartOffset, d.HighWatermark = p.logStart, p.leo
	}
	c.mu.Unlock()
	if d != nil {
		return statusOf(d)
	}
	announced := false
	for {
		c.mu.Lock()
		_, p, d := c.partitionFor(n, req.GetTopic(), req.GetPartition(), -1)
		if d != nil {
			c.mu.Unlock()
			return statusOf(d)
		}
		out, next := p.read(off, maxBytes)
		hw, ls, changed := p.leo, p.logStart, p.changed
		c.mu.Unlock()
		resp := &skeinv1.FetchResponse{Batches: out, NextOffset: next, HighWatermark: hw, LogStartOffset: ls, CaughtUp: next >= hw}
		if len(out) > 0 || !announced {
			if err := st.Send(resp); err != nil {
				return err
			}
			off = next
			announced = resp.CaughtUp
			if !resp.CaughtUp {
				continue
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if st.Context().Err() != nil {
				return st.Context().Err()
			}
			return errDropped
		case <-changed:
			t.Stop()
		case <-t.C:
			if err := st.Send(&skeinv1.FetchResponse{NextOffset: off, HighWatermark: hw, LogStartOffset: ls, CaughtUp: off >= hw}); err != nil {
				return err
			}
		}
	}
}
