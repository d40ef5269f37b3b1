package kafka

import (
	"context"

	"github.com/skeinlog/skein/group"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// Backend is what the listener needs from the broker: the operations of the
// native gRPC API, in its own message types, so that a Kafka request and a
// gRPC request run the same code. Errors are the gRPC status errors (with
// an ErrorDetail) a native client would get; errorCode maps them.
type Backend interface {
	// Metadata is the cluster as a Kafka client must see it: every broker
	// with a Kafka listener (BrokerInfo.Addr is its advertised Kafka
	// address) and every topic with its partitions and configuration.
	Metadata(ctx context.Context) (*pb.MetadataResponse, error)
	CreateTopic(ctx context.Context, req *pb.CreateTopicRequest) (*pb.CreateTopicResponse, error)
	DeleteTopic(ctx context.Context, req *pb.DeleteTopicRequest) (*pb.DeleteTopicResponse, error)
	// AlterTopic changes a topic's settings or grows its partitions.
	AlterTopic(ctx context.Context, req *pb.AlterTopicRequest) (*pb.AlterTopicResponse, error)
	// BrokerConfigs are the answering broker's settings under Kafka's
	// names (message.max.bytes, log.segment.bytes, the topic defaults).
	BrokerConfigs() map[string]string
	InitProducer(ctx context.Context, req *pb.InitProducerRequest) (*pb.InitProducerResponse, error)
	ListOffsets(ctx context.Context, req *pb.ListOffsetsRequest) (*pb.ListOffsetsResponse, error)
	// Produce starts one append; done runs exactly once with the answer
	// (its Error set on failure), possibly on another goroutine, and must
	// not block. Requests started in order on one partition are applied in
	// that order.
	Produce(req *pb.ProduceRequest, done func(*pb.ProduceResponse))
	// Read returns committed batches of one partition from an offset, about
	// maxBytes of them, without waiting. Watch in the result is closed when
	// the partition changes (new data, a new high watermark, a new role).
	Read(req *pb.FetchRequest) (ReadResult, error)

	// The native Groups API: consumer groups whose coordinator assigns
	// the partitions, and their committed offsets.
	FindCoordinator(ctx context.Context, req *pb.FindCoordinatorRequest) (*pb.FindCoordinatorResponse, error)
	GroupHeartbeat(ctx context.Context, req *pb.GroupHeartbeatRequest) (*pb.GroupHeartbeatResponse, error)
	FetchOffsets(ctx context.Context, req *pb.FetchOffsetsRequest) (*pb.FetchOffsetsResponse, error)
	ListGroups(ctx context.Context, req *pb.ListGroupsRequest) (*pb.ListGroupsResponse, error)
	DeleteGroup(ctx context.Context, req *pb.DeleteGroupRequest) (*pb.DeleteGroupResponse, error)

	// Commit stores a group's offsets for a member of either protocol
	// (the generation is a KIP-848 member's epoch); an empty member id
	// is an administrative commit.
	Commit(ctx context.Context, name string, ref group.MemberRef, offsets []group.Entry) error
	// The classic group protocol, in the group package's types. Its own
	// errors (group.ErrUnknownMember, ...) come back as they are, others
	// as gRPC status errors. JoinGroup and SyncGroup wait as Kafka's do.
	JoinGroup(ctx context.Context, name string, req group.JoinRequest) (group.JoinResult, error)
	SyncGroup(ctx context.Context, name string, req group.SyncRequest) ([]byte, error)
	ClassicHeartbeat(ctx context.Context, name string, ref group.MemberRef) error
	LeaveGroup(ctx context.Context, name string, refs []group.MemberRef) ([]error, error)
	DescribeGroup(ctx context.Context, name string) (group.Description, error)
}

// ReadResult is one Read.
type ReadResult struct {
	// Batches are whole Skein batches back to back; the first may start
	// before the offset asked for.
	Batches        []byte
	HighWatermark  int64
	LogStartOffset int64
	Watch          <-chan struct{}
}
