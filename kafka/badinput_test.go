package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/group"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// memBackend is an in-memory Backend: one topic "t" with one partition,
// appends kept in a slice.
type memBackend struct {
	mu      sync.Mutex
	batches [][]byte
}

func (m *memBackend) Metadata(context.Context) (*pb.MetadataResponse, error) {
	return &pb.MetadataResponse{ClusterId: "c", ControllerId: 1, Brokers: []*pb.BrokerInfo{{Id: 1, Addr: "127.0.0.1:9092"}},
		Topics: []*pb.TopicMetadata{{Name: "t", Config: &pb.TopicConfig{Partitions: 1}, Partitions: []*pb.PartitionMetadata{{Leader: 1, Replicas: []int32{1}, Isr: []int32{1}}}}}}, nil
}
func (m *memBackend) CreateTopic(context.Context, *pb.CreateTopicRequest) (*pb.CreateTopicResponse, error) {
	return nil, status.Error(codes.Unimplemented, "no")
}
func (m *memBackend) DeleteTopic(context.Context, *pb.DeleteTopicRequest) (*pb.DeleteTopicResponse, error) {
	return nil, status.Error(codes.Unimplemented, "no")
}
func (m *memBackend) AlterTopic(context.Context, *pb.AlterTopicRequest) (*pb.AlterTopicResponse, error) {
	return nil, status.Error(codes.Unimplemented, "no")
}
func (m *memBackend) BrokerConfigs() map[string]string { return map[string]string{} }
func (m *memBackend) InitProducer(context.Context, *pb.InitProducerRequest) (*pb.InitProducerResponse, error) {
	return &pb.InitProducerResponse{ProducerId: 7}, nil
}
func (m *memBackend) ListOffsets(context.Context, *pb.ListOffsetsRequest) (*pb.ListOffsetsResponse, error) {
	return &pb.ListOffsetsResponse{}, nil
}
func (m *memBackend) Produce(req *pb.ProduceRequest, done func(*pb.ProduceResponse)) {
	m.mu.Lock()
	off := int64(len(m.batches))
	m.batches = append(m.batches, req.Batch)
	m.mu.Unlock()
	done(&pb.ProduceResponse{BaseOffset: off})
}
func (m *memBackend) Read(*pb.FetchRequest) (ReadResult, error) {
	return ReadResult{Watch: make(chan struct{})}, nil
}
func (m *memBackend) FindCoordinator(context.Context, *pb.FindCoordinatorRequest) (*pb.FindCoordinatorResponse, error) {
	return &pb.FindCoordinatorResponse{BrokerId: 1}, nil
}
func (m *memBackend) GroupHeartbeat(context.Context, *pb.GroupHeartbeatRequest) (*pb.GroupHeartbeatResponse, error) {
	return nil, status.Error(codes.Unimplemented, "no")
}
func (m *memBackend) Commit(context.Context, string, group.MemberRef, []group.Entry) error {
	return status.Error(codes.Unimplemented, "no")
}
func (m *memBackend) JoinGroup(context.Context, string, group.JoinRequest) (group.JoinResult, error) {
	return group.JoinResult{}, status.Error(codes.Unimplemented, "no")
}
func (m *memBackend) SyncGroup(context.Context, string, group.SyncRequest) ([]byte, error) {
	return nil, status.Error(codes.Unimplemented, "no")
}
func (m *memBackend) ClassicHeartbeat(context.Context, string, group.MemberRef) error {
	return status.Error(codes.Unimplemented, "no")
}
func (m *memBackend) LeaveGroup(context.Context, string, []group.MemberRef) ([]error, error) {
	return nil, status.Error(codes.Unimplemented, "no")
}
func (m *memBackend) DescribeGroup(context.Context, string) (group.Description, error) {
	return group.Description{State: group.StateDead}, nil
}
func (m *memBackend) FetchOffsets(context.Context, *pb.FetchOffsetsRequest) (*pb.FetchOffsetsResponse, error) {
	return &pb.FetchOffsetsResponse{}, nil
}
func (m *memBackend) ListGroups(context.Context, *pb.ListGroupsRequest) (*pb.ListGroupsResponse, error) {
	return &pb.ListGroupsResponse{}, nil
}
func (m *memBackend) DeleteGroup(context.Context, *pb.DeleteGroupRequest) (*pb.DeleteGroupResponse, error) {
	return nil, status.Error(codes.Unimplemented, "no")
}
func (m *memBackend) appended() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.batches)
}

// logBuf collects log lines safely.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) warnings() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), "level=WARN")
}

func startMem(t *testing.T) (*Server, *memBackend, *logBuf) {
	t.Helper()
	be, logs := &memBackend{}, &logBuf{}
	s, err := Listen(Config{Addr: "127.0.0.1:0", MaxFrameBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(logs, nil))}, be)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return s, be, logs
}

func dial(t *testing.T, s *Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

func frame(req kmsg.Request, corr int32) []byte {
	return kmsg.NewRequestFormatter(kmsg.FormatterClientID("test")).AppendRequest(nil, req, corr)
}

// roundTrip sends req and decodes the answer into resp.
func roundTrip(t *testing.T, c net.Conn, req kmsg.Request, resp kmsg.Response) {
	t.Helper()
	if _, err := c.Write(frame(req, 42)); err != nil {
		t.Fatal(err)
	}
	body := readResponse(t, c)
	if req.IsFlexible() && req.Key() != apiVersionsKey {
		body = body[1:] // header tag section
	}
	resp.SetVersion(req.GetVersion())
	if err := resp.ReadFrom(body); err != nil {
		t.Fatalf("decode %T: %v", resp, err)
	}
}

func readResponse(t *testing.T, c net.Conn) []byte {
	t.Helper()
	f, err := readFrame(c, 1<<24)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if corr := int32(binary.BigEndian.Uint32(f)); corr != 42 {
		t.Fatalf("correlation id %d", corr)
	}
	return f[4:]
}

// expectClosed checks the server closed the connection without answering.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("connection still open: read %d, %v", n, err)
	}
}

// healthy checks a new connection is served.
func healthy(t *testing.T, s *Server) {
	t.Helper()
	resp := kmsg.NewPtrApiVersionsResponse()
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(3)
	req.ClientSoftwareName, req.ClientSoftwareVersion = "t", "1"
	roundTrip(t, dial(t, s), req, resp)
	if resp.ErrorCode != 0 || len(resp.ApiKeys) != len(supported) {
		t.Fatalf("ApiVersions: %+v", resp)
	}
}

func waitWarnings(t *testing.T, logs *logBuf, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for logs.warnings() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a second line would show by now
	if got := logs.warnings(); got != n {
		t.Fatalf("%d warnings logged, want %d:\n%s", got, n, logs.b.String())
	}
}

// kafkaBatch is a valid Kafka record batch of n records.
func kafkaBatch(t testing.TB, codec batch.Compression, n int) []byte {
	b := batch.NewBuilder(codec)
	for i := 0; i < n; i++ {
		b.Add(&batch.Record{Timestamp: 1000 + int64(i), Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 100)})
	}
	sk, err := b.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := appendKafka(nil, sk)
	if err != nil {
		t.Fatal(err)
	}
	return kb
}

func produceRequest(records []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	req.Acks, req.TimeoutMillis = -1, 1000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = records
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func TestBadInput(t *testing.T) {
	t.Run("truncated frame", func(t *testing.T) {
		s, be, logs := startMem(t)
		c := dial(t, s)
		f := frame(kmsg.NewPtrMetadataRequest(), 42)
		c.Write(f[:len(f)-3])
		c.(*net.TCPConn).CloseWrite()
		expectClosed(t, c)
		waitWarnings(t, logs, 1)
		healthy(t, s)
		if be.appended() != 0 {
			t.Fatal("appended")
		}
	})
	t.Run("truncated body", func(t *testing.T) {
		s, _, logs := startMem(t)
		c := dial(t, s)
		f := frame(produceRequest(kafkaBatch(t, batch.None, 1)), 42)
		f = f[:len(f)-20]
		binary.BigEndian.PutUint32(f, uint32(len(f)-4))
		c.Write(f)
		expectClosed(t, c)
		waitWarnings(t, logs, 1)
		healthy(t, s)
	})
	t.Run("unknown API key", func(t *testing.T) {
		s, _, logs := startMem(t)
		c := dial(t, s)
		f := frame(kmsg.NewPtrAlterPartitionAssignmentsRequest(), 42) // not offered
		c.Write(f)
		expectClosed(t, c)
		c = dial(t, s)
		f = frame(kmsg.NewPtrApiVersionsRequest(), 42)
		binary.BigEndian.PutUint16(f[4:], 9999)
		c.Write(f)
		expectClosed(t, c)
		waitWarnings(t, logs, 2)
		healthy(t, s)
	})
	t.Run("unsupported version", func(t *testing.T) {
		s, be, logs := startMem(t)
		c := dial(t, s)
		req := produceRequest(kafkaBatch(t, batch.None, 1))
		req.SetVersion(2) // message sets before record batch v2
		c.Write(frame(req, 42))
		expectClosed(t, c)
		waitWarnings(t, logs, 1)
		if be.appended() != 0 {
			t.Fatal("appended")
		}
		// ApiVersions newer than supported is answered, in version 0.
		c = dial(t, s)
		f := frame(kmsg.NewPtrApiVersionsRequest(), 42)
		binary.BigEndian.PutUint16(f[6:], 99)
		c.Write(f)
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.SetVersion(0)
		if err := resp.ReadFrom(readResponse(t, c)); err != nil {
			t.Fatal(err)
		}
		if resp.ErrorCode != kerr.UnsupportedVersion.Code || len(resp.ApiKeys) != len(supported) {
			t.Fatalf("ApiVersions v99: %+v", resp)
		}
		healthy(t, s)
	})
	t.Run("frame over the limit", func(t *testing.T) {
		s, _, logs := startMem(t)
		c := dial(t, s)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], 1<<20+1)
		c.Write(hdr[:])
		expectClosed(t, c)
		c = dial(t, s)
		binary.BigEndian.PutUint32(hdr[:], 0xffffffff) // negative
		c.Write(hdr[:])
		expectClosed(t, c)
		waitWarnings(t, logs, 2)
		healthy(t, s)
	})
	t.Run("corrupt batch CRC", func(t *testing.T) {
		s, be, logs := startMem(t)
		c := dial(t, s)
		kb := kafkaBatch(t, batch.Zstd, 3)
		kb[len(kb)-1] ^= 0xff
		resp := kmsg.NewPtrProduceResponse()
		roundTrip(t, c, produceRequest(kb), resp)
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != kerr.CorruptMessage.Code || p.ErrorMessage == nil || !strings.Contains(*p.ErrorMessage, "CRC") {
			t.Fatalf("answer %+v", p)
		}
		waitWarnings(t, logs, 1)
		if be.appended() != 0 {
			t.Fatal("a corrupt batch was appended")
		}
		// The connection still serves, and a good batch goes through.
		roundTrip(t, c, produceRequest(kafkaBatch(t, batch.Zstd, 3)), resp)
		if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || be.appended() != 1 {
			t.Fatalf("good batch after a corrupt one: %+v", p)
		}
	})
	t.Run("old message format and transactions", func(t *testing.T) {
		s, be, _ := startMem(t)
		c := dial(t, s)
		kb := kafkaBatch(t, batch.None, 1)
		old := append([]byte{}, kb...)
		old[16] = 1
		resp := kmsg.NewPtrProduceResponse()
		roundTrip(t, c, produceRequest(old), resp)
		if p := resp.Topics[0].Partitions[0]; p.ErrorCode != kerr.UnsupportedForMessageFormat.Code {
			t.Fatalf("magic 1: %+v", p)
		}
		req := produceRequest(kb)
		req.Acks = 2
		roundTrip(t, c, req, resp)
		if p := resp.Topics[0].Partitions[0]; p.ErrorCode != kerr.InvalidRequiredAcks.Code {
			t.Fatalf("acks 2: %+v", p)
		}
		if be.appended() != 0 {
			t.Fatal("appended")
		}
	})
}

// Answers come back in request order even when a long fetch precedes a
// quick request on the same connection.
func TestAnswersInOrder(t *testing.T) {
	s, _, _ := startMem(t)
	c := dial(t, s)
	fetch := kmsg.NewPtrFetchRequest()
	fetch.SetVersion(11)
	fetch.MaxWaitMillis, fetch.MinBytes = 300, 1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "t"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	md := kmsg.NewPtrMetadataRequest()
	md.SetVersion(9)
	var out []byte
	out = append(out, kmsg.NewRequestFormatter().AppendRequest(nil, fetch, 1)...)
	out = append(out, kmsg.NewRequestFormatter().AppendRequest(nil, md, 2)...)
	start := time.Now()
	c.Write(out)
	for _, want := range []int32{1, 2} {
		f, err := readFrame(c, 1<<24)
		if err != nil {
			t.Fatal(err)
		}
		if corr := int32(binary.BigEndian.Uint32(f)); corr != want {
			t.Fatalf("answer %d came before %d", corr, want)
		}
	}
	if time.Since(start) < 250*time.Millisecond {
		t.Fatal("the fetch did not wait for data")
	}
}
