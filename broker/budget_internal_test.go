package broker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestFits(t *testing.T) {
	for _, c := range []struct {
		used, n, total int64
		want           bool
	}{
		{0, 10, 100, true},
		{90, 10, 100, true},
		{91, 10, 100, false},
		{0, 500, 100, true}, // larger than the budget: alone
		{1, 500, 100, false},
		{100, 0, 100, true},
	} {
		if got := fits(c.used, c.n, c.total); got != c.want {
			t.Errorf("fits(%d, %d, %d) = %v, want %v", c.used, c.n, c.total, got, c.want)
		}
	}
}

func TestByteBudgetWaitsThenRefuses(t *testing.T) {
	b := newByteBudget(100, 50*time.Millisecond)
	ctx := context.Background()
	if err := b.acquire(ctx, 80); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := b.acquire(ctx, 30)
	var be *budgetError
	if !errors.As(err, &be) || !errors.Is(err, errBudget) || be.retryAfter != 50*time.Millisecond || be.reason != "inflight_bytes" {
		t.Fatalf("over the budget: %v", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("refused after %v, before the wait", d)
	}
	if got := b.inUse(); got != 80 {
		t.Fatalf("in use after a refusal: %d, want 80", got)
	}
	// A waiter gets in when room is released.
	done := make(chan error, 1)
	b.wait = 5 * time.Second
	go func() { done <- b.acquire(ctx, 30) }()
	time.Sleep(20 * time.Millisecond)
	b.release(80)
	if err := <-done; err != nil {
		t.Fatalf("waiter after release: %v", err)
	}
	if got := b.inUse(); got != 30 {
		t.Fatalf("in use: %d, want 30", got)
	}
	// A cancelled caller stops waiting with its context's error.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := b.acquire(cctx, 90); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	b.release(30)
	if got := b.inUse(); got != 0 {
		t.Fatalf("in use at the end: %d", got)
	}
}

func TestParseCgroupLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"max\n":                 0,
		"536870912\n":           512 << 20,
		"9223372036854771712\n": 0, // cgroup v1 "unlimited"
		"":                      0,
		"-1":                    0,
	} {
		if got := parseCgroupLimit(in); got != want {
			t.Errorf("parseCgroupLimit(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestMemoryLimit(t *testing.T) {
	if got, _ := memoryLimit(1<<30, 256<<20); got != (1<<30)/10*9 {
		t.Errorf("with a cgroup limit of 1 GiB: %d", got)
	}
	if got, _ := memoryLimit(0, 256<<20); got != 1<<30 {
		t.Errorf("no cgroup, 256 MiB budget: %d, want 1 GiB", got)
	}
}

func TestInflationLimit(t *testing.T) {
	for _, c := range []struct {
		count, maxRecord int32
		maxRequest       int
		want             int64
	}{
		{1, 1 << 20, 16 << 20, 1<<20 + recordFraming},
		{3, 1000, 16 << 20, 3 * (1000 + recordFraming)},
		{100, 1 << 20, 16 << 20, 16 << 20}, // capped by the request size
		{0, 1000, 16 << 20, 1000 + recordFraming},
	} {
		if got := inflationLimit(c.count, c.maxRecord, c.maxRequest); got != c.want {
			t.Errorf("inflationLimit(%d, %d, %d) = %d, want %d", c.count, c.maxRecord, c.maxRequest, got, c.want)
		}
	}
}

func TestHandlesFit(t *testing.T) {
	for _, c := range []struct {
		open, limit, partitions int
		need                    int
		ok                      bool
	}{
		{100, 20000, 100, 200, true},
		{17001, 20000, 500, 1000, false}, // 18001 > 20000 - 2000
		{16000, 20000, 500, 1000, true},  // 17000 <= 18000
		{10, 400, 160, 320, true},        // reserve 64: 330 <= 336
		{10, 400, 170, 340, false},
		{0, 100, 10, 20, true}, // reserve at least 64: 20 <= 36
		{0, 100, 20, 40, false},
	} {
		need, ok := handlesFit(c.open, c.limit, c.partitions)
		if need != c.need || ok != c.ok {
			t.Errorf("handlesFit(%d, %d, %d) = %d %v, want %d %v", c.open, c.limit, c.partitions, need, ok, c.need, c.ok)
		}
	}
}

func TestReplicasHere(t *testing.T) {
	for _, c := range []struct {
		partitions, rf int32
		brokers, want  int
	}{
		{10, 1, 1, 10},
		{10, 3, 3, 10},
		{10, 3, 5, 6},
		{1, 1, 3, 1},
		{4, 0, 0, 4},
	} {
		if got := replicasHere(c.partitions, c.rf, c.brokers); got != c.want {
			t.Errorf("replicasHere(%d, %d, %d) = %d, want %d", c.partitions, c.rf, c.brokers, got, c.want)
		}
	}
}

func TestNotReadyReasons(t *testing.T) {
	fine := readyInputs{started: true, handlesKnown: true, open: 100, limit: 20000, diskKnown: true, diskFree: 1 << 30, diskMin: 64 << 20,
		inflightUsed: 0, inflightTotal: 256 << 20, controller: 1}
	for _, c := range []struct {
		name string
		edit func(*readyInputs)
		want string // "" ready, else a word of the one reason
	}{
		{"ready", func(*readyInputs) {}, ""},
		{"starting", func(in *readyInputs) { in.started = false }, "starting"},
		{"closing", func(in *readyInputs) { in.closing = true }, "shutting down"},
		{"handles", func(in *readyInputs) { in.open = 19000 }, "file handles"},
		{"handles just fine", func(in *readyInputs) { in.open = 18999 }, ""},
		{"handles unknown", func(in *readyInputs) { in.open, in.handlesKnown = 20000, false }, ""},
		{"disk", func(in *readyInputs) { in.diskFree = 1 << 20 }, "disk nearly full"},
		{"disk unknown", func(in *readyInputs) { in.diskFree, in.diskKnown = 0, false }, ""},
		{"budget", func(in *readyInputs) { in.inflightUsed = 256 << 20 }, "in-flight"},
		{"controller", func(in *readyInputs) { in.controller = -1 }, "no controller"},
	} {
		in := fine
		c.edit(&in)
		got := notReadyReasons(in)
		switch {
		case c.want == "" && len(got) != 0:
			t.Errorf("%s: not ready: %q", c.name, got)
		case c.want != "" && (len(got) != 1 || !strings.Contains(got[0], c.want)):
			t.Errorf("%s: %q, want one reason with %q", c.name, got, c.want)
		}
	}
}
