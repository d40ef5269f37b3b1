package broker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/skeinlog/skein/auth"
	"github.com/skeinlog/skein/cluster"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// ClientIDHeader is the request metadata that names a gRPC caller's client
// id, for quotas (Kafka's client.id).
const ClientIDHeader = "skein-client-id"

// throttleTrailer carries a unary call's throttle time in milliseconds.
const throttleTrailer = "skein-throttle-ms"

// caller is who a request counts against.
type caller struct {
	user, clientID string
	// throttle is the longest throttle the call's handler asked for.
	mu       sync.Mutex
	throttle time.Duration
}

func (c *caller) note(d time.Duration) {
	c.mu.Lock()
	c.throttle = max(c.throttle, d)
	c.mu.Unlock()
}

type callerKey struct{}

// callerOf is the caller the quota interceptors found for ctx's call.
func callerOf(ctx context.Context) *caller {
	if c, ok := ctx.Value(callerKey{}).(*caller); ok {
		return c
	}
	return newCaller(ctx)
}

// newCaller reads a call's client id (metadata) and user: the name of the
// principal authentication found (ANONYMOUS without credentials, as in
// Kafka), or else of a verified client certificate.
func newCaller(ctx context.Context) *caller {
	c := &caller{}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(ClientIDHeader); len(v) > 0 {
			c.clientID = cleanClientID(v[0])
		}
	}
	if p, ok := ctx.Value(principalKey{}).(auth.Principal); ok {
		c.user = p.Name()
		return c
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			if pr, ok := auth.FromTLS(&ti.State); ok {
				c.user = pr.Name()
			}
		}
	}
	return c
}

// cleanClientID makes a client id usable as a bucket name and metric
// label: valid UTF-8, at most 255 bytes.
func cleanClientID(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) > 255 {
		s = strings.ToValidUTF8(s[:255], "")
	}
	return s
}

// quotaMethod reports whether a method is a client request quotas count:
// the Skein and Groups services, not health or reflection.
func quotaMethod(full string) bool {
	return strings.HasPrefix(full, "/skein.v1.Skein/") || strings.HasPrefix(full, "/skein.v1.Groups/")
}

// quotaUnary counts a unary call against its caller's request quota, and
// delays its answer by the longest throttle of the call (request rate, or
// the produce bytes the handler noted), which the answer carries.
func (b *Broker) quotaUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !quotaMethod(info.FullMethod) {
		return handler(ctx, req)
	}
	c := newCaller(ctx)
	c.note(b.quotas.record(c.user, c.clientID, cluster.QuotaRequest, 1))
	resp, err := handler(context.WithValue(ctx, callerKey{}, c), req)
	c.mu.Lock()
	t := c.throttle
	c.mu.Unlock()
	if t > 0 {
		b.throttleWait(ctx, t)
		grpc.SetTrailer(ctx, metadata.Pairs(throttleTrailer, strconv.FormatInt(t.Milliseconds(), 10)))
		if r, ok := resp.(*pb.ProduceResponse); ok && r != nil {
			r.ThrottleTimeMs = int32(t.Milliseconds())
		}
	}
	return resp, err
}

// quotaStream counts the opening of a stream as one request and delays
// it by the caller's request throttle; the handler counts what the stream
// carries.
func (b *Broker) quotaStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !quotaMethod(info.FullMethod) {
		return handler(srv, ss)
	}
	ctx := ss.Context()
	c := newCaller(ctx)
	if t := b.quotas.record(c.user, c.clientID, cluster.QuotaRequest, 1); t > 0 {
		if err := b.throttleWait(ctx, t); err != nil {
			return toStatus(err)
		}
	}
	return handler(srv, &callerStream{ServerStream: ss, ctx: context.WithValue(ctx, callerKey{}, c)})
}

type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *callerStream) Context() context.Context { return s.ctx }

// throttleWait waits d, or until ctx ends or the broker stops.
func (b *Broker) throttleWait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-b.stopping:
		return errShuttingDown
	}
}

// throttleMs is d in whole milliseconds for a response field.
func throttleMs(d time.Duration) int32 { return int32(d.Milliseconds()) }

// ---- administration -----------------------------------------------------------

// AlterQuota validates a quota change and commits it through the
// controller (forwarding to it), then waits until this broker applied it.
func (s *server) AlterQuota(ctx context.Context, req *pb.AlterQuotaRequest) (*pb.AlterQuotaResponse, error) {
	ch, err := quotaChangeFromPB(req)
	if err == nil {
		err = cluster.ValidateQuotaChange(ch)
	}
	if err != nil {
		return nil, toStatus(invalid("%v", err))
	}
	_, _, err = atController(s.b, ctx, func() (*pb.AlterQuotaResponse, error) {
		return nil, s.b.ctrl.AlterQuota(ctx, ch)
	}, func(ctx context.Context, c pb.SkeinClient) (*pb.AlterQuotaResponse, error) {
		return c.AlterQuota(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	s.b.awaitMetadata(ctx, func(snap *cluster.Snapshot) bool { return quotaApplied(snap.Quotas, ch) })
	s.b.log.Info("client quota changed", "entity", ch.Entity.String(), "set", ch.Set, "remove", ch.Remove)
	return &pb.AlterQuotaResponse{}, nil
}

// quotaApplied reports whether quotas reflect ch.
func quotaApplied(quotas []cluster.Quota, ch cluster.QuotaChange) bool {
	var l cluster.QuotaLimits
	for _, q := range quotas {
		if q.Entity == ch.Entity {
			l = q.Limits
		}
	}
	for _, k := range ch.Remove {
		if l.Limit(k) != 0 {
			return false
		}
	}
	for _, k := range cluster.QuotaKinds {
		if v := ch.Set.Limit(k); v != 0 && l.Limit(k) != v {
			return false
		}
	}
	return true
}

// ListQuotas lists the client quotas.
func (s *server) ListQuotas(ctx context.Context, req *pb.ListQuotasRequest) (*pb.ListQuotasResponse, error) {
	resp := &pb.ListQuotasResponse{}
	for _, q := range s.b.snapshot().Quotas {
		resp.Quotas = append(resp.Quotas, &pb.Quota{Entity: quotaEntityToPB(q.Entity), Limits: &pb.QuotaLimits{
			ProduceBytesPerSec: q.Limits.ProduceBytesPerSec, FetchBytesPerSec: q.Limits.FetchBytesPerSec, RequestsPerSec: q.Limits.RequestsPerSec,
		}})
	}
	return resp, nil
}

func quotaEntityToPB(e cluster.QuotaEntity) *pb.QuotaEntity {
	return &pb.QuotaEntity{User: e.User, DefaultUser: e.DefaultUser, ClientId: e.ClientID, DefaultClient: e.DefaultClient}
}

func quotaChangeFromPB(req *pb.AlterQuotaRequest) (cluster.QuotaChange, error) {
	var ch cluster.QuotaChange
	if e := req.Entity; e != nil {
		ch.Entity = cluster.QuotaEntity{User: e.User, DefaultUser: e.DefaultUser, ClientID: e.ClientId, DefaultClient: e.DefaultClient}
	}
	if l := req.Set; l != nil {
		ch.Set = cluster.QuotaLimits{ProduceBytesPerSec: l.ProduceBytesPerSec, FetchBytesPerSec: l.FetchBytesPerSec, RequestsPerSec: l.RequestsPerSec}
	}
	for _, k := range req.Remove {
		switch k {
		case pb.QuotaKind_QUOTA_KIND_PRODUCE_BYTES:
			ch.Remove = append(ch.Remove, cluster.QuotaProduce)
		case pb.QuotaKind_QUOTA_KIND_FETCH_BYTES:
			ch.Remove = append(ch.Remove, cluster.QuotaFetch)
		case pb.QuotaKind_QUOTA_KIND_REQUESTS:
			ch.Remove = append(ch.Remove, cluster.QuotaRequest)
		default:
			return ch, errors.New("remove: unknown quota kind " + k.String() + " (want QUOTA_KIND_PRODUCE_BYTES, QUOTA_KIND_FETCH_BYTES or QUOTA_KIND_REQUESTS)")
		}
	}
	return ch, nil
}
