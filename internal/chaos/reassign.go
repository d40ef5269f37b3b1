package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/skeinlog/skein/client"
)

// The reassign nemesis moves a random partition of the test topic: one of
// its replicas is replaced by a broker that holds none (so the log is
// copied to it, throttled or not) and the order is shuffled (so the
// preferred leader, and with it the leadership, may move). While the copy
// runs it injects one other fault of the scenario, aimed half the time at
// the receiving broker; now and then it cancels the move after that. With
// 3 brokers and replication factor 3 no broker is free to receive a
// replica, so scenarios with this fault run 4 brokers (reassignBrokers).

// FaultReassign moves a partition's replicas during another fault.
const FaultReassign = "reassign"

// The action is registered here: it injects other faults through
// faultActions itself.
func init() { faultActions[FaultReassign] = (*nemesis).reassign }

// reassignBrokers is the cluster size of scenarios with FaultReassign: one
// broker more than the replication factor, so every partition has a
// broker to move to.
const reassignBrokers = 4

// reassignThrottles are the throttles a move runs under: off, or slow
// enough that the copy of a few hundred KB spans the other fault.
var reassignThrottles = []string{"off", "100KB/s", "250KB/s"}

// companionFallback are the faults a move is paired with when the scenario
// has no other.
var companionFallback = []string{FaultKill, FaultTerm, FaultPause, FaultKillController, FaultIsolate, FaultLeaderCut, FaultOneWay, FaultFlap}

// brokersFor is the cluster size a scenario's faults need.
func brokersFor(faults []string) int {
	if slices.Contains(faults, FaultReassign) {
		return reassignBrokers
	}
	return 3
}

// companions are the faults a move may be paired with: the scenario's
// others, except a long cut (too long for the move's window).
func companions(faults []string) []string {
	var out []string
	for _, f := range faults {
		if f != FaultReassign && f != FaultLongCut && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return companionFallback
	}
	return out
}

// moveTarget is a new replica set for a partition on replicas: one replica,
// chosen at random, replaced by a broker of brokers outside the set (when
// there is one), in a random order that differs from the current one when
// nothing is replaced. Pure given rng.
func moveTarget(replicas, brokers []int32, rng *rand.Rand) []int32 {
	out := slices.Clone(replicas)
	var free []int32
	for _, b := range brokers {
		if !slices.Contains(replicas, b) {
			free = append(free, b)
		}
	}
	if len(free) > 0 {
		out[rng.IntN(len(out))] = free[rng.IntN(len(free))]
	}
	for {
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		if len(out) < 2 || !slices.Equal(out, replicas) {
			return out
		}
	}
}

// reassign starts a move, injects a companion fault during it, and
// sometimes cancels it; the move itself finishes in the background (the
// next move, and the end of the run, wait for it).
func (n *nemesis) reassign(_ string, _ int32, deadline time.Time) (string, error) {
	if err := n.r.awaitMoves(60 * time.Second); err != nil {
		return "", err
	}
	part := int32(n.rng.IntN(n.r.cfg.Partitions))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	d, err := n.r.admin.DescribeTopic(ctx, n.r.cfg.Topic)
	cancel()
	if err != nil {
		return "", fmt.Errorf("describe %s: %w", n.r.cfg.Topic, err)
	}
	before := d.Partitions[part].Replicas
	target := moveTarget(before, n.r.cluster.IDs, n.rng)
	throttle := reassignThrottles[n.rng.IntN(len(reassignThrottles))]
	if err := n.r.startMove(client.ReassignTarget{Topic: n.r.cfg.Topic, Partition: part, Replicas: target}, throttle); err != nil {
		return "", err
	}
	what := fmt.Sprintf("move p%d %v -> %v (throttle %s)", part, before, target, throttle)
	n.hold(300*time.Millisecond, 2*time.Second, deadline)
	cf := n.companions[n.rng.IntN(len(n.companions))]
	id := n.pickTarget()
	if recv := slices.DeleteFunc(slices.Clone(target), func(b int32) bool { return slices.Contains(before, b) }); len(recv) > 0 && n.rng.IntN(2) == 0 {
		id = recv[0]
	}
	cwhat, err := faultActions[cf](n, cf, id, deadline)
	if err != nil {
		return "", fmt.Errorf("%s, during it %s: %w", what, cf, err)
	}
	n.extra = append(n.extra, cf)
	what += "; during it: " + cwhat
	if n.rng.IntN(5) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		k, err := n.r.admin.CancelReassignment(ctx)
		cancel()
		if err == nil {
			what += fmt.Sprintf("; cancelled (%d partition(s) heading back)", k)
		} else if !strings.Contains(err.Error(), "no reassignment") {
			what += fmt.Sprintf("; cancel failed: %v", err)
		}
	}
	return what, nil
}

// startMove asks for a move, retrying while the cluster is unavailable
// for up to 30 s; a retry told that a reassignment runs takes it as its
// own (the earlier attempt was applied before its answer was lost).
func (r *runner) startMove(tg client.ReassignTarget, throttle string) error {
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := r.admin.ExecuteReassignment(ctx, []client.ReassignTarget{tg}, throttle)
		cancel()
		switch {
		case err == nil:
			return nil
		case attempt > 0 && strings.Contains(err.Error(), "already running"):
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("start moving %s-%d to %v: %w", tg.Topic, tg.Partition, tg.Replicas, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// awaitMoves waits until no reassignment runs.
func (r *runner) awaitMoves(d time.Duration) error {
	deadline := time.Now().Add(d)
	last := "no answer"
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := r.admin.ReassignmentStatus(ctx)
		cancel()
		if err == nil && len(st.Partitions) == 0 {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%+v", st.Partitions)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("a reassignment did not finish within %v: %s", d, last)
}
