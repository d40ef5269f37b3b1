package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/skeinlog/skein/internal/chaos"
	"github.com/skeinlog/skein/internal/proctest"
)

// Regression runs of the fault-injection suite: each fixed seed and
// scenario once found a bug (named in the case), and must now pass with
// every anomaly count at 0. Replay one with
// go run ./cmd/chaos -seed N -scenario S -duration D.
func TestChaosRegressions(t *testing.T) {
	proctest.SetBins(proctest.Bins(t))
	cases := []struct {
		name     string
		seed     uint64
		scenario string
		duration time.Duration
	}{
		// A follower whose disk filled up stopped the whole broker
		// ("fatal storage error") instead of cutting its log back and
		// fetching again once space returned.
		{"follower disk full", 4, "disk", 30 * time.Second},
		// A log damaged while its broker was stopped after a clean
		// shutdown (opened lazily from its checkpoint) failed its first
		// replicated append and stopped the broker; a wiped broker came
		// back under its old identity.
		{"storage damage after a clean shutdown", 6, "storage", 45 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := chaos.Run(chaos.Config{Seed: tc.seed, Scenario: tc.scenario, Duration: tc.duration, Dir: t.TempDir(), Logf: t.Logf})
			if !rep.Pass {
				b, _ := json.MarshalIndent(rep, "", " ")
				t.Fatalf("seed %d scenario %s failed:\n%s", tc.seed, tc.scenario, b)
			}
			t.Logf("seed %d %s: faults %v, %d acked, 0 anomalies", tc.seed, tc.scenario, rep.Faults, rep.Result.Acked)
		})
	}
}
