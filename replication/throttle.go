package replication

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skeinlog/skein/internal/byterate"
)

// Throttle is one broker's byte budget for the fetches of its followers
// that are catching up as part of a reassignment: they share Rate bytes a
// second. Other followers — those in the ISR among them — never wait on
// it. The zero Throttle (or a nil one) limits nothing.
type Throttle struct {
	// Applies reports whether the follower of a partition is throttled
	// now; nil: none is.
	Applies func(topic string, partition int32) bool

	mu   sync.Mutex // guards rate and next
	rate int64      // bytes a second; 0: unlimited
	next time.Time  // when the budget spent so far is paid back
}

// SetRate changes the budget live; 0 removes it.
func (t *Throttle) SetRate(bytesPerSec int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rate = max(0, bytesPerSec)
}

// Rate is the budget in bytes a second (0: unlimited).
func (t *Throttle) Rate() int64 {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rate
}

// fetchBytes bounds one throttled fetch: a quarter second of the budget,
// between 64 KiB and max.
func (t *Throttle) fetchBytes(rate int64, maxBytes int) int {
	return int(min(int64(maxBytes), max(64<<10, rate/4)))
}

// throttled reports whether a partition's follower is throttled, and the
// budget.
func (t *Throttle) throttled(topic string, partition int32) (bool, int64) {
	if t == nil || t.Applies == nil {
		return false, 0
	}
	rate := t.Rate()
	return rate > 0 && t.Applies(topic, partition), rate
}

// spendCredit is how much unused budget counts, as time: a quarter second,
// the size of one throttled fetch (fetchBytes).
const spendCredit = time.Second / 4

// spend accounts n bytes fetched at now and returns how long the fetcher
// waits before its next fetch: the budget is paid back at the rate, and
// every throttled fetcher of the broker waits for what all of them spent.
// The time since the budget was last spent (the fetch and its write) counts,
// up to spendCredit: a fetcher whose fetches take time itself is not made
// to wait that time again, which would hold it well below the rate. Longer
// idle time is not saved up.
func (t *Throttle) spend(n int, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.rate <= 0 {
		return 0
	}
	if floor := now.Add(-spendCredit); t.next.Before(floor) {
		t.next = floor
	}
	t.next = t.next.Add(time.Duration(float64(n) / float64(t.rate) * float64(time.Second)))
	return max(0, t.next.Sub(now))
}

// ParseRate reads a byte rate: "50MB/s", "10MiB/s", "1048576" (bytes a
// second), or "off" / "0" for none. Units: B, KB, MB, GB (powers of 1000),
// KiB, MiB, GiB (powers of 1024); "/s" is optional.
func ParseRate(s string) (int64, error) {
	v := strings.TrimSpace(s)
	if v == "off" || v == "0" {
		return 0, nil
	}
	r, err := byterate.Parse(v)
	if err != nil {
		return 0, errors.New(strconv.Quote(s) + ": want a byte rate like 50MB/s or 10MiB/s, or off")
	}
	if r > 0 && r < 1024 {
		return 0, errors.New(strconv.Quote(s) + ": at least 1KiB/s, or off")
	}
	return r, nil
}
