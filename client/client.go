package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/proto/skeinv1"
)

// Client is a connection to a Skein cluster: a pool of gRPC connections, one
// per broker address, dialled lazily, and a cache of cluster metadata. It
// serves the admin calls and is shared by the producers and consumers made
// from it. A Client is safe for concurrent use.
type Client struct {
	cfg clientConfig
	log *slog.Logger

	mu       sync.Mutex // guards the fields below
	conns    map[string]*grpc.ClientConn
	children map[closer]struct{} // producers and consumers to close first
	closed   bool                // Close was called: no new producers, consumers, connections
	stopping bool                // children closed: no new client goroutines

	meta metadata

	quit chan struct{}  // closed by Close
	wg   sync.WaitGroup // the client's own goroutines (metadata refreshes)
}

type closer interface{ Close() error }

// New returns a client. It does not connect: connections are made on first
// use, so New fails only on invalid options.
func New(opts ...ClientOpt) (*Client, error) {
	cfg := defaultClientConfig()
	for _, o := range opts {
		o.applyClient(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Client{
		cfg:      cfg,
		log:      cfg.logger,
		conns:    make(map[string]*grpc.ClientConn),
		children: make(map[closer]struct{}),
		quit:     make(chan struct{}),
	}
	c.meta.init()
	return c, nil
}

// Close closes the producers (which flush first) and consumers made from the
// client, then the connections. It is idempotent and waits for the client's
// goroutines.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	kids := make([]closer, 0, len(c.children))
	for k := range c.children {
		kids = append(kids, k)
	}
	c.mu.Unlock()

	for _, k := range kids {
		k.Close()
	}
	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
	close(c.quit)
	c.wg.Wait()

	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for addr, cc := range c.conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close connection to %s: %w", addr, err))
		}
	}
	c.conns = nil
	return errors.Join(errs...)
}

// register adds a producer or consumer for Close; it fails once the client
// is closed.
func (c *Client) register(k closer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.children[k] = struct{}{}
	return nil
}

func (c *Client) unregister(k closer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.children, k)
}

// maxRecvMsg is the largest message the client accepts: a fetch response of
// the largest batch the format allows, plus framing.
const maxRecvMsg = batch.MaxBatchBytes + 1<<20

// conn returns the API stub for a broker address, dialling it on first use.
func (c *Client) conn(addr string) (skeinv1.SkeinClient, error) {
	cc, err := c.rawConn(addr)
	if err != nil {
		return nil, err
	}
	return skeinv1.NewSkeinClient(cc), nil
}

// rawConn returns the connection to a broker address, dialling it on first
// use.
func (c *Client) rawConn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return nil, ErrClosed
	}
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	target := addr
	if !strings.Contains(addr, "://") {
		// Dial host:port as given, as grpc.Dial did: no resolver in between,
		// so custom dialers (tests, proxies) see the address itself.
		target = "passthrough:///" + addr
	}
	creds, err := c.cfg.credsFor(addr)
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient(target, append(c.cfg.dialOptions(), creds...)...)
	if err != nil {
		return nil, fmt.Errorf("skein client: dial %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// goFunc runs f as a goroutine owned by the client (Close waits for it). It
// reports false, and does not run f, once Close has begun its shutdown.
func (c *Client) goFunc(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// withTimeout bounds ctx by the request timeout unless it has an earlier
// deadline.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.requestTimeout)
}

// isTransport reports whether err says the broker could not be reached (or
// stopped answering), so that another broker may do.
func isTransport(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.reason != skeinv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return false
	}
	return e.code == codes.Unavailable || e.code == codes.DeadlineExceeded
}

// callAny runs fn against the brokers in order (the last one that answered,
// the bootstrap list, then the brokers learned from metadata) until one
// answers; a transport failure moves on to the next broker, any other
// answer is returned. Each attempt is bounded by the request timeout.
func (c *Client) callAny(ctx context.Context, what string, fn func(context.Context, skeinv1.SkeinClient) error) error {
	return c.callAnyOf(ctx, c.meta.candidates(c.cfg.brokers), what, fn)
}

// callAnyOf is callAny over the given brokers, in order.
func (c *Client) callAnyOf(ctx context.Context, addrs []string, what string, fn func(context.Context, skeinv1.SkeinClient) error) error {
	return c.callAnyConn(ctx, addrs, what, func(ctx context.Context, cc grpc.ClientConnInterface) error {
		return fn(ctx, skeinv1.NewSkeinClient(cc))
	})
}

// callAnyConn is callAnyOf with the connection, for any service.
func (c *Client) callAnyConn(ctx context.Context, addrs []string, what string, fn func(context.Context, grpc.ClientConnInterface) error) error {
	var last error
	for _, addr := range addrs {
		cl, err := c.rawConn(addr)
		if err != nil {
			return err
		}
		actx, cancel := c.withTimeout(ctx)
		err = fromRPC(fn(actx, cl))
		cancel()
		if err == nil {
			c.meta.answered(addr)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !isTransport(err) {
			return err
		}
		c.log.Debug("skein: broker unreachable", "addr", addr, "request", what, "err", err)
		last = err
	}
	return fmt.Errorf("no broker answered (tried %s): %w", strings.Join(addrs, ", "), last)
}

// callLeader runs fn against the leader of a partition, with the leader
// epoch the client knows. On a retriable error it refreshes the metadata,
// backs off and tries again, until ctx is done or, when ctx has no deadline,
// the request timeout has passed.
func (c *Client) callLeader(ctx context.Context, topic string, partition int32, fn func(context.Context, skeinv1.SkeinClient, int32) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = c.withTimeout(ctx)
		defer cancel()
	}
	for attempt := 1; ; attempt++ {
		l, err := c.leader(ctx, topic, partition)
		if err != nil {
			return err
		}
		cl, err := c.conn(l.addr)
		if err != nil {
			return err
		}
		actx, cancel := c.withTimeout(ctx)
		err = fromRPC(fn(actx, cl, l.epoch))
		cancel()
		if err == nil || !IsRetriable(err) {
			return err
		}
		c.log.Debug("skein: retrying", "topic", topic, "partition", partition, "err", err)
		if !c.meta.applyHint(topic, partition, err) {
			c.refreshAsync(l.gen)
		}
		t := time.NewTimer(retryWait(c.cfg.retryBackoff, attempt, err))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// leaderInfo is where a partition's requests go.
type leaderInfo struct {
	id    int32
	addr  string
	epoch int32
	gen   uint64 // the metadata generation it came from
}

// leader resolves a partition's leader, refreshing the metadata (and waiting
// for it, within ctx) while the topic, the partition's leader or the
// leader's address is unknown. An unknown topic or partition after a fresh
// refresh is an error.
func (c *Client) leader(ctx context.Context, topic string, partition int32) (leaderInfo, error) {
	refreshed := false
	for attempt := 1; ; attempt++ {
		l, lerr := c.meta.leader(topic, partition)
		if lerr == nil {
			c.maybeRefreshStale()
			return l, nil
		}
		if refreshed && lerr.permanent {
			return l, lerr.err
		}
		if err := c.refresh(ctx, l.gen); err != nil {
			return l, err
		}
		refreshed = true
		if attempt > 1 {
			// The refresh succeeded but the partition still has no leader:
			// wait for the cluster to elect one.
			t := time.NewTimer(backoff(c.cfg.retryBackoff, attempt))
			select {
			case <-ctx.Done():
				t.Stop()
				return l, fmt.Errorf("%w: %w", ctx.Err(), lerr.err)
			case <-t.C:
			}
		}
	}
}
