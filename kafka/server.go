package kafka

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/skeinlog/skein/auth"
)

// Config configures a Server.
type Config struct {
	// Addr is the listen address, host:port; port 0 picks a free port.
	Addr string
	// MaxFrameBytes bounds one request frame (Kafka's
	// socket.request.max.bytes): a client announcing a bigger one is
	// disconnected before anything is read. Default 100 MiB.
	MaxFrameBytes int
	// MaxConns bounds open client connections; more are closed at accept.
	// Default 4096.
	MaxConns int
	// MaxInFlight bounds the requests of one connection being worked on
	// or waiting to be answered; past it the listener stops reading that
	// connection. Default 64.
	MaxInFlight int
	// IdleTimeout closes a connection that sends nothing for this long
	// (Kafka's connections.max.idle.ms). Default 10 minutes.
	IdleTimeout time.Duration
	// MaxRecordsBytes bounds a produced batch's decompressed records
	// (default 64 MiB).
	MaxRecordsBytes int
	// Throttler applies client quotas (by the request header's client
	// id); nil: none.
	Throttler Throttler
	// TLS, when set, serves Kafka over TLS with it (a client's handshake
	// runs on its first read).
	TLS    *tls.Config
	Logger *slog.Logger
	// Authorizer checks every request (nil: everything is allowed).
	Authorizer *auth.Authorizer
	// Credentials finds a user's SCRAM credential for SaslAuthenticate
	// (nil: SASL is refused).
	Credentials auth.Lookup
}

func (c *Config) fill() {
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = 100 << 20
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 4096
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 64
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.MaxRecordsBytes <= 0 {
		c.MaxRecordsBytes = 64 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Server is a Kafka wire-protocol listener over a Backend.
type Server struct {
	cfg  Config
	be   Backend
	lis  net.Listener
	log  *slog.Logger
	ctx  context.Context // cancelled by Close
	stop context.CancelFunc

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool

	wg        sync.WaitGroup // the accept loop and every connection's goroutines
	closeOnce sync.Once
}

// Listen binds cfg.Addr. Serve starts answering.
func Listen(cfg Config, be Backend) (*Server, error) {
	cfg.fill()
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	if cfg.TLS != nil {
		lis = tls.NewListener(lis, cfg.TLS)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, be: be, lis: lis, log: cfg.Logger, ctx: ctx, stop: cancel, conns: map[net.Conn]struct{}{}}, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Serve accepts connections until Close. It returns nil after Close, and
// an error only if the listener itself is gone; failed accepts (out of file
// descriptors, say) are logged and retried with a growing pause, so that
// running out of connections never stops the broker.
func (s *Server) Serve() error {
	s.wg.Add(1)
	defer s.wg.Done()
	pause := time.Duration(0)
	for {
		nc, err := s.lis.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("kafka listener: %w", err)
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			s.log.Warn("kafka: accept failed; retrying", "err", err, "pause", pause)
			select {
			case <-time.After(pause):
			case <-s.ctx.Done():
				return nil
			}
			continue
		}
		pause = 0
		if !s.track(nc) {
			nc.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(nc)
			s.serveConn(nc)
		}()
	}
}

// track registers a new connection; false when closed or full.
func (s *Server) track(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if len(s.conns) >= s.cfg.MaxConns {
		s.log.Warn("kafka: too many connections; closing a new one", "remote", nc.RemoteAddr(), "max", s.cfg.MaxConns)
		return false
	}
	s.conns[nc] = struct{}{}
	return true
}

func (s *Server) untrack(nc net.Conn) {
	s.mu.Lock()
	delete(s.conns, nc)
	s.mu.Unlock()
	nc.Close()
}

// Close stops accepting, cuts every connection (requests in flight end
// with their connection) and waits for the listener's goroutines.
// Idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.stop()
		s.lis.Close()
		s.mu.Lock()
		s.closed = true
		for nc := range s.conns {
			nc.Close()
		}
		s.mu.Unlock()
	})
	s.wg.Wait()
	return nil
}

// pending is one request's place in its connection's answer order.
type pending struct {
	corr     int32
	key      int16
	version  int16
	flexible bool
	clientID string
	done     chan struct{} // closed when resp is set (or there is none)
	resp     kmsg.Response // nil: send nothing (produce with acks 0)
	throttle time.Duration // over a quota: the answer carries it
	// post, when set, amends the answer before it is sent (the
	// authorization hook adds the topics it refused).
	post func(kmsg.Response)
	// last: close the connection once this answer is written.
	last bool
}

func (p *pending) answer(r kmsg.Response) {
	if r != nil && p.post != nil {
		p.post(r)
	}
	p.resp = r
	close(p.done)
}

// serveConn reads requests off one connection in order and answers them in
// the same order (Kafka's contract), working on up to MaxInFlight at once.
// A framing or decoding error closes the connection, as Kafka does.
func (s *Server) serveConn(nc net.Conn) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	queue := make(chan *pending, s.cfg.MaxInFlight)
	var handlers sync.WaitGroup
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writeLoop(ctx, nc, queue)
		cancel()
		nc.Close() // unblocks the reader
	}()
	c := &conn{s: s, ctx: ctx, remote: nc.RemoteAddr().String(), handlers: &handlers, conv: newConverter(s.cfg.MaxRecordsBytes)}
	br := bufio.NewReaderSize(nc, 64<<10)
	for {
		if !c.waitMuted() {
			break
		}
		nc.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		frame, err := readFrame(br, s.cfg.MaxFrameBytes)
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				s.log.Warn("kafka: closing connection", "remote", c.remote, "err", err)
			}
			break
		}
		p, req, err := decodeRequest(frame)
		if err != nil {
			s.log.Warn("kafka: closing connection after a bad request", "remote", c.remote, "err", err)
			break
		}
		if c.principal == "" {
			c.principal = tlsPrincipal(nc)
		}
		select {
		case queue <- p:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		c.throttleRequest(p, req)
		if !c.dispatch(p, req) {
			<-writerDone // the last answer is written, then the connection closed
			break
		}
	}
	cancel()
	close(queue)
	<-writerDone
	handlers.Wait()
}

// writeLoop writes answers in request order until the queue closes or a
// write fails.
func (s *Server) writeLoop(ctx context.Context, nc net.Conn, queue <-chan *pending) {
	bw := bufio.NewWriterSize(nc, 64<<10)
	var buf []byte
	for p := range queue {
		select {
		case <-p.done:
		case <-ctx.Done():
			return
		}
		if p.resp == nil {
			if p.last {
				return
			}
			continue
		}
		setThrottle(p)
		buf = encodeResponse(buf[:0], p)
		nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := bw.Write(buf); err != nil {
			return
		}
		if p.last {
			bw.Flush()
			return
		}
		// Flush when nothing else is queued, so pipelined answers share a
		// write.
		if len(queue) == 0 {
			if err := bw.Flush(); err != nil {
				return
			}
		}
	}
	bw.Flush()
}

// readFrame reads one size-prefixed frame of at most max bytes.
func readFrame(r io.Reader, max int) ([]byte, error) {
	var sz [4]byte
	if _, err := io.ReadFull(r, sz[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(sz[:]))
	if n < 0 || int64(n) > int64(max) {
		return nil, fmt.Errorf("request frame of %d bytes: the limit is %d (socket.request.max.bytes)", n, max)
	}
	// Grow the buffer as bytes arrive rather than trusting the announced
	// size: a client announcing big frames and sending nothing holds no
	// memory.
	buf := bytes.NewBuffer(make([]byte, 0, min(int(n), 64<<10)))
	if _, err := io.CopyN(buf, r, int64(n)); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("truncated request frame: %w", err)
	}
	return buf.Bytes(), nil
}

// encodeResponse frames p's answer: size, correlation id, the response
// header's tag section (flexible versions, except ApiVersions), the body.
func encodeResponse(dst []byte, p *pending) []byte {
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(p.corr))
	if p.flexible && p.key != apiVersionsKey {
		dst = append(dst, 0)
	}
	p.resp.SetVersion(p.version)
	dst = p.resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst, uint32(len(dst)-4))
	return dst
}
