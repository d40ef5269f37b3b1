package replication

import (
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	good := map[string]int64{"50MB/s": 50e6, "10MiB/s": 10 << 20, "1048576": 1 << 20, "off": 0, "0": 0, "1.5GB/s": 15e8, "64KiB": 64 << 10}
	for in, want := range good {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fast", "-5MB/s", "10", "50Mb/s", "1e20GB/s"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
}

func TestThrottleSpend(t *testing.T) {
	var nilT *Throttle
	if ok, _ := nilT.throttled("t", 0); ok {
		t.Fatal("a nil throttle throttles")
	}
	th := &Throttle{Applies: func(topic string, p int32) bool { return p == 1 }}
	if ok, _ := th.throttled("t", 1); ok {
		t.Fatal("no rate set, yet throttled")
	}
	th.SetRate(1 << 20) // 1 MiB/s
	if ok, _ := th.throttled("t", 0); ok {
		t.Fatal("a partition it does not apply to is throttled")
	}
	if ok, rate := th.throttled("t", 1); !ok || rate != 1<<20 {
		t.Fatal("not throttled")
	}
	now := time.Unix(100, 0)
	// Two fetchers of 512 KiB each at the same moment share the budget:
	// the second waits for both (less the quarter second of credit).
	if d := th.spend(512<<10, now); d != 250*time.Millisecond {
		t.Fatalf("first wait %v", d)
	}
	if d := th.spend(512<<10, now); d != 750*time.Millisecond {
		t.Fatalf("second wait %v", d)
	}
	// Idle time is saved up to a quarter second only: a minute later, 512
	// KiB still waits a quarter second.
	later := now.Add(time.Minute)
	if d := th.spend(512<<10, later); d != 250*time.Millisecond {
		t.Fatalf("after idle %v", d)
	}
	if got := th.fetchBytes(1<<20, 4<<20); got != 256<<10 {
		t.Fatalf("fetch bytes %d", got)
	}
	if got := th.fetchBytes(1<<10, 4<<20); got != 64<<10 {
		t.Fatalf("fetch bytes floor %d", got)
	}
	// A fetcher whose fetch and write take 100 ms copies at the rate, not
	// below it: after the first fetches, each 256 KiB (a quarter second
	// of 1 MiB/s) waits the remaining 150 ms.
	steady := &Throttle{}
	steady.SetRate(1 << 20)
	at := now
	var copied int
	var waits []time.Duration
	for range 40 {
		at = at.Add(100 * time.Millisecond)
		d := steady.spend(256<<10, at)
		waits = append(waits, d)
		at = at.Add(d)
		copied += 256 << 10
	}
	if rate := float64(copied) / at.Sub(now).Seconds(); rate < 0.95*(1<<20) || rate > 1.05*(1<<20) || waits[len(waits)-1] != 150*time.Millisecond {
		t.Fatalf("steady copy at %.0f B/s (want 1 MiB/s), waits %v", rate, waits)
	}
	th.SetRate(0)
	if d := th.spend(1<<20, later); d != 0 {
		t.Fatalf("unlimited wait %v", d)
	}
}
