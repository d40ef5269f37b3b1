package broker

import (
	"fmt"
	"slices"
	"testing"

	"github.com/skeinlog/skein/cluster"
)

// pm is partition 0 led by leader at epoch, on replicas.
func pm(leader, epoch int32, replicas ...int32) cluster.PartitionMeta {
	return cluster.PartitionMeta{Partition: 0, Leader: leader, LeaderEpoch: epoch, Replicas: replicas, ISR: replicas}
}

// The role rules, one case per rule (broker 1 is "self").
func TestDecideRole(t *testing.T) {
	leading := func(epoch int32) replicaRoles { return replicaRoles{leading: true, leaderEpoch: epoch} }
	following := func(leader, epoch int32) replicaRoles {
		return replicaRoles{following: true, followerLeader: leader, followerEpoch: epoch}
	}
	cases := []struct {
		name                string
		meta                cluster.PartitionMeta
		damaged, registered bool
		now                 replicaRoles
		want                roleDecision
	}{
		{"the named leader leads and tracks its followers", pm(1, 5, 1, 2, 3), false, false, following(2, 4),
			roleDecision{lead: true, leaderID: 1, tracker: replStart, follower: replStop}},
		{"a leader in the same epoch updates its tracker instead of restarting it", pm(1, 5, 1, 2, 3), false, false, leading(5),
			roleDecision{lead: true, leaderID: 1, tracker: replUpdate, follower: replStop}},
		{"a leader in a new epoch gets a new tracker", pm(1, 6, 1, 2, 3), false, false, leading(5),
			roleDecision{lead: true, leaderID: 1, tracker: replStart, follower: replStop}},
		{"a sole replica leads without a tracker", pm(1, 1, 1), false, false, replicaRoles{},
			roleDecision{lead: true, leaderID: 1, tracker: replKeep, follower: replStop}},
		{"a damaged replica never leads: it follows no one until the leadership moves", pm(1, 5, 1, 2, 3), true, false, leading(4),
			roleDecision{waitDamaged: true, leaderID: -1, tracker: replStop, follower: replStop}},
		{"a damaged replica leads again once its renewed storage id is registered", pm(1, 5, 1, 2, 3), true, true, replicaRoles{},
			roleDecision{clearDamaged: true, lead: true, leaderID: 1, tracker: replStart, follower: replStop}},
		{"a damaged replica may follow", pm(2, 5, 1, 2, 3), true, false, replicaRoles{},
			roleDecision{leaderID: 2, tracker: replStop, follower: replStart}},
		{"a deposed leader stops tracking and follows the new leader", pm(2, 6, 1, 2, 3), false, false, leading(5),
			roleDecision{leaderID: 2, tracker: replStop, follower: replStart}},
		{"a follower of the same leader and epoch keeps following", pm(2, 6, 1, 2, 3), false, false, following(2, 6),
			roleDecision{leaderID: 2, tracker: replStop, follower: replKeep}},
		{"a follower restarts for a new epoch of the same leader", pm(2, 7, 1, 2, 3), false, false, following(2, 6),
			roleDecision{leaderID: 2, tracker: replStop, follower: replStart}},
		{"a follower restarts for a new leader", pm(3, 7, 1, 2, 3), false, false, following(2, 7),
			roleDecision{leaderID: 3, tracker: replStop, follower: replStart}},
		{"without a leader a replica follows no one", pm(-1, 7, 1, 2, 3), false, false, following(2, 6),
			roleDecision{leaderID: -1, tracker: replStop, follower: replStop}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := decideRole(1, c.meta, c.damaged, c.registered, c.now); got != c.want {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestPlanReconcile(t *testing.T) {
	topic := func(name, id string, parts ...cluster.PartitionMeta) cluster.Topic {
		for i := range parts {
			parts[i].Partition = int32(i)
		}
		return cluster.Topic{Name: name, ID: id, Partitions: parts}
	}
	snap := &cluster.Snapshot{Topics: map[string]cluster.Topic{
		"a": topic("a", "a1", pm(1, 1, 1, 2), pm(2, 1, 2, 3), pm(3, 1, 3, 1)),
		"b": topic("b", "b2", pm(1, 1, 1)), // b re-created: local b is of incarnation b1
	}}
	local := map[tp]string{
		{"a", 0}: "a1", // kept
		{"a", 1}: "a1", // moved off this broker: closed, the topic's data stays
		{"b", 0}: "b1", // old incarnation: closed, its data removed, reopened
		{"c", 0}: "c1", // topic deleted: closed, data removed
	}
	plan := planReconcile(snap, 1, local)
	keys := func(ks []tp) string {
		slices.SortFunc(ks, func(x, y tp) int { return cmpTP(x, y) })
		return fmt.Sprint(ks)
	}
	if got, want := keys(plan.close), "[a-1 b-0 c-0]"; got != want {
		t.Errorf("close %s, want %s", got, want)
	}
	if got, want := keys(plan.open), "[a-2 b-0]"; got != want {
		t.Errorf("open %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(plan.removeDirs), "map[b:b1 c:c1]"; got != want {
		t.Errorf("remove dirs %s, want %s", got, want)
	}
	var wanted []tp
	for k := range plan.wanted {
		wanted = append(wanted, k)
	}
	if got, want := keys(wanted), "[a-0 a-2 b-0]"; got != want {
		t.Errorf("wanted %s, want %s", got, want)
	}
}

func cmpTP(x, y tp) int {
	if x.topic != y.topic {
		if x.topic < y.topic {
			return -1
		}
		return 1
	}
	return int(x.partition - y.partition)
}
