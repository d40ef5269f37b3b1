package client

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/proto/skeinv1"
)

// sink is a producer's ProduceStream to one broker. Requests of every
// partition led by that broker are pipelined on it, matched to their
// answers by correlation id. A broken stream fails all of its requests with
// a retriable transport error and is reopened by the next send.
type sink struct {
	p    *Producer
	addr string

	sendMu sync.Mutex // serialises opening the stream and Send

	mu     sync.Mutex // guards the fields below
	cur    *pstream
	nextID uint64
	closed bool
	// throttledUntil: the broker said this producer is over a quota and
	// reads nothing more of its stream until then; nothing is sent before.
	throttledUntil time.Time

	wg sync.WaitGroup // receive goroutines
}

// pstream is one ProduceStream and the requests awaiting an answer on it.
type pstream struct {
	stream  skeinv1.Skein_ProduceStreamClient
	cancel  context.CancelFunc
	pending map[uint64]*preq // guarded by sink.mu
	dead    bool             // guarded by sink.mu
}

type preq struct {
	done  func(*skeinv1.ProduceResponse, error)
	timer *time.Timer
}

func newSink(p *Producer, addr string) *sink { return &sink{p: p, addr: addr} }

// send writes req on stream ps and arranges for done to be called exactly
// once with its answer: the response, or the error that ended the stream
// (at once if it already has), or a request timeout. With noAck
// (acks=none) done is called as soon as the request is written.
func (s *sink) send(ps *pstream, req *skeinv1.ProduceRequest, noAck bool, done func(*skeinv1.ProduceResponse, error)) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if ps.dead {
		s.mu.Unlock()
		done(nil, transportError(s.addr, fmt.Errorf("produce stream closed")))
		return
	}
	s.nextID++
	id := s.nextID
	req.CorrelationId = id
	if !noAck {
		pr := &preq{done: done}
		ps.pending[id] = pr
		pr.timer = time.AfterFunc(s.p.cfg.requestTimeout, func() { s.timeout(ps, id) })
	}
	s.mu.Unlock()
	if err := ps.stream.Send(req); err != nil {
		// Send reports io.EOF when the stream has ended; the reason is
		// what Recv returns, and the receiver reports it. Make sure the
		// stream is torn down either way.
		s.kill(ps, transportError(s.addr, fmt.Errorf("send: %w", err)))
		if noAck {
			done(nil, transportError(s.addr, err))
		}
		return
	}
	if noAck {
		done(nil, nil)
	}
}

// throttled returns until when the broker throttles this producer (zero
// or past when it does not).
func (s *sink) throttled() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.throttledUntil
}

// stream returns the live stream, opening one if needed.
func (s *sink) stream() (*pstream, error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if s.cur != nil && !s.cur.dead {
		ps := s.cur
		s.mu.Unlock()
		return ps, nil
	}
	s.mu.Unlock()

	cl, err := s.p.c.conn(s.addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	// Opening waits for the connection; bound that by the request timeout
	// without bounding the stream itself.
	t := time.AfterFunc(s.p.cfg.requestTimeout, cancel)
	st, err := cl.ProduceStream(ctx)
	if !t.Stop() && err == nil {
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		return nil, s.streamError(err)
	}
	ps := &pstream{stream: st, cancel: cancel, pending: make(map[uint64]*preq)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		return nil, ErrClosed
	}
	s.cur = ps
	s.wg.Add(1)
	s.mu.Unlock()
	go s.recv(ps)
	return ps, nil
}

// recv reads answers until the stream ends.
func (s *sink) recv(ps *pstream) {
	defer s.wg.Done()
	for {
		resp, err := ps.stream.Recv()
		if err != nil {
			s.kill(ps, s.streamError(err))
			return
		}
		s.mu.Lock()
		if t := resp.GetThrottleTimeMs(); t > 0 {
			s.throttledUntil = time.Now().Add(time.Duration(t) * time.Millisecond)
		}
		pr := ps.pending[resp.GetCorrelationId()]
		delete(ps.pending, resp.GetCorrelationId())
		s.mu.Unlock()
		if pr == nil {
			// An answer to an acks=none request, or to one that timed out.
			continue
		}
		pr.timer.Stop()
		pr.done(resp, nil)
	}
}

// timeout fails a request that got no answer in time, and tears its stream
// down: a broker that stopped answering one request is not trusted with the
// others.
func (s *sink) timeout(ps *pstream, id uint64) {
	s.mu.Lock()
	pr, ok := ps.pending[id]
	if !ok || ps.dead {
		s.mu.Unlock()
		return
	}
	delete(ps.pending, id)
	s.mu.Unlock()
	pr.done(nil, &Error{code: codes.DeadlineExceeded, LeaderID: -1,
		Message: fmt.Sprintf("no produce answer from %s within %v; the batch may or may not have been appended", s.addr, s.p.cfg.requestTimeout)})
	s.kill(ps, transportError(s.addr, fmt.Errorf("produce stream torn down after a request timed out")))
}

// kill ends a stream and fails its pending requests with err, in the order
// they were sent.
func (s *sink) kill(ps *pstream, err error) {
	s.mu.Lock()
	if ps.dead {
		s.mu.Unlock()
		return
	}
	ps.dead = true
	pend := ps.pending
	ps.pending = nil
	if s.cur == ps {
		s.cur = nil
	}
	s.mu.Unlock()
	ps.cancel()
	ids := make([]uint64, 0, len(pend))
	for id := range pend {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) > 0 {
		s.p.log.Debug("skein: produce stream ended", "addr", s.addr, "pending", len(ids), "err", err)
	}
	for _, id := range ids {
		pr := pend[id]
		pr.timer.Stop()
		pr.done(nil, err)
	}
}

// streamError classifies the error that ended (or failed to open) a
// stream. A status carrying an ErrorDetail is the broker's word; a request
// the broker can never accept on this stream is final; anything else is a
// retriable transport failure.
func (s *sink) streamError(err error) error {
	if err == io.EOF {
		return transportError(s.addr, fmt.Errorf("produce stream closed by the broker"))
	}
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			if _, ok := d.(*skeinv1.ErrorDetail); ok {
				return fromRPC(err)
			}
		}
		switch st.Code() {
		case codes.Unimplemented, codes.Unauthenticated, codes.PermissionDenied, codes.ResourceExhausted, codes.InvalidArgument:
			return fromRPC(err)
		}
	}
	if s.p.isClosing() && s.isClosed() {
		return ErrClosed
	}
	return transportError(s.addr, err)
}

func (s *sink) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// close ends the stream (failing what is pending with ErrClosed) and waits
// for its receiver.
func (s *sink) close() {
	s.mu.Lock()
	s.closed = true
	ps := s.cur
	s.mu.Unlock()
	if ps != nil {
		s.kill(ps, ErrClosed)
	}
	s.wg.Wait()
}
