package broker

import (
	"testing"
	"time"
)

// Topic creation counts open handles at most once a second while topics
// fit the estimate, and counts afresh before refusing one.
func TestHandleEstimateCountsOnceASecondAndBeforeRefusing(t *testing.T) {
	var h handleEstimate
	counts, open := 0, 100
	count := func() (int, int, bool) { counts++; return open, 1000, true }
	now := time.Unix(100, 0)
	for i := range 40 { // 40 x 10 partitions = 800 handles: 100 + 800 <= 900
		if _, _, _, fit := h.check(now.Add(time.Duration(i)*time.Millisecond), count, 10); !fit {
			t.Fatalf("topic %d refused", i)
		}
	}
	if counts != 1 {
		t.Fatalf("%d counts for 40 topics within a second, want 1", counts)
	}
	// The estimate (900) has no room, the real count (300) has.
	open = 300
	if need, got, _, fit := h.check(now.Add(100*time.Millisecond), count, 10); !fit || need != 20 || got != 320 || counts != 2 {
		t.Fatalf("fit %v need %d open %d after %d counts; want a recount that admits 20 over 300", fit, need, got, counts)
	}
	// Past the limit by a fresh count: refused, nothing admitted.
	open = 890
	if _, got, _, fit := h.check(now.Add(2*time.Second), count, 10); fit || got != 890 {
		t.Fatalf("fit %v open %d: want a refusal at 890", fit, got)
	}
	// A count that fails lets everything through.
	if _, _, _, fit := h.check(now.Add(3*time.Second), func() (int, int, bool) { return 0, 0, false }, 1e6); !fit {
		t.Fatal("refused without a count")
	}
}
