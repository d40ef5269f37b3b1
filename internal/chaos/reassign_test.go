package chaos

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// A move replaces exactly one replica by a broker outside the set when
// there is one (so data is copied), else only reorders; the set stays
// distinct, of the same size, on known brokers, and never equals the
// current one.
func TestMoveTarget(t *testing.T) {
	cases := []struct {
		name              string
		replicas, brokers []int32
		replaced          int
	}{
		{"a free broker receives a replica", []int32{1, 2, 3}, []int32{1, 2, 3, 4}, 1},
		{"one of several free brokers", []int32{2, 4, 1}, []int32{1, 2, 3, 4, 5, 6}, 1},
		{"no free broker: a reorder (the preferred leader moves)", []int32{1, 2, 3}, []int32{1, 2, 3}, 0},
		{"replication factor 1", []int32{2}, []int32{1, 2, 3, 4}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(200) {
				rng := rand.New(rand.NewPCG(seed, 1))
				got := moveTarget(tc.replicas, tc.brokers, rng)
				sorted := slices.Sorted(slices.Values(got))
				if len(got) != len(tc.replicas) || len(slices.Compact(sorted)) != len(got) || slices.Equal(got, tc.replicas) {
					t.Fatalf("seed %d: %v -> %v", seed, tc.replicas, got)
				}
				replaced := 0
				for _, b := range got {
					if !slices.Contains(tc.brokers, b) {
						t.Fatalf("seed %d: %v -> %v names an unknown broker", seed, tc.replicas, got)
					}
					if !slices.Contains(tc.replicas, b) {
						replaced++
					}
				}
				if replaced != tc.replaced {
					t.Fatalf("seed %d: %v -> %v replaces %d, want %d", seed, tc.replicas, got, replaced, tc.replaced)
				}
			}
		})
	}
}

// Scenarios with moves run a broker more than the replication factor, and
// pair each move with another fault of the scenario (not a long cut, not a
// move), or with process and network faults when it has none.
func TestReassignScenario(t *testing.T) {
	if brokersFor(Scenarios["reassign"]) != 4 || brokersFor(Scenarios["mix"]) != 4 || brokersFor(Scenarios["process"]) != 3 {
		t.Fatal("cluster sizes: want 4 for reassign and mix, 3 for the others")
	}
	if got := companions(Scenarios["reassign"]); !slices.Equal(got, companionFallback) {
		t.Fatalf("companions of reassign: %v", got)
	}
	mix := companions(Scenarios["mix"])
	if slices.Contains(mix, FaultReassign) || slices.Contains(mix, FaultLongCut) || !slices.Contains(mix, FaultDiskFull) || len(mix) != len(Scenarios["mix"])-5 {
		t.Fatalf("companions of mix: %v", mix)
	}
	for _, f := range append(mix, companionFallback...) {
		if faultActions[f] == nil {
			t.Fatalf("companion %s has no action", f)
		}
	}
	if faultActions[FaultReassign] == nil {
		t.Fatal("no action for reassign")
	}
}
