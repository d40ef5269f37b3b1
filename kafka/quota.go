package kafka

import (
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/skeinlog/skein/cluster"
)

// Throttler is the broker's client quotas: Throttle counts amount (bytes,
// or 1 for a request) of kind against a caller and returns how long to
// throttle it (0: within its quota, or none applies).
type Throttler interface {
	Throttle(user, clientID string, kind cluster.QuotaKind, amount float64) time.Duration
}

// The Kafka listener throttles as Kafka does since KIP-219: the answer
// goes out at once carrying throttle_time_ms, and the connection is not
// read for that long (the client, which waits the same time, sees no
// difference; a client that does not wait is held back all the same).
// The user is the connection's principal's name (ANONYMOUS without
// credentials, as in Kafka).

// throttleRequest counts a request that was just read against the
// caller's request quota and, for a produce, its produce quota; the
// answer carries the throttle and the connection is muted for it.
func (c *conn) throttleRequest(p *pending, req kmsg.Request) {
	th := c.s.cfg.Throttler
	if th == nil || req == nil {
		return
	}
	t := th.Throttle(c.principal.Name(), clientIDLabel(p.clientID), cluster.QuotaRequest, 1)
	if r, ok := req.(*kmsg.ProduceRequest); ok {
		t = max(t, th.Throttle(c.principal.Name(), clientIDLabel(p.clientID), cluster.QuotaProduce, float64(produceBytes(r))))
	}
	p.throttle = t
	c.mute(t)
}

// throttleFetch counts a fetch answer's record bytes against the caller's
// fetch quota.
func (c *conn) throttleFetch(p *pending, resp *kmsg.FetchResponse) {
	th := c.s.cfg.Throttler
	if th == nil {
		return
	}
	n := 0
	for _, t := range resp.Topics {
		for _, part := range t.Partitions {
			n += len(part.RecordBatches)
		}
	}
	if n == 0 {
		return
	}
	t := th.Throttle(c.principal.Name(), clientIDLabel(p.clientID), cluster.QuotaFetch, float64(n))
	p.throttle = max(p.throttle, t)
	c.mute(t)
}

func produceBytes(r *kmsg.ProduceRequest) int {
	n := 0
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			n += len(p.Records)
		}
	}
	return n
}

// mute stops reading the connection for d (the longest mute wins).
func (c *conn) mute(d time.Duration) {
	if d <= 0 {
		return
	}
	until := time.Now().Add(d).UnixNano()
	for {
		cur := c.mutedUntil.Load()
		if cur >= until || c.mutedUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// waitMuted waits until the connection may be read again; false when the
// connection closed meanwhile.
func (c *conn) waitMuted() bool {
	d := time.Until(time.Unix(0, c.mutedUntil.Load()))
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// setThrottle puts p's throttle into its answer (responses without the
// field ignore it).
func setThrottle(p *pending) {
	if p.throttle <= 0 {
		return
	}
	if r, ok := p.resp.(kmsg.SetThrottleResponse); ok {
		r.SetThrottle(int32(min(p.throttle, time.Hour).Milliseconds()))
	}
}
