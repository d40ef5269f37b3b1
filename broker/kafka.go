package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/skeinlog/skein/group"
	"github.com/skeinlog/skein/kafka"
	"github.com/skeinlog/skein/partition"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// validateKafka checks the Kafka listener settings.
func (c *Config) validateKafka() error {
	if c.KafkaAddr != "" {
		if _, _, err := net.SplitHostPort(c.KafkaAddr); err != nil {
			return fmt.Errorf("config: --kafka-addr %q: want host:port (\"\" turns the Kafka listener off): %v", c.KafkaAddr, err)
		}
	}
	if c.KafkaAdvertiseAddr != "" {
		if c.KafkaAddr == "" {
			return errors.New("config: --kafka-advertise-addr needs --kafka-addr to listen on")
		}
		if _, _, err := net.SplitHostPort(c.KafkaAdvertiseAddr); err != nil {
			return fmt.Errorf("config: --kafka-advertise-addr %q: want host:port: %v", c.KafkaAdvertiseAddr, err)
		}
		if len(c.KafkaAdvertiseAddr) > 256 {
			return fmt.Errorf("config: --kafka-advertise-addr is %d bytes, at most 256", len(c.KafkaAdvertiseAddr))
		}
	}
	return nil
}

// listenKafka binds the Kafka listener, if configured, and records its
// advertised address in b.self (gossiped, so every broker's Metadata
// lists it). clientAdv is the advertised gRPC address.
func (b *Broker) listenKafka(clientAdv string) error {
	if b.cfg.KafkaAddr == "" {
		return nil
	}
	ks, err := kafka.Listen(kafka.Config{
		Addr:          b.cfg.KafkaAddr,
		MaxFrameBytes: b.cfg.MaxRequestBytes,
		Throttler:     b.quotas,
		Authorizer:    b.authz,
		Credentials:   b.lookupCredential,
		TLS:           b.kafkaTLS(),
		Logger:        b.log,
	}, &kafkaBackend{s: &server{b: b}, g: &groupsServer{b: b}})
	if err != nil {
		return fmt.Errorf("listen on --kafka-addr %s: %w (choose another with --kafka-addr, or \"\" to turn it off)", b.cfg.KafkaAddr, err)
	}
	b.kafka = ks
	adv := b.cfg.KafkaAdvertiseAddr
	if adv == "" {
		adv = ks.Addr()
		host, port, _ := net.SplitHostPort(adv)
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			advHost, _, _ := net.SplitHostPort(clientAdv)
			if ip := net.ParseIP(advHost); advHost == "" || ip != nil && ip.IsUnspecified() {
				return fmt.Errorf("--kafka-addr %s is bound to all interfaces: set --kafka-advertise-addr to the host:port Kafka clients reach", b.cfg.KafkaAddr)
			}
			adv = net.JoinHostPort(advHost, port)
		}
	}
	b.self.KafkaAddr = adv
	return nil
}

// KafkaAddr is the bound Kafka listener address, or "".
func (b *Broker) KafkaAddr() string {
	if b.kafka == nil {
		return ""
	}
	return b.kafka.Addr()
}

// kafkaBackend is the Kafka listener's view of the broker: the gRPC
// handlers themselves for everything with a unary answer (topics,
// producer ids, offsets, produce), so both APIs share one implementation
// of each operation; and Read, the non-streaming form of Fetch's step.
type kafkaBackend struct {
	s *server
	g *groupsServer
}

// check refuses requests before the broker is ready, as the gRPC
// interceptor does.
func (k *kafkaBackend) check() error {
	if k.s.b.closing() {
		return toStatus(errShuttingDown)
	}
	if !k.s.b.ready.Load() {
		return toStatus(errStarting)
	}
	return nil
}

// Metadata lists the brokers with a Kafka listener, by their Kafka
// address, and every topic.
func (k *kafkaBackend) Metadata(ctx context.Context) (*pb.MetadataResponse, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	b := k.s.b
	snap := b.snapshot()
	resp := &pb.MetadataResponse{ClusterId: snap.ClusterID, ControllerId: b.ctrl.ControllerID()}
	for _, bi := range snap.Brokers {
		if bi.KafkaAddr != "" && !bi.Fenced {
			resp.Brokers = append(resp.Brokers, &pb.BrokerInfo{Id: bi.ID, Addr: bi.KafkaAddr, Rack: bi.Rack})
		}
	}
	for _, name := range snap.TopicNames() {
		resp.Topics = append(resp.Topics, topicToPB(snap.Topics[name]))
	}
	return resp, nil
}

func (k *kafkaBackend) CreateTopic(ctx context.Context, req *pb.CreateTopicRequest) (*pb.CreateTopicResponse, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	return k.s.CreateTopic(ctx, req)
}

func (k *kafkaBackend) DeleteTopic(ctx context.Context, req *pb.DeleteTopicRequest) (*pb.DeleteTopicResponse, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	return k.s.DeleteTopic(ctx, req)
}

func (k *kafkaBackend) AlterTopic(ctx context.Context, req *pb.AlterTopicRequest) (*pb.AlterTopicResponse, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	return k.s.AlterTopic(ctx, req)
}

// BrokerConfigs are the broker's settings under Kafka's names: fixed at
// start.
func (k *kafkaBackend) BrokerConfigs() map[string]string {
	cfg := k.s.b.cfg
	d := cfg.TopicDefaults
	return map[string]string{
		"message.max.bytes":            strconv.Itoa(cfg.MaxRequestBytes),
		"log.segment.bytes":            strconv.Itoa(cfg.SegmentBytes),
		"num.partitions":               strconv.Itoa(int(d.Partitions)),
		"default.replication.factor":   strconv.Itoa(int(d.ReplicationFactor)),
		"log.retention.ms":             strconv.FormatInt(d.RetentionMs, 10),
		"log.retention.bytes":          strconv.FormatInt(d.RetentionBytes, 10),
		"max.record.bytes":             strconv.Itoa(int(d.MaxRecordBytes)),
		"broker.id":                    strconv.Itoa(int(k.s.b.self.ID)),
		"group.min.session.timeout.ms": strconv.FormatInt(group.MinSessionTimeout.Milliseconds(), 10),
		"group.max.session.timeout.ms": strconv.FormatInt(group.MaxSessionTimeout.Milliseconds(), 10),
		"group.max.size":               strconv.Itoa(group.MaxClassicMembers),
		"auto.create.topics.enable":    "false",
	}
}

func (k *kafkaBackend) InitProducer(ctx context.Context, req *pb.InitProducerRequest) (*pb.InitProducerResponse, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	return k.s.InitProducer(ctx, req)
}

func (k *kafkaBackend) ListOffsets(ctx context.Context, req *pb.ListOffsetsRequest) (*pb.ListOffsetsResponse, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	return k.s.ListOffsets(ctx, req)
}

func (k *kafkaBackend) Produce(req *pb.ProduceRequest, done func(*pb.ProduceResponse)) {
	if err := k.check(); err != nil {
		done(&pb.ProduceResponse{CorrelationId: req.CorrelationId, BaseOffset: -1, LogStartOffset: -1, LeaderEpoch: -1, Error: errorDetail(errStarting)})
		return
	}
	k.s.produce(false, req, done)
}

// Read is one step of Fetch: committed batches from an offset, with the
// checks Fetch makes (leader, epoch, a high watermark the new leader has
// caught up, the offset within [log start, HW]).
func (k *kafkaBackend) Read(req *pb.FetchRequest) (kafka.ReadResult, error) {
	if err := k.check(); err != nil {
		return kafka.ReadResult{}, err
	}
	b := k.s.b
	r, err := b.leaderReplica(req.Topic, req.Partition)
	if err != nil {
		return kafka.ReadResult{}, toStatus(err)
	}
	p := r.p
	watch := p.Watch()
	st := p.State()
	if p.Role() != partition.RoleLeader {
		return kafka.ReadResult{}, toStatus(&partition.NotLeaderError{LeaderID: st.LeaderID, LeaderEpoch: st.LeaderEpoch})
	}
	if req.LeaderEpoch >= 0 && req.LeaderEpoch != st.LeaderEpoch {
		return kafka.ReadResult{}, toStatus(&partition.EpochError{Requested: req.LeaderEpoch, Current: st.LeaderEpoch})
	}
	if !p.HWReady() {
		return kafka.ReadResult{}, toStatus(fmt.Errorf("%w: the leader is catching up its high watermark after an election; retry", errNotReady))
	}
	if req.Offset < 0 {
		return kafka.ReadResult{}, toStatus(&partition.OutOfRangeError{Offset: req.Offset, LogStartOffset: st.LogStartOffset, HighWatermark: st.HighWatermark})
	}
	res, err := p.Read(nil, req.Offset, max(int(req.MaxBytes), 1), partition.ReadCommitted)
	if err != nil {
		return kafka.ReadResult{}, toStatus(err)
	}
	if req.Offset > res.HighWatermark {
		return kafka.ReadResult{}, toStatus(&partition.OutOfRangeError{Offset: req.Offset, LogStartOffset: res.LogStartOffset, HighWatermark: res.HighWatermark})
	}
	if len(res.Batches) > 0 {
		b.metrics.fetched(len(res.Batches))
	}
	return kafka.ReadResult{Batches: res.Batches, HighWatermark: res.HighWatermark, LogStartOffset: res.LogStartOffset, Watch: watch}, nil
}

func (k *kafkaBackend) FindCoordinator(ctx context.Context, req *pb.FindCoordinatorRequest) (*pb.FindCoordinatorResponse, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	return k.g.FindCoordinator(ctx, req)
}

func (k *kafkaBackend) GroupHeartbeat(ctx context.Context, req *pb.GroupHeartbeatRequest) (*pb.GroupHeartbeatResponse, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	return k.g.Heartbeat(ctx, req)
}

func (k *kafkaBackend) FetchOffsets(ctx context.Context, req *pb.FetchOffsetsRequest) (*pb.FetchOffsetsResponse, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	return k.g.FetchOffsets(ctx, req)
}

func (k *kafkaBackend) ListGroups(ctx context.Context, req *pb.ListGroupsRequest) (*pb.ListGroupsResponse, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	return k.g.ListGroups(ctx, req)
}

func (k *kafkaBackend) DeleteGroup(ctx context.Context, req *pb.DeleteGroupRequest) (*pb.DeleteGroupResponse, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	return k.g.DeleteGroup(ctx, req)
}

// classicErr passes the classic group protocol's errors as they are (the
// listener maps them to Kafka's codes by name), others as gRPC statuses.
func classicErr(err error) error {
	for _, e := range []error{group.ErrUnknownMember, group.ErrIllegalGeneration, group.ErrRebalanceInProgress,
		group.ErrMemberIDRequired, group.ErrInconsistentProtocol, group.ErrInvalidSessionTimeout,
		group.ErrGroupFull, group.ErrFencedInstance, group.ErrNotConsumerGroup} {
		if errors.Is(err, e) {
			return err
		}
	}
	return toStatus(err)
}

func (k *kafkaBackend) Commit(ctx context.Context, name string, ref group.MemberRef, offsets []group.Entry) error {
	if err := k.check(); err != nil {
		return err
	}
	return classicErr(k.s.b.groups.Commit(ctx, name, ref, offsets))
}

func (k *kafkaBackend) JoinGroup(ctx context.Context, name string, req group.JoinRequest) (group.JoinResult, error) {
	if err := k.check(); err != nil {
		return group.JoinResult{}, err
	}
	res, err := k.s.b.groups.JoinGroup(ctx, name, req)
	return res, classicErr(err)
}

func (k *kafkaBackend) SyncGroup(ctx context.Context, name string, req group.SyncRequest) ([]byte, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	a, err := k.s.b.groups.SyncGroup(ctx, name, req)
	return a, classicErr(err)
}

func (k *kafkaBackend) ClassicHeartbeat(ctx context.Context, name string, ref group.MemberRef) error {
	if err := k.check(); err != nil {
		return err
	}
	return classicErr(k.s.b.groups.ClassicHeartbeat(ctx, name, ref))
}

func (k *kafkaBackend) LeaveGroup(ctx context.Context, name string, refs []group.MemberRef) ([]error, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	errs, err := k.s.b.groups.LeaveGroup(ctx, name, refs)
	if err != nil {
		return nil, classicErr(err)
	}
	return errs, nil
}

func (k *kafkaBackend) DescribeGroup(ctx context.Context, name string) (group.Description, error) {
	if err := k.check(); err != nil {
		return group.Description{}, err
	}
	d, err := k.s.b.groups.DescribeKafka(ctx, name)
	return d, classicErr(err)
}
