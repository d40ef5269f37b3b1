package client

import (
	"math/rand/v2"
	"time"
)

// maxBackoff caps exponential backoffs (unless the base is larger).
const maxBackoff = time.Second

// retryWait is the wait before retry number attempt after err: the
// backoff, or longer when the broker asked for a longer wait
// (retry_after_ms).
func retryWait(base time.Duration, attempt int, err error) time.Duration {
	return max(backoff(base, attempt), retryAfter(err))
}

// backoff returns the wait before retry number attempt (1 for the first
// retry): base doubled per attempt up to max(1 s, base), then jittered down
// by up to 20% so that clients retrying together spread out.
func backoff(base time.Duration, attempt int) time.Duration {
	ceiling := max(maxBackoff, base)
	d := base
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}
