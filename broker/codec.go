package broker

import (
	"context"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// grpc-go answers a request it cannot unmarshal with INTERNAL, whatever the
// codec returns (rpc_util.go recv), before any interceptor runs. The broker
// answers INVALID_ARGUMENT instead: its codec lets the failed message
// through empty and remembers it, and the interceptors refuse a message
// the codec remembers. While no message failed, the check is one atomic
// load.

// badMessages are the messages that failed to unmarshal, until an
// interceptor sees them.
type badMessages struct {
	n  atomic.Int64
	mu sync.Mutex
	m  map[any]error
}

func (b *badMessages) add(msg any, err error) {
	b.mu.Lock()
	if b.m == nil {
		b.m = map[any]error{}
	}
	b.m[msg] = err
	b.n.Add(1)
	b.mu.Unlock()
}

// take returns and forgets the unmarshal error of msg, if it had one.
func (b *badMessages) take(msg any) error {
	if b.n.Load() == 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	err, ok := b.m[msg]
	if !ok {
		return nil
	}
	delete(b.m, msg)
	b.n.Add(-1)
	return status.Errorf(codes.InvalidArgument, "malformed request: not a valid protobuf message of its method's type: %v", err)
}

// lenientCodec is the proto codec, except that a message it cannot
// unmarshal is recorded in bad instead of failing the call there.
type lenientCodec struct {
	encoding.CodecV2
	bad *badMessages
}

func newLenientCodec(bad *badMessages) lenientCodec {
	return lenientCodec{CodecV2: encoding.GetCodecV2("proto"), bad: bad}
}

func (c lenientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if err := c.CodecV2.Unmarshal(data, v); err != nil {
		c.bad.add(v, err)
	}
	return nil
}

func (b *Broker) malformedUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := b.badMsgs.take(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (b *Broker) malformedStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &checkedStream{ServerStream: ss, bad: b.badMsgs})
}

// checkedStream fails a RecvMsg whose message did not unmarshal.
type checkedStream struct {
	grpc.ServerStream
	bad *badMessages
}

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.bad.take(m)
}
