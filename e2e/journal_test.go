package e2e

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
)

// On the journal engine, a follower's truncation of a divergent suffix is
// recorded so that a replay after kill -9 never brings the cut records
// back. The leader writes records only it has (its followers stopped),
// is killed, a follower takes over and appends others at those offsets;
// the old leader restarts (its journal replayed), truncates as a follower
// and copies the new records, and is killed again before any checkpoint
// (--journal-checkpoint-interval 1h). After the second replay its log is
// byte for byte the leader's, without the cut records. (A follower may
// still copy the first of them from a fetch answered as it stopped; those
// are then the cluster's, not cut.)
func TestJournalReplayAfterFollowerTruncation(t *testing.T) {
	c := proctest.StartCluster(t, 3, "--storage-engine", "journal", "--journal-checkpoint-interval", "1h", "--replica-lag-time", "30s")
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := cl.CreateTopic(ctx, "tr", client.TopicConfig{Partitions: 1, ReplicationFactor: 3, MinInsyncReplicas: 1}); err != nil {
		t.Fatal(err)
	}
	old := c.Leader(cl, "tr", 0, -1, 20*time.Second)
	produceN(t, ctx, cl, "kept", 50, client.AcksAll)
	var followers []int32
	for _, id := range c.IDs {
		if id != old {
			followers = append(followers, id)
			c.Brokers[id].Pause()
		}
	}
	// Only the old leader has these; a client of its own, so that no
	// request waits on a stopped broker.
	only, err := client.New(client.Brokers(c.Brokers[old].Addr), client.RequestTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	produceN(t, ctx, only, "cut", 20, client.AcksLeader)
	only.Close()
	c.Brokers[old].Kill()
	for _, id := range followers {
		c.Brokers[id].Resume()
	}
	leader := c.Leader(cl, "tr", 0, old, 30*time.Second)
	produceN(t, ctx, cl, "new", 30, client.AcksAll)

	c.Restart(old) // replays its journal, then truncates the 20 as a follower
	waitCaughtUp(t, ctx, cl, c.Brokers[old].PeerAddr, old)
	c.Brokers[old].Kill() // no checkpoint since the truncation
	c.Restart(old)
	waitCaughtUp(t, ctx, cl, c.Brokers[old].PeerAddr, old)

	recs := proctest.ReadAll(t, cl, "tr", 0)
	var vals []string
	cut := 0
	for _, r := range recs {
		vals = append(vals, string(r.Value))
		if bytes.HasPrefix(r.Value, []byte("cut-")) {
			cut++ // copied by a follower before it stopped: not divergent
		}
	}
	if cut >= 20 || len(recs) != 80+cut || vals[49] != "kept-49" || vals[50+cut] != "new-0" || vals[len(vals)-1] != "new-29" {
		t.Fatalf("read back (old leader %d, leader %d): %v", old, leader, vals)
	}
	end := int64(len(recs))
	want := proctest.ReplicaLog(t, c.Brokers[leader].PeerAddr, "tr", 0, end)
	if got := proctest.ReplicaLog(t, c.Brokers[old].PeerAddr, "tr", 0, end); !bytes.Equal(got, want) {
		t.Fatalf("after the replay the old leader's log differs from the leader's (%d records cut by its truncation)", 20-cut)
	}
	t.Logf("%d records cut by the old leader's truncation stayed cut through its replay", 20-cut)
}

// produceN produces n records "<prefix>-<i>" to tr/0, one at a time.
func produceN(t *testing.T, ctx context.Context, cl *client.Client, prefix string, n int, acks client.Acks) {
	t.Helper()
	// Not idempotent: a producer id comes from the controller quorum,
	// which the stopped followers may hold.
	p, err := cl.NewProducer(client.RequiredAcks(acks), client.Idempotent(false), client.Linger(0), client.RecordPartitioner(client.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range n {
		if err := p.ProduceSync(ctx, &client.Record{Topic: "tr", Partition: 0, Value: []byte(fmt.Sprintf("%s-%d", prefix, i))}); err != nil {
			t.Fatalf("produce %s-%d: %v", prefix, i, err)
		}
	}
}

// waitCaughtUp waits until broker id is in tr/0's ISR with its local log
// holding at least the 80 records kept and new, up to the HW it knows.
func waitCaughtUp(t *testing.T, ctx context.Context, cl *client.Client, peerAddr string, id int32) {
	t.Helper()
	for ctx.Err() == nil {
		md, err := cl.Metadata(ctx, "tr")
		if err == nil && len(md.Topics) == 1 && slices.Contains(md.Topics[0].Partitions[0].ISR, id) &&
			partitionState(t, peerAddr, "tr").LogEndOffset >= 80 && partitionState(t, peerAddr, "tr").LogEndOffset == partitionState(t, peerAddr, "tr").HighWatermark {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("broker %d not caught up and in the ISR", id)
}
