package main

import (
	"testing"
	"time"
)

// samplesAt builds one sample a second with the given cumulative acked and
// failed counts.
func samplesAt(acked, failed []int64) []sample {
	ss := make([]sample, len(acked))
	for i := range acked {
		ss[i] = sample{at: time.Duration(i+1) * time.Second, phase: "calm", acked: acked[i], failed: failed[i]}
	}
	return ss
}

func TestWindowsJudgeAcknowledgedRecords(t *testing.T) {
	const n = 30
	acked, failed := make([]int64, n), make([]int64, n)
	for i := range n {
		switch {
		case i < 10: // serving: 1,000 acked a second
			acked[i] = int64(i+1) * 1000
		case i < 20: // answered, but every record failed
			acked[i], failed[i] = 10000, int64(i-9)*1000
		default: // a few acks among many failures
			acked[i], failed[i] = 10000+int64(i-19), 10000+int64(i-19)*1000
		}
	}
	s := summarize(options{inflight: 64 << 20}, samplesAt(acked, failed), nil)
	if s.windows != 3 {
		t.Fatalf("windows: %d, want 3", s.windows)
	}
	if len(s.notServing) != 2 || s.ok() {
		t.Fatalf("not serving: %v (ok %v), want the last two windows", s.notServing, s.ok())
	}
	if w := s.notServing[0]; w.acked != 0 || w.failed != 10000 {
		t.Errorf("second window: %v, want 0 acked and 10000 failed", w)
	}
}

func TestWindowsPassASteadyLoad(t *testing.T) {
	const n = 25
	acked, failed := make([]int64, n), make([]int64, n)
	for i := range n {
		acked[i], failed[i] = int64(i+1)*1000, int64(i+1)*5 // 0.5% failed
	}
	s := summarize(options{inflight: 64 << 20}, samplesAt(acked, failed), nil)
	if !s.ok() || s.windows != 3 {
		t.Fatalf("a steady load with 0.5%% failures: ok %v, %d windows, not serving %v", s.ok(), s.windows, s.notServing)
	}
}

func TestRSSOverBudgetFails(t *testing.T) {
	ss := samplesAt([]int64{1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000}, make([]int64, 10))
	ss[4].rss = 641 << 20
	s := summarize(options{inflight: 64 << 20}, ss, nil)
	if s.ok() || s.overBudget != 1 {
		t.Fatalf("RSS 641 MiB against a 640 MiB budget: ok %v, %d seconds over", s.ok(), s.overBudget)
	}
}

func TestCalmMinimumsShowWhatAPatternLeftHeld(t *testing.T) {
	phases := []string{"calm", "calm", "bombs", "bombs", "calm", "calm", "flood", "calm", "calm"}
	inflight := []int64{0, 0, 60, 50, 40, 30, 9, 5, -1}
	ss := make([]sample, len(phases))
	for i := range ss {
		ss[i] = sample{at: time.Duration(i) * time.Second, phase: phases[i], inflight: inflight[i]}
	}
	got := calmMinimums(ss)
	if len(got) != 2 || got[0] != 30 || got[1] != 5 {
		t.Fatalf("calm minimums %v, want [30 5] (the calm before any pattern and unknown samples not counted)", got)
	}
}

func TestPhaseTotals(t *testing.T) {
	ss := []sample{
		{at: 0, phase: "calm"},
		{at: time.Second, phase: "bombs", abusive: 5, acked: 100},
		{at: 2 * time.Second, phase: "bombs", abusive: 9, acked: 150},
		{at: 3 * time.Second, phase: "calm", abusive: 9, acked: 400},
	}
	got := phaseTotals(ss)
	want := []phaseTotal{{name: "bombs", seconds: 2, abusive: 9, acked: 150}, {name: "calm", seconds: 1, abusive: 0, acked: 250}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("phase totals %+v, want %+v", got, want)
	}
}
