package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// errBudget is what a request meets when a broker budget is used up: the
// client sees RESOURCE_EXHAUSTED (reason UNAVAILABLE, so it retries) with
// a retry hint.
var errBudget = errors.New("broker budget used up")

// budgetWait is how long a request waits for room in a budget before it is
// refused, and the retry hint it is refused with.
const budgetWait = 250 * time.Millisecond

// budgetError says which budget is used up and when to try again.
type budgetError struct {
	reason     string // the metric label: which budget
	msg        string
	retryAfter time.Duration
}

func (e *budgetError) Error() string {
	return fmt.Sprintf("%s; retry after %v", e.msg, e.retryAfter)
}

func (e *budgetError) Unwrap() error { return errBudget }

// byteBudget bounds the bytes of fetch and produce data the broker holds
// in flight at once. A request waits up to wait for room, then fails with a
// budgetError. A request larger than the whole budget is let through alone
// (when nothing else is in flight), so no request waits forever.
type byteBudget struct {
	total int64
	wait  time.Duration

	mu      sync.Mutex
	used    int64
	changed chan struct{} // closed and replaced at every release
}

func newByteBudget(total int64, wait time.Duration) *byteBudget {
	return &byteBudget{total: total, wait: wait, changed: make(chan struct{})}
}

// fetchShare is how much of the in-flight budget fetches may hold
// together: three quarters, so readers that do not read (or read slowly)
// never leave producers without room. Pure.
func fetchShare(total int64) int64 { return total - total/4 }

// fits reports whether n more bytes fit beside used under total. Pure.
func fits(used, n, total int64) bool {
	return used+n <= total || used == 0
}

// tryAcquire takes n bytes if they fit now.
func (b *byteBudget) tryAcquire(n int64) (ok bool, changed <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if fits(b.used, n, b.total) {
		b.used += n
		return true, nil
	}
	return false, b.changed
}

// acquire takes n bytes, waiting up to the budget's wait for room. The
// caller gives them back with release.
func (b *byteBudget) acquire(ctx context.Context, n int64) error {
	ok, changed := b.tryAcquire(n)
	if ok {
		return nil
	}
	timer := time.NewTimer(b.wait)
	defer timer.Stop()
	for {
		select {
		case <-changed:
		case <-timer.C:
			return &budgetError{
				reason: refusedInflight,
				msg: fmt.Sprintf("the broker's in-flight data budget is used up (%d of %d bytes held by other requests, this one needs %d; --max-inflight-bytes)",
					b.inUse(), b.total, n),
				retryAfter: b.wait,
			}
		case <-ctx.Done():
			return ctx.Err()
		}
		if ok, changed = b.tryAcquire(n); ok {
			return nil
		}
	}
}

// release gives back n bytes taken by acquire.
func (b *byteBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	if b.used < 0 {
		panic(fmt.Sprintf("byte budget released %d bytes more than it lent", -b.used))
	}
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// hasRoom reports whether n bytes would be lent now without waiting.
func (b *byteBudget) hasRoom(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return fits(b.used, n, b.total)
}

// inUse is the bytes lent now.
func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// validateBudgets fills the budgets' zero values from d and checks them.
func (c *Config) validateBudgets(d Config) error {
	if c.MaxInflightBytes == 0 {
		c.MaxInflightBytes = d.MaxInflightBytes
	}
	if c.MaxInflightBytes < int64(c.MaxRequestBytes) {
		return fmt.Errorf("config: --max-inflight-bytes %d: at least --max-request-bytes (%d), so the largest request fits",
			c.MaxInflightBytes, c.MaxRequestBytes)
	}
	if c.FileHandles == nil {
		c.FileHandles = processHandles
	}
	if c.DiskFree == nil {
		c.DiskFree = diskFree
	}
	if c.MaxStreamsPerConn == 0 {
		c.MaxStreamsPerConn = d.MaxStreamsPerConn
	}
	if c.MaxStreamsPerConn < 1 || c.MaxStreamsPerConn > 1<<20 {
		return fmt.Errorf("config: --max-streams-per-connection %d: between 1 and 1048576", c.MaxStreamsPerConn)
	}
	return nil
}
